"""Models of emi-hf: visual-dual and audio regressors of Emotional Mimicry Intensity, and their late fusion.

Data flow (shapes in brackets; B clips, T video frames, T_a audio frames, 6 emotions):

    pixel_values [B, T, 3, 112, 112] --ResNet18--> visual_features [B, T, 512] --\
                                                  au_features [B, T, n_au] ------> EmiVisualModel --> [B, 6]
    input_values [B, S] --wav2vec2--> audio_features [B, T_a, 768] -------------> EmiAudioModel  --> [B, 6]
    EmiFusionModel: per-emotion weighted average of the two clip predictions, per clip over the modalities present.

Each unimodal model is a projection, a `TemporalEncoder` (dilated residual TCN for short range, then a Transformer
encoder for long range), a frame head and masked pooling over the valid frames. Padding and frames without a face are
masked everywhere (convolutions, attention, pooling), so a padded clip gives the same result as the unpadded one. The
backbones and their inference machinery (ImageNet weights, BatchNorm folding, windowed and chunked speech encoding)
are in ``backbones_emi.py``.

This file is copied next to the weights by ``save_pretrained``: it imports only torch, transformers and
``configuration_emi`` / ``backbones_emi`` (relatively), which are copied with it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .backbones_emi import (
    FaceBackboneRunner,
    FrozenBackboneMixin,
    build_resnet18_trunk,
    embed_distinct_frames,
    encode_speech,
    init_resnet_module,
    load_resnet18_imagenet_state_dict,
)
from .configuration_emi import EmiAudioConfig, EmiFusionConfig, EmiVisualConfig


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
    r = (pred_centered * label_centered).sum(0) / (pred_centered.norm(dim=0) * label_centered.norm(dim=0) + eps)
    return (1 - r).mean()


REGRESSION_LOSSES = {"mse": F.mse_loss, "ccc": concordance_loss, "pearson": pearson_loss}
"""The loss of each `loss_type` (`configuration_emi.LOSS_TYPES`)."""


def regression_loss(loss_type: str, predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss named by `loss_type` (one of `REGRESSION_LOSSES`) between `[batch, num_labels]` tensors."""
    if loss_type not in REGRESSION_LOSSES:
        raise ValueError(f"Unknown loss_type {loss_type!r}; expected one of {tuple(REGRESSION_LOSSES)}.")
    return REGRESSION_LOSSES[loss_type](predictions, labels)


def _masked_loss(loss_type, intensities, labels, clip_mask):
    labels = labels.to(intensities.dtype)
    if not bool(clip_mask.any()):
        # No clip of the batch has this modality: a zero loss that still belongs to the graph.
        return intensities.nan_to_num(0.0).sum() * 0.0
    return regression_loss(loss_type, intensities[clip_mask], labels[clip_mask])


# ----------------------------------------------------------------------------------------------------------------------
# Temporal encoder: TCN (short range) + Transformer encoder (long range)
# ----------------------------------------------------------------------------------------------------------------------


def sinusoidal_positions(num_frames: int, hidden_size: int, device, dtype) -> torch.Tensor:
    """Fixed sinusoidal encodings `[num_frames, hidden_size]` of frame indices, for any length (no maximum)."""
    positions = torch.arange(num_frames, device=device, dtype=torch.float32)[:, None]
    half = hidden_size // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    angles = positions * frequencies[None]
    encoding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if encoding.shape[-1] < hidden_size:
        encoding = F.pad(encoding, (0, hidden_size - encoding.shape[-1]))
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
        frames, width = hidden_states.shape[1:]
        hidden_states = hidden_states + sinusoidal_positions(frames, width, hidden_states.device, hidden_states.dtype)
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
# Models: the shared base, the visual-dual and the audio regressor
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
        elif isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            init_resnet_module(module)


class _TemporalRegressor(FrozenBackboneMixin, EmiPreTrainedModel):
    """Temporal encoder, head and loss shared by the two unimodal models (the input side differs)."""

    def _build_temporal(self, config):
        self.encoder = TemporalEncoder(config)
        self.head = IntensityHead(config)

    @staticmethod
    def _check_one_input(cached, raw, cached_name: str, raw_name: str) -> None:
        """Cached features or raw inputs of a modality, never both nor neither."""
        if (cached is None) == (raw is None):
            raise ValueError(f"Pass exactly one of {cached_name} or {raw_name}.")

    @staticmethod
    def _mask_or_all_valid(frame_mask: torch.Tensor | None, features: torch.Tensor) -> torch.Tensor:
        """`frame_mask` as bool `[batch, frames]`, or all True for `features` `[batch, frames, ...]`."""
        if frame_mask is None:
            return torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        return frame_mask.bool()

    def _regress(self, hidden_states, frame_mask, labels, return_dict) -> EmiRegressionOutput | tuple:
        """Projected inputs `[batch, frames, hidden]` and bool `frame_mask` `[batch, frames]` -> the output."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        clip_mask = frame_mask.any(dim=1)
        hidden_states = self.encoder(hidden_states, frame_mask)
        frame_logits, clip_logits = self.head(hidden_states, frame_mask)
        intensities, frame_intensities = _finalise(frame_logits, clip_logits, frame_mask, clip_mask)
        loss = None
        if labels is not None:
            loss = _masked_loss(self.config.loss_type, clip_logits.sigmoid(), labels, clip_mask)
        output = EmiRegressionOutput(
            loss=loss, intensities=intensities, frame_intensities=frame_intensities, modality_mask=clip_mask,
            frame_mask=frame_mask, hidden_states=hidden_states,
        )
        return output if return_dict else output.to_tuple()


class EmiVisualModel(_TemporalRegressor):
    """Visual-dual EMI regressor: ResNet18 face embeddings (from face crops, or cached) and AU intensities per frame
    -> clip intensities."""

    config_class = EmiVisualConfig
    main_input_name = "visual_features"

    def __init__(self, config: EmiVisualConfig):
        super().__init__(config)
        self.backbone = build_resnet18_trunk()
        self.visual_projection = nn.Sequential(
            nn.LayerNorm(config.visual_feature_dim), nn.Linear(config.visual_feature_dim, config.hidden_size)
        )
        self.au_projection = nn.Sequential(nn.LayerNorm(config.num_aus), nn.Linear(config.num_aus, config.hidden_size))
        self.channel_fusion = nn.Sequential(
            nn.Linear(2 * config.hidden_size, config.hidden_size), nn.GELU(), nn.Dropout(config.dropout)
        )
        self._build_temporal(config)
        self.post_init()
        self._freeze()
        self._face_runner = FaceBackboneRunner()  # a plain attribute: never saved

    def load_imagenet_backbone(self, weights: str | os.PathLike | None = None) -> EmiVisualModel:
        """Loads ImageNet ResNet18 weights into the face backbone (see `load_resnet18_imagenet_state_dict`)."""
        self.backbone.load_state_dict(load_resnet18_imagenet_state_dict(weights))
        return self

    def embed_faces(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Face embeddings of crops `[N, 3, H, W]` -> `[N, visual_feature_dim]`, in chunks of `backbone_chunk_size`;
        at inference through a BatchNorm-folded copy of the backbone (see `FaceBackboneRunner`)."""
        return self._face_runner.embed(self.backbone, self.config, pixel_values)

    def _combine_channels(self, visual_features: torch.Tensor, au_features: torch.Tensor) -> torch.Tensor:
        """Face and AU channels, projected and combined, with channel dropout in training -> `[B, T, hidden]`."""
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
        return self.channel_fusion(torch.cat([visual, aus], dim=-1))

    def forward(
        self, visual_features: torch.Tensor | None = None, au_features: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, return_dict: bool | None = None, **unused_inputs,
    ) -> EmiRegressionOutput | tuple:
        """
        Clip intensities from face crops or their cached embeddings, with the AU intensities of the same frames.

        Args:
            visual_features: `[batch, frames, visual_feature_dim]` cached face embeddings, or
            pixel_values: `[batch, frames, 3, face_size, face_size]` aligned face crops, ImageNet-normalised (the
                backbone embeds them).
            au_features: `[batch, frames, num_aus]` AU intensities (required).
            frame_mask: `[batch, frames]`: 1 for a real frame with a face, 0 for padding or no face (default all 1).
            labels: `[batch, num_labels]` intensities in [0, 1].
            unused_inputs: other modalities' inputs (`input_values`, `audio_features`, ...), ignored, so that one
                processor output feeds any of the three models.
        """
        self._check_one_input(visual_features, pixel_values, "`visual_features` (cached embeddings)",
                              "`pixel_values` (face crops)")
        if au_features is None:
            raise ValueError("`au_features` [batch, frames, num_aus] are required by the visual model.")
        frame_mask = self._mask_or_all_valid(frame_mask, pixel_values if visual_features is None else visual_features)
        if au_features.shape[-1] != self.config.num_aus:
            raise ValueError(
                f"au_features have {au_features.shape[-1]} AUs but the model expects {self.config.num_aus} "
                f"({self.config.au_names})."
            )
        if visual_features is None:
            visual_features = embed_distinct_frames(
                self.embed_faces, pixel_values, frame_mask, self.config.visual_feature_dim
            )
        return self._regress(self._combine_channels(visual_features, au_features), frame_mask, labels, return_dict)


class EmiAudioModel(_TemporalRegressor):
    """Audio EMI regressor: wav2vec 2.0 frame embeddings (from 16 kHz waveforms, or cached) -> clip intensities."""

    config_class = EmiAudioConfig
    main_input_name = "audio_features"

    def __init__(self, config: EmiAudioConfig):
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.speech_encoder_config)
        self.audio_projection = nn.Sequential(
            nn.LayerNorm(config.audio_feature_dim), nn.Linear(config.audio_feature_dim, config.hidden_size), nn.GELU(),
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

    def embed_audio(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """
        Encoder frames of waveforms `[batch, samples]` -> (`[batch, audio_frames, audio_feature_dim]`,
        mask `[batch, audio_frames]` bool), in windows of `config.encoder_window_s` (see `encode_speech`).
        """
        return encode_speech(self.backbone, self.config, input_values, attention_mask)

    def forward(
        self, audio_features: torch.Tensor | None = None, audio_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, return_dict: bool | None = None, **unused_inputs,
    ) -> EmiRegressionOutput | tuple:
        """
        Clip intensities from waveforms or their cached encoder frames.

        Args:
            audio_features: `[batch, audio_frames, audio_feature_dim]` cached encoder frames, with
            audio_mask: `[batch, audio_frames]`, 1 = valid frame; or
            input_values: `[batch, samples]` 16 kHz waveforms, with attention_mask `[batch, samples]` (all 0 = no
                audio).
            labels: `[batch, num_labels]` intensities in [0, 1].
            unused_inputs: other modalities' inputs, ignored.
        """
        self._check_one_input(audio_features, input_values, "`audio_features` (cached)", "`input_values` (waveforms)")
        if audio_features is None:
            audio_features, audio_mask = self.embed_audio(input_values, attention_mask)
        audio_mask = self._mask_or_all_valid(audio_mask, audio_features)
        hidden_states = self.audio_projection(audio_features.to(self.audio_projection[1].weight.dtype))
        return self._regress(hidden_states, audio_mask, labels, return_dict)


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

    def forward(
        self, visual_features: torch.Tensor | None = None, au_features: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None, audio_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, return_dict: bool | None = None, **unused_inputs,
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
            loss=loss, intensities=intensities, frame_intensities=visual.frame_intensities,
            visual_intensities=visual.intensities, audio_intensities=audio.intensities,
            audio_frame_intensities=audio.frame_intensities, visual_mask=visual.modality_mask,
            audio_mask=audio.modality_mask, hidden_states=(visual.hidden_states, audio.hidden_states),
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "EmiAudioModel", "EmiFusionModel", "EmiFusionOutput", "EmiPreTrainedModel", "EmiRegressionOutput", "EmiVisualModel",
    "TemporalEncoder", "concordance_loss", "fuse_intensities", "pearson_loss", "regression_loss",
]
