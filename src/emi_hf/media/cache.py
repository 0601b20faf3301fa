"""Per-clip results (:class:`ClipData`) and the clip cache they are stored in.

With ``use_cache=True`` a processed file is stored as ``<cache_dir>/<key>.npz`` (written to a temporary file and
renamed, so a crash never leaves a half-written entry) and re-used by any later call with the same key:

``key = sha256(sha256 of the file's bytes, the settings that change the result, the library versions that
change the result, CACHE_VERSION)``

The whole file is hashed (about 1 s per GB), so an edited file never hits an old entry; an OpenFace CSV or a
separate audio file used for the clip is hashed into the key too. The cache folder is ``cache_dir`` if given,
else the environment variable ``EMI_HF_CACHE``, else ``~/.cache/emi_hf/clips``. Arrays passed directly (decoded
frames) are not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .settings import ClipSettings

__all__ = ["CACHE_VERSION", "ClipData", "clip_cache_key", "default_cache_dir", "file_sha256"]

CACHE_VERSION = 1
# the libraries whose version changes what a clip turns into
_RESULT_PACKAGES = ("av", "mediapipe", "facenet-pytorch", "opencv-contrib-python", "numpy")


def default_cache_dir() -> Path:
    """``$EMI_HF_CACHE`` if set, else ``~/.cache/emi_hf/clips``."""
    return Path(os.environ.get("EMI_HF_CACHE") or Path.home() / ".cache" / "emi_hf" / "clips")


def file_sha256(path, block_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()


def _library_versions(packages=_RESULT_PACKAGES) -> dict[str, str | None]:
    """The installed version of each of `packages` (``None`` when one is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return versions


def clip_cache_key(settings: ClipSettings, path, au_file=None, audio=None, models: dict | None = None) -> str:
    """The cache key of a file processed with `settings` (see module doc); `au_file` counts only for the
    ``openface`` AU backend, `audio` is a separate audio file, `models` the SHA-256 of model files that are not part
    of an installed package (the Tasks face landmarker's, see :meth:`ClipPipeline.model_identities`)."""
    payload = {"cache_version": CACHE_VERSION, "settings": settings.result_dict(), "versions": _library_versions()}
    if models:
        payload["models"] = dict(models)
    payload["video"] = file_sha256(path)
    if settings.au_backend == "openface":
        payload["au_file"] = file_sha256(au_file) if au_file is not None else None
    if audio is not None:
        payload["audio"] = file_sha256(audio)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class ClipData:
    """Per-clip results, numpy only (T = frames at the target rate; S = audio samples).

    Attributes:
        face_crops: uint8 ``[T, face_size, face_size, 3]`` aligned RGB crops (zeros where ``frame_mask`` is 0).
        au_intensities: float32 ``[T, n_au]`` AU intensities in [0, 5], order ``metadata["au_names"]``.
        frame_mask: int8 ``[T]``, 1 = the frame has the subject's face.
        timestamps: float64 ``[T]`` real presentation time (s) of the source frame behind each frame.
        face_boxes: float32 ``[T, 4]`` subject box ``x0, y0, x1, y1`` in source pixels (NaN without a face).
        waveform: float32 ``[S]`` 16 kHz mono, peak-normalised; ``None`` when the clip has no (usable) audio.
        metadata: dict, see :meth:`emi_hf.media.ClipPipeline.process`.
        face_embeddings: float32 ``[T, D]`` face embeddings (zeros where ``frame_mask`` is 0) when the clip was
            processed with a ``face_embedder``, else ``None``. Never written to the cache (they depend on the model).
    """

    face_crops: np.ndarray
    au_intensities: np.ndarray
    frame_mask: np.ndarray
    timestamps: np.ndarray
    face_boxes: np.ndarray
    waveform: np.ndarray | None
    metadata: dict = field(default_factory=dict)
    face_embeddings: np.ndarray | None = None

    @property
    def has_crops(self) -> bool:
        """False when the crops were not kept (``keep_crops=False``): ``face_crops`` is then empty."""
        return self.face_crops.shape[0] == self.num_frames

    @property
    def num_frames(self) -> int:
        return int(self.frame_mask.shape[0])

    @property
    def face_fraction(self) -> float:
        return float(self.frame_mask.mean()) if self.num_frames else 0.0

    @property
    def audio_present(self) -> bool:
        return self.waveform is not None

    def save(self, path) -> None:
        """Writes an .npz atomically (temporary file in the same folder, then ``os.replace``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "face_crops": self.face_crops,
            "au_intensities": self.au_intensities,
            "frame_mask": self.frame_mask,
            "timestamps": self.timestamps,
            "face_boxes": self.face_boxes,
            "waveform": self.waveform if self.waveform is not None else np.zeros(0, np.float32),
            "has_waveform": np.array(self.waveform is not None),
            "metadata": np.array(json.dumps(self.metadata)),
        }
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.stem + ".", suffix=".tmp", delete=False)
        try:
            with handle:
                np.savez_compressed(handle, **arrays)
            os.replace(handle.name, path)
        except BaseException:
            try:
                os.unlink(handle.name)
            except OSError:
                pass
            raise

    @classmethod
    def load(cls, path) -> "ClipData":
        with np.load(path, allow_pickle=False) as data:
            waveform = data["waveform"] if bool(data["has_waveform"]) else None
            return cls(face_crops=data["face_crops"], au_intensities=data["au_intensities"],
                       frame_mask=data["frame_mask"], timestamps=data["timestamps"], face_boxes=data["face_boxes"],
                       waveform=waveform, metadata=json.loads(str(data["metadata"])))
