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

from ..configuration_emi import EmiAudioConfig, EmiVisualConfig
from ..encoder_setup import check_input_dims
from ..modeling_emi import EmiAudioModel, EmiFusionModel, EmiVisualModel
from .arguments import MODEL_SIZE_FIELDS, TrainingArguments

# Config fields that describe the inputs and the frozen backbone: taken from the base checkpoint.
BACKBONE_FIELDS = {
    "visual": ("visual_feature_dim", "au_names", "face_size", "backbone", "freeze_backbone", "backbone_chunk_size",
               "backbone_config", "backbone_pooling", "image_mean", "image_std"),
    "audio": ("speech_encoder_config", "audio_feature_dim", "sampling_rate", "freeze_backbone", "speech_encoder_name",
              "speech_layers", "max_audio_s", "cache_dtype", "encoder_window_s"),
}
MODEL_CLASSES = {"visual": EmiVisualModel, "audio": EmiAudioModel}
CONFIG_CLASSES = {"visual": EmiVisualConfig, "audio": EmiAudioConfig}


def temporal_overrides(args: TrainingArguments, modality: str) -> dict:
    """Config fields of the temporal model set in `args` (others keep the config's defaults), and the loss."""
    overrides = {name: getattr(args, name) for name in MODEL_SIZE_FIELDS if getattr(args, name) is not None}
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
    """Effective temporal hyperparameters (under the config's names) and parameter counts, for results.json."""
    config = getattr(model.config, "visual_config", None) or model.config
    summary = {name: getattr(config, name) for name in MODEL_SIZE_FIELDS if hasattr(config, name)}
    summary["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    summary["total_parameters"] = sum(p.numel() for p in model.parameters())
    return summary
