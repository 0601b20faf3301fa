"""A run's `results.json`: the one place that writes, reads, validates and renders it.

Training writes it next to the best model (`emi_hf.training`), fusion training reads the sequence caps a model was
trained with from it (as does loading a checkpoint saved before configs held `temporal_window`:
`modeling_base_emi.restore_unrecorded_windows` reads `training.max_frames` / `max_audio_frames`, and nothing else),
the model card (`emi_hf.hub`) shows its numbers, and `emi-hf evaluate` / the quickstart print its validation blocks
as a table. The format:

```json
{
  "modality": "visual" | "audio" | "text" | "fusion",
  "dataset": "Hume-Vidmimic2",                          # free-form name of the training data
  "dataset_repo_id": "org/emi-features",                # optional: Hub dataset id, listed in the card's `datasets:`
  "validation": {"mean_pearson": 0.41, "per_emotion": {"Admiration": 0.38, ...}, "num_clips": 4000},
  "training": {"learning_rate": 3e-4, "epochs": 30, "max_frames": 512, ...},  # flat hyperparameters
  "license": "other",                                   # optional, card `license:` (default "other")
  "versions": {"emi_hf": "0.1.0", "transformers": "5.x", "torch": "2.x"}  # optional, else taken at upload
}
```

`validation` is exactly what `emi_hf.metrics.mean_pearson` returns (plus optional counts such as `num_clips`).
Training adds `label_names`, `eval_split` and the per-epoch `history`; a fusion run also `fusion_weights`,
`unimodal`, `validation_equal_weights` and `validation_crossfit` (metric blocks of the same layout, or None).
A run whose evaluation split is trained on (`--train-splits train validation`) has `validation` None and its scores
on that split as `training_fit`; a seed ensemble (`--seeds N`) adds `members`. `emi-hf evaluate` adds
`confidence_intervals` (`emi_hf.metrics.bootstrap_mean_pearson`, or None); files without these keys stay valid.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .errors import EmiUsageError

RESULTS_FILE = "results.json"
MODALITIES = (None, "visual", "audio", "text", "fusion")
TRAINING_LABEL_MEAN = "training_label_mean"
"""The key under which training records the mean label vector of its training clips, in ``config.json`` (the
checkpoint knows it) and in ``results.json``'s ``training`` block: `emi-hf submit`'s fallback row."""


def json_ready(value):
    """`value` with NumPy scalars as Python numbers, non-finite floats as None, paths as strings (JSON-safe)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_results(folder: str | os.PathLike, results: dict) -> Path:
    """Writes `results` (made JSON-safe with `json_ready`) to `folder/results.json`, indented; returns the path."""
    path = Path(folder) / RESULTS_FILE
    path.write_text(json.dumps(json_ready(results), indent=2))
    return path


def read_results(folder: str | os.PathLike, label_names: list[str] | None = None) -> dict | None:
    """Reads and validates a run folder's `results.json` (format in the module docstring); None if absent.

    `label_names`: when given, the names of `validation.per_emotion` must be these (the model's labels).

    Raises:
        ValueError: the file exists but does not follow the format (the message names the field).
    """
    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        return None
    results = _parse(path)
    validate_results(results, path, label_names)
    return results


def _parse(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise EmiUsageError(f"{path} is not valid JSON: {error}") from error


def validate_results(results, source: str | os.PathLike, label_names: list[str] | None = None) -> None:
    """Raises a ValueError naming `source` and the field when `results` does not follow the format."""
    if not isinstance(results, dict):
        raise EmiUsageError(f"{source} must hold a JSON object, got {type(results).__name__}.")
    if results.get("modality") not in MODALITIES:
        raise EmiUsageError(f"{source}: 'modality' must be 'visual', 'audio', 'text' or 'fusion', got "
                            f"{results['modality']!r}.")
    for key in ("training", "versions"):
        if not isinstance(results.get(key, {}), dict):
            raise EmiUsageError(f"{source}: {key!r} must be an object of name -> value.")
    validation = results.get("validation")
    if validation is None:
        return
    if not isinstance(validation, dict) or not isinstance(validation.get("mean_pearson"), (int, float)):
        raise EmiUsageError(f"{source}: 'validation' must be "
                            "{'mean_pearson': float, 'per_emotion': {name: float}}.")
    per_emotion = validation.get("per_emotion", {})
    if not isinstance(per_emotion, dict) or not all(isinstance(v, (int, float)) for v in per_emotion.values()):
        raise EmiUsageError(f"{source}: 'validation.per_emotion' must map emotion names to floats.")
    if per_emotion and abs(sum(per_emotion.values()) / len(per_emotion) - validation["mean_pearson"]) > 1e-6:
        raise EmiUsageError(
            f"{source}: 'validation.mean_pearson' ({validation['mean_pearson']}) is not the mean of "
            "'validation.per_emotion': write the output of emi_hf.metrics.mean_pearson unchanged."
        )
    if label_names is not None and per_emotion and set(per_emotion) != set(label_names):
        raise EmiUsageError(
            f"{source}: 'validation.per_emotion' names {sorted(per_emotion)} do not match the model's labels "
            f"{sorted(label_names)}."
        )


def trained_settings(folder: str | os.PathLike | None) -> dict:
    """The `training` block of the run in `folder` (hyperparameters, sequence caps); {} without a results.json.

    Only that block is read: a run whose validation split was unlabeled (no metric) still gives its settings."""
    path = Path(folder) / RESULTS_FILE if folder else None
    if path is None or not path.is_file():
        return {}
    results = _parse(path)
    training = results.get("training", {}) if isinstance(results, dict) else None
    if not isinstance(training, dict):
        raise EmiUsageError(f"{path}: 'training' must be an object of name -> value.")
    return training


def format_confidence_table(intervals: dict) -> str:
    """The `bootstrap_mean_pearson` intervals as a table: emotion, estimate, low, high."""
    level = f"{100 * intervals['confidence']:g}% CI"
    lines = [f"{'emotion':<15}{'pearson':>12}{level + ' low':>14}{level + ' high':>14}"]
    rows = [*intervals["per_emotion"].items(), ("mean Pearson", intervals["mean_pearson"])]
    for name, block in rows:
        lines.append(f"{name:<15}{block['estimate']:>12.4f}{block['low']:>14.4f}{block['high']:>14.4f}")
    lines.append(f"({intervals['num_resamples']} bootstrap resamples of {intervals['num_clips']} clips, "
                 f"seed {intervals['seed']})")
    return "\n".join(lines)


def format_results_table(results: dict) -> str:
    """Per-emotion table of one results dict ({"per_emotion": {...}, "mean_pearson": x} or nested by name)."""
    columns = {k: v for k, v in results.items()  # metric blocks (not, e.g., the confidence_intervals block)
               if isinstance(v, dict) and "per_emotion" in v and isinstance(v.get("mean_pearson"), (int, float))}
    if not columns and "per_emotion" in results:
        columns = {"pearson": results}
    names = list(next(iter(columns.values()))["per_emotion"]) if columns else []
    width = {c: max(12, len(c) + 2) for c in columns}
    lines = [f"{'emotion':<15}" + "".join(f"{c:>{width[c]}}" for c in columns)]
    for name in names:
        lines.append(f"{name:<15}" + "".join(f"{columns[c]['per_emotion'][name]:>{width[c]}.4f}" for c in columns))
    lines.append(f"{'mean Pearson':<15}" + "".join(f"{columns[c]['mean_pearson']:>{width[c]}.4f}" for c in columns))
    return "\n".join(lines)
