"""One clip in, numpy results out: decode -> faces -> alignment -> AUs, plus audio.

:class:`ClipPipeline` runs the whole path for one clip, with the given :class:`~emi_hf.media.ClipSettings`, and
returns a :class:`~emi_hf.media.ClipData`; the processor batches them into tensors. Frames are handled in chunks of
``chunk_size`` (decoded in a background thread), so memory never holds more than about two chunks of full frames.
By default the 112x112 crops of the clip are kept (37 KB a frame); with a ``face_embedder`` they are embedded in a
second background thread chunk by chunk (:mod:`emi_hf.media.embedding`) and not kept, so memory does not grow with
the clip's length beyond its per-frame outputs.

Beside it: the clip cache in :mod:`emi_hf.media.cache`, the frame-rate rule in :mod:`emi_hf.media.resampling`.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from .alignment import align_face
from .au import (BlendshapeAUBackend, MediaPipeAUBackend, OpenFaceAUBackend, PyFaceAUBackend, build_au_backend,
                 fill_missing)
from .cache import ClipCache, ClipData, clip_cache_key
from .decoding import MediaInfo, SourceFrame, _DecodeReport, decode_audio, iter_video_frames, load_audio, probe_media
from .embedding import EmbeddingWorker, embed_kept_crops
from .errors import EmiInputError
from .faces import FaceMeshLandmarker, FrameFace, SubjectTracker, build_face_detector
from .mediapipe_tasks import BLENDSHAPE_NAMES
from .resampling import nearest_frames
from .settings import ClipSettings
from .stages import ClipStages

__all__ = ["ClipPipeline", "VisualTrack"]

TRUNCATED_FRACTION = 0.9  # fewer decoded frames than this share of the declared count: the file looks truncated
SILENCE_PEAK = 1e-6  # a waveform whose peak stays below this is digital silence (the audio is masked)


@dataclass
class VisualTrack:
    """What the visual path gives for one clip (T = output frames, N = source frames processed)."""

    crops: np.ndarray  # uint8 [T, S, S, 3] aligned crops (zeros without a face); [0, S, S, 3] when not kept
    embeddings: np.ndarray | None  # float32 [T, D] with a face embedder, else None
    face: np.ndarray  # bool [T] the frame has the subject's face
    boxes: np.ndarray  # float32 [T, 4] subject box (NaN without a face)
    timestamps: np.ndarray  # float64 [T] real presentation times
    source_indices: np.ndarray  # int64 [T] decoded source-frame index
    track_ids: np.ndarray  # int64 [T] subject track (-1 without a face)
    repeats: np.ndarray  # int64 [N] output frames per source frame
    measurements: np.ndarray  # float32 [N, n_au] per-source-frame AU inputs (NaN where missing)
    au12: np.ndarray  # float32 [N] the AU12 measurement (mediapipe backend; NaN otherwise)
    tracks: int  # subject tracks started
    detector_runs: int
    seconds: float

    @property
    def num_frames(self) -> int:
        return len(self.timestamps)


def _repeated(values: list, repeats: np.ndarray, dtype, row_shape: tuple = ()) -> np.ndarray:
    """Per-source-frame `values` -> per-output-frame array (each row `repeats` times)."""
    if not values:
        return np.zeros((0, *row_shape), dtype)
    return np.repeat(np.asarray(values, dtype), repeats, axis=0)


class _VisualRecorder:
    """Collects the visual path's per-source-frame results, chunk by chunk."""

    def __init__(self, face_size: int, n_au: int, keep_crops: bool):
        self.face_size = face_size
        self.n_au = n_au
        self.keep_crops = keep_crops
        self.crops: list[np.ndarray] = []
        self.faces: list[bool] = []
        self.boxes: list[np.ndarray] = []
        self.track_ids: list[int] = []
        self.times: list[float] = []
        self.indices: list[int] = []
        self.repeats: list[int] = []
        self.au_inputs: list[tuple[np.ndarray, np.ndarray]] = []  # (measurements, au12) per chunk

    def add(self, chunk: list[SourceFrame], results: list[FrameFace], face_crops: list[np.ndarray | None]) -> tuple:
        """A chunk's subjects and crops (None without a face). Returns (rows, crops) of its frames with a face."""
        rows, crops = [], []
        for frame, result, crop in zip(chunk, results, face_crops):
            found = result.box is not None
            self.faces.append(found)
            self.boxes.append(result.box if found else np.full(4, np.nan))
            self.track_ids.append(result.track_id if found else -1)
            if found:
                rows.append(len(self.faces) - 1)
                crops.append(crop)
            if self.keep_crops:
                self.crops.append(crop if found else np.zeros((self.face_size, self.face_size, 3), np.uint8))
            self.times.append(frame.time)
            self.indices.append(frame.index)
            self.repeats.append(frame.repeat)
        return rows, crops

    def track(self, embedded: np.ndarray | None, tracks: int, detector_runs: int, seconds: float) -> VisualTrack:
        repeats = np.asarray(self.repeats, dtype=np.int64)
        measurements = np.full((len(repeats), self.n_au), np.nan, np.float32)
        au12 = np.full(len(repeats), np.nan, np.float32)
        if self.au_inputs:
            measurements = np.concatenate([m for m, _ in self.au_inputs])
            au12 = np.concatenate([a for _, a in self.au_inputs])
        size = self.face_size
        return VisualTrack(
            crops=_repeated(self.crops, repeats, np.uint8, (size, size, 3)),
            embeddings=np.repeat(embedded, repeats, axis=0) if embedded is not None else None,
            face=_repeated(self.faces, repeats, bool), boxes=_repeated(self.boxes, repeats, np.float32, (4,)),
            timestamps=_repeated(self.times, repeats, np.float64),
            source_indices=_repeated(self.indices, repeats, np.int64),
            track_ids=_repeated(self.track_ids, repeats, np.int64), repeats=repeats, measurements=measurements,
            au12=au12, tracks=tracks, detector_runs=detector_runs, seconds=seconds)


class ClipPipeline:
    """The media path for one clip at a time, with the given :class:`ClipSettings` (validated when made)."""

    def __init__(self, settings: ClipSettings | None = None, openface_dir: str | None = None,
                 face_landmarker_model: str | os.PathLike | None = None):
        self.settings = settings or ClipSettings()
        self.openface_dir = openface_dir
        self.face_landmarker_model = face_landmarker_model  # the Tasks API's model file (None: found or downloaded)
        s = self.settings
        self.mediapipe_graphs = s.mediapipe_graphs()  # "solutions" or "tasks" (raises when they cannot run here)
        self.au_backend = build_au_backend(s.au_backend, s.au_names, neutral_baseline=s.au_neutral_baseline,
                                           baseline_percentile=s.au_baseline_percentile, match=s.openface_match,
                                           csv_dir=openface_dir)
        self._detector = None

    @property
    def detector(self):
        """The face detector, built on first use (MTCNN weights load in about a second)."""
        if self._detector is None and self.settings.face_detector is not None:
            options = {}
            if self.settings.face_detector == "mediapipe":
                options = dict(backend=self.mediapipe_graphs, model_path=self.face_landmarker_model)
            self._detector = build_face_detector(self.settings.face_detector, max_side=self.settings.detect_max_side,
                                                 min_score=self.settings.min_face_score, **options)
        return self._detector

    @property
    def mesh_aus(self) -> bool:
        """Whether the AU backend reads the face landmarker's output (the mesh geometry or the blendshapes)."""
        return isinstance(self.au_backend, (MediaPipeAUBackend, BlendshapeAUBackend))

    def landmarker(self) -> FaceMeshLandmarker:
        """This thread's face mesh for these settings, reset (see :meth:`FaceMeshLandmarker.for_this_thread`)."""
        return FaceMeshLandmarker.for_this_thread(self.settings.mesh_refine, backend=self.mediapipe_graphs,
                                                  model_path=self.face_landmarker_model)

    def borrowed_landmarker(self):
        """A face mesh for these settings for one clip, from the process-wide pool (see
        :meth:`FaceMeshLandmarker.borrowed`); a context manager."""
        return FaceMeshLandmarker.borrowed(self.settings.mesh_refine, backend=self.mediapipe_graphs,
                                           model_path=self.face_landmarker_model)

    def model_identities(self) -> dict[str, str]:
        """The model files (other than those inside installed packages) that change what a clip turns into, by
        SHA-256: the Tasks face landmarker when it runs. Part of the clip cache key."""
        s = self.settings
        if self.mediapipe_graphs != "tasks" or not (s.face_detector or self.mesh_aus):
            return {}
        from .mediapipe_tasks import face_landmarker_model, model_identity

        return {"face_landmarker": model_identity(face_landmarker_model(self.face_landmarker_model))}

    # -- main entry -----------------------------------------------------------------------------------------
    def process(self, video=None, audio=None, au_file=None, video_fps: float | None = None,
                audio_sampling_rate: int | None = None, use_cache: bool = True, cache_dir=None,
                face_embedder: Callable[[np.ndarray], np.ndarray] | None = None,
                keep_crops: bool | None = None, stages: ClipStages | None = None) -> ClipData:
        """Processes one clip.

        Args:
            video: a file path (any container / codec PyAV reads; an audio-only file gives zero frames), or decoded
                RGB uint8 frames ``[T, H, W, 3]`` (or one frame ``[H, W, 3]``) at `video_fps` (default: the target
                rate), or ``None`` (audio only).
            audio: optional separate audio: a file path or a waveform array at `audio_sampling_rate` (default 16
                kHz). When given it replaces the video's own audio track.
            au_file: the OpenFace CSV of this clip (``au_backend="openface"``).
            use_cache / cache_dir: the clip cache (see :mod:`emi_hf.media.cache`, size-capped); only file inputs
                processed with every stage are cached.
            face_embedder: optional ``crops uint8 [n, S, S, 3] -> float32 [n, D]`` (e.g.
                :class:`emi_hf.face_embedding.FaceEmbedder`). It runs in a background thread on each chunk's new
                face crops while the next chunk is decoded and tracked, once per source frame (frames repeated by
                the frame-rate conversion are not embedded again), and fills ``ClipData.face_embeddings``. On a
                cache hit it embeds the cached crops.
            keep_crops: keep the face crops in ``ClipData.face_crops`` (default: True without a `face_embedder`,
                False with one). Without them memory no longer grows with the clip's length (37 KB a frame);
                the clip is then not written to the cache, which stores crops.
            stages: the stages to run (:class:`~emi_hf.media.stages.ClipStages`; default: all): a model reads
                ``ClipStages.for_modalities`` of its modalities, so e.g. an audio model runs no face detection.

        Returns a :class:`ClipData`; ``metadata`` has ``path, fps, source_fps, timestamps, num_frames,
        face_fraction, audio_present, video_present, duration, face_boxes, au_names, au_backend, au_fraction,
        face_detector, tracks, track_ids (subject track per frame, None without a face), detector_runs,
        sampling_rate, num_samples, audio_start, warnings, stages, cache_hit, cache_key, seconds, visual_seconds``
        and, for files, ``media`` (what the container declares).

        Raises :class:`EmiInputError` for inputs that cannot be used (see :mod:`emi_hf.media.errors`).
        """
        if video is None and audio is None:
            raise EmiInputError(None, "nothing to process: pass a video (path or frames) and/or audio.")
        is_file = isinstance(video, (str, os.PathLike))
        audio_is_file = isinstance(audio, (str, os.PathLike))
        stages = stages or ClipStages()
        if self.settings.au_backend == "openface" and is_file and au_file is None and stages.faces:
            au_file = self.au_backend.find_csv(os.fspath(video))
        key = cache = None
        # the cache holds what is costly to recompute, the faces: a path without them neither reads nor writes it
        if use_cache and is_file and (audio is None or audio_is_file) and stages.faces:
            probe_media(video)  # clear errors before hashing
            key = clip_cache_key(self.settings, video, au_file, audio, models=self.model_identities())
            cache = ClipCache(cache_dir)
            clip = cache.get(key)
            if clip is not None:
                clip.metadata.update(path=os.fspath(video), cache_hit=True, cache_key=key)
                if not stages.audio:  # as if the stage had not run
                    clip.waveform = None
                    clip.metadata.update(audio_present=None, stages=stages.to_dict())
                if face_embedder is not None:
                    clip.face_embeddings = embed_kept_crops(face_embedder, clip.face_crops, clip.frame_mask,
                                                            self.settings.chunk_size)
                return clip
        keep_crops = face_embedder is None if keep_crops is None else bool(keep_crops)
        keep_crops = keep_crops and stages.faces
        clip = self._process(video, audio, au_file, video_fps, audio_sampling_rate, face_embedder, keep_crops, stages)
        clip.metadata.update(cache_hit=False, cache_key=key)
        if cache is not None and keep_crops and stages.complete:
            cache.put(key, clip)
        return clip

    def _process(self, video, audio, au_file, video_fps, audio_sampling_rate, face_embedder=None,
                 keep_crops: bool = True, stages: ClipStages | None = None) -> ClipData:
        started = time.perf_counter()
        stages = stages or ClipStages()
        report = _DecodeReport()
        path, media_info, source_fps, frames = self._source_frames(video, video_fps, report, stages)
        visual = self._visual(frames, face_embedder, keep_crops, faces=stages.faces)
        notes: list[str] = []
        if media_info is not None and stages.decodes_video:
            notes.extend(report.warnings)
            notes.extend(self._truncation_notes(media_info, report))
        frame_mask = visual.face.astype(np.int8)
        au = self._au_values(visual, path, au_file) if stages.faces else \
            np.zeros((visual.num_frames, len(self.settings.au_names)), np.float32)
        au_fraction = float(np.isfinite(au).all(axis=1)[visual.face].mean()) if frame_mask.any() else 0.0
        au = fill_missing(au, visual.face)
        t0 = float(visual.timestamps[0]) if visual.num_frames else None
        waveform, audio_track = None, False
        if stages.audio:
            waveform, audio_track = self._audio(audio, path, media_info, audio_sampling_rate, source_fps, t0, notes)
        if visual.num_frames and not frame_mask.any() and stages.faces:
            notes.append("no face was found in any frame; the visual modality is masked (face_fraction 0.0).")
        if path is not None and not media_info.has_video and stages.faces:
            notes.append("the file has no video stream (audio only); the visual modality is masked.")
        if path is not None and not audio_track and stages.audio:
            notes.append("the file has no audio stream; the audio modality is masked.")
        for note in notes:
            warnings.warn(f"{path or 'clip'}: {note}", UserWarning, stacklevel=3)
        metadata = self._metadata(path, media_info, source_fps, visual, waveform, t0, au_fraction, notes)
        if not stages.complete:  # a stage that did not run: not looked at, rather than absent
            metadata.update(stages=stages.to_dict(), **({} if stages.faces else {"face_fraction": None}),
                            **({} if stages.audio else {"audio_present": None}))
            if path is not None and not stages.decodes_video:
                metadata["duration"] = media_info.duration
        metadata["seconds"] = round(time.perf_counter() - started, 4)
        metadata["visual_seconds"] = round(visual.seconds, 4)
        if media_info is not None:
            metadata["media"] = media_info.to_dict()
        return ClipData(face_crops=visual.crops, au_intensities=au.astype(np.float32), frame_mask=frame_mask,
                        timestamps=visual.timestamps, face_boxes=visual.boxes, waveform=waveform, metadata=metadata,
                        face_embeddings=visual.embeddings)

    # -- sources --------------------------------------------------------------------------------------------
    def _source_frames(self, video, video_fps, report: _DecodeReport, stages: ClipStages) -> tuple:
        """(path or None, MediaInfo or None, source fps or None, iterator of the kept SourceFrames); their pixels
        only with the `faces` stage, none at all without `frame_times` either."""
        s = self.settings
        if isinstance(video, (str, os.PathLike)):
            path = os.fspath(video)
            media_info = probe_media(path)
            if not stages.decodes_video:
                return path, media_info, media_info.fps, iter(())
            frames = iter_video_frames(path, s.target_fps, s.max_frames, s.max_duration, report=report,
                                       queue_size=max(8, s.chunk_size), rgb=stages.faces)
            return path, media_info, media_info.fps, frames
        if video is None:
            return None, None, None, iter(())
        source_fps = float(video_fps or s.target_fps or 30.0)
        return None, None, source_fps, self._array_frames(_as_rgb_frames(video), source_fps)

    def _array_frames(self, frames: np.ndarray, source_fps: float) -> Iterator[SourceFrame]:
        """Decoded frames at `source_fps` on the output grid (the nearest-frame rule of files)."""
        s = self.settings
        timed = ((i, i / source_fps, None) for i in range(len(frames)))
        for i, t, index, repeat in nearest_frames(timed, s.target_fps, s.max_frames, s.max_duration,
                                                  frame_step=1.0 / source_fps):
            yield SourceFrame(frames[i], t, index, repeat)

    def _truncation_notes(self, media_info: MediaInfo, report: _DecodeReport) -> list[str]:
        s = self.settings
        if media_info.num_frames and report.decoded < TRUNCATED_FRACTION * media_info.num_frames \
                and s.max_frames is None and s.max_duration is None and not report.stopped_early:
            return [f"only {report.decoded} of the {media_info.num_frames} frames the container declares could be "
                    "decoded; the file looks truncated."]
        return []

    def _audio(self, audio, path, media_info, audio_sampling_rate, source_fps, t0, notes: list[str]) -> tuple:
        """(waveform or None, whether the clip has an audio track); the audio covers the frames' span."""
        s = self.settings
        max_audio = s.max_duration
        if s.max_frames is not None and (s.target_fps or source_fps):
            max_audio = min(max_audio or np.inf, s.max_frames / (s.target_fps or source_fps))
        max_audio = max_audio if max_audio != np.inf else None
        waveform, audio_track = None, False
        if audio is not None:
            waveform = load_audio(audio, s.sampling_rate, s.audio_peak_db, source_rate=audio_sampling_rate,
                                  max_duration=max_audio)
            audio_track = True
        elif path is not None and media_info.has_audio:
            audio_track = True
            waveform, _ = decode_audio(path, s.sampling_rate, s.audio_peak_db, max_duration=max_audio,
                                       start_time=t0, warnings_out=notes)
        if waveform is not None and float(np.max(np.abs(waveform), initial=0.0)) < SILENCE_PEAK:
            notes.append("the audio track is digital silence; audio is masked.")
            waveform = None
        return waveform, audio_track

    def _metadata(self, path, media_info, source_fps, visual: VisualTrack, waveform, t0, au_fraction: float,
                  notes: list[str]) -> dict[str, Any]:
        s = self.settings
        num_frames = visual.num_frames
        if num_frames:
            duration = float(visual.timestamps[-1] - visual.timestamps[0]) + 1.0 / (s.target_fps or source_fps or 30.0)
        elif waveform is not None:
            duration = len(waveform) / s.sampling_rate
        else:
            duration = 0.0
        return {
            "path": path,
            "fps": float(s.target_fps) if s.target_fps else source_fps,
            "source_fps": source_fps,
            "timestamps": [float(t) for t in visual.timestamps],
            "num_frames": int(num_frames),
            "face_fraction": float(visual.face.mean()) if num_frames else 0.0,
            "audio_present": waveform is not None,
            "video_present": bool(num_frames),
            "duration": float(duration),
            "face_boxes": [None if not np.isfinite(b).all() else [round(float(v), 2) for v in b] for b in visual.boxes],
            "au_names": list(s.au_names),
            "au_backend": s.au_backend,
            "au_fraction": au_fraction,
            "face_detector": s.face_detector,
            "tracks": visual.tracks,
            "track_ids": [int(t) if t >= 0 else None for t in visual.track_ids],
            "detector_runs": visual.detector_runs,
            "sampling_rate": int(s.sampling_rate),
            "num_samples": int(len(waveform)) if waveform is not None else 0,
            "audio_start": t0 if waveform is not None and t0 is not None else (0.0 if waveform is not None else None),
            "warnings": notes,
        }

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

    def _visual(self, frames: Iterator[SourceFrame], face_embedder=None, keep_crops: bool = True,
                faces: bool = True) -> VisualTrack:
        """Runs faces, alignment and per-frame AU inputs over the clip's source frames, chunk by chunk (and the
        face embedder, when given, in a background thread). Without `faces`: the frames' times only."""
        s = self.settings
        started = time.perf_counter()
        mesh_aus = self.mesh_aus and faces
        # the mesh confirms faces, gives the alignment points and the mediapipe AU geometry (or blendshapes);
        # borrowed for this clip from the process-wide pool
        held = contextlib.ExitStack()
        landmarker = held.enter_context(self.borrowed_landmarker()) if faces and (s.face_detector or mesh_aus) else None
        tracker = None
        if s.face_detector is not None and faces:
            tracker = SubjectTracker(self.detector, landmarker, detect_every=s.detect_every, subject=s.subject)
        recorder = _VisualRecorder(s.face_size, len(s.au_names), keep_crops)
        worker = EmbeddingWorker(face_embedder) if face_embedder is not None and faces else None
        try:
            for chunk in self._chunks(frames):
                if not faces:
                    recorder.add(chunk, [FrameFace() for _ in chunk], [None] * len(chunk))
                    continue
                if tracker is not None:
                    results = tracker.process([f.image for f in chunk])
                    crops = [align_face(f.image, r.points, s.face_size, s.face_alignment) if r.box is not None else None
                             for f, r in zip(chunk, results)]
                else:  # inputs are face crops already
                    results, crops = self.crops_as_faces(chunk, landmarker if mesh_aus else None)
                rows, face_crops = recorder.add(chunk, results, crops)
                if worker is not None and rows:
                    worker.submit(rows, np.stack(face_crops))
                au_inputs = self.au_inputs(chunk, results)
                if au_inputs is not None:  # the meshes (11 KB a frame) are dropped
                    recorder.au_inputs.append(au_inputs)
            embedded = worker.finish(len(recorder.faces)) if worker is not None else None
        finally:
            if worker is not None:
                worker.cancel()
            if hasattr(frames, "close"):  # stops the decoding thread now, also when an error ends the loop early
                frames.close()
            held.close()  # the landmarker goes back to the pool
        tracks = tracker.tracks_started if tracker is not None else int(bool(recorder.faces))
        return recorder.track(embedded, tracks=int(tracks), detector_runs=int(tracker.detections_run if tracker else 0),
                              seconds=time.perf_counter() - started)

    def crops_as_faces(self, chunk: list[SourceFrame], landmarker: FaceMeshLandmarker | None) -> tuple:
        """Frames that are face crops: each one is the subject (track 0), resized to the crop size; with a
        `landmarker`, its mesh (mediapipe AU geometry) and blendshape scores (Tasks landmarker)."""
        size = self.settings.face_size
        results, crops = [], []
        for frame in chunk:
            image = frame.image
            height, width = image.shape[:2]
            mesh = landmarker.on_image(image) if landmarker is not None else None
            results.append(FrameFace(box=np.array([0.0, 0.0, width, height]), mesh=mesh, track_id=0,
                                     blendshapes=landmarker.last_blendshapes if landmarker is not None else None))
            crops.append(image if (height, width) == (size, size) else
                         cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
        return results, crops

    def au_inputs(self, chunk: list[SourceFrame], results: list[FrameFace]) -> tuple | None:
        """Per-source-frame AU inputs of a chunk, (measurements [n, n_au], au12 [n]) (NaN rows without a face),
        for the backends that measure frames (mediapipe: the mesh geometry; blendshapes: the landmarker's scores, as
        intensities; pyfaceau: the image); else None."""
        names = self.settings.au_names
        if isinstance(self.au_backend, BlendshapeAUBackend):
            scores = np.stack([r.blendshapes if r.box is not None and r.blendshapes is not None
                               else np.full(len(BLENDSHAPE_NAMES), np.nan, np.float32) for r in results])
            return self.au_backend.intensities(scores), np.full(len(chunk), np.nan, np.float32)
        if isinstance(self.au_backend, PyFaceAUBackend):
            values = [self.au_backend.values_for_frame(f.image) if r.box is not None
                      else np.full(len(names), np.nan, np.float32) for f, r in zip(chunk, results)]
            return np.stack(values).astype(np.float32), np.full(len(chunk), np.nan, np.float32)
        if not isinstance(self.au_backend, MediaPipeAUBackend):
            return None
        meshes = [r.mesh for r in results]
        measurements = np.full((len(meshes), len(names)), np.nan, np.float32)
        au12 = np.full(len(meshes), np.nan, np.float32)
        rows = [i for i, m in enumerate(meshes) if m is not None]
        if rows:
            all_measures = MediaPipeAUBackend.measure_all(np.stack([meshes[i][:468] for i in rows]))
            measurements[rows] = np.stack([all_measures[name] for name in names], axis=1)
            au12[rows] = all_measures["AU12"]
        return measurements, au12

    def _au_values(self, visual: VisualTrack, path: str | None, au_file) -> np.ndarray:
        """AU intensities [T, n_au] with NaN where unavailable (before fill_missing)."""
        s = self.settings
        backend = self.au_backend
        if backend is None or visual.num_frames == 0:
            return np.zeros((visual.num_frames, len(s.au_names)), np.float32)
        if isinstance(backend, MediaPipeAUBackend):
            # per source frame (so a baseline percentile counts each frame once), then repeated to the output rate
            values = backend.intensities(visual.measurements, au12_measurement=visual.au12)
            return np.repeat(values, visual.repeats, axis=0)
        if isinstance(backend, OpenFaceAUBackend):
            csv_path = backend.find_csv(path, au_file)
            return backend.values(csv_path, visual.timestamps, visual.source_indices)
        return np.clip(np.repeat(visual.measurements, visual.repeats, axis=0), 0.0, 5.0)


def _as_rgb_frames(video) -> np.ndarray:
    """Decoded frames (uint8, or floats in [0, 1] or [0, 255]; channels last `[T, H, W, 3]` or first
    `[T, 3, H, W]`, as transformers' video processors take them) as uint8 RGB [T, H, W, 3]."""
    frames = np.asarray(video)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim == 4 and frames.shape[1] == 3 and frames.shape[-1] != 3:
        frames = np.moveaxis(frames, 1, -1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise EmiInputError(None, "decoded video frames must be RGB [T, H, W, 3] or [T, 3, H, W], got shape "
                                  f"{frames.shape}.")
    if frames.dtype != np.uint8:
        if frames.dtype.kind == "f" and frames.size and float(np.nanmax(frames)) <= 1.0:
            frames = frames * 255.0
        frames = np.clip(np.nan_to_num(frames), 0, 255).astype(np.uint8)
    return frames
