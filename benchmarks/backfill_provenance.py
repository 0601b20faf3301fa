"""One-off migration (kept for the record): give the rows of benchmarks/results.json written before rows carried
their own machine the machine and commit that wrote them, read from git history.

For each row without `machine`, the first commit whose results.json holds that row (same section, what and
`measured`) is the run that measured it: its file's top-level `machine` (the header of that run) is the row's
machine, and the commit is kept as `recorded_in_commit` (the code measured is that commit's parent or the commit
itself; `commit` stays unknown). The newest run's header moves to `latest_run`.

    python benchmarks/backfill_provenance.py   # in a git checkout; rewrites results.json and results.md
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from table import write_results  # noqa: E402

RESULTS = HERE / "results.json"


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(HERE.parent), *args], capture_output=True, text=True, check=True).stdout


def first_recorded() -> dict[tuple, tuple[str, str | None]]:
    """(section, what, measured) -> (commit, machine of that commit's results.json), earliest commit first."""
    found: dict[tuple, tuple[str, str | None]] = {}
    for commit in _git("log", "--reverse", "--format=%H", "--", "benchmarks/results.json").split():
        try:
            data = json.loads(_git("show", f"{commit}:benchmarks/results.json"))
        except (subprocess.CalledProcessError, json.JSONDecodeError):
            continue
        for r in data["rows"]:
            found.setdefault((r["section"], r["what"], r.get("measured")), (commit[:7], data.get("machine")))
    return found


def main() -> None:
    data = json.loads(RESULTS.read_text())
    history = first_recorded()
    for r in data["rows"]:
        if r.get("machine"):
            continue
        commit, machine = history.get((r["section"], r["what"], r.get("measured")), (None, None))
        r["machine"] = machine or "unknown"
        r.setdefault("commit", None)
        r["recorded_in_commit"] = commit
    latest = data.get("latest_run") or {
        # the header results.md had before this migration (05719ba): the last run, of section scale
        "measured": "2026-12-06 13:41 UTC", "machine": data["machine"], "threads": data["threads"],
        "sections": ["scale"], "wall_min": 3.7}
    write_results(HERE / "results.md", data["rows"], latest)


if __name__ == "__main__":
    main()
