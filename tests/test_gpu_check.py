"""benchmarks/gpu_check.py, the script run once on a lent GPU machine, must not rot between GPU sessions: its checks
run here with the CPU as the device under test, and it refuses clearly where no GPU is visible."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import MEDIA_DIR, REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.py"


def _run(args, tmp_path, **env):
    return subprocess.run([sys.executable, str(SCRIPT), "--media-dir", str(MEDIA_DIR), *args],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, **env})


@pytest.mark.media
def test_checks_run_with_the_cpu_as_device(tmp_path):
    output = tmp_path / "gpu_check.md"
    result = _run(["--device", "cpu", "--tiny", "--steps", "forward", "train_step", "--output", str(output)],
                  tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(output.with_suffix(".json").read_text())["rows"]
    checks = {r["what"]: r for r in rows if r["section"] == "cuda"}
    forward = [r for what, r in checks.items() if what.startswith("fusion forward on cpu vs CPU, float32")]
    assert forward and float(forward[0]["value"]) == 0.0  # the same device: bit for bit
    step = [r for what, r in checks.items() if "training step" in what]
    assert step and step[0]["passed"] and step[0]["note"].split("/")[0] == step[0]["note"].split("/")[1].split()[0]
    assert all(r["passed"] for r in rows if r["passed"] is not None)
    assert "| cuda |" in output.read_text()


@pytest.mark.media
def test_refuses_without_a_visible_gpu(tmp_path):
    result = _run(["--output", str(tmp_path / "x.md")], tmp_path, CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 2
    assert "no CUDA device is visible" in result.stderr and "--device cpu" in result.stderr
    assert not (tmp_path / "x.md").exists()
