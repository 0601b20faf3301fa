"""The benchmark table: rows recorded by every section (run_benchmarks.py and the bench_*.py section modules).

Every row carries its own `measured` (UTC), `machine` (`device_name()`) and `commit` (the code it measured), because
a run of some sections keeps the rows of the others from earlier runs: results.md shows each row's date and machine,
and marks **stale** the rows measured on another machine than the newest run (`write_results`).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import time
from pathlib import Path

ROWS: list[dict] = []
REPO = Path(__file__).resolve().parent.parent


@functools.cache
def current_commit() -> str | None:
    """The checkout's commit (short; `+dirty` with uncommitted changes), None outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def row(section, what, value, unit, target=None, passed=None, note="", **fields):
    """Records a row; `fields` (e.g. commit, machine, load_average) are kept in results.json beside the columns.
    `machine` and `commit` default to this machine and checkout."""
    entry = dict(section=section, what=what, value=value, unit=unit, target=target, passed=passed, note=note,
                 measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **fields)
    entry.setdefault("machine", cached_device_name())
    entry.setdefault("commit", current_commit())
    ROWS.append(entry)
    status = "" if passed is None else ("PASS" if passed else "FAIL")
    print(f"[{section}] {what}: {value} {unit} {('(target ' + target + ')') if target else ''} {status} {note}",
          flush=True)


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


@functools.cache
def cached_device_name() -> str:
    return device_name()


def machine_labels(rows: list[dict], newest: str) -> dict[str, str]:
    """Short labels (M1, M2, ...) for the machines of `rows`, the newest run's first."""
    machines = [newest] + sorted({r.get("machine") or "unknown" for r in rows} - {newest})
    return {machine: f"M{i + 1}" for i, machine in enumerate(machines)}


def is_stale(entry: dict, newest_machine: str) -> bool:
    """A row measured on another machine than the newest run (or on an unrecorded one)."""
    return (entry.get("machine") or "unknown") != newest_machine


def write_results(path: Path, rows: list[dict], latest: dict) -> str:
    """results.md (returned too) and results.json beside it. `latest`: the newest run's `measured`, `machine`,
    `threads`, `sections`, `wall_min`. The header claims no one date or machine for the table: each row says its
    own, and rows from another machine than the newest run are marked stale."""
    labels = machine_labels(rows, latest["machine"])
    stale = [r for r in rows if is_stale(r, latest["machine"])]
    dates = sorted({r["measured"][:10] for r in rows})
    lines = [
        f"Rows measured on {len(dates)} day(s) ({', '.join(dates)}) on {len(labels)} machine(s): each row's "
        f"`measured` column gives its own date and machine (results.json: each row's `measured`, `machine` and "
        f"`commit`, the code it measured). The newest run: {latest['measured']} on {labels[latest['machine']]}, "
        f"{latest['threads']} torch threads (sections {', '.join(latest['sections'])}; benchmark wall time "
        f"{latest['wall_min']:.1f} min); a run of some sections keeps the other sections' rows from earlier runs.",
        "",
        *(f"- {label}: {machine}" for machine, label in labels.items()),
        "",
        f"**stale** ({len(stale)} rows): measured on another machine than the newest run; compare them with rows of "
        f"their own machine and date, not with the newest ones, or re-run their section (`--sections NAME`).",
        "",
        "| section | what | value | unit | target | result | note | measured |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        result = "" if r["passed"] is None else ("pass" if r["passed"] else "**FAIL**")
        when = f"{r['measured'][:16]} {labels[r.get('machine') or 'unknown']}"
        when += " **stale**" if is_stale(r, latest["machine"]) else ""
        lines.append(f"| {r['section']} | {r['what']} | {r['value']} | {r['unit']} | {r['target'] or ''} | {result} | "
                     f"{r['note']} | {when} |")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    path.with_suffix(".json").write_text(json.dumps({"latest_run": latest, "rows": rows}, indent=2))
    return text


def bench_device() -> str:
    """The benchmark's device: the first GPU when there is one, else the CPU (as `emi-hf extract` / `predict`)."""
    from emi_hf.devices import default_device

    return default_device()


def load_note() -> str:
    """The machine's 1-minute load average and core count, for a row's note (other jobs move these figures)."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
