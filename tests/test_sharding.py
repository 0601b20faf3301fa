"""Extraction over several processes (CPU, gloo): each clip by exactly one process, the dataset of one process, a
resume after a process is killed, random backbones the same everywhere, and no hang when a peer is gone.

Who extracted what is read from the worker's own log of its `extract_clip_features` calls (`EMI_TEST_CALL_LOG`),
not from the logs the code under test writes; what was kept, from the clip files in the features folder.

The processes run `emi-hf extract` through tests/fakes/extract_worker.py (tiny backbones) on six 1-second
synthetic clips. The one-process references run with --threads 1, the threads each of the two processes gets on
this 2-core machine: float32 sums in the speech encoder differ in the last bits between thread counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, TINY_WAV2VEC2, free_port

from emi_hf.data.sharding import launcher_environment, plan_shards
from emi_hf.data.store import load_features
from emi_hf.data.synthetic import generate_synthetic_dataset

WORKER = REPO_ROOT / "tests" / "fakes" / "extract_worker.py"
PYTHON = sys.executable
CLIPS = {f"{i:05d}" for i in range(6)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharding")
    generate_synthetic_dataset(root / "data", num_train=4, num_valid=2, duration=1.0, fps=10, size=160, seed=3)
    return root


def _env(root: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    # no ImageNet weights (so `imagenet` falls back to random), no shared clip cache, no network
    env.update(HF_HUB_OFFLINE="1", TORCH_HOME=str(root / "torch_home"), EMI_HF_CACHE=str(root / "clip_cache"),
               EMI_TEST_CALL_LOG=str(root / "calls.jsonl"), **extra)
    # tests/ for helpers; a PYTHONPATH already set (a checkout whose src/ is not the installed one) kept after it
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _extract_args(root: Path, output: str, backbones: list[str]) -> list[str]:
    return ["extract", "--data-dir", str(root / "data"), "--output", str(root / output), *backbones,
            "--face-detector", "mediapipe", "--fps", "5", "--no-progress"]


def _single(root, output, backbones, run=None, **env):
    return subprocess.run([PYTHON, str(WORKER), *_extract_args(root, output, backbones), "--threads", "1"],
                          env=_env(root, EMI_TEST_RUN=run or output, **env), capture_output=True, text=True,
                          timeout=300)


def _torchrun(root, output, backbones, run, **env):
    command = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(WORKER), *_extract_args(root, output, backbones)]
    return subprocess.run(command, env=_env(root, EMI_TEST_RUN=run, **env), capture_output=True, text=True,
                          timeout=300)


def _extracted(root: Path, run: str) -> dict[int, list[str]]:
    """Clip ids each process's `extract_clip_features` returned in run `run` (the worker's call log)."""
    path = root / "calls.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return {rank: [c["clip_id"] for c in lines if c["run"] == run and c["rank"] == rank and c["event"] == "done"]
            for rank in (0, 1)}


def _kept(folder: Path) -> set[str]:
    """The clips whose features the extraction into `folder` has kept (its per-clip files)."""
    return {path.stem for path in (folder / "clips").glob("*/*.npz")}


def _once_each(extracted: dict[int, list[str]]) -> list[str]:
    """All clips of a run's processes, checked to be extracted at most once and by one process."""
    clips = extracted[0] + extracted[1]
    assert len(clips) == len(set(clips)), Counter(clips).most_common(3)
    return clips


def _assert_same_dataset(a_dir: Path, b_dir: Path) -> None:
    a, b = load_features(a_dir), load_features(b_dir)
    assert set(a) == set(b) == {"train", "validation"}
    for split in a:
        assert a[split]["clip_id"] == b[split]["clip_id"]
        for row_a, row_b in zip(a[split].with_format("numpy"), b[split].with_format("numpy")):
            for column in a[split].column_names:
                np.testing.assert_array_equal(row_a[column], row_b[column], err_msg=f"{split} {column}")


def _check(result, code=0):
    assert result.returncode == code, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def saved_backbones(data):
    """Stand-ins for pretrained weights: a ResNet18 .pth and a tiny wav2vec2 folder, loaded by every process."""
    import torchvision
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18().state_dict(), data / "resnet18.pth")
    Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC2)).save_pretrained(data / "speech")
    return ["--visual-backbone", str(data / "resnet18.pth"), "--speech-encoder", str(data / "speech")]


def test_two_processes_split_the_clips_and_resume_after_a_kill(data, saved_backbones):
    _check(_single(data, "one", saved_backbones))
    assert sorted(_once_each(_extracted(data, "one"))) == sorted(CLIPS)
    killed = _torchrun(data, "two", saved_backbones, "killed", EMI_TEST_KILL_RANK="1", EMI_TEST_KILL_AFTER="1")
    assert killed.returncode != 0 and not (data / "two" / "dataset").exists()
    before = _extracted(data, "killed")
    kept = _kept(data / "two")
    assert len(before[1]) == 1 and kept <= set(_once_each(before)), (before, kept)
    assert len(kept) <= len(CLIPS) - 2, "process 1 had two clips left"

    _check(_torchrun(data, "two", saved_backbones, "rerun"))  # the same command again
    rerun = _extracted(data, "rerun")
    assert rerun[0] and rerun[1], "both processes share the rest"
    # each clip extracted by exactly one process, once: the rest in this run, none of those kept before
    assert sorted(_once_each(rerun)) == sorted(CLIPS - kept)
    report = json.loads((data / "two" / "extraction_report.json").read_text())
    assert report["processes"] == 2 and report["threads_per_process"] == [1, 1]
    assert report["clips_this_run"] == len(CLIPS) - len(kept)
    assert [p["extracted"] for p in report["clips_per_process"]] == [len(rerun[0]), len(rerun[1])]
    assert report["video_seconds_this_run"] == pytest.approx(report["clips_this_run"], abs=0.05)
    assert report["video_s_per_wall_s"] > 0
    _assert_same_dataset(data / "one", data / "two")


def test_random_backbones_are_the_same_in_every_process_and_a_lost_peer_does_not_hang(data):
    fallback = ["--visual-backbone", "imagenet", "--speech-encoder", str(data / "no-such-encoder"),
                "--allow-random-backbones"]
    _check(_single(data, "random_one", fallback))
    assert sorted(_once_each(_extracted(data, "random_one"))) == sorted(CLIPS)
    saved = json.loads((data / "random_one" / "backbones.json").read_text())
    assert saved["random_backbone_seed"] == {"visual": 0, "audio": 0}

    # two processes started by hand (as srun or mpirun would), without torchrun's agent to stop the survivor:
    # process 1 dies after one clip, process 0 finishes its share, stops waiting and says what to rerun
    port, began = free_port(), time.time()
    procs = [subprocess.Popen([PYTHON, str(WORKER), *_extract_args(data, "random_two", fallback), "--peer-timeout",
                               "4"], env=_env(data, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                                              LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                                              EMI_TEST_KILL_RANK="1", EMI_TEST_KILL_AFTER="1", EMI_TEST_RUN="by_hand"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [proc.communicate(timeout=240) for proc in procs]
    assert procs[1].returncode == -9 and procs[0].returncode == 2, outputs
    assert "process 1" in outputs[0][1] and "rerun the same command" in outputs[0][1], outputs[0][1][-2000:]
    assert time.time() - began < 200
    before = _extracted(data, "by_hand")
    assert len(before[1]) == 1 and len(before[0]) == 3 and not (data / "random_two" / "dataset").exists()
    kept = _kept(data / "random_two")
    assert kept == set(_once_each(before))  # nobody was killed while saving here: every extracted clip is kept

    _check(_torchrun(data, "random_two", fallback, "random_rerun"))  # the same weights again: the folder is accepted
    assert sorted(_once_each(_extracted(data, "random_rerun"))) == sorted(CLIPS - kept)
    assert json.loads((data / "random_two" / "backbones.json").read_text()) == saved
    _assert_same_dataset(data / "random_one", data / "random_two")


def test_the_plan_puts_each_clip_in_one_shard_and_balances_bytes():
    sizes = [5, 1, 9, 3, 3, 7, 2]
    shards = plan_shards(sizes, 3)
    assert sorted(i for shard in shards for i in shard) == list(range(len(sizes)))
    assert shards == plan_shards(sizes, 3)
    loads = [sum(sizes[i] for i in shard) for shard in shards]
    assert max(loads) - min(loads) <= max(sizes) and shards[0][0] == 2  # largest file first, to process 0
    assert plan_shards([], 2) == [[], []] and plan_shards([4, 4], 4) == [[0], [1], [], []]


def test_launcher_environments():
    assert launcher_environment({}) == (0, 1, 0, 1)
    assert launcher_environment({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}) == (
        3, 8, 1, 4)
    assert launcher_environment({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4",
                                 "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}) == (2, 4, 0, 2)
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "4(x2)"}
    assert launcher_environment(slurm) == (0, 1, 0, 1), "an sbatch script itself is one process"
    assert launcher_environment({**slurm, "SLURM_STEP_ID": "0"}) == (5, 8, 1, 4)
