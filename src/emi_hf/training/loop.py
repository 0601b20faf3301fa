"""The training loop, in the style of accelerate's `examples/nlp_example.py`, for the three emi-hf models.

Read top to bottom, `train()`:

1. `Accelerator` (mixed precision, gradient accumulation, `split_batches=True`, tracker) and `set_seed`.
2. The features (`load_feature_splits`), the model (`build_model`: backbone kept from a base checkpoint, temporal
   part new), the processor copied next to where the best model will go.
3. AdamW (no weight decay on biases and norms), linear warm-up then cosine decay, `accelerator.prepare`.
4. `--resume`: `accelerator.load_state` of an epoch checkpoint (model, optimizer, scheduler, RNG, and our
   `TrainingState`: epoch, best metric, patience counter, history).
5. Per epoch: training with gradient clipping; evaluation with `gather_for_metrics`; the best model (validation mean
   Pearson) saved with `save_pretrained`; `save_state` to `checkpoints/epoch_N` (`--checkpoint-every-epoch`, the last
   2 kept); early stopping after `--patience` epochs without improvement.
6. `results.json` (format read by the Hub model card code) and the returned results dict.

Fusion: `--fusion-mode late` (default, the paper's) builds `EmiFusionModel.from_unimodal` from two trained checkpoints
and fits the per-emotion fusion weights on validation, without training; `joint` fine-tunes both models through the
fused loss (steps 3-5), then fits the weights on the best model the same way.

**Same result for 1 or N processes.** The sampler yields global batches (`--batch-size` clips, drop_last) from a
permutation drawn from (seed, epoch); `split_batches=True` gives each process its slice; the loss of a step is
computed on the whole global batch (predictions are gathered, the local slice keeps its graph, and the loss is scaled
by the number of processes to undo DDP's gradient averaging), which matters for the batch-statistic losses
(CCC, Pearson) and for clips without the modality. The learning-rate schedule and random crops do not depend on the
process count either. What remains is floating point summation order (and dropout masks, which are drawn per
process): with dropout 0 the 1- and 2-process runs agree to about 1e-6 in the metric. On CPUs, start N processes
with `torchrun --nproc_per_node N train.py --cpu ...` (gloo); `accelerate launch --cpu` starts a single process
unless an accelerate config file sets up multi-CPU training.

**Resume granularity.** Checkpoints are written at epoch boundaries and resuming restarts at the next epoch; the
RNG is reseeded from (seed, epoch, process) at each epoch start and the data order and crops are functions of (seed,
epoch), so a resumed run ends with the same weights as an uninterrupted one. A run killed mid-epoch redoes that
epoch from its start (no mid-epoch `skip_first_batches`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..configuration_emi import EmiAudioConfig, EmiVisualConfig
from ..modeling_emi import EmiAudioModel, EmiFusionModel, EmiVisualModel, fuse_intensities, regression_loss
from .arguments import TrainingArguments, build_parser
from .data import (
    MODALITY_COLUMNS,
    ClipBatchDataset,
    EpochBatchSampler,
    FeatureTable,
    load_feature_splits,
    make_loader,
    model_inputs,
)
from .evaluation import metric_block, predict, score_predictions

logger = logging.getLogger("emi_hf.training")

CHECKPOINTS_DIR = "checkpoints"
DEFAULT_MAX_FRAMES = 512
DEFAULT_MAX_AUDIO_FRAMES = 1024
RESULTS_FILE = "results.json"

# Command-line flag -> config field of the temporal part (the part training builds anew).
TEMPORAL_FLAGS = {
    "hidden_size": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "tcn_dilations": "tcn_dilations",
    "tcn_kernel_size": "tcn_kernel_size",
    "dropout": "dropout",
    "channel_dropout": "channel_dropout",
    "pooling": "pooling",
}
# Config fields that describe the inputs and the frozen backbone: taken from the base checkpoint.
BACKBONE_FIELDS = {
    "visual": ("visual_feature_dim", "au_names", "face_size", "backbone", "freeze_backbone", "backbone_chunk_size"),
    "audio": ("speech_encoder_config", "audio_feature_dim", "sampling_rate", "freeze_backbone"),
}
MODEL_CLASSES = {"visual": EmiVisualModel, "audio": EmiAudioModel}


# ----------------------------------------------------------------------------------------------------------------------
# Run state (saved in every checkpoint through accelerator.register_for_checkpointing)
# ----------------------------------------------------------------------------------------------------------------------


class TrainingState:
    """Epochs completed, best validation metric and epoch, epochs since the last improvement, per-epoch history."""

    def __init__(self):
        self.epoch = 0
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.best_validation: dict | None = None
        self.epochs_without_improvement = 0
        self.history: list[dict] = []
        self.wall_time_s = 0.0
        self.stopped_early = False

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


# ----------------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------------


def temporal_overrides(args: TrainingArguments, modality: str) -> dict:
    """Config fields of the temporal model set on the command line (others keep the config's defaults)."""
    overrides = {field: getattr(args, flag) for flag, field in TEMPORAL_FLAGS.items()
                 if getattr(args, flag) is not None}
    if modality == "audio":
        overrides.pop("channel_dropout", None)
    if "hidden_size" in overrides and "intermediate_size" not in overrides:
        overrides["intermediate_size"] = 2 * overrides["hidden_size"]
    overrides["loss_type"] = args.loss
    return overrides


def _random_speech_encoder_config(width: int) -> dict | None:
    """A wav2vec2-base-like encoder config whose frames are `width` wide (None: the default, 768)."""
    if width == 768:
        return None
    heads = next(h for h in (12, 8, 6, 4, 2, 1) if width % h == 0)
    return {"hidden_size": width, "num_attention_heads": heads, "intermediate_size": 4 * width,
            "num_conv_pos_embedding_groups": math.gcd(16, width)}


def _check_model_fits_features(config, metadata: dict, modality: str, source: str) -> None:
    if modality == "visual" and list(config.au_names) != list(metadata["au_names"]):
        raise ValueError(
            f"{source} expects the AUs {list(config.au_names)} but the features have {list(metadata['au_names'])}: "
            "use the base model saved with these features (extraction folder's base_visual) or re-extract."
        )
    if modality == "audio" and config.audio_feature_dim != metadata.get("audio_feature_dim", config.audio_feature_dim):
        raise ValueError(
            f"{source} expects {config.audio_feature_dim}-d audio frames but the features are "
            f"{metadata['audio_feature_dim']}-d: use the speech encoder the features were extracted with."
        )
    if list(config.label_names) != list(metadata["label_names"]):
        raise ValueError(f"{source} regresses {list(config.label_names)} but the features are labeled "
                         f"{list(metadata['label_names'])}.")


def build_unimodal_model(modality: str, args: TrainingArguments, metadata: dict, root: Path,
                         base_model: str | os.PathLike | None = None) -> tuple[torch.nn.Module, str]:
    """
    A new visual or audio model for training: temporal part from the size flags (random init), inputs description
    and frozen backbone from, in order, `--init-from` (everything, trained), `--base-model`, the features folder's
    `base_visual` / `base_audio`, else the features' metadata with a random backbone. Returns (model, note).
    """
    model_class = MODEL_CLASSES[modality]
    if args.init_from:
        model = model_class.from_pretrained(args.init_from)
        model.config.loss_type = args.loss
        _check_model_fits_features(model.config, metadata, modality, args.init_from)
        return model, f"{modality} model: initialised from the trained checkpoint {args.init_from} (size flags ignored)"
    base_dir = base_model or args.base_model
    if base_dir is None and metadata.get(f"{modality}_base_model"):
        candidate = root / metadata[f"{modality}_base_model"]
        base_dir = candidate if candidate.is_dir() else None
    overrides = temporal_overrides(args, modality)
    config_class = EmiVisualConfig if modality == "visual" else EmiAudioConfig
    if base_dir is not None:
        base = model_class.from_pretrained(base_dir)
        kept = {}
        for name in BACKBONE_FIELDS[modality]:
            value = getattr(base.config, name)
            kept[name] = value.to_dict() if hasattr(value, "to_dict") else value
        config = config_class(**kept, label_names=list(metadata["label_names"]), **overrides)
        _check_model_fits_features(config, metadata, modality, str(base_dir))
        model = model_class(config)
        model.backbone.load_state_dict(base.backbone.state_dict())
        note = f"{modality} backbone: weights kept from {base_dir}"
    else:
        if modality == "visual":
            config = config_class(au_names=list(metadata["au_names"]), label_names=list(metadata["label_names"]),
                                  **overrides)
        else:
            width = int(metadata.get("audio_feature_dim", 768))
            config = config_class(speech_encoder_config=_random_speech_encoder_config(width), audio_feature_dim=width,
                                  label_names=list(metadata["label_names"]), **overrides)
        model = model_class(config)
        note = (
            f"{modality} backbone: RANDOM weights (no --base-model and no base_{modality} folder next to the "
            "features): "
            "the checkpoint scores cached features but not raw video/audio until trained from a base model"
        )
    return model, note


def build_fusion_model(args: TrainingArguments, metadata: dict, root: Path) -> tuple[EmiFusionModel, str]:
    if args.visual_model and args.audio_model:
        model = EmiFusionModel.from_unimodal(args.visual_model, args.audio_model)
        note = f"fusion of {args.visual_model} and {args.audio_model}"
    elif args.fusion_mode == "late":
        raise ValueError("--fusion-mode late needs --visual-model and --audio-model (two trained checkpoints).")
    else:
        visual, visual_note = build_unimodal_model("visual", args, metadata, root)
        audio, audio_note = build_unimodal_model("audio", args, metadata, root)
        model = EmiFusionModel.from_unimodal(visual, audio)
        note = f"joint fusion from new models; {visual_note}; {audio_note}"
    _check_model_fits_features(model.config.visual_config, metadata, "visual", "the visual model")
    _check_model_fits_features(model.config.audio_config, metadata, "audio", "the audio model")
    model.config.visual_config.loss_type = args.loss
    model.config.audio_config.loss_type = args.loss
    return model, note


def build_model(args: TrainingArguments, metadata: dict, root: Path):
    if args.modality == "fusion":
        return build_fusion_model(args, metadata, root)
    return build_unimodal_model(args.modality, args, metadata, root)


def model_summary(model) -> dict:
    """Effective temporal hyperparameters (under the flag names) and parameter counts, for results.json."""
    config = getattr(model.config, "visual_config", None) or model.config
    summary = {flag: getattr(config, field) for flag, field in TEMPORAL_FLAGS.items() if hasattr(config, field)}
    summary["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    summary["total_parameters"] = sum(p.numel() for p in model.parameters())
    return summary


# ----------------------------------------------------------------------------------------------------------------------
# Loss over the global batch
# ----------------------------------------------------------------------------------------------------------------------


def global_batch_loss(accelerator, outputs, batch: dict, modality: str, loss_type: str) -> torch.Tensor:
    """
    The loss of the whole global batch (all processes' slices), differentiable in this process's slice.

    Clips without the modality (NaN intensities) or without labels are left out. Each process computes the same
    value; backpropagate `loss * num_processes` so that DDP's averaging yields the gradient of the global loss.
    """
    intensities = outputs.intensities.float()
    present = (outputs.visual_mask | outputs.audio_mask) if modality == "fusion" else outputs.modality_mask
    labels = batch["labels"].float()
    valid = present & torch.isfinite(labels).all(dim=1)
    predictions = torch.where(valid[:, None], intensities, torch.zeros_like(intensities))
    labels = torch.where(valid[:, None], labels, torch.zeros_like(labels))
    if accelerator.num_processes > 1:
        rank, size = accelerator.process_index, predictions.shape[0]
        gathered = accelerator.gather(predictions.detach())
        predictions = torch.cat([gathered[: rank * size], predictions, gathered[(rank + 1) * size :]])
        labels = accelerator.gather(labels)
        valid = accelerator.gather(valid.to(torch.uint8)).bool()
    if not bool(valid.any()):
        return predictions.sum() * 0.0  # nothing to learn from; keeps every parameter in the graph for DDP
    return regression_loss(loss_type, predictions[valid], labels[valid])


# ----------------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------------


def list_checkpoints(output_dir: Path) -> list[Path]:
    """`output_dir/checkpoints/epoch_N` folders, oldest first."""
    folder = Path(output_dir) / CHECKPOINTS_DIR
    found = [p for p in folder.glob("epoch_*") if p.is_dir() and p.name.split("_")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("_")[-1]))


def _is_complete_checkpoint(folder: Path) -> bool:
    return (folder / "training_state.json").is_file()


def resolve_resume(resume: str | None, output_dir: Path) -> Path | None:
    if not resume:
        return None
    if resume != "auto":
        path = Path(resume)
        if not _is_complete_checkpoint(path):
            raise FileNotFoundError(f"--resume {resume}: not a complete checkpoint folder (no training_state.json).")
        return path
    complete = [p for p in list_checkpoints(output_dir) if _is_complete_checkpoint(p)]
    return complete[-1] if complete else None


def save_processor(metadata: dict, root: Path, output_dir: Path, fallback_dirs=()) -> str | None:
    """
    Saves the processor the features were extracted with next to the model: `EmiProcessor.from_pretrained` +
    `save_pretrained` of the folder the metadata names (`processor_path`), else of the first fallback folder holding a
    processor config; if that class cannot load it, the folder's processor files are copied as they are.
    Returns a note, or None when there is no processor to save.
    """
    candidates = []
    if metadata.get("processor_path"):
        candidates.append(root / metadata["processor_path"])
    candidates += [Path(d) for d in fallback_dirs if d]
    source = next((d for d in candidates if (d / "processor_config.json").is_file()), None)
    if source is None:
        return None
    try:
        from ..processing_emi import EmiProcessor

        EmiProcessor.from_pretrained(source).save_pretrained(output_dir)
        return f"processor: saved from {source}"
    except Exception as error:  # the class is unavailable or cannot build this processor here: copy its files
        skip = {"config.json", "model.safetensors", "results.json", "configuration_emi.py", "modeling_emi.py"}
        for path in source.iterdir():
            if path.is_file() and path.name not in skip and not path.name.endswith((".safetensors", ".bin")):
                shutil.copy2(path, output_dir / path.name)
        return f"processor: files copied from {source} ({type(error).__name__}: {error})"


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _tracker_config(hyperparameters: dict) -> dict:
    """TensorBoard's hparams take scalars and strings only."""
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hyperparameters.items()}


def _dataset_name(args: TrainingArguments, metadata: dict) -> str:
    return args.dataset_name or metadata.get("dataset") or Path(args.features).resolve().name


# ----------------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------------


def train(args, on_epoch_end: Callable[[int, TrainingState], None] | None = None) -> dict:
    """
    Trains (or, for late fusion, fits) a model on cached features and saves the best one to `args.output_dir`
    (`save_pretrained`, safetensors, with the processor and `results.json`). Returns the results dict.

    `args`: a [`TrainingArguments`], an `argparse.Namespace` from [`build_parser`], or a dict of the same fields.
    `on_epoch_end(epochs_completed, state)` is called on every process after each epoch's checkpoint (tests use it
    to interrupt a run).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DataLoaderConfiguration, set_seed

    args = resolve_sequence_caps(TrainingArguments.from_any(args))
    output_dir = Path(args.output_dir)
    started = time.perf_counter()
    accelerator = Accelerator(
        cpu=args.cpu,
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.grad_accum,
        log_with=None if args.report_to == "none" else args.report_to,
        project_dir=str(output_dir),
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    from transformers.utils import logging as transformers_logging

    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # no "Writing model shards" bar at every best epoch
    try:
        return _train(args, accelerator, output_dir, started, on_epoch_end, set_seed)
    finally:
        if bars:
            transformers_logging.enable_progress_bar()
        accelerator.end_training()  # closes the trackers (and the process group of a distributed run)
        # Let a later train() in this process build an Accelerator with other settings (quickstart runs three).
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def _trained_caps(model_dir) -> dict:
    path = Path(model_dir) / RESULTS_FILE if model_dir else None
    if path is None or not path.is_file():
        return {}
    return json.loads(path.read_text()).get("training", {})


def resolve_sequence_caps(args: TrainingArguments) -> TrainingArguments:
    """Fills `max_frames` / `max_audio_frames` left at None: a fusion run evaluates the unimodal models with the caps
    they were trained with (their results.json), other runs get 512 / 1024. 0 means no cap."""
    import dataclasses

    visual = _trained_caps(args.visual_model) if args.modality == "fusion" else {}
    audio = _trained_caps(args.audio_model) if args.modality == "fusion" else {}
    max_frames = args.max_frames if args.max_frames is not None else visual.get("max_frames", DEFAULT_MAX_FRAMES)
    max_audio = args.max_audio_frames
    if max_audio is None:
        max_audio = audio.get("max_audio_frames", DEFAULT_MAX_AUDIO_FRAMES)
    return dataclasses.replace(args, max_frames=max_frames or None, max_audio_frames=max_audio or None)


def _log(accelerator, message: str) -> None:
    if accelerator.is_main_process:
        logger.info(message)


def _train(args, accelerator, output_dir: Path, started: float, on_epoch_end, set_seed) -> dict:
    from transformers import get_cosine_schedule_with_warmup

    set_seed(args.seed)
    num_processes = accelerator.num_processes
    if args.batch_size % num_processes:
        raise ValueError(f"--batch-size ({args.batch_size}) is the global batch size and must be a multiple of the "
                         f"number of processes ({num_processes}).")
    datasets, metadata, root = load_feature_splits(args.features)
    for split in ("train", args.eval_split):
        if split not in datasets:
            raise ValueError(f"The features at {args.features} have no {split!r} split (they have {sorted(datasets)}).")
    label_names = list(metadata["label_names"])
    modality = args.modality
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()

    model, note = build_model(args, metadata, root)
    _log(accelerator, note)
    if accelerator.is_main_process:
        processor_note = save_processor(metadata, root, output_dir, fallback_dirs=(args.visual_model, args.audio_model))
        _log(accelerator, processor_note or "processor: none named by the features (emi_features.json processor_path)")

    eval_batch = args.eval_batch_size or args.batch_size
    eval_batch = math.ceil(eval_batch / num_processes) * num_processes  # split_batches needs a multiple
    eval_table = FeatureTable(datasets[args.eval_split], MODALITY_COLUMNS[modality])
    eval_clips = ClipBatchDataset(eval_table, modality, len(label_names), args.max_frames, args.max_audio_frames)
    eval_sampler = EpochBatchSampler(len(eval_clips), eval_batch, shuffle=False, drop_last=False)
    eval_loader = make_loader(eval_clips, eval_sampler)

    if modality == "fusion" and args.fusion_mode == "late":
        eval_loader = accelerator.prepare(eval_loader)
        model.to(accelerator.device)
        fusion = fit_fusion(accelerator, model, eval_loader, label_names, output_dir)
        state = TrainingState()
        state.wall_time_s = time.perf_counter() - started
        return _finish(args, accelerator, output_dir, metadata, model, state, note, fusion=fusion)

    train_table = FeatureTable(datasets["train"], MODALITY_COLUMNS[modality])
    if len(train_table) < args.batch_size:
        raise ValueError(f"The train split has {len(train_table)} clips, fewer than --batch-size {args.batch_size}.")
    train_clips = ClipBatchDataset(train_table, modality, len(label_names), args.max_frames, args.max_audio_frames,
                                   random_crop=True, seed=args.seed)
    train_sampler = EpochBatchSampler(len(train_clips), args.batch_size, shuffle=True, drop_last=True, seed=args.seed)
    train_loader = make_loader(train_clips, train_sampler)

    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
    )
    steps_per_epoch = math.ceil(len(train_sampler) / args.grad_accum)
    total_steps = steps_per_epoch * args.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(args.warmup_ratio * total_steps), total_steps)
    model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, eval_loader, scheduler
    )
    state = TrainingState()
    accelerator.register_for_checkpointing(state)

    if args.report_to != "none":
        accelerator.init_trackers("tensorboard", config=_tracker_config(args.hyperparameters()))
    resume_from = resolve_resume(args.resume, output_dir)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        _log(accelerator, f"resumed from {resume_from}: {state.epoch} epoch(s) done, best epoch {state.best_epoch}")
    elif args.resume:
        _log(accelerator, f"--resume {args.resume}: no checkpoint under {output_dir / CHECKPOINTS_DIR}, starting anew")
    run_started = time.perf_counter()
    wall_before = state.wall_time_s
    eval_modality = modality

    for epoch in range(state.epoch, args.epochs):
        if state.stopped_early:
            break
        # Everything random in an epoch derives from (seed, epoch): resuming at an epoch boundary is exact.
        set_seed(args.seed + 1000 * (epoch + 1), device_specific=True)
        train_sampler.set_epoch(epoch)
        train_clips.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        model.train()
        epoch_started = time.perf_counter()
        loss_sum, num_batches = 0.0, 0
        for batch in train_loader:
            with accelerator.accumulate(model):
                outputs = model(**model_inputs(batch, modality))
                loss = global_batch_loss(accelerator, outputs, batch, modality, args.loss)
                accelerator.backward(loss * num_processes)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            loss_sum += float(loss.detach())
            num_batches += 1
        train_s = time.perf_counter() - epoch_started

        eval_started = time.perf_counter()
        with accelerator.autocast():
            arrays = predict(model, eval_loader, eval_modality, accelerator)
        validation = score_predictions(arrays, label_names, eval_modality)
        eval_s = time.perf_counter() - eval_started
        metric = validation["mean_pearson"]
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(num_batches, 1),
            "validation_mean_pearson": metric,
            "learning_rate": scheduler.get_last_lr()[0],
            "train_s": round(train_s, 3),
            "eval_s": round(eval_s, 3),
        }
        improved = metric is None or state.best_metric is None or metric > state.best_metric
        if improved:
            state.best_metric, state.best_epoch = metric, epoch + 1
            state.best_validation = {k: validation[k] for k in ("mean_pearson", "per_emotion", "num_clips",
                                                                  "num_missing_modality")}
            if modality == "fusion":
                state.best_validation["unimodal"] = {m: validation[m] for m in ("visual", "audio")}
            state.epochs_without_improvement = 0
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                accelerator.unwrap_model(model).save_pretrained(output_dir)
        else:
            state.epochs_without_improvement += 1
        state.history.append(_json_ready(record))
        state.epoch = epoch + 1
        state.stopped_early = bool(args.patience) and state.epochs_without_improvement >= args.patience
        state.wall_time_s = wall_before + (time.perf_counter() - run_started)
        if args.report_to != "none":
            logged = {"train/loss": record["train_loss"], "train/learning_rate": record["learning_rate"]}
            if metric is not None:
                logged["validation/mean_pearson"] = metric
                logged.update({f"validation/{name}": value for name, value in validation["per_emotion"].items()})
            accelerator.log(logged, step=epoch + 1)
        shown = "n/a" if metric is None else f"{metric:.4f}"
        _log(accelerator, f"epoch {epoch + 1}/{args.epochs}: train loss {record['train_loss']:.4f}, "
                          f"{args.eval_split} mean Pearson {shown}{' (best)' if improved else ''}, "
                          f"train {train_s:.1f} s, eval {eval_s:.1f} s")
        if args.checkpoint_every_epoch:
            save_checkpoint(accelerator, output_dir, state, args.keep_checkpoints)
        if on_epoch_end is not None:
            on_epoch_end(state.epoch, state)
        if state.stopped_early:
            _log(accelerator, f"early stop: no better {args.eval_split} mean Pearson for {args.patience} epochs "
                              f"(best {state.best_metric:.4f} at epoch {state.best_epoch})")

    accelerator.wait_for_everyone()
    fusion = None
    unwrapped = accelerator.unwrap_model(model)
    if modality == "fusion":  # joint: fit the fusion weights on the best model, as late fusion does
        best = EmiFusionModel.from_pretrained(output_dir).to(accelerator.device)
        fusion = fit_fusion(accelerator, best, eval_loader, label_names, output_dir)
        unwrapped = best
    state.wall_time_s = wall_before + (time.perf_counter() - run_started)
    return _finish(args, accelerator, output_dir, metadata, unwrapped, state, note, fusion=fusion)


def save_checkpoint(accelerator, output_dir: Path, state: TrainingState, keep: int) -> Path:
    """`save_state` to `checkpoints/epoch_N` (+ a `training_state.json` marker written last); prunes old ones."""
    folder = Path(output_dir) / CHECKPOINTS_DIR / f"epoch_{state.epoch}"
    accelerator.save_state(str(folder))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (folder / "training_state.json").write_text(json.dumps(_json_ready(state.state_dict()), indent=2))
        for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return folder


@torch.no_grad()
def fit_fusion(accelerator, model: EmiFusionModel, eval_loader, label_names, output_dir: Path) -> dict:
    """
    Predicts the validation split with both unimodal models, fits the per-emotion fusion weights
    (`EmiFusionModel.fit_fusion_weights`, clips with both modalities), scores the fused prediction with those weights
    and with equal weights, and saves the model (main process). Returns the fusion part of the results.
    """
    with accelerator.autocast():
        arrays = predict(model, eval_loader, "fusion", accelerator)
    visual, audio = arrays["visual_intensities"], arrays["audio_intensities"]
    try:
        weights = model.fit_fusion_weights(visual, audio, arrays["labels"])
        fitted = True
    except ValueError as error:  # fewer than 3 clips with both modalities: keep the configured weights
        _log(accelerator, f"fusion weights not fitted ({error}); keeping {model.config.fusion_weights}")
        weights, fitted = list(model.config.fusion_weights), False

    def fused(with_weights):
        return fuse_intensities(
            torch.from_numpy(visual), torch.from_numpy(audio), torch.from_numpy(arrays["visual_mask"]),
            torch.from_numpy(arrays["audio_mask"]), torch.tensor(with_weights, dtype=torch.float32),
        ).numpy()

    def crossfitted():
        # Weights fitted on one half of the clips score the other half (both ways): a fused score that does not
        # reuse the labels its weights were fitted on, unlike "validation" (the paper's protocol).
        rows = np.arange(len(visual))
        predictions = np.full_like(visual, np.nan)
        folds = (rows % 2 == 0, rows % 2 == 1)
        for fit, apply in (folds, folds[::-1]):
            half_weights = EmiFusionModel.optimal_fusion_weights(visual[fit], audio[fit], arrays["labels"][fit])
            predictions[apply] = fused(half_weights)[apply]
        return predictions

    present = arrays["visual_mask"] | arrays["audio_mask"]
    try:
        crossfit = metric_block(crossfitted(), present, arrays["labels"], label_names)
    except ValueError:  # a half with fewer than 3 clips holding both modalities
        crossfit = None
    result = {
        "validation": metric_block(fused(weights), present, arrays["labels"], label_names),
        "validation_equal_weights": metric_block(fused([0.5] * len(label_names)), present, arrays["labels"],
                                                 label_names),
        "validation_crossfit": crossfit,
        "unimodal": {
            "visual": metric_block(visual, arrays["visual_mask"], arrays["labels"], label_names),
            "audio": metric_block(audio, arrays["audio_mask"], arrays["labels"], label_names),
        },
        "fusion_weights": dict(zip(label_names, weights)),
        "fusion_weights_fitted": fitted,
    }
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(output_dir)
    accelerator.wait_for_everyone()
    shown = result["validation"]["mean_pearson"]
    _log(accelerator, "fusion weights (visual share) " + ", ".join(f"{n} {w:.2f}" for n, w in zip(label_names, weights))
         + (f"; validation mean Pearson {shown:.4f}" if shown is not None else ""))
    return result


def _finish(args, accelerator, output_dir: Path, metadata: dict, model, state: TrainingState, note: str,
            fusion: dict | None = None) -> dict:
    """Writes results.json (main process) and returns the results on every process."""
    hyperparameters = args.hyperparameters()
    if args.modality == "fusion" and args.fusion_mode == "late":  # nothing was trained: keep what applies
        hyperparameters = {k: hyperparameters[k] for k in ("modality", "fusion_mode", "visual_model", "audio_model",
                                                           "eval_split", "seed", "max_frames", "max_audio_frames")}
    training = {
        **hyperparameters,
        **model_summary(model),
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "stopped_early": state.stopped_early,
        "num_processes": accelerator.num_processes,
        "wall_time_s": round(state.wall_time_s, 2),
        "model_source": note,
    }
    results = {
        "modality": args.modality,
        "dataset": _dataset_name(args, metadata),
        "validation": state.best_validation,
        "training": training,
        "label_names": list(metadata["label_names"]),
        "eval_split": args.eval_split,
        "history": state.history,
    }
    if fusion is not None:
        results["validation"] = fusion["validation"]
        results["fusion_mode"] = args.fusion_mode
        if state.best_validation is not None:  # joint: what training saw, with the weights before fitting
            results["validation_before_fitting_weights"] = state.best_validation
        results.update({k: v for k, v in fusion.items() if k != "validation"})
    results = _json_ready(results)
    if accelerator.is_main_process:
        (output_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2))
        best = results["validation"]["mean_pearson"] if results["validation"] else None
        logger.info(f"best model -> {output_dir} ({args.eval_split} mean Pearson "
                    f"{'n/a' if best is None else f'{best:.4f}'}); results in {output_dir / RESULTS_FILE}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point of `train.py` and `emi-hf train`."""
    args = build_parser().parse_args(argv)
    if not logger.handlers:  # our lines only (a root basicConfig would also show every library's INFO logs)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[emi-hf train] %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO)
    train(args)
    return 0
