"""Face detection, subject selection and tracking.

Detectors (one interface, :class:`FaceDetector`)
-----------------------------------------------
* ``"mtcnn"``: facenet-pytorch 2.5.3's MTCNN (P/R/O-Net weights ship inside that package), the paper's choice.
  Runs batched over several frames at once, on frames downscaled to ``max_side`` pixels.
* ``"mediapipe"``: BlazeFace. With the legacy graphs (mediapipe 0.10.14, ``mediapipe.solutions.face_detection``,
  the models ship in the wheel) ``model="full"`` (full-range, default, faces up to about 5 m) or ``"short"``
  (close-up faces); through the Tasks API (Python 3.13, :mod:`emi_hf.media.mediapipe_tasks`) the short-range
  model of the face landmarker bundle, whichever `model` is asked for (the bundle has no full-range one).

Landmarks
---------
:class:`FaceMeshLandmarker` runs the MediaPipe face mesh (478 points with ``refine=True``) on a square crop around
the subject (``roi_scale`` x the face box, resized to ``roi_size``): the legacy graph in tracking mode, or the
Tasks face landmarker (which also gives the 52 blendshape scores) image by image. The mesh gives the five
alignment points, the geometry for the ``mediapipe`` AU backend, and the subject's box for the next frame. A frame
counts as having a face only when the mesh finds one in the subject's crop: the mesh's face-presence check rejects
detector false alarms (text, textures), and every detector gets the same landmarks.

Tracking and the subject policy (:class:`SubjectTracker`)
---------------------------------------------------------
The detector runs on every ``detect_every``-th frame, on every frame while no face is tracked (in small batches),
and on a scene cut (a large change of a 32x18 thumbnail). Between detections the subject is followed by the mesh:
the crop for frame ``t`` is centred on the mesh of frame ``t - 1``. With several faces, ``subject`` picks one:

* ``"tracked"`` (default): the largest face when the track starts; then the same face as long as the mesh follows
  it (detections elsewhere do not switch subjects). When the mesh loses the face (or at a scene cut), the face
  nearest to the subject's last position is taken if it is within one face size and the subject was seen in the
  last ``reacquire_window`` frames; otherwise the largest face (a new track).
* ``"largest"``: at every detection pass, the face with the largest box.
* ``"central"``: at every detection pass, the face whose centre is nearest the frame centre.

Exactly one subject (or none) per frame: a clip never mixes faces within a frame.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np

from ..errors import EmiDependencyError, EmiUsageError
from .alignment import mesh_five_points
from .logs import native_stderr_silenced
from .mediapipe_tasks import TasksFaceDetection, TasksFaceMesh, import_mediapipe

__all__ = [
    "Face",
    "FrameFace",
    "FaceDetector",
    "MTCNNDetector",
    "MediaPipeDetector",
    "FaceMeshLandmarker",
    "SubjectTracker",
    "FACE_DETECTORS",
    "SUBJECT_POLICIES",
    "build_face_detector",
    "box_iou",
]

SUBJECT_POLICIES = ("tracked", "largest", "central")


@dataclass
class Face:
    """A detected face in frame pixel coordinates."""

    box: np.ndarray  # float [4] x0, y0, x1, y1
    score: float
    points: np.ndarray | None = None  # float [K, 2] detector keypoints (MTCNN: the 5 alignment points)

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])


@dataclass
class FrameFace:
    """The subject in one frame (``box is None``: no face)."""

    box: np.ndarray | None = None
    points: np.ndarray | None = None  # [5, 2] alignment points
    mesh: np.ndarray | None = None  # [N, 3] face-mesh landmarks, pixels (z in the same units as x)
    blendshapes: np.ndarray | None = None  # [52] blendshape scores (Tasks face landmarker only)
    score: float = 0.0
    detected: bool = False  # the detector ran on this frame
    new_track: bool = False  # a new subject track starts on this frame
    track_id: int | None = None  # 0, 1, ... one per track in the clip; None without a face


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    if not max_side:
        return image, 1.0
    height, width = image.shape[:2]
    scale = min(1.0, float(max_side) / max(height, width))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


class FaceDetector:
    """Detects faces in RGB uint8 frames [H, W, 3]. Subclasses implement :meth:`_detect_resized`."""

    name = "base"
    default_min_score = 0.5
    batched = False  # whether detecting several frames in one call is faster than one by one

    def __init__(self, max_side: int | None = None, min_score: float | None = None):
        self.max_side = max_side
        self.min_score = self.default_min_score if min_score is None else float(min_score)

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces per image, largest first."""
        if len(images) == 0:
            return []
        resized, scales = zip(*(_downscale(image, self.max_side) for image in images))
        results = self._detect_resized(list(resized))
        output = []
        for faces, scale in zip(results, scales):
            kept = []
            for face in faces:
                if face.score < self.min_score:
                    continue
                if scale != 1.0:
                    face.box = face.box / scale
                    if face.points is not None:
                        face.points = face.points / scale
                kept.append(face)
            kept.sort(key=lambda f: -f.area)
            output.append(kept)
        return output

    def _detect_resized(self, images: list[np.ndarray]) -> list[list[Face]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class MTCNNDetector(FaceDetector):
    """facenet-pytorch MTCNN, batched, on frames downscaled to `max_side` (default 320 px: faces from about 6%
    of the frame's long side; MTCNN's cost grows quickly with resolution)."""

    name = "mtcnn"
    default_min_score = 0.9
    batched = True

    def __init__(self, max_side: int | None = 320, min_score: float | None = None, min_face_size: int = 20,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), batch_size: int = 16, device: str | None = None):
        super().__init__(max_side=max_side, min_score=min_score)
        try:
            from facenet_pytorch import MTCNN
        except ImportError as error:  # pragma: no cover - a declared dependency
            raise EmiDependencyError("face_detector='mtcnn' needs facenet-pytorch==2.5.3 (`pip install "
                                     "facenet-pytorch==2.5.3`), or use face_detector='mediapipe'.") from error
        from ..devices import default_device

        self.batch_size = int(batch_size)
        device = default_device(device)
        self.mtcnn = MTCNN(keep_all=True, min_face_size=int(min_face_size), thresholds=list(thresholds),
                           post_process=False, device=device)
        self.mtcnn.eval()

    def _detect_resized(self, images: list[np.ndarray]) -> list[list[Face]]:
        import torch

        results: list[list[Face]] = [[] for _ in images]
        # MTCNN batches only images of one size; a video's frames all have the same size.
        by_shape: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(i)
        with torch.inference_mode():
            for indices in by_shape.values():
                for start in range(0, len(indices), self.batch_size):
                    part = indices[start:start + self.batch_size]
                    batch = np.stack([images[i] for i in part])
                    boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
                    for i, b, p, lm in zip(part, boxes, probs, points):
                        if b is None:
                            continue
                        for box, prob, pts in zip(b, p, lm):
                            results[i].append(Face(np.asarray(box, np.float64), float(prob),
                                                   np.asarray(pts, np.float64)))
        return results


class MediaPipeDetector(FaceDetector):
    """BlazeFace: ``mediapipe.solutions.face_detection`` with `model` ``"full"`` (full range) or ``"short"``, or
    with ``backend="tasks"`` the Tasks API's short-range model (`model_path`: the face landmarker bundle, see
    :func:`~emi_hf.media.mediapipe_tasks.face_landmarker_model`)."""

    name = "mediapipe"
    default_min_score = 0.5

    def __init__(self, max_side: int | None = 640, min_score: float | None = None, model: str = "full",
                 backend: str = "solutions", model_path=None):
        super().__init__(max_side=max_side, min_score=min_score)
        if model not in ("full", "short"):
            raise EmiUsageError(f"mediapipe detector model must be 'full' or 'short', got {model!r}")
        self._lock = threading.Lock()
        self._tasks = None
        if backend == "tasks":
            self._tasks = TasksFaceDetection(model_path, min_confidence=min(self.min_score, 0.3))
            return
        mp = import_mediapipe()
        with native_stderr_silenced():  # the graph opens its model (and logs) on the first frame
            # The graph filters by its own threshold; keep it a little lower than ours and filter in detect().
            self._solution = mp.solutions.face_detection.FaceDetection(
                model_selection=1 if model == "full" else 0, min_detection_confidence=min(self.min_score, 0.3))
            self._solution.process(_BLANK_FRAME)  # stateless: a first frame changes no later result

    def _detect_resized(self, images: list[np.ndarray]) -> list[list[Face]]:
        if self._tasks is not None:
            # BlazeFace keypoints: eyes, nose tip, mouth centre, ear tragions (no mouth corners)
            return [[Face(box, score, points[:4] if len(points) >= 4 else None)
                     for box, score, points in self._tasks.run(image)] for image in images]
        results = []
        for image in images:
            height, width = image.shape[:2]
            with self._lock:
                output = self._solution.process(np.ascontiguousarray(image))
            faces = []
            for detection in output.detections or []:
                data = detection.location_data
                rb = data.relative_bounding_box
                box = np.array([rb.xmin * width, rb.ymin * height, (rb.xmin + rb.width) * width,
                                (rb.ymin + rb.height) * height], np.float64)
                kp = np.array([[k.x * width, k.y * height] for k in data.relative_keypoints], np.float64)
                # BlazeFace keypoints: eyes, nose tip, mouth centre, ear tragions (no mouth corners)
                points = kp[:4] if len(kp) >= 4 else None
                faces.append(Face(box, float(detection.score[0]), points))
            results.append(faces)
        return results

    def close(self) -> None:
        (self._tasks or self._solution).close()


FACE_DETECTORS = {"mtcnn": MTCNNDetector, "mediapipe": MediaPipeDetector}


def build_face_detector(name: str | None, **options) -> FaceDetector | None:
    """``"mtcnn"``, ``"mediapipe"`` or ``None`` (inputs are already face crops)."""
    if name is None:
        return None
    if name not in FACE_DETECTORS:
        raise EmiUsageError(f"face_detector must be one of {sorted(FACE_DETECTORS)} or None, got {name!r}")
    options = {k: v for k, v in options.items() if v is not None}
    return FACE_DETECTORS[name](**options)


_BLANK_FRAME = np.zeros((64, 64, 3), np.uint8)  # no face: opens a graph, clears the face mesh's tracking
_THREAD_LANDMARKERS = threading.local()  # this thread's FaceMeshLandmarker per (refine, backend, model path)
_IDLE_LANDMARKERS: dict[tuple, list] = {}  # landmarkers no clip is using, per (refine, backend, model path)
_IDLE_LOCK = threading.Lock()


class FaceMeshLandmarker:
    """MediaPipe face mesh on a square crop around a face box: the legacy graph (``backend="solutions"``, tracking
    mode: the face found on one frame seeds the next; :meth:`reset` forgets it) or the Tasks face landmarker
    (``backend="tasks"``, `model_path` as :func:`~emi_hf.media.mediapipe_tasks.face_landmarker_model` takes it;
    image by image, with the 52 blendshape scores in :attr:`last_blendshapes`). A graph is built once and re-used
    for every clip (:meth:`borrowed` from a process-wide pool, or :meth:`for_this_thread`): building it costs time
    and makes MediaPipe log."""

    def __init__(self, refine: bool = True, roi_scale: float = 1.7, roi_size: int = 256,
                 min_confidence: float = 0.5, backend: str = "solutions", model_path=None):
        if backend not in ("solutions", "tasks"):
            raise ValueError(f"face mesh backend must be 'solutions' or 'tasks', got {backend!r}")
        self.refine = bool(refine)
        self.roi_scale = float(roi_scale)
        self.roi_size = int(roi_size)
        self.backend = backend
        self.last_blendshapes: np.ndarray | None = None  # of the last image run (Tasks only)
        self._tasks = None
        if backend == "tasks":
            self._tasks = TasksFaceMesh(model_path, min_confidence)
            return
        mp = import_mediapipe()
        with native_stderr_silenced():  # the graph opens its models (and logs) on the first frame
            self._solution = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=False, max_num_faces=1, refine_landmarks=self.refine,
                min_detection_confidence=min_confidence, min_tracking_confidence=min_confidence)
            self._run(_BLANK_FRAME)

    @classmethod
    def for_this_thread(cls, refine: bool = True, backend: str = "solutions", model_path=None) -> "FaceMeshLandmarker":
        """The calling thread's landmarker (built on first use), reset: nothing of the previous clip carries over."""
        landmarkers = _THREAD_LANDMARKERS.__dict__.setdefault("by_options", {})
        key = (bool(refine), backend, os.fspath(model_path) if model_path is not None else None)
        landmarker = landmarkers.get(key)
        if landmarker is None:
            landmarker = landmarkers[key] = cls(refine=refine, backend=backend, model_path=model_path)
        else:
            landmarker.reset()
        return landmarker

    @classmethod
    @contextlib.contextmanager
    def borrowed(cls, refine: bool = True, backend: str = "solutions",
                 model_path=None) -> Iterator["FaceMeshLandmarker"]:
        """A landmarker for one clip, reset, from a process-wide pool it goes back to afterwards: the process holds
        as many graphs (about 20 MB each) as clips it processes at the same time, whichever threads process them. A
        server whose requests run on a pool of worker threads (Gradio: up to 40) would otherwise keep one graph per
        thread that ever processed a clip (`for_this_thread`, for a thread that lives as long as its work)."""
        key = (bool(refine), backend, os.fspath(model_path) if model_path is not None else None)
        with _IDLE_LOCK:
            idle = _IDLE_LANDMARKERS.setdefault(key, [])
            landmarker = idle.pop() if idle else None
        if landmarker is None:
            landmarker = cls(refine=refine, backend=backend, model_path=model_path)
        else:
            landmarker.reset()
        try:
            yield landmarker
        finally:
            with _IDLE_LOCK:
                _IDLE_LANDMARKERS[key].append(landmarker)

    def reset(self) -> None:
        """Forgets the tracked face: the next frame starts from a new detection, as in a new graph. The face mesh's
        only state is the face it follows, and a frame without a face clears it, so a blank frame is run instead
        of a restart (which re-opens the models); should it ever find a face, the graph is restarted. The Tasks
        landmarker runs image by image: it has no state to forget."""
        self.last_blendshapes = None
        if self._tasks is not None:
            return
        if self._run(_BLANK_FRAME) is not None:
            with native_stderr_silenced():
                self._solution.reset()
                self._run(_BLANK_FRAME)

    def close(self) -> None:
        (self._tasks or self._solution).close()

    def _run(self, image: np.ndarray) -> np.ndarray | None:
        if self._tasks is not None:
            landmarks, self.last_blendshapes = self._tasks.run(image)
            if landmarks is not None and not self.refine:
                landmarks = landmarks[:468]  # the Tasks model always gives the iris points; refine=False has none
            return landmarks
        output = self._solution.process(image)
        if not output.multi_face_landmarks:
            return None
        landmarks = output.multi_face_landmarks[0].landmark
        return np.array([[p.x, p.y, p.z] for p in landmarks], np.float64)

    def on_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """Mesh [N, 3] in frame pixels for the face in `box`, or None when no face is found there."""
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = self.roi_scale * max(box[2] - box[0], box[3] - box[1], 8.0)
        x0, y0 = cx - side / 2, cy - side / 2
        scale = self.roi_size / side
        matrix = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]])
        crop = cv2.warpAffine(image, matrix, (self.roi_size, self.roi_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        mesh = self._run(crop)
        if mesh is None:
            return None
        mesh *= self.roi_size
        mesh /= scale
        mesh[:, 0] += x0
        mesh[:, 1] += y0
        return mesh

    def on_image(self, image: np.ndarray) -> np.ndarray | None:
        """Mesh [N, 3] in pixels for an image that is itself a face crop."""
        height, width = image.shape[:2]
        mesh = self._run(np.ascontiguousarray(image))
        if mesh is None:
            return None
        mesh[:, 0] *= width
        mesh[:, 1] *= height
        mesh[:, 2] *= width
        return mesh


def _mesh_box(mesh: np.ndarray) -> np.ndarray:
    x0, y0 = mesh[:, 0].min(), mesh[:, 1].min()
    x1, y1 = mesh[:, 0].max(), mesh[:, 1].max()
    return np.array([x0, y0, x1, y1], np.float64)


class SubjectTracker:
    """Detect every `detect_every` frames, follow the subject with the face mesh in between (see module doc).

    A frame has a face only when the mesh finds one in the subject's crop: the mesh's own face-presence check
    rejects detector false alarms (textures, text) and gives the same landmarks to every detector. ``subject`` and
    ``detect_every`` are checked by :class:`~emi_hf.media.ClipSettings`.
    """

    def __init__(self, detector: FaceDetector, landmarker: FaceMeshLandmarker, detect_every: int = 10,
                 subject: str = "tracked", iou_threshold: float = 0.2, cut_threshold: float = 35.0,
                 reacquire_window: int = 30):
        self.detector = detector
        self.landmarker = landmarker
        self.detect_every = int(detect_every)
        self.subject = subject
        self.iou_threshold = float(iou_threshold)
        self.cut_threshold = float(cut_threshold)
        self.reacquire_window = int(reacquire_window)
        self.reset()

    def reset(self) -> None:
        """Forget the subject (call before a new clip)."""
        self.track: np.ndarray | None = None  # subject box for the next frame
        self.last_box: np.ndarray | None = None  # where the subject was last seen
        self.last_seen = -(10**9)
        self.frame_index = 0  # index of the next frame (over the whole clip)
        self.detections_run = 0
        self.tracks_started = 0
        self._thumb = None
        self.landmarker.reset()

    # -- policy ---------------------------------------------------------------------------------------------
    def _choose(self, faces: list[Face], shape) -> tuple[Face | None, bool]:
        """A subject among `faces` when none is tracked: (face, whether it is the subject seen last)."""
        if not faces:
            return None, False
        if self.subject == "central":
            center = np.array([shape[1] / 2, shape[0] / 2])
            diagonal = float(np.hypot(shape[0], shape[1]))
            return min(faces, key=lambda f: (np.linalg.norm(f.center - center) / diagonal, -f.area)), False
        if self.subject == "tracked" and self.last_box is not None and (
                self.frame_index - self.last_seen) <= self.reacquire_window:
            # lost a moment ago: take the face nearest to where the subject was, if it is near
            last = self.last_box
            last_center = np.array([(last[0] + last[2]) / 2, (last[1] + last[3]) / 2])
            last_size = max(last[2] - last[0], last[3] - last[1], 1.0)
            nearest = min(faces, key=lambda f: np.linalg.norm(f.center - last_center))
            if np.linalg.norm(nearest.center - last_center) <= last_size:
                return nearest, True
        return max(faces, key=lambda f: f.area), False

    def _match(self, faces: list[Face]) -> Face | None:
        """The detection that is the current track (IoU >= iou_threshold), if any."""
        if self.track is None or not faces:
            return None
        best = max(faces, key=lambda f: box_iou(f.box, self.track))
        return best if box_iou(best.box, self.track) >= self.iou_threshold else None

    def _is_cut(self, image: np.ndarray) -> bool:
        # every k-th pixel first (k keeps >= 4x the thumbnail's resolution): area-averaging a full HD frame costs
        # ~20x more and gives the same 32x18 thumbnail to within a few grey levels
        step = max(1, min(image.shape[0] // 72, image.shape[1] // 128))
        thumb = cv2.resize(image[::step, ::step], (32, 18), interpolation=cv2.INTER_AREA).astype(np.int16)
        previous, self._thumb = self._thumb, thumb
        return previous is not None and float(np.abs(thumb - previous).mean()) > self.cut_threshold

    def _select(self, faces: list[Face], cut: bool, shape) -> tuple[Face | None, bool]:
        """After a detection pass: (face to put the crop on, whether it starts a new track).
        ``(None, False)`` keeps following the current track with the mesh."""
        matched = self._match(faces)
        if self.subject == "tracked":
            if matched is not None:
                return matched, False
            if self.track is not None and not cut:
                # the mesh follows the subject; a detector miss (or faces elsewhere) does not switch subjects
                return None, False
            self.track = None  # no track, or a scene cut
            chosen, same = self._choose(faces, shape)
            return chosen, chosen is not None and not same
        chosen, _ = self._choose(faces, shape)
        if chosen is None:
            if cut:
                self.track = None
            return None, False
        return chosen, chosen is not matched

    # -- main loop ------------------------------------------------------------------------------------------
    def process(self, images: Sequence[np.ndarray]) -> list[FrameFace]:
        """The subject in each image of a chunk (consecutive frames of one clip, in order)."""
        n = len(images)
        detections: dict[int, list[Face]] = {}

        def detect(indices) -> None:
            indices = [i for i in indices if i not in detections]
            if indices:
                for i, faces in zip(indices, self.detector.detect([images[i] for i in indices])):
                    detections[i] = faces
                self.detections_run += len(indices)

        scheduled = {i for i in range(n) if (self.frame_index + i) % self.detect_every == 0}
        if self.detector.batched and self.track is not None:
            detect(sorted(scheduled))  # one batch for the chunk's scheduled frames
        results = []
        for i, image in enumerate(images):
            cut = self._is_cut(image)
            if i in scheduled or cut or self.track is None:
                if self.detector.batched and self.track is None:
                    detect(range(i, min(n, i + self.detect_every)))  # lost: this frame and a few ahead, batched
                else:
                    detect([i])
            results.append(self._step(image, detections.get(i), cut, lambda i=i: (detect([i]), detections[i])[1]))
            self.frame_index += 1
        return results

    def _step(self, image: np.ndarray, faces: list[Face] | None, cut: bool, detect_now) -> FrameFace:
        result = FrameFace(detected=faces is not None)
        chosen, new_track = self._select(faces, cut, image.shape) if faces is not None else (None, False)
        if new_track:
            self.landmarker.reset()
        roi = chosen.box if chosen is not None else self.track
        mesh = self.landmarker.on_box(image, roi) if roi is not None else None
        if mesh is None and roi is not None and chosen is None:
            # the mesh lost the subject between detections: detect on this frame before giving up
            faces = detect_now()
            result.detected = True
            self.track = None
            chosen, same = self._choose(faces, image.shape)
            if chosen is not None:
                new_track = not same
                self.landmarker.reset()
                mesh = self.landmarker.on_box(image, chosen.box)
        if mesh is None:  # a frame has a face only when the mesh confirms it
            self.track = None
            return result
        box = _mesh_box(mesh)
        self.track = self.last_box = box
        self.last_seen = self.frame_index
        self.tracks_started += int(new_track)
        result.track_id = self.tracks_started - 1
        result.box, result.mesh, result.points = box, mesh, mesh_five_points(mesh)
        result.blendshapes = self.landmarker.last_blendshapes
        result.score = chosen.score if chosen is not None else 1.0
        result.new_track = new_track
        return result
