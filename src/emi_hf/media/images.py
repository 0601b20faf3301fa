"""Clips given as pre-cropped face images (``face_images/<id>/<n>.jpg``, as Hume-Vidmimic2 distributes them) and
clips whose audio comes from a separate file.

**Face images.** ``<n>`` is the frame number: frame ``n`` is shown at ``(n - first) / fps`` seconds, ``fps`` the
configurable rate of the numbering (``DEFAULT_FACE_IMAGE_FPS``). A gap in the numbering (a frame without a saved
face) repeats the previous image, the nearest-frame rule of videos, so times stay those of the numbering. The images
are taken as face crops (no detection; every frame is the subject's face, resized to the crop size) and go through
the same pipeline as video frames (frame-rate conversion to the processor's rate, AUs, face embeddings).

**Audio.** [`process_clip_inputs`] uses the clip's separate audio file when the video has no audio track (or there
is no video), else the video's own track.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from pathlib import Path

import numpy as np

from ..errors import EmiUsageError
from .errors import EmiInputError

DEFAULT_FACE_IMAGE_FPS = 30.0  # rate of the face-image numbering (Hume-Vidmimic2 videos are about 30 fps)
FACE_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
MAX_FACE_IMAGE_GAP = 300  # more missing numbers than this in a row: the numbering is not frame numbers
_NUMBER = re.compile(r"(\d+)$")
_PIPELINES: dict = {}
_PIPELINES_LOCK = threading.Lock()


def face_image_files(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """(frame number, file) of the face images of a clip folder, sorted by number; raises `EmiInputError` when there
    is none, or a name holds no number."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EmiInputError(str(folder), "no such face-image folder.")
    files = []
    for path in folder.iterdir():
        if path.name.startswith(".") or path.suffix.lower() not in FACE_IMAGE_EXTENSIONS:
            continue
        match = _NUMBER.search(path.stem)
        if match is None:
            raise EmiInputError(str(path), "a face image must be named by its frame number (e.g. 12.jpg).")
        files.append((int(match.group(1)), path))
    if not files:
        raise EmiInputError(str(folder), f"no face images ({'/'.join(FACE_IMAGE_EXTENSIONS)}) in the folder.")
    files.sort()
    return files


def load_face_images(folder: str | os.PathLike, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A clip's face images as RGB uint8 frames ``[T, size, size, 3]`` on the numbering's grid (gaps filled with the
    previous image), and the frame numbers ``[T]`` (first number + 0, 1, ...)."""
    import cv2

    files = face_image_files(folder)
    numbers = [n for n, _ in files]
    if len(numbers) != len(set(numbers)):
        raise EmiInputError(str(folder), "two face images have the same frame number.")
    gaps = np.diff(numbers)
    if len(gaps) and int(gaps.max()) > MAX_FACE_IMAGE_GAP:
        raise EmiInputError(str(folder), f"the frame numbers jump by {int(gaps.max())}; name the images by frame "
                                         f"number (0.jpg, 1.jpg, ...).")  # fmt: skip
    images = []
    for _, path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise EmiInputError(str(path), "not a readable image.")
        if image.shape[:2] != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    first = numbers[0]
    grid = np.searchsorted(numbers, np.arange(first, numbers[-1] + 1), side="right") - 1
    return np.stack(images)[grid], np.arange(first, numbers[-1] + 1)


def _crop_pipeline(settings):
    """A ClipPipeline with `settings` but no face detector (its frames are face crops), built once per settings."""
    from .pipeline import ClipPipeline

    crop_settings = dataclasses.replace(settings, face_detector=None)
    with _PIPELINES_LOCK:
        if crop_settings not in _PIPELINES:
            _PIPELINES.clear()  # one entry: the settings of the run in progress
            _PIPELINES[crop_settings] = ClipPipeline(crop_settings)
        return _PIPELINES[crop_settings]


def process_face_images(settings, folder, audio=None, face_image_fps: float = DEFAULT_FACE_IMAGE_FPS,
                        face_embedder=None, keep_crops: bool | None = None):
    """One clip from its face images (and optional audio file) -> `ClipData`, with the media `settings` (a
    `ClipSettings`, e.g. ``processor.clip_settings()``) except detection."""
    if not face_image_fps or face_image_fps <= 0:
        raise EmiUsageError(f"face_image_fps must be > 0, got {face_image_fps!r}.")
    frames, _ = load_face_images(folder, settings.face_size)
    clip = _crop_pipeline(settings).process(frames, audio=None if audio is None else os.fspath(audio),
                                            video_fps=float(face_image_fps), use_cache=False,
                                            face_embedder=face_embedder, keep_crops=keep_crops)  # fmt: skip
    clip.metadata.update(path=os.fspath(folder), face_source="images", face_image_fps=float(face_image_fps))
    return clip


FACE_SOURCES = ("detect", "images")


def clip_side_inputs(record, face_source: str = "detect", face_image_fps: float = DEFAULT_FACE_IMAGE_FPS) -> dict:
    """The keyword arguments of [`process_clip_inputs`] for a data-set clip (a record with ``path``,
    ``audio_path`` and ``face_dir``); ``{}`` for a plain video.

    ``face_source="detect"``: faces are detected in the video; a clip without a video uses its face images.
    ``"images"``: a clip's face images replace detection whenever it has them.
    """
    if face_source not in FACE_SOURCES:
        raise EmiUsageError(f"face_source must be one of {FACE_SOURCES}, got {face_source!r}.")
    inputs = {}
    face_dir = getattr(record, "face_dir", None)
    if face_dir is not None and (face_source == "images" or record.path is None):
        inputs.update(face_dir=face_dir, face_image_fps=face_image_fps)
    if getattr(record, "audio_path", None) is not None:
        inputs["audio"] = record.audio_path
    return inputs


def process_clip_inputs(processor, video=None, *, audio=None, face_dir=None,
                        face_image_fps: float = DEFAULT_FACE_IMAGE_FPS, face_embedder=None,
                        keep_crops: bool | None = None):
    """A clip given by its video and / or side inputs -> `ClipData` through `processor` (an `EmiProcessor`).

    `face_dir` (pre-cropped faces) replaces the video's frames and detection; `audio` (a file) is used when there is
    no video or the video has no audio track.
    """
    from .decoding import probe_media

    if face_dir is not None:
        if audio is None and video is not None and probe_media(video).has_audio:
            audio = video  # the video's own track
        return process_face_images(processor.clip_settings(), face_dir, audio, face_image_fps, face_embedder,
                                   keep_crops)  # fmt: skip
    if video is None:
        if audio is None:
            raise EmiInputError(None, "the clip has no video, no face images and no audio file.")
        return processor.process_clip(None, audio=os.fspath(audio), face_embedder=face_embedder,
                                      keep_crops=keep_crops)  # fmt: skip
    if audio is not None and not probe_media(video).has_audio:
        return processor.process_clip(os.fspath(video), audio=os.fspath(audio), face_embedder=face_embedder,
                                      keep_crops=keep_crops)  # fmt: skip
    return processor.process_clip(os.fspath(video), face_embedder=face_embedder, keep_crops=keep_crops)
