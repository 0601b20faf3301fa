"""Per-clip loss weights from the number of annotators behind each clip's labels (`--annotator-weights`, off by
default).

Hume-Vidmimic2 intensities are fractions of annotators: a clip rated by N people has labels k/N. A clip rated by
more people has less noisy labels, so (as the ABAW10 winner does) its loss can weigh more. N is not distributed; it is
inferred from the six fractions:

    N = the smallest n in 1..`max_annotators` such that every label f of the clip is within `tolerance` of some
        k/n (|f - round(f * n) / n| <= tolerance).

Defaults: `MAX_ANNOTATORS` = 30, `TOLERANCE` = 0.001 (labels stored with three decimals, such as 0.333 for 1/3, still
match). Consequences to know: a clip whose labels are all 0 or 1 gets N = 1 (nothing in its labels shows more raters);
labels no n up to `max_annotators` explains (continuous labels, such as the synthetic set's) get no inferred count
and the median of the inferred counts of the split (1 when none is inferred). A clip's weight is its count divided by
the split's mean count, so the weights average 1 and the learning rate keeps its meaning.

The weights reach the loss through the model: the training loop runs each step's forward inside
`temporal_emi.loss_reduction(weights=...)`, and the model's `labels` loss (`temporal_emi.clip_loss`) is then the
weighted form of its loss (`weighted_regression_loss`: MSE, 1 - CCC, 1 - Pearson r with weighted moments); with equal
weights it is that loss, and with integer weights it is that loss on the batch with each clip repeated as many
times.
"""

from __future__ import annotations

import numpy as np

from ..models.temporal_emi import weighted_regression_loss  # noqa: F401  (its home before; the models' loss now)

MAX_ANNOTATORS = 30
TOLERANCE = 1e-3


def infer_annotator_count(fractions, max_annotators: int = MAX_ANNOTATORS, tolerance: float = TOLERANCE) -> int | None:
    """The smallest n <= `max_annotators` whose multiples k/n explain all `fractions` within `tolerance`; None if
    no n does (or a value is NaN / outside [0, 1] by more than `tolerance`)."""
    values = np.asarray(fractions, dtype=np.float64).ravel()
    if not np.isfinite(values).all() or (values < -tolerance).any() or (values > 1 + tolerance).any():
        return None
    for n in range(1, max_annotators + 1):
        if np.all(np.abs(values - np.round(values * n) / n) <= tolerance):
            return n
    return None


def annotator_counts(labels, max_annotators: int = MAX_ANNOTATORS, tolerance: float = TOLERANCE) -> np.ndarray:
    """Inferred counts `[N]` (float, NaN where none is inferred) of a `[N, L]` label matrix."""
    counts = [infer_annotator_count(row, max_annotators, tolerance) for row in np.asarray(labels)]
    return np.array([np.nan if c is None else c for c in counts], dtype=np.float64)


def annotator_weights(labels, max_annotators: int = MAX_ANNOTATORS, tolerance: float = TOLERANCE) -> tuple[
        np.ndarray, dict]:
    """Per-clip loss weights `[N]` (mean 1; rules in the module docstring) and a summary for results.json."""
    counts = annotator_counts(labels, max_annotators, tolerance)
    inferred = np.isfinite(counts)
    fallback = float(np.median(counts[inferred])) if inferred.any() else 1.0
    filled = np.where(inferred, counts, fallback)
    weights = (filled / filled.mean()).astype(np.float32) if len(filled) else filled.astype(np.float32)
    summary = {
        "clips": int(len(counts)),
        "clips_with_inferred_count": int(inferred.sum()),
        "median_inferred_count": fallback if inferred.any() else None,
        "max_annotators": max_annotators,
        "tolerance": tolerance,
    }
    return weights, summary
