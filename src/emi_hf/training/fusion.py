"""Fitting a late-fusion model's per-emotion modality weights on validation predictions, and scoring the fusion.

The fusion model predicts, per emotion, the weighted mean of its modalities' predictions, with weights on the
simplex renormalised per clip over the modalities present (`fuse_modalities`). `fit_fusion` predicts the validation
split with every unimodal model, chooses each emotion's weights on a simplex grid (`optimal_modality_weights`,
Pearson's r from `emi_hf.metrics`; two modalities: the first one's share in steps of 0.01, as earlier versions did
for visual + audio; three: steps of 0.02), stores them in the model's config and reports the fused score with the
fitted weights, with equal weights, and cross-fitted (weights fitted on one half of the clips score the other half,
so that the score does not reuse the labels its weights were fitted on). A feature-level fusion model has no weights
to fit: it is only scored.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import torch

from ..models.configuration_emi import equal_modality_weights
from ..errors import EmiUsageError
from ..metrics import pearson_per_label
from ..models.modeling_fusion_emi import EmiFusionModel, fuse_modalities
from .evaluation import fused_modalities, metric_block, predict

logger = logging.getLogger("emi_hf.training")

FUSION_GRID_SIZE = 101  # two modalities: the first one's share on 101 points
SIMPLEX_GRID_STEPS = 50  # three or more: weights in steps of 1/50
TIE_TOLERANCE = 1e-9  # Pearson r values closer than this count as equal


def simplex_grid(num_modalities: int, grid_size: int = FUSION_GRID_SIZE) -> np.ndarray:
    """`[G, M]` weight vectors on the simplex: for 2 modalities `(w, 1 - w)` on `grid_size` points, for more all
    multiples of `1 / SIMPLEX_GRID_STEPS` summing to 1."""
    if num_modalities == 1:
        return np.ones((1, 1))
    if num_modalities == 2:
        share = np.linspace(0, 1, grid_size)
        return np.stack([share, 1 - share], axis=1)
    steps = SIMPLEX_GRID_STEPS
    points = [c for c in itertools.product(range(steps + 1), repeat=num_modalities - 1) if sum(c) <= steps]
    return np.array([[*c, steps - sum(c)] for c in points], dtype=np.float64) / steps


def optimal_modality_weights(predictions: dict, labels, grid_size: int = FUSION_GRID_SIZE) -> dict[str, list[float]]:
    """
    Per-emotion weights on the simplex that maximise Pearson's r of the fused prediction on held-out data: a grid
    search (`simplex_grid`). `predictions` {modality: `[clips, num_labels]`} (tensors or arrays); clips with NaN in
    any modality or in the labels are left out. Ties (e.g. one modality constant for an emotion) go to the weights
    nearest the plain average.

    Raises:
        ValueError: fewer than 3 clips with every modality and labels.
    """
    names = list(predictions)
    stacked = torch.stack([torch.as_tensor(predictions[m], dtype=torch.float64) for m in names])  # [M, N, L]
    labels = torch.as_tensor(labels, dtype=torch.float64)
    keep = ~(stacked.isnan().any(2).any(0) | labels.isnan().any(1))
    stacked, labels = stacked[:, keep], labels[keep]
    if stacked.shape[1] < 3:
        raise EmiUsageError(f"At least 3 clips with all of {names} are needed to fit fusion weights.")
    grid = simplex_grid(len(names), grid_size)
    label_names = [str(i) for i in range(labels.shape[1])]
    r = np.stack([pearson_per_label(torch.einsum("m,mnl->nl", torch.from_numpy(w), stacked), labels, label_names)
                  for w in grid])  # [G, L]
    best = r >= r.max(0, keepdims=True) - TIE_TOLERANCE
    distance = np.where(best, np.abs(grid - 1.0 / len(names)).sum(1)[:, None], np.inf)
    chosen = grid[distance.argmin(0)]  # [L, M]
    return {m: [float(w) for w in chosen[:, i]] for i, m in enumerate(names)}


def optimal_fusion_weights(visual_predictions, audio_predictions, labels,
                           grid_size: int = FUSION_GRID_SIZE) -> list[float]:
    """The visual share per emotion of the best visual + audio fusion (`optimal_modality_weights` of two)."""
    weights = optimal_modality_weights({"visual": visual_predictions, "audio": audio_predictions}, labels, grid_size)
    return weights["visual"]


def _unimodal(arrays: dict) -> tuple[dict, dict]:
    names = fused_modalities(arrays)
    return ({m: torch.from_numpy(arrays[f"{m}_intensities"]) for m in names},
            {m: torch.from_numpy(arrays[f"{m}_mask"]) for m in names})


def fused(arrays: dict, weights: dict) -> np.ndarray:
    """The late-fused `[N, L]` prediction of `predict(..., "fusion")` arrays with `weights` {modality: [L]}."""
    predictions, masks = _unimodal(arrays)
    return fuse_modalities(predictions, masks, {m: torch.tensor(weights[m], dtype=torch.float32)
                                                for m in predictions}).numpy()


def crossfitted(arrays: dict) -> np.ndarray:
    """Fused predictions of the even rows with weights fitted on the odd rows, and the other way round."""
    names = fused_modalities(arrays)
    labels = arrays["labels"]
    rows = np.arange(len(labels))
    predictions = np.full_like(arrays[f"{names[0]}_intensities"], np.nan)
    folds = (rows % 2 == 0, rows % 2 == 1)
    for fit, apply in (folds, folds[::-1]):
        half_weights = optimal_modality_weights({m: arrays[f"{m}_intensities"][fit] for m in names}, labels[fit])
        predictions[apply] = fused(arrays, half_weights)[apply]
    return predictions


def score_fusion(arrays: dict, label_names, weights: dict, fitted: bool, late: bool = True) -> dict:
    """The fusion part of a run's results: fused scores (the model's, and for late fusion with equal and cross-fitted
    weights), unimodal scores, the weights. `validation_crossfit` is None when a half has fewer than 3 clips holding
    every modality; feature-level fusion has neither."""
    labels, present = arrays["labels"], arrays["mask"]
    names = fused_modalities(arrays)
    result = {
        "validation": metric_block(fused(arrays, weights) if late else arrays["intensities"], present, labels,
                                   label_names),
        "unimodal": {m: metric_block(arrays[f"{m}_intensities"], arrays[f"{m}_mask"], labels, label_names)
                     for m in names},
        "modalities": names,
    }
    if late:
        try:
            crossfit = metric_block(crossfitted(arrays), present, labels, label_names)
        except ValueError:
            crossfit = None
        equal = equal_modality_weights(names, len(label_names))
        result.update(
            validation_equal_weights=metric_block(fused(arrays, equal), present, labels, label_names),
            validation_crossfit=crossfit,
            modality_weights={m: dict(zip(label_names, weights[m])) for m in names},
            fusion_weights_fitted=fitted,
        )
        if names == ["visual", "audio"]:  # the visual share, as earlier versions wrote it
            result["fusion_weights"] = dict(zip(label_names, weights["visual"]))
    return result


@torch.no_grad()
def fit_fusion(accelerator, model: EmiFusionModel, eval_loader, label_names, output_dir: Path,
               fit: bool = True) -> dict:
    """
    Predicts the split of `eval_loader` with every unimodal model of `model`, fits `model.config.modality_weights`
    (clips with every modality; with fewer than 3 such clips the configured weights are kept), scores the fusion
    (`score_fusion`) and saves the model to `output_dir` (main process). Returns the fusion part of the results.
    `fit=False`: the configured weights are kept and only scored (`--fusion-weights-from`, feature-level fusion).
    """
    with accelerator.autocast():
        arrays = predict(model, eval_loader, "fusion", accelerator)
    late = model.config.fusion_type == "late"
    weights, fitted = {m: list(w) for m, w in model.config.modality_weights.items()}, False
    try:
        if fit and late:
            weights = optimal_modality_weights({m: arrays[f"{m}_intensities"] for m in model.modalities},
                                               arrays["labels"])
            model.config.modality_weights, fitted = weights, True
    except ValueError as error:
        if accelerator.is_main_process:
            logger.info(f"fusion weights not fitted ({error}); keeping {model.config.modality_weights}")
    result = score_fusion(arrays, label_names, weights, fitted, late)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(output_dir)
        shown = result["validation"]["mean_pearson"]
        if late:
            logger.info("fusion weights " + "; ".join(
                f"{n} " + "/".join(f"{m[0]}{weights[m][i]:.2f}" for m in model.modalities)
                for i, n in enumerate(label_names)))
        if shown is not None:
            logger.info(f"fusion of {', '.join(model.modalities)}: validation mean Pearson {shown:.4f}")
    accelerator.wait_for_everyone()
    return result
