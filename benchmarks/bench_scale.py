"""Benchmark section "scale" (opt-in: `--sections scale`): a Hume-scale dry run of the feature pipeline, run as a
user runs it, on random features shaped like Hume-Vidmimic2, measuring the disk, memory and time of every step.

    python benchmarks/run_benchmarks.py --sections scale                        # 5% of Hume-Vidmimic2 (default)
    python benchmarks/run_benchmarks.py --sections scale --scale-fraction 0.1   # 10%; 1.0 = full scale (~23 GB)
    python benchmarks/run_benchmarks.py --sections scale --scale-package OTHER/src   # measure another version
    python benchmarks/run_benchmarks.py --sections scale --scale-steps merge train   # some of the steps

The data: `emi_hf.data.random_features.write_clip_files` writes the per-clip files of an extraction folder
(`features/clips/<split>/<id>.npz`) for `fraction` of the Hume-Vidmimic2 splits (8,072 train, 4,588 validation,
about 4,600 test clips; the first clips of each split, ids as in the data set), clip durations from
`random_features.ClipLengths` (an assumed distribution: log-normal body, median 4.6 s, mean 6.0 s, a tail to
2 minutes; see its docstring), and the real widths: 512-d face embeddings + 13 AUs at 30 fps, 768-d speech frames
at 50 Hz (wav2vec2-base), 768-d text tokens (3.25 tokens per second of speech). Beside it a data folder (the split
CSVs, empty placeholder videos: extraction never opens them, every clip being extracted already) and a random text
encoder of BERT-base's layer sizes on a small word vocabulary (`emi_hf.text.build_word_text_encoder`).

The steps, each the command line in a subprocess (`python -m emi_hf.cli`; PYTHONPATH, or `--scale-package`, picks
the package version measured), with private TMPDIR, HF_DATASETS_CACHE and EMI_HF_CACHE folders, in this order:

1. merge: `emi-hf extract` over the folder whose clips are all extracted (random base-sized backbones, the text
   stage with --transcripts): what runs after the last clip of a real extraction (base models saved, clips merged).
2. train: `emi-hf train --modality fusion --fusion-mode feature --epochs 1` (every modality in one model).
3. evaluate: `emi-hf evaluate` of that model on the validation split (`--output` beside the run).
4. submit: `emi-hf submit --data-dir DATA` (the test split; verified against the data folder's ids).
5. cv: `emi-hf cv --folds 5` with the train step's model and epochs (last: on main it leaves files in the features
   folder, which would count in the later steps' disk).

While a step runs, a thread samples every 0.25 s the resident memory of its process tree (psutil; the sum over the
processes of VmRSS, and of RssAnon, the part that is not file pages such as memory-mapped Arrow files) and, about
every second, the disk used (allocated blocks) under the features folder, the step's output folder, its TMPDIR and
its datasets cache. Rows (each note starts with the measured package's commit, the date, the machine, the load
average and the fraction; results.json also keeps them as fields):

- feature bytes: the bytes of the feature arrays (float32 features, masks, labels: the format-independent size of
  one copy), and their full-scale extrapolation (divided by the fraction);
- per step: the peak disk over the feature bytes extrapolated to full scale (target <= 1.2x): feature data (.npz,
  .arrow, .parquet files, and anything under features/clips, features/dataset, TMPDIR or the datasets cache) divided
  by the fraction, the rest (base models, checkpoints, optimizer states, configs, logs) as measured; the note has the
  measured figures, and the copies of the feature data at the peak, which do not depend on the fraction;
- per step: the peak RSS of its process tree (target < 8 GB), measured at the fraction and not extrapolated (run two
  fractions to see whether it grows);
- merge: the copies of the feature data the features folder keeps afterwards (target 1);
- one epoch (its training loop, from the run's results.json), the 5-fold cv and the submission, in seconds, the
  epoch and the cv extrapolated linearly in the number of clips.

Rows are appended to results.md / results.json (earlier `scale` rows are kept, so "before" and "after" runs of
package versions sit side by side); the section prints its own table at the end. Times move with the load of a
shared machine (in every note); disk and memory much less. The section's folder (`WORK/scale`) is removed afterwards
unless `--scale-keep`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from table import device_name, row

SECTION = "scale"
DEFAULT_FRACTION = 0.05
QUICK_FRACTION = 0.01
GB = 1e9
DATA_SUFFIXES = (".npz", ".npy", ".arrow", ".parquet")  # feature data: grows with the clips
DISK_TARGET, RSS_TARGET_GB = 1.2, 8.0
STEPS = ("merge", "train", "evaluate", "submit", "cv")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("section scale")
    group.add_argument("--scale-fraction", type=float, default=None,
                       help=f"fraction of Hume-Vidmimic2's clips (default {DEFAULT_FRACTION}; {QUICK_FRACTION} with "
                            "--quick; 1.0 = full scale, about 23 GB of features)")
    group.add_argument("--scale-epochs", type=int, default=1, help="epochs of the train and cv steps (default 1)")
    group.add_argument("--scale-folds", type=int, default=5, help="cv folds (default 5)")
    group.add_argument("--scale-batch-size", type=int, default=32,
                       help="batch size of the train and cv steps (default 32, the CLI's default)")
    group.add_argument("--scale-steps", nargs="+", choices=STEPS, metavar="STEP",
                       help=f"steps to run (default all: {' '.join(STEPS)}); merge is always needed, train by "
                            "evaluate and submit")
    group.add_argument("--scale-keep", action="store_true", help="keep the section's folder afterwards")
    group.add_argument("--scale-package", metavar="SRC",
                       help="measure the emi_hf of this src folder (put first on the steps' PYTHONPATH; default: the "
                            "one this Python imports); the data are generated by the package this Python imports")


# ----------------------------------------------------------------------------------------------------------------------
# What is measured: the package version, disk, process-tree memory
# ----------------------------------------------------------------------------------------------------------------------


def package_version(env: dict) -> dict:
    """The emi_hf the subprocesses import (PYTHONPATH decides): its folder, git commit (+ "-dirty" when its
    checkout has uncommitted changes under src/) and version."""
    script = "import emi_hf, json; print(json.dumps([emi_hf.__file__, getattr(emi_hf, '__version__', None)]))"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    path, version = json.loads(out.stdout.strip().splitlines()[-1])
    folder = Path(path).resolve().parent

    def git(*words):
        result = subprocess.run(["git", "-C", str(folder), *words], capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "--short=10", "HEAD") or "unknown"
    if git("status", "--porcelain", "--", str(folder)):
        commit += "-dirty"
    return {"commit": commit, "package": str(folder), "version": version}


def disk_bytes(folders, data_folders=()) -> tuple[int, int]:
    """(allocated bytes, of which feature data) under `folders` (missing ones count 0; symlinks not followed).
    Feature data: files with a `DATA_SUFFIXES` suffix, and every file under one of `data_folders` (where
    temporary files of any name hold data); the rest (base models, checkpoints, optimizer states, configs, logs) does
    not grow with the number of clips."""
    total = data = 0
    stack = [(Path(f), Path(f) in data_folders) for f in folders]
    while stack:
        folder, in_data = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), in_data or Path(entry.path) in data_folders))
                elif entry.is_file(follow_symlinks=False):
                    size = entry.stat(follow_symlinks=False).st_blocks * 512
                    total += size
                    if in_data or entry.name.endswith(DATA_SUFFIXES):
                        data += size
            except FileNotFoundError:  # removed while we looked
                continue
    return total, data


def tree_memory(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) bytes summed over process `pid` and its descendants (shared pages count once per process,
    so the sum is an upper bound)."""
    import psutil

    try:
        processes = [psutil.Process(pid)]
        processes += processes[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    rss = anon = 0
    for process in processes:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status.splitlines()
                      if line.startswith(("VmRSS", "RssAnon"))}
            rss, anon = rss + fields.get("VmRSS", 0), anon + fields.get("RssAnon", 0)
        except (OSError, ValueError, IndexError):
            try:
                rss += process.memory_info().rss
            except psutil.Error:
                pass
    return rss, anon


class StepSampler(threading.Thread):
    """Samples a running process tree's memory (every 0.25 s) and the disk under `folders` (every second, or ten
    times the last walk's duration when walking takes longer)."""

    def __init__(self, pid: int, folders: list[Path], data_folders: list[Path], fraction: float):
        super().__init__(daemon=True)
        self.pid, self.folders, self.data_folders, self.fraction = pid, folders, data_folders, fraction
        self.stop = threading.Event()
        self.peak_rss = self.peak_anon = 0
        self.disk_start = self.disk_now(store=False)[0]
        self.peak_disk = self.disk_start
        self.peak_full_scale = 0.0  # max over the samples of (bytes - data) + data / fraction
        self.peak_data = 0

    def disk_now(self, store: bool = True) -> tuple[int, int]:
        total, data = disk_bytes(self.folders, self.data_folders)
        if store:
            self.peak_disk = max(self.peak_disk, total)
            self.peak_full_scale = max(self.peak_full_scale, total - data + data / self.fraction)
            self.peak_data = max(self.peak_data, data)
        return total, data

    def run(self) -> None:
        next_walk = 0.0
        while not self.stop.is_set():
            rss, anon = tree_memory(self.pid)
            self.peak_rss, self.peak_anon = max(self.peak_rss, rss), max(self.peak_anon, anon)
            if time.monotonic() >= next_walk:
                began = time.monotonic()
                self.disk_now()
                next_walk = time.monotonic() + max(1.0, 10 * (time.monotonic() - began))
            self.stop.wait(0.25)


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def run_step(name: str, command: list[str], env: dict, folders: list[Path], data_folders: list[Path], log: Path,
             fraction: float) -> dict:
    """Runs one CLI command with the sampler on it; returns its figures."""
    load_start, started = os.getloadavg()[0], _now()
    began = time.perf_counter()
    with log.open("w") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = StepSampler(process.pid, folders, data_folders, fraction)
        sampler.start()
        code = process.wait()
    wall = time.perf_counter() - began
    sampler.stop.set()
    sampler.join()
    end, end_data = sampler.disk_now()
    print(f"[{SECTION}] {name}: exit {code}, {wall:.1f} s, peak RSS {sampler.peak_rss / GB:.2f} GB, peak disk "
          f"{sampler.peak_disk / GB:.2f} GB (log {log})", flush=True)
    return {"name": name, "exit": code, "wall_s": wall, "peak_rss": sampler.peak_rss, "peak_anon": sampler.peak_anon,
            "disk_start": sampler.disk_start, "peak_disk": sampler.peak_disk, "disk_end": end,
            "disk_end_data": end_data, "peak_data": sampler.peak_data, "peak_full_scale": sampler.peak_full_scale,
            "load": (load_start + os.getloadavg()[0]) / 2, "started": started, "log": str(log),
            "log_tail": log.read_text(errors="replace")[-600:] if code else ""}


# ----------------------------------------------------------------------------------------------------------------------
# The data
# ----------------------------------------------------------------------------------------------------------------------


def split_counts(fraction: float) -> dict[str, int]:
    from emi_hf.data.random_features import HUME_VIDMIMIC2_CLIPS

    return {split: max(5, round(fraction * count)) for split, count in HUME_VIDMIMIC2_CLIPS.items()}


def check_free_disk(folder: Path, fraction: float) -> float:
    """Refuses to start when the disk under `folder` has less free space than the run may need (about 8 copies of
    the features at this fraction, as main's merge and cv made, plus 4 GB of models and checkpoints); returns the
    estimated feature bytes."""
    from emi_hf.data.random_features import HUME_VIDMIMIC2_CLIPS, ClipLengths

    bytes_per_second = 30 * (512 + 13) * 4 + 50 * (768 * 4 + 2) + 3.25 * 768 * 4
    features = sum(HUME_VIDMIMIC2_CLIPS.values()) * fraction * ClipLengths().mean_s(100_000) * bytes_per_second
    need, free = 8 * features + 4 * GB, shutil.disk_usage(folder).free
    print(f"[{SECTION}] fraction {fraction:g}: about {features / GB:.1f} GB of features; free disk {free / GB:.0f} GB, "
          f"up to {need / GB:.0f} GB needed", flush=True)
    if free < need:
        raise SystemExit(f"[{SECTION}] {folder}: {free / GB:.0f} GB free, the run at fraction {fraction:g} may need "
                         f"{need / GB:.0f} GB: pass a smaller --scale-fraction, or free disk.")
    return features


def build_inputs(root: Path, fraction: float) -> dict:
    """data/ (split CSVs, placeholder videos, transcripts.csv), text_encoder/ and features/clips/; returns the clip
    records and the text encoder's folder."""
    from emi_hf.configuration_emi import EMOTION_NAMES
    from emi_hf.data.random_features import HUME_VIDMIMIC2_FIRST_IDS, write_clip_files
    from emi_hf.text import build_word_text_encoder

    began = time.perf_counter()
    records = write_clip_files(root / "features", split_counts(fraction), first_ids=HUME_VIDMIMIC2_FIRST_IDS)
    data = root / "data"
    (data / "raw").mkdir(parents=True)
    for split, csv_name in (("train", "train_split.csv"), ("validation", "valid_split.csv"),
                            ("test", "test_split.csv")):
        labelled = split != "test"
        with (data / csv_name).open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["Filename", *EMOTION_NAMES] if labelled else ["Filename"])
            for r in (r for r in records if r["split"] == split):
                writer.writerow([r["clip_id"], *(f"{v:.6f}" for v in r["labels"])] if labelled else [r["clip_id"]])
    for r in records:
        (data / "raw" / f"{r['clip_id']}.mp4").touch()  # extraction skips clips already extracted: never read
    with (data / "transcripts.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["Filename", "text"])
        writer.writerows([f"{r['clip_id']}.mp4", r["transcript"]] for r in records)
    encoder = build_word_text_encoder([r["transcript"] for r in records], root / "text_encoder", hidden_size=768,
                                      num_hidden_layers=12, num_attention_heads=12)
    print(f"[{SECTION}] inputs: {len(records)} clips in {time.perf_counter() - began:.0f} s", flush=True)
    return {"records": records, "data": data, "text_encoder": Path(encoder)}


# ----------------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------------


def commands(root: Path, inputs: dict, epochs: int, folds: int, batch_size: int) -> list[tuple[str, list[str], str]]:
    """(step, command, its output folder under runs/) in order: cv last, since it leaves files in the features
    folder on main (datasets cache files of its folds)."""
    cli = [sys.executable, "-m", "emi_hf.cli"]
    features, runs, data = str(root / "features"), root / "runs", str(inputs["data"])
    model = ["--modality", "fusion", "--fusion-mode", "feature", "--epochs", str(epochs), "--batch-size",
             str(batch_size)]
    return [
        ("merge", [*cli, "extract", "--data-dir", data, "--output", features, "--visual-backbone", "random",
                   "--speech-encoder", "random", "--allow-random-backbones", "--text-encoder",
                   str(inputs["text_encoder"]), "--transcripts", str(inputs["data"] / "transcripts.csv"), "--no-vad",
                   "--no-progress"], ""),
        ("train", [*cli, "train", "--features", features, *model, "--output-dir", str(runs / "train")], "train"),
        ("evaluate", [*cli, "evaluate", "--model", str(runs / "train"), "--features", features, "--split",
                      "validation", "--output", str(runs / "evaluate")], "evaluate"),
        ("submit", [*cli, "submit", "--model", str(runs / "train"), "--features", features, "--data-dir", data,
                    "--output", str(runs / "submit" / "submission.csv")], "submit"),
        ("cv", [*cli, "cv", "--features", features, *model, "--folds", str(folds), "--output-dir", str(runs / "cv")],
         "cv"),
    ]


def step_env(root: Path, threads: int, package: str | None = None) -> dict:
    """The steps' environment: offline, private TMPDIR / datasets cache / clip cache, `threads` OpenMP threads, and
    `package` (a src folder) first on PYTHONPATH when given."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TMPDIR": str(root / "tmp"),
           "HF_DATASETS_CACHE": str(root / "datasets_cache"), "EMI_HF_CACHE": str(root / "clip_cache"),
           "OMP_NUM_THREADS": str(threads)}
    if package:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(package).resolve())] + ([env["PYTHONPATH"]]
                                                                               if env.get("PYTHONPATH") else []))
    for name in ("tmp", "datasets_cache", "clip_cache", "runs", "logs"):
        (root / name).mkdir(parents=True, exist_ok=True)
    return env


def run(media: Path, work: Path, quick: bool, args=None) -> None:
    fraction = getattr(args, "scale_fraction", None) or (QUICK_FRACTION if quick else DEFAULT_FRACTION)
    if not 0 < fraction <= 1:
        raise SystemExit(f"--scale-fraction must be in (0, 1], got {fraction}.")
    epochs, folds = getattr(args, "scale_epochs", 1), getattr(args, "scale_folds", 5)
    batch_size = getattr(args, "scale_batch_size", 32)
    chosen = list(getattr(args, "scale_steps", None) or STEPS)
    if "merge" not in chosen or ({"evaluate", "submit"} & set(chosen) and "train" not in chosen):
        raise SystemExit(f"--scale-steps {' '.join(chosen)}: merge is needed by every step, train by evaluate and "
                         "submit.")
    counts = split_counts(fraction)
    cv_train = (counts["train"] + counts["validation"]) * (folds - 2) // folds
    if min(counts["train"], cv_train) < batch_size:
        raise SystemExit(f"--scale-fraction {fraction:g} gives {counts['train']} train clips and {cv_train} per cv "
                         f"round, fewer than --scale-batch-size {batch_size}: pass a larger fraction or a smaller "
                         "batch size.")
    root = work / SECTION
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    check_free_disk(root, fraction)
    env = step_env(root, getattr(args, "threads", 2) or 2, getattr(args, "scale_package", None))
    version = package_version(env)
    print(f"[{SECTION}] package {version['package']} at commit {version['commit']}", flush=True)
    inputs_made = {"load": os.getloadavg()[0], "started": _now()}
    inputs = build_inputs(root, fraction)
    steps = {}
    data_folders = [root / "features" / "clips", root / "features" / "dataset", root / "tmp", root / "datasets_cache"]
    for name, command, output in commands(root, inputs, epochs, folds, batch_size):
        if name not in chosen or (name in ("evaluate", "submit") and steps["train"]["exit"] != 0):
            continue  # not asked for, or nothing to evaluate
        folders = [root / "features", root / "tmp", root / "datasets_cache"] + ([root / "runs" / output] if output
                                                                                   else [])
        steps[name] = run_step(name, command, env, folders, data_folders, root / "logs" / f"{name}.log", fraction)
    context = {"version": version, "fraction": fraction, "machine": device_name(), "epochs": epochs, "folds": folds,
               "batch_size": batch_size, "root": root, "counts": counts, "inputs_made": inputs_made}
    recorded = record_rows(inputs["records"], steps, context)
    print_section_table(recorded)
    if not getattr(args, "scale_keep", False):
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------------------------------


def _row(context: dict, when: dict, what: str, value, unit: str, target=None, passed=None, note: str = "") -> dict:
    """A row whose note starts with the commit, when the step started (`when["started"]`), the machine, the load
    average over the step (`when["load"]`) and the fraction."""
    stamp = (f"commit {context['version']['commit']}, {when['started']}, {context['machine']}, load average "
             f"{when['load']:.1f}, fraction {context['fraction']:g}")
    row(SECTION, what, value, unit, target=target, passed=passed, note=f"{stamp}; {note}",
        commit=context["version"]["commit"], machine=context["machine"], load_average=round(when["load"], 2),
        fraction=context["fraction"], started=when["started"])
    return {"what": what, "value": value, "unit": unit, "passed": passed}


def record_rows(records: list[dict], steps: dict, context: dict) -> list[dict]:
    fraction = context["fraction"]
    feature_bytes = sum(r["array_bytes"] for r in records)
    seconds = sum(r["seconds"] for r in records)
    counts = {s: sum(r["split"] == s for r in records) for s in ("train", "validation", "test")}
    out = [_row(context, context["inputs_made"], "feature bytes (one copy of the feature arrays)",
                round(feature_bytes / GB, 3), "GB",
                note=f"{counts['train']} train + {counts['validation']} validation + {counts['test']} test clips, "
                     f"{seconds / 3600:.2f} h (mean {seconds / len(records):.1f} s, longest "
                     f"{max(r['seconds'] for r in records):.0f} s); full scale (/ fraction): "
                     f"{feature_bytes / fraction / GB:.1f} GB, {seconds / fraction / 3600:.1f} h")]
    for name, step in steps.items():
        out += _step_rows(name, step, feature_bytes, context)
    out += _time_rows(steps, context)
    return out


def _step_rows(name: str, step: dict, feature_bytes: int, context: dict) -> list[dict]:
    fraction = context["fraction"]
    failed = f"exit {step['exit']} (log {step['log']}): {step['log_tail'][-300:]!r}; " if step["exit"] else ""
    full_ratio = step["peak_full_scale"] / (feature_bytes / fraction)
    peak, copies = step["peak_disk"], step["peak_data"] / feature_bytes
    out = [_row(context, step, f"{name}: peak disk / feature bytes, full scale (extrapolated)", round(full_ratio, 2),
                "x", target=f"<= {DISK_TARGET}x", passed=full_ratio <= DISK_TARGET and not step["exit"],
                note=f"{failed}measured: peak {peak / GB:.2f} GB = {peak / feature_bytes:.2f}x the feature bytes "
                     f"(features folder, output folder, TMPDIR, datasets cache); feature data at its peak "
                     f"{copies:.2f} copies; {step['disk_start'] / GB:.2f} GB before the step, "
                     f"{step['disk_end'] / GB:.2f} GB after ({step['disk_end_data'] / feature_bytes:.2f} copies of "
                     "the data); full scale: data / fraction, the rest (models, checkpoints) as measured")]
    rss, anon = step["peak_rss"] / GB, step["peak_anon"] / GB
    out.append(_row(context, step, f"{name}: peak RSS of the process tree", round(rss, 2), "GB",
                    target=f"< {RSS_TARGET_GB:g} GB", passed=rss < RSS_TARGET_GB and not step["exit"],
                    note=f"{failed}measured at the fraction (not extrapolated); of which anonymous (not file pages) "
                         f"{anon:.2f} GB; wall {step['wall_s']:.0f} s"))
    if name == "merge":
        fixed = step["disk_end"] - step["disk_end_data"]
        copies = step["disk_end_data"] / feature_bytes
        out.append(_row(context, step, "merge: copies of the feature data the features folder keeps", round(copies, 2),
                        "copies", target="1", passed=copies <= 1.05 and not step["exit"],
                        note=f"{step['disk_end'] / GB:.2f} GB after the merge: feature data (clips/, dataset/) "
                             f"{step['disk_end_data'] / GB:.2f} GB, base models and the rest {fixed / GB:.2f} GB"))
    return out


def _time_rows(steps: dict, context: dict) -> list[dict]:
    fraction, root, out = context["fraction"], context["root"], []
    train = steps.get("train")
    if train and not train["exit"]:
        epoch = _epoch_seconds(root / "runs" / "train" / "results.json")
        shown = epoch if epoch is not None else train["wall_s"]
        source = "the epoch's training loop (results.json history)" if epoch is not None else "the whole command"
        clips = context["counts"]["train"]
        out.append(_row(context, train, f"one epoch (train step: feature fusion, {clips} clips, batch "
                                                f"{context['batch_size']})", round(shown, 1), "s",
                        note=f"{source}, {clips / shown:.1f} clips/s; command wall {train['wall_s']:.0f} s; full "
                             f"scale (linear in the clips): {shown / fraction / 60:.0f} min"))
    cv = steps.get("cv")
    if cv and not cv["exit"]:
        rounds = _cv_round_seconds(root / "runs" / "cv" / "cv_results.json")
        inner = sum(rounds) if rounds else cv["wall_s"]
        out.append(_row(context, cv, f"{context['folds']}-fold cv ({context['epochs']} epoch(s) per round)",
                        round(cv["wall_s"], 1), "s",
                        note=f"command wall; rounds {', '.join(f'{s:.0f}' for s in rounds) or 'n/a'} s; full scale "
                             f"(rounds, linear in the clips): {inner / fraction / 3600:.1f} h"))
    submit = steps.get("submit")
    if submit:
        rows = _submission_rows(root / "runs" / "submit" / "submission.csv")
        out.append(_row(context, submit, "submission (emi-hf submit --data-dir: written and verified)",
                        round(submit["wall_s"], 1), "s", passed=False if submit["exit"] else None,
                        note=f"command wall; exit {submit['exit']}; {rows} rows for {context['counts']['test']} "
                             "test clips"))
    return out


def _epoch_seconds(results: Path) -> float | None:
    try:
        content = json.loads(results.read_text())
    except (OSError, ValueError):
        return None
    history = content.get("history") or content.get("training", {}).get("history") or []
    for key in ("train_s", "epoch_s"):
        if history and key in history[0]:
            return float(history[0][key])
    return None


def _cv_round_seconds(results: Path) -> list[float]:
    try:
        return [float(f["wall_time_s"]) for f in json.loads(results.read_text())["folds"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _submission_rows(path: Path) -> int | str:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except OSError:
        return "no file,"


def print_section_table(recorded: list[dict]) -> None:
    lines = ["", f"section {SECTION} (this run):", "| what | value | unit | result |", "|---|---|---|---|"]
    for r in recorded:
        result = "" if r["passed"] is None else ("pass" if r["passed"] else "FAIL")
        lines.append(f"| {r['what']} | {r['value']} | {r['unit']} | {result} |")
    print("\n".join(lines), flush=True)
