"""Extraction over many processes: the process group from the launcher, the clip split, per-process threads, and the
wait for the other processes before the merge.

Launchers: `torchrun` and `accelerate launch --multi_gpu` (also on CPU-only machines; `accelerate launch --cpu`
starts one process unless given an mpirun hostfile) set `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`,
`MASTER_ADDR`, `MASTER_PORT`; `mpirun` (Open MPI, MPICH/Intel MPI) and `srun` set their own rank variables, which
are read too (then `MASTER_ADDR` / `MASTER_PORT` must be exported). One process without any of them.

The process group is gloo, on CPU and GPU machines alike: extraction moves no tensors between processes, only the
plan (a few kB, once) and barriers, and gloo's barriers honour the timeout and raise, where NCCL's watchdog would
abort the process. Each process puts its models on GPU `LOCAL_RANK % device_count` (`process_device`).

How a run goes (`emi_hf.data.extraction.run_extraction`):
1. the main process prepares the folder, lists the clips not yet extracted, splits them once (`plan_shards`:
   longest files first, each to the process with the least bytes so far; deterministic) and writes
   `shards/plan.json`; the plan reaches every process by a broadcast, which also checks that every process sees the
   same output folder and the same backbone weights;
2. every process extracts its share and records each clip it finished in `shards/rank<r>.log` (one JSON line per
   clip, appended over runs) and its progress in `shards/rank<r>.json` (rewritten, with a heartbeat);
3. the main process waits until every process's `rank<r>.json` says done, then merges once. A process whose
   heartbeat stops for `timeout_s` (default 600 s; the start waits at least 300 s) is declared lost: the main
   process stops waiting and raises `ShardsIncomplete`, saying which processes and how many clips are missing, and
   that rerunning the same command finishes them (the clips already written are kept: each `.npz` is written
   atomically).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ..errors import EmiError, EmiUsageError

DEFAULT_TIMEOUT_S = 600.0
MIN_SETUP_TIMEOUT_S = 300.0  # the group's own timeout (start, plan): the main process may be saving large models
SHARDS_DIR = "shards"
PLAN_FILE = "plan.json"

# (rank, world size, local rank, local world size) variables of each launcher, first match wins
_LAUNCHER_VARIABLES = (
    ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),  # torchrun, accelerate launch
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),  # MPICH, Intel MPI
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),  # srun
)


class ShardsIncomplete(EmiError, TimeoutError):
    """Another process stopped (died, was killed, or cannot be reached); what is done is kept, a rerun finishes."""


def launcher_environment(env: Mapping[str, str] | None = None) -> tuple[int, int, int, int]:
    """(rank, world size, local rank, processes on this machine) from the launcher's variables; (0, 1, 0, 1)."""
    env = os.environ if env is None else env
    for rank_name, world_name, local_name, local_world_name in _LAUNCHER_VARIABLES:
        if rank_name in env and int(env.get(world_name, "1")) > 1:
            if rank_name == "SLURM_PROCID" and "SLURM_STEP_ID" not in env:
                continue  # an sbatch script itself (not a task started by srun)
            world = int(env[world_name])
            local_world = env.get(local_world_name, "").split("(")[0]  # SLURM may write "2(x4)"
            return int(env[rank_name]), world, int(env.get(local_name, "0")), int(local_world or world)
    return 0, 1, 0, 1


@dataclass
class Processes:
    """This process's place among the extraction processes, with the control group (gloo) when there are several."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S
    group: object = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def setup_timeout_s(self) -> float:
        return max(self.timeout_s, MIN_SETUP_TIMEOUT_S)

    def broadcast(self, value, what: str):
        """The main process's `value`, in every process (a barrier too)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        try:
            dist.broadcast_object_list(box, src=0, group=self.group)
        except Exception as error:  # a peer died or timed out: gloo raises (RuntimeError / DistBackendError)
            raise ShardsIncomplete(
                f"[emi-hf extract] process {self.rank}/{self.world}: the other processes did not reach '{what}' "
                f"within {self.setup_timeout_s:.0f} s ({type(error).__name__}: {error}). Clips already written are "
                "kept; rerun the same command to finish the rest."
            ) from error
        return box[0]

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False


def join_processes(timeout_s: float = DEFAULT_TIMEOUT_S) -> Processes:
    """Joins the launcher's processes in a gloo group (one process: no group). See the module docstring."""
    rank, world, local_rank, local_world = launcher_environment()
    processes = Processes(rank, world, local_rank, local_world, timeout_s)
    if world == 1:
        return processes
    import torch.distributed as dist

    timeout = timedelta(seconds=processes.setup_timeout_s)
    if dist.is_initialized():  # e.g. accelerate made one already: a gloo group beside it for the control messages
        processes.group = dist.new_group(backend="gloo", timeout=timeout)
        processes.rank, processes.world = dist.get_rank(), dist.get_world_size()
        return processes
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise EmiUsageError(
                f"{world} extraction processes, but {name} is not set: export MASTER_ADDR (the main node's address) "
                "and MASTER_PORT (a free port), or launch with torchrun / accelerate launch, which set them."
            )
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world, timeout=timeout)
    processes.owns_group = True
    return processes


def configure_threads(threads: int | None, processes_here: int) -> int:
    """Threads of this process: `threads`, else this machine's cores / its extraction processes (at least 1)."""
    import torch

    if threads is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        threads = max(1, cores // max(1, processes_here))
    if threads < 1:
        raise EmiUsageError(f"--threads must be at least 1 (got {threads})")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)  # for native libraries that start their pools later
    torch.set_num_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass
    return threads


def process_device(device: str, env: Mapping[str, str] | None = None) -> str:
    """`cuda` becomes `cuda:<local rank % GPUs>` when several processes share a machine; anything else unchanged."""
    import torch

    _, world, local_rank, _ = launcher_environment(env)
    if device == "cuda" and world > 1 and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return device


def plan_shards(sizes: Sequence[int], world: int) -> list[list[int]]:
    """
    Indexes of the clips each process extracts: largest files first, each to the process with the fewest bytes so
    far (ties to the lower rank), so the processes finish at about the same time. Depends only on `sizes` and
    `world`; every clip is in exactly one shard.
    """
    shards: list[list[int]] = [[] for _ in range(world)]
    load = [0] * world
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        target = min(range(world), key=lambda r: (load[r], r))
        shards[target].append(index)
        load[target] += max(int(sizes[index]), 1)
    return shards


def file_size(path) -> int:
    try:
        return os.stat(path).st_size
    except (OSError, TypeError):  # TypeError: a clip without a video (path None: face_images/ only, issue 13)
        return 0


def new_plan(output_dir: Path, clip_ids: Sequence[str], sizes: Sequence[int], world: int) -> dict:
    """The split of this run (main process), written to `shards/plan.json`."""
    shards = plan_shards(sizes, world)
    plan = {"run_id": uuid.uuid4().hex, "world": world, "created": time.time(),
            "shards": [[clip_ids[i] for i in shard] for shard in shards], "indexes": shards}
    folder = output_dir / SHARDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / PLAN_FILE, plan)
    return plan


def check_same_folder(output_dir: Path, plan: dict, rank: int) -> None:
    """Every process must see the main process's output folder (the merge reads every process's clips)."""
    path = output_dir / SHARDS_DIR / PLAN_FILE
    try:
        seen = json.loads(path.read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        seen = None
    if seen != plan["run_id"]:
        raise EmiUsageError(
            f"process {rank} on {socket.gethostname()} does not see the main process's {path}: --output must be a "
            "folder on a file system that every node mounts at the same path."
        )


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


class ShardProgress:
    """
    This process's record of its share: `shards/rank<r>.log` (one line per finished clip, appended over runs) and
    `shards/rank<r>.json` (this run's status, rewritten after each clip and every `heartbeat_s` by a thread).
    """

    def __init__(self, output_dir: Path, processes: Processes, run_id: str, assigned: int, threads: int,
                 heartbeat_s: float | None = None):
        self.folder = output_dir / SHARDS_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rank = processes.rank
        self.status = {"run_id": run_id, "rank": processes.rank, "world": processes.world,
                       "host": socket.gethostname(), "pid": os.getpid(), "threads": threads, "assigned": assigned,
                       "extracted": 0, "failed": 0, "video_s": 0.0, "video_s_known": True, "state": "running",
                       "started": time.time(), "beat": 0, "wall_s": 0.0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._write()
        if processes.world > 1:
            period = heartbeat_s or max(0.5, min(30.0, processes.timeout_s / 10))
            self._thread = threading.Thread(target=self._beat, args=(period,), daemon=True, name="emi-heartbeat")
            self._thread.start()

    def _write(self) -> None:
        with self._lock:
            self.status["beat"] += 1
            self.status["wall_s"] = round(time.time() - self.status["started"], 3)
            _write_json(self.folder / f"rank{self.rank}.json", self.status)

    def _beat(self, period: float) -> None:
        while not self._stop.wait(period):
            self._write()

    def clip_done(self, clip_id: str, seconds: float, video_s: float | None) -> None:
        with self._lock:
            self.status["extracted"] += 1
            if video_s is None:
                self.status["video_s_known"] = False
            else:
                self.status["video_s"] = round(self.status["video_s"] + video_s, 3)
            line = {"run_id": self.status["run_id"], "clip_id": clip_id, "seconds": round(seconds, 3),
                    "video_s": video_s, "pid": os.getpid()}
            with open(self.folder / f"rank{self.rank}.log", "a") as handle:
                handle.write(json.dumps(line) + "\n")
        self._write()

    def clip_failed(self) -> None:
        with self._lock:
            self.status["failed"] += 1
        self._write()

    def finish(self) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.status["state"] = "done"
        self._write()
        return dict(self.status)

    def abandon(self) -> None:
        """Stops the heartbeat (the run is being interrupted); the status stays 'running'."""
        self._stop.set()


class TerminationGuard:
    """
    SIGTERM (what torchrun sends the other processes when one dies) ends the run with exit status 143, except inside
    `held()` (a clip's save and its log line), where it waits for the block's end. Main thread only; elsewhere a
    no-op.
    """

    def __init__(self):
        self._active = threading.current_thread() is threading.main_thread()
        self._held = False
        self._pending = False
        self._previous = None

    def __enter__(self):
        if self._active:
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc):
        if self._active:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)
        return False

    def _handler(self, signum, frame):
        if self._held:
            self._pending = True
            return
        raise SystemExit(128 + signum)

    @contextmanager
    def held(self):
        self._held = True
        try:
            yield
        finally:
            self._held = False
        if self._pending:
            raise SystemExit(128 + signal.SIGTERM)


def _read_status(folder: Path, rank: int) -> dict | None:
    try:
        return json.loads((folder / f"rank{rank}.json").read_text())
    except (OSError, ValueError):
        return None


def wait_for_shards(output_dir: Path, plan: dict, timeout_s: float, poll_s: float = 0.5) -> list[dict]:
    """
    (main process) Every process's final status for this run, once all are done. A process whose status has not
    changed for `timeout_s` seconds (by this process's clock) is lost: raises `ShardsIncomplete`.
    """
    folder = output_dir / SHARDS_DIR
    world, run_id = plan["world"], plan["run_id"]
    last_beat: dict[int, tuple] = {rank: (None, time.monotonic()) for rank in range(world)}
    while True:
        statuses = {}
        for rank in range(world):
            status = _read_status(folder, rank)
            if status is not None and status.get("run_id") == run_id:
                statuses[rank] = status
            beat = None if rank not in statuses else statuses[rank]["beat"]
            if beat != last_beat[rank][0]:
                last_beat[rank] = (beat, time.monotonic())
        if len(statuses) == world and all(s["state"] == "done" for s in statuses.values()):
            return [statuses[rank] for rank in range(world)]
        now = time.monotonic()
        lost = [rank for rank in range(world) if statuses.get(rank, {}).get("state") != "done"
                and now - last_beat[rank][1] > timeout_s]
        if lost:
            raise ShardsIncomplete(_lost_message(output_dir, plan, statuses, lost, timeout_s))
        time.sleep(poll_s)


def _lost_message(output_dir: Path, plan: dict, statuses: dict, lost: list[int], timeout_s: float) -> str:
    parts = []
    for rank in lost:
        status = statuses.get(rank, {})
        missing = len(plan["shards"][rank]) - status.get("extracted", 0) - status.get("failed", 0)
        where = f" on {status['host']} (pid {status['pid']})" if status else ""
        parts.append(f"process {rank}{where}: {missing} of its {len(plan['shards'][rank])} clips not extracted")
    return (
        f"[emi-hf extract] no sign of life for {timeout_s:.0f} s from {'; '.join(parts)}. The clips written so far "
        f"are kept in {output_dir}/clips and the dataset was not merged: rerun the same command (same --output; any "
        "number of processes) to extract the missing clips and merge."
    )


def clip_video_seconds(path) -> float | None:
    """A clip's duration from its container header (for the throughput figures); None when it cannot be read."""
    from ..media.decoding import probe_media

    try:
        return probe_media(path).duration
    except Exception:  # noqa: BLE001 - a figure, never a reason to fail a clip that was extracted
        return None


def run_figures(shards: list[dict], wall_s: float, pending: int) -> dict:
    """The report's scaling figures from every process's final status (`ShardProgress`)."""
    video = round(sum(s["video_s"] for s in shards), 3) if all(s["video_s_known"] for s in shards) else None
    return {
        "wall_time_s": round(wall_s, 2),
        "processes": len(shards),
        "threads_per_process": [s["threads"] for s in shards],
        "clips_this_run": pending,
        "clips_per_s": round(pending / max(wall_s, 1e-9), 3),
        "video_seconds_this_run": video,
        "video_s_per_wall_s": None if video is None else round(video / max(wall_s, 1e-9), 3),
        "clips_per_process": [
            {"rank": s["rank"], "host": s["host"], "assigned": s["assigned"], "extracted": s["extracted"],
             "failed": s["failed"], "wall_s": s["wall_s"], "video_s": s["video_s"] if s["video_s_known"] else None}
            for s in shards
        ],
    }
