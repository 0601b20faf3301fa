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
``configuration_emi`` / ``backbones_emi`` / ``temporal_emi`` (relatively), which are copied with it. The temporal
encoder, the head and the losses are in ``temporal_emi.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .backbones_emi import (
    FaceBackboneRunner,
    FrozenBackboneMixin,
    build_face_backbone,
    embed_distinct_frames,
    encode_speech,
    init_resnet_module,
    load_resnet18_imagenet_state_dict,
    pretrained_face_backbone_state,
)
from .configuration_emi import EmiAudioConfig, EmiFusionConfig, EmiVisualConfig
from .encoders_emi import build_speech_encoder, describe_face_backbone, load_pretrained_speech_encoder
from .temporal_emi import (  # noqa: F401  (losses re-exported: modeling_emi is their public home too)
    REGRESSION_LOSSES,
    IntensityHead,
    TemporalEncoder,
    _finalise,
    _masked_loss,
    concordance_loss,
    init_submodel_on_load,
    pearson_loss,
    regression_loss,
)


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
        last_hidden_state (`torch.FloatTensor` of shape `[batch, frames, hidden_size]`): temporal encoder output.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): with `output_hidden_states=True` (or
            `config.output_hidden_states`): the encoder input (projected features) and the output of each temporal
            layer (TCN blocks, then Transformer layers), each `[batch, frames, hidden_size]`; else None.
        attentions (`tuple(torch.FloatTensor)`, *optional*): with `output_attentions=True`: one
            `[batch, heads, frames, frames]` tensor of attention weights per Transformer layer; else None.
    """

    loss: torch.FloatTensor | None = None
    intensities: torch.FloatTensor | None = None
    frame_intensities: torch.FloatTensor | None = None
    modality_mask: torch.BoolTensor | None = None
    frame_mask: torch.BoolTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


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
        visual_last_hidden_state, audio_last_hidden_state (`torch.FloatTensor`): each model's `last_hidden_state`.
        visual_hidden_states, audio_hidden_states, visual_attentions, audio_attentions (`tuple(torch.FloatTensor)`,
            *optional*): each model's `hidden_states` / `attentions` (see [`EmiRegressionOutput`]), when asked for.
    """

    loss: torch.FloatTensor | None = None
    intensities: torch.FloatTensor | None = None
    frame_intensities: torch.FloatTensor | None = None
    visual_intensities: torch.FloatTensor | None = None
    audio_intensities: torch.FloatTensor | None = None
    audio_frame_intensities: torch.FloatTensor | None = None
    visual_mask: torch.BoolTensor | None = None
    audio_mask: torch.BoolTensor | None = None
    visual_last_hidden_state: torch.FloatTensor | None = None
    audio_last_hidden_state: torch.FloatTensor | None = None
    visual_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    audio_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    visual_attentions: tuple[torch.FloatTensor, ...] | None = None
    audio_attentions: tuple[torch.FloatTensor, ...] | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Models: the shared base, the visual-dual and the audio regressor
# ----------------------------------------------------------------------------------------------------------------------


class EmiPreTrainedModel(PreTrainedModel):
    """Weight initialisation and checkpoint plumbing shared by the emi-hf models. Attention: `"sdpa"` (default)
    or `"eager"` (`attn_implementation=` in `from_pretrained` / `from_config`; `output_attentions=True` uses eager)."""

    config_class = EmiVisualConfig
    base_model_prefix = "emi"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["TransformerEncoderLayer", "TemporalConvBlock"]

    def _init_weights(self, module):
        """The init of every module the emi models create (guarded `transformers.initialization` functions, so loaded
        weights are kept); a transformers sub-model (the speech encoder) has its own `_init_weights`."""
        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm) and module.weight is not None:
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            init_resnet_module(module)
        if isinstance(getattr(module, "layer_weights", None), nn.Parameter):
            init.zeros_(module.layer_weights)  # the speech layers' mixing weights start uniform

    def initialize_weights(self):
        # A transformers sub-model (the speech encoder) not initialised yet (from_pretrained): after transformers' pass,
        # the parts it skips there for custom code, drawn as in Model(config) (see `init_submodel_on_load`).
        pending = [module for module in self.modules() if isinstance(module, PreTrainedModel)
                   and not isinstance(module, EmiPreTrainedModel) and not getattr(module, "_is_hf_initialized", False)]
        super().initialize_weights()
        for module in pending:
            init_submodel_on_load(module)


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

    def _regress(self, hidden_states, frame_mask, labels, return_dict, output_hidden_states=None,
                 output_attentions=None) -> EmiRegressionOutput | tuple:
        """Projected inputs `[batch, frames, hidden]` and bool `frame_mask` `[batch, frames]` -> the output."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        clip_mask = frame_mask.any(dim=1)
        encoded = self.encoder(
            hidden_states, frame_mask,
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states,
            output_attentions if output_attentions is not None else self.config.output_attentions,
        )
        hidden_states = encoded.last_hidden_state
        frame_logits, clip_logits = self.head(hidden_states, frame_mask)
        intensities, frame_intensities = _finalise(frame_logits, clip_logits, frame_mask, clip_mask)
        loss = None
        if labels is not None:
            loss = _masked_loss(self.config.loss_type, clip_logits.sigmoid(), labels, clip_mask)
        output = EmiRegressionOutput(
            loss=loss, intensities=intensities, frame_intensities=frame_intensities, modality_mask=clip_mask,
            frame_mask=frame_mask, last_hidden_state=hidden_states, hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )
        return output if return_dict else output.to_tuple()


class EmiVisualModel(_TemporalRegressor):
    """Visual-dual EMI regressor: face embeddings of the configured backbone (ResNet18 by default; from face crops, or
    cached) and AU intensities per frame -> clip intensities."""

    config_class = EmiVisualConfig
    main_input_name = "visual_features"

    def __init__(self, config: EmiVisualConfig):
        super().__init__(config)
        self.backbone = build_face_backbone(config)
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

    def load_backbone_weights(self, weights: str | os.PathLike | None = None) -> EmiVisualModel:
        """Loads face backbone weights: a `.pth` / `.safetensors` file (any family), or `None` for the backbone's
        published ones (torchvision's cache, timm's loading, the transformers id / folder); see
        `encoders_emi.pretrained_face_backbone_state`."""
        self.backbone.load_state_dict(pretrained_face_backbone_state(self.config, weights))
        self._freeze()
        return self

    @classmethod
    def from_backbone(cls, backbone: str | os.PathLike, weights: str | os.PathLike | None = None,
                      revision: str | None = None, **config_kwargs) -> EmiVisualModel:
        """A visual model on the face backbone `backbone` (`"resnet18"`, `"torchvision:NAME"`, `"timm:NAME"`, a
        transformers vision model id / folder), its embedding size, input size and normalisation taken from it;
        `weights` as in `load_backbone_weights`, or `"random"`. The temporal part is random."""
        fields = describe_face_backbone(os.fspath(backbone), revision)
        model = cls(cls.config_class(**{**fields, **config_kwargs}))
        return model if str(weights) == "random" else model.load_backbone_weights(weights)

    def embed_faces(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Face embeddings of crops `[N, 3, H, W]` -> `[N, visual_feature_dim]`, in chunks of `backbone_chunk_size`;
        at inference through a BatchNorm-folded copy of the backbone (see `FaceBackboneRunner`)."""
        return self._face_runner.embed(self.backbone, self.config, pixel_values)

    def _combine_channels(self, visual_features: torch.Tensor, au_features: torch.Tensor) -> torch.Tensor:
        """Face and AU channels, projected and combined, with channel dropout in training -> `[B, T, hidden]`."""
        dtype = self.visual_projection[1].weight.dtype
        visual = self.visual_projection(visual_features.to(dtype))
        aus = self.au_projection(au_features.to(dtype))
        if self.training and self.config.channel_dropout > 0 and self.config.num_aus:  # num_aus=0: one channel only
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
        labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
        output_attentions: bool | None = None, return_dict: bool | None = None,
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
            output_hidden_states, output_attentions, return_dict: as in transformers (see [`EmiRegressionOutput`]).

        Other keywords raise TypeError; a processor batch holding other modalities' inputs too goes through
        `batch.for_model(model)` (`emi_hf.processing_emi.model_inputs`).
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
        return self._regress(self._combine_channels(visual_features, au_features), frame_mask, labels, return_dict,
                             output_hidden_states, output_attentions)


class EmiAudioModel(_TemporalRegressor):
    """Audio EMI regressor: wav2vec 2.0 frame embeddings (from 16 kHz waveforms, or cached) -> clip intensities."""

    config_class = EmiAudioConfig
    main_input_name = "audio_features"

    def __init__(self, config: EmiAudioConfig):
        super().__init__(config)
        self.backbone = build_speech_encoder(config.speech_encoder_config)
        if config.num_speech_layers > 1:  # SUPERB: a learned softmax-weighted sum of the chosen hidden states
            self.layer_weights = nn.Parameter(torch.zeros(config.num_speech_layers))
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
        Builds an audio model around a pretrained transformers audio encoder (a Hub id such as
        `facebook/wav2vec2-base`, or a local folder saved with `save_pretrained`; of a Whisper model its encoder); the
        temporal part is random.
        """
        encoder = load_pretrained_speech_encoder(name_or_path, revision=revision)
        encoder_config = encoder.config
        config_kwargs.setdefault("audio_feature_dim", encoder_config.hidden_size)
        config_kwargs.setdefault("speech_encoder_name", os.fspath(name_or_path))
        config = EmiAudioConfig(speech_encoder_config=encoder_config.to_dict(), **config_kwargs)
        model = cls(config)
        missing, unexpected = model.backbone.load_state_dict(encoder.state_dict(), strict=False)
        if unexpected or [k for k in missing if "masked_spec_embed" not in k]:
            raise ValueError(f"Encoder weights of {name_or_path} do not fit: missing {missing}, unexpected {unexpected}.")
        model._freeze()
        return model

    def combine_layers(self, audio_features: torch.Tensor) -> torch.Tensor:
        """`[B, T, L * D]` frames of the `L = num_speech_layers` chosen hidden states -> their softmax-weighted sum
        `[B, T, D]` (`layer_weights`); one layer passes through."""
        dtype = self.audio_projection[1].weight.dtype
        layers, width = self.config.num_speech_layers, self.config.audio_feature_dim
        if audio_features.shape[-1] != layers * width:
            raise ValueError(f"audio_features are {audio_features.shape[-1]} wide but the model expects {layers} "
                             f"speech layer(s) of {width} (speech_layers={self.config.speech_layers}).")
        if layers == 1:
            return audio_features.to(dtype)
        stacked = audio_features.to(dtype).unflatten(-1, (layers, width))
        return (stacked * self.layer_weights.softmax(0).to(dtype)[:, None]).sum(dim=-2)

    def embed_audio(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """
        Encoder frames of waveforms `[batch, samples]` -> (`[batch, audio_frames, audio_feature_dim]`,
        mask `[batch, audio_frames]` bool), in windows of `config.encoder_window_s` (see `encode_speech`).
        """
        return encode_speech(self.backbone, self.config, input_values, attention_mask)

    def forward(
        self, audio_features: torch.Tensor | None = None, audio_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
        output_attentions: bool | None = None, return_dict: bool | None = None,
    ) -> EmiRegressionOutput | tuple:
        """
        Clip intensities from waveforms or their cached encoder frames.

        Args:
            audio_features: `[batch, audio_frames, audio_feature_dim]` cached encoder frames (with several
                `speech_layers`, `[batch, audio_frames, num_speech_layers * audio_feature_dim]`), with
            audio_mask: `[batch, audio_frames]`, 1 = valid frame; or
            input_values: `[batch, samples]` 16 kHz waveforms, with attention_mask `[batch, samples]` (all 0 = no
                audio).
            labels: `[batch, num_labels]` intensities in [0, 1].
            output_hidden_states, output_attentions, return_dict: as in [`EmiVisualModel`]; other keywords raise
                TypeError (`batch.for_model(model)` keeps a processor batch's audio inputs).
        """
        self._check_one_input(audio_features, input_values, "`audio_features` (cached)", "`input_values` (waveforms)")
        if audio_features is None:
            audio_features, audio_mask = self.embed_audio(input_values, attention_mask)
        audio_mask = self._mask_or_all_valid(audio_mask, audio_features)
        hidden_states = self.audio_projection(self.combine_layers(audio_features))
        return self._regress(hidden_states, audio_mask, labels, return_dict, output_hidden_states, output_attentions)


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
        labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
        output_attentions: bool | None = None, return_dict: bool | None = None,
    ) -> EmiFusionOutput | tuple:
        """Inputs as in [`EmiVisualModel`] and [`EmiAudioModel`] (their union; other keywords raise TypeError);
        `labels` `[batch, num_labels]`."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        extras = dict(
            output_hidden_states=output_hidden_states if output_hidden_states is not None
            else self.config.output_hidden_states,
            output_attentions=output_attentions if output_attentions is not None else self.config.output_attentions,
            return_dict=True,
        )
        visual = self.visual(
            visual_features=visual_features, au_features=au_features, frame_mask=frame_mask,
            pixel_values=pixel_values, **extras,
        )
        audio = self.audio(
            audio_features=audio_features, audio_mask=audio_mask, input_values=input_values,
            attention_mask=attention_mask, **extras,
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
            audio_mask=audio.modality_mask, visual_last_hidden_state=visual.last_hidden_state,
            audio_last_hidden_state=audio.last_hidden_state, visual_hidden_states=visual.hidden_states,
            audio_hidden_states=audio.hidden_states, visual_attentions=visual.attentions,
            audio_attentions=audio.attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "EmiAudioModel", "EmiFusionModel", "EmiFusionOutput", "EmiPreTrainedModel", "EmiRegressionOutput", "EmiVisualModel",
    "TemporalEncoder", "concordance_loss", "fuse_intensities", "pearson_loss", "regression_loss",
]
