"""Backbones of the emi-hf models, and what makes them fast at inference.

| backbone | input -> output | here |
| --- | --- | --- |
| face: torchvision ResNet18, no classifier | crops `[N, 3, 112, 112]` -> `[N, 512]` | ImageNet weights, BatchNorm folding |
| speech: a transformers audio encoder | waveforms `[B, S]` -> `[B, T_a, D_a]` | windows, chunked conv feature encoder |

Other face backbones (torchvision, timm, transformers) and the Whisper encoder are built in ``encoders_emi.py``.

Both run frozen by default (`FrozenBackboneMixin`), under bfloat16 autocast when
`config.backbone_precision == "bfloat16"` (`backbone_context`).

This file is copied next to the weights by ``save_pretrained`` with ``modeling_emi.py``, which imports it relatively:
it imports only torch, torchvision and transformers (and huggingface_hub / safetensors, which transformers brings).
"""

from __future__ import annotations

import contextlib
import copy
import os
import types

import torch
from torch import nn

from .encoders_emi import (
    BackboneError,
    BackboneFileNotFoundError,
    BackboneUnavailableError,
    TIMM_PREFIX,
    TORCHVISION_PREFIX,
    TransformersVisionTrunk,
    backbone_family,
    fit_state_dict,
    read_state_dict,
    select_hidden_layers,
    speech_head_outputs,
    timm_trunk,
    torchvision_trunk,
    unfreeze_last_blocks,
    whisper_encode_window,
    whisper_window_samples,
)

RESNET18_IMAGENET_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
"""torchvision's file of the same weights: read from torchvision's cache where an earlier version put it."""
RESNET18_HUB_REPO = "timm/resnet18.tv_in1k"
"""torchvision's IMAGENET1K_V1 ResNet18 weights on the Hub (timm's copy, same parameter names)."""
RESNET18_HUB_FILE = "model.safetensors"

MIN_WAVEFORM_SAMPLES = 400
"""The shortest waveform a wav2vec2 conv feature encoder turns into one frame (25 ms at 16 kHz)."""

CONV_FEATURE_CHUNK_FRAMES = 250
"""Output frames (5 s at 50 Hz) per chunk of the chunked conv feature encoder."""


def backbone_trains(config) -> bool:
    """Whether any of the backbone is trained: `freeze_backbone` off, or `trainable_backbone_layers` > 0."""
    return not config.freeze_backbone or getattr(config, "trainable_backbone_layers", 0) > 0


@contextlib.contextmanager
def backbone_context(config, device: torch.device):
    """No gradients into a frozen backbone (`backbone_trains`), and bfloat16 autocast when
    `config.backbone_precision == "bfloat16"` (else the caller's precision: float32, or the autocast of a
    mixed-precision training run)."""
    bfloat16 = config.backbone_precision == "bfloat16"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bfloat16 else contextlib.nullcontext()
    with torch.set_grad_enabled(torch.is_grad_enabled() and backbone_trains(config)), autocast:
        yield


class FrozenBackboneMixin:
    """For a model with a `backbone` submodule: a frozen one (`config.freeze_backbone`) has no gradients and stays in
    eval mode (BatchNorm statistics, dropout) whatever `train()` is called with; with `trainable_backbone_layers=N`
    only its last N blocks (`encoders_emi.unfreeze_last_blocks`) train and follow `train()`."""

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_backbone:
            self.backbone.eval()
            for block in getattr(self, "_trainable_blocks", ()):
                block.train(mode)
        return self

    def _freeze(self):
        if self.config.freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
            layers = getattr(self.config, "trainable_backbone_layers", 0)
            # a plain list attribute, not a ModuleList: the blocks stay registered under `backbone` only
            self.__dict__["_trainable_blocks"] = unfreeze_last_blocks(self.backbone, layers) if layers else []


# ----------------------------------------------------------------------------------------------------------------------
# Face backbone: ResNet18
# ----------------------------------------------------------------------------------------------------------------------


def build_resnet18_trunk() -> nn.Module:
    """torchvision ResNet18 with its classifier removed: `[N, 3, H, W]` -> `[N, 512]`. Random weights."""
    from torchvision.models import resnet18

    trunk = resnet18(weights=None)
    trunk.fc = nn.Identity()
    return trunk


def init_resnet_module(module: nn.Module) -> None:
    """Random initialisation of a ResNet's `Conv2d` or `BatchNorm2d`, as torchvision's ResNet does it (the models'
    `_init_weights` calls it for the face backbone)."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
        if module.running_mean is not None:
            module.running_mean.zero_()
            module.running_var.fill_(1.0)
            module.num_batches_tracked.zero_()


def load_resnet18_imagenet_state_dict(weights: str | os.PathLike | None = None) -> dict:
    """
    The ImageNet ResNet18 weights (torchvision's IMAGENET1K_V1), without the classifier.

    `weights` is a local `.pth` / `.safetensors` file; `None` takes `timm/resnet18.tv_in1k` from the Hugging Face
    cache (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`), fetching it there once when the Hub is reachable and
    not offline (`hub_offline`); a copy torchvision cached earlier (`$TORCH_HOME/hub/checkpoints`) still serves when
    the Hub cannot. Otherwise the error says what to download and where.
    """
    if weights is not None:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise BackboneFileNotFoundError(f"ResNet18 weights file {path!r} does not exist.")
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state_dict = load_file(path)
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    else:
        state_dict = _cached_or_downloaded_imagenet_weights()
    return {k: v for k, v in state_dict.items() if not k.startswith("fc.")}


def hub_offline() -> bool:
    """Downloads are off: huggingface_hub's own check (`HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` as it reads them:
    `1`, `true`, `yes`, `on`; `0` or `false` is online), or `EMI_HF_OFFLINE` read the same way."""
    from huggingface_hub import constants

    return bool(constants.is_offline_mode()) or \
        os.environ.get("EMI_HF_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _cached_or_downloaded_imagenet_weights() -> dict:
    """The full ImageNet state dict from the Hugging Face cache (fetched into it when allowed), else from
    torchvision's cache where an earlier version left it."""
    from huggingface_hub import constants, hf_hub_download
    from safetensors.torch import load_file

    offline = hub_offline()
    try:
        return load_file(hf_hub_download(RESNET18_HUB_REPO, RESNET18_HUB_FILE, local_files_only=offline))
    except Exception as error:  # offline and not cached, no connection, ...: huggingface_hub raises many kinds
        from torch.hub import get_dir

        legacy = os.path.join(get_dir(), "checkpoints", os.path.basename(RESNET18_IMAGENET_URL))
        if os.path.isfile(legacy):
            return torch.load(legacy, map_location="cpu", weights_only=True)
        where = f"the Hugging Face cache ({constants.HF_HUB_CACHE})"
        if offline:
            raise BackboneFileNotFoundError(
                f"The ImageNet ResNet18 weights ({RESNET18_HUB_REPO}) are not in {where} and downloads are off "
                f"(HF_HUB_OFFLINE / EMI_HF_OFFLINE). Run `hf download {RESNET18_HUB_REPO} {RESNET18_HUB_FILE}` on a "
                f"connected machine with the same HF_HOME, place torchvision's {os.path.basename(legacy)} at {legacy}, "
                "or pass the file's path."
            ) from error
        raise BackboneUnavailableError(
            f"Could not fetch the ImageNet ResNet18 weights {RESNET18_HUB_REPO}/{RESNET18_HUB_FILE} into {where} "
            f"({type(error).__name__}: {error}). Run `hf download {RESNET18_HUB_REPO} {RESNET18_HUB_FILE}`, or pass "
            "the path of a local copy."
        ) from error


def build_face_backbone(config) -> nn.Module:
    """The face backbone `config.backbone` names, random weights (`load_face_backbone_weights` fills them)."""
    family = backbone_family(config.backbone)
    if family == "resnet18":
        return build_resnet18_trunk()
    if family == "torchvision":
        trunk, width = torchvision_trunk(config.backbone[len(TORCHVISION_PREFIX):])
    elif family == "timm":
        trunk, width = timm_trunk(config.backbone[len(TIMM_PREFIX):])
    else:
        trunk = TransformersVisionTrunk(config.backbone_config, config.backbone_pooling)
        width = int(trunk.model.config.hidden_size)
    if width != config.visual_feature_dim:
        raise BackboneError(
            f"The face backbone {config.backbone!r} gives {width}-d embeddings but visual_feature_dim is "
            f"{config.visual_feature_dim}: build the model with EmiVisualModel.from_backbone({config.backbone!r}), "
            "which takes the sizes from the backbone."
        )
    return trunk


def pretrained_face_backbone_state(config, weights: str | None = None) -> dict:
    """The pretrained weights of `config.backbone` as a state dict of the trunk: `weights` a file path (any family),
    else torchvision's cache (ImageNet `DEFAULT` weights), timm's own loading (Hub or its cache), or the
    transformers model's id / folder."""
    trunk = build_face_backbone(config)
    family = backbone_family(config.backbone)
    if weights is not None and os.path.isfile(os.fspath(weights)):
        return fit_state_dict(trunk, read_state_dict(weights), os.fspath(weights))
    if weights not in (None, "imagenet", "pretrained"):
        raise BackboneFileNotFoundError(f"Backbone weights {weights!r}: no such file (give a .pth or .safetensors "
                                        "path, or leave it out for the backbone's published weights).")
    if family == "resnet18":
        return load_resnet18_imagenet_state_dict(None)
    if family == "torchvision":
        from torchvision.models import get_model

        model = get_model(config.backbone[len(TORCHVISION_PREFIX):], weights="DEFAULT")
        return fit_state_dict(trunk, model.state_dict(), f"torchvision's {config.backbone} weights")
    if family == "timm":
        model, _ = timm_trunk(config.backbone[len(TIMM_PREFIX):], pretrained=True)
        return fit_state_dict(trunk, model.state_dict(), f"timm's {config.backbone} weights")
    from transformers import AutoModel

    model = AutoModel.from_pretrained(config.backbone)
    return fit_state_dict(trunk, model.state_dict(), config.backbone)


def fold_resnet_batchnorm(backbone: nn.Module) -> nn.Module:
    """An eval-mode copy of a torchvision ResNet with every BatchNorm folded into the convolution before it
    (``conv1/bn1``, ``conv2/bn2`` of each block, ``downsample[0]/[1]``); other modules are returned as they are.
    Explicit pairs rather than torch.fx tracing, which patches ``nn.Module.__call__`` process-wide and would break
    modules running in other threads (the embedder runs beside the face detector)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    from torchvision.models.resnet import ResNet

    if not isinstance(backbone, ResNet):
        return backbone
    folded = copy.deepcopy(backbone).eval()
    with torch.no_grad():
        holders = [folded] + [block for layer in (folded.layer1, folded.layer2, folded.layer3, folded.layer4)
                              for block in layer]
        for holder in holders:
            for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
                conv, bn = getattr(holder, conv_name, None), getattr(holder, bn_name, None)
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    setattr(holder, conv_name, fuse_conv_bn_eval(conv, bn))
                    setattr(holder, bn_name, nn.Identity())
            downsample = getattr(holder, "downsample", None)
            if isinstance(downsample, nn.Sequential) and len(downsample) == 2 and \
                    isinstance(downsample[0], nn.Conv2d) and isinstance(downsample[1], nn.BatchNorm2d):
                holder.downsample = nn.Sequential(fuse_conv_bn_eval(downsample[0], downsample[1]))
    folded.requires_grad_(False)
    return folded.to(memory_format=torch.channels_last)


class FaceBackboneRunner:
    """
    Runs a face backbone on crops. At inference (backbone in eval mode, no gradient wanted into it) it runs a copy
    with each BatchNorm folded into the convolution before it (`fold_resnet_batchnorm`: the same function up to
    float rounding, about 20% faster on CPU), rebuilt whenever one of the backbone's weights changes: another
    tensor, another place in memory (`.to()`, `.data =`), another dtype or shape, or an in-place write (the tensor's
    version counter, which `load_state_dict` and `weight.mul_()` advance).

    The runner holds the storages its copy was built from, so that none of their memory can be freed and reused by a
    new tensor at the same address while the addresses are compared. It is a plain attribute of the model, not a
    submodule: never saved, never in the state dict.
    """

    def __init__(self):
        self._folded: nn.Module | None = None
        self._signature: list | None = None
        self._storages: list = []

    def backbone_to_run(self, backbone: nn.Module, config) -> nn.Module:
        """The folded copy at inference; `backbone` itself in training mode or when gradients flow into it."""
        if backbone.training or (torch.is_grad_enabled() and backbone_trains(config)):
            return backbone
        tensors = [*backbone.parameters(), *backbone.buffers()]
        signature = [(t.data_ptr(), t.device, t.dtype, t.shape, t._version) for t in tensors]
        if self._folded is None or signature != self._signature:
            self._folded = fold_resnet_batchnorm(backbone)
            self._signature = signature
            self._storages = [t.untyped_storage() for t in tensors]
        return self._folded

    def embed(self, backbone: nn.Module, config, pixel_values: torch.Tensor) -> torch.Tensor:
        """Embeddings of crops `[N, 3, H, W]` -> `[N, config.visual_feature_dim]` float32, in chunks of
        `config.backbone_chunk_size` crops, under `backbone_context`."""
        chunks = pixel_values.split(config.backbone_chunk_size)
        with backbone_context(config, pixel_values.device):
            runner = self.backbone_to_run(backbone, config)
            embeddings = [runner(chunk.contiguous(memory_format=torch.channels_last)).float() for chunk in chunks]
        if not embeddings:
            return pixel_values.new_zeros(0, config.visual_feature_dim)
        return torch.cat(embeddings)


def embed_distinct_frames(
    embed_faces, pixel_values: torch.Tensor, frame_mask: torch.Tensor, feature_dim: int
) -> torch.Tensor:
    """
    `embed_faces` (crops `[N, 3, H, W]` -> `[N, feature_dim]`) run on the valid frames only and scattered back:
    `[B, T, 3, H, W]` -> `[B, T, feature_dim]`, zeros at masked frames. A frame whose crop equals the previous
    frame's (a source frame repeated by frame-rate conversion) reuses its embedding.
    """
    batch, frames = pixel_values.shape[:2]
    features = pixel_values.new_zeros(batch, frames, feature_dim)
    valid = frame_mask.bool()
    repeat = torch.zeros_like(valid)
    repeat[:, 1:] = valid[:, 1:] & valid[:, :-1] & (pixel_values[:, 1:] == pixel_values[:, :-1]).flatten(2).all(-1)
    distinct = valid & ~repeat
    if distinct.any():
        features[distinct] = embed_faces(pixel_values[distinct]).to(features.dtype)
        source = torch.where(distinct, torch.arange(frames, device=valid.device), 0).cummax(dim=1).values
        features = torch.where(repeat[..., None], features.gather(1, source[..., None].expand_as(features)), features)
    return features


# ----------------------------------------------------------------------------------------------------------------------
# Speech encoder: windows and the chunked conv feature encoder
# ----------------------------------------------------------------------------------------------------------------------


def encode_speech(encoder: nn.Module, config, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None):
    """
    Waveforms `[batch, samples]` (mask `[batch, samples]`, default all valid) through the speech encoder, in
    consecutive windows of `config.encoder_window_s` seconds (`speech_windows`) so that memory stays bounded ->
    (frames `[batch, audio_frames, D_a]` float32, frame mask `[batch, audio_frames]` bool).
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_values, dtype=torch.long)
    if getattr(config, "max_audio_s", None):  # the optional crop of long audio
        keep = max(int(config.max_audio_s * config.sampling_rate), MIN_WAVEFORM_SAMPLES)
        input_values, attention_mask = input_values[:, :keep], attention_mask[:, :keep]
    window = max(int(config.encoder_window_s * config.sampling_rate), MIN_WAVEFORM_SAMPLES)
    whisper = encoder.config.model_type == "whisper"
    if whisper:  # a fixed-length encoder: windows never longer than its input, never joined
        window = min(window, whisper_window_samples(encoder.config))
    encoded = [
        encode_speech_window(encoder, config, input_values[:, start:end], attention_mask[:, start:end])
        for start, end in speech_windows(input_values.shape[1], window, join_short=not whisper)
    ]
    return torch.cat([hidden for hidden, _ in encoded], dim=1), torch.cat([mask for _, mask in encoded], dim=1)


def speech_windows(num_samples: int, window: int, join_short: bool = True) -> list[tuple[int, int]]:
    """`(start, end)` sample ranges of consecutive encoder windows over a waveform; a last window shorter than a
    quarter of `window` is joined to the one before (too short for the conv feature encoder on its own) unless
    `join_short` is off."""
    ranges = []
    for start in range(0, num_samples, window):
        if join_short and 0 < num_samples - start - window < window // 4:
            window = num_samples - start
        ranges.append((start, start + window))
        if start + window >= num_samples:
            break
    return ranges


def encode_speech_window(encoder: nn.Module, config, input_values: torch.Tensor, attention_mask: torch.Tensor):
    """
    One window of waveforms `[batch, samples]` (mask `[batch, samples]`) through the speech encoder ->
    (frames `[batch, audio_frames, L * D_a]` float32 for the `config.speech_layers` (L = 1 by default), frame mask
    `[batch, audio_frames]` bool).
    """
    layers = getattr(config, "speech_layers", None)
    if encoder.config.model_type == "whisper":
        with backbone_context(config, input_values.device):
            hidden, frame_mask = whisper_encode_window(encoder, layers, input_values, attention_mask)
        return hidden.float(), frame_mask
    # Encoders with group-norm feature extractors (wav2vec2-base) were trained on zero-padded inputs without an
    # attention mask; layer-norm ones (large, WavLM, HuBERT-large) take it.
    pass_mask = getattr(encoder.config, "feat_extract_norm", "layer") == "layer"
    input_values = input_values * attention_mask.to(input_values.dtype)
    install_chunked_feature_encoder(getattr(encoder, "feature_extractor", None))
    with backbone_context(config, input_values.device):
        output = encoder(input_values, attention_mask=attention_mask if pass_mask else None,
                         output_hidden_states=layers is not None)
        hidden = select_hidden_layers(output, layers).float()
    frame_mask = encoder._get_feature_vector_attention_mask(hidden.shape[1], attention_mask).bool()
    # A clip without audio (mask all 0) has a negative output length there, which marks a stray frame.
    frame_mask &= attention_mask.bool().any(dim=1, keepdim=True)
    with backbone_context(config, input_values.device):  # an audEERING-style head: its outputs on every frame
        head = speech_head_outputs(encoder, output.last_hidden_state, frame_mask)
    if head is not None:
        hidden = torch.cat([hidden, head], dim=-1)
    return hidden, frame_mask


def _conv_feature_geometry(layers) -> tuple[list[int], list[int]] | None:
    """Kernels and strides of unpadded, undilated, ungrouped conv layers; `None` for any other shape."""
    kernels, strides = [], []
    for layer in layers:
        conv = getattr(layer, "conv", None)
        if not isinstance(conv, nn.Conv1d) or conv.padding not in ((0,), 0) or conv.dilation != (1,) \
                or conv.groups != 1:
            return None
        kernels.append(conv.kernel_size[0])
        strides.append(conv.stride[0])
    return kernels, strides


def _first_layer_norm_affine(layer, input_values, kernels, strides, step_frames):
    """
    The per-channel GroupNorm of the first conv layer as a scale and shift `[batch, channels, 1]`: mean and
    variance of the first convolution's output over the whole input, per chunk of `step_frames` frames and
    combined over the chunks in float64 (Chan et al.), so the whole activation never exists at once.
    """
    conv0, norm = layer.conv, layer.layer_norm
    first_len = (input_values.shape[1] - kernels[0]) // strides[0] + 1
    count = 0
    mean = input_values.new_zeros(input_values.shape[0], conv0.out_channels, dtype=torch.float64)
    m2 = torch.zeros_like(mean)  # sum of squared deviations
    for a in range(0, first_len, step_frames):
        b = min(first_len, a + step_frames)
        y = conv0(input_values[:, None, a * strides[0] : (b - 1) * strides[0] + kernels[0]])
        chunk_var, chunk_mean = torch.var_mean(y, dim=-1, correction=0)
        n = b - a
        delta = chunk_mean.double() - mean
        mean += delta * (n / (count + n))
        m2 += chunk_var.double() * n + delta.square() * (count * n / (count + n))
        count += n
    scale = norm.weight.double() / torch.sqrt(m2 / count + norm.eps)
    shift = norm.bias.double() - mean * scale
    return scale.to(input_values.dtype)[..., None], shift.to(input_values.dtype)[..., None]


def chunked_conv_features(encoder, input_values: torch.Tensor, chunk_frames: int) -> torch.Tensor | None:
    """
    The output of a wav2vec2-style conv feature encoder (`encoder.conv_layers`, unpadded strided convolutions),
    computed `chunk_frames` output frames at a time, so its activations never exist for a whole window (a 30 s
    window's first layer alone is 512 x 96,000 floats, 197 MB, and three such tensors were alive at once).

    Exact: an output frame depends only on its receptive field, and the one non-local operation, wav2vec2-base's
    GroupNorm with one group per channel on the first layer (statistics over the whole input), is done in two
    passes (`_first_layer_norm_affine`). `None` when the encoder has another shape or the input fits in one chunk
    (the caller runs the encoder as is).
    """
    layers = list(encoder.conv_layers)
    geometry = _conv_feature_geometry(layers)
    if geometry is None:
        return None
    kernels, strides = geometry
    first_norm = getattr(layers[0], "layer_norm", None)
    global_norm = isinstance(first_norm, nn.GroupNorm)
    if global_norm and first_norm.num_groups != first_norm.num_channels:
        return None
    if any(isinstance(m, nn.GroupNorm) for layer in layers[1:] for m in layer.modules()):
        return None
    receptive, total_stride, out_len = 1, 1, input_values.shape[1]
    for kernel, stride in zip(reversed(kernels), reversed(strides)):
        receptive = (receptive - 1) * stride + kernel
    for kernel, stride in zip(kernels, strides):
        total_stride *= stride
        out_len = (out_len - kernel) // stride + 1
    if out_len <= chunk_frames:
        return None  # one chunk: the plain path is the same
    if global_norm:
        step_frames = chunk_frames * total_stride // strides[0]
        scale, shift = _first_layer_norm_affine(layers[0], input_values, kernels, strides, step_frames)
    outputs = []
    for a in range(0, out_len, chunk_frames):
        b = min(out_len, a + chunk_frames)
        hidden = input_values[:, None, a * total_stride : (b - 1) * total_stride + receptive]
        for i, layer in enumerate(layers):
            if i == 0 and global_norm:
                hidden = layer.activation(layer.conv(hidden).mul_(scale).add_(shift))
            else:
                hidden = layer(hidden)
        outputs.append(hidden)
    return torch.cat(outputs, dim=-1)


def install_chunked_feature_encoder(encoder: nn.Module | None) -> None:
    """Makes a speech encoder's conv feature encoder run chunk by chunk (`chunked_conv_features`, chunks of
    `CONV_FEATURE_CHUNK_FRAMES`) whenever no gradient is needed; with gradients (fine-tuning) or an unsupported shape
    it runs as written. Installed once per encoder instance as an instance attribute, so the state dict and
    checkpoints are unchanged."""
    if encoder is None or "forward" in encoder.__dict__ or not hasattr(encoder, "conv_layers"):
        return
    original = type(encoder).forward

    def forward(self, input_values):
        if not torch.is_grad_enabled() or not (self.training or any(p.requires_grad for p in self.parameters())):
            chunked = chunked_conv_features(self, input_values, CONV_FEATURE_CHUNK_FRAMES)
            if chunked is not None:
                return chunked
        return original(self, input_values)

    encoder.forward = types.MethodType(forward, encoder)


__all__ = [
    "CONV_FEATURE_CHUNK_FRAMES",
    "FaceBackboneRunner",
    "FrozenBackboneMixin",
    "MIN_WAVEFORM_SAMPLES",
    "RESNET18_IMAGENET_URL",
    "backbone_context",
    "backbone_trains",
    "build_face_backbone",
    "build_resnet18_trunk",
    "chunked_conv_features",
    "embed_distinct_frames",
    "encode_speech",
    "encode_speech_window",
    "fold_resnet_batchnorm",
    "init_resnet_module",
    "install_chunked_feature_encoder",
    "load_resnet18_imagenet_state_dict",
    "pretrained_face_backbone_state",
    "speech_windows",
]
