"""Per-clip results (:class:`ClipData`) and the clip cache they are stored in (:class:`ClipCache`, size-capped).

With ``use_cache=True`` a processed file is stored as ``<cache_dir>/<key>.npz`` (written to a temporary file and
renamed, so a crash never leaves a half-written entry) and re-used by any later call with the same key:

``key = sha256(sha256 of the file's bytes, the settings that change the result, the library versions that
change the result, CACHE_VERSION)``

The whole file is hashed (about 1 s per GB), so an edited file never hits an old entry; an OpenFace CSV or a
separate audio file used for the clip is hashed into the key too. Arrays passed directly (decoded frames) are not
cached.

Where and how big (one rule, read by every path that caches clips):

===========================  ==================================================================================
folder                       ``cache_dir`` if given, else ``$EMI_HF_CACHE``, else ``$HF_HOME/emi_hf/clips``
                             when ``HF_HOME`` is set, else ``$XDG_CACHE_HOME/emi_hf/clips`` (default
                             ``~/.cache/emi_hf/clips``)
size cap                     ``$EMI_HF_CACHE_MAX_SIZE`` (``20GB``, ``500MB``, ``1.5GiB`` or bytes; ``0``: write
                             nothing; ``none``: no cap), default ``DEFAULT_CACHE_MAX_SIZE`` (10 GB)
eviction                     least recently used first: a hit refreshes an entry's modification time, and each
                             write removes the entries used longest ago until the folder is under the cap
inspect / empty              ``emi-hf cache info``, ``emi-hf cache clear``
===========================  ==================================================================================
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EmiUsageError
from .settings import ClipSettings

__all__ = ["CACHE_MAX_SIZE_ENV", "CACHE_VERSION", "DEFAULT_CACHE_MAX_SIZE", "ClipCache", "ClipData", "cache_root",
           "clip_cache_key", "default_cache_dir", "file_sha256", "format_size", "parse_size"]

CACHE_VERSION = 1
# the libraries whose version changes what a clip turns into
_RESULT_PACKAGES = ("av", "mediapipe", "facenet-pytorch", "opencv-contrib-python", "numpy")


CACHE_MAX_SIZE_ENV = "EMI_HF_CACHE_MAX_SIZE"
DEFAULT_CACHE_MAX_SIZE = 10 * 1000**3  # 10 GB: about 2,500 clips of 10 s at 30 fps
_STALE_TEMPORARY_S = 3600  # a temporary file this old was left by a crashed writer
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def cache_root() -> Path:
    """emi-hf's cache folder: ``$HF_HOME/emi_hf`` when ``HF_HOME`` is set (the Hugging Face home, as other
    libraries of the ecosystem do), else ``$XDG_CACHE_HOME/emi_hf``, else ``~/.cache/emi_hf``."""
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "emi_hf"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "emi_hf"


def default_cache_dir() -> Path:
    """``$EMI_HF_CACHE`` if set, else ``cache_root() / "clips"`` (see the module doc)."""
    return Path(os.environ.get("EMI_HF_CACHE") or cache_root() / "clips")


def parse_size(value, name: str = CACHE_MAX_SIZE_ENV) -> int | None:
    """Bytes of a size such as ``20GB``, ``500 MB``, ``1.5GiB``, ``123456`` (decimal units: GB = 10**9; binary:
    GiB = 2**30); ``None`` for ``none`` / ``unlimited`` (no cap). Raises ValueError naming `name` otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        text = str(value).strip().lower().replace(" ", "")
        if text in ("none", "unlimited", "inf"):
            return None
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        number, unit = (float(digits) if digits else float("nan")), text[len(digits):]
    if unit not in _UNITS or not number >= 0:
        raise EmiUsageError(f"{name}={value!r} is not a size: use e.g. 20GB, 500MB, 1.5GiB, a number of bytes, 0 (cache "
                         "nothing) or none (no cap).")
    return int(number * _UNITS[unit])


def format_size(num_bytes: int | None) -> str:
    if num_bytes is None:
        return "no cap"
    for unit, size in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if num_bytes >= size:
            return f"{num_bytes / size:.2f} {unit}"
    return f"{num_bytes} B"


def default_max_size() -> int | None:
    """The cap: ``$EMI_HF_CACHE_MAX_SIZE`` when set, else ``DEFAULT_CACHE_MAX_SIZE``."""
    value = os.environ.get(CACHE_MAX_SIZE_ENV)
    return DEFAULT_CACHE_MAX_SIZE if value in (None, "") else parse_size(value)


def file_sha256(path, block_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()


def library_versions(packages=_RESULT_PACKAGES) -> dict[str, str | None]:
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
    payload = {"cache_version": CACHE_VERSION, "settings": settings.result_dict(), "versions": library_versions()}
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


class ClipCache:
    """The clip cache folder (see the module doc): ``get`` / ``put`` by key, least-recently-used eviction under
    `max_size` bytes (default ``default_max_size()``; ``None``: no cap; 0: nothing is written), ``info``, ``clear``.

    Several processes may share a folder: a write is atomic, an entry removed by another process's eviction is a
    miss, and a temporary file left by a crashed writer is removed once it is an hour old."""

    SUFFIX = ".npz"

    def __init__(self, folder=None, max_size: int | None | str = "default"):
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.max_size = default_max_size() if max_size == "default" else (
            None if max_size is None else parse_size(max_size, "max_size"))

    def path(self, key: str) -> Path:
        return self.folder / f"{key}{self.SUFFIX}"

    def get(self, key: str) -> ClipData | None:
        """The entry of `key` (its use time refreshed), or None when there is none or it cannot be read."""
        path = self.path(key)
        try:
            clip = ClipData.load(path)
        except FileNotFoundError:
            return None
        except Exception as error:  # a damaged entry: recompute and overwrite
            warnings.warn(f"ignoring unreadable cache entry {path} ({error})", UserWarning, stacklevel=3)
            return None
        try:
            os.utime(path)  # most recently used (atime is unreliable: noatime / relatime mounts)
        except OSError:
            pass
        return clip

    def put(self, key: str, clip: ClipData) -> bool:
        """Stores `clip` under `key`, then evicts down to the cap; False when it was not kept (cap 0, larger than
        the cap, or the folder is not writable: a warning says so, the caller goes on without the cache)."""
        if self.max_size == 0:
            return False
        path = self.path(key)
        try:
            clip.save(path)
        except OSError as error:
            warnings.warn(f"could not write the clip cache {path} ({error}); continuing without it", UserWarning,
                          stacklevel=3)
            return False
        self.evict()
        return path.exists()

    def entries(self) -> list[tuple[Path, int, float]]:
        """``(path, bytes, last use)`` of every entry, least recently used first."""
        found = []
        try:
            listing = list(os.scandir(self.folder))
        except FileNotFoundError:
            return []
        for entry in listing:
            if entry.name.endswith(self.SUFFIX) and entry.is_file(follow_symlinks=False):
                try:
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed meanwhile by another process
                    continue
                found.append((Path(entry.path), stat.st_size, stat.st_mtime))
        return sorted(found, key=lambda item: (item[2], item[0].name))

    def evict(self) -> list[Path]:
        """Removes least-recently-used entries until the folder holds at most `max_size` bytes, and stale
        temporary files; returns the entries removed."""
        self._remove_stale_temporaries()
        if self.max_size is None:
            return []
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        removed = []
        for path, size, _ in entries:
            if total <= self.max_size:
                break
            path.unlink(missing_ok=True)
            removed.append(path)
            total -= size
        return removed

    def _remove_stale_temporaries(self) -> None:
        now = time.time()
        for path in self.folder.glob("*.tmp"):
            try:
                if now - path.stat().st_mtime > _STALE_TEMPORARY_S:
                    path.unlink(missing_ok=True)
            except FileNotFoundError:
                continue

    def info(self) -> dict:
        """Folder, entries, bytes, cap, and the last use of the oldest / newest entry (epoch seconds)."""
        entries = self.entries()
        return {"folder": str(self.folder), "entries": len(entries), "bytes": sum(size for _, size, _ in entries),
                "max_size": self.max_size, "oldest_use": entries[0][2] if entries else None,
                "newest_use": entries[-1][2] if entries else None}

    def clear(self) -> tuple[int, int]:
        """Removes every entry (and temporary file); returns (entries removed, bytes freed)."""
        count = freed = 0
        for path, size, _ in self.entries():
            path.unlink(missing_ok=True)
            count, freed = count + 1, freed + size
        for path in self.folder.glob("*.tmp") if self.folder.is_dir() else ():
            path.unlink(missing_ok=True)
        return count, freed
