"""The published wheel works (issue 22): `python -m build` of the tracked files makes a wheel that, installed (not
editable, no source tree) into a fresh virtual environment that sees this environment's packages - its torch among
them - replaces nothing, and runs `emi-hf --version`, `emi-hf predict` and the model-card rendering (package data
inside the wheel). `make wheel-check` runs this file alone; CI runs it with the suite.

Offline: the build runs without isolation (setuptools and wheel of this environment), and pip resolves with
--no-index, so the resolution can only be satisfied by what is installed already: `--dry-run` must answer that only
emi-hf would be installed."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from helpers import MEDIA_DIR, REPO_ROOT

TESTS = Path(__file__).resolve().parent


def _run(command: list, cwd: Path, **kwargs) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1", **kwargs.pop("env", {}))
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _tracked_copy(target: Path) -> Path:
    """The repository's tracked (and new, not ignored) files, copied: the build sees what a clean clone has."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    for name in listed:
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _build_wheel(tree: Path, dist: Path) -> Path:
    if importlib.util.find_spec("build") is not None:
        _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, tree], cwd=tree)
    elif os.environ.get("CI", "").lower() == "true":
        pytest.fail("the `build` package is missing: pip install -c constraints.txt -e '.[dev]'")
    else:  # the same PEP 517 backend, through pip
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, tree], cwd=tree)
    wheels = list(dist.glob("emi_hf-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_built_wheel_installs_and_runs_without_the_source_tree(tmp_path):
    clip = MEDIA_DIR / "single_face.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} not found")
    wheel = _build_wheel(_tracked_copy(tmp_path / "tree"), tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("emi_hf/cli/__init__.py", "emi_hf/cli/stream.py", "emi_hf/hub_templates/emi-fusion.md",
                     "emi_hf/hub_templates/emi-visual.md", "emi_hf/media/au.py"):
        assert expected in names, f"{expected} is not in {wheel.name}"
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)

    # A fresh environment that sees this one's packages (torch, transformers, ...) but not its emi_hf: a .pth of
    # plain paths (the editable install's own .pth files there are not processed).
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path)
                   .strip())
    here = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if os.path.isdir(p)]
    (purelib / "machine_packages.pth").write_text("\n".join(dict.fromkeys(here)) + "\n")
    pip = [sys.executable, "-m", "pip", "--python", python]

    report = json.loads(_run([*pip, "install", "--dry-run", "--no-index", "--quiet", "--report", "-", wheel],
                             cwd=tmp_path))
    would_install = sorted(item["metadata"]["name"] for item in report["install"])
    assert would_install == ["emi-hf"], f"pip would install {would_install} (torch & co. must stay as they are)"
    _run([*pip, "install", "--no-deps", "--no-index", "--quiet", wheel], cwd=tmp_path)

    work = tmp_path / "elsewhere"  # no source tree in sight
    work.mkdir()
    located = _run([python, "-c", "import emi_hf, torch; print(emi_hf.__file__); print(torch.__file__)"], cwd=work)
    emi_file, torch_file = located.split()
    assert Path(emi_file).is_relative_to(purelib), emi_file
    assert not Path(torch_file).is_relative_to(venv), torch_file  # the machine's torch, not a new one

    version = _run([venv / "bin" / "emi-hf", "--version"], cwd=work).strip()
    from importlib.metadata import version as installed_version

    assert version == f"emi-hf {installed_version('emi-hf')}"

    checkpoint = work / "checkpoint"
    _run([python, "-c", f"import sys; sys.path.insert(0, {str(TESTS)!r}); from helpers import save_tiny_checkpoint; "
                        f"save_tiny_checkpoint(__import__('pathlib').Path({str(checkpoint)!r}))"], cwd=work)
    predicted = json.loads(_run([venv / "bin" / "emi-hf", "predict", clip, "--model", checkpoint,
                                 "--allow-random-backbones", "--json"], cwd=work))
    assert len(predicted) == 1 and len(predicted[0]["intensities"]) == 6
    assert all(0.0 <= value <= 1.0 for value in predicted[0]["intensities"].values())

    card = _run([python, "-c", "import sys; from emi_hf.hub import render_model_card; "
                               f"print(render_model_card({str(checkpoint)!r}, 'org/emi-fusion'))"], cwd=work)
    assert "library_name: transformers" in card and "org/emi-fusion" in card
