"""Unimodal models of emi-hf: visual-dual, audio and text regressors of Emotional Mimicry Intensity.

Data flow (shapes in brackets; B clips, T video frames, T_a audio frames, T_t tokens, 6 emotions):

    pixel_values [B, T, 3, 112, 112] --ResNet18--> visual_features [B, T, 512] --\
                                                  au_features [B, T, n_au] ------> EmiVisualModel --> [B, 6]
    input_values [B, S] --wav2vec2--> audio_features [B, T_a, 768] -------------> EmiAudioModel  --> [B, 6]
    input_ids [B, T_t] --text encoder--> text_features [B, T_t, 768] -----------> EmiTextModel   --> [B, 6]

Each unimodal model is a projection, a `TemporalEncoder` (dilated residual TCN for short range, then a Transformer
encoder for long range), a frame head and masked pooling over the valid frames (`modeling_base_emi`). Padding and
frames without a face (tokens of an empty transcript) are masked everywhere (convolutions, attention, pooling), so a
padded clip gives the same result as the unpadded one. The backbones and their inference machinery (ImageNet
weights, BatchNorm folding, windowed and chunked speech encoding) are in ``backbones_emi.py``; their fusion is
``modeling_fusion_emi.py``.

This file is copied next to the weights by ``save_pretrained``: it imports only torch, transformers and the other
``*_emi.py`` files (relatively), which are copied with it.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .backbones_emi import (
    FaceBackboneRunner,
    build_face_backbone,
    embed_distinct_frames,
    encode_speech,
    load_resnet18_imagenet_state_dict,
    pretrained_face_backbone_state,
)
from .configuration_emi import EmiAudioConfig, EmiTextConfig, EmiVisualConfig
from .encoders_emi import build_speech_encoder, describe_face_backbone, load_pretrained_speech_encoder
from .modeling_base_emi import EmiPreTrainedModel, EmiRegressionOutput, _TemporalRegressor  # noqa: F401  (re-exported)
from .temporal_emi import (  # noqa: F401  (losses re-exported: modeling_emi is their public home too)
    REGRESSION_LOSSES,
    LossReduction,
    TemporalEncoder,
    clip_loss,
    concordance_loss,
    loss_reduction,
    pearson_loss,
    regression_loss,
    weighted_regression_loss,
)


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

    def _combine_channels(self, visual_features: torch.Tensor, au_features: torch.Tensor | None) -> torch.Tensor:
        """Face and AU channels, projected and combined, with channel dropout in training -> `[B, T, hidden]`.
        Without `au_features` the AU channel is dropped for every clip exactly as channel dropout drops it in
        training (zeros after its projection, the face channel scaled by 2): a missing AU channel is a missing
        input, not AUs of value 0."""
        dtype = self.visual_projection[1].weight.dtype
        visual = self.visual_projection(visual_features.to(dtype))
        if au_features is None and not self.config.num_aus:  # a model without AUs: its empty channel, as always
            au_features = visual_features.new_zeros(*visual_features.shape[:2], 0)
        if au_features is None:
            return self.channel_fusion(torch.cat([visual * 2.0, torch.zeros_like(visual)], dim=-1))
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
            au_features: `[batch, frames, num_aus]` AU intensities, *optional*: without them the AU channel counts
                as missing (dropped as channel dropout drops it in training), as a frame without a face is masked.
            frame_mask: `[batch, frames]`: 1 for a real frame with a face, 0 for padding or no face (default all 1).
            labels: `[batch, num_labels]` intensities in [0, 1].
            output_hidden_states, output_attentions, return_dict: as in transformers (see [`EmiRegressionOutput`]).

        Other keywords raise TypeError; a processor batch holding other modalities' inputs too goes through
        `batch.for_model(model)` (`emi_hf.processing_emi.model_inputs`).
        """
        self._check_one_input(visual_features, pixel_values, "`visual_features` (cached embeddings)",
                              "`pixel_values` (face crops)")
        frame_mask = self._mask_or_all_valid(frame_mask, pixel_values if visual_features is None else visual_features)
        if au_features is not None and au_features.shape[-1] != self.config.num_aus:
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
        self.backbone = build_speech_encoder(config.speech_encoder_config, config.speech_head_labels)
        if config.num_speech_layers > 1:  # SUPERB: a learned softmax-weighted sum of the chosen hidden states
            self.layer_weights = nn.Parameter(torch.zeros(config.num_speech_layers))
        self.audio_projection = self._feature_projection(config.audio_feature_dim, config)
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
        labels = getattr(encoder, "emotion_head_labels", None)  # audEERING's layout: hidden states + head outputs
        if labels:
            if config_kwargs.get("speech_layers") is not None:
                raise ValueError(f"{name_or_path} has a regression head: its frames are the last hidden state and the "
                                 "head's outputs, so speech_layers cannot be chosen (leave it unset).")
            config_kwargs.setdefault("speech_head_labels", list(labels))
        config_kwargs.setdefault("audio_feature_dim", encoder_config.hidden_size + len(labels or ()))
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


class EmiTextModel(_TemporalRegressor):
    """Text EMI regressor: token embeddings of a frozen transformers text encoder over the transcript (from token ids,
    or cached) -> clip intensities. An empty transcript (no valid token) gives NaN intensities and
    `modality_mask` False: a missing modality."""

    config_class = EmiTextConfig
    main_input_name = "text_features"

    def __init__(self, config: EmiTextConfig):
        super().__init__(config)
        from transformers import AutoModel

        self.backbone = AutoModel.from_config(config.text_encoder_config)
        self.text_projection = self._feature_projection(config.text_feature_dim, config)
        self._build_temporal(config)
        self.post_init()
        self._freeze()

    @classmethod
    def from_text_encoder(cls, name_or_path: str | os.PathLike, revision: str | None = None,
                          **config_kwargs) -> EmiTextModel:
        """A text model around a pretrained transformers text encoder (a Hub id such as `thenlper/gte-base`, or a
        folder saved with `save_pretrained`); the temporal part is random. Its tokenizer is loaded with
        `AutoTokenizer.from_pretrained(name_or_path)` (`emi_hf.text.TextEncoder` does both)."""
        from transformers import AutoModel

        encoder = AutoModel.from_pretrained(name_or_path, revision=revision)
        return cls.from_encoder_model(encoder, os.fspath(name_or_path), **config_kwargs)

    @classmethod
    def from_encoder_model(cls, encoder: nn.Module, name: str | None = None, **config_kwargs) -> EmiTextModel:
        """A text model holding a copy of the weights of the (loaded) transformers text encoder `encoder`."""
        config_kwargs.setdefault("text_feature_dim", encoder.config.hidden_size)
        config_kwargs.setdefault("text_encoder_name", name)
        model = cls(EmiTextConfig(text_encoder_config=encoder.config.to_dict(), **config_kwargs))
        missing, unexpected = model.backbone.load_state_dict(encoder.state_dict(), strict=False)
        if unexpected or missing:
            raise ValueError(f"Encoder weights of {name} do not fit: missing {missing}, unexpected {unexpected}.")
        model._freeze()
        return model

    def embed_text(self, input_ids: torch.Tensor, text_mask: torch.Tensor | None = None,
                   token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings `[batch, tokens, text_feature_dim]` (the encoder's last hidden states) of token ids
        `[batch, tokens]`, and the bool token mask; rows without a valid token are zeros. With
        `config.text_pooling` "cls" / "mean": `[batch, 1, text_feature_dim]` (the [CLS] state / the masked mean)."""
        mask = torch.ones_like(input_ids, dtype=torch.bool) if text_mask is None else text_mask.bool()
        attention = mask.clone()
        attention[~mask.any(dim=1), 0] = True  # an empty transcript: run one token, then discard it
        inputs = {"input_ids": input_ids, "attention_mask": attention.long()}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        features = self.backbone(**inputs).last_hidden_state
        features = features * mask[..., None].to(features.dtype)
        pooling = getattr(self.config, "text_pooling", "tokens")
        if pooling == "tokens":
            return features, mask
        # Copied from emi_hf.text.encoder.pool_text_states (the features extraction caches): [CLS] or masked mean
        present = mask.any(dim=1, keepdim=True)
        if pooling == "cls":
            return features[:, :1], present
        weights = mask[..., None].to(features.dtype)
        return (features * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp(min=1.0), present

    def forward(
        self, text_features: torch.Tensor | None = None, text_mask: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
        output_attentions: bool | None = None, return_dict: bool | None = None,
    ) -> EmiRegressionOutput | tuple:
        """
        Clip intensities from a transcript's token ids or their cached token embeddings.

        Args:
            text_features: `[batch, tokens, text_feature_dim]` cached token embeddings, or
            input_ids: `[batch, tokens]` token ids of the text encoder's tokenizer (with `token_type_ids` where the
                encoder takes them);
            text_mask: `[batch, tokens]`, 1 = a real token (the tokenizer's attention mask); all 0 = no transcript.
            labels: `[batch, num_labels]` intensities in [0, 1].
            output_hidden_states, output_attentions, return_dict: as in [`EmiVisualModel`]; other keywords raise
                TypeError.
        """
        self._check_one_input(text_features, input_ids, "`text_features` (cached)", "`input_ids` (token ids)")
        if text_features is None:
            text_features, text_mask = self.embed_text(input_ids, text_mask, token_type_ids)
        text_mask = self._mask_or_all_valid(text_mask, text_features)
        if text_features.shape[-1] != self.config.text_feature_dim:
            raise ValueError(f"text_features are {text_features.shape[-1]} wide but the model expects "
                             f"{self.config.text_feature_dim} (its text encoder's hidden size).")
        dtype = self.text_projection[1].weight.dtype
        hidden_states = self.text_projection(text_features.to(dtype))
        return self._regress(hidden_states, text_mask, labels, return_dict, output_hidden_states, output_attentions)


__all__ = [
    "EmiAudioModel", "EmiPreTrainedModel", "EmiRegressionOutput", "EmiTextModel", "EmiVisualModel",
    "LossReduction", "TemporalEncoder", "clip_loss", "concordance_loss", "loss_reduction", "pearson_loss",
    "regression_loss", "weighted_regression_loss",
]
