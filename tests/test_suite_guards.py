"""Guards of the suite itself: it cannot silently stop testing on CI (a media test whose media folder is missing fails
there, CI=true, instead of skipping, and `.ci/run` exports CI=true itself), and what the package's docstrings say is
tested names tests that exist and run what the docstring says."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import REPO_ROOT

MEDIA_TEST = """
def test_reads_media(media_dir):
    assert media_dir.is_dir()
"""


def run_media_test(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    """Runs a one-test suite with this repository's conftest and a media folder that does not exist."""
    suite = tmp_path / "suite"
    suite.mkdir(exist_ok=True)
    for name in ("conftest.py", "helpers.py"):
        shutil.copy(REPO_ROOT / "tests" / name, suite / name)
    (suite / "test_media_needed.py").write_text(MEDIA_TEST)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(EMI_HF_MEDIA_DIR=str(tmp_path / "no_media_here"), PYTHONPATH=os.pathsep.join(
        [str(suite), *filter(None, [os.environ.get("PYTHONPATH")])]))
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(suite)],
                          cwd=suite, env=env, capture_output=True, text=True, timeout=300)


def test_missing_media_skips_locally_and_fails_on_ci(tmp_path):
    local = run_media_test(tmp_path, ci=None)
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout[-2000:]
    assert "real test media not found" in local.stdout
    on_ci = run_media_test(tmp_path, ci="true")
    assert on_ci.returncode == 1 and "1 error" in on_ci.stdout, on_ci.stdout[-2000:]
    assert "on CI (CI=true) the media tests must run" in on_ci.stdout


def test_ci_script_exports_ci_true(tmp_path):
    """`.ci/run` with stand-ins for `make` (records the CI each call is given) and `chromium` (nothing to install):
    every make target it runs (make test among them) sees CI=true."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "make_saw"
    (bin_dir / "make").write_text(f'#!/bin/sh\necho "CI=$CI args=$*" >> {record}\n')
    (bin_dir / "chromium").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("make", "chromium"):
        (bin_dir / tool).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    result = subprocess.run(["bash", str(REPO_ROOT / ".ci" / "run")], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    calls = record.read_text().splitlines()
    assert "CI=true args=test" in calls and all(call.startswith("CI=true args=") for call in calls), calls


TEST_REFERENCE = re.compile(r"tests/(test_\w+\.py)::(test_\w+)")


def functions_of(path: Path) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}


def test_every_test_a_docstring_names_exists():
    """A docstring (or comment) in src/ that cites `tests/<file>.py::<test>` as what backs a claim names a test that
    is there: renaming or removing the test breaks this, so the claim cannot outlive its test."""
    cited = []
    for source in sorted((REPO_ROOT / "src").rglob("*.py")):
        for file_name, test_name in TEST_REFERENCE.findall(source.read_text()):
            cited.append((source.name, file_name, test_name))
            assert test_name in functions_of(REPO_ROOT / "tests" / file_name), (source, file_name, test_name)
    assert len(cited) >= 2, cited  # at least the two of EmiTrainingArguments


def test_the_one_vs_two_processes_claim_is_what_its_test_runs():
    """`EmiTrainingArguments`' docstring: 1 and 2 processes agree within 1e-5 for a visual model on cached features,
    2 epochs, dropout 0 and channel dropout 0, Pearson loss, and weights are not compared; the test it names runs and
    asserts exactly that."""
    from emi_hf.training import EmiTrainingArguments

    doc = " ".join(EmiTrainingArguments.__doc__.split())
    for phrase in ("a visual model on cached features, 2 epochs, dropout 0 and channel dropout 0, Pearson loss",
                   "within 1e-5", "The weights themselves are not compared", "nothing is claimed with dropout > 0"):
        assert phrase in doc, phrase
    test = functions_of(REPO_ROOT / "tests" / "test_training.py")["test_two_processes_give_the_same_metric_as_one"]
    source = " ".join(ast.unparse(test).split())
    for piece in ("'--modality', 'visual'", "'--epochs', '2'", "'--dropout', '0'", "'--channel-dropout', '0'",
                  "'--loss', 'pearson'", "'--nproc_per_node', '2'", "'--num_processes', '1'", "abs=1e-05"):
        assert piece in source, piece
    assert "safetensors" not in source and "state_dict" not in source  # weights are indeed not compared
