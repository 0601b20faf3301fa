"""What `pip install emi-hf` asks for: ranges, not pins; only what predict / extract / train need; mediapipe per
Python; constraints.txt pinning the same set exactly."""

from __future__ import annotations

import importlib.metadata
import re
import warnings
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
REQUIRED = [Requirement(line) for line in PROJECT["dependencies"]]
NAMES = {canonicalize_name(r.name) for r in REQUIRED}


def _python(version: str) -> dict:
    return {"python_version": version, "python_full_version": f"{version}.0"}


def test_required_set_has_no_extras_in_it():
    # no contrib API is used (cv2 comes with mediapipe, see below); tensorboard is never imported (an extra)
    for name in ("opencv-contrib-python", "opencv-python", "tensorboard", "gradio", "gradio-client", "evaluate",
                 "faster-whisper", "pytest", "playwright", "pyinstrument", "psutil"):
        assert name not in NAMES, name
    extras = PROJECT["optional-dependencies"]
    assert {"demo", "asr", "evaluate", "tensorboard", "dev"} <= set(extras)
    assert any(Requirement(r).name == "tensorboard" for r in extras["tensorboard"])
    # what predict, extract and train import
    assert {"torch", "torchvision", "transformers", "accelerate", "datasets", "mediapipe", "facenet-pytorch", "av",
            "silero-vad"} <= NAMES


def test_ranges_not_pins():
    for requirement in REQUIRED:
        specifiers = list(requirement.specifier)
        if requirement.name == "mediapipe" and str(requirement.marker) == 'python_version < "3.13"':
            continue  # the legacy graphs live in exactly that release
        assert not any(s.operator == "==" for s in specifiers), requirement
        assert any(s.operator in (">=", ">") for s in specifiers), f"{requirement}: no lower bound"
        assert any(s.operator in ("<", "<=") for s in specifiers), f"{requirement}: no upper bound"
    torch = next(r for r in REQUIRED if r.name == "torch")
    assert torch.specifier.contains("2.14.1") and torch.specifier.contains("2.13.0")  # the machine's torch fits


@pytest.mark.parametrize("version", ["3.10", "3.11", "3.12", "3.13"])
def test_one_mediapipe_per_python(version):
    mediapipe = [r for r in REQUIRED if r.name == "mediapipe" and r.marker.evaluate(_python(version))]
    assert len(mediapipe) == 1
    if version == "3.13":  # 0.10.14 has no wheel there; the Tasks API releases do
        assert not mediapipe[0].specifier.contains("0.10.14") and mediapipe[0].specifier.contains("1.2.3")
    else:
        assert mediapipe[0].specifier.contains("0.10.14")


def test_mediapipe_brings_opencv():
    """emi-hf imports cv2 without listing an OpenCV distribution (a second one beside mediapipe's would install
    cv2 twice): the installed mediapipe must require one."""
    requires = [Requirement(r) for r in importlib.metadata.requires("mediapipe") or []]
    assert any(r.name.startswith("opencv") and r.marker is None for r in requires)


def test_constraints_pin_every_requirement():
    lines = [line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    pins: dict[str, list[Requirement]] = {}
    for line in lines:
        requirement = Requirement(line)
        assert len(requirement.specifier) == 1 and next(iter(requirement.specifier)).operator == "==", line
        pins.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    for version in ("3.11", "3.13"):
        environment = _python(version)
        for requirement in REQUIRED:
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            chosen = [p for p in pins.get(canonicalize_name(requirement.name), [])
                      if p.marker is None or p.marker.evaluate(environment)]
            assert len(chosen) == 1, f"{requirement.name} on {version}: {chosen}"
            pinned = next(iter(chosen[0].specifier)).version
            assert requirement.specifier.contains(pinned, prereleases=True), f"{chosen[0]} outside {requirement}"
    installed = importlib.metadata.version("torch").split("+")[0]
    assert [str(p.specifier) for p in pins["torch"]] == [f"=={installed}"]  # what this suite runs with


def test_no_tensorboard_warns(monkeypatch):
    import importlib.util

    from emi_hf.training.arguments import TrainingArguments

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "tensorboardX") else real(name, *a))
    with pytest.warns(UserWarning, match=re.escape("pip install 'emi-hf[tensorboard]'")):
        TrainingArguments(features="f")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainingArguments(features="f", report_to="none")
