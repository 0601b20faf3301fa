"""Section extract_scaling: `emi-hf extract` throughput with 1 and 2 processes (torchrun, gloo) on this machine.

Synthetic clips (emi_hf.data.synthetic, 256 px, 25 fps, speech-like audio), the CLI's default preprocessing (MTCNN
faces, 30 fps, MediaPipe AUs) and base-sized backbones with random weights (ResNet18, wav2vec2-base: the cost of
pretrained ones). Each run starts from an empty output folder and an empty clip cache. Figures:

- video seconds per wall second of `run_extraction` (extraction_report.json: from the start of the run, saving
  the processor and base models included, to the merged dataset), per number of processes;
- the same over the processes' extraction loops only (the slowest process's loop), which leaves out the fixed costs;
- speed-up over one process, and per process (speed-up / processes).

Two alternating rounds (one with --quick); each row is its count's best round, the note lists every round with
the machine's load average, since on a shared machine the other jobs' load moves these figures more than anything.

On a CUDA machine every process puts its backbones on GPU LOCAL_RANK % GPUs; the process counts go up to the cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from table import row

SECTION = "extract_scaling"


def _dataset(work: Path, quick: bool) -> tuple[Path, int]:
    from emi_hf.data.synthetic import generate_synthetic_dataset

    clips, duration = (4, 3.0) if quick else (8, 6.0)
    folder = work / SECTION / f"data_{clips}x{duration:g}s"
    generate_synthetic_dataset(folder, num_train=clips, num_valid=0, duration=duration, fps=25, size=256, seed=11)
    return folder, clips


def _run(data: Path, work: Path, processes: int) -> dict:
    output, cache = work / SECTION / f"out_{processes}", work / SECTION / f"cache_{processes}"
    for folder in (output, cache):
        shutil.rmtree(folder, ignore_errors=True)
    extract = ["extract", "--data-dir", str(data), "--splits", "train", "--output", str(output),
               "--visual-backbone", "random", "--speech-encoder", "random", "--no-progress"]
    if processes == 1:
        command = [sys.executable, "-m", "emi_hf.cli", *extract]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                   "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "emi_hf.cli", *extract]
    env = {**os.environ, "EMI_HF_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    began = time.time()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    report = json.loads((output / "extraction_report.json").read_text())
    report["command_wall_s"] = time.time() - began
    shutil.rmtree(output, ignore_errors=True)  # base-sized models: about 400 MB per run
    return report


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(media: Path, work: Path, quick: bool) -> None:
    """Process counts in alternating rounds (1, 2, 1, 2, ...); each count's best round is the row (the least
    disturbed on a shared machine), every round's figure and the load average are in the note."""
    data, clips = _dataset(work, quick)
    cores = len(os.sched_getaffinity(0))
    counts = [1, 2] if cores <= 2 else [n for n in (1, 2, 4, 8, 16) if n <= cores]
    runs: dict[int, list[dict]] = {n: [] for n in counts}
    for _ in range(1 if quick else 2):
        for n in counts:
            load = os.getloadavg()[0]
            report = _run(data, work, n)
            video = report["video_seconds_this_run"]
            report["rate"] = report["video_s_per_wall_s"]
            report["loop_rate"] = video / max(p["wall_s"] for p in report["clips_per_process"])
            report["load"] = (load + os.getloadavg()[0]) / 2
            runs[n].append(report)
    _rows(runs, clips, cores)


def _rows(runs: dict[int, list[dict]], clips: int, cores: int) -> None:
    from table import bench_device

    best = {n: max(reports, key=lambda r: r["rate"]) for n, reports in runs.items()}
    base = best[1]
    for n, report in best.items():
        plural = "es" if n > 1 else ""
        rounds = ", ".join(f"{r['rate']:.2f} at load {r['load']:.1f}" for r in runs[n])
        threads = "/".join(str(t) for t in sorted(set(report["threads_per_process"])))
        row(SECTION, f"extract, {n} process{plural} (run_extraction wall)", round(report["rate"], 2),
            "video s / wall s",
            note=f"{clips} clips, {report['video_seconds_this_run']:.0f} s of video, {threads} thread(s) per process, "
                 f"{bench_device()}; best of: {rounds} (1-minute load average)")
        row(SECTION, f"extract, {n} process{plural} (extraction loops only)", round(report["loop_rate"], 2),
            "video s / wall s", note=f"run {report['wall_time_s']:.1f} s, command {report['command_wall_s']:.1f} s")
        if n > 1:
            speed, loop_speed = report["rate"] / base["rate"], report["loop_rate"] / base["loop_rate"]
            row(SECTION, f"speed-up, {n} processes over 1 (run / loops)", f"{speed:.2f} / {loop_speed:.2f}", "x",
                note=f"per process {speed / n:.2f} / {loop_speed / n:.2f}")
    if cores <= 2:
        row(SECTION, "4, 8, 16 processes, GPU shared by every process", "not run", "",
            note=f"this machine has {cores} cores and no GPU was lent to this session")
