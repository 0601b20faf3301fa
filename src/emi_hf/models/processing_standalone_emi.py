"""What EmiProcessor does without emi-hf's media package: the processor's remote-code copy (next to the weights,
loaded with `AutoProcessor.from_pretrained(folder, trust_remote_code=True)` in a Python without emi-hf) takes face
crops and waveforms, and uses the stand-ins below for the media package's settings, errors and checks.

This file is copied next to the weights with ``processing_emi.py``: it imports only numpy and the other ``*_emi.py``
files (relatively). Inside emi-hf the real classes (``emi_hf.media``) are used; the stand-ins' defaults are
ClipSettings' (tests/test_processor.py compares them).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .configuration_emi import DEFAULT_AU_NAMES

MEDIA_INSTALL_HINT = (
    "install emi-hf, which brings it (it is not on PyPI yet: `pip install .` in a clone of the emi-hf repository, "
    "or `pip install` of a wheel built from it)"
)
MAX_AUDIO_CHANNELS = 8  # emi_hf.media.decoding's: more rows than this in a 2-D audio array are not channels
SILENCE_PEAK = 1e-6  # emi_hf.media.pipeline's: a waveform whose peak stays below this is digital silence


class EmiUsageError(ValueError):
    """A setting or call that cannot work (emi_hf.errors.EmiUsageError where emi-hf is installed)."""

    emi_known_error = True


class EmiInputError(ValueError):
    """An input that cannot be processed (emi_hf.media.EmiInputError where emi-hf is installed)."""

    emi_known_error = True

    def __init__(self, path, message: str):
        super().__init__(f"{path}: {message}" if path else message)


def check_au_names(processor_au_names, model_au_names, where: str = "") -> None:
    """ValueError when a processor's AU list differs from a model config's (emi_hf.media.au.check_au_names)."""
    if list(processor_au_names) != list(model_au_names):
        raise EmiUsageError(f"AU mismatch{' (' + where + ')' if where else ''}: the processor gives "
                            f"{list(processor_au_names)} but the model expects {list(model_au_names)}.")


def rows_are_channels(array) -> bool:
    return array.shape[0] <= MAX_AUDIO_CHANNELS


ClipSettings = dataclasses.make_dataclass(  # the saved settings, unchecked (emi_hf.media.ClipSettings checks them)
    "ClipSettings",
    [("target_fps", Any, 30.0), ("face_detector", Any, "mtcnn"), ("detect_every", Any, 10),
     ("detect_max_side", Any, None), ("min_face_score", Any, None), ("subject", Any, "tracked"),
     ("face_size", Any, 112), ("face_alignment", Any, "arcface"), ("mesh_refine", Any, True),
     ("mediapipe_backend", Any, "auto"),
     ("au_backend", Any, "mediapipe"), ("au_names", Any, tuple(DEFAULT_AU_NAMES)),
     ("au_neutral_baseline", Any, False), ("au_baseline_percentile", Any, 10.0),
     ("openface_match", Any, "timestamp"), ("sampling_rate", Any, 16000), ("audio_peak_db", Any, -3.0),
     ("max_frames", Any, None), ("max_duration", Any, None), ("chunk_size", Any, 32), ("use_cache", Any, True)],
    frozen=True, namespace={
        "saved_fields": classmethod(lambda cls: tuple(f.name for f in dataclasses.fields(cls)
                                                      if f.name != "sampling_rate")),
        "to_dict": lambda self: {**{name: getattr(self, name) for name in self.saved_fields()},
                                 "au_names": list(self.au_names)}})


def channels_last(frames):
    """Frames `[..., 3, H, W]` (channels first, as transformers' video processors also take them) -> `[..., H, W,
    3]`; channels-last frames (and paths, None) pass unchanged. A shape that reads both ways (`[T, 3, H, 3]`) is
    taken as channels last, as before."""
    if isinstance(frames, np.ndarray) and frames.ndim >= 3 and frames.shape[-3] in (1, 3) \
            and frames.shape[-1] not in (1, 3):
        return np.ascontiguousarray(np.moveaxis(frames, -3, -1))
    return frames


def standalone_frames(video, max_frames, max_duration, fps: float) -> np.ndarray:
    """Face crops given as frames (uint8, or floats in [0, 1] / [0, 255]; `[T, H, W, 3]` or `[T, 3, H, W]`) ->
    uint8 `[T, H, W, 3]`, cut to `max_frames` / `max_duration` (the media pipeline's `_as_rgb_frames` and cuts)."""
    frames = channels_last(np.asarray(video))
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise EmiInputError(None, "decoded video frames must be RGB [T, H, W, 3] or [T, 3, H, W], got shape "
                                  f"{frames.shape}.")
    if frames.dtype != np.uint8:
        if frames.dtype.kind == "f" and frames.size and float(np.nanmax(frames)) <= 1.0:
            frames = frames * 255.0
        frames = np.clip(np.nan_to_num(frames), 0, 255).astype(np.uint8)
    limit = len(frames) if max_frames is None else int(max_frames)
    if max_duration is not None:
        limit = min(limit, max(1, int(np.ceil(float(max_duration) * fps - 1e-9))))
    return frames[:limit]


def standalone_waveform(waveform, peak_db, sampling_rate: int, span: float | None) -> np.ndarray | None:
    """A mono float32 waveform at the processor's rate, cut to `span` seconds, peak-normalised to `peak_db`."""
    waveform = np.asarray(waveform, np.float32)
    if waveform.ndim == 2:
        waveform = waveform.mean(axis=0 if rows_are_channels(waveform) else 1)
    if span is not None:
        waveform = waveform[:int(round(span * sampling_rate))]
    if peak_db is not None and waveform.size and float(np.max(np.abs(waveform))) > 1e-9:
        waveform = (waveform * (10.0 ** (peak_db / 20.0) / float(np.max(np.abs(waveform))))).astype(np.float32)
    if float(np.max(np.abs(waveform), initial=0.0)) < SILENCE_PEAK:  # digital silence is masked
        return None
    return waveform
