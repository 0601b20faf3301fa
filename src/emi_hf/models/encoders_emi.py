"""Face backbones and speech encoders chosen by configuration.

Face backbone (`EmiVisualConfig.backbone`), crops `[N, 3, face_size, face_size]` -> `[N, visual_feature_dim]`:

| spec | what runs | embedding |
| --- | --- | --- |
| `"resnet18"` (default) | torchvision ResNet18, 112 px, ImageNet stats | pooled penultimate, 512 |
| `"torchvision:NAME"` | `torchvision.models.get_model(NAME)`, classifier's last `Linear` removed | pooled penultimate |
| `"timm:NAME"` | `timm.create_model(NAME, num_classes=0)` | timm's pooled features |
| a transformers id / folder | `AutoModel.from_config(backbone_config)` (CLIP/SigLIP: the vision tower) | `backbone_pooling` |

Transformers pooling per family (`TRANSFORMERS_POOLING`): DINOv2, CLIP and SigLIP vision towers take their
`pooler_output` (the CLS token after the final layer norm; SigLIP's attention-pooling head); ViT takes the CLS token of
`last_hidden_state` (after the final layer norm; ViT's tanh pooler is not used); any other family its `pooler_output`
when it has one, else the CLS token. Input size and normalisation: torchvision's weights metadata, timm's
`pretrained_cfg`, the transformers model's own image processor (`describe_face_backbone`).

Speech encoder (`EmiAudioConfig.speech_encoder_config`): any transformers audio encoder that takes a waveform
(wav2vec2, HuBERT, WavLM, data2vec-audio, ...) or the Whisper encoder, which takes log-mel features made by its own
`WhisperFeatureExtractor` from the waveform (`whisper_encode_window`). `speech_layers` picks hidden states
(`select_hidden_layers`).

This file is copied next to the weights with ``modeling_emi.py`` for trust_remote_code: it imports only torch,
torchvision and transformers at module level; timm only inside the functions that need it, so a checkpoint with a
ResNet18 or transformers backbone loads without timm.
"""

from __future__ import annotations

import os
from collections import Counter

import torch
from torch import nn

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
TORCHVISION_PREFIX, TIMM_PREFIX = "torchvision:", "timm:"
TRANSFORMERS_POOLING = {"dinov2": "pooler", "clip_vision_model": "pooler", "siglip_vision_model": "pooler",
                        "vit": "cls"}
"""Default `backbone_pooling` of transformers vision families (others: "pooler" when they have one, else "cls")."""
VISION_TOWERS = ("clip", "siglip", "siglip2", "chinese_clip", "altclip")
"""Composite model types whose `vision_config` is the face backbone."""


class BackboneError(ValueError):
    """A face backbone choice or weights file that cannot be used; the message says what to pass instead. `emi-hf`
    prints it (and its subclasses) as one line like the known errors of `emi_hf.errors` (`emi_known_error`): this file
    is also the remote code of saved models, so it imports nothing of emi_hf."""

    emi_known_error = True


class BackboneFileNotFoundError(BackboneError, FileNotFoundError):
    """A backbone weights file that is not there."""


class BackboneUnavailableError(BackboneError, OSError):
    """Backbone weights or files that cannot be had here (offline, not in the cache, no image processor)."""


class BackboneDependencyError(BackboneError, ImportError):
    """The backbone's library is not installed."""


def backbone_family(spec: str) -> str:
    """`"resnet18"`, `"torchvision"`, `"timm"` or `"transformers"` (any other spec: a transformers id or folder)."""
    if spec == "resnet18":
        return "resnet18"
    if spec.startswith(TORCHVISION_PREFIX):
        return "torchvision"
    if spec.startswith(TIMM_PREFIX):
        return "timm"
    return "transformers"


def _import_timm():
    try:
        import timm
    except ImportError as error:
        raise BackboneDependencyError("This face backbone is a timm model: `pip install timm` to load or build "
                                      "it.") from error
    return timm


# ----------------------------------------------------------------------------------------------------------------------
# Building a face backbone: module and embedding size
# ----------------------------------------------------------------------------------------------------------------------


def _strip_torchvision_classifier(model: nn.Module, name: str) -> int:
    """Replaces the last `Linear` of the classifier (`fc`, `classifier`, `heads`, `head`) by `Identity`, in place;
    returns its `in_features` (the embedding size)."""
    for attribute in ("fc", "classifier", "heads", "head"):
        head = getattr(model, attribute, None)
        if isinstance(head, nn.Linear):
            setattr(model, attribute, nn.Identity())
            return head.in_features
        if isinstance(head, nn.Sequential):
            linears = [i for i, module in enumerate(head) if isinstance(module, nn.Linear)]
            if linears:
                width = head[linears[-1]].in_features
                head[linears[-1]] = nn.Identity()
                return width
    raise BackboneError(f"torchvision:{name} has no Linear classifier (fc/classifier/heads/head) to remove; use a "
                        "classification model such as torchvision:resnet50 or torchvision:mobilenet_v2.")


def torchvision_trunk(name: str) -> tuple[nn.Module, int]:
    """A torchvision classification model with its classifier removed (random weights) and its embedding size."""
    from torchvision.models import get_model, list_models

    if name not in list_models():
        raise BackboneError(f"torchvision has no model {name!r} (torchvision.models.list_models() lists them).")
    model = get_model(name, weights=None)
    return model, _strip_torchvision_classifier(model, name)


def timm_trunk(name: str, pretrained: bool = False) -> tuple[nn.Module, int]:
    """`timm.create_model(name, num_classes=0)` (pooled features) and its embedding size."""
    timm = _import_timm()
    model = timm.create_model(name, pretrained=pretrained, num_classes=0)
    return model, int(model.num_features)


class TransformersVisionTrunk(nn.Module):
    """A transformers vision model (`AutoModel.from_config(backbone_config)`) -> pooled `[N, hidden_size]`."""

    def __init__(self, backbone_config: dict, pooling: str | None = None):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        config = dict(backbone_config)
        config = AutoConfig.for_model(config.pop("model_type"), **config)
        self.model = AutoModel.from_config(config)
        self.pooling = pooling or TRANSFORMERS_POOLING.get(config.model_type, "pooler")

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        output = self.model(pixel_values=pixel_values)
        pooled = getattr(output, "pooler_output", None)
        if self.pooling == "pooler" and pooled is not None:
            return pooled
        if self.pooling == "mean":
            return output.last_hidden_state[:, 1:].mean(dim=1)
        return output.last_hidden_state[:, 0]


# ----------------------------------------------------------------------------------------------------------------------
# Describing a face backbone: the config fields it implies
# ----------------------------------------------------------------------------------------------------------------------


def _transformers_vision_config(name_or_path: str, revision: str | None = None):
    """The (vision tower's) config of a transformers model id or folder."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name_or_path, revision=revision)
    if config.model_type in VISION_TOWERS:
        config = config.vision_config
    return config


def _image_processor_geometry(name_or_path: str, revision: str | None = None) -> tuple[int, list, list]:
    """(input side, mean, std) from a transformers model's own image processor."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(name_or_path, revision=revision)
    except OSError as error:
        raise BackboneUnavailableError(f"{name_or_path} has no image processor (preprocessor_config.json), which "
                                       f"gives the backbone's input size and normalisation ({error}).") from error
    size = processor.crop_size if getattr(processor, "do_center_crop", False) else processor.size
    size = dict(size) if size is not None else {}
    side = size.get("height") or size.get("shortest_edge")
    return int(side), [float(v) for v in processor.image_mean], [float(v) for v in processor.image_std]


def describe_face_backbone(spec: str, revision: str | None = None) -> dict:
    """The `EmiVisualConfig` fields a face backbone implies: `backbone`, `visual_feature_dim`, `face_size`,
    `image_mean`, `image_std` (and `backbone_config` for a transformers model)."""
    family = backbone_family(spec)
    if family == "resnet18":
        return dict(backbone=spec, visual_feature_dim=512, face_size=112, image_mean=IMAGENET_MEAN,
                    image_std=IMAGENET_STD)
    if family == "torchvision":
        from torchvision.models import get_model_weights

        name = spec[len(TORCHVISION_PREFIX):]
        _, width = torchvision_trunk(name)
        try:
            transforms = get_model_weights(name).DEFAULT.transforms()
            side, mean, std = int(transforms.crop_size[0]), list(transforms.mean), list(transforms.std)
        except (ValueError, KeyError, AttributeError):  # a model without published weights
            side, mean, std = 224, IMAGENET_MEAN, IMAGENET_STD
        return dict(backbone=spec, visual_feature_dim=width, face_size=side, image_mean=mean, image_std=std)
    if family == "timm":
        timm = _import_timm()
        model, width = timm_trunk(spec[len(TIMM_PREFIX):])
        data = timm.data.resolve_model_data_config(model)
        return dict(backbone=spec, visual_feature_dim=width, face_size=int(data["input_size"][-1]),
                    image_mean=list(data["mean"]), image_std=list(data["std"]))
    vision = _transformers_vision_config(spec, revision)
    side, mean, std = _image_processor_geometry(spec, revision)
    return dict(backbone=os.fspath(spec), backbone_config=vision.to_dict(), visual_feature_dim=int(vision.hidden_size),
                face_size=side, image_mean=mean, image_std=std)


# ----------------------------------------------------------------------------------------------------------------------
# Face backbone weights
# ----------------------------------------------------------------------------------------------------------------------


def read_state_dict(path: str | os.PathLike) -> dict:
    """A `.safetensors` or `.pth`/`.pt`/`.bin` state dict (unwrapped from a `{"state_dict": ...}` / `{"model": ...}`
    training checkpoint)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BackboneFileNotFoundError(f"Backbone weights file {path!r} does not exist.")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise BackboneError(f"{path} does not hold a state dict (got {type(state).__name__}).")
    return state


def fit_state_dict(trunk: nn.Module, state: dict, source: str) -> dict:
    """`state` renamed to the trunk's keys (a `module.`/`backbone.` prefix dropped, or the `model.` prefix of a
    transformers trunk added, for a CLIP-like model in place of `vision_model.`); keys the trunk lacks (the removed
    classifier, a text tower) are dropped. Raises when any trunk key is missing."""
    wanted = set(trunk.state_dict())
    best, best_missing = {}, wanted
    for transform in (lambda k: k, lambda k: k.removeprefix("module."), lambda k: k.removeprefix("backbone."),
                      lambda k: "model." + k, lambda k: "model." + k.removeprefix("vision_model.")):
        renamed = {transform(k): v for k, v in state.items()}
        missing = wanted - set(renamed)
        if len(missing) < len(best_missing):
            best, best_missing = {k: v for k, v in renamed.items() if k in wanted}, missing
    if best_missing:
        shown = sorted(best_missing)[:5]
        raise BackboneError(f"The weights in {source} do not fit the face backbone: {len(best_missing)} of its tensors "
                            f"are missing (e.g. {shown}). Is it a checkpoint of the same architecture?")
    return best


# ----------------------------------------------------------------------------------------------------------------------
# Unfreezing the last N blocks
# ----------------------------------------------------------------------------------------------------------------------


def backbone_blocks(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's sequence of blocks: a ResNet's residual blocks in order, else the `ModuleList`/`Sequential`
    with the most children of one class (transformer layers, timm `blocks`, MobileNet `features`), the later one on a
    tie."""
    layers = [getattr(backbone, f"layer{i}", None) for i in range(1, 5)]
    if all(isinstance(layer, nn.Sequential) for layer in layers):
        return [block for layer in layers for block in layer]
    best, best_count = [], 0
    for module in backbone.modules():
        if isinstance(module, (nn.ModuleList, nn.Sequential)) and len(module) > 1:
            count = Counter(type(child) for child in module).most_common(1)[0][1]
            if count >= best_count and count > 1:
                best, best_count = list(module), count
    return best


def unfreeze_last_blocks(backbone: nn.Module, count: int) -> list[nn.Module]:
    """Makes the last `count` blocks of `backbone` (`backbone_blocks`) and every parameter registered after them
    (final norms, poolers) trainable, the rest frozen. Returns the trainable blocks."""
    blocks = backbone_blocks(backbone)
    if not blocks:
        raise ValueError(f"trainable_backbone_layers: no sequence of blocks found in {type(backbone).__name__}.")
    backbone.requires_grad_(False)
    tail = blocks[-min(count, len(blocks)):]
    first = {id(p) for p in tail[0].parameters()}
    trainable = False
    for parameter in backbone.parameters():
        trainable = trainable or id(parameter) in first
        parameter.requires_grad_(trainable)
    return tail


def enable_model_checkpointing(model) -> None:
    """A transformers model's activation (gradient) checkpointing, non-reentrant, under transformers 5's name when
    it has it."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def enable_backbone_checkpointing(backbone: nn.Module) -> bool:
    """Gradient checkpointing in the backbone where its library offers it (transformers, timm). Returns whether
    it was enabled."""
    inner = getattr(backbone, "model", backbone)
    if hasattr(inner, "gradient_checkpointing_enable") and getattr(inner, "supports_gradient_checkpointing", False):
        enable_model_checkpointing(inner)
        return True
    if hasattr(backbone, "set_grad_checkpointing"):
        backbone.set_grad_checkpointing(True)
        return True
    return False


# ----------------------------------------------------------------------------------------------------------------------
# Speech encoders: building, layer selection, Whisper
# ----------------------------------------------------------------------------------------------------------------------


class SpeechEmotionHead(nn.Module):
    """The regression head of audEERING's emotion models (`audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim`,
    their `RegressionHead`): dropout -> `dense` -> tanh -> dropout -> `out_proj`, over the clip's mean-pooled last
    hidden states; outputs e.g. arousal, dominance, valence. Attached to a speech encoder as `emotion_head`."""

    def __init__(self, hidden_size: int, num_outputs: int, dropout: float = 0.1):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_outputs)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(pooled)))))


def attach_speech_head(encoder: nn.Module, labels, state: dict | None = None) -> nn.Module:
    """Adds `SpeechEmotionHead` (`len(labels)` outputs) to `encoder` as `encoder.emotion_head` (registered last, so
    that fine-tuning the last blocks trains it too), with the weights `state` when given."""
    config = encoder.config
    head = SpeechEmotionHead(config.hidden_size, len(labels), float(getattr(config, "final_dropout", 0.1) or 0.0))
    if state is not None:
        head.load_state_dict(state)
    encoder.emotion_head = head
    return encoder


def build_speech_encoder(encoder_config, head_labels=None) -> nn.Module:
    """The speech encoder of a config: `AutoModel.from_config`, or the encoder alone of a Whisper config; with
    `head_labels`, an audEERING-style regression head (`attach_speech_head`)."""
    from transformers import AutoModel

    if encoder_config.model_type == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(encoder_config)
    encoder = AutoModel.from_config(encoder_config)
    return attach_speech_head(encoder, head_labels) if head_labels else encoder


HEAD_PREFIX = "classifier."  # audEERING's EmotionModel: `wav2vec2` (the encoder) + `classifier` (RegressionHead)


def read_speech_head(name_or_path, revision: str | None = None) -> tuple[list[str], dict] | None:
    """(labels, head state) of a speech model saved in audEERING's layout (`classifier.dense` and
    `classifier.out_proj` beside the encoder's weights, labels from `id2label`); None for a plain encoder."""
    import json
    import os

    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file

    def local(filename):
        if os.path.isdir(name_or_path):
            path = os.path.join(name_or_path, filename)
            return path if os.path.isfile(path) else None
        try:
            return hf_hub_download(str(name_or_path), filename, revision=revision)
        except Exception:  # noqa: BLE001 - not there (or offline): no head
            return None

    state = None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = local(filename)
        if path is not None:
            state = load_file(path) if path.endswith(".safetensors") else torch.load(path, map_location="cpu",
                                                                                    weights_only=True)
            break
    head = {k[len(HEAD_PREFIX):]: v for k, v in (state or {}).items() if k.startswith(HEAD_PREFIX)}
    if not {"dense.weight", "out_proj.weight"} <= set(head):
        return None
    config = json.loads(open(local("config.json"), encoding="utf-8").read())
    outputs = int(head["out_proj.weight"].shape[0])
    names = config.get("id2label") or {}
    labels = [str(names.get(str(i), names.get(i, f"head_{i}"))) for i in range(outputs)]
    return labels, {k: v for k, v in head.items() if k.split(".")[0] in ("dense", "out_proj")}


def load_pretrained_speech_encoder(name_or_path, revision: str | None = None) -> nn.Module:
    """A pretrained speech encoder by Hub id or folder (the encoder alone of a Whisper model); a model in audEERING's
    layout keeps its regression head (`emotion_head`, labels in `emotion_head_labels`)."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(name_or_path, revision=revision)
    if model.config.model_type == "whisper":
        return model.get_encoder()
    head = read_speech_head(name_or_path, revision)
    if head is not None:
        attach_speech_head(model, head[0], head[1])
        model.emotion_head_labels = head[0]
    return model


def speech_head_outputs(encoder: nn.Module, hidden: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor | None:
    """The encoder's `emotion_head` over each clip's mean of its valid last hidden states `[B, T, D]` (mask
    `[B, T]`), repeated on every frame: `[B, T, outputs]`; None without a head."""
    head = getattr(encoder, "emotion_head", None)
    if head is None:
        return None
    weights = frame_mask.to(hidden.dtype).unsqueeze(-1)
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    outputs = head(pooled.to(head.dense.weight.dtype)).float()
    return outputs.unsqueeze(1).expand(-1, hidden.shape[1], -1)


def select_hidden_layers(output, layers: list[int] | None) -> torch.Tensor:
    """`last_hidden_state` `[B, T, D]` when `layers` is None, else the chosen `hidden_states` (0 = the input of the
    first layer, i = the output of layer i) side by side: `[B, T, len(layers) * D]`."""
    if layers is None:
        return output.last_hidden_state
    return torch.cat([output.hidden_states[i] for i in layers], dim=-1)


def whisper_window_samples(encoder_config, hop_length: int = 160) -> int:
    """Samples of the Whisper encoder's fixed input (30 s for the published models)."""
    return int(encoder_config.max_source_positions) * 2 * hop_length


def whisper_encode_window(encoder: nn.Module, layers, input_values: torch.Tensor, attention_mask: torch.Tensor):
    """One window of waveforms `[B, S]` (mask `[B, S]`) through the Whisper encoder: each clip's valid samples to
    log-mel by `WhisperFeatureExtractor` (padded to the encoder's fixed length, as Whisper was trained), the encoder,
    and its frames cut to the clip's length (one frame per 320 samples, 50 Hz) -> (`[B, T, D']`, mask `[B, T]`)."""
    from transformers import WhisperFeatureExtractor

    config = encoder.config
    capacity = whisper_window_samples(config)
    extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins, sampling_rate=16000)
    extractor.n_samples, extractor.nb_max_frames = capacity, capacity // extractor.hop_length
    lengths = attention_mask.long().sum(dim=1).clamp(max=capacity)
    waveforms = [row[: max(int(n), 1)].float().cpu().numpy() for row, n in zip(input_values, lengths)]
    mel = extractor(waveforms, sampling_rate=16000, padding="max_length", return_tensors="pt").input_features
    parameter = next(encoder.parameters())
    output = encoder(mel.to(parameter.device, parameter.dtype), output_hidden_states=layers is not None)
    hidden = select_hidden_layers(output, layers)
    frames = min(int(hidden.shape[1]), -(-int(input_values.shape[1]) // 320))
    frame_mask = torch.arange(frames, device=hidden.device)[None] < ((lengths + 319) // 320)[:, None].to(hidden.device)
    return hidden[:, :frames], frame_mask & (lengths > 0)[:, None].to(hidden.device)


__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "TRANSFORMERS_POOLING", "TransformersVisionTrunk", "backbone_blocks",
    "backbone_family", "build_speech_encoder", "describe_face_backbone",
    "enable_backbone_checkpointing", "enable_model_checkpointing", "fit_state_dict", "load_pretrained_speech_encoder",
    "read_state_dict", "select_hidden_layers", "timm_trunk", "torchvision_trunk",
    "unfreeze_last_blocks", "whisper_encode_window", "whisper_window_samples",
]
