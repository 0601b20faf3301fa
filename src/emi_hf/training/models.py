"""The model a training run starts from: a new temporal part on a kept backbone, a trained checkpoint, or fusion.

`build_model(args, metadata, root)` returns `(model, note)`; the note says where the weights came from (it is
logged and recorded in results.json as `model_source`). Visual, audio and text models get a new temporal part sized
by the model-size arguments (`MODEL_SIZE_FIELDS`, the config's defaults where unset); the inputs description, the
frozen backbone and its provenance record (`emi_hf.provenance`) come from a base model, and the features' metadata
must match it (AU names, audio frame width, labels). Without a base model, training stops
(`MissingBaseModelError`) unless told `--no-base-model` (a features-only model, recorded as such).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ..models.configuration_emi import FUSION_MODALITIES, EmiAudioConfig, EmiTextConfig, EmiVisualConfig
from ..encoders.setup import check_input_dims
from ..errors import EmiUsageError, loading
from ..models.modeling_fusion_emi import MODEL_CLASSES, EmiFusionModel
from ..errors import EmiError, EmiUsageError
from ..provenance import BACKBONE_NAMES, base_record, describe, no_backbone_record
from .arguments import MODEL_SIZE_FIELDS, EmiTrainingArguments

# Config fields that describe the inputs and the frozen backbone: taken from the base checkpoint.
BACKBONE_FIELDS = {
    "visual": ("visual_feature_dim", "au_names", "face_size", "backbone", "freeze_backbone", "backbone_chunk_size",
               "backbone_config", "backbone_pooling", "image_mean", "image_std"),
    "audio": ("speech_encoder_config", "audio_feature_dim", "sampling_rate", "freeze_backbone", "speech_encoder_name",
              "speech_layers", "max_audio_s", "cache_dtype", "encoder_window_s", "speech_head_labels"),
    "text": ("text_encoder_config", "text_feature_dim", "text_encoder_name", "freeze_backbone", "max_text_tokens",
             "asr_backend", "asr_model", "asr_language"),
}
CONFIG_CLASSES = {modality: model_class.config_class for modality, model_class in MODEL_CLASSES.items()}


def temporal_overrides(args: EmiTrainingArguments, modality: str) -> dict:
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
        raise EmiUsageError(f"{source}: a text model needs features with text_features; extract with "
                            "`emi-hf extract --text-encoder ID --transcripts FILE` (or --asr-model ID).")


def _check_model_fits_features(config, metadata: dict, modality: str, source: str) -> None:
    if modality == "text":
        _require_text_features(metadata, source)
    if modality == "visual" and list(config.au_names) != list(metadata["au_names"]):
        raise EmiUsageError(
            f"{source} expects the AUs {list(config.au_names)} but the features have {list(metadata['au_names'])}: "
            "use the base model saved with these features (extraction folder's base_visual) or re-extract."
        )
    check_input_dims(config, metadata, modality, source)
    if list(config.label_names) != list(metadata["label_names"]):
        raise EmiUsageError(f"{source} regresses {list(config.label_names)} but the features are labeled "
                            f"{list(metadata['label_names'])}.")


def build_unimodal_model(modality: str, args: EmiTrainingArguments, metadata: dict, root: Path,
                         base_model: str | os.PathLike | None = None) -> tuple[torch.nn.Module, str]:
    """
    A new visual, audio or text model for training: temporal part from the size arguments (random init), inputs
    description and frozen backbone from, in order, `init_from` (everything, trained), `base_model` /
    `args.base_model`, the features folder's `base_visual` / `base_audio` / `base_text`. Without any of them,
    `args.no_base_model` builds a features-only model from the features' metadata (its backbone is a placeholder,
    recorded as none: raw inputs are refused with it); otherwise `MissingBaseModelError`. (A fusion built anew
    thus keeps the base models the features have, and is features-only where they have none.) Returns (model, note).
    """
    model_class = MODEL_CLASSES[modality]
    if args.init_from:
        with loading(args.init_from, f"{modality} model (--init-from)"):
            model = model_class.from_pretrained(args.init_from)
        model.config.loss_type = args.loss
        _check_model_fits_features(model.config, metadata, modality, args.init_from)
        return model, f"{modality} model: initialised from the trained checkpoint {args.init_from} (size flags ignored)"
    base_dir = base_model or args.base_model
    if base_dir is not None and args.no_base_model:
        raise EmiUsageError("--base-model and --no-base-model ask for opposite things: pass one of them.")
    overrides = temporal_overrides(args, modality)
    if base_dir is not None:
        return _on_base_backbone(modality, base_dir, metadata, overrides)
    try:
        base_dir = features_base_model(modality, metadata, root)
    except MissingBaseModelError:
        if not args.no_base_model:
            raise
        return _features_only_model(modality, metadata, root, overrides)
    return _on_base_backbone(modality, base_dir, metadata, overrides, root)


class MissingBaseModelError(EmiError, ValueError):
    """Training found no base model for a modality and was not told to train a features-only model."""


def features_base_model(modality: str, metadata: dict, root: Path) -> Path:
    """The features folder's base model of `modality` (named in emi_features.json); `MissingBaseModelError`, naming
    the folder and the flags, when it is not there."""
    named = metadata.get(f"{modality}_base_model")
    folder = Path(root) / (named or f"base_{modality}")
    if named and folder.is_dir():
        return folder
    why = (f"{folder} is missing (emi_features.json names it)" if named else
           f"there is no {folder} (emi_features.json names no base_{modality} folder: features from `emi-hf "
           "import-features`, `make_feature_dataset` or a bare DatasetDict have none)")
    raise MissingBaseModelError(
        f"The {modality} model needs a base model whose {BACKBONE_NAMES[modality]} made the features in {root}, but "
        f"{why}. Without it the new model's {BACKBONE_NAMES[modality]} would be random: it could score these cached "
        "features, but never raw video or audio. Pass --base-model FOLDER (the Emi model saved as "
        f"base_{modality}/ by the `emi-hf extract` run that made these features), or --no-base-model to train a "
        "features-only model on purpose (its checkpoint records that it has no backbone; predict, stream and the "
        "demo then refuse raw inputs with it)."
    )


def _features_only_model(modality: str, metadata: dict, root: Path, overrides: dict) -> tuple[torch.nn.Module, str]:
    """`--no-base-model`: a model whose inputs description comes from the features' metadata and whose backbone is an
    untrained placeholder, recorded as none."""
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
    config.backbone_provenance = no_backbone_record(root)
    note = (f"{modality} backbone: none (--no-base-model): a features-only model; it scores cached features, and "
            "predict / stream / the demo refuse raw inputs with it")
    return MODEL_CLASSES[modality](config), note


def _on_base_backbone(modality: str, base_dir, metadata: dict, overrides: dict,
                      features_root: Path | None = None) -> tuple[torch.nn.Module, str]:
    """A new model whose inputs description, backbone weights and their provenance record are those of the model
    saved in `base_dir` (`features_root`: the features folder it belongs to, for a base without a record)."""
    model_class = MODEL_CLASSES[modality]
    with torch.random.fork_rng():  # loading draws no numbers from the seeded stream the new model is built from
        with loading(base_dir, f"base {modality} model"):
            base = model_class.from_pretrained(base_dir)
    kept = {}
    for name in BACKBONE_FIELDS[modality]:
        value = getattr(base.config, name)
        kept[name] = value.to_dict() if hasattr(value, "to_dict") else value
    record = base_record(base, modality, base_dir, features_root)
    config = CONFIG_CLASSES[modality](**kept, backbone_provenance=record, label_names=list(metadata["label_names"]),
                                      **overrides)
    _check_model_fits_features(config, metadata, modality, str(base_dir))
    model = model_class(config)
    model.backbone.load_state_dict(base.backbone.state_dict())
    return model, f"{modality} backbone: weights kept from {base_dir} ({describe(record, modality)})"


def _fusion_sources(args: EmiTrainingArguments) -> dict:
    """{modality: trained checkpoint folder} of the fusion's `--visual-model` / `--audio-model` / `--text-model`."""
    given = {"visual": args.visual_model, "audio": args.audio_model, "text": args.text_model}
    return {m: path for m, path in given.items() if path}


def build_fusion_model(args: EmiTrainingArguments, metadata: dict, root: Path) -> tuple[EmiFusionModel, str]:
    """The fusion model of a run: of the trained checkpoints given (late: at least one; any set of modalities), or,
    for joint / feature fusion without them, of new models of `--fusion-modalities` (default: visual, audio, and
    text when the features have it)."""
    sources = _fusion_sources(args)
    fusion_type = args.fusion_mode if args.fusion_mode in ("feature", "cross-attention") else "late"
    options = {"fusion_type": fusion_type, "modality_dropout": args.modality_dropout}
    if fusion_type == "cross-attention":
        options.update(cross_attention_heads=args.cross_attention_heads, cross_attention_dim=args.cross_attention_dim)
    if sources:
        for modality, path in sources.items():  # a name that cannot be loaded: the known error naming the option
            with loading(path, f"{modality} model (--{modality}-model)"):
                MODEL_CLASSES[modality].config_class.from_pretrained(path)
        model = EmiFusionModel.from_unimodal(**{m: str(path) for m, path in sources.items()}, **options)
        note = "fusion of " + ", ".join(f"{m} {path}" for m, path in sources.items())
    elif args.fusion_mode == "late":
        raise EmiUsageError("--fusion-mode late needs trained checkpoints: --visual-model, --audio-model and/or "
                            "--text-model.")
    else:
        modalities = args.fusion_modalities or [m for m in FUSION_MODALITIES if m != "text" or metadata.get("text_feature_dim")]
        unknown = sorted(set(modalities) - set(FUSION_MODALITIES))
        if unknown:
            raise EmiUsageError(f"--fusion-modalities {unknown}: the modalities are {list(FUSION_MODALITIES)}.")
        built = {m: build_unimodal_model(m, args, metadata, root) for m in modalities}
        model = EmiFusionModel.from_unimodal(**{m: pair[0] for m, pair in built.items()}, **options)
        note = f"{args.fusion_mode} fusion from new models; " + "; ".join(pair[1] for pair in built.values())
    for modality, config in model.config.sub_configs_of_modalities().items():
        _check_model_fits_features(config, metadata, modality, f"the {modality} model")
        config.loss_type = args.loss
    return model, note


def build_model(args: EmiTrainingArguments, metadata: dict, root: Path):
    if args.modality == "fusion":
        return build_fusion_model(args, metadata, root)
    return build_unimodal_model(args.modality, args, metadata, root)


SEQUENCE_COLUMNS = {"visual": "visual_features", "audio": "audio_features", "text": "text_features"}


def set_trained_windows(model, train_split, args: EmiTrainingArguments) -> dict[str, int]:
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
