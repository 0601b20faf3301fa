"""The training loop, in the shape of accelerate's `examples/complete_nlp_example.py`, for the emi-hf models: the one
loop, for cached features and for raw clips (end-to-end fine-tuning, `training.end_to_end`) alike.

Read top to bottom, `train()`:

1. `Accelerator` (mixed precision, gradient accumulation, `split_batches=True`, tracker) and `set_seed`.
2. `prepare_run`: the features (`load_feature_splits`), the model (`build_model`: backbone kept from a base
   checkpoint, temporal part new), the processor copied next to where the best model will go. With `raw_data`, the
   splits are the raw clips of that folder instead (`end_to_end.setup_end_to_end`: the backbone's last blocks made
   trainable); everything below is the same for both.
3. `train_model`: the loaders, AdamW (no weight decay on biases and norms; a trained backbone at
   `end_to_end.BACKBONE_LR_SCALE` x lr) with linear warm-up then cosine decay,
   `accelerator.prepare`; `resume`: `accelerator.load_state` of an epoch checkpoint (model, optimizer, scheduler,
   RNG, and our `TrainingState`: epoch, best metric, patience counter, history).
4. Per epoch: `train_one_epoch` (the model's own loss, `training_loss`) with gradient clipping; `evaluate` with
   `gather_for_metrics` (every process's share of the evaluation split); `keep_if_best` keeps the best model
   (validation mean Pearson; `best_model`: frozen weights once); `save_checkpoint`: `checkpoints/epoch_N`
   (`checkpoint_every_epoch`, the last 2 kept); early stopping after `patience` epochs without improvement.
5. `write_run_results`: `results.json` (`emi_hf.results`) and the returned results dict.

`--train-splits` (the splits trained on, `training.selection`): when the evaluation split is one of them, nothing
stops early and the last epoch is kept. `--seeds N`: N such runs and their ensemble (`training.ensemble`).
`--annotator-weights`: each training clip's loss weighted by its inferred annotator count (`training.weighting`).

Fusion: `fusion_mode="late"` (default, the paper's) trains nothing: `fit_late_fusion` builds
`EmiFusionModel.from_unimodal` from two trained checkpoints and fits the per-emotion fusion weights on validation
(`training.fusion.fit_fusion`); `joint` fine-tunes both models through the fused loss (steps 3-4), then fits the
weights on the best model the same way.

**Several runs in one process** (the quickstart trains three): each `train()` builds its own `Accelerator` and ends
it; accelerate keeps the process-wide state (device, process group, mixed precision) between them, so the runs of
one process must agree on `cpu` and `mixed_precision` (accelerate says so if they do not).

**Same result for 1 or N processes.** The sampler yields global batches (`--batch-size` clips, drop_last) from a
permutation drawn from (seed, epoch); `split_batches=True` gives each process its slice; the loss of a step is
computed on the whole global batch (predictions are gathered, the local slice keeps its graph, and the loss is scaled
by the number of processes to undo DDP's gradient averaging), which matters for the batch-statistic losses
(CCC, Pearson) and for clips without the modality. The learning-rate schedule and random crops do not depend on the
process count either. What remains is floating point summation order (and dropout masks, which are drawn per
process): with dropout 0 the 1- and 2-process runs agree to rounding (what is tested, within 1e-5: the docstring
of `EmiTrainingArguments`). The loss is the model's `labels` loss (`temporal_emi.clip_loss`) computed inside
`temporal_emi.loss_reduction(gather=accelerator.gather)`, which makes it the loss of the global batch: one loss for
one process and for N, for training and for `model(**inputs, labels=labels).loss`. On CPUs, start N processes
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
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, set_seed
from transformers import get_cosine_schedule_with_warmup

from ..data.store import load_feature_splits
from ..errors import EmiNotFoundError, EmiUsageError
from ..media.logs import progress_bars_hidden
from ..models import bundle_files
from ..models.configuration_emi import FUSION_MODALITIES
from ..models.modeling_fusion_emi import EmiFusionModel
from ..results import RESULTS_FILE, TRAINING_LABEL_MEAN, json_ready, write_results
from ..models.temporal_emi import loss_reduction
from .arguments import EmiTrainingArguments, parse_args, resolve_sequence_caps
from .best_model import BestModelWriter
from .data import check_batch_size, label_mean, model_inputs
from .end_to_end import (BACKBONE_LR_SCALE, RawClipSource, check_end_to_end_args, end_to_end_record,
                         setup_end_to_end)
from .ensemble import train_seed_ensemble
from .evaluation import build_loader, predict, score_predictions
from .fusion import fit_fusion
from .models import build_model, model_summary, set_trained_windows
from .selection import (held_out, kept_fusion_weights, place_scores, selection_record, training_splits,
                        with_selection_clips)
from .weighting import annotator_weights

logger = logging.getLogger("emi_hf.training")

CHECKPOINTS_DIR = "checkpoints"
TRAINING_STATE_FILE = "training_state.json"


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


@dataclass
class Run:
    """What every run holds before its first step: arguments, accelerator, the splits (cached features, or raw
    clips with `raw_clips`), the model and its origin."""

    args: EmiTrainingArguments
    accelerator: Accelerator
    datasets: dict  # split -> `datasets.Dataset` of features, or list of `ClipRecord`s (raw clips)
    metadata: dict
    root: Path
    model: torch.nn.Module
    note: str  # where the model's weights come from (results.json `model_source`)
    started: float  # time.perf_counter() at the start of train()
    weighting: dict | None = None  # --annotator-weights: what was inferred (results.json)
    raw_clips: RawClipSource | None = None  # --raw-data: the loaders of raw clips (end to end)
    best_model: BestModelWriter | None = None  # train_model's: writes the best model (frozen weights once)

    @property
    def output_dir(self) -> Path:
        return Path(self.args.output_dir)

    @property
    def label_names(self) -> list[str]:
        return list(self.metadata["label_names"])

    def loader(self, split: str, batch_size: int, training: bool = False):
        """A (not yet prepared) loader of `split`: shuffled random windows for training, else whole clips (the model
        windows long ones); of cached features or of raw clips, batches of the same form (model inputs, `labels`,
        `index`, `weights`)."""
        args, weights, data = self.args, None, self.datasets[split]
        if training and args.annotator_weights:
            labels = self.raw_clips.labels(data) if self.raw_clips else np.asarray(data["labels"], dtype=np.float64)
            weights, self.weighting = annotator_weights(labels)
        if self.raw_clips is not None:
            return self.raw_clips.loader(data, batch_size, training, clip_weights=weights)
        caps = (args.max_frames, args.max_audio_frames) if training else (None, None)
        return build_loader(data, args.modality, len(self.label_names), batch_size, *caps,
                            shuffle_seed=args.seed if training else None, clip_weights=weights)


# ----------------------------------------------------------------------------------------------------------------------
# Loss: the model's, over the global batch
# ----------------------------------------------------------------------------------------------------------------------


def training_loss(accelerator, model, batch: dict, modality: str) -> torch.Tensor:
    """
    The loss of a training step: the model's own `labels` loss (`model(**inputs, labels=...).loss`, i.e.
    `temporal_emi.clip_loss`; feature-level fusion adds its models' own losses), reduced over the whole global batch
    (all processes' slices) and weighted per clip by the batch's `weights` (`--annotator-weights`) through
    `temporal_emi.loss_reduction`. Each process gets the same value, differentiable in its own slice: backpropagate
    `loss * num_processes` so that DDP's averaging yields the gradient of the global loss. With one process and no
    weights it is exactly `model(**inputs, labels=batch["labels"]).loss`.
    """
    gather = accelerator.gather if accelerator.num_processes > 1 else None
    with loss_reduction(weights=batch.get("weights"), gather=gather, process_index=accelerator.process_index):
        return model(**model_inputs(batch, modality), labels=batch["labels"]).loss


# ----------------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------------


def list_checkpoints(output_dir: Path) -> list[Path]:
    """`output_dir/checkpoints/epoch_N` folders, oldest first."""
    folder = Path(output_dir) / CHECKPOINTS_DIR
    found = [p for p in folder.glob("epoch_*") if p.is_dir() and p.name.split("_")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("_")[-1]))


def _is_complete_checkpoint(folder: Path) -> bool:
    return (folder / TRAINING_STATE_FILE).is_file()


def resolve_resume(resume: str | None, output_dir: Path) -> Path | None:
    if not resume:
        return None
    if resume != "auto":
        path = Path(resume)
        if not _is_complete_checkpoint(path):
            raise EmiNotFoundError(f"--resume {resume}: not a complete checkpoint folder (no training_state.json).")
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
        from ..models.processing_emi import EmiProcessor

        EmiProcessor.from_pretrained(source).save_pretrained(output_dir)
        return f"processor: saved from {source}"
    except Exception as error:  # the class is unavailable or cannot build this processor here: copy its files
        skip = {"config.json", "model.safetensors", RESULTS_FILE, *bundle_files()}
        for path in source.iterdir():
            if path.is_file() and path.name not in skip and not path.name.endswith((".safetensors", ".bin")):
                shutil.copy2(path, output_dir / path.name)
        return f"processor: files copied from {source} ({type(error).__name__}: {error})"


def save_checkpoint(accelerator, output_dir: Path, state: TrainingState, keep: int) -> Path:
    """`save_state` to `checkpoints/epoch_N` (+ a `training_state.json` marker written last); prunes old ones."""
    folder = Path(output_dir) / CHECKPOINTS_DIR / f"epoch_{state.epoch}"
    accelerator.save_state(str(folder))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (folder / TRAINING_STATE_FILE).write_text(json.dumps(json_ready(state.state_dict()), indent=2))
        for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return folder


def _log(accelerator, message: str) -> None:
    if accelerator.is_main_process:
        logger.info(message)


# ----------------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------------


def train(args, on_epoch_end: Callable[[int, TrainingState], None] | None = None, datasets: dict | None = None) -> dict:
    """
    Trains (or, for late fusion, fits) a model on cached features and saves the best one to `args.output_dir`
    (`save_pretrained`, safetensors, with the processor and `results.json`). Returns the results dict.

    `args`: a [`EmiTrainingArguments`], an `argparse.Namespace` from [`build_parser`], or a dict of the same fields.
    `on_epoch_end(epochs_completed, state)` is called on every process after each epoch's checkpoint (tests use it
    to interrupt a run). Callable several times in one process (see the module docstring). `datasets`: splits to use
    instead of those of `args.features` (k-fold CV passes each fold's; the metadata still comes from the features).
    `args.seeds` > 1: the members and their ensemble (`training.ensemble`). `args.raw_data`: the same loop on the raw
    clips of that folder, the backbone's last blocks fine-tuned (`training.end_to_end`).
    """
    args = resolve_sequence_caps(EmiTrainingArguments.from_any(args))
    check_end_to_end_args(args, datasets)
    if args.seeds > 1:
        loaded, metadata, _ = load_feature_splits(args.features)
        datasets = loaded if datasets is None else datasets
        return train_seed_ensemble(args, lambda member: train(member, on_epoch_end, datasets),
                                   training_splits(datasets, args, args.features), metadata)
    started = time.perf_counter()
    accelerator = Accelerator(
        cpu=args.cpu,
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.grad_accum,
        log_with=None if args.report_to == "none" else args.report_to,
        project_dir=str(args.output_dir),
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        # visual end to end: a process whose slice has no face runs no backbone block (DDP must expect that)
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=bool(args.raw_data)
                                                       and args.modality == "visual")],
    )
    try:
        with progress_bars_hidden():  # no "Writing model shards" bar at every best epoch; the settings as found after
            run = prepare_run(args, accelerator, started, datasets)
            if args.modality == "fusion" and args.fusion_mode == "late":
                return fit_late_fusion(run)
            return train_model(run, on_epoch_end)
    finally:
        accelerator.end_training()  # closes the trackers (and the process group of a distributed run)


def prepare_run(args: EmiTrainingArguments, accelerator, started: float, datasets: dict | None = None) -> Run:
    """Seeds, checks the batch size and splits, loads the features, builds the model and saves the processor."""
    set_seed(args.seed)
    if args.batch_size % accelerator.num_processes:
        raise EmiUsageError(f"--batch-size ({args.batch_size}) is the global batch size and must be a multiple of the "
                            f"number of processes ({accelerator.num_processes}).")
    loaded, metadata, root = load_feature_splits(args.features)
    if not args.raw_data:
        datasets = training_splits(loaded if datasets is None else datasets, args, args.features)
    output_dir = Path(args.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    model, note = build_model(args, metadata, root)
    raw_clips = None
    if args.raw_data:
        datasets, raw_clips, fine_tuning = setup_end_to_end(args, metadata, root, model)
        note = f"{note}; {fine_tuning}"
    _log(accelerator, note)
    if (mean := label_mean(datasets["train"])) is not None:  # the checkpoint knows it: `emi-hf submit`'s fallback row
        setattr(model.config, TRAINING_LABEL_MEAN, mean)
    if not args.raw_data and not (args.modality == "fusion" and args.fusion_mode == "late"):
        _log(accelerator, f"temporal windows (frames): {set_trained_windows(model, datasets['train'], args)}")
    if accelerator.is_main_process:
        processor_note = save_processor(metadata, root, output_dir, fallback_dirs=(args.visual_model, args.audio_model))
        _log(accelerator, processor_note or "processor: none named by the features (emi_features.json processor_path)")
        save_text_tokenizer(model, metadata, root, output_dir, args.text_model)
    return Run(args, accelerator, datasets, metadata, root, model, note, started, raw_clips=raw_clips)


def save_text_tokenizer(model, metadata: dict, root: Path, output_dir: Path, text_model=None) -> None:
    """A model with a text part gets its encoder's tokenizer (`text_tokenizer/`, for raw transcripts at inference):
    from the text run it was built from, else the features' base text model."""
    from ..text.encoder import copy_text_tokenizer

    if getattr(model.config, "model_type", None) != "emi_text" and getattr(model.config, "text_config", None) is None:
        return
    sources = [text_model] if text_model else []
    if metadata.get("text_base_model"):
        sources.append(root / metadata["text_base_model"])
    for source in sources:  # the first that has one
        if copy_text_tokenizer(source, output_dir):
            return


def _eval_loader(run: Run):
    batch_size = run.args.eval_batch_size or run.args.batch_size
    num_processes = run.accelerator.num_processes
    batch_size = math.ceil(batch_size / num_processes) * num_processes  # split_batches needs a multiple
    return run.loader(run.args.eval_split, batch_size)


def fit_late_fusion(run: Run) -> dict:
    """Late fusion: the two trained models as they are, fusion weights fitted on the evaluation split."""
    accelerator = run.accelerator
    eval_loader = accelerator.prepare(_eval_loader(run))
    run.model.to(accelerator.device)
    if run.args.fusion_weights_from:  # the weights of a held-out fusion run, scored here but not refitted
        run.model.config.modality_weights = kept_fusion_weights(run.args.fusion_weights_from, run.label_names,
                                                              run.model.modalities)
    fusion = fit_fusion(accelerator, run.model, eval_loader, run.label_names, run.output_dir,
                        fit=not run.args.fusion_weights_from)
    state = TrainingState()
    state.wall_time_s = time.perf_counter() - run.started
    return write_run_results(run, run.model, state, fusion=fusion)


def build_optimizer(model, args: EmiTrainingArguments, batches_per_epoch: int):
    """AdamW (no weight decay on biases and norms; the trained blocks of a backbone, end to end, at
    `BACKBONE_LR_SCALE` x lr) and a linear warm-up then cosine decay over all the steps."""
    backbone = getattr(model, "backbone", None)
    in_backbone = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    groups = []
    for scale, of_backbone in ((1.0, False), (BACKBONE_LR_SCALE, True)):
        decay, no_decay = [], []
        for parameter in model.parameters():
            if parameter.requires_grad and (id(parameter) in in_backbone) == of_backbone:
                (decay if parameter.ndim >= 2 else no_decay).append(parameter)
        if of_backbone and not decay + no_decay:
            break  # a frozen backbone: the two groups of the temporal part only
        groups += [{"params": decay, "weight_decay": args.weight_decay, "lr": args.lr * scale},
                   {"params": no_decay, "weight_decay": 0.0, "lr": args.lr * scale}]
    optimizer = torch.optim.AdamW(groups, lr=args.lr)
    total_steps = math.ceil(batches_per_epoch / args.grad_accum) * args.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(args.warmup_ratio * total_steps), total_steps)
    return optimizer, scheduler


def train_model(run: Run, on_epoch_end=None) -> dict:
    """Visual, audio or joint fusion training: epochs of training and evaluation, the best model kept."""
    args, accelerator, output_dir = run.args, run.accelerator, run.output_dir
    eval_loader = _eval_loader(run)
    train_loader = run.loader("train", args.batch_size, training=True)
    check_batch_size(len(train_loader.dataset), args.batch_size, accelerator.num_processes)
    epoch_parts = (train_loader.batch_sampler, train_loader.dataset)  # data order and crops: set_epoch each epoch
    optimizer, scheduler = build_optimizer(run.model, args, len(train_loader.batch_sampler))
    model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
        run.model, optimizer, train_loader, eval_loader, scheduler
    )
    state = TrainingState()
    accelerator.register_for_checkpointing(state)
    run.best_model = BestModelWriter(output_dir, accelerator)  # and epoch checkpoints without the frozen weights
    if args.report_to != "none":
        accelerator.init_trackers("tensorboard", config=_tracker_config(args.hyperparameters()))
    resume(accelerator, args, output_dir, state)
    run_started, wall_before = time.perf_counter(), state.wall_time_s

    for epoch in range(state.epoch, args.epochs):
        if state.stopped_early:
            break
        # Everything random in an epoch derives from (seed, epoch): resuming at an epoch boundary is exact.
        set_seed(args.seed + 1000 * (epoch + 1), device_specific=True)
        for part in (*epoch_parts, train_loader):
            part.set_epoch(epoch)
        epoch_started = time.perf_counter()
        train_loss = train_one_epoch(accelerator, model, train_loader, optimizer, scheduler, args)
        train_s = time.perf_counter() - epoch_started
        eval_started = time.perf_counter()
        validation = evaluate(accelerator, model, eval_loader, run.label_names, args.modality)
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "validation_mean_pearson": validation["mean_pearson"],
            "learning_rate": scheduler.get_last_lr()[0],
            "train_s": round(train_s, 3),
            "eval_s": round(time.perf_counter() - eval_started, 3),
        }
        improved = keep_if_best(run, model, state, validation)
        state.history.append(json_ready(record))
        state.epoch = epoch + 1
        state.stopped_early = (bool(args.patience) and held_out(args)  # a trained-on split stops nothing
                               and state.epochs_without_improvement >= args.patience)
        state.wall_time_s = wall_before + (time.perf_counter() - run_started)
        log_epoch(accelerator, args, record, validation, improved)
        if args.checkpoint_every_epoch:
            save_checkpoint(accelerator, output_dir, state, args.keep_checkpoints)
        if on_epoch_end is not None:
            on_epoch_end(state.epoch, state)
        if state.stopped_early:
            _log(accelerator, f"early stop: no better {args.eval_split} mean Pearson for {args.patience} epochs "
                              f"(best {state.best_metric:.4f} at epoch {state.best_epoch})")

    run.best_model.finish(accelerator.unwrap_model(model))  # the complete best model, written once more
    fusion, trained = None, accelerator.unwrap_model(model)
    if args.modality == "fusion":  # joint: fit the late weights on the best model, as late fusion does
        trained = EmiFusionModel.from_pretrained(output_dir).to(accelerator.device)
        fusion = fit_fusion(accelerator, trained, eval_loader, run.label_names, output_dir)
    state.wall_time_s = wall_before + (time.perf_counter() - run_started)
    return write_run_results(run, trained, state, fusion=fusion)


def resume(accelerator, args: EmiTrainingArguments, output_dir: Path, state: TrainingState) -> None:
    """`args.resume`: loads the checkpoint it names (or the latest, "auto") into the prepared objects and `state`."""
    resume_from = resolve_resume(args.resume, output_dir)
    if resume_from is not None:
        accelerator.load_state(str(resume_from), strict=False)  # the frozen weights are not in it (checked)
        _log(accelerator, f"resumed from {resume_from}: {state.epoch} epoch(s) done, best epoch {state.best_epoch}")
    elif args.resume:
        _log(accelerator, f"--resume {args.resume}: no checkpoint under {output_dir / CHECKPOINTS_DIR}, starting anew")


def train_one_epoch(accelerator, model, loader, optimizer, scheduler, args: EmiTrainingArguments) -> float:
    """One pass over the training batches, with gradient accumulation and clipping; returns the mean loss."""
    model.train()
    loss_sum, num_batches = 0.0, 0
    for batch in loader:
        with accelerator.accumulate(model):
            loss = training_loss(accelerator, model, batch, args.modality)
            accelerator.backward(loss * accelerator.num_processes)
            if accelerator.sync_gradients and args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        loss_sum += float(loss.detach())
        num_batches += 1
    return loss_sum / max(num_batches, 1)


def evaluate(accelerator, model, loader, label_names, modality: str) -> dict:
    """The metric blocks (`score_predictions`) of the model's predictions over a prepared loader, all processes."""
    with accelerator.autocast():
        arrays = predict(model, loader, modality, accelerator)
    return score_predictions(arrays, label_names, modality)


def keep_if_best(run: Run, model, state: TrainingState, validation: dict) -> bool:
    """Records a better validation mean Pearson in `state` and saves that model (main process); True if better."""
    metric = validation["mean_pearson"]
    if held_out(run.args) and not (metric is None or state.best_metric is None or metric > state.best_metric):
        state.epochs_without_improvement += 1
        return False
    state.best_metric, state.best_epoch = metric, state.epoch + 1
    state.best_validation = {k: validation[k] for k in ("mean_pearson", "per_emotion", "num_clips",
                                                        "num_missing_modality")}
    if run.args.modality == "fusion":
        state.best_validation["unimodal"] = {m: validation[m] for m in FUSION_MODALITIES if m in validation}
    state.epochs_without_improvement = 0
    run.accelerator.wait_for_everyone()
    if run.accelerator.is_main_process:  # complete at the first improvement, then the parts that train
        run.best_model.save(run.accelerator.unwrap_model(model))
    return True


def log_epoch(accelerator, args: EmiTrainingArguments, record: dict, validation: dict, improved: bool) -> None:
    """The epoch's numbers to the tracker and one line to the log."""
    metric = record["validation_mean_pearson"]
    if args.report_to != "none":
        logged = {"train/loss": record["train_loss"], "train/learning_rate": record["learning_rate"]}
        if metric is not None:
            logged["validation/mean_pearson"] = metric
            logged.update({f"validation/{name}": value for name, value in validation["per_emotion"].items()})
        accelerator.log(logged, step=record["epoch"])
    shown = "n/a" if metric is None else f"{metric:.4f}"
    _log(accelerator, f"epoch {record['epoch']}/{args.epochs}: train loss {record['train_loss']:.4f}, "
                      f"{args.eval_split} mean Pearson {shown}{' (best)' if improved else ''}, "
                      f"train {record['train_s']:.1f} s, eval {record['eval_s']:.1f} s")


# ----------------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------------


def _tracker_config(hyperparameters: dict) -> dict:
    """TensorBoard's hparams take scalars and strings only."""
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hyperparameters.items()}


def _dataset_name(args: EmiTrainingArguments, metadata: dict) -> str:
    return args.dataset_name or metadata.get("dataset") or Path(args.features).resolve().name


def write_run_results(run: Run, model, state: TrainingState, fusion: dict | None = None) -> dict:
    """Writes results.json (main process) and returns the results on every process."""
    args, accelerator = run.args, run.accelerator
    hyperparameters = args.hyperparameters()
    if args.modality == "fusion" and args.fusion_mode == "late":  # nothing was trained: keep what applies
        hyperparameters = {k: hyperparameters[k] for k in ("modality", "fusion_mode", "visual_model", "audio_model",
                                                           "text_model", "eval_split", "seed", "max_frames",
                                                           "max_audio_frames", "train_splits", "fusion_weights_from")}
    training = {
        **hyperparameters,
        **model_summary(model),
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "stopped_early": state.stopped_early,
        "num_processes": accelerator.num_processes,
        "wall_time_s": round(state.wall_time_s, 2),
        "model_source": run.note,
        **end_to_end_record(args),
        TRAINING_LABEL_MEAN: getattr(model.config, TRAINING_LABEL_MEAN, None),
        **selection_record(args),
        **({"annotator_weighting": run.weighting} if run.weighting else {}),
    }
    results = {
        "modality": args.modality,
        "dataset": _dataset_name(args, run.metadata),
        "validation": state.best_validation,
        "training": training,
        "label_names": run.label_names,
        "eval_split": args.eval_split,
        "history": state.history,
    }
    if fusion is not None:
        results["validation"] = fusion["validation"]
        results["fusion_mode"] = args.fusion_mode
        if state.best_validation is not None:  # joint: what training saw, with the weights before fitting
            results["validation_before_fitting_weights"] = state.best_validation
        results.update({k: v for k, v in fusion.items() if k != "validation"})
    results = json_ready(with_selection_clips(place_scores(results, args), args, run.datasets))
    if accelerator.is_main_process:
        path = write_results(run.output_dir, results)
        best = results["validation"]["mean_pearson"] if results["validation"] else None
        logger.info(f"best model -> {run.output_dir} ({args.eval_split} mean Pearson "
                    f"{'n/a' if best is None else f'{best:.4f}'}); results in {path}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point of `train.py` and `emi-hf train`."""
    args = parse_args(argv)
    show_training_log("[emi-hf train]")
    train(args)
    return 0


def show_training_log(prefix: str) -> None:
    """Training's INFO lines on stderr, prefixed (our lines only: a root basicConfig would show every library's)."""
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"{prefix} %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO)
