"""Benchmark section "disk" (opt-in: `--sections disk`, about 10 minutes): the disk the README's two set-up
commands take, on a clean clone of this checkout's HEAD in the work folder.

- install: `make venv` from nothing; peak and final disk use over the use before it (`shutil.disk_usage` every 0.5 s,
  the same figure `df` prints), and the size of `.venv`. Where pip finds torch depends on the machine's pip
  configuration: set `PIP_EXTRA_INDEX_URL` (recorded in the note) to make it fetch torch from PyPI, as a machine
  without a local wheel index does.
- tests (skipped with `--quick`): `make test` in that clone; its peak over the use before it, and what is left in its
  temporary folder (a TMPDIR of its own) afterwards.

The figures are disk use of the whole file system, so anything else writing on it moves them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from table import row

REPO = Path(__file__).resolve().parent.parent
GB = 1024**3


def _used() -> int:
    return shutil.disk_usage("/").used


def _run_sampled(command: list[str], cwd: Path, log: Path, env: dict | None = None) -> tuple[int, float, float, float]:
    """Runs `command`; returns (exit code, seconds, peak GB over the start, final GB over the start)."""
    start, peak, stop = _used(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _used())
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    began = time.time()
    sampler.start()
    with log.open("w") as out:
        code = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], _used())
    return code, time.time() - began, (peak[0] - start) / GB, (_used() - start) / GB


def _du_gb(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return total / GB


def _clone(work: Path) -> Path:
    folder = work / "disk"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", str(REPO), str(folder / "main")], check=True)
    shared = REPO.parent / "shared"
    if shared.is_dir():
        (folder / "shared").symlink_to(shared)  # the media tests read ../shared, as on CI
    return folder / "main"


def run(media: Path, work: Path, quick: bool) -> None:
    clone = _clone(work)
    index = os.environ.get("PIP_EXTRA_INDEX_URL", "(the machine's pip configuration)")
    code, seconds, peak, final = _run_sampled(["make", "venv"], clone, work / "disk" / "make_venv.log")
    if code != 0:
        raise SystemExit(f"make venv failed (exit {code}); see {work / 'disk' / 'make_venv.log'}")
    note = f"{seconds:.0f} s; extra index: {index}"
    row("disk", "make venv on a clean clone: peak over the disk in use before it", round(peak, 1), "GB", note=note)
    row("disk", "make venv: disk left in use (.venv)", round(final, 1), "GB",
        note=f".venv itself {_du_gb(clone / '.venv'):.1f} GB")
    if quick:
        return
    # a temporary folder of its own (TMPDIR), so that what the run leaves there can be measured; pytest's base
    # folder is its default one under it, as on CI (a --basetemp would change what pytest removes at the end)
    tmp = Path(tempfile.mkdtemp(prefix="emi_disk_tmp_"))
    env = dict(os.environ, TMPDIR=str(tmp))
    code, seconds, peak, _ = _run_sampled(["make", "test"], clone, work / "disk" / "make_test.log", env)
    left = _du_gb(tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    row("disk", "make test: peak over the disk in use before it (its temporary files included)", round(peak, 1),
        "GB", note=f"{seconds:.0f} s, exit {code}")
    row("disk", "make test: left in its temporary folder afterwards", round(left, 2), "GB",
        note="pytest keeps only failed tests' folders" if code == 0 else f"exit {code}: failed tests' folders kept")
    shutil.rmtree(work / "disk", ignore_errors=True)
