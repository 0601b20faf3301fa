"""benchmarks/results.md and results.json: every row carries its own date, machine and commit, the header claims no
one date or machine for the whole table, and rows measured on another machine than the newest run are marked stale
(benchmarks/table.py `write_results`)."""

from __future__ import annotations

import json
import re
import sys

import pytest
from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
table = pytest.importorskip("table")

RESULTS = REPO_ROOT / "benchmarks" / "results.json"


def _rows_of(markdown: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in markdown.splitlines()
            if line.startswith("| ") and not line.startswith("| section |")]


def test_each_row_says_its_date_and_machine_and_other_machines_are_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(table, "ROWS", [])
    monkeypatch.setattr(table, "cached_device_name", lambda: "cpu: Newer, 4 cores")
    table.row("a", "now", 1.0, "s")
    old = dict(table.ROWS[0], what="earlier", measured="2026-01-02 03:04 UTC", machine="cpu: Older, 2 cores")
    unknown = {k: v for k, v in old.items() if k != "machine"} | {"what": "unrecorded"}
    assert table.ROWS[0]["machine"] == "cpu: Newer, 4 cores" and "commit" in table.ROWS[0]
    latest = {"measured": table.ROWS[0]["measured"], "machine": "cpu: Newer, 4 cores", "threads": 4,
              "sections": ["a"], "wall_min": 0.1}
    text = table.write_results(tmp_path / "results.md", [old, table.ROWS[0], unknown], latest)
    header = text.split("| section |")[0]
    assert "2026-01-02" in header and table.ROWS[0]["measured"][:10] in header
    assert "- M1: cpu: Newer, 4 cores" in header and "- M2: cpu: Older, 2 cores" in header
    rows = {r[1]: r[-1] for r in _rows_of(text)}
    assert rows["earlier"] == "2026-01-02 03:04 M2 **stale**"
    assert rows["now"] == f"{table.ROWS[0]['measured'][:16]} M1"
    assert rows["unrecorded"].endswith("**stale**") and "unknown" in header
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["latest_run"] == latest and "machine" not in saved  # no one machine for all rows


def test_the_committed_table_gives_each_row_its_own_provenance():
    data = json.loads(RESULTS.read_text())
    latest = data["latest_run"]
    for r in data["rows"]:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", r["measured"]), r["what"]
        assert r["machine"] and r["machine"] != "unknown", r["what"]
        assert r.get("commit") or r.get("recorded_in_commit"), r["what"]
    markdown = (REPO_ROOT / "benchmarks" / "results.md").read_text()
    assert not markdown.startswith("Measured ")  # the old header: one date and machine for every row
    labels = dict(re.findall(r"^- (M\d+): (.+)$", markdown, flags=re.M))
    shown = _rows_of(markdown)
    assert len(shown) == len(data["rows"])
    for cells, r in zip(shown, data["rows"]):
        assert cells[-1].startswith(r["measured"][:16]), (cells, r["measured"])
        label = cells[-1].split(" ")[2]
        assert labels[label] == r["machine"], (cells[1], labels[label], r["machine"])
        assert cells[-1].endswith("**stale**") == (r["machine"] != latest["machine"]), cells[1]
