"""One clip in, numpy results out: decode -> faces -> alignment -> AUs, plus audio; with a clip-level cache.

:class:`ClipPipeline` runs the whole path for one clip and returns a :class:`ClipData`; the processor batches
them into tensors. Frames are handled in chunks of ``chunk_size`` (decoded in a background thread), so memory never
holds more than about two chunks of full frames. By default the 112x112 crops of the clip are kept (37 KB a frame);
with a ``face_embedder`` they are embedded in a second background thread chunk by chunk and not kept, so memory
does not grow with the clip's length beyond its per-frame outputs.

The cache
---------
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
import queue
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from ..configuration_emi import DEFAULT_AU_NAMES
from .alignment import align_face
from .au import MediaPipeAUBackend, OpenFaceAUBackend, PyFaceAUBackend, build_au_backend, fill_missing
from .decoding import SourceFrame, _DecodeReport, decode_audio, iter_video_frames, load_audio, probe_media
from .errors import EmiInputError
from .faces import FaceMeshLandmarker, SubjectTracker, build_face_detector

__all__ = ["CACHE_VERSION", "ClipSettings", "ClipData", "ClipPipeline", "default_cache_dir", "embed_kept_crops",
           "file_sha256"]

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$EMI_HF_CACHE`` if set, else ``~/.cache/emi_hf/clips``."""
    return Path(os.environ.get("EMI_HF_CACHE") or Path.home() / ".cache" / "emi_hf" / "clips")


def file_sha256(path, block_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ClipSettings:
    """Everything that changes what a clip turns into (the processor's media settings)."""

    target_fps: float | None = 30.0
    face_detector: str | None = "mtcnn"
    detect_every: int = 10
    detect_max_side: int | None = None  # None: the detector's default (mtcnn 320 px, mediapipe 640 px)
    min_face_score: float | None = None  # None: the detector's default (mtcnn 0.9, mediapipe 0.5)
    subject: str = "tracked"
    face_size: int = 112
    mesh_refine: bool = True
    au_backend: str | None = "mediapipe"
    au_names: tuple[str, ...] = tuple(DEFAULT_AU_NAMES)
    au_neutral_baseline: bool = False
    au_baseline_percentile: float = 10.0
    openface_match: str = "timestamp"
    sampling_rate: int = 16000
    audio_peak_db: float | None = -3.0
    max_frames: int | None = None
    max_duration: float | None = None
    chunk_size: int = 32  # does not change results

    def __post_init__(self):
        object.__setattr__(self, "au_names", tuple(self.au_names))
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {self.max_frames}")
        if self.max_duration is not None and self.max_duration <= 0:
            raise ValueError(f"max_duration must be > 0 or None, got {self.max_duration}")

    def cache_dict(self) -> dict:
        """The settings and library versions that the cache key depends on."""
        from importlib.metadata import PackageNotFoundError, version

        settings = {k: v for k, v in asdict(self).items() if k != "chunk_size"}
        settings["au_names"] = list(self.au_names)
        versions = {}
        for package in ("av", "mediapipe", "facenet-pytorch", "opencv-contrib-python", "numpy"):
            try:
                versions[package] = version(package)
            except PackageNotFoundError:
                versions[package] = None
        return {"cache_version": CACHE_VERSION, "settings": settings, "versions": versions}


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
        metadata: dict, see :meth:`ClipPipeline.process`.
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


def _resample_array_frames(times: np.ndarray, target_fps: float | None, max_frames: int | None,
                           max_duration: float | None) -> list[tuple[int, int]]:
    """(source index, repeat) pairs for frames at `times`, by the nearest-frame rule of decoding.py."""
    if len(times) == 0:
        return []
    t0 = float(times[0])
    if target_fps is None:
        keep = [(i, 1) for i in range(len(times)) if max_duration is None or times[i] - t0 < max_duration - 1e-9]
        return keep[:max_frames] if max_frames else keep
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / target_fps
    end = float(times[-1]) + step / 2
    count = int(np.floor((end - t0) * target_fps - 1e-9)) + 1
    if max_frames is not None:
        count = min(count, max_frames)
    if max_duration is not None:
        count = min(count, int(np.ceil(max_duration * target_fps - 1e-9)))
    grid = t0 + np.arange(max(count, 1)) / target_fps
    nearest = np.clip(np.searchsorted(times, grid), 1, len(times) - 1) if len(times) > 1 else np.zeros(len(grid), int)
    if len(times) > 1:
        nearest = np.where(np.abs(grid - times[nearest - 1]) <= np.abs(times[nearest] - grid), nearest - 1, nearest)
    pairs: list[tuple[int, int]] = []
    for index in nearest:
        if pairs and pairs[-1][0] == index:
            pairs[-1] = (index, pairs[-1][1] + 1)
        else:
            pairs.append((int(index), 1))
    return pairs


def embed_kept_crops(embedder: Callable[[np.ndarray], np.ndarray], face_crops: np.ndarray, frame_mask: np.ndarray,
                     chunk_size: int = 128) -> np.ndarray:
    """Embeddings ``[T, D]`` of a clip's kept crops: face frames only (zeros elsewhere), `chunk_size` crops per
    embedder call. A crop equal to the previous frame's (a source frame repeated by the frame-rate conversion) is
    embedded once. `D` comes from the embedder's output, or its ``dim`` attribute when no frame has a face."""
    mask = np.asarray(frame_mask).astype(bool)
    repeat = np.zeros_like(mask)
    flat = face_crops.reshape(len(mask), -1)
    for start in range(1, len(mask), chunk_size):  # in chunks: a whole-clip comparison would double the crops' memory
        stop = min(start + chunk_size, len(mask))
        repeat[start:stop] = (flat[start:stop] == flat[start - 1 : stop - 1]).all(1)
    repeat &= mask & np.roll(mask, 1)
    distinct = np.flatnonzero(mask & ~repeat)
    out = None
    for start in range(0, len(distinct), chunk_size):
        index = distinct[start : start + chunk_size]
        embeddings = np.asarray(embedder(face_crops[index]), np.float32)
        if out is None:
            out = np.zeros((len(mask), embeddings.shape[1]), np.float32)
        out[index] = embeddings
    if out is None:
        return np.zeros((len(mask), int(getattr(embedder, "dim", 0))), np.float32)
    source = np.maximum.accumulate(np.where(mask & ~repeat, np.arange(len(mask)), 0))
    out[repeat] = out[source[repeat]]
    return out


class _EmbeddingWorker:
    """Runs a face embedder on chunks of crops in a background thread (the backbone overlaps decoding, detection
    and the face mesh); at most `max_pending` chunks wait, so crops never pile up."""

    def __init__(self, embedder: Callable[[np.ndarray], np.ndarray], max_pending: int = 2):
        self.embedder = embedder
        self.results: dict[int, np.ndarray] = {}
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self.thread = threading.Thread(target=self._run, name="emi-face-embedder", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # drain after a failure
            rows, crops = item
            try:
                embeddings = np.asarray(self.embedder(crops), np.float32)
                if embeddings.shape[0] != len(rows):
                    raise ValueError(f"the face embedder returned {embeddings.shape[0]} rows for {len(rows)} crops")
                for row, embedding in zip(rows, embeddings):
                    self.results[row] = embedding
            except BaseException as error:  # re-raised in the calling thread by finish()
                self.error = error

    def submit(self, rows: list[int], crops: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((rows, crops))

    def finish(self, count: int) -> np.ndarray:
        """Waits for every chunk; per-row embeddings ``[count, D]`` (zeros for rows without a face)."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        dim = next(iter(self.results.values())).shape[0] if self.results else int(getattr(self.embedder, "dim", 0))
        out = np.zeros((count, dim), np.float32)
        for row, embedding in self.results.items():
            out[row] = embedding
        return out

    def cancel(self) -> None:
        """Stops the thread after an error in the calling thread (no-op once finished)."""
        if self.thread.is_alive():
            self.error = self.error or RuntimeError("cancelled")
            while True:  # make room for the sentinel
                try:
                    self.queue.put_nowait(None)
                    break
                except queue.Full:
                    try:
                        self.queue.get_nowait()
                    except queue.Empty:
                        pass
            self.thread.join()


class ClipPipeline:
    """The media path for one clip at a time, with the given :class:`ClipSettings`."""

    def __init__(self, settings: ClipSettings | None = None, openface_dir: str | None = None):
        self.settings = settings or ClipSettings()
        self.openface_dir = openface_dir
        s = self.settings
        self.au_backend = build_au_backend(s.au_backend, s.au_names, neutral_baseline=s.au_neutral_baseline,
                                           baseline_percentile=s.au_baseline_percentile, match=s.openface_match,
                                           csv_dir=openface_dir)
        self._detector = None
        if s.face_detector is not None:
            from .faces import FACE_DETECTORS, SUBJECT_POLICIES

            if s.face_detector not in FACE_DETECTORS:
                raise ValueError(f"face_detector must be one of {sorted(FACE_DETECTORS)} or None, "
                                 f"got {s.face_detector!r}")
            if s.subject not in SUBJECT_POLICIES:
                raise ValueError(f"subject must be one of {SUBJECT_POLICIES}, got {s.subject!r}")

    @property
    def detector(self):
        """The face detector, built on first use (MTCNN weights load in about a second)."""
        if self._detector is None and self.settings.face_detector is not None:
            self._detector = build_face_detector(self.settings.face_detector, max_side=self.settings.detect_max_side,
                                                 min_score=self.settings.min_face_score)
        return self._detector

    # -- cache ----------------------------------------------------------------------------------------------
    def cache_key(self, path, au_file=None, audio=None) -> str:
        payload = self.settings.cache_dict()
        payload["video"] = file_sha256(path)
        if self.settings.au_backend == "openface":
            payload["au_file"] = file_sha256(au_file) if au_file is not None else None
        if audio is not None:
            payload["audio"] = file_sha256(audio)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    # -- main entry -----------------------------------------------------------------------------------------
    def process(self, video=None, audio=None, au_file=None, video_fps: float | None = None,
                audio_sampling_rate: int | None = None, use_cache: bool = True, cache_dir=None,
                face_embedder: Callable[[np.ndarray], np.ndarray] | None = None,
                keep_crops: bool | None = None) -> ClipData:
        """Processes one clip.

        Args:
            video: a file path (any container / codec PyAV reads; an audio-only file gives zero frames), or decoded
                RGB uint8 frames ``[T, H, W, 3]`` (or one frame ``[H, W, 3]``) at `video_fps` (default: the target
                rate), or ``None`` (audio only).
            audio: optional separate audio: a file path or a waveform array at `audio_sampling_rate` (default 16
                kHz). When given it replaces the video's own audio track.
            au_file: the OpenFace CSV of this clip (``au_backend="openface"``).
            use_cache / cache_dir: the clip cache (see module doc); only file inputs are cached.
            face_embedder: optional ``crops uint8 [n, S, S, 3] -> float32 [n, D]`` (see
                :class:`emi_hf.data.features.FaceEmbedder`). It runs in a background thread on each chunk's new
                face crops while the next chunk is decoded and tracked, once per source frame (frames repeated by
                the frame-rate conversion are not embedded again), and fills ``ClipData.face_embeddings``. On a
                cache hit it embeds the cached crops.
            keep_crops: keep the face crops in ``ClipData.face_crops`` (default: True without a `face_embedder`,
                False with one). Without them memory no longer grows with the clip's length (37 KB a frame);
                the clip is then not written to the cache, which stores crops.

        Returns a :class:`ClipData`; ``metadata`` has ``path, fps, source_fps, timestamps, num_frames,
        face_fraction, audio_present, video_present, duration, face_boxes, au_names, au_backend, au_fraction,
        face_detector, tracks, track_ids (subject track per frame, None without a face), detector_runs,
        sampling_rate, num_samples, audio_start, warnings, cache_hit, cache_key, seconds, visual_seconds`` and,
        for files, ``media`` (what the container declares).

        Raises :class:`EmiInputError` for inputs that cannot be used (see :mod:`emi_hf.media.errors`).
        """
        if video is None and audio is None:
            raise EmiInputError(None, "nothing to process: pass a video (path or frames) and/or audio.")
        is_file = isinstance(video, (str, os.PathLike))
        audio_is_file = isinstance(audio, (str, os.PathLike))
        if self.settings.au_backend == "openface" and is_file and au_file is None:
            au_file = self.au_backend.find_csv(os.fspath(video))
        key = None
        cache_path = None
        if use_cache and is_file and (audio is None or audio_is_file):
            probe_media(video)  # clear errors before hashing
            key = self.cache_key(video, au_file, audio)
            cache_path = Path(cache_dir or default_cache_dir()) / f"{key}.npz"
            if cache_path.is_file():
                try:
                    clip = ClipData.load(cache_path)
                    clip.metadata.update(path=os.fspath(video), cache_hit=True, cache_key=key)
                    if face_embedder is not None:
                        clip.face_embeddings = embed_kept_crops(face_embedder, clip.face_crops, clip.frame_mask,
                                                                self.settings.chunk_size)
                    return clip
                except Exception as error:  # a damaged entry: recompute and overwrite
                    warnings.warn(f"ignoring unreadable cache entry {cache_path} ({error})", UserWarning, stacklevel=2)
        keep_crops = face_embedder is None if keep_crops is None else bool(keep_crops)
        clip = self._process(video, audio, au_file, video_fps, audio_sampling_rate, face_embedder, keep_crops)
        clip.metadata.update(cache_hit=False, cache_key=key)
        if cache_path is not None and keep_crops:
            try:
                clip.save(cache_path)
            except OSError as error:
                warnings.warn(f"could not write the clip cache {cache_path} ({error}); continuing without it",
                              UserWarning, stacklevel=2)
        return clip

    def _process(self, video, audio, au_file, video_fps, audio_sampling_rate, face_embedder=None,
                 keep_crops: bool = True) -> ClipData:
        s = self.settings
        started = time.perf_counter()
        notes: list[str] = []
        media_info = None
        path = None
        report = _DecodeReport()
        if isinstance(video, (str, os.PathLike)):
            path = os.fspath(video)
            media_info = probe_media(path)
            source_fps = media_info.fps
            frames_iter = iter_video_frames(path, s.target_fps, s.max_frames, s.max_duration, report=report,
                                            queue_size=max(8, s.chunk_size))
        elif video is not None:
            frames = np.asarray(video)
            if frames.ndim == 3:
                frames = frames[None]
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
                raise EmiInputError(None, f"decoded video frames must be RGB [T, H, W, 3], got shape {frames.shape}.")
            if frames.dtype != np.uint8:
                if frames.dtype.kind == "f" and frames.size and float(np.nanmax(frames)) <= 1.0:
                    frames = frames * 255.0
                frames = np.clip(np.nan_to_num(frames), 0, 255).astype(np.uint8)
            source_fps = float(video_fps or s.target_fps or 30.0)
            times = np.arange(len(frames)) / source_fps
            pairs = _resample_array_frames(times, s.target_fps, s.max_frames, s.max_duration)
            frames_iter = (SourceFrame(frames[i], float(times[i]), i, r) for i, r in pairs)
        else:
            source_fps = None
            frames_iter = iter(())

        visual = self._visual(frames_iter, face_embedder, keep_crops)
        num_frames = len(visual["timestamps"])
        if media_info is not None:
            notes.extend(report.warnings)
            if media_info.num_frames and report.decoded < 0.9 * media_info.num_frames and s.max_frames is None \
                    and s.max_duration is None and not report.stopped_early:
                notes.append(f"only {report.decoded} of the {media_info.num_frames} frames the container declares "
                             "could be decoded; the file looks truncated.")
        frame_mask = visual["face"].astype(np.int8)
        au = self._au_values(visual, path, au_file)
        au_fraction = float(np.isfinite(au).all(axis=1)[visual["face"]].mean()) if frame_mask.any() else 0.0
        au = fill_missing(au, visual["face"])

        # audio
        waveform = None
        audio_track = False
        t0 = float(visual["timestamps"][0]) if num_frames else None
        max_audio = s.max_duration  # the audio covers the same span as the frames
        if s.max_frames is not None and (s.target_fps or source_fps):
            max_audio = min(max_audio or np.inf, s.max_frames / (s.target_fps or source_fps))
        if audio is not None:
            waveform = load_audio(audio, s.sampling_rate, s.audio_peak_db, source_rate=audio_sampling_rate,
                                  max_duration=max_audio if max_audio != np.inf else None)
            audio_track = True
        elif path is not None and media_info.has_audio:
            audio_track = True
            waveform, _ = decode_audio(path, s.sampling_rate, s.audio_peak_db,
                                       max_duration=max_audio if max_audio != np.inf else None,
                                       start_time=t0, warnings_out=notes)
        if waveform is not None and float(np.max(np.abs(waveform), initial=0.0)) < 1e-6:
            notes.append("the audio track is digital silence; audio is masked.")
            waveform = None

        if num_frames and not frame_mask.any():
            notes.append("no face was found in any frame; the visual modality is masked (face_fraction 0.0).")
        if path is not None and not media_info.has_video:
            notes.append("the file has no video stream (audio only); the visual modality is masked.")
        if path is not None and not audio_track:
            notes.append("the file has no audio stream; the audio modality is masked.")
        for note in notes:
            warnings.warn(f"{path or 'clip'}: {note}", UserWarning, stacklevel=3)

        timestamps = visual["timestamps"]
        if num_frames:
            duration = float(timestamps[-1] - timestamps[0]) + 1.0 / (s.target_fps or source_fps or 30.0)
        elif waveform is not None:
            duration = len(waveform) / s.sampling_rate
        else:
            duration = 0.0
        boxes = visual["boxes"]
        metadata: dict[str, Any] = {
            "path": path,
            "fps": float(s.target_fps) if s.target_fps else source_fps,
            "source_fps": source_fps,
            "timestamps": [float(t) for t in timestamps],
            "num_frames": int(num_frames),
            "face_fraction": float(frame_mask.mean()) if num_frames else 0.0,
            "audio_present": waveform is not None,
            "video_present": bool(num_frames),
            "duration": float(duration),
            "face_boxes": [None if not np.isfinite(b).all() else [round(float(v), 2) for v in b] for b in boxes],
            "au_names": list(s.au_names),
            "au_backend": s.au_backend,
            "au_fraction": au_fraction,
            "face_detector": s.face_detector,
            "tracks": visual["tracks"],
            "track_ids": [int(t) if t >= 0 else None for t in visual["track_ids"]],
            "detector_runs": visual["detector_runs"],
            "sampling_rate": int(s.sampling_rate),
            "num_samples": int(len(waveform)) if waveform is not None else 0,
            "audio_start": t0 if waveform is not None and t0 is not None else (0.0 if waveform is not None else None),
            "warnings": notes,
            "seconds": round(time.perf_counter() - started, 4),
            "visual_seconds": round(visual["seconds"], 4),
        }
        if media_info is not None:
            metadata["media"] = media_info.to_dict()
        return ClipData(face_crops=visual["crops"], au_intensities=au.astype(np.float32), frame_mask=frame_mask,
                        timestamps=timestamps, face_boxes=boxes, waveform=waveform, metadata=metadata,
                        face_embeddings=visual["embeddings"])

    # -- visual path ----------------------------------------------------------------------------------------
    def _chunks(self, frames: Iterator[SourceFrame]) -> Iterator[list[SourceFrame]]:
        chunk: list[SourceFrame] = []
        for frame in frames:
            chunk.append(frame)
            if len(chunk) >= self.settings.chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _visual(self, frames: Iterator[SourceFrame], face_embedder=None, keep_crops: bool = True) -> dict:
        """Runs faces, alignment and per-frame AU inputs over the clip's source frames, chunk by chunk (and the
        face embedder, when given, in a background thread)."""
        s = self.settings
        started = time.perf_counter()
        size = s.face_size
        worker = _EmbeddingWorker(face_embedder) if face_embedder is not None else None
        chunk_crops: list[np.ndarray] = []
        chunk_rows: list[int] = []
        chunk_measures: list[tuple[np.ndarray, np.ndarray]] = []
        needs_mesh = True  # the mesh confirms faces, gives alignment points and the mediapipe AU geometry
        landmarker = FaceMeshLandmarker(refine=s.mesh_refine) if needs_mesh else None
        tracker = None
        if s.face_detector is not None:
            tracker = SubjectTracker(self.detector, landmarker, detect_every=s.detect_every, subject=s.subject)
        crops, faces, boxes, times, indices, repeats, meshes_raw, frame_au, track_ids = ([] for _ in range(9))
        mediapipe_au = isinstance(self.au_backend, MediaPipeAUBackend)
        pyfaceau = isinstance(self.au_backend, PyFaceAUBackend)
        try:
            for chunk in self._chunks(frames):
                images = [f.image for f in chunk]
                if tracker is not None:
                    results = tracker.process(images)
                    for frame, result in zip(chunk, results):
                        found = result.box is not None
                        faces.append(found)
                        boxes.append(result.box if found else np.full(4, np.nan))
                        if found:
                            chunk_rows.append(len(faces) - 1)
                            chunk_crops.append(align_face(frame.image, result.points, size))
                        if keep_crops:
                            crops.append(chunk_crops[-1] if found else np.zeros((size, size, 3), np.uint8))
                        meshes_raw.append(result.mesh)
                        track_ids.append(result.track_id if found else -1)
                else:  # inputs are face crops already
                    for frame in chunk:
                        image = frame.image
                        height, width = image.shape[:2]
                        faces.append(True)
                        track_ids.append(0)
                        boxes.append(np.array([0.0, 0.0, width, height]))
                        chunk_rows.append(len(faces) - 1)
                        chunk_crops.append(image if (height, width) == (size, size) else
                                           cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
                        if keep_crops:
                            crops.append(chunk_crops[-1])
                        meshes_raw.append(landmarker.on_image(image) if mediapipe_au else None)
                if pyfaceau:
                    for frame, found in zip(chunk, faces[-len(chunk):]):
                        frame_au.append(self.au_backend.values_for_frame(frame.image) if found
                                        else np.full(len(s.au_names), np.nan, np.float32))
                for frame in chunk:
                    times.append(frame.time)
                    indices.append(frame.index)
                    repeats.append(frame.repeat)
                if worker is not None and chunk_rows:
                    worker.submit(chunk_rows, np.stack(chunk_crops))
                chunk_rows, chunk_crops = [], []
                if mediapipe_au:  # the AU geometry of the chunk's meshes; the meshes (11 KB a frame) are dropped
                    chunk_measures.append(self._measure_meshes(meshes_raw))
                    meshes_raw = []
            embedded = worker.finish(len(faces)) if worker is not None else None
        finally:
            if worker is not None:
                worker.cancel()
            if landmarker is not None:
                landmarker.close()
            if hasattr(frames, "close"):  # stops the decoding thread now, also when an error ends the loop early
                frames.close()
        repeats_array = np.asarray(repeats, dtype=np.int64)
        n_au = len(s.au_names)
        measurements = np.full((len(repeats), n_au), np.nan, np.float32)
        au12 = np.full(len(repeats), np.nan, np.float32)
        if mediapipe_au and chunk_measures:
            measurements = np.concatenate([m for m, _ in chunk_measures])
            au12 = np.concatenate([a for _, a in chunk_measures])
        elif pyfaceau and frame_au:
            measurements = np.stack(frame_au).astype(np.float32)

        def expand(values, dtype=None):
            array = np.asarray(values, dtype=dtype)
            return np.repeat(array, repeats_array, axis=0) if len(array) else array

        return {
            "crops": expand(crops, np.uint8) if crops else np.zeros((0, size, size, 3), np.uint8),
            "embeddings": expand(embedded) if embedded is not None else None,
            "face": expand(faces, bool) if faces else np.zeros(0, bool),
            "boxes": expand(boxes, np.float32) if boxes else np.zeros((0, 4), np.float32),
            "timestamps": expand(times, np.float64) if times else np.zeros(0, np.float64),
            "source_indices": expand(indices, np.int64) if indices else np.zeros(0, np.int64),
            "track_ids": expand(track_ids, np.int64) if track_ids else np.zeros(0, np.int64),
            "repeats": repeats_array,  # per source frame; the arrays below are per source frame too
            "measurements": measurements,
            "au12": au12,
            "tracks": int(tracker.tracks_started) if tracker is not None else (1 if faces else 0),
            "detector_runs": int(tracker.detections_run) if tracker is not None else 0,
            "seconds": time.perf_counter() - started,
        }

    def _measure_meshes(self, meshes: list) -> tuple[np.ndarray, np.ndarray]:
        """MediaPipe AU measurements ``[n, n_au]`` and the AU12 measurement ``[n]`` of a chunk's meshes (NaN rows
        where the mesh is None)."""
        names = self.settings.au_names
        measurements = np.full((len(meshes), len(names)), np.nan, np.float32)
        au12 = np.full(len(meshes), np.nan, np.float32)
        rows = [i for i, m in enumerate(meshes) if m is not None]
        if rows:
            all_measures = MediaPipeAUBackend.measure_all(np.stack([meshes[i][:468] for i in rows]))
            measurements[rows] = np.stack([all_measures[name] for name in names], axis=1)
            au12[rows] = all_measures["AU12"]
        return measurements, au12

    def _au_values(self, visual: dict, path: str | None, au_file) -> np.ndarray:
        """AU intensities [T, n_au] with NaN where unavailable (before fill_missing)."""
        s = self.settings
        n = len(visual["timestamps"])
        backend = self.au_backend
        if backend is None or n == 0:
            return np.zeros((n, len(s.au_names)), np.float32)
        if isinstance(backend, MediaPipeAUBackend):
            # per source frame (so a baseline percentile counts each frame once), then repeated to the output rate
            values = backend.intensities(visual["measurements"], au12_measurement=visual["au12"])
            return np.repeat(values, visual["repeats"], axis=0)
        if isinstance(backend, OpenFaceAUBackend):
            csv_path = backend.find_csv(path, au_file)
            return backend.values(csv_path, visual["timestamps"], visual["source_indices"])
        return np.clip(np.repeat(visual["measurements"], visual["repeats"], axis=0), 0.0, 5.0)
