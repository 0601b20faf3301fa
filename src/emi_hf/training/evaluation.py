"""Predictions over a split, the mean-Pearson tables, `evaluate_model` (for `emi-hf evaluate`) and scatter plots.

Clips a model cannot score (no face in any frame for the visual model, no audio for the audio model; NaN
intensities) are left out of that model's metric and counted as `num_missing_modality`. A fusion model scores a clip
when either modality is present (it falls back to the one there). Unlabeled clips (NaN labels) are left out too.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from ..models.configuration_emi import FUSION_MODALITIES
from ..models.modeling_fusion_emi import output_modalities
from ..data.store import load_feature_splits
from ..devices import default_device
from ..errors import EmiUsageError, loading
from ..metrics import BOOTSTRAP_RESAMPLES, bootstrap_mean_pearson, mean_pearson
from ..results import trained_settings
from .data import ClipBatchDataset, EpochBatchSampler, FeatureTable, make_loader, model_inputs, split_columns

MODEL_TYPE_TO_MODALITY = {"emi_visual": "visual", "emi_audio": "audio", "emi_text": "text", "emi_fusion": "fusion"}


def model_modality(config) -> str | None:
    """"visual", "audio", "text" or "fusion" for an emi-hf config (an ensemble: its members'); None for others."""
    return MODEL_TYPE_TO_MODALITY.get(getattr(config, "member_model_type", None) or config.model_type)


def present_mask(outputs) -> torch.Tensor:
    """bool `[batch]`: the clips a model scored (a fusion model: those with any of its modalities)."""
    masks = [getattr(outputs, f"{m}_mask") for m in output_modalities(outputs)]
    return torch.stack(masks).any(dim=0) if masks else outputs.modality_mask


def fused_modalities(arrays: dict) -> list[str]:
    """The modalities whose predictions `predict(..., "fusion")` arrays hold."""
    return [m for m in FUSION_MODALITIES if f"{m}_intensities" in arrays]


@torch.no_grad()
def predict(model, loader, modality: str, accelerator=None) -> dict[str, np.ndarray]:
    """
    Runs `model` over `loader` and returns NumPy arrays in the split's row order: `index` `[N]`, `labels` `[N, L]`,
    `intensities` `[N, L]` (NaN where the clip could not be scored), `mask` `[N]` (clip scored), and for fusion
    `<m>_intensities` and `<m>_mask` for each modality `m` of the model. With an `accelerator` (and a prepared
    loader) each process runs its share and `gather_for_metrics` collects everything, without the duplicates that
    even batches add.
    """
    model.eval()
    chunks = defaultdict(list)
    for batch in loader:
        outputs = model(**model_inputs(batch, modality))
        record = {"index": batch["index"], "labels": batch["labels"].float(),
                  "intensities": outputs.intensities.float()}
        if modality == "fusion":
            for name in output_modalities(outputs):
                record[f"{name}_intensities"] = getattr(outputs, f"{name}_intensities").float()
                record[f"{name}_mask"] = getattr(outputs, f"{name}_mask").to(torch.uint8)
        record["mask"] = present_mask(outputs).to(torch.uint8)  # uint8: gloo gathers no bool tensors
        if accelerator is not None:
            record = accelerator.gather_for_metrics(record)
        for key, value in record.items():
            chunks[key].append(value.detach().cpu())
    arrays = {key: torch.cat(values).numpy() for key, values in chunks.items()}
    if not arrays:
        return {}
    _, first = np.unique(arrays["index"], return_index=True)  # sorted by row, one entry per row
    arrays = {key: value[first] for key, value in arrays.items()}
    for key in ("mask", *(f"{m}_mask" for m in FUSION_MODALITIES)):
        if key in arrays:
            arrays[key] = arrays[key].astype(bool)
    return arrays


def metric_block(predictions: np.ndarray, mask: np.ndarray, labels: np.ndarray, label_names) -> dict:
    """`{"mean_pearson", "per_emotion", "num_clips", "num_missing_modality"}` over labeled clips the model scored.

    `mean_pearson` is None (and `per_emotion` empty) when fewer than 2 clips qualify (e.g. an unlabeled split)."""
    labeled = np.isfinite(labels).all(axis=1)
    scored = mask & np.isfinite(predictions).all(axis=1)
    use = labeled & scored
    block = {"mean_pearson": None, "per_emotion": {}}
    if use.sum() >= 2:
        block = mean_pearson(predictions[use], labels[use], label_names=list(label_names))
    block["num_clips"] = int(use.sum())
    block["num_missing_modality"] = int((labeled & ~scored).sum())
    return block


def score_predictions(arrays: dict, label_names, modality: str) -> dict:
    """The metric block of the model's main prediction; for fusion also one block per modality (`visual`, `audio`,
    `text`, those the model has) and `fusion`."""
    block = metric_block(arrays["intensities"], arrays["mask"], arrays["labels"], label_names)
    if modality == "fusion":
        unimodal = {m: metric_block(arrays[f"{m}_intensities"], arrays[f"{m}_mask"], arrays["labels"], label_names)
                    for m in fused_modalities(arrays)}
        block = {**block, **unimodal, "fusion": dict(block)}
    return block


def bootstrap_block(arrays: dict, label_names, num_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict | None:
    """`metrics.bootstrap_mean_pearson` over the clips `metric_block` scores (labeled, scored by the model); None when
    fewer than 2 clips qualify."""
    use = arrays["mask"] & np.isfinite(arrays["labels"]).all(axis=1) & np.isfinite(arrays["intensities"]).all(axis=1)
    if use.sum() < 2:
        return None
    return bootstrap_mean_pearson(arrays["intensities"][use], arrays["labels"][use], list(label_names),
                                  num_resamples=num_resamples, seed=seed)


def predict_split(model, dataset, modality: str, batch_size: int = 32,
                  device: str | None = None) -> dict[str, np.ndarray]:
    """`predict`'s arrays for one split (a `datasets.Dataset` of features), in one process: whole clips through the
    model's forward (which scores a clip longer than its `temporal_window` in windows, as `emi-hf predict` does);
    `device`: default `default_device()`."""
    device = default_device(device)
    model.to(device)
    loader = build_loader(dataset, modality, len(model.config.id2label), batch_size, None, None)
    if device != "cpu":
        loader = _DeviceLoader(loader, device)
    return predict(model, loader, modality)


def build_loader(dataset, modality: str, num_labels: int, batch_size: int, max_frames, max_audio_frames,
                 shuffle_seed: int | None = None, clip_weights=None) -> torch.utils.data.DataLoader:
    """
    Batches of a split's clips for the `modality` model. Evaluation (no `shuffle_seed`): the split's order, whole
    clips (pass no caps), a last partial batch. Training: an order and random windows drawn from `(shuffle_seed, epoch)`, full
    batches only. `loader.dataset` is the `ClipBatchDataset`, `loader.batch_sampler` the `EpochBatchSampler`.
    `clip_weights`: per-clip loss weights `[N]`, returned in each batch as `weights`.
    """
    table = FeatureTable(dataset, split_columns(dataset, modality))
    training = shuffle_seed is not None
    clips = ClipBatchDataset(table, modality, num_labels, max_frames, max_audio_frames, random_crop=training,
                             seed=shuffle_seed or 0, clip_weights=clip_weights)
    sampler = EpochBatchSampler(len(clips), batch_size, shuffle=training, drop_last=training, seed=shuffle_seed or 0)
    return make_loader(clips, sampler)


def evaluate_model(
    model_dir: str | os.PathLike,
    features_dir: str | os.PathLike,
    split: str = "validation",
    batch_size: int = 32,
    device: str | None = None,
    num_resamples: int = BOOTSTRAP_RESAMPLES,
    bootstrap_seed: int = 0,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """
    Evaluates a saved model (any of the three types) on a split of cached features, in one process.

    Returns `(results, predictions [N, L], labels [N, L])` in the split's row order (NaN rows: clips the model could
    not score, or unlabeled). `results` holds `split`, `modality`, `label_names`, `num_clips_total` and the metric
    block (`mean_pearson`, `per_emotion`, `num_clips`, `num_missing_modality`); for a fusion model also `visual`,
    `audio` and `fusion` blocks and the `fusion_weights`. Whole clips, through the same forward as `emi-hf predict`
    (a clip longer than the model's `temporal_window` is scored in windows). `device`: default `default_device()`.
    A fusion model's results also hold `modality_weights` ({modality: {emotion: weight}}).
    `confidence_intervals`: the percentile bootstrap of the metric (`bootstrap_block`, `num_resamples` resamples
    of the clips drawn from `bootstrap_seed`; 0 resamples: none), None when fewer than 2 clips are scored.
    """
    from transformers import AutoModel

    import emi_hf  # noqa: F401  (registers the Auto classes)

    model_dir = Path(model_dir)
    with loading(model_dir):
        model = AutoModel.from_pretrained(model_dir)
    modality = model_modality(model.config)
    if modality is None:
        raise EmiUsageError(f"{model_dir} holds a {model.config.model_type!r} model, not an emi-hf one.")
    datasets, metadata, _ = load_feature_splits(features_dir)
    if split not in datasets:
        raise EmiUsageError(f"{features_dir} has no split {split!r}; it has {sorted(datasets)}.")
    label_names = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    arrays = predict_split(model, datasets[split], modality, batch_size, device)
    results = {
        "split": split,
        "modality": modality,
        "model": str(model_dir),
        "features": str(features_dir),
        # True when the model was trained on this split (--train-splits): its scores are then not held-out ones.
        "split_trained_on": split in trained_settings(model_dir).get("train_splits", ["train"]),
        "label_names": label_names,
        "num_clips_total": len(datasets[split]),
        **score_predictions(arrays, label_names, modality),
        "confidence_intervals": bootstrap_block(arrays, label_names, num_resamples, bootstrap_seed)
        if num_resamples else None,
    }
    if modality == "fusion" and getattr(model.config, "fusion_type", None) == "late":
        results["modality_weights"] = {m: dict(zip(label_names, w)) for m, w in model.config.modality_weights.items()}
        if model.config.fusion_weights is not None:  # visual + audio: the visual share, as earlier versions wrote
            results["fusion_weights"] = dict(zip(label_names, model.config.fusion_weights))
    return results, arrays["intensities"], arrays["labels"]


class _DeviceLoader:
    def __init__(self, loader, device):
        self.loader, self.device = loader, device

    def __iter__(self):
        for batch in self.loader:
            yield {key: value.to(self.device) for key, value in batch.items()}

    def __len__(self):
        return len(self.loader)


def plot_scatter(predictions, labels, label_names=None, path: str | os.PathLike = "scatter.png",
                 title: str | None = None) -> Path:
    """
    Writes a PNG of predicted vs annotated intensity, one panel per emotion with its Pearson r in the title.
    Rows with NaN (unscored or unlabeled clips) are left out. Uses matplotlib's Agg canvas (no display, no pyplot
    state). Returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..models.configuration_emi import EMOTION_NAMES
    from ..metrics import pearson_per_label

    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    label_names = list(label_names or EMOTION_NAMES)[: predictions.shape[1]]
    keep = np.isfinite(predictions).all(axis=1) & np.isfinite(labels).all(axis=1)
    predictions, labels = predictions[keep], labels[keep]
    r = pearson_per_label(predictions, labels, label_names) if len(labels) >= 2 else [float("nan")] * len(label_names)
    columns = min(3, len(label_names))
    rows = -(-len(label_names) // columns)
    figure = Figure(figsize=(4 * columns, 3.8 * rows), dpi=100)
    FigureCanvasAgg(figure)
    for i, name in enumerate(label_names):
        axis = figure.add_subplot(rows, columns, i + 1)
        axis.scatter(labels[:, i], predictions[:, i], s=8, alpha=0.5, edgecolors="none")
        axis.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
        axis.set_xlim(-0.02, 1.02)
        axis.set_ylim(-0.02, 1.02)
        axis.set_title(f"{name}  (r = {r[i]:.3f})")
        axis.set_xlabel("annotated intensity")
        axis.set_ylabel("predicted intensity")
    figure.suptitle(title or f"predicted vs annotated, {len(labels)} clips, mean r = {np.nanmean(r):.3f}")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
