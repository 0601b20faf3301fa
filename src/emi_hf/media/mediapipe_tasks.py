"""MediaPipe on every supported Python: the legacy ``solutions`` graphs where they install, the Tasks API elsewhere.

mediapipe 0.10.14 (Python 3.10-3.12) ships the legacy ``mediapipe.solutions`` face mesh and BlazeFace graphs with
their models inside the wheel. The releases that install on Python 3.13 (0.10.30 and later, 1.x) dropped that API
and those models: their Tasks API (``mediapipe.tasks.python.vision``) runs a model bundle given as a file,
``face_landmarker.task`` (Google's MediaPipe Face Landmarker, Apache-2.0, 3.7 MB: a BlazeFace short-range detector,
the 478-point face mesh and a blendshape model with 52 expression scores).

Which graphs run (``ClipSettings.mediapipe_backend``)
----------------------------------------------------
* ``"auto"`` (default): ``"solutions"`` when the installed mediapipe has them, else ``"tasks"``;
* ``"solutions"``: the legacy graphs (an error where mediapipe has none);
* ``"tasks"``: the Tasks API (any mediapipe from 0.10.14 on).
``au_backend="blendshapes"`` needs the Tasks face landmarker (the legacy mesh has no blendshapes), so it runs the
Tasks graphs whatever this setting says (``"solutions"`` with it is an error).

Where the model file comes from (:func:`face_landmarker_model`), first found wins
-------------------------------------------------------------------------------
1. a path given in code: ``EmiProcessor(face_landmarker_model=PATH)`` (not saved with the processor);
2. the environment variable ``EMI_HF_FACE_LANDMARKER`` (a path);
3. the cache: ``$EMI_HF_MODELS/face_landmarker.task`` (default ``$HF_HOME/emi_hf/models`` when ``HF_HOME`` is set,
   else ``$XDG_CACHE_HOME/emi_hf/models`` or ``~/.cache/emi_hf/models``, which is also still read);
4. a download into that cache, once (3.7 MB from Google's MediaPipe model storage, checked against its SHA-256;
   it says what it fetches and where). Never with ``HF_HUB_OFFLINE=1`` (huggingface_hub's own check), nor with
   ``EMI_HF_ALLOW_DOWNLOADS=0``: then :class:`FaceModelNotFoundError` says where to put the file.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import os
import sys
import threading
import urllib.request
import warnings
import weakref
import zipfile
from pathlib import Path

import numpy as np

from ..errors import EmiDependencyError, EmiUnavailableError, EmiUsageError

__all__ = [
    "BLENDSHAPE_NAMES",
    "FACE_LANDMARKER_SHA256",
    "FACE_LANDMARKER_URL",
    "MEDIAPIPE_BACKENDS",
    "FaceModelNotFoundError",
    "TasksFaceDetection",
    "TasksFaceMesh",
    "face_landmarker_model",
    "import_mediapipe",
    "mediapipe_has_solutions",
    "models_cache_dir",
    "resolve_mediapipe_backend",
]

MEDIAPIPE_BACKENDS = ("auto", "solutions", "tasks")
FACE_LANDMARKER_FILE = "face_landmarker.task"
FACE_LANDMARKER_URL = ("https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/"
                       "face_landmarker.task")
FACE_LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
FACE_LANDMARKER_BYTES = 3_758_596
ENV_MODEL = "EMI_HF_FACE_LANDMARKER"
ENV_MODELS_DIR = "EMI_HF_MODELS"
ENV_ALLOW_DOWNLOADS = "EMI_HF_ALLOW_DOWNLOADS"
ENV_URL = "EMI_HF_FACE_LANDMARKER_URL"  # a mirror of the same file (the SHA-256 is still checked)

# The 52 scores of the blendshape model, in its output order (ARKit's names plus "_neutral").
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)  # fmt: skip
_BLENDSHAPE_INDEX = {name: i for i, name in enumerate(BLENDSHAPE_NAMES)}


class FaceModelNotFoundError(EmiUnavailableError, FileNotFoundError):
    """The MediaPipe face landmarker model file is needed and could be neither found nor downloaded."""


def mediapipe_has_solutions() -> bool:
    """Whether the installed mediapipe has the legacy face mesh graphs (read from its files: nothing is imported)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return False
    return any((Path(folder) / "python" / "solutions" / "face_mesh.py").is_file()
               for folder in spec.submodule_search_locations)


def resolve_mediapipe_backend(setting: str = "auto", au_backend: str | None = None) -> str:
    """``"solutions"`` or ``"tasks"``: the graphs that run for a `setting` of ``ClipSettings.mediapipe_backend``
    and an AU backend (see module doc). Raises EmiUsageError (a ValueError) for a combination that cannot run here."""
    if setting not in MEDIAPIPE_BACKENDS:
        raise EmiUsageError(f"mediapipe_backend must be one of {MEDIAPIPE_BACKENDS}, got {setting!r}")
    if au_backend == "blendshapes":
        if setting == "solutions":
            raise EmiUsageError("au_backend='blendshapes' needs MediaPipe's Tasks face landmarker (the legacy "
                                "'solutions' face mesh gives no blendshapes): use mediapipe_backend='auto' or 'tasks'.")
        return "tasks"
    if setting == "auto":
        return "solutions" if mediapipe_has_solutions() else "tasks"
    if setting == "solutions" and importlib.util.find_spec("mediapipe") is not None and not mediapipe_has_solutions():
        raise EmiUsageError("mediapipe_backend='solutions' needs mediapipe 0.10.14 (Python 3.10-3.12); the installed "
                            "mediapipe has only the Tasks API: use mediapipe_backend='auto' or 'tasks'.")
    return setting


def models_cache_dir() -> Path:
    """``$EMI_HF_MODELS``, else ``models/`` in emi-hf's cache folder, as the clip cache (``emi_hf.media.cache.
    cache_root``): ``$HF_HOME/emi_hf/models`` when ``HF_HOME`` is set, else ``$XDG_CACHE_HOME/emi_hf/models``, else
    ``~/.cache/emi_hf/models``."""
    if os.environ.get(ENV_MODELS_DIR):
        return Path(os.environ[ENV_MODELS_DIR])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "emi_hf" / "models"
    return _xdg_models_dir()


def _xdg_models_dir() -> Path:
    """Where versions before the HF_HOME rule kept the models (still read)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "emi_hf" / "models"


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def _downloads_allowed() -> bool:
    return os.environ.get(ENV_ALLOW_DOWNLOADS, "1").strip().lower() not in ("0", "false", "no", "off")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _where_to_put_it(target: Path) -> str:
    return (f"Put the file at {target} (or anywhere, and set {ENV_MODEL}=PATH or pass "
            f"EmiProcessor(face_landmarker_model=PATH)); it is Google's MediaPipe Face Landmarker, {FACE_LANDMARKER_URL} "
            f"(sha256 {FACE_LANDMARKER_SHA256}). Or use mediapipe 0.10.14 on Python 3.10-3.12, whose wheel carries "
            "its models (mediapipe_backend='solutions').")


def _download(target: Path) -> Path:
    url = os.environ.get(ENV_URL) or FACE_LANDMARKER_URL
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    print(f"[emi-hf] downloading MediaPipe's face landmarker ({FACE_LANDMARKER_BYTES / 1e6:.1f} MB, Apache-2.0) from "
          f"{url} to {target} (once; {ENV_ALLOW_DOWNLOADS}=0 turns this off)", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as handle:
            while block := response.read(1 << 20):
                handle.write(block)
        got = _sha256(partial)
        if got != FACE_LANDMARKER_SHA256:
            raise FaceModelNotFoundError(f"The face landmarker downloaded from {url} has sha256 {got}, not "
                                         f"{FACE_LANDMARKER_SHA256}; it was not kept. {_where_to_put_it(target)}")
        os.replace(partial, target)
    except OSError as error:
        if isinstance(error, FaceModelNotFoundError):
            raise
        raise FaceModelNotFoundError(f"MediaPipe's face landmarker model could not be downloaded from {url} "
                                     f"({error}). {_where_to_put_it(target)}") from error
    finally:
        if partial.exists():
            partial.unlink()
    return target


def face_landmarker_model(path: str | os.PathLike | None = None, download: bool | None = None) -> Path:
    """The face landmarker model file (``face_landmarker.task``): `path`, else ``$EMI_HF_FACE_LANDMARKER``, else
    the cache, else downloaded into the cache once (see module doc). `download=False` never downloads; the default
    downloads unless ``HF_HUB_OFFLINE`` is set or ``EMI_HF_ALLOW_DOWNLOADS=0``. Raises
    :class:`FaceModelNotFoundError` with what to do when there is none."""
    for given, origin in ((path, "face_landmarker_model"), (os.environ.get(ENV_MODEL), ENV_MODEL)):
        if given:
            given = Path(given).expanduser()
            if not given.is_file():
                raise FaceModelNotFoundError(f"{origin}={os.fspath(given)!r}: no such file. Point it to MediaPipe's "
                                             f"face_landmarker.task ({FACE_LANDMARKER_URL}).")
            return given
    target = models_cache_dir() / FACE_LANDMARKER_FILE
    legacy = [] if os.environ.get(ENV_MODELS_DIR) else [_xdg_models_dir() / FACE_LANDMARKER_FILE]
    for cached in [target, *legacy]:
        if cached.is_file():
            return cached
    if download is False or (download is None and (_offline() or not _downloads_allowed())):
        why = ("downloads are off (download=False)" if download is False else
               "HF_HUB_OFFLINE is set" if _offline() else f"{ENV_ALLOW_DOWNLOADS}=0")
        raise FaceModelNotFoundError(f"MediaPipe's Tasks API needs its face landmarker model file and none was found "
                                     f"({why}, and there is none in the cache). {_where_to_put_it(target)}")
    return _download(target)


_IDENTITIES: dict[tuple, str] = {}


def model_identity(path: Path) -> str:
    """The SHA-256 of a model file (remembered per path, size and modification time): what the clip cache keys on."""
    stat = path.stat()
    key = (os.fspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _IDENTITIES:
        _IDENTITIES[key] = _sha256(path)
    return _IDENTITIES[key]


def _detector_model(bundle: Path) -> Path:
    """The BlazeFace short-range model inside a face landmarker bundle, extracted once next to the cache."""
    target = models_cache_dir() / f"face_detector-{model_identity(bundle)[:16]}.tflite"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(bundle) as archive:
            data = archive.read("face_detector.tflite")
        partial = target.with_name(f"{target.name}.{os.getpid()}.part")
        partial.write_bytes(data)
        os.replace(partial, target)
    return target


_OPEN_GRAPHS: "weakref.WeakSet" = weakref.WeakSet()
_GRAPHS_LOCK = threading.Lock()


@atexit.register
def _close_open_graphs() -> None:
    """Closes the Tasks graphs still open while the interpreter can (mediapipe 1.x's own ``__del__`` fails at exit)."""
    for graph in list(_OPEN_GRAPHS):
        graph.close()


def import_mediapipe():
    """``import mediapipe`` with its native logging quietened first, or an ImportError saying what to install."""
    from .logs import quiet_native_logs

    quiet_native_logs()  # before the import: glog reads its level when the library loads
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import mediapipe as mp
        except ImportError as error:  # pragma: no cover - a declared dependency
            raise EmiDependencyError("The MediaPipe face detector / face mesh / AU backends need mediapipe: "
                                     "`pip install 'mediapipe==0.10.14'` on Python 3.10-3.12, `pip install "
                                     "'mediapipe>=0.10.30'` on 3.13 (emi-hf's own requirements pick the right one).") from error
    return mp


def _vision():
    mp = import_mediapipe()
    from mediapipe.tasks.python import BaseOptions, vision

    return mp, BaseOptions, vision


class _TasksGraph:
    def __init__(self, task):
        self._task = task
        self._lock = threading.Lock()
        with _GRAPHS_LOCK:
            _OPEN_GRAPHS.add(self)

    def close(self) -> None:
        with self._lock:
            if self._task is not None:
                self._task.close()
                self._task = None

    @staticmethod
    def image(mp, frame: np.ndarray):
        return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame, dtype=np.uint8))


class TasksFaceMesh(_TasksGraph):
    """The Tasks face landmarker on one image at a time (image mode: no state carries from one frame to the next):
    ``run(image)`` -> (landmarks [478, 3] normalised as the legacy mesh's, blendshape scores [52] in
    :data:`BLENDSHAPE_NAMES` order), or (None, None) without a face."""

    def __init__(self, model_path=None, min_confidence: float = 0.5):
        from .logs import native_stderr_silenced

        mp, BaseOptions, vision = _vision()
        self._mp = mp
        self.model_path = face_landmarker_model(model_path)
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=os.fspath(self.model_path)),
            running_mode=vision.RunningMode.IMAGE, num_faces=1, output_face_blendshapes=True,
            min_face_detection_confidence=min_confidence, min_face_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence)
        with native_stderr_silenced():  # the graph logs while it opens its models
            super().__init__(vision.FaceLandmarker.create_from_options(options))

    def run(self, image: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        with self._lock:
            result = self._task.detect(self.image(self._mp, image))
        if not result.face_landmarks:
            return None, None
        landmarks = np.array([[p.x, p.y, p.z] for p in result.face_landmarks[0]], np.float64)
        scores = np.full(len(BLENDSHAPE_NAMES), np.nan, np.float32)
        for category in (result.face_blendshapes[0] if result.face_blendshapes else ()):
            index = _BLENDSHAPE_INDEX.get(category.category_name)
            if index is not None:
                scores[index] = category.score
        return landmarks, scores


class TasksFaceDetection(_TasksGraph):
    """BlazeFace short-range through the Tasks API (the detector inside the face landmarker bundle; the Tasks path
    has no full-range model). ``run(image)`` -> [(box x0 y0 x1 y1 in pixels, score, keypoints [6, 2] pixels)]."""

    def __init__(self, model_path=None, min_confidence: float = 0.3):
        from .logs import native_stderr_silenced

        mp, BaseOptions, vision = _vision()
        self._mp = mp
        detector = _detector_model(face_landmarker_model(model_path))
        options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_path=os.fspath(detector)),
                                             running_mode=vision.RunningMode.IMAGE,
                                             min_detection_confidence=min_confidence)
        with native_stderr_silenced():
            super().__init__(vision.FaceDetector.create_from_options(options))

    def run(self, image: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
        height, width = image.shape[:2]
        with self._lock:
            result = self._task.detect(self.image(self._mp, image))
        faces = []
        for detection in result.detections:
            box = detection.bounding_box
            corners = np.array([box.origin_x, box.origin_y, box.origin_x + box.width, box.origin_y + box.height],
                               np.float64)
            points = np.array([[k.x * width, k.y * height] for k in detection.keypoints or ()], np.float64)
            faces.append((corners, float(detection.categories[0].score), points))
        return faces
