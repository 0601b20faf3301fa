"""Builds the long benchmark clip: the shared real recordings concatenated (and repeated) to a given duration.

Every source is scaled and letterboxed to 640x360, re-timed to a constant 25 fps (PyAV, H.264) and its audio
resampled to 16 kHz mono AAC, so the result is one ordinary mp4 with faces, cuts to no face, far-away faces and
speech, like a long recording session. Written once and reused (keyed by duration).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

SOURCES = ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "debate_5s.mp4", "face_noface.mov", "noface_face.mov")
WIDTH, HEIGHT, FPS, RATE = 640, 360, 25, 16000


def _letterbox(frame: np.ndarray) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    scale = min(WIDTH / w, HEIGHT / h)
    resized = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    y, x = (HEIGHT - resized.shape[0]) // 2, (WIDTH - resized.shape[1]) // 2
    canvas[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    return canvas


def _source_segments(media_dir: Path):
    """(frames [N, H, W, 3] uint8 at 25 fps, audio [S] float32 at 16 kHz) per source file."""
    from emi_hf.media.decoding import decode_audio, iter_video_frames

    for name in SOURCES:
        path = media_dir / name
        frames = []
        for source in iter_video_frames(path, target_fps=FPS):
            frames.extend([_letterbox(source.image)] * max(1, source.repeat))
        audio, _ = decode_audio(path, sampling_rate=RATE, peak_db=None)
        samples = int(round(len(frames) / FPS * RATE))
        audio = np.zeros(samples, np.float32) if audio is None else np.resize(audio, samples).astype(np.float32)
        yield np.stack(frames), audio


def build_long_clip(media_dir: Path, output: Path, min_duration_s: float = 300.0) -> Path:
    import av

    if output.exists():
        return output
    segments = list(_source_segments(media_dir))
    tmp = output.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "23"}
        audio = container.add_stream("aac", rate=RATE)
        audio.layout = "mono"
        written, samples_written = 0, 0
        while written < min_duration_s * FPS:
            for frames, waveform in segments:
                for frame in frames:
                    container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                written += len(frames)
                for start in range(0, len(waveform), 1024):
                    chunk = waveform[start : start + 1024][None]
                    audio_frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                    audio_frame.sample_rate = RATE
                    audio_frame.pts = samples_written
                    audio_frame.time_base = Fraction(1, RATE)
                    samples_written += chunk.shape[1]
                    container.mux(audio.encode(audio_frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    tmp.replace(output)
    return output


def cut_clip(source: Path, output: Path, start: float, duration: float) -> Path:
    """Re-encodes `duration` seconds of `source` from `start` (video and audio) into `output` (once)."""
    import av

    from emi_hf.media.decoding import decode_audio, iter_video_frames

    if output.exists():
        return output
    frames = [f.image for f in iter_video_frames(source, target_fps=FPS) if start <= f.time < start + duration]
    audio, audio_start = decode_audio(source, sampling_rate=RATE, peak_db=None)
    offset = int(round((start - (audio_start or 0.0)) * RATE))
    audio = audio[offset : offset + int(duration * RATE)].astype(np.float32)
    tmp = output.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream = container.add_stream("aac", rate=RATE)
        stream.layout = "mono"
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        for begin in range(0, len(audio), 1024):
            chunk = audio[begin : begin + 1024][None]
            audio_frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            audio_frame.sample_rate, audio_frame.pts, audio_frame.time_base = RATE, begin, Fraction(1, RATE)
            container.mux(stream.encode(audio_frame))
        container.mux(video.encode(None))
        container.mux(stream.encode(None))
    tmp.replace(output)
    return output
