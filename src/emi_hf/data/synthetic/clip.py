"""One synthetic clip: labels -> voice controls and waveform, face parameters (lips following the voice), head
pose, gaze and blinks -> rendered frames ([`render_clip`]); and its MP4 file ([`write_clip`]).

Per clip, with ``y`` the label vector and ``envelope(t)`` the expression's time course::

    face(t)  = clip(neutral_face[subject]  + expressiveness[subject] * envelope(t) * (FACE_MAPPING  @ y) + noise(t))
    voice(t) = clip(neutral_voice[subject] + expressiveness[subject] * envelope(t) * (VOICE_MAPPING @ y) + noise(t))
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ...models.configuration_emi import EMOTION_NAMES
from ...errors import EmiUsageError
from .face import FaceRenderer
from .labels import (
    FACE_MAPPING,
    FACE_PARAMETER_NAMES,
    FACE_RANGE,
    VOICE_MAPPING,
    VOICE_PARAMETER_NAMES,
    VOICE_RANGE,
    expression_envelope,
    random_walk,
)
from .subjects import SyntheticSubject, sample_subject
from .voice import synthesize_voice

CONTROL_RATE = 100.0  # Hz of the voice controls (and of the expression envelope the voice follows)


@dataclass
class SyntheticClip:
    """One rendered clip.

    Attributes:
        frames: ``[T, H, W, 3]`` uint8 RGB.
        waveform: ``[S]`` float32 mono in [-1, 1] at ``sample_rate``.
        labels: ``[6]`` intensities, order ``EMOTION_NAMES``.
        face_parameters: ``[T, len(FACE_PARAMETER_NAMES)]`` expression actually drawn in each frame.
        voice_parameters: ``[T_c, len(VOICE_PARAMETER_NAMES)]`` voice controls at 100 Hz.
        envelope: ``[T]`` expression envelope (0 neutral, 1 apex) at the frame times.
        face_boxes: ``[T, 4]`` (x0, y0, x1, y1) pixel box of the drawn face (hair excluded) per frame.
        timestamps: ``[T]`` frame times in seconds.
    """

    frames: np.ndarray
    waveform: np.ndarray
    fps: float
    sample_rate: int
    labels: np.ndarray
    face_parameters: np.ndarray
    voice_parameters: np.ndarray
    envelope: np.ndarray
    face_boxes: np.ndarray
    timestamps: np.ndarray
    subject: SyntheticSubject


def frame_size(size: int | Sequence[int]) -> tuple[int, int]:
    """``(width, height)`` of ``size`` (an int for square frames): even and at least 64 pixels (H.264, yuv420p)."""
    width, height = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise EmiUsageError(f"size must be even and at least 64 pixels per side (H.264, yuv420p), got {size!r}.")
    return int(width), int(height)


def render_clip(
    labels: Sequence[float] | np.ndarray,
    subject: SyntheticSubject | None = None,
    *,
    duration: float = 2.0,
    fps: float = 25,
    size: int | Sequence[int] = 256,
    sample_rate: int = 24000,
    seed: int | np.random.Generator | np.random.SeedSequence = 0,
) -> SyntheticClip:
    """Render one synthetic clip (frames and waveform) for six intensity ``labels`` in [0, 1].

    Args:
        labels: six intensities, order ``EMOTION_NAMES``.
        subject: appearance and voice; drawn from ``seed`` when None.
        size: frame width and height in pixels (int for square, or ``(width, height)``).
        seed: an int, SeedSequence or Generator for the clip's randomness (expression timing, noise, pose).
    """
    labels = _checked_labels(labels)
    if duration <= 0 or fps <= 0 or sample_rate < 8000:
        raise EmiUsageError("duration and fps must be positive and sample_rate at least 8000 Hz.")
    width, height = frame_size(size)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if subject is None:
        subject = sample_subject(rng)

    num_frames = max(1, int(round(duration * fps)))
    frame_t = np.arange(num_frames) / fps
    ctrl_t = np.arange(int(math.ceil(duration * CONTROL_RATE)) + 1) / CONTROL_RATE
    envelope_fn_rng = np.random.default_rng(rng.integers(2**63))
    envelope_ctrl = expression_envelope(envelope_fn_rng, ctrl_t, duration)
    envelope = np.interp(frame_t, ctrl_t, envelope_ctrl)
    apex_time = float(ctrl_t[np.argmax(envelope_ctrl > 0.95 * envelope_ctrl.max())])

    voice = _voice_controls(rng, labels, subject, envelope_ctrl)
    waveform, talking, laughing = synthesize_voice(rng, subject, voice, CONTROL_RATE, duration, sample_rate,
                                                   apex_time)  # fmt: skip
    face = _face_parameters(rng, labels, subject, envelope, frame_t, fps, talking, laughing, sample_rate)
    pose = _head_pose(rng, face[:, FACE_PARAMETER_NAMES.index("head_motion")], frame_t, fps, width, height)
    gaze = np.clip(random_walk(rng, num_frames, 2, 0.25, max(2, int(fps / 3))), -0.6, 0.6)
    eyes = _blinks(rng, num_frames, fps)

    frames, boxes = _draw_frames(FaceRenderer(subject, width, height), face, pose, eyes, gaze)
    return SyntheticClip(
        frames=frames,
        waveform=waveform,
        fps=float(fps),
        sample_rate=int(sample_rate),
        labels=labels.astype(np.float32),
        face_parameters=face.astype(np.float32),
        voice_parameters=voice.astype(np.float32),
        envelope=envelope.astype(np.float32),
        face_boxes=boxes,
        timestamps=frame_t.astype(np.float32),
        subject=subject,
    )


def _checked_labels(labels: Sequence[float] | np.ndarray) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.float64)
    if labels.shape != (len(EMOTION_NAMES),) or not np.all(np.isfinite(labels)):
        raise ValueError(f"labels must be {len(EMOTION_NAMES)} finite values, got shape {labels.shape}.")
    if labels.min() < 0 or labels.max() > 1:
        raise ValueError(f"labels must lie in [0, 1], got {labels.tolist()}.")
    return labels


def _voice_controls(rng: np.random.Generator, labels: np.ndarray, subject: SyntheticSubject,
                    envelope_ctrl: np.ndarray) -> np.ndarray:  # fmt: skip
    """Voice parameters ``[num_control, len(VOICE_PARAMETER_NAMES)]`` at ``CONTROL_RATE``."""
    voice_target = VOICE_MAPPING @ labels + rng.normal(0, 0.08, len(VOICE_PARAMETER_NAMES))
    voice = np.asarray(subject.neutral_voice) + subject.expressiveness * envelope_ctrl[:, None] * voice_target[None, :]
    voice += random_walk(rng, len(envelope_ctrl), len(VOICE_PARAMETER_NAMES), 0.04, 10)
    return np.clip(voice, VOICE_RANGE[:, 0], VOICE_RANGE[:, 1])


def _face_parameters(
    rng: np.random.Generator,
    labels: np.ndarray,
    subject: SyntheticSubject,
    envelope: np.ndarray,
    frame_t: np.ndarray,
    fps: float,
    talking: np.ndarray,
    laughing: np.ndarray,
    sample_rate: int,
) -> np.ndarray:
    """Face parameters ``[T, len(FACE_PARAMETER_NAMES)]`` per frame, the lips following the voice's syllables."""
    num_frames = len(frame_t)
    face_target = FACE_MAPPING @ labels + rng.normal(0, 0.08, len(FACE_PARAMETER_NAMES))
    face = np.asarray(subject.neutral_face) + subject.expressiveness * envelope[:, None] * face_target[None, :]
    face += random_walk(rng, num_frames, len(FACE_PARAMETER_NAMES), 0.04, max(2, int(fps / 4)))
    sample_at = np.minimum((frame_t * sample_rate).astype(np.int64), len(talking) - 1)
    window = max(1, int(sample_rate / fps / 2))
    talk = np.array([talking[max(0, i - window) : i + window].mean() for i in sample_at])
    laugh = np.array([laughing[max(0, i - window) : i + window].mean() for i in sample_at])
    face[:, 1] += 0.3 * talk + 0.5 * laugh
    face[:, 0] += 0.3 * laugh
    return np.clip(face, FACE_RANGE[:, 0], FACE_RANGE[:, 1])


def _head_pose(rng: np.random.Generator, motion: np.ndarray, frame_t: np.ndarray, fps: float, width: int,
               height: int) -> np.ndarray:  # fmt: skip
    """``[T, 5]`` (roll degrees, dx pixels, dy pixels, scale, yaw): roll, sway, nod and yaw, faster and larger with
    the ``head_motion`` parameter ``motion`` ``[T]``."""
    nod_phase = np.cumsum(2 * np.pi * (0.7 + 1.8 * motion) / fps) + rng.uniform(0, 2 * np.pi)
    slow_phase = 2 * np.pi * rng.uniform(0.2, 0.5) * frame_t + rng.uniform(0, 2 * np.pi, (3, 1))
    roll = (1.5 + 6.0 * motion) * np.sin(slow_phase[0])
    dx = (0.008 + 0.02 * motion) * width * np.sin(slow_phase[1])
    dy = (0.004 + 0.025 * motion) * height * np.sin(nod_phase)
    yaw = (0.1 + 0.35 * motion) * np.sin(slow_phase[2])
    scale = 1.0 + 0.02 * np.sin(0.5 * slow_phase[1] + 1.0)
    return np.stack([roll, dx, dy, scale, yaw], 1)


def _draw_frames(renderer: FaceRenderer, face: np.ndarray, pose: np.ndarray, eyes: np.ndarray,
                 gaze: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Frames ``[T, H, W, 3]`` uint8 and drawn face boxes ``[T, 4]`` for per-frame face parameters, pose, eye
    openness and gaze."""
    num_frames = len(face)
    frames = np.empty((num_frames, renderer.height, renderer.width, 3), np.uint8)
    boxes = np.empty((num_frames, 4), np.float32)
    for i in range(num_frames):
        frames[i], boxes[i] = renderer.render(face[i], pose[i], float(eyes[i]), (float(gaze[i, 0]), float(gaze[i, 1])))
    return frames, boxes


def _blinks(rng: np.random.Generator, num_frames: int, fps: float) -> np.ndarray:
    """Eye openness ``[T]`` in [0, 1]: blinks of 120-200 ms, about one every 3 s."""
    eyes = np.ones(num_frames)
    profile = np.array([0.45, 0.05, 0.05, 0.35, 0.8])
    for start in np.flatnonzero(rng.random(num_frames) < 0.33 / fps):
        length = int(np.clip(round(0.16 * fps), 2, len(profile)))
        prof = np.interp(np.linspace(0, len(profile) - 1, length), np.arange(len(profile)), profile)
        stop = min(num_frames, start + length)
        eyes[start:stop] = np.minimum(eyes[start:stop], prof[: stop - start])
    return eyes



def write_clip(path: str | os.PathLike, clip: SyntheticClip, *, crf: int = 23) -> Path:
    """Encode ``clip`` as an MP4 file: H.264 (yuv420p, single-threaded x264) video and AAC mono audio."""
    import av

    path = Path(path)
    num_frames, height, width, _ = clip.frames.shape
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=_fraction(clip.fps))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.options = {"preset": "veryfast", "crf": str(int(crf)), "threads": "1"}
        audio = container.add_stream("aac", rate=clip.sample_rate)
        audio.codec_context.layout = "mono"
        audio.bit_rate = 64000
        audio.codec_context.options = {"aac_coder": "fast"}
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(clip.frames[i], format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        chunk = 1024
        samples = clip.waveform.astype(np.float32)
        for start in range(0, len(samples), chunk):
            block = samples[start : start + chunk]
            frame = av.AudioFrame.from_ndarray(block[None, :], format="fltp", layout="mono")
            frame.sample_rate = clip.sample_rate
            frame.pts = start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return path


def _fraction(value: float):
    from fractions import Fraction

    return Fraction(value).limit_denominator(1001)  # 25 -> 25, 29.97 -> 2997/100, 30000/1001 stays
