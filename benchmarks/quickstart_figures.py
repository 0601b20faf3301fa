"""The figures the README quotes for `make quickstart`, produced by one script: the validation table (visual, audio,
text, fused checkpoint, plain average, cross-fitted), the 95% bootstrap intervals of each column's mean Pearson, the
relations the README states (fused above every single modality, cross-fitted above every single modality and below
the in-sample fused checkpoint), the submission step's figures and the wall times, each with date, machine and
commit.

    python benchmarks/quickstart_figures.py                      # runs the quickstart at its defaults (a few min)
    python benchmarks/quickstart_figures.py --reuse quickstart   # the figures of an existing quickstart folder

Writes benchmarks/quickstart_figures.json and .md (`--output`). With `--reuse`, the table is re-evaluated from the
folder's checkpoints and features (the same numbers `make quickstart` printed) and the wall times are the folder's.
The figures come from the synthetic set with random backbones: they show the pipeline works, not what the method
scores on Hume-Vidmimic2. No test runs the quickstart itself (a few minutes even at reduced size on 2 cores): these
relations are checked by this script on each full run, and it exits 1 when one does not hold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from table import current_commit, device_name  # noqa: E402

SINGLE = ("visual", "audio", "text")


def relations(validation: dict) -> dict[str, bool]:
    """The README's statements about the table, each True or False on these figures."""
    score = {name: block["mean_pearson"] for name, block in validation.items()}
    best_single = max(score[m] for m in SINGLE)
    found = {"fused (checkpoint) above every single modality": score["fusion"] > best_single}
    if "fused_crossfit" in score:
        found["cross-fitted above every single modality"] = score["fused_crossfit"] > best_single
        found["cross-fitted below the in-sample fused checkpoint"] = score["fused_crossfit"] < score["fusion"]
    return found


def table_of(output_dir: Path) -> dict:
    """The validation table and intervals, re-evaluated from the folder's checkpoints (as step 4/6 prints them)."""
    from emi_hf.quickstart import report_validation

    table = report_validation(output_dir / "features", output_dir / "runs")
    return {name: {"mean_pearson": block["mean_pearson"], "per_emotion": block["per_emotion"],
                   "ci95": (block.get("confidence_intervals") or {}).get("mean_pearson")}
            for name, block in table.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=str(HERE.parent / ".cache" / "quickstart_figures"),
                        help="where the quickstart runs (default .cache/quickstart_figures)")
    parser.add_argument("--reuse", help="an existing quickstart folder: its figures, without running it again")
    parser.add_argument("--output", default=str(HERE / "quickstart_figures.md"))
    args = parser.parse_args()

    from emi_hf.quickstart import run_quickstart

    folder = Path(args.reuse or args.output_dir)
    if not args.reuse:
        run_quickstart(folder)
    summary = json.loads((folder / "quickstart_results.json").read_text())
    validation = table_of(folder)
    figures = {
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": device_name(),
        "commit": current_commit(), "folder": str(folder), "ran_now": not args.reuse,
        "validation": validation, "relations": relations(validation),
        "submission": summary.get("submission"), "timings_s": summary.get("timings"),
        "backbones": summary.get("backbones"),
    }
    output = Path(args.output)
    output.with_suffix(".json").write_text(json.dumps(figures, indent=2))
    names = [n for n in ("visual", "audio", "text", "fusion", "fused_equal", "fused_crossfit") if n in validation]
    lines = [f"Quickstart figures, {figures['measured']} on {figures['machine']}, commit {figures['commit']} "
             f"(benchmarks/quickstart_figures.py; {'run now' if not args.reuse else 'from ' + str(folder)}).", "",
             "| " + " | ".join(names) + " |", "|" + "---|" * len(names),
             "| " + " | ".join(f"{validation[n]['mean_pearson']:.4f}" for n in names) + " |",
             "| " + " | ".join("" if not validation[n]["ci95"] else
                               f"[{validation[n]['ci95']['low']:.4f}, {validation[n]['ci95']['high']:.4f}]"
                               for n in names) + " |", ""]
    lines += [f"- {claim}: {'yes' if holds else 'NO'}" for claim, holds in figures["relations"].items()]
    if figures["submission"]:
        s = figures["submission"]
        lines.append(f"- submission: {s['num_clips']} rows, {s['num_filled_with_fallback']} filled with the training "
                     f"mean, problems {s['problems'] or 'none'}, test mean Pearson {s['test_mean_pearson']}")
    lines.append(f"- wall times (s): {figures['timings_s']}")
    output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(figures["relations"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
