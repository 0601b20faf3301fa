"""The model a training run starts from: a new temporal part on a kept backbone, a trained checkpoint, or fusion.

`build_model(args, metadata, root)` returns `(model, note)`; the note says where the weights came from (it is
logged and recorded in results.json as `model_source`). Visual and audio models get a new temporal part sized by the
model-size arguments (`MODEL_SIZE_FIELDS`, the config's defaults where unset); the inputs description and the
frozen backbone come from a base model, and the features' metadata must match it (AU names, audio frame width,
labels).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ..configuration_emi import FUSION_MODALITIES, EmiAudioConfig, EmiTextConfig, EmiVisualConfig
from ..encoder_setup import check_input_dims
from ..modeling_fusion_emi import MODEL_CLASSES, EmiFusionModel
from .arguments import MODEL_SIZE_FIELDS, TrainingArguments

# Config fields that describe the inputs and the frozen backbone: taken from the base checkpoint.
BACKBONE_FIELDS = {
    "visual": ("visual_feature_dim", "au_names", "face_size", "backbone", "freeze_backbone", "backbone_chunk_size",
               "backbone_config", "backbone_pooling", "image_mean", "image_std"),
    "audio": ("speech_encoder_config", "audio_feature_dim", "sampling_rate", "freeze_backbone", "speech_encoder_name",
              "speech_layers", "max_audio_s", "cache_dtype", "encoder_window_s"),
    "text": ("text_encoder_config", "text_feature_dim", "text_encoder_name", "freeze_backbone", "max_text_tokens",
             "asr_backend", "asr_model", "asr_language"),
}
CONFIG_CLASSES = {modality: model_class.config_class for modality, model_class in MODEL_CLASSES.items()}


def temporal_overrides(args: TrainingArguments, modality: str) -> dict:
    """Config fields of the temporal model set in `args` (others keep the config's defaults), and the loss."""
    overrides = {name: getattr(args, name) for name in MODEL_SIZE_FIELDS if getattr(args, name) is not None}
    if modality != "visual":
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


def _random_text_encoder_config(width: int) -> dict:
    """A small BERT-like encoder config whose token embeddings are `width` wide (for features without base_text)."""
    heads = next(h for h in (12, 8, 6, 4, 2, 1) if width % h == 0)
    return {"model_type": "bert", "hidden_size": width, "num_attention_heads": heads, "intermediate_size": 4 * width,
            "num_hidden_layers": 2}


def _require_text_features(metadata: dict, source: str) -> None:
    if not metadata.get("text_feature_dim"):
        raise ValueError(f"{source}: a text model needs features with text_features; extract with "
                         "`emi-hf extract --text-encoder ID --transcripts FILE` (or --asr-model ID).")


def _check_model_fits_features(config, metadata: dict, modality: str, source: str) -> None:
    if modality == "text":
        _require_text_features(metadata, source)
    if modality == "visual" and list(config.au_names) != list(metadata["au_names"]):
        raise ValueError(
            f"{source} expects the AUs {list(config.au_names)} but the features have {list(metadata['au_names'])}: "
            "use the base model saved with these features (extraction folder's base_visual) or re-extract."
        )
    check_input_dims(config, metadata, modality, source)
    if list(config.label_names) != list(metadata["label_names"]):
        raise ValueError(f"{source} regresses {list(config.label_names)} but the features are labeled "
                         f"{list(metadata['label_names'])}.")


def build_unimodal_model(modality: str, args: TrainingArguments, metadata: dict, root: Path,
                         base_model: str | os.PathLike | None = None) -> tuple[torch.nn.Module, str]:
    """
    A new visual or audio model for training: temporal part from the size arguments (random init), inputs
    description and frozen backbone from, in order, `init_from` (everything, trained), `base_model`, the features
    folder's `base_visual` / `base_audio`, else the features' metadata with a random backbone. Returns (model, note).
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
    if base_dir is not None:
        return _on_base_backbone(modality, base_dir, metadata, overrides)
    if modality == "visual":
        config = EmiVisualConfig(au_names=list(metadata["au_names"]), label_names=list(metadata["label_names"]),
                                 visual_feature_dim=int(metadata.get("visual_feature_dim", 512)), **overrides)
    elif modality == "text":
        _require_text_features(metadata, str(root))
        width = int(metadata["text_feature_dim"])
        config = EmiTextConfig(text_encoder_config=_random_text_encoder_config(width), text_feature_dim=width,
                               label_names=list(metadata["label_names"]), **overrides)
    else:
        width = int(metadata.get("audio_feature_dim", 768))
        config = EmiAudioConfig(speech_encoder_config=_random_speech_encoder_config(width), audio_feature_dim=width,
                                label_names=list(metadata["label_names"]), **overrides)
    note = (
        f"{modality} backbone: RANDOM weights (no --base-model and no base_{modality} folder next to the "
        "features): "
        "the checkpoint scores cached features but not raw video/audio until trained from a base model"
    )
    return model_class(config), note


def _on_base_backbone(modality: str, base_dir, metadata: dict, overrides: dict) -> tuple[torch.nn.Module, str]:
    """A new model whose inputs description and backbone weights are those of the model saved in `base_dir`."""
    model_class = MODEL_CLASSES[modality]
    with torch.random.fork_rng():  # loading draws no numbers from the seeded stream the new model is built from
        base = model_class.from_pretrained(base_dir)
    kept = {}
    for name in BACKBONE_FIELDS[modality]:
        value = getattr(base.config, name)
        kept[name] = value.to_dict() if hasattr(value, "to_dict") else value
    config = CONFIG_CLASSES[modality](**kept, label_names=list(metadata["label_names"]), **overrides)
    _check_model_fits_features(config, metadata, modality, str(base_dir))
    model = model_class(config)
    model.backbone.load_state_dict(base.backbone.state_dict())
    return model, f"{modality} backbone: weights kept from {base_dir}"


def _fusion_sources(args: TrainingArguments) -> dict:
    """{modality: trained checkpoint folder} of the fusion's `--visual-model` / `--audio-model` / `--text-model`."""
    given = {"visual": args.visual_model, "audio": args.audio_model, "text": args.text_model}
    return {m: path for m, path in given.items() if path}


def build_fusion_model(args: TrainingArguments, metadata: dict, root: Path) -> tuple[EmiFusionModel, str]:
    """The fusion model of a run: of the trained checkpoints given (late: at least one; any set of modalities), or,
    for joint / feature fusion without them, of new models of `--fusion-modalities` (default: visual, audio, and
    text when the features have it)."""
    sources = _fusion_sources(args)
    fusion_type = "feature" if args.fusion_mode == "feature" else "late"
    options = {"fusion_type": fusion_type, "modality_dropout": args.modality_dropout}
    if sources:
        model = EmiFusionModel.from_unimodal(**{m: str(path) for m, path in sources.items()}, **options)
        note = "fusion of " + ", ".join(f"{m} {path}" for m, path in sources.items())
    elif args.fusion_mode == "late":
        raise ValueError("--fusion-mode late needs trained checkpoints: --visual-model, --audio-model and/or "
                         "--text-model.")
    else:
        modalities = args.fusion_modalities or [m for m in FUSION_MODALITIES if m != "text" or metadata.get("text_feature_dim")]
        unknown = sorted(set(modalities) - set(FUSION_MODALITIES))
        if unknown:
            raise ValueError(f"--fusion-modalities {unknown}: the modalities are {list(FUSION_MODALITIES)}.")
        built = {m: build_unimodal_model(m, args, metadata, root) for m in modalities}
        model = EmiFusionModel.from_unimodal(**{m: pair[0] for m, pair in built.items()}, **options)
        note = f"{args.fusion_mode} fusion from new models; " + "; ".join(pair[1] for pair in built.values())
    for modality, config in model.config.sub_configs_of_modalities().items():
        _check_model_fits_features(config, metadata, modality, f"the {modality} model")
        config.loss_type = args.loss
    return model, note


def build_model(args: TrainingArguments, metadata: dict, root: Path):
    if args.modality == "fusion":
        return build_fusion_model(args, metadata, root)
    return build_unimodal_model(args.modality, args, metadata, root)


SEQUENCE_COLUMNS = {"visual": "visual_features", "audio": "audio_features", "text": "text_features"}


def set_trained_windows(model, train_split, args: TrainingArguments) -> dict[str, int]:
    """
    Sets each unimodal part's `temporal_window` to the span this run's training shows it: its frame cap
    (`max_frames`, `max_audio_frames`; the text model's transcripts are not cropped: `max_text_tokens`), or the
    longest sequence of the training split when that is shorter (0 / no cap: that longest). Every position of a window
    is then one training saw, and longer clips are scored in windows of it. Returns {modality: window}.
    """
    from .data import sequence_lengths

    sub_configs = getattr(model.config, "sub_configs_of_modalities", None)
    configs = sub_configs() if sub_configs else {args.modality: model.config}
    windows = {}
    for modality, config in configs.items():
        column = SEQUENCE_COLUMNS[modality]
        if column not in train_split.column_names:
            continue
        cap = {"visual": args.max_frames, "audio": args.max_audio_frames}.get(modality,
                                                                             getattr(config, "max_text_tokens", None))
        longest = int(sequence_lengths(train_split, column).max(initial=1))
        config.temporal_window = windows[modality] = max(1, min(longest, cap or longest))
    return windows


def model_summary(model) -> dict:
    """Effective temporal hyperparameters (under the config's names) and parameter counts, for results.json."""
    sub_configs = getattr(model.config, "sub_configs_of_modalities", None)
    config = next(iter(sub_configs().values())) if sub_configs else model.config
    summary = {name: getattr(config, name) for name in MODEL_SIZE_FIELDS if hasattr(config, name)}
    summary["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    summary["total_parameters"] = sum(p.numel() for p in model.parameters())
    return summary
