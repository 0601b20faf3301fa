"""Fitting a fusion model's per-emotion weights on validation predictions, and scoring the fused prediction.

The fusion model predicts `w * visual + (1 - w) * audio` per emotion (`fuse_intensities`). `fit_fusion` predicts the
validation split with both unimodal models, chooses each emotion's visual share `w` on a grid
(`optimal_fusion_weights`, Pearson's r from `emi_hf.metrics`), stores the weights in the model's config and reports
the fused score with the fitted weights, with equal weights, and cross-fitted (weights fitted on one half of the
clips score the other half, so that the score does not reuse the labels its weights were fitted on).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..metrics import pearson_per_label
from ..modeling_emi import EmiFusionModel, fuse_intensities
from .evaluation import metric_block, predict

logger = logging.getLogger("emi_hf.training")

FUSION_GRID_SIZE = 101
TIE_TOLERANCE = 1e-9  # Pearson r values closer than this count as equal


def optimal_fusion_weights(visual_predictions, audio_predictions, labels,
                           grid_size: int = FUSION_GRID_SIZE) -> list[float]:
    """
    Per-emotion visual weight in [0, 1] that maximises Pearson's r of the fused prediction on held-out data
    (a grid search; `grid_size` points). Inputs `[clips, num_labels]` (tensors or arrays), clips with NaN in
    either modality or in the labels are left out.

    Raises:
        ValueError: fewer than 3 clips with both modalities and labels.
    """
    visual = torch.as_tensor(visual_predictions, dtype=torch.float64)
    audio = torch.as_tensor(audio_predictions, dtype=torch.float64)
    labels = torch.as_tensor(labels, dtype=torch.float64)
    keep = ~(visual.isnan().any(1) | audio.isnan().any(1) | labels.isnan().any(1))
    visual, audio, labels = visual[keep], audio[keep], labels[keep]
    if visual.shape[0] < 3:
        raise ValueError("At least 3 clips with both modalities are needed to fit fusion weights.")
    grid = torch.linspace(0, 1, grid_size, dtype=torch.float64)
    names = [str(i) for i in range(labels.shape[1])]
    r = np.stack([pearson_per_label(w * visual + (1 - w) * audio, labels, names) for w in grid])  # [G, L]
    # Ties (e.g. one modality constant for an emotion: every w > 0 gives the same r up to rounding) go to the weight
    # nearest the paper's plain average, 0.5, instead of to whichever rounding error is largest.
    best = r >= r.max(0, keepdims=True) - TIE_TOLERANCE
    distance = np.where(best, np.abs(grid.numpy()[:, None] - 0.5), np.inf)
    return [float(grid[i]) for i in distance.argmin(0)]


def fused(arrays: dict, weights) -> np.ndarray:
    """The fused `[N, L]` prediction of `predict(..., "fusion")` arrays with per-emotion visual `weights`."""
    return fuse_intensities(
        torch.from_numpy(arrays["visual_intensities"]), torch.from_numpy(arrays["audio_intensities"]),
        torch.from_numpy(arrays["visual_mask"]), torch.from_numpy(arrays["audio_mask"]),
        torch.tensor(weights, dtype=torch.float32),
    ).numpy()


def crossfitted(arrays: dict) -> np.ndarray:
    """Fused predictions of the even rows with weights fitted on the odd rows, and the other way round."""
    visual, audio, labels = arrays["visual_intensities"], arrays["audio_intensities"], arrays["labels"]
    rows = np.arange(len(visual))
    predictions = np.full_like(visual, np.nan)
    folds = (rows % 2 == 0, rows % 2 == 1)
    for fit, apply in (folds, folds[::-1]):
        half_weights = optimal_fusion_weights(visual[fit], audio[fit], labels[fit])
        predictions[apply] = fused(arrays, half_weights)[apply]
    return predictions


def score_fusion(arrays: dict, label_names, weights: list[float], fitted: bool) -> dict:
    """The fusion part of a run's results: fused scores (fitted, equal, cross-fitted weights), unimodal scores, the
    weights. `validation_crossfit` is None when a half has fewer than 3 clips holding both modalities."""
    labels = arrays["labels"]
    present = arrays["visual_mask"] | arrays["audio_mask"]
    try:
        crossfit = metric_block(crossfitted(arrays), present, labels, label_names)
    except ValueError:
        crossfit = None
    return {
        "validation": metric_block(fused(arrays, weights), present, labels, label_names),
        "validation_equal_weights": metric_block(fused(arrays, [0.5] * len(label_names)), present, labels,
                                                 label_names),
        "validation_crossfit": crossfit,
        "unimodal": {
            "visual": metric_block(arrays["visual_intensities"], arrays["visual_mask"], labels, label_names),
            "audio": metric_block(arrays["audio_intensities"], arrays["audio_mask"], labels, label_names),
        },
        "fusion_weights": dict(zip(label_names, weights)),
        "fusion_weights_fitted": fitted,
    }


@torch.no_grad()
def fit_fusion(accelerator, model: EmiFusionModel, eval_loader, label_names, output_dir: Path,
               fit: bool = True) -> dict:
    """
    Predicts the split of `eval_loader` with both unimodal models of `model`, fits `model.config.fusion_weights`
    (clips with both modalities; with fewer than 3 such clips the configured weights are kept), scores the fusion
    (`score_fusion`) and saves the model to `output_dir` (main process). Returns the fusion part of the results.
    `fit=False`: the configured weights are kept and only scored (`--fusion-weights-from`).
    """
    with accelerator.autocast():
        arrays = predict(model, eval_loader, "fusion", accelerator)
    weights, fitted = list(model.config.fusion_weights), False
    try:
        if fit:
            weights = optimal_fusion_weights(arrays["visual_intensities"], arrays["audio_intensities"],
                                             arrays["labels"])
            model.config.fusion_weights, fitted = weights, True
    except ValueError as error:
        if accelerator.is_main_process:
            logger.info(f"fusion weights not fitted ({error}); keeping {model.config.fusion_weights}")
    result = score_fusion(arrays, label_names, weights, fitted)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(output_dir)
        shown = result["validation"]["mean_pearson"]
        logger.info("fusion weights (visual share) " + ", ".join(f"{n} {w:.2f}" for n, w in zip(label_names, weights))
                    + (f"; validation mean Pearson {shown:.4f}" if shown is not None else ""))
    accelerator.wait_for_everyone()
    return result
