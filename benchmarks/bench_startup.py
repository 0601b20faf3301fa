"""Start-up costs as a user meets them, each in a fresh process (section `startup`, issue 22):

- `emi-hf --help`: wall time and peak RSS;
- `python -c "import emi_hf"` against `python -c "import torch, transformers"` (and against `import torch` +
  transformers' `AutoModel`, what a script that loads a model imports anyway);
- `emi-hf predict` of a 10 s clip cut from the shared media, as a fresh process (base-sized fusion checkpoint with
  random weights saved with a processor, mediapipe face detector, no clip cache): wall time and peak RSS.

Each is run `--startup-repeats` times (default 3) and the minimum is kept (the machine is shared: the minimum is the
run least disturbed by other processes; the load average is in the note). `--startup-src DIR [DIR ...]` measures these
source trees' packages in turn (e.g. main's `src` and this one, for before / after rows) through PYTHONPATH, with the
same interpreter.

    python benchmarks/run_benchmarks.py --sections startup [--startup-src /path/to/other/src]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from long_clip import build_long_clip, cut_clip
from table import row

REPO = Path(__file__).resolve().parents[1]


def add_arguments(parser) -> None:
    parser.add_argument("--startup-src", nargs="+", help="source trees whose emi_hf to measure, each in turn (default: "
                        "this checkout's src), e.g. main's src and this one for before / after rows")
    parser.add_argument("--startup-repeats", type=int, default=3, help="runs per measurement; the minimum is kept")


def _timed(command: list[str], env: dict) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of one child process. The RSS comes from GNU time (`/usr/bin/time -f %M`),
    itself a small process: the rusage of a child forked from this (large) process would start at this one's size."""
    timer = ["/usr/bin/time", "-f", "TIME %e %M"] if Path("/usr/bin/time").exists() else []
    began = time.perf_counter()
    done = subprocess.run([*timer, *command], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-500:]}")
    lines = [line for line in done.stderr.splitlines() if line.startswith("TIME ")]
    rss = int(lines[-1].split()[2]) / 1024 if lines else float("nan")
    return wall, rss, done.stdout


def _best(command: list[str], env: dict, repeats: int) -> tuple[float, float, list[float]]:
    runs = [_timed(command, env) for _ in range(repeats)]
    walls = [wall for wall, _, _ in runs]
    return min(walls), min(rss for _, rss, _ in runs), walls


def _note(walls: list[float], extra: str = "") -> str:
    load = os.getloadavg()[0]
    spread = ", ".join(f"{w:.2f}" for w in walls)
    return f"min of {len(walls)} ({spread} s), load avg {load:.1f} on {os.cpu_count()} cores{extra}"


def _predict_checkpoint(folder: Path) -> None:
    code = (
        "import sys\n"
        "from emi_hf import EmiAudioConfig, EmiFusionConfig, EmiFusionModel, EmiProcessor, EmiVisualConfig\n"
        "model = EmiFusionModel(EmiFusionConfig(visual_config=EmiVisualConfig(), audio_config=EmiAudioConfig()))\n"
        "model.save_pretrained(sys.argv[1])\n"
        "EmiProcessor(face_detector='mediapipe', use_cache=False).save_pretrained(sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, env=os.environ)


def run(media: Path, work: Path, quick: bool, args=None) -> None:
    long_clip = build_long_clip(media, work / "long_1min.mp4", min_duration_s=60)
    clip = cut_clip(long_clip, work / "clip_10s.mp4", start=19.7, duration=10.0)
    for src in getattr(args, "startup_src", None) or [REPO / "src"]:
        _run_one(Path(src).resolve(), clip, getattr(args, "startup_repeats", 3))


def _run_one(src: Path, clip: Path, repeats: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    which = "this checkout" if src == (REPO / "src").resolve() else str(src)
    which = which if which == "this checkout" else src.parent.name  # e.g. "main" for /work/main/src
    cli = [sys.executable, "-m", "emi_hf.cli"]

    wall, rss, walls = _best([*cli, "--help"], env, repeats)
    row("startup", f"emi-hf --help ({which})", round(wall, 2), "s", note=_note(walls, f"; peak RSS {rss:.0f} MiB"))
    row("startup", f"emi-hf --help peak RSS ({which})", round(rss), "MiB")
    for label, code in (("import emi_hf", "import emi_hf"),
                        ("import torch, transformers", "import torch, transformers"),
                        ("import torch + transformers.AutoModel", "import torch; from transformers import AutoModel")):
        wall, rss, walls = _best([sys.executable, "-c", code], env, repeats)
        row("startup", f"python -c '{label}' ({which})", round(wall, 2), "s",
            note=_note(walls, f"; peak RSS {rss:.0f} MiB"))

    with tempfile.TemporaryDirectory() as folder:
        _predict_checkpoint(Path(folder))
        command = [*cli, "predict", str(clip), "--model", folder, "--allow-random-backbones", "--json"]
        wall, rss, walls = _best(command, env, repeats)
        row("startup", f"emi-hf predict, 10 s clip, fresh process ({which})", round(wall, 2), "s",
            target="< 5 s", passed=wall < 5.0, note=_note(walls, f"; peak RSS {rss:.0f} MiB; base-sized fusion, "
                                                                  "mediapipe detector, no clip cache"))
