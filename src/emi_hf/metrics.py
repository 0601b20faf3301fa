"""Evaluation metrics for Emotional Mimicry Intensity (EMI) estimation.

The ABAW EMI challenge ranks models by the **mean Pearson correlation** over the six emotions: for each
emotion (column) the Pearson r between predicted and annotated intensities over all clips, then the
unweighted mean of the six r values. :func:`mean_pearson` computes exactly that; :func:`concordance_correlation`
and :func:`mean_squared_error` are companions for reports (CCC also penalises bias and scale, MSE is the loss).

All maths is float64 NumPy, whatever the input dtype. Inputs are `[num_clips, num_labels]` arrays (NumPy,
nested lists, or torch tensors), one column per name in `label_names` (default: the six EMI emotions).

Conventions for the cases where a correlation is undefined:

- **Constant column** (all predictions, or all references, of one emotion identical): Pearson r and CCC are
  0/0. This module returns **0.0**, the convention that a constant predictor carries no linear information about
  the target (a model that always outputs the same intensity scores as badly as an uncorrelated one).
  `scipy.stats.pearsonr` returns NaN and warns instead, which would turn the mean into NaN.
- **Fewer than 2 samples**: a correlation cannot be computed at all; a ``ValueError`` is raised.
- **NaN or infinite values** (for instance the unlabeled test split, whose labels are NaN): ``ValueError``
  naming the argument and the emotion, never a silent NaN result.

Example:

```python
>>> import numpy as np
>>> from emi_hf.metrics import mean_pearson
>>> rng = np.random.default_rng(0)
>>> references = rng.random((32, 6))
>>> result = mean_pearson(references + 0.1 * rng.random((32, 6)), references)
>>> sorted(result)
['mean_pearson', 'per_emotion']
>>> round(result["mean_pearson"], 2) > 0.9
True
```

The returned `{"mean_pearson": float, "per_emotion": {name: float}}` has the same layout as the ``"validation"``
block of a run's ``results.json`` (see :mod:`emi_hf.hub`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .models.configuration_emi import EMOTION_NAMES
from .errors import EmiUsageError


__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "EMOTION_NAMES",
    "bootstrap_mean_pearson",
    "concordance_correlation",
    "mean_pearson",
    "mean_squared_error",
    "pearson_per_label",
    "regression_report",
]


def _to_float64_matrix(values: Any, argument: str, label_names: Sequence[str]) -> np.ndarray:
    """Converts `values` to a float64 array `[num_samples, len(label_names)]`, validating shape and finiteness."""
    if hasattr(values, "detach"):  # torch.Tensor without importing torch
        values = values.detach().cpu().double().numpy()
    try:
        matrix = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{argument}` must be a numeric array of shape [num_samples, {len(label_names)}]: {error}")
    num_labels = len(label_names)
    if matrix.ndim == 1 and num_labels == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[1] != num_labels:
        raise ValueError(
            f"`{argument}` must have shape [num_samples, {num_labels}] (one column per label: {list(label_names)}), "
            f"got shape {list(matrix.shape)}."
        )
    finite = np.isfinite(matrix)
    if not finite.all():
        bad_rows, bad_columns = np.nonzero(~finite)
        columns = sorted({label_names[c] for c in bad_columns})
        raise ValueError(
            f"`{argument}` contains {len(bad_rows)} NaN or infinite value(s) (first at row {int(bad_rows[0])}; "
            f"labels {columns}). Metrics need finite values: drop unlabeled clips (the test split has NaN labels) "
            "or clips the model could not score before computing them."
        )
    return matrix


def _validated_pair(predictions: Any, references: Any, label_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    label_names = tuple(label_names)
    if len(label_names) == 0:
        raise ValueError("`label_names` must name at least one label column.")
    if len(set(label_names)) != len(label_names):
        raise ValueError(f"`label_names` must be unique, got {list(label_names)}.")
    predictions = _to_float64_matrix(predictions, "predictions", label_names)
    references = _to_float64_matrix(references, "references", label_names)
    if predictions.shape != references.shape:
        raise ValueError(
            f"`predictions` and `references` must have the same shape, got {list(predictions.shape)} and "
            f"{list(references.shape)}."
        )
    if predictions.shape[0] < 2:
        raise EmiUsageError(
            f"Correlation metrics need at least 2 samples, got {predictions.shape[0]}. Evaluate on more clips."
        )
    return predictions, references


def _is_constant(matrix: np.ndarray) -> np.ndarray:
    """`[num_labels]` bool: column has a single repeated value (exact test, as scipy does)."""
    return np.all(matrix == matrix[0], axis=0)


def pearson_per_label(predictions: Any, references: Any, label_names: Sequence[str] = EMOTION_NAMES) -> np.ndarray:
    """Pearson r of each label column, as a float64 array `[num_labels]`.

    Args:
        predictions: `[num_samples, num_labels]` predicted intensities.
        references: `[num_samples, num_labels]` annotated intensities.
        label_names: names of the columns, in order (default: `EMOTION_NAMES`).

    Returns:
        `[num_labels]` float64 correlations in [-1, 1]; 0.0 for a column where predictions or references are
        constant (see the module docstring).

    Raises:
        ValueError: wrong shapes, fewer than 2 samples, NaN or infinite values.
    """
    predictions, references = _validated_pair(predictions, references, label_names)
    # Same arithmetic as scipy.stats.pearsonr: centre, scale each column to unit norm, then dot product.
    # Scaling by the max absolute value first keeps the norms finite for very large or very small inputs.
    centred = []
    for matrix in (predictions, references):
        deviations = matrix - matrix.mean(axis=0)
        scale = np.abs(deviations).max(axis=0)
        scale[scale == 0] = 1.0
        deviations = deviations / scale
        norms = np.linalg.norm(deviations, axis=0)
        norms[norms == 0] = 1.0
        centred.append(deviations / norms)
    correlation = np.einsum("ij,ij->j", centred[0], centred[1])
    correlation = np.clip(correlation, -1.0, 1.0)
    correlation[_is_constant(predictions) | _is_constant(references)] = 0.0
    return correlation


def _summary(values: np.ndarray, label_names: Sequence[str], mean_key: str) -> dict[str, Any]:
    return {
        mean_key: float(np.mean(values)),
        "per_emotion": {name: float(value) for name, value in zip(label_names, values)},
    }


def mean_pearson(predictions: Any, references: Any, label_names: Sequence[str] = EMOTION_NAMES) -> dict[str, Any]:
    """The EMI challenge metric: Pearson r per emotion and their unweighted mean.

    Args:
        predictions: `[num_samples, num_labels]` predicted intensities (NumPy, list, or torch tensor).
        references: `[num_samples, num_labels]` annotated intensities.
        label_names: names of the columns, in order (default: the six EMI emotions).

    Returns:
        `{"mean_pearson": float, "per_emotion": {label_name: float}}`, plain Python floats. A constant column
        scores 0.0 (see the module docstring).

    Raises:
        ValueError: shapes other than `[N, len(label_names)]`, mismatched shapes, N < 2, NaN or infinite values.
    """
    return _summary(pearson_per_label(predictions, references, label_names), label_names, "mean_pearson")


def concordance_correlation(
    predictions: Any, references: Any, label_names: Sequence[str] = EMOTION_NAMES
) -> dict[str, Any]:
    """Lin's concordance correlation coefficient (CCC) per emotion and their mean.

    `ccc = 2 cov(p, r) / (var(p) + var(r) + (mean(p) - mean(r))^2)` with population (ddof=0) moments. Unlike
    Pearson r it also drops when predictions are biased or wrongly scaled. When the denominator is 0 (both columns
    constant and equal) the value is 0.0, the same convention as :func:`mean_pearson`; a constant prediction
    against varying references gives 0.0 naturally.

    Returns:
        `{"mean_ccc": float, "per_emotion": {label_name: float}}`.

    Raises:
        ValueError: as :func:`mean_pearson`.
    """
    predictions, references = _validated_pair(predictions, references, label_names)
    prediction_mean, reference_mean = predictions.mean(axis=0), references.mean(axis=0)
    covariance = ((predictions - prediction_mean) * (references - reference_mean)).mean(axis=0)
    denominator = predictions.var(axis=0) + references.var(axis=0) + (prediction_mean - reference_mean) ** 2
    ccc = np.divide(2.0 * covariance, denominator, out=np.zeros_like(covariance), where=denominator > 0)
    return _summary(ccc, label_names, "mean_ccc")


def mean_squared_error(predictions: Any, references: Any, label_names: Sequence[str] = EMOTION_NAMES) -> dict[str, Any]:
    """Mean squared error per emotion and its mean over emotions.

    Returns:
        `{"mean_mse": float, "per_emotion": {label_name: float}}`.

    Raises:
        ValueError: as :func:`mean_pearson` (2 samples are required here too, for uniform validation).
    """
    predictions, references = _validated_pair(predictions, references, label_names)
    return _summary(((predictions - references) ** 2).mean(axis=0), label_names, "mean_mse")


def regression_report(predictions: Any, references: Any, label_names: Sequence[str] = EMOTION_NAMES) -> dict[str, Any]:
    """All three metrics at once, for evaluation tables.

    Returns:
        `{"num_samples": int, "mean_pearson": float, "mean_ccc": float, "mean_mse": float,
        "per_emotion": {label_name: {"pearson": float, "ccc": float, "mse": float}}}`.
    """
    pearson = mean_pearson(predictions, references, label_names)
    ccc = concordance_correlation(predictions, references, label_names)
    mse = mean_squared_error(predictions, references, label_names)
    return {
        "num_samples": len(references),
        "mean_pearson": pearson["mean_pearson"],
        "mean_ccc": ccc["mean_ccc"],
        "mean_mse": mse["mean_mse"],
        "per_emotion": {
            name: {
                "pearson": pearson["per_emotion"][name],
                "ccc": ccc["per_emotion"][name],
                "mse": mse["per_emotion"][name],
            }
            for name in label_names
        },
    }


BOOTSTRAP_RESAMPLES = 1000  # default number of bootstrap resamples (`bootstrap_mean_pearson`)
_BOOTSTRAP_CHUNK = 100  # resamples per vectorised step (bounds the [chunk, N] count matrix)


def _weighted_pearson(counts: np.ndarray, predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Pearson r per label of each resample `[B, L]`, the resample given by per-row `counts` `[B, N]` (the number of
    times each clip was drawn): r of the multiset, from count-weighted sums of the (column-centred) inputs."""
    n = counts.sum(axis=1, keepdims=True)
    sums = [counts @ m for m in (predictions, references)]
    products = [counts @ (a * b) for a, b in ((predictions, predictions), (references, references),
                                              (predictions, references))]
    var_p = products[0] - sums[0] ** 2 / n
    var_r = products[1] - sums[1] ** 2 / n
    cov = products[2] - sums[0] * sums[1] / n
    # A resample whose column is constant (variance 0 up to rounding) scores 0.0, as `pearson_per_label` does.
    defined = (var_p > 1e-12 * products[0]) & (var_r > 1e-12 * products[1])
    scale = np.sqrt(np.where(defined, var_p * var_r, 1.0))
    r = np.divide(cov, scale, out=np.zeros_like(cov), where=defined)
    return np.clip(r, -1.0, 1.0)


def bootstrap_mean_pearson(
    predictions: Any,
    references: Any,
    label_names: Sequence[str] = EMOTION_NAMES,
    num_resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Percentile-bootstrap confidence intervals of :func:`mean_pearson` and of each emotion's Pearson r.

    Resample `b` (of `num_resamples`) draws N clips with replacement from the N clips:
    `np.random.default_rng(seed).integers(0, N, size=N)`, called once per resample in order, so the draws are a
    function of `seed` and N only. Each resample is scored as :func:`mean_pearson` would score `predictions[idx]`,
    `references[idx]` (a column constant within a resample scores 0.0); the interval is the
    `(1 - confidence) / 2` and `(1 + confidence) / 2` quantiles (NumPy's default linear interpolation) of the
    resampled values. The clips are the unit resampled, so the interval is for a new set of clips like these ones.

    Returns:
        `{"mean_pearson": {"estimate", "low", "high", "std"}, "per_emotion": {name: {...}}, "num_resamples",
        "confidence", "seed", "num_clips"}`; `estimate` is the metric on all clips, `std` the bootstrap standard error.

    Raises:
        ValueError: as :func:`mean_pearson`; `num_resamples` < 1 or `confidence` outside (0, 1).
    """
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    predictions, references = _validated_pair(predictions, references, label_names)
    estimate = pearson_per_label(predictions, references, label_names)
    num_clips = predictions.shape[0]
    centred = [m - m.mean(axis=0) for m in (predictions, references)]
    rng = np.random.default_rng(seed)
    resampled = []
    for start in range(0, num_resamples, _BOOTSTRAP_CHUNK):
        rows = min(_BOOTSTRAP_CHUNK, num_resamples - start)
        counts = np.stack([np.bincount(rng.integers(0, num_clips, size=num_clips), minlength=num_clips)
                           for _ in range(rows)]).astype(np.float64)
        resampled.append(_weighted_pearson(counts, *centred))
    per_label = np.concatenate(resampled)  # [B, L]
    tails = ((1 - confidence) / 2, (1 + confidence) / 2)

    def interval(values: np.ndarray, point: float) -> dict[str, float]:
        low, high = np.quantile(values, tails)
        return {"estimate": float(point), "low": float(low), "high": float(high), "std": float(values.std(ddof=1))
                if len(values) > 1 else 0.0}

    return {
        "mean_pearson": interval(per_label.mean(axis=1), estimate.mean()),
        "per_emotion": {name: interval(per_label[:, i], estimate[i]) for i, name in enumerate(label_names)},
        "num_resamples": int(num_resamples),
        "confidence": float(confidence),
        "seed": int(seed),
        "num_clips": int(num_clips),
    }
