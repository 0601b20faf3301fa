"""The benchmark table: rows recorded by every section (run_benchmarks.py and the bench_*.py section modules)."""

from __future__ import annotations

import functools
import os
import platform
import time
from pathlib import Path

ROWS: list[dict] = []


def row(section, what, value, unit, target=None, passed=None, note="", **fields):
    """Records a row; `fields` (e.g. commit, machine, load_average) are kept in results.json beside the columns. Every
    row names its machine (default: this one), which the docs' table shows (benchmarks/docs_table.py)."""
    fields.setdefault("machine", _this_machine())
    entry = dict(section=section, what=what, value=value, unit=unit, target=target, passed=passed, note=note,
                 measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **fields)
    ROWS.append(entry)
    status = "" if passed is None else ("PASS" if passed else "FAIL")
    print(f"[{section}] {what}: {value} {unit} {('(target ' + target + ')') if target else ''} {status} {note}",
          flush=True)


@functools.lru_cache(maxsize=1)
def _this_machine() -> str:
    return device_name()


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu}, {os.cpu_count()} cores"


def bench_device() -> str:
    """The benchmark's device: the first GPU when there is one, else the CPU (as `emi-hf extract` / `predict`)."""
    from emi_hf.devices import default_device

    return default_device()


def load_note() -> str:
    """The machine's 1-minute load average and core count, for a row's note (other jobs move these figures)."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
