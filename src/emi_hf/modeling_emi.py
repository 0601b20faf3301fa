"""Models of emi-hf: visual-dual and audio regressors of Emotional Mimicry Intensity, and their late fusion.

Data flow (shapes in brackets; B clips, T video frames, T_a audio frames, 6 emotions):

    pixel_values [B, T, 3, 112, 112] --ResNet18--> visual_features [B, T, 512] --\
                                                  au_features [B, T, n_au] ------> EmiVisualModel --> [B, 6]
    input_values [B, S] --wav2vec2--> audio_features [B, T_a, 768] -------------> EmiAudioModel  --> [B, 6]
    EmiFusionModel: per-emotion weighted average of the two clip predictions, per clip over the modalities present.

Each unimodal model is a projection, a `TemporalEncoder` (dilated residual TCN for short range, then a Transformer
encoder for long range), a frame head and masked pooling over the valid frames. Padding and frames without a face are
masked everywhere (convolutions, attention, pooling), so a padded clip gives the same result as the unpadded one.

This file is copied next to the weights by ``save_pretrained``: it imports only torch, torchvision, transformers and
``configuration_emi`` (relatively).
"""

from __future__ import annotations

import copy
import math
import os
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .configuration_emi import EmiAudioConfig, EmiFusionConfig, EmiVisualConfig

RESNET18_IMAGENET_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


# ----------------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class EmiRegressionOutput(ModelOutput):
    """
    Output of [`EmiVisualModel`] and [`EmiAudioModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): regression loss over clips that have usable input,
            returned when `labels` are given.
        intensities (`torch.FloatTensor` of shape `[batch, num_labels]`): clip intensities in [0, 1]. Rows of clips
            without usable input (no face in any frame, no audio) are NaN: see `modality_mask`.
        frame_intensities (`torch.FloatTensor` of shape `[batch, frames, num_labels]`): per-frame intensities in
            [0, 1], for a timeline; NaN at masked frames.
        modality_mask (`torch.BoolTensor` of shape `[batch]`): True where the clip had at least one valid frame.
        frame_mask (`torch.BoolTensor` of shape `[batch, frames]`): the valid frames the prediction used.
        hidden_states (`torch.FloatTensor` of shape `[batch, frames, hidden_size]`): temporal encoder output.
    """

    loss: torch.FloatTensor | None = None
    intensities: torch.FloatTensor | None = None
    frame_intensities: torch.FloatTensor | None = None
    modality_mask: torch.BoolTensor | None = None
    frame_mask: torch.BoolTensor | None = None
    hidden_states: torch.FloatTensor | None = None


@dataclass
class EmiFusionOutput(ModelOutput):
    """
    Output of [`EmiFusionModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): loss of the fused intensities, when `labels` are given.
        intensities (`torch.FloatTensor` of shape `[batch, num_labels]`): fused clip intensities; per clip, the
            weighted average of the modalities present (NaN only when neither is).
        frame_intensities (`torch.FloatTensor` of shape `[batch, frames, num_labels]`): visual frame intensities
            (the video timeline); the audio timeline is in `audio_frame_intensities`.
        visual_intensities (`torch.FloatTensor` of shape `[batch, num_labels]`): visual model's clip intensities.
        audio_intensities (`torch.FloatTensor` of shape `[batch, num_labels]`): audio model's clip intensities.
        audio_frame_intensities (`torch.FloatTensor` of shape `[batch, audio_frames, num_labels]`).
        visual_mask (`torch.BoolTensor` of shape `[batch]`): clip had a face in at least one frame.
        audio_mask (`torch.BoolTensor` of shape `[batch]`): clip had audio.
        hidden_states (`tuple(torch.FloatTensor)`): (visual, audio) temporal encoder outputs.
    """

    loss: torch.FloatTensor | None = None
    intensities: torch.FloatTensor | None = None
    frame_intensities: torch.FloatTensor | None = None
    visual_intensities: torch.FloatTensor | None = None
    audio_intensities: torch.FloatTensor | None = None
    audio_frame_intensities: torch.FloatTensor | None = None
    visual_mask: torch.BoolTensor | None = None
    audio_mask: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------------------


def concordance_loss(predictions: torch.Tensor, labels: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 - Lin's concordance correlation coefficient, averaged over labels. Inputs `[batch, num_labels]`."""
    pred_mean, label_mean = predictions.mean(0), labels.mean(0)
    pred_var = predictions.var(0, unbiased=False)
    label_var = labels.var(0, unbiased=False)
    covariance = ((predictions - pred_mean) * (labels - label_mean)).mean(0)
    ccc = 2 * covariance / (pred_var + label_var + (pred_mean - label_mean) ** 2 + eps)
    return (1 - ccc).mean()


def pearson_loss(predictions: torch.Tensor, labels: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 - Pearson's r, averaged over labels. Inputs `[batch, num_labels]`."""
    pred_centered = predictions - predictions.mean(0)
    label_centered = labels - labels.mean(0)
    r = (pred_centered * label_centered).sum(0) / (
        pred_centered.norm(dim=0) * label_centered.norm(dim=0) + eps
    )
    return (1 - r).mean()


def regression_loss(loss_type: str, predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss named by `loss_type` ("mse", "ccc", "pearson") between `[batch, num_labels]` tensors."""
    if loss_type == "mse":
        return F.mse_loss(predictions, labels)
    if loss_type == "ccc":
        return concordance_loss(predictions, labels)
    if loss_type == "pearson":
        return pearson_loss(predictions, labels)
    raise ValueError(f"Unknown loss_type {loss_type!r}; expected 'mse', 'ccc' or 'pearson'.")


def _masked_loss(loss_type, intensities, labels, clip_mask):
    labels = labels.to(intensities.dtype)
    if not bool(clip_mask.any()):
        # No clip of the batch has this modality: a zero loss that still belongs to the graph.
        return intensities.nan_to_num(0.0).sum() * 0.0
    return regression_loss(loss_type, intensities[clip_mask], labels[clip_mask])


# ----------------------------------------------------------------------------------------------------------------------
# Temporal encoder: TCN (short range) + Transformer encoder (long range)
# ----------------------------------------------------------------------------------------------------------------------


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal position encodings of frame indices, computed for any length (no maximum)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size

    def forward(self, num_frames: int, device, dtype) -> torch.Tensor:
        """Returns `[num_frames, hidden_size]`."""
        positions = torch.arange(num_frames, device=device, dtype=torch.float32)[:, None]
        half = self.hidden_size // 2
        frequencies = torch.exp(
            -math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1)
        )
        angles = positions * frequencies[None]
        encoding = torch.cat([angles.sin(), angles.cos()], dim=-1)
        if encoding.shape[-1] < self.hidden_size:
            encoding = F.pad(encoding, (0, self.hidden_size - encoding.shape[-1]))
        return encoding.to(dtype)


class TemporalConvBlock(GradientCheckpointingLayer):
    """Residual block of two dilated, non-causal 1-D convolutions over frames; masked frames stay zero."""

    def __init__(self, hidden_size: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv1 = nn.Conv1d(hidden_size, hidden_size, kernel_size, dilation=dilation, padding=padding)
        self.conv2 = nn.Conv1d(hidden_size, hidden_size, kernel_size, dilation=dilation, padding=padding)
        self.norm1 = nn.LayerNorm(hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """`hidden_states` `[batch, frames, hidden]`, `frame_mask` `[batch, frames, 1]` (float 0/1)."""
        x = self.conv1((hidden_states * frame_mask).transpose(1, 2)).transpose(1, 2)
        x = F.gelu(self.norm1(x)) * frame_mask
        x = self.conv2(x.transpose(1, 2)).transpose(1, 2)
        x = F.gelu(self.norm2(x))
        # One dropout per block: on the CPU, drawing dropout masks costs as much as a convolution.
        return (hidden_states + self.dropout(x)) * frame_mask


class SelfAttention(nn.Module):
    """Multi-head self-attention through `scaled_dot_product_attention`, with a key padding mask."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        batch, frames, width = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, frames, 3, self.num_heads, width // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each [batch, heads, frames, head_dim]
        allowed = ~key_padding_mask[:, None, None, :]  # True = attend
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=allowed)
        return self.out_proj(attended.transpose(1, 2).reshape(batch, frames, width))


class TransformerEncoderLayer(GradientCheckpointingLayer):
    """Pre-norm Transformer encoder layer with a key padding mask."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, dropout: float):
        super().__init__()
        self.self_attn = SelfAttention(hidden_size, num_heads)
        self.norm1 = nn.LayerNorm(hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden_size, intermediate_size), nn.GELU(), nn.Linear(intermediate_size, hidden_size)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        """`hidden_states` `[batch, frames, hidden]`; `key_padding_mask` `[batch, frames]`, True = ignore."""
        hidden_states = hidden_states + self.dropout(self.self_attn(self.norm1(hidden_states), key_padding_mask))
        return hidden_states + self.dropout(self.feed_forward(self.norm2(hidden_states)))


class TemporalEncoder(nn.Module):
    """TCN blocks (one per dilation) then a Transformer encoder, over `[batch, frames, hidden]` with a frame mask."""

    def __init__(self, config):
        super().__init__()
        self.tcn = nn.ModuleList(
            TemporalConvBlock(config.hidden_size, config.tcn_kernel_size, dilation, config.dropout)
            for dilation in config.tcn_dilations
        )
        self.positions = SinusoidalPositions(config.hidden_size)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                config.hidden_size, config.num_attention_heads, config.intermediate_size, config.dropout
            )
            for _ in range(config.num_hidden_layers)
        )
        self.final_norm = nn.LayerNorm(config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """`hidden_states` `[batch, frames, hidden]`, `frame_mask` `[batch, frames]` bool. Returns the same shape."""
        mask = frame_mask[..., None].to(hidden_states.dtype)
        hidden_states = hidden_states * mask
        for block in self.tcn:
            hidden_states = block(hidden_states, mask)
        hidden_states = hidden_states + self.positions(hidden_states.shape[1], hidden_states.device, hidden_states.dtype)
        # A clip with no valid frame would make attention all -inf (NaN); let it attend to everything, its output is
        # discarded by the modality mask anyway.
        key_padding_mask = ~frame_mask & frame_mask.any(dim=1, keepdim=True)
        for layer in self.layers:
            hidden_states = layer(hidden_states, key_padding_mask)
        return self.final_norm(hidden_states) * mask


class IntensityHead(nn.Module):
    """Frame logits `[batch, frames, num_labels]` and masked pooling of them to clip logits `[batch, num_labels]`."""

    def __init__(self, config):
        super().__init__()
        self.pooling = config.pooling
        self.frame_head = nn.Linear(config.hidden_size, config.num_labels)
        if self.pooling == "attention":
            self.attention_scores = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor):
        frame_logits = self.frame_head(hidden_states)
        valid = frame_mask[..., None]
        if self.pooling == "attention":
            scores = self.attention_scores(hidden_states).masked_fill(~valid, float("-inf"))
            # Clips without a valid frame: uniform weights, discarded later by the modality mask.
            scores = torch.where(valid.any(dim=1, keepdim=True), scores, torch.zeros_like(scores))
            weights = scores.softmax(dim=1)
        else:
            weights = valid.to(frame_logits.dtype)
            weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
        clip_logits = (weights * frame_logits).sum(dim=1)
        return frame_logits, clip_logits


def _finalise(frame_logits, clip_logits, frame_mask, clip_mask):
    """Sigmoid to [0, 1]; NaN where there was no valid input (frames or whole clips)."""
    nan = torch.tensor(float("nan"), dtype=frame_logits.dtype, device=frame_logits.device)
    frame_intensities = torch.where(frame_mask[..., None], frame_logits.sigmoid(), nan)
    intensities = torch.where(clip_mask[:, None], clip_logits.sigmoid(), nan)
    return intensities, frame_intensities


# ----------------------------------------------------------------------------------------------------------------------
# Backbones
# ----------------------------------------------------------------------------------------------------------------------


def build_resnet18_trunk() -> nn.Module:
    """torchvision ResNet18 with its classifier removed: `[N, 3, H, W]` -> `[N, 512]`. Random weights."""
    from torchvision.models import resnet18

    trunk = resnet18(weights=None)
    trunk.fc = nn.Identity()
    return trunk


def _backbone_autocast(config, device: torch.device):
    """bfloat16 autocast for a frozen backbone when `config.backbone_precision == "bfloat16"` (else a no-op)."""
    enabled = getattr(config, "backbone_precision", "float32") == "bfloat16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


CONV_FEATURE_CHUNK_FRAMES = 250  # output frames (5 s at 50 Hz) per chunk of the chunked conv feature encoder


def _conv_feature_geometry(layers) -> tuple[list[int], list[int]] | None:
    kernels, strides = [], []
    for layer in layers:
        conv = getattr(layer, "conv", None)
        if not isinstance(conv, nn.Conv1d) or conv.padding not in ((0,), 0) or conv.dilation != (1,) or conv.groups != 1:
            return None
        kernels.append(conv.kernel_size[0])
        strides.append(conv.stride[0])
    return kernels, strides


def _chunked_conv_features(encoder, input_values: torch.Tensor, chunk_frames: int) -> torch.Tensor | None:
    """
    The output of a wav2vec2-style conv feature encoder (`encoder.conv_layers`, unpadded strided convolutions),
    computed `chunk_frames` output frames at a time, so its activations never exist for a whole window (a 30 s
    window's first layer alone is 512 x 96,000 floats, 197 MB, and three such tensors were alive at once).

    Exact: an output frame depends only on its receptive field, and the one non-local operation, wav2vec2-base's
    GroupNorm with one group per channel on the first layer (statistics over the whole input), is done in two
    passes: per-channel mean and variance of the first convolution, per chunk and combined over the chunks in
    float64, then the normalisation with those statistics. `None` when the encoder has another shape (the caller runs it as is).
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
    receptive, total_stride = 1, 1
    for kernel, stride in zip(reversed(kernels), reversed(strides)):
        receptive = (receptive - 1) * stride + kernel
    for stride in strides:
        total_stride *= stride
    samples = input_values.shape[1]
    out_len = samples
    for kernel, stride in zip(kernels, strides):
        out_len = (out_len - kernel) // stride + 1
    if out_len <= chunk_frames:
        return None  # one chunk: the plain path is the same
    if global_norm:
        conv0 = layers[0].conv
        first_len = (samples - kernels[0]) // strides[0] + 1
        step = chunk_frames * total_stride // strides[0]
        count = 0
        mean = input_values.new_zeros(input_values.shape[0], conv0.out_channels, dtype=torch.float64)
        m2 = torch.zeros_like(mean)  # sum of squared deviations, combined over chunks (Chan et al.)
        for a in range(0, first_len, step):
            b = min(first_len, a + step)
            y = conv0(input_values[:, None, a * strides[0] : (b - 1) * strides[0] + kernels[0]])
            chunk_var, chunk_mean = torch.var_mean(y, dim=-1, correction=0)
            n = b - a
            delta = chunk_mean.double() - mean
            mean += delta * (n / (count + n))
            m2 += chunk_var.double() * n + delta.square() * (count * n / (count + n))
            count += n
        var = m2 / count
        scale = first_norm.weight.double() / torch.sqrt(var + first_norm.eps)
        shift = first_norm.bias.double() - mean * scale
        scale, shift = scale.to(input_values.dtype)[..., None], shift.to(input_values.dtype)[..., None]
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


def _install_chunked_feature_encoder(encoder: nn.Module | None) -> None:
    """Makes a speech encoder's conv feature encoder run chunk by chunk (`_chunked_conv_features`) whenever no
    gradient is needed; with gradients (fine-tuning) or an unsupported shape it runs as written. Installed once per
    encoder instance as an instance attribute, so the state dict and checkpoints are unchanged."""
    if encoder is None or "forward" in encoder.__dict__ or not hasattr(encoder, "conv_layers"):
        return
    original = type(encoder).forward

    def forward(self, input_values):
        if not torch.is_grad_enabled() or not (self.training or any(p.requires_grad for p in self.parameters())):
            chunked = _chunked_conv_features(self, input_values, CONV_FEATURE_CHUNK_FRAMES)
            if chunked is not None:
                return chunked
        return original(self, input_values)

    encoder.forward = types.MethodType(forward, encoder)


def _fold_resnet_batchnorm(backbone: nn.Module) -> nn.Module:
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


def load_resnet18_imagenet_state_dict(weights: str | os.PathLike | None = None) -> dict:
    """
    The ImageNet ResNet18 weights (torchvision's IMAGENET1K_V1), without the classifier.

    `weights` is a local `.pth` file; `None` uses torchvision's cache (`$TORCH_HOME/hub/checkpoints`), downloading
    into it unless `HF_HUB_OFFLINE=1`/`EMI_HF_OFFLINE=1` is set or no network is reachable, in which case the error
    says which file to place where.
    """
    if weights is not None:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ResNet18 weights file {path!r} does not exist.")
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    else:
        from torch.hub import get_dir, load_state_dict_from_url

        cached = os.path.join(get_dir(), "checkpoints", os.path.basename(RESNET18_IMAGENET_URL))
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or os.environ.get("EMI_HF_OFFLINE")
        if offline and not os.path.isfile(cached):
            raise FileNotFoundError(
                f"ImageNet ResNet18 weights are not in the torchvision cache ({cached}) and downloads are off "
                f"(HF_HUB_OFFLINE/EMI_HF_OFFLINE). Download {RESNET18_IMAGENET_URL} on a connected machine and place "
                "it there, or pass the file's path."
            )
        try:
            state_dict = load_state_dict_from_url(RESNET18_IMAGENET_URL, map_location="cpu", progress=False)
        except Exception as error:  # urllib raises many kinds when offline
            raise OSError(
                f"Could not download the ImageNet ResNet18 weights from {RESNET18_IMAGENET_URL} ({error}). Place the "
                f"file at {cached} or pass its local path."
            ) from error
    return {k: v for k, v in state_dict.items() if not k.startswith("fc.")}


class _FrozenBackboneMixin:
    """A frozen backbone stays in eval mode (BatchNorm statistics, dropout) whatever `train()` is called with."""

    def _backbone_frozen(self) -> bool:
        return self.config.freeze_backbone

    def train(self, mode: bool = True):
        super().train(mode)
        if self._backbone_frozen():
            self.backbone.eval()
        return self

    def _freeze(self):
        if self._backbone_frozen():
            self.backbone.requires_grad_(False)
            self.backbone.eval()


# ----------------------------------------------------------------------------------------------------------------------
# Pretrained base
# ----------------------------------------------------------------------------------------------------------------------


class EmiPreTrainedModel(PreTrainedModel):
    """Weight initialisation and checkpoint plumbing shared by the emi-hf models."""

    config_class = EmiVisualConfig
    base_model_prefix = "emi"
    supports_gradient_checkpointing = True
    _supports_sdpa = False
    _no_split_modules = ["TransformerEncoderLayer", "TemporalConvBlock"]

    def _init_weights(self, module):
        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            if module.running_mean is not None:
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
                module.num_batches_tracked.zero_()


class _TemporalRegressor(_FrozenBackboneMixin, EmiPreTrainedModel):
    """Temporal encoder, head and loss shared by the two unimodal models (the input side differs)."""

    def _build_temporal(self, config):
        self.encoder = TemporalEncoder(config)
        self.head = IntensityHead(config)

    def _regress(self, hidden_states, frame_mask, labels, return_dict):
        frame_mask = frame_mask.bool()
        clip_mask = frame_mask.any(dim=1)
        hidden_states = self.encoder(hidden_states, frame_mask)
        frame_logits, clip_logits = self.head(hidden_states, frame_mask)
        intensities, frame_intensities = _finalise(frame_logits, clip_logits, frame_mask, clip_mask)
        loss = None
        if labels is not None:
            loss = _masked_loss(self.config.loss_type, clip_logits.sigmoid(), labels, clip_mask)
        output = EmiRegressionOutput(
            loss=loss,
            intensities=intensities,
            frame_intensities=frame_intensities,
            modality_mask=clip_mask,
            frame_mask=frame_mask,
            hidden_states=hidden_states,
        )
        return output if return_dict else output.to_tuple()


# ----------------------------------------------------------------------------------------------------------------------
# Visual-dual model
# ----------------------------------------------------------------------------------------------------------------------


class EmiVisualModel(_TemporalRegressor):
    """
    Visual-dual EMI regressor: ResNet18 face embeddings and AU intensities per frame -> clip intensities.

    Inputs, either raw or cached:
        pixel_values `[batch, frames, 3, face_size, face_size]` (aligned face crops, ImageNet-normalised) and
        au_features `[batch, frames, num_aus]`; or visual_features `[batch, frames, 512]` and au_features.
        frame_mask `[batch, frames]`: 1 for a real frame with a face, 0 for padding or no face (default all 1).
    """

    config_class = EmiVisualConfig
    main_input_name = "visual_features"

    def __init__(self, config: EmiVisualConfig):
        super().__init__(config)
        self.backbone = build_resnet18_trunk()
        self.visual_projection = nn.Sequential(
            nn.LayerNorm(config.visual_feature_dim), nn.Linear(config.visual_feature_dim, config.hidden_size)
        )
        self.au_projection = nn.Sequential(
            nn.LayerNorm(config.num_aus), nn.Linear(config.num_aus, config.hidden_size)
        )
        self.channel_fusion = nn.Sequential(
            nn.Linear(2 * config.hidden_size, config.hidden_size), nn.GELU(), nn.Dropout(config.dropout)
        )
        self._build_temporal(config)
        self.post_init()
        self._freeze()

    def load_imagenet_backbone(self, weights: str | os.PathLike | None = None) -> EmiVisualModel:
        """Loads ImageNet ResNet18 weights into the face backbone (see `load_resnet18_imagenet_state_dict`)."""
        self.backbone.load_state_dict(load_resnet18_imagenet_state_dict(weights))
        return self

    def _inference_backbone(self) -> nn.Module:
        """
        The backbone for inference: a copy with each BatchNorm folded into the convolution before it (the same
        function, up to float rounding, and about 20% faster on CPU), rebuilt whenever a backbone weight changes.
        Used only when no gradient is needed and the backbone is in eval mode; otherwise the backbone itself.
        """
        if self.backbone.training or (torch.is_grad_enabled() and not self.config.freeze_backbone):
            return self.backbone
        tensors = list(self.backbone.parameters()) + list(self.backbone.buffers())
        key = tuple((t.data_ptr(), t._version, t.device.type, t.dtype) for t in tensors)
        cached = self.__dict__.get("_folded_backbone")
        if cached is not None and cached[0] == key:
            return cached[1]
        folded = _fold_resnet_batchnorm(self.backbone)
        self.__dict__["_folded_backbone"] = (key, folded)  # not a registered submodule: never saved
        return folded

    def embed_faces(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Face embeddings of crops `[N, 3, H, W]` -> `[N, visual_feature_dim]`, in chunks of `backbone_chunk_size`."""
        chunks = pixel_values.split(self.config.backbone_chunk_size)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_backbone), \
                _backbone_autocast(self.config, pixel_values.device):
            backbone = self._inference_backbone()
            embeddings = [
                backbone(chunk.contiguous(memory_format=torch.channels_last)).float() for chunk in chunks
            ]
        if not embeddings:
            return pixel_values.new_zeros(0, self.config.visual_feature_dim)
        return torch.cat(embeddings)

    def _embed_frames(self, pixel_values: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """
        Runs the backbone on valid frames only and scatters back: `[B, T, 3, H, W]` -> `[B, T, 512]`. A frame whose
        crop equals the previous frame's (a source frame repeated by frame-rate conversion) reuses its embedding.
        """
        batch, frames = pixel_values.shape[:2]
        features = pixel_values.new_zeros(batch, frames, self.config.visual_feature_dim)
        valid = frame_mask.bool()
        repeat = torch.zeros_like(valid)
        repeat[:, 1:] = valid[:, 1:] & valid[:, :-1] & (pixel_values[:, 1:] == pixel_values[:, :-1]).flatten(2).all(-1)
        distinct = valid & ~repeat
        if distinct.any():
            features[distinct] = self.embed_faces(pixel_values[distinct]).to(features.dtype)
            source = torch.where(distinct, torch.arange(frames, device=valid.device), 0).cummax(dim=1).values
            features = torch.where(repeat[..., None], features.gather(1, source[..., None].expand_as(features)), features)
        return features

    def forward(
        self,
        visual_features: torch.Tensor | None = None,
        au_features: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **unused_inputs,
    ) -> EmiRegressionOutput | tuple:
        """
        Args:
            visual_features: `[batch, frames, visual_feature_dim]` cached face embeddings, or
            pixel_values: `[batch, frames, 3, face_size, face_size]` face crops (the backbone embeds them).
            au_features: `[batch, frames, num_aus]` AU intensities (required).
            frame_mask: `[batch, frames]`, 1 = valid frame.
            labels: `[batch, num_labels]` intensities in [0, 1].
            unused_inputs: other modalities' inputs (`input_values`, `audio_features`, ...), ignored, so that one
                processor output feeds any of the three models.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if (visual_features is None) == (pixel_values is None):
            raise ValueError("Pass exactly one of `visual_features` (cached embeddings) or `pixel_values` (face crops).")
        if au_features is None:
            raise ValueError("`au_features` [batch, frames, num_aus] are required by the visual model.")
        reference = visual_features if visual_features is not None else pixel_values
        if frame_mask is None:
            frame_mask = torch.ones(reference.shape[:2], dtype=torch.bool, device=reference.device)
        frame_mask = frame_mask.bool()
        if au_features.shape[-1] != self.config.num_aus:
            raise ValueError(
                f"au_features have {au_features.shape[-1]} AUs but the model expects {self.config.num_aus} "
                f"({self.config.au_names})."
            )
        if visual_features is None:
            visual_features = self._embed_frames(pixel_values, frame_mask)
        dtype = self.visual_projection[1].weight.dtype
        visual = self.visual_projection(visual_features.to(dtype))
        aus = self.au_projection(au_features.to(dtype))
        if self.training and self.config.channel_dropout > 0:
            # Drop a whole channel of a clip now and then (never both), rescaling as dropout does.
            keep = torch.rand(visual.shape[0], 2, device=visual.device) >= self.config.channel_dropout
            keep[~keep.any(dim=1)] = True
            scale = 2.0 / keep.sum(dim=1, keepdim=True).to(dtype)
            visual = visual * (keep[:, :1] * scale)[:, None]
            aus = aus * (keep[:, 1:] * scale)[:, None]
        hidden_states = self.channel_fusion(torch.cat([visual, aus], dim=-1))
        return self._regress(hidden_states, frame_mask, labels, return_dict)


# ----------------------------------------------------------------------------------------------------------------------
# Audio model
# ----------------------------------------------------------------------------------------------------------------------


class EmiAudioModel(_TemporalRegressor):
    """
    Audio EMI regressor: wav2vec 2.0 frame embeddings -> clip intensities.

    Inputs, either raw or cached:
        input_values `[batch, samples]` 16 kHz waveforms with attention_mask `[batch, samples]` (all 0 = no audio);
        or audio_features `[batch, audio_frames, audio_feature_dim]` with audio_mask `[batch, audio_frames]`.
    """

    config_class = EmiAudioConfig
    main_input_name = "audio_features"

    def __init__(self, config: EmiAudioConfig):
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.speech_encoder_config)
        self.audio_projection = nn.Sequential(
            nn.LayerNorm(config.audio_feature_dim),
            nn.Linear(config.audio_feature_dim, config.hidden_size),
            nn.GELU(),
            nn.Dropout(config.dropout),
        )
        self._build_temporal(config)
        self.post_init()
        self._freeze()

    @classmethod
    def from_speech_encoder(
        cls, name_or_path: str | os.PathLike, revision: str | None = None, **config_kwargs
    ) -> EmiAudioModel:
        """
        Builds an audio model around a pretrained wav2vec2-family encoder (a Hub id such as
        `facebook/wav2vec2-base`, or a local folder saved with `save_pretrained`); the temporal part is random.
        """
        encoder = AutoModel.from_pretrained(name_or_path, revision=revision)
        encoder_config = encoder.config
        config_kwargs.setdefault("audio_feature_dim", encoder_config.hidden_size)
        config = EmiAudioConfig(speech_encoder_config=encoder_config.to_dict(), **config_kwargs)
        model = cls(config)
        missing, unexpected = model.backbone.load_state_dict(encoder.state_dict(), strict=False)
        if unexpected or [k for k in missing if "masked_spec_embed" not in k]:
            raise ValueError(f"Encoder weights of {name_or_path} do not fit: missing {missing}, unexpected {unexpected}.")
        model._freeze()
        return model

    def embed_audio(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Encoder frames of waveforms `[batch, samples]` -> (`[batch, audio_frames, audio_feature_dim]`,
        mask `[batch, audio_frames]` bool).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_values, dtype=torch.long)
        window = max(int(self.config.encoder_window_s * self.config.sampling_rate), 400)
        hidden_chunks, mask_chunks = [], []
        for start in range(0, input_values.shape[1], window):
            # The last window is joined to the previous one when it is too short for the conv feature encoder.
            if 0 < input_values.shape[1] - start - window < window // 4:
                window = input_values.shape[1] - start
            hidden, mask = self._encode_window(
                input_values[:, start : start + window], attention_mask[:, start : start + window]
            )
            hidden_chunks.append(hidden)
            mask_chunks.append(mask)
            if start + window >= input_values.shape[1]:
                break
        return torch.cat(hidden_chunks, dim=1), torch.cat(mask_chunks, dim=1)

    def _encode_window(self, input_values, attention_mask):
        # Encoders with group-norm feature extractors (wav2vec2-base) were trained on zero-padded inputs without an
        # attention mask; layer-norm ones (large, WavLM, HuBERT-large) take it.
        pass_mask = getattr(self.backbone.config, "feat_extract_norm", "layer") == "layer"
        input_values = input_values * attention_mask.to(input_values.dtype)
        _install_chunked_feature_encoder(getattr(self.backbone, "feature_extractor", None))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_backbone), \
                _backbone_autocast(self.config, input_values.device):
            hidden = self.backbone(
                input_values, attention_mask=attention_mask if pass_mask else None
            ).last_hidden_state.float()
        frame_mask = self.backbone._get_feature_vector_attention_mask(hidden.shape[1], attention_mask).bool()
        # A clip without audio (mask all 0) has a negative output length there, which marks a stray frame.
        frame_mask &= attention_mask.bool().any(dim=1, keepdim=True)
        return hidden, frame_mask

    def forward(
        self,
        audio_features: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **unused_inputs,
    ) -> EmiRegressionOutput | tuple:
        """
        Args:
            audio_features: `[batch, audio_frames, audio_feature_dim]` cached encoder frames, with
            audio_mask: `[batch, audio_frames]`, 1 = valid frame; or
            input_values: `[batch, samples]` waveforms, with attention_mask `[batch, samples]`.
            labels: `[batch, num_labels]` intensities in [0, 1].
            unused_inputs: other modalities' inputs, ignored.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if (audio_features is None) == (input_values is None):
            raise ValueError("Pass exactly one of `audio_features` (cached) or `input_values` (waveforms).")
        if audio_features is None:
            audio_features, audio_mask = self.embed_audio(input_values, attention_mask)
        elif audio_mask is None:
            audio_mask = torch.ones(audio_features.shape[:2], dtype=torch.bool, device=audio_features.device)
        dtype = self.audio_projection[1].weight.dtype
        hidden_states = self.audio_projection(audio_features.to(dtype))
        return self._regress(hidden_states, audio_mask.bool(), labels, return_dict)


# ----------------------------------------------------------------------------------------------------------------------
# Late fusion
# ----------------------------------------------------------------------------------------------------------------------


def fuse_intensities(
    visual: torch.Tensor, audio: torch.Tensor, visual_mask: torch.Tensor, audio_mask: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """
    Per-emotion weighted average `w * visual + (1 - w) * audio` of `[batch, num_labels]` predictions; a clip missing
    one modality gets the other one alone, a clip missing both gets NaN.
    """
    w = weights.to(visual.dtype)[None].expand_as(visual)
    w = torch.where(visual_mask[:, None], w, torch.zeros_like(w))
    w = torch.where(audio_mask[:, None], w, torch.ones_like(w))
    fused = w * visual.nan_to_num(0.0) + (1 - w) * audio.nan_to_num(0.0)
    present = (visual_mask | audio_mask)[:, None]
    return torch.where(present, fused, torch.full_like(fused, float("nan")))


class EmiFusionModel(EmiPreTrainedModel):
    """
    Late fusion of an [`EmiVisualModel`] and an [`EmiAudioModel`]: each predicts clip intensities from its own inputs,
    and the result is their per-emotion weighted average (`config.fusion_weights`, default 0.5 = the paper's plain
    average). Takes the union of both models' inputs, so `model(**processor(videos=...))` works.
    """

    config_class = EmiFusionConfig
    main_input_name = "visual_features"
    _no_split_modules = ["EmiVisualModel", "EmiAudioModel"]

    def __init__(self, config: EmiFusionConfig):
        super().__init__(config)
        self.visual = EmiVisualModel(config.visual_config)
        self.audio = EmiAudioModel(config.audio_config)
        self.post_init()

    @classmethod
    def from_unimodal(
        cls, visual: str | os.PathLike | EmiVisualModel, audio: str | os.PathLike | EmiAudioModel,
        fusion_weights: list[float] | None = None,
    ) -> EmiFusionModel:
        """Builds the fusion model from two trained checkpoints (folders or Hub ids) or model instances."""
        if not isinstance(visual, EmiVisualModel):
            visual = EmiVisualModel.from_pretrained(visual)
        if not isinstance(audio, EmiAudioModel):
            audio = EmiAudioModel.from_pretrained(audio)
        config = EmiFusionConfig(
            visual_config=visual.config.to_dict(), audio_config=audio.config.to_dict(), fusion_weights=fusion_weights
        )
        model = cls(config)
        model.visual.load_state_dict(visual.state_dict())
        model.audio.load_state_dict(audio.state_dict())
        return model

    @staticmethod
    def optimal_fusion_weights(
        visual_predictions, audio_predictions, labels, grid_size: int = 101
    ) -> list[float]:
        """
        Per-emotion visual weight in [0, 1] that maximises Pearson's r of the fused prediction on held-out data
        (a grid search; `grid_size` points). Inputs `[clips, num_labels]` (tensors or arrays), clips with NaN in
        either modality are left out.
        """
        visual = torch.as_tensor(visual_predictions, dtype=torch.float64)
        audio = torch.as_tensor(audio_predictions, dtype=torch.float64)
        labels = torch.as_tensor(labels, dtype=torch.float64)
        keep = ~(visual.isnan().any(1) | audio.isnan().any(1) | labels.isnan().any(1))
        visual, audio, labels = visual[keep], audio[keep], labels[keep]
        if visual.shape[0] < 3:
            raise ValueError("At least 3 clips with both modalities are needed to fit fusion weights.")
        grid = torch.linspace(0, 1, grid_size, dtype=torch.float64)
        fused = grid[:, None, None] * visual[None] + (1 - grid[:, None, None]) * audio[None]  # [G, N, L]
        fused = fused - fused.mean(1, keepdim=True)
        centred = labels - labels.mean(0)
        r = (fused * centred).sum(1) / (fused.norm(dim=1) * centred.norm(dim=0) + 1e-12)  # [G, L]
        return [float(w) for w in grid[r.argmax(0)]]

    def fit_fusion_weights(self, visual_predictions, audio_predictions, labels, grid_size: int = 101) -> list[float]:
        """Fits `config.fusion_weights` on validation predictions (see `optimal_fusion_weights`) and returns them."""
        weights = self.optimal_fusion_weights(visual_predictions, audio_predictions, labels, grid_size)
        self.config.fusion_weights = weights
        return weights

    def forward(
        self,
        visual_features: torch.Tensor | None = None,
        au_features: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **unused_inputs,
    ) -> EmiFusionOutput | tuple:
        """Inputs as in [`EmiVisualModel`] and [`EmiAudioModel`]; `labels` `[batch, num_labels]`."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        visual = self.visual(
            visual_features=visual_features, au_features=au_features, frame_mask=frame_mask,
            pixel_values=pixel_values, return_dict=True,
        )
        audio = self.audio(
            audio_features=audio_features, audio_mask=audio_mask, input_values=input_values,
            attention_mask=attention_mask, return_dict=True,
        )
        weights = torch.tensor(self.config.fusion_weights, device=visual.intensities.device)
        intensities = fuse_intensities(
            visual.intensities, audio.intensities, visual.modality_mask, audio.modality_mask, weights
        )
        loss = None
        if labels is not None:
            present = visual.modality_mask | audio.modality_mask
            # Fused values are differentiable through both models where present (NaN rows are never selected).
            loss = _masked_loss(self.config.visual_config.loss_type, intensities, labels, present)
        output = EmiFusionOutput(
            loss=loss,
            intensities=intensities,
            frame_intensities=visual.frame_intensities,
            visual_intensities=visual.intensities,
            audio_intensities=audio.intensities,
            audio_frame_intensities=audio.frame_intensities,
            visual_mask=visual.modality_mask,
            audio_mask=audio.modality_mask,
            hidden_states=(visual.hidden_states, audio.hidden_states),
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "EmiAudioModel",
    "EmiFusionModel",
    "EmiFusionOutput",
    "EmiPreTrainedModel",
    "EmiRegressionOutput",
    "EmiVisualModel",
    "TemporalEncoder",
    "concordance_loss",
    "fuse_intensities",
    "pearson_loss",
    "regression_loss",
]
