"""Training arguments: one dataclass (the defaults) and the argparse parser built on it (`train.py`, `emi-hf train`)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

MODALITIES = ("visual", "audio", "fusion")
LOSSES = ("mse", "ccc", "pearson")
MIXED_PRECISION = ("no", "fp16", "bf16")
FUSION_MODES = ("late", "joint")


@dataclass
class TrainingArguments:
    """
    Everything a training run needs; `train(TrainingArguments(features="features/", modality="visual"))`.

    Batch sizes are *global*: a batch of `batch_size` clips is split across the processes (accelerate's
    `split_batches=True`), so 1 or N processes see the same batches and reach the same weights (up to floating point
    summation order). `batch_size` must be a multiple of the number of processes.
    """

    features: str
    modality: str = "visual"
    output_dir: str | None = None  # default: runs/<modality>
    # optimisation
    epochs: int = 30
    batch_size: int = 32
    eval_batch_size: int | None = None  # default: batch_size
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    loss: str = "mse"
    seed: int = 42
    patience: int = 5  # epochs without a better validation mean Pearson before stopping; 0 = never stop early
    mixed_precision: str = "no"
    cpu: bool = False
    # sequences
    max_frames: int | None = None  # None: 512, or for fusion the visual model's; 0: no cap
    max_audio_frames: int | None = None  # None: 1024, or for fusion the audio model's; 0: no cap
    # checkpoints and logging
    resume: str | None = None  # "auto" (latest under output_dir/checkpoints) or a checkpoint folder
    checkpoint_every_epoch: bool = False
    keep_checkpoints: int = 2
    report_to: str = "tensorboard"
    dataset_name: str | None = None
    # model size (None: the config's default)
    hidden_size: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    intermediate_size: int | None = None
    tcn_dilations: list[int] | None = None
    tcn_kernel_size: int | None = None
    dropout: float | None = None
    channel_dropout: float | None = None
    pooling: str | None = None
    # where the model comes from
    base_model: str | None = None
    init_from: str | None = None
    visual_model: str | None = None
    audio_model: str | None = None
    fusion_mode: str = "late"
    eval_split: str = "validation"

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}.")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}.")
        if self.fusion_mode not in FUSION_MODES:
            raise ValueError(f"fusion_mode must be one of {FUSION_MODES}, got {self.fusion_mode!r}.")
        if self.report_to not in ("tensorboard", "none", "all", "wandb", "mlflow", "comet_ml", "aim", "clearml"):
            raise ValueError(f"report_to {self.report_to!r} is not a tracker accelerate knows.")
        if self.output_dir is None:
            self.output_dir = f"runs/{self.modality}"
        if self.grad_accum < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs, batch_size and grad_accum must be >= 1.")
        if self.tcn_dilations is not None:
            self.tcn_dilations = [int(d) for d in self.tcn_dilations]

    @classmethod
    def from_any(cls, args) -> TrainingArguments:
        """From a `TrainingArguments`, an `argparse.Namespace` or a dict (unknown keys are an error)."""
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


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.replace(",", " ").split()]


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The `train.py` / `emi-hf train` arguments (defaults from [`TrainingArguments`])."""
    d = TrainingArguments(features="")
    parser = parser or argparse.ArgumentParser(
        description="Train an emi-hf model on cached features. Run with `accelerate launch train.py ...` "
        "(any number of processes, --mixed_precision, CPU or GPU), or plainly with python for one process.",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--features", required=True, help="features folder written by `emi-hf extract` "
                      "(emi_features.json + dataset/), or a DatasetDict folder saved with save_to_disk")
    data.add_argument("--modality", choices=MODALITIES, default=d.modality)
    data.add_argument("--output-dir", default=None, help="run folder: best model, results.json, logs, checkpoints "
                      "(default runs/<modality>)")
    data.add_argument("--eval-split", default=d.eval_split, help="split used for evaluation and early stopping")
    data.add_argument("--max-frames", type=int, default=d.max_frames,
                      help="cap on video frames per clip: random window in training, centre window in evaluation "
                      "(default 512; fusion: the visual model's; 0: no cap)")
    data.add_argument("--max-audio-frames", type=int, default=d.max_audio_frames,
                      help="cap on audio (encoder) frames per clip, windows as for --max-frames "
                      "(default 1024; fusion: the audio model's; 0: no cap)")
    data.add_argument("--dataset-name", default=None, help="name of the training data in results.json / model card")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=d.epochs)
    opt.add_argument("--batch-size", type=int, default=d.batch_size,
                     help="global batch size, split across processes (a multiple of the number of processes)")
    opt.add_argument("--eval-batch-size", type=int, default=None, help="default: --batch-size")
    opt.add_argument("--lr", type=float, default=d.lr, help="peak AdamW learning rate")
    opt.add_argument("--weight-decay", type=float, default=d.weight_decay)
    opt.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio,
                     help="fraction of the optimizer steps of linear warm-up before the cosine decay")
    opt.add_argument("--grad-accum", type=int, default=d.grad_accum, help="gradient accumulation steps")
    opt.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm, help="gradient clipping (0: off)")
    opt.add_argument("--loss", choices=LOSSES, default=d.loss, help="mse, ccc (1 - CCC) or pearson (1 - r)")
    opt.add_argument("--seed", type=int, default=d.seed)
    opt.add_argument("--patience", type=int, default=d.patience,
                     help="stop after this many epochs without a better validation mean Pearson (0: never)")
    opt.add_argument("--mixed-precision", choices=MIXED_PRECISION, default=d.mixed_precision,
                     help="autocast precision (bf16 works on CPUs too; fp16 needs a GPU)")
    opt.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")

    ckpt = parser.add_argument_group("checkpoints and logging")
    ckpt.add_argument("--resume", nargs="?", const="auto", default=None,
                      help="resume from a checkpoint folder, or 'auto' (the latest under OUTPUT_DIR/checkpoints)")
    ckpt.add_argument("--checkpoint-every-epoch", action="store_true",
                      help="save_state after each epoch to OUTPUT_DIR/checkpoints/epoch_N (the last 2 are kept)")
    ckpt.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, help=argparse.SUPPRESS)
    ckpt.add_argument("--report-to", default=d.report_to, help="tracker: tensorboard (default) or none")

    size = parser.add_argument_group("model size (default: the config's)")
    size.add_argument("--hidden-size", type=int)
    size.add_argument("--num-layers", type=int, help="Transformer encoder layers")
    size.add_argument("--num-heads", type=int, help="attention heads")
    size.add_argument("--intermediate-size", type=int, help="feed-forward width (default 2 x hidden size)")
    size.add_argument("--tcn-dilations", type=_int_list, help="one TCN block per dilation, e.g. 1,2,4,8")
    size.add_argument("--tcn-kernel-size", type=int)
    size.add_argument("--dropout", type=float)
    size.add_argument("--channel-dropout", type=float, help="visual: probability of dropping a whole channel")
    size.add_argument("--pooling", choices=("mean", "attention"))

    init = parser.add_argument_group("initialisation")
    init.add_argument("--base-model", help="visual/audio: an EmiVisualModel/EmiAudioModel folder whose backbone "
                      "(and AU names, encoder config) the new model keeps; default: the features' base_visual / "
                      "base_audio folder, else a random backbone built from the features' metadata")
    init.add_argument("--init-from", help="visual/audio: start from this trained checkpoint (all weights and its "
                      "config; the size flags are then ignored)")
    init.add_argument("--visual-model", help="fusion: trained EmiVisualModel folder")
    init.add_argument("--audio-model", help="fusion: trained EmiAudioModel folder")
    init.add_argument("--fusion-mode", choices=FUSION_MODES, default=d.fusion_mode,
                      help="late (default, the paper's): fusion weights fitted on validation, no training; "
                      "joint: fine-tune both models through the fused loss, then fit the weights")
    return parser


def parse_args(argv: list[str] | None = None) -> TrainingArguments:
    namespace = build_parser().parse_args(argv)
    return TrainingArguments.from_any(namespace)
