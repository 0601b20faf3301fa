"""Writing a synthetic data set in the Hume-Vidmimic2 layout ([`generate_synthetic_dataset`]): labels and subjects,
one rendered and encoded clip per id (in fresh worker processes when asked), the split CSV files,
``transcripts.csv`` (label-dependent text, [`write_synthetic_transcripts`]) and ``synthetic_metadata.json``.

Determinism: labels and subjects come from the stream ``(seed, LABELS_STREAM)``, clip ``i`` from
``(seed, CLIPS_STREAM, i)``, so the result does not depend on the number of workers; clip ``i``'s transcript from
``(seed, TRANSCRIPT_STREAM, i)``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from ...models.configuration_emi import EMOTION_NAMES
from ...errors import EmiUsageError
from ..layout import HUME_SPLIT_FILES
from .clip import frame_size, render_clip, write_clip
from .labels import (
    FACE_MAPPING,
    FACE_PARAMETER_NAMES,
    LABEL_BETA,
    LABEL_CORRELATION,
    VOICE_MAPPING,
    VOICE_PARAMETER_NAMES,
    modality_shares,
    sample_labels,
)
from .subjects import SyntheticSubject, sample_subject
from .transcripts import write_synthetic_transcripts

GENERATOR_VERSION = "1.0.0"
LABELS_STREAM = 0  # SeedSequence([seed, LABELS_STREAM]): labels, subjects and their assignment to clips
CLIPS_STREAM = 1  # SeedSequence([seed, CLIPS_STREAM, i]): everything random in clip i
TEST_STREAM = 2  # SeedSequence([seed, TEST_STREAM]): labels and subjects of the test clips of the challenge layout
LAYOUTS = ("csv", "challenge")  # csv: every split has its CSV; challenge: test clips in test_data/raw/, no test CSV
CHALLENGE_TEST_DIR = ("test_data", "raw")
METADATA_FILE = "synthetic_metadata.json"
HUME_HEADER = ("Filename",) + tuple(EMOTION_NAMES)
SPLIT_FILES = {split: names[0] for split, names in HUME_SPLIT_FILES.items()}  # the names the real data set uses


def generate_synthetic_dataset(
    output_dir: str | os.PathLike,
    num_train: int = 64,
    num_valid: int = 32,
    num_test: int = 0,
    *,
    duration: float = 2.0,
    fps: float = 25,
    size: int | Sequence[int] = 256,
    sample_rate: int = 24000,
    seed: int = 0,
    clips_per_subject: int = 5,
    crf: int = 23,
    num_workers: int = 1,
    progress: bool = False,
    layout: str = "csv",
) -> Path:
    """Write a synthetic audiovisual EMI data set in the Hume-Vidmimic2 layout (see the package docstring).

    Writes ``output_dir/videos/{id:05d}.mp4``, ``train_split.csv``, ``valid_split.csv`` (``test_split.csv`` when
    ``num_test > 0``, Filename only), ``transcripts.csv`` (``Filename,text,source``, synthetic label-dependent text
    for every clip, test clips included) and ``synthetic_metadata.json``. If ``output_dir`` already holds a data
    set generated with the same arguments and generator version, and all its videos exist, nothing is rewritten
    except ``transcripts.csv`` when it is missing or differs (sets generated before transcripts existed get it
    without re-rendering).

    Args:
        num_train, num_valid, num_test: clips per split (ids run train, then validation, then test).
        duration: clip length in seconds; fps: video frame rate; size: frame side (or ``(width, height)``).
        sample_rate: audio sampling rate of the AAC track (resample to 16 kHz when reading).
        seed: everything (labels, subjects, expressions, noise) derives from it; independent of ``num_workers``.
        clips_per_subject: average clips per synthetic subject; subjects are not shared between splits.
        crf: x264 quality (lower is better and larger).
        num_workers: worker processes rendering and encoding clips in parallel (fresh interpreters, each importing
            emi_hf once: a few seconds of start-up, worth it from a few dozen clips on).
        layout: ``"csv"`` (default) as above; ``"challenge"``: as the challenge distributes the data, the test clips
            in ``test_data/raw/{id:05d}.mp4`` without a ``test_split.csv`` (their labels only in
            ``synthetic_metadata.json``). Their labels and subjects come from their own stream ``(seed,
            TEST_STREAM)``, so the train and validation files are byte-identical to a set made with
            ``num_test=0``.
    Returns:
        ``output_dir`` as a Path.
    """
    counts = _checked_counts(num_train, num_valid, num_test, layout)
    width, height = frame_size(size)
    output_dir = Path(output_dir)
    config = {
        "num_train": counts["train"], "num_valid": counts["validation"], "num_test": counts["test"],
        "duration": float(duration), "fps": float(fps), "size": [width, height], "sample_rate": int(sample_rate),
        "seed": int(seed), "clips_per_subject": int(clips_per_subject), "crf": int(crf),
    }  # fmt: skip
    if layout != "csv":  # the key is absent for the csv layout, so sets generated before it keep matching
        config["layout"] = layout
    previous = _already_generated(output_dir, config)
    if previous is not None:  # transcripts.csv rewritten only when missing or different (sets made before it)
        write_synthetic_transcripts(output_dir, previous["clips"], int(seed))
        return output_dir

    if layout == "challenge":
        subjects, clips = _draw_clips({**counts, "test": 0}, int(seed), int(clips_per_subject))
        _draw_test_clips(subjects, clips, counts["test"], int(seed), int(clips_per_subject))
    else:
        subjects, clips = _draw_clips(counts, int(seed), int(clips_per_subject))
    for folder in {_video_path(output_dir, c, layout).parent for c in clips}:
        folder.mkdir(parents=True, exist_ok=True)
    tasks = _clip_tasks(output_dir, subjects, clips, config)
    if num_workers > 1 and len(tasks) > 1:
        results = _run_in_worker_processes(tasks, int(num_workers), progress)
    else:
        results = [_render_and_write(t) for t in _progress(tasks, len(tasks), progress)]
    for clip, result in zip(clips, results):
        clip.update(apex_time=result["apex_time"], face_parameters_apex=result["face_parameters_apex"])
    _write_split_files(output_dir, [c for c in clips if layout == "csv" or c["split"] != "test"])
    write_synthetic_transcripts(output_dir, clips, int(seed))
    (output_dir / METADATA_FILE).write_text(json.dumps(_metadata(int(seed), config, subjects, clips), indent=1))
    return output_dir


def _checked_counts(num_train, num_valid, num_test, layout: str) -> dict[str, int]:
    counts = {"train": int(num_train), "validation": int(num_valid), "test": int(num_test)}
    if min(counts.values()) < 0 or counts["train"] + counts["validation"] == 0:
        raise EmiUsageError(f"clip counts must be >= 0 with at least one train or validation clip, got {counts}.")
    if counts["train"] + counts["validation"] + counts["test"] > 100_000:
        raise EmiUsageError("at most 100000 clips: ids are 5 digits.")
    if layout not in LAYOUTS:
        raise EmiUsageError(f"layout must be one of {LAYOUTS}, got {layout!r}.")
    return counts


def _already_generated(output_dir: Path, config: dict) -> dict | None:
    """The metadata of the set in ``output_dir`` when it was made with ``config`` by this generator version and has
    all its videos, else None."""
    metadata_path = output_dir / METADATA_FILE
    if not metadata_path.is_file():
        return None
    try:
        previous = json.loads(metadata_path.read_text())
    except (OSError, ValueError):
        previous = {}
    complete = (
        previous.get("config") == config
        and previous.get("generator_version") == GENERATOR_VERSION
        and all(_video_path(output_dir, c, config.get("layout", "csv")).is_file() for c in previous.get("clips", []))
    )
    return previous if complete else None


def _video_path(output_dir: Path, clip: dict, layout: str) -> Path:
    """Where a clip's video goes: ``videos/``, or for test clips of the challenge layout ``test_data/raw/``."""
    folder = output_dir.joinpath(*CHALLENGE_TEST_DIR) if layout == "challenge" and clip["split"] == "test" else (
        output_dir / "videos")  # fmt: skip
    return folder / f"{clip['clip_id']}.mp4"


def _draw_test_clips(subjects: list[SyntheticSubject], clips: list[dict], count: int, seed: int,
                     clips_per_subject: int) -> None:  # fmt: skip
    """Appends ``count`` test clips (ids after the others; own subjects) drawn from the stream ``(seed,
    TEST_STREAM)``, leaving the train and validation draws untouched."""
    if count == 0:
        return
    rng = np.random.default_rng(np.random.SeedSequence([seed, TEST_STREAM]))
    labels = sample_labels(rng, count)
    pool = [sample_subject(rng, len(subjects) + k) for k in range(max(1, math.ceil(count / clips_per_subject)))]
    subjects.extend(pool)
    assignment = rng.integers(0, len(pool), count)
    start = len(clips)
    for k in range(count):
        clips.append({"clip_id": f"{start + k:05d}", "split": "test", "subject_id": pool[assignment[k]].subject_id,
                      "labels": [float(x) for x in labels[k]]})  # fmt: skip


def _draw_clips(counts: dict[str, int], seed: int,
                clips_per_subject: int) -> tuple[list[SyntheticSubject], list[dict]]:  # fmt: skip
    """Labels, the subject pool of each split and each clip's subject: (subjects, one dict per clip in id order)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, LABELS_STREAM]))
    labels = sample_labels(rng, sum(counts.values()))
    subjects: list[SyntheticSubject] = []
    clips: list[dict] = []
    clip_index = 0
    for split, count in counts.items():
        if count == 0:
            continue
        pool = [sample_subject(rng, len(subjects) + k) for k in range(max(1, math.ceil(count / clips_per_subject)))]
        subjects.extend(pool)
        assignment = rng.integers(0, len(pool), count)
        for k in range(count):
            clips.append({"clip_id": f"{clip_index:05d}", "split": split, "subject_id": pool[assignment[k]].subject_id,
                          "labels": [float(x) for x in labels[clip_index]]})  # fmt: skip
            clip_index += 1
    return subjects, clips


def _clip_tasks(output_dir: Path, subjects: list[SyntheticSubject], clips: list[dict], config: dict) -> list[dict]:
    """One JSON-ready task per clip for [`_render_and_write`] (in this process or a worker)."""
    layout = config.get("layout", "csv")
    return [
        {"index": i, "clip_id": c["clip_id"], "path": str(_video_path(output_dir, c, layout)), "labels": c["labels"],
         "subject": asdict(subjects[c["subject_id"]]), "duration": config["duration"], "fps": config["fps"],
         "size": tuple(config["size"]), "sample_rate": config["sample_rate"], "seed": config["seed"],
         "crf": config["crf"]}
        for i, c in enumerate(clips)
    ]  # fmt: skip


def _write_split_files(output_dir: Path, clips: list[dict]) -> None:
    """One CSV per split that has clips (test: Filename only); a stale CSV of a now empty split is removed."""
    for split, filename in SPLIT_FILES.items():
        selected = [c for c in clips if c["split"] == split]
        path = output_dir / filename
        if not selected:
            if path.exists():
                path.unlink()
            continue
        split_labels = None if split == "test" else np.array([c["labels"] for c in selected])
        _write_split_csv(path, [c["clip_id"] for c in selected], split_labels)


def _write_split_csv(path: Path, clip_ids: list[str], labels: np.ndarray | None) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HUME_HEADER if labels is not None else HUME_HEADER[:1])
        for i, clip_id in enumerate(clip_ids):
            row = [clip_id] if labels is None else [clip_id, *(f"{x:.4f}" for x in labels[i])]
            writer.writerow(row)


def _metadata(seed: int, config: dict, subjects: list[SyntheticSubject], clips: list[dict]) -> dict:
    """The content of ``synthetic_metadata.json``: generator, arguments, mappings, subjects and clips."""
    return {
        "generator": "emi_hf.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "config": config,
        "emotion_names": list(EMOTION_NAMES),
        "face_parameter_names": list(FACE_PARAMETER_NAMES),
        "voice_parameter_names": list(VOICE_PARAMETER_NAMES),
        "face_mapping": FACE_MAPPING.tolist(),
        "voice_mapping": VOICE_MAPPING.tolist(),
        "face_share": modality_shares(),
        "label_correlation": LABEL_CORRELATION.tolist(),
        "label_beta": list(LABEL_BETA),
        "subjects": [asdict(s) for s in subjects],
        "clips": clips,
    }


# -------------------------------------------------------------------------------------------------- rendering


def _render_and_write(task: dict) -> dict:
    """Render and encode one clip task (a JSON-ready dict made by generate_synthetic_dataset)."""
    subject = SyntheticSubject(**task["subject"])
    clip = render_clip(
        np.asarray(task["labels"]),
        subject,
        duration=task["duration"],
        fps=task["fps"],
        size=task["size"],
        sample_rate=task["sample_rate"],
        seed=np.random.SeedSequence([task["seed"], CLIPS_STREAM, task["index"]]),
    )
    write_clip(task["path"], clip, crf=task["crf"])
    apex = int(np.argmax(clip.envelope))
    return {"clip_id": task["clip_id"], "apex_time": float(clip.timestamps[apex]),
            "face_parameters_apex": [round(float(x), 4) for x in clip.face_parameters[apex]]}  # fmt: skip


def _worker_main(task_file: str, result_file: str) -> None:
    """Entry point of a worker process: render the clips listed in ``task_file``, one JSON line per clip."""
    import cv2

    cv2.setNumThreads(1)
    tasks = json.loads(Path(task_file).read_text())
    with open(result_file, "a") as out:
        for task in tasks:
            out.write(json.dumps({"index": task["index"], **_render_and_write(task)}) + "\n")
            out.flush()


def _run_in_worker_processes(tasks: list[dict], num_workers: int, progress: bool) -> list[dict]:
    """Render ``tasks`` in fresh worker interpreters.

    Fresh interpreters (not multiprocessing's fork, nor spawn / forkserver): forking a process whose OpenCV, torch
    or MediaPipe thread pools are running can deadlock the children, and spawn / forkserver re-import the caller's
    ``__main__`` (scripts without a ``if __name__ == "__main__":`` guard would break).
    """
    import subprocess
    import sys
    import tempfile
    import time

    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    package_root = str(Path(__file__).resolve().parents[3])  # so that the child finds this very emi_hf
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])
    code = ("import sys; from emi_hf.data.synthetic.dataset import _worker_main; "
            "_worker_main(sys.argv[1], sys.argv[2])")
    with tempfile.TemporaryDirectory(prefix="emi_hf_synthetic_") as tmp:
        workers = []
        for k in range(min(num_workers, len(tasks))):
            task_file, result_file = Path(tmp) / f"tasks{k}.json", Path(tmp) / f"results{k}.jsonl"
            task_file.write_text(json.dumps(tasks[k::num_workers]))
            result_file.touch()
            log = open(Path(tmp) / f"log{k}.txt", "w+")
            process = subprocess.Popen([sys.executable, "-c", code, str(task_file), str(result_file)], env=env,
                                       stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
            workers.append((process, result_file, log))
        bar = _progress(None, len(tasks), progress)
        try:
            while True:
                running = [p for p, _, _ in workers if p.poll() is None]
                if bar is not None:
                    done = sum(f.read_text().count("\n") for _, f, _ in workers)
                    bar.update(done - bar.n)
                if not running:
                    break
                time.sleep(0.2)
        finally:
            for process, _, log in workers:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            if bar is not None:
                bar.close()
        for process, _, log in workers:
            if process.returncode != 0:
                log.seek(0)
                raise RuntimeError(f"a synthetic-data worker failed (exit code {process.returncode}):\n"
                                   f"{log.read()[-4000:]}")  # fmt: skip
            log.close()
        results = [json.loads(line) for _, f, _ in workers for line in f.read_text().splitlines()]
    by_index = {r.pop("index"): r for r in results}
    return [by_index[t["index"]] for t in tasks]


def _progress(iterable, total: int, enabled: bool):
    """``iterable`` wrapped in a tqdm bar when ``enabled``; with ``iterable=None``, the bar itself (or None)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc="synthetic clips", unit="clip")
