"""Training arguments: one dataclass, the defaults, and the command line parsed from it (`train.py`, `emi-hf train`).

The dataclass is [`EmiTrainingArguments`]; `TrainingArguments`, its name before, still imports (with a
`DeprecationWarning`) and is the same class: it will be removed in a later version. It was renamed so that it does not
shadow `transformers.TrainingArguments` (a different class) in code that imports both.

`build_parser()` is a `transformers.HfArgumentParser` over [`EmiTrainingArguments`]: every field is a flag of the same
name, spelled `--max_frames` or `--max-frames`, with the field's default and help. The model-size fields carry the
names of the config fields they set (`--num_hidden_layers`); the spellings of earlier versions stay as aliases
(`--num-layers`, `--num-heads`, `--tcn-dilations 1,2,4` with commas).
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from ..configuration_emi import LOSS_TYPES, POOLING_TYPES, TEMPORAL_BLOCKS
from ..errors import EmiUsageError
from ..results import trained_settings

MODALITIES = ("visual", "audio", "text", "fusion")
MIXED_PRECISION = ("no", "fp16", "bf16")
FUSION_MODES = ("late", "joint", "feature", "cross-attention")
TRACKERS = ("tensorboard", "none", "all", "wandb", "mlflow", "comet_ml", "aim", "clearml")
# Fields of the temporal part of a visual / audio config (the part training builds anew), under the config's names.
MODEL_SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "tcn_dilations",
                     "tcn_kernel_size", "dropout", "channel_dropout", "pooling", "temporal_block", "lstm_layers",
                     "lstm_hidden")
DEFAULT_MAX_FRAMES = 512
DEFAULT_MAX_AUDIO_FRAMES = 1024


def _help(text: str, **argparse_options) -> dict:
    """Metadata of a dataclass field for HfArgumentParser (help, choices, aliases, nargs, ...)."""
    return {"help": text, **argparse_options}


def _warn_without_tensorboard(report_to: str) -> None:
    """accelerate silently skips a tracker whose package is missing: say so for tensorboard, the default, which a
    plain `pip install emi-hf` does not bring (it is the `tensorboard` extra)."""
    import importlib.util

    if report_to == "tensorboard" and not any(importlib.util.find_spec(name) for name in ("tensorboard", "tensorboardX")):
        warnings.warn("report_to='tensorboard' (the default) but tensorboard is not installed, so no training curves "
                      "are written: `pip install 'emi-hf[tensorboard]'`, or pass --report-to none.", UserWarning,
                      stacklevel=3)


@dataclass
class EmiTrainingArguments:
    """
    Everything a training run needs; `train(EmiTrainingArguments(features="features/", modality="visual"))`. The
    data is the cached features of `features`, or with `raw_data` the raw clips of a Hume-Vidmimic2 folder (end-to-end
    fine-tuning); both go through the same loop (`training.loop`).

    Batch sizes are *global*: a batch of `batch_size` clips is split across the processes (accelerate's
    `split_batches=True`); the data order, the random windows and the learning-rate schedule depend on the seed and
    the epoch only, and the loss of a step is that of the whole global batch. `batch_size` must be a multiple of the
    number of processes. Validation is gathered from every process, so the best epoch is chosen on all of the
    evaluation split.

    What is tested about 1 vs N processes (CPU, gloo): a visual model on cached features, 2 epochs, dropout 0 and
    channel dropout 0, Pearson loss, trained with 1 process (`accelerate launch`) and with 2 (`torchrun`), has the
    same training loss and validation mean Pearson at every epoch within 1e-5
    (`tests/test_training.py::test_two_processes_give_the_same_metric_as_one`); a 2-process end-to-end audio run
    records, at every epoch, the mean Pearson of all validation clips (equal within 1e-5 to a 1-process evaluation of
    that epoch's checkpoint) and keeps the epoch best on all of them
    (`tests/test_end_to_end.py::test_two_process_end_to_end_run_chooses_its_epoch_on_all_of_validation`). The
    weights themselves are not compared, and nothing is claimed with dropout > 0 (the masks are drawn per process,
    so 1 and N processes then train differently) or for the order of floating point sums (N processes sum in
    another order: results agree to rounding, not bit for bit).
    """

    features: str = field(metadata=_help("features folder written by `emi-hf extract` (emi_features.json + "
                                         "dataset/), or a DatasetDict folder saved with save_to_disk"))
    modality: str = field(default="visual", metadata=_help("model to train", choices=MODALITIES))
    output_dir: str | None = field(default=None, metadata=_help(
        "run folder: best model, results.json, logs, checkpoints (default runs/<modality>)"))
    # optimisation
    epochs: int = field(default=30, metadata=_help("training epochs (at most)"))
    batch_size: int = field(default=32, metadata=_help(
        "global batch size, split across processes (a multiple of the number of processes)"))
    eval_batch_size: int | None = field(default=None, metadata=_help("default: batch_size"))
    lr: float = field(default=3e-4, metadata=_help("peak AdamW learning rate"))
    weight_decay: float = field(default=0.01, metadata=_help("AdamW weight decay (not on biases and norms)"))
    warmup_ratio: float = field(default=0.1, metadata=_help(
        "fraction of the optimizer steps of linear warm-up before the cosine decay"))
    grad_accum: int = field(default=1, metadata=_help("gradient accumulation steps"))
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient clipping (0: off)"))
    loss: str = field(default="mse", metadata=_help("mse, ccc (1 - CCC) or pearson (1 - r)", choices=LOSS_TYPES))
    seed: int = field(default=42, metadata=_help("seed of the initialisation, data order, crops and dropout"))
    patience: int = field(default=5, metadata=_help(
        "stop after this many epochs without a better validation mean Pearson (0: never)"))
    mixed_precision: str = field(default="no", metadata=_help(
        "autocast precision (bf16 works on CPUs too; fp16 needs a GPU)", choices=MIXED_PRECISION))
    cpu: bool = field(default=False, metadata=_help("train on the CPU even when a GPU is present"))
    # sequences
    max_frames: int | None = field(default=None, metadata=_help(
        "cap on video frames per training clip (a random window); it sets the model's temporal_window (or the "
        "longest training clip if shorter): evaluation and inference score longer clips in overlapping windows of it "
        f"(default {DEFAULT_MAX_FRAMES}; fusion: the visual model's; 0: no cap)"))
    max_audio_frames: int | None = field(default=None, metadata=_help(
        "cap on audio (encoder) frames per training clip, as max_frames "
        f"(default {DEFAULT_MAX_AUDIO_FRAMES}; fusion: the audio model's; 0: no cap)"))
    # checkpoints and logging
    resume: str | None = field(default=None, metadata=_help(
        "resume from a checkpoint folder, or 'auto' (the latest under OUTPUT_DIR/checkpoints; the flag alone)",
        nargs="?", const="auto"))
    checkpoint_every_epoch: bool = field(default=False, metadata=_help(
        "save_state after each epoch to OUTPUT_DIR/checkpoints/epoch_N (the last keep_checkpoints are kept)"))
    keep_checkpoints: int = field(default=2, metadata=_help(argparse.SUPPRESS))
    report_to: str = field(default="tensorboard", metadata=_help("tracker: tensorboard (default) or none"))
    dataset_name: str | None = field(default=None, metadata=_help(
        "name of the training data in results.json / model card"))
    # model size (None: the config's default)
    hidden_size: int | None = field(default=None, metadata=_help("width of the temporal model"))
    num_hidden_layers: int | None = field(default=None, metadata=_help(
        "Transformer encoder layers", aliases=["--num-layers", "--num_layers"]))
    num_attention_heads: int | None = field(default=None, metadata=_help(
        "attention heads", aliases=["--num-heads", "--num_heads"]))
    intermediate_size: int | None = field(default=None, metadata=_help(
        "feed-forward width (default 2 x hidden size)"))
    tcn_dilations: list[int] | None = field(default=None, metadata=_help(
        "one TCN block per dilation, e.g. 1 2 4 8 (or 1,2,4,8)"))
    tcn_kernel_size: int | None = field(default=None, metadata=_help("TCN kernel size"))
    dropout: float | None = field(default=None, metadata=_help("dropout of the temporal model"))
    channel_dropout: float | None = field(default=None, metadata=_help(
        "visual: probability of dropping a whole channel"))
    pooling: str | None = field(default=None, metadata=_help("clip pooling", choices=POOLING_TYPES))
    temporal_block: str | None = field(default=None, metadata=_help(
        "temporal model: tcn-transformer (default) or lstm (a packed bidirectional LSTM)", choices=TEMPORAL_BLOCKS))
    lstm_layers: int | None = field(default=None, metadata=_help("--temporal-block lstm: layers (default 2)"))
    lstm_hidden: int | None = field(default=None, metadata=_help(
        "--temporal-block lstm: hidden size per direction (default the hidden size)"))
    # where the model comes from
    base_model: str | None = field(default=None, metadata=_help(
        "visual/audio/text: an EmiVisualModel/EmiAudioModel/EmiTextModel folder whose backbone (and its provenance "
        "record, AU names, encoder config) the new model keeps; default: the features' base_visual / base_audio / "
        "base_text folder; without one, training stops unless --no-base-model"))
    no_base_model: bool = field(default=False, metadata=_help(
        "train a features-only model when the features have no base model (e.g. after import-features): its "
        "backbone is an untrained placeholder, recorded as none, so predict / stream / the demo refuse raw inputs "
        "with it"))
    init_from: str | None = field(default=None, metadata=_help(
        "visual/audio: start from this trained checkpoint (all weights and its config; the size flags are then "
        "ignored)"))
    visual_model: str | None = field(default=None, metadata=_help("fusion: trained EmiVisualModel folder"))
    audio_model: str | None = field(default=None, metadata=_help("fusion: trained EmiAudioModel folder"))
    text_model: str | None = field(default=None, metadata=_help("fusion: trained EmiTextModel folder"))
    fusion_modalities: list[str] | None = field(default=None, metadata=_help(
        "joint / feature fusion without trained models: the modalities to build anew (default: visual, audio, and "
        "text when the features have text_features)"))
    fusion_mode: str = field(default="late", metadata=_help(
        "late (default, the paper's): per-emotion modality weights on the simplex fitted on validation, no "
        "training; joint: fine-tune the models through the late-fused loss, then fit the weights; feature: "
        "feature-level fusion (pooled embeddings -> MLP head) trained jointly with modality dropout; "
        "cross-attention: the text state queries the audio and visual sequences, trained as feature is",
        choices=FUSION_MODES))
    cross_attention_heads: int = field(default=4, metadata=_help("cross-attention fusion: attention heads"))
    cross_attention_dim: int = field(default=512, metadata=_help("cross-attention fusion: width"))
    modality_dropout: float = field(default=0.25, metadata=_help(
        "feature / cross-attention fusion: probability of dropping each present modality of a training clip (never "
        "all)"))
    eval_split: str = field(default="validation", metadata=_help("split used for evaluation and early stopping"))
    # model selection (training.selection, training.weighting)
    train_splits: list[str] = field(default_factory=lambda: ["train"], metadata=_help(
        "splits trained on, concatenated; e.g. `train validation` for the final model with --epochs chosen on "
        "validation: an evaluation split that is trained on stops nothing early and the last epoch is kept"))
    fusion_weights_from: str | None = field(default=None, metadata=_help(
        "late fusion: keep the fusion weights of this (held-out) fusion run instead of fitting them; for the final "
        "fusion model of models trained with --train-splits train validation"))
    seeds: int = field(default=1, metadata=_help(
        "train this many seeds (seed, seed+1, ...; members under OUTPUT_DIR/seed_S) and save the mean of their "
        "intensities as one ensemble checkpoint in OUTPUT_DIR (loads with AutoModel.from_pretrained)"))
    annotator_weights: bool = field(default=False, metadata=_help(
        "weight each training clip's loss by its annotator count, inferred from its k/N labels "
        "(emi_hf.training.weighting); off by default"))
    # end-to-end fine-tuning from raw inputs (training.end_to_end): the same loop on another dataset
    raw_data: str | None = field(default=None, metadata=_help(
        "visual/audio: train end to end from the raw clips of this Hume-Vidmimic2 folder (face crops / waveforms "
        "through the backbone, decoded each epoch) instead of the cached features; --features still gives the base "
        "model, the processor and the label names"))
    trainable_backbone_layers: int = field(default=0, metadata=_help(
        "with --raw-data: fine-tune the last N blocks of the backbone (ResNet blocks, speech encoder layers), "
        "the rest frozen (0: all frozen)"))
    gradient_checkpointing: bool = field(default=False, metadata=_help(
        "with --raw-data: recompute layers in the backward pass to save memory (transformers / timm backbones and "
        "the temporal model)"))
    raw_clip_cache: bool = field(default=False, metadata=_help(
        "with --raw-data, visual: keep each processed clip in the clip cache (emi_hf.media.cache, under its size "
        "cap) so that later epochs skip decoding and face detection; default off: every epoch decodes again and "
        "nothing is written to disk"))

    def __post_init__(self):
        for name, allowed in (("modality", MODALITIES), ("loss", LOSS_TYPES), ("mixed_precision", MIXED_PRECISION),
                              ("fusion_mode", FUSION_MODES)):
            if getattr(self, name) not in allowed:
                raise EmiUsageError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        if self.report_to not in TRACKERS:
            raise EmiUsageError(f"report_to {self.report_to!r} is not a tracker accelerate knows.")
        _warn_without_tensorboard(self.report_to)
        if self.output_dir is None:
            self.output_dir = f"runs/{self.modality}"
        if self.grad_accum < 1 or self.epochs < 1 or self.batch_size < 1 or self.seeds < 1:
            raise EmiUsageError("epochs, batch_size, grad_accum and seeds must be >= 1.")
        self.train_splits = [self.train_splits] if isinstance(self.train_splits, str) else list(self.train_splits)
        if not self.train_splits:
            raise EmiUsageError("train_splits must name at least one split.")
        if self.tcn_dilations is not None:  # numbers, or command-line words such as "1,2,4" or "1" "2" "4"
            self.tcn_dilations = [int(d) for d in " ".join(map(str, self.tcn_dilations)).replace(",", " ").split()]
        if self.trainable_backbone_layers < 0:
            raise ValueError(f"trainable_backbone_layers must be >= 0, got {self.trainable_backbone_layers}.")

    @classmethod
    def from_any(cls, args) -> EmiTrainingArguments:
        """From an `EmiTrainingArguments`, an `argparse.Namespace` or a dict (unknown keys are an error)."""
        if isinstance(args, cls):
            return args
        values = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TypeError(f"Unknown training argument(s): {unknown}.")
        return cls(**values)

    def hyperparameters(self) -> dict:
        """Flat name -> value (for results.json and the trackers)."""
        skip = {"features", "output_dir", "resume", "report_to", "cpu", "keep_checkpoints"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}


def build_parser(*extra_dataclasses, description: str | None = None) -> HfArgumentParser:
    """The `train.py` / `emi-hf train` command line: one flag per [`EmiTrainingArguments`] field (and per field of
    `extra_dataclasses`, for commands that add options, such as `emi-hf cv`)."""
    parser = HfArgumentParser(
        [EmiTrainingArguments, *extra_dataclasses],
        description=description or "Train an emi-hf model on cached features (or, with --raw-data, end to end on "
        "the raw clips). Run with `accelerate launch train.py "
        "...` (any number of processes, --mixed_precision, CPU or GPU), or plainly with python for one process.",
    )
    # Each word after --tcn_dilations may hold several numbers ("1,2,4"); __post_init__ splits them.
    for action in parser._actions:
        if action.dest == "tcn_dilations":
            action.type = str
    return parser


def parse_args(argv: list[str] | None = None) -> EmiTrainingArguments:
    """`EmiTrainingArguments` from command-line words (default: `sys.argv[1:]`; an unknown flag is a usage error)."""
    return EmiTrainingArguments.from_any(build_parser().parse_args(argv))


def sequence_caps(max_frames: int | None, max_audio_frames: int | None, visual_run=None,
                  audio_run=None) -> tuple[int | None, int | None]:
    """
    The training crops of a run: a cap left at None is the one the model in `visual_run` / `audio_run` was trained
    with (its results.json), else `DEFAULT_MAX_FRAMES` / `DEFAULT_MAX_AUDIO_FRAMES`. 0 (or None recorded) means no
    cap, returned as None. (Evaluation reads whole clips; the model's `temporal_window` windows the long ones.)
    """
    if max_frames is None:
        max_frames = trained_settings(visual_run).get("max_frames", DEFAULT_MAX_FRAMES)
    if max_audio_frames is None:
        max_audio_frames = trained_settings(audio_run).get("max_audio_frames", DEFAULT_MAX_AUDIO_FRAMES)
    return max_frames or None, max_audio_frames or None


DEPRECATED_NAMES = {"TrainingArguments": "EmiTrainingArguments"}
"""Names of earlier versions that still import (with a DeprecationWarning), and what replaces them."""


def deprecated_name(module: str, name: str):
    """The object a deprecated `name` of `module` stands for, after a DeprecationWarning (for a module `__getattr__`);
    AttributeError for any other name."""
    if name not in DEPRECATED_NAMES:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new = DEPRECATED_NAMES[name]
    warnings.warn(f"{module}.{name} is deprecated and will be removed in a later version: use {new} (the same "
                  f"class, renamed so that it does not shadow transformers.{name}).", DeprecationWarning, stacklevel=3)
    return globals()[new]


def __getattr__(name: str):
    return deprecated_name(__name__, name)


def resolve_sequence_caps(args: EmiTrainingArguments) -> EmiTrainingArguments:
    """Fills `max_frames` / `max_audio_frames` left at None: a fusion run crops its training clips with the caps the
    unimodal models were trained with (their results.json), other runs get the defaults. 0 means no cap."""
    fusion = args.modality == "fusion"
    max_frames, max_audio_frames = sequence_caps(args.max_frames, args.max_audio_frames,
                                                 args.visual_model if fusion else None,
                                                 args.audio_model if fusion else None)
    return dataclasses.replace(args, max_frames=max_frames, max_audio_frames=max_audio_frames)
