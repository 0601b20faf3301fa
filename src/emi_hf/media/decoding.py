"""Decoding with PyAV: video frames resampled to a target frame rate, audio resampled to 16 kHz mono.

Video
-----
:func:`iter_video_frames` decodes in a background thread (so decoding overlaps with face detection) and yields
:class:`SourceFrame` objects, one per *decoded source frame that is kept*, each with the number of output frames
(``repeat``) it stands for on the target-rate grid. Resampling to ``target_fps`` uses the nearest-frame rule of
ffmpeg's ``fps`` filter (:mod:`emi_hf.media.resampling`, shared with decoded frame arrays): output frame ``k``
lies at ``t0 + k / target_fps`` (``t0`` = time of the first decoded frame) and shows the source frame whose
presentation time is nearest. So

* downsampling drops source frames before they are converted to RGB (``repeat == 0`` frames are never yielded),
* upsampling (e.g. 23.976 -> 30 fps) repeats a source frame (``repeat == 2``); the pipeline processes it once,
* variable frame rate works, since only real presentation times are used.

Every output frame keeps the *real* presentation time of the source frame it shows (so timestamps are
non-decreasing, and repeated where a source frame is repeated). ``target_fps=None`` keeps every source frame.

Memory is bounded: the decode thread hands frames over through a queue of ``queue_size`` frames.

Audio
-----
:func:`decode_audio` decodes the first audio stream and resamples it with ``av.AudioResampler`` to mono float32
at ``sampling_rate`` (16 kHz by default). ``peak_db=-3.0`` scales the waveform so that its peak is at -3 dBFS, the
normalisation of the paper. A file without an audio track returns ``None`` (the modality is then masked).
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import EmiUsageError
from .errors import EmiFileNotFoundError, EmiInputError, _HOW_TO_REENCODE
from .resampling import nearest_frames

__all__ = [
    "MediaInfo",
    "SourceFrame",
    "probe_media",
    "iter_video_frames",
    "decode_audio",
    "peak_normalize",
    "resample_waveform",
    "rows_are_channels",
    "load_audio",
]

MAX_AUDIO_CHANNELS = 8  # more rows than this in a 2-D audio array are not channels

_OPEN_HINT = (
    "Check that it is a video or audio file that ffmpeg can read (PyAV decodes it); if it plays elsewhere, "
    f"re-encode it: {_HOW_TO_REENCODE}"
)


@dataclass
class MediaInfo:
    """What a container holds, read from its header (no decoding)."""

    path: str
    container: str
    has_video: bool
    has_audio: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None  # average frame rate declared by the container (may be approximate for VFR)
    num_frames: int | None = None  # declared by the container; 0 / None when unknown
    duration: float | None = None  # seconds
    video_codec: str | None = None
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class SourceFrame:
    """One decoded source frame, with the number of output frames it stands for."""

    image: np.ndarray | None  # uint8 [H, W, 3] RGB; None when decoded for its time only (``rgb=False``)
    time: float  # presentation time in seconds
    index: int  # index among decoded source frames
    repeat: int = 1  # output frames showing this source frame (>= 1)


@dataclass
class _DecodeReport:
    decoded: int = 0
    bad_packets: int = 0
    stopped_early: bool = False
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def check_path(path) -> str:
    """`path` as a string, checked to name an existing, non-empty media file (an `EmiInputError` naming the file and the fix otherwise)."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"expected a file path, got {type(path).__name__}")
    if not os.path.exists(path):
        raise EmiFileNotFoundError(path, "does not exist.", "Check the path (relative paths are resolved from "
                                   f"the working directory {os.getcwd()!r}).")
    if os.path.isdir(path):
        raise EmiInputError(path, "is a directory, not a media file.", "Pass the path of a video or audio file.")
    if os.path.getsize(path) == 0:
        raise EmiInputError(path, "is empty (0 bytes).", "The file was not written completely; copy or export it "
                            "again.")
    return path


def _open(path: str):
    import av

    try:
        return av.open(path, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as error:  # InvalidDataError, PermissionError, ...
        raise EmiInputError(path, f"could not be opened as a media file ({error.strerror or error}).",
                            _OPEN_HINT) from error
    except (UnicodeDecodeError, OSError) as error:
        raise EmiInputError(path, f"could not be opened as a media file ({error}).", _OPEN_HINT) from error


def _float(value) -> float | None:
    return float(value) if value is not None else None


def probe_media(path) -> MediaInfo:
    """Reads the container header. Raises :class:`EmiInputError` for a missing, empty or non-media file."""
    path = check_path(path)
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise EmiInputError(path, f"has neither a video nor an audio stream (container {container.format.name}).",
                                _OPEN_HINT)
        duration = None
        if container.duration is not None:
            duration = container.duration / 1_000_000  # AV_TIME_BASE
        info = MediaInfo(path=path, container=container.format.name, has_video=video is not None,
                         has_audio=audio is not None, duration=duration)
        if video is not None:
            ctx = video.codec_context
            info.width, info.height = ctx.width, ctx.height
            info.video_codec = ctx.name
            rate = video.average_rate or video.guessed_rate
            info.fps = _float(rate)
            info.num_frames = int(video.frames) or None
            if video.duration is not None and video.time_base is not None:
                info.duration = float(video.duration * video.time_base)
        if audio is not None:
            ctx = audio.codec_context
            info.audio_codec = ctx.name
            info.audio_sample_rate = ctx.sample_rate
            info.audio_channels = ctx.channels if hasattr(ctx, "channels") else None
    return info


def _frame_time(frame, stream, fallback_index: int, fallback_fps: float) -> float | None:
    if frame.pts is not None and stream.time_base is not None:
        return float(frame.pts * stream.time_base)
    if frame.time is not None:
        return float(frame.time)
    return fallback_index / fallback_fps if fallback_fps else None


def _timed_frames(container, stream, fallback_fps: float, report: _DecodeReport,
                  stop: threading.Event) -> Iterator[tuple]:
    """``(av.VideoFrame, time, duration or None)`` of each decoded frame that has a time. A corrupt packet is
    counted and skipped; a demuxing error (truncated or corrupt container) ends the stream early."""
    import av

    packets = container.demux(stream)
    while not stop.is_set():
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as error:
            report.stopped_early = True
            report.error = str(error)
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            report.bad_packets += 1
            continue
        for frame in frames:
            t = _frame_time(frame, stream, report.decoded, fallback_fps)
            if t is None:
                continue
            report.decoded += 1
            yield frame, t, float(frame.duration * stream.time_base) if frame.duration else None


def _decode_video_thread(path: str, out: queue.Queue, stop: threading.Event, report: _DecodeReport,
                         target_fps: float | None, max_frames: int | None, max_duration: float | None,
                         decoder_threads: int, rgb: bool = True) -> None:
    """Producer: decodes, keeps the frames the output grid shows (:func:`~emi_hf.media.resampling.nearest_frames`),
    converts them to RGB (unless not `rgb`) and puts them on `out`, then None (or the error that stopped it)."""

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        with _open(path) as container:
            if container.streams.video:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                if decoder_threads:
                    stream.codec_context.thread_count = decoder_threads
                declared_fps = float(stream.average_rate or stream.guessed_rate or 30)
                timed = _timed_frames(container, stream, declared_fps, report, stop)
                for frame, t, index, repeat in nearest_frames(timed, target_fps, max_frames, max_duration,
                                                              frame_step=1.0 / declared_fps):
                    image = frame.to_ndarray(format="rgb24") if rgb else None
                    if not put(SourceFrame(image, t, index, repeat)):
                        return
    except BaseException as error:  # hand the error to the consumer
        put(error)
        return
    put(None)


def iter_video_frames(path, target_fps: float | None = 30.0, max_frames: int | None = None,
                      max_duration: float | None = None, queue_size: int = 32, decoder_threads: int = 0,
                      report: _DecodeReport | None = None, rgb: bool = True) -> Iterator[SourceFrame]:
    """Yields the kept source frames of the first video stream, resampled to `target_fps` (see module doc);
    ``rgb=False`` yields their times only (``image`` None: no pixel conversion).

    Raises :class:`EmiInputError` for an unreadable file or when no frame at all can be decoded from a file that
    has a video stream. A file without a video stream yields nothing.
    """
    path = check_path(path)
    if target_fps is not None and target_fps <= 0:
        raise EmiUsageError(f"target_fps must be positive or None, got {target_fps}")
    report = report if report is not None else _DecodeReport()
    out: queue.Queue = queue.Queue(maxsize=max(2, queue_size))
    stop = threading.Event()
    thread = threading.Thread(target=_decode_video_thread, name="emi-hf-decode", daemon=True,
                              args=(path, out, stop, report, target_fps, max_frames, max_duration, decoder_threads,
                                    rgb))
    thread.start()
    yielded = 0
    try:
        while True:
            try:
                item = out.get(timeout=0.5)
            except queue.Empty:
                if not thread.is_alive() and out.empty():
                    break
                continue
            if item is None:
                break
            if isinstance(item, BaseException):
                if isinstance(item, EmiInputError):
                    raise item
                raise EmiInputError(path, f"could not be decoded ({type(item).__name__}: {item}).",
                                    _OPEN_HINT) from item
            yielded += 1
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)
    if report.decoded == 0 and (report.bad_packets or report.error):
        raise EmiInputError(path, "has a video stream but no frame could be decoded "
                            f"({report.bad_packets} corrupt packets{', ' + report.error if report.error else ''}).",
                            "The file is corrupt or truncated, or its codec is not supported; re-encode it: "
                            + _HOW_TO_REENCODE)
    if report.bad_packets:
        report.warnings.append(f"{report.bad_packets} video packets could not be decoded (corrupt data); "
                               "the frames around them are missing.")
    if report.stopped_early:
        report.warnings.append(f"decoding stopped early ({report.error}); the file looks truncated, "
                               f"{report.decoded} frames were decoded.")


def rows_are_channels(audio: np.ndarray) -> bool:
    """Whether the rows of a 2-D audio array are channels (at most MAX_AUDIO_CHANNELS of them) rather than
    samples of [samples, channels], or the clips of a batch."""
    return audio.shape[0] <= MAX_AUDIO_CHANNELS


def peak_normalize(waveform: np.ndarray, peak_db: float | None = -3.0) -> np.ndarray:
    """Scales `waveform` so that max |x| = 10 ** (peak_db / 20). Silence (all zeros) is returned unchanged."""
    if peak_db is None or waveform.size == 0:
        return waveform
    peak = float(np.max(np.abs(waveform)))
    if peak <= 1e-9:
        return waveform
    return (waveform * (10.0 ** (peak_db / 20.0) / peak)).astype(np.float32)


def resample_waveform(waveform: np.ndarray, orig_rate: int, target_rate: int = 16000) -> np.ndarray:
    """Polyphase resampling of a mono waveform (for arrays given directly; files are resampled by PyAV)."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 2:  # [channels, samples] or [samples, channels] -> mono
        waveform = waveform.mean(axis=0 if rows_are_channels(waveform) else 1)
    if waveform.ndim != 1:
        raise ValueError(f"audio must be 1-D (mono) or 2-D (channels x samples), got shape {waveform.shape}")
    if int(orig_rate) == int(target_rate):
        return waveform.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    ratio = Fraction(int(target_rate), int(orig_rate)).limit_denominator(10_000)
    return resample_poly(waveform, ratio.numerator, ratio.denominator).astype(np.float32)


def decode_audio(path, sampling_rate: int = 16000, peak_db: float | None = -3.0,
                 max_duration: float | None = None, start_time: float | None = None,
                 warnings_out: list | None = None) -> tuple[np.ndarray | None, float | None]:
    """Decodes the first audio stream to mono float32 at `sampling_rate`.

    Returns ``(waveform, start_time)`` where ``start_time`` is the presentation time (seconds) of the first
    sample, or ``(None, None)`` when the file has no audio stream. With `start_time` given (e.g. the first video
    frame's time), samples before it are dropped / silence is prepended so that sample 0 is at `start_time`.
    """
    import av

    path = check_path(path)
    with _open(path) as container:
        if not container.streams.audio:
            return None, None
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sampling_rate))
        chunks: list[np.ndarray] = []
        first_time = None
        total = 0
        limit = None if max_duration is None else int(round(max_duration * sampling_rate))
        bad = 0

        def take(frames):
            nonlocal total
            for out in frames:
                array = out.to_ndarray().reshape(-1)
                chunks.append(array)
                total += array.shape[0]

        try:
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:
                    bad += 1
                    continue
                for frame in decoded:
                    if first_time is None and frame.pts is not None and stream.time_base is not None:
                        first_time = float(frame.pts * stream.time_base)
                    take(resampler.resample(frame))
                if limit is not None and start_time is None and total >= limit:
                    break
            take(resampler.resample(None))  # flush
        except av.error.FFmpegError as error:
            if warnings_out is not None:
                warnings_out.append(f"audio decoding stopped early ({error}); the file looks truncated.")
        if bad and warnings_out is not None:
            warnings_out.append(f"{bad} audio packets could not be decoded (corrupt data).")
    waveform = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    first_time = first_time if first_time is not None else 0.0
    if start_time is not None:
        offset = int(round((start_time - first_time) * sampling_rate))
        if offset > 0:
            waveform = waveform[offset:]
        elif offset < 0:
            waveform = np.concatenate([np.zeros(-offset, np.float32), waveform])
        first_time = start_time
    if limit is not None:
        waveform = waveform[:limit]
    if waveform.size == 0:
        if warnings_out is not None:
            warnings_out.append("the audio stream decoded to zero samples; audio is masked.")
        return None, None
    return peak_normalize(waveform, peak_db), first_time


def load_audio(source, sampling_rate: int = 16000, peak_db: float | None = -3.0, source_rate: int | None = None,
               max_duration: float | None = None) -> np.ndarray | None:
    """A separate audio input: a file path (any format PyAV reads) or an array at `source_rate` Hz
    (default: already at `sampling_rate`). Returns mono float32 at `sampling_rate`, peak-normalised."""
    if isinstance(source, (str, os.PathLike, Path)):
        waveform, _ = decode_audio(source, sampling_rate=sampling_rate, peak_db=peak_db, max_duration=max_duration)
        if waveform is None:
            raise EmiInputError(source, "has no audio stream.", "Pass an audio file, or the video itself as `videos`.")
        return waveform
    waveform = np.asarray(source)
    if waveform.dtype.kind == "i":  # PCM integers
        waveform = waveform.astype(np.float32) / float(np.iinfo(waveform.dtype).max)
    waveform = resample_waveform(waveform, source_rate or sampling_rate, sampling_rate)
    if not np.all(np.isfinite(waveform)):
        raise EmiInputError(None, "the audio array contains NaN or infinite values.", "Clean the array first.")
    if max_duration is not None:
        waveform = waveform[: int(round(max_duration * sampling_rate))]
    return peak_normalize(waveform, peak_db)

