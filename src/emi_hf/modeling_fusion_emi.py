"""Fusion of the emi-hf models: any non-empty set of the visual, audio and text models (`EmiFusionConfig`).

Two kinds (`config.fusion_type`):

- ``"late"`` (the paper's, default): each model predicts clip intensities from its own inputs, and the result is
  their per-emotion weighted average (`config.modality_weights`, on the simplex; default equal, the plain average),
  renormalised per clip over the modalities present: a clip without a face is scored by the others alone.
- ``"feature"``: each model's pooled embedding (`pooler_output`), concatenated with a presence flag per modality
  (zeros for a missing one), goes through an MLP head. Trained jointly (`train.py --modality fusion --fusion-mode
  joint`), with modality dropout (`config.modality_dropout`) so that a modality missing at test time is handled as
  in training.
- ``"cross-attention"`` (text-anchored, the ABAW10 winner's): the text model's pooled state (its [CLS] state with
  `text_pooling="cls"`) is the query of one cross-attention block over the audio model's sequence
  (`last_hidden_state`, key padding mask) and one over the visual model's; a learnable token stands in for each
  modality missing in a clip (or dropped by modality dropout); text query, audio and visual parts concatenated ->
  MLP -> sigmoid. Trained jointly as ``"feature"`` is (`CrossAttentionFusionHead`).

This file is copied next to the weights by ``save_pretrained`` (imports: torch, transformers, the ``*_emi.py`` files).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .configuration_emi import FUSION_MODALITIES, EmiFusionConfig
from .modeling_base_emi import EmiPreTrainedModel, EmiRegressionOutput
from .modeling_emi import EmiAudioModel, EmiTextModel, EmiVisualModel
from .temporal_emi import clip_loss

MODEL_CLASSES = {"visual": EmiVisualModel, "audio": EmiAudioModel, "text": EmiTextModel}
# Each sub-model's forward arguments, as the fusion model takes them (their union).
MODALITY_INPUTS = {
    "visual": ("visual_features", "au_features", "frame_mask", "pixel_values"),
    "audio": ("audio_features", "audio_mask", "input_values", "attention_mask"),
    "text": ("text_features", "text_mask", "input_ids", "token_type_ids"),
}


@dataclass
class EmiFusionOutput(ModelOutput):
    """
    Output of [`EmiFusionModel`]. Fields of a modality the model does not hold are None.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): loss of the fused intensities, when `labels` are given
            (feature-level fusion adds `unimodal_loss_weight` times the mean of the models' own losses).
        intensities (`torch.FloatTensor` of shape `[batch, num_labels]`): fused clip intensities, from the modalities
            present in each clip (NaN only when none is).
        frame_intensities (`torch.FloatTensor` of shape `[batch, frames, num_labels]`): the first timeline the model
            has: visual frames, else audio frames, else tokens.
        visual_intensities, audio_intensities, text_intensities (`torch.FloatTensor` `[batch, num_labels]`): each
            model's own clip intensities.
        audio_frame_intensities (`[batch, audio_frames, num_labels]`), text_frame_intensities
            (`[batch, tokens, num_labels]`): the audio and text timelines.
        visual_mask, audio_mask, text_mask (`torch.BoolTensor` of shape `[batch]`): the clip had a face in some frame,
            audio, a non-empty transcript.
        {visual,audio,text}_last_hidden_state, _hidden_states, _attentions: each model's (see
            [`EmiRegressionOutput`]), the last two when asked for.
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
    text_intensities: torch.FloatTensor | None = None
    text_frame_intensities: torch.FloatTensor | None = None
    text_mask: torch.BoolTensor | None = None
    text_last_hidden_state: torch.FloatTensor | None = None
    text_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    text_attentions: tuple[torch.FloatTensor, ...] | None = None


def fuse_intensities(
    visual: torch.Tensor, audio: torch.Tensor, visual_mask: torch.Tensor, audio_mask: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """
    Per-emotion weighted average `w * visual + (1 - w) * audio` of `[batch, num_labels]` predictions; a clip missing
    one modality gets the other one alone, a clip missing both gets NaN. (The two-modality form of
    `fuse_modalities`, kept bit for bit as earlier versions computed it.)
    """
    w = weights.to(visual.dtype)[None].expand_as(visual)
    w = torch.where(visual_mask[:, None], w, torch.zeros_like(w))
    w = torch.where(audio_mask[:, None], w, torch.ones_like(w))
    fused = w * visual.nan_to_num(0.0) + (1 - w) * audio.nan_to_num(0.0)
    present = (visual_mask | audio_mask)[:, None]
    return torch.where(present, fused, torch.full_like(fused, float("nan")))


def fuse_modalities(predictions: dict, masks: dict, weights: dict) -> torch.Tensor:
    """
    Late fusion of any set of modalities: `predictions[m]` `[batch, num_labels]`, `masks[m]` bool `[batch]`,
    `weights[m]` `[num_labels]` (each emotion's on the simplex). Per clip and emotion, the weighted mean over the
    modalities present, their weights renormalised to sum 1; where the present ones all have weight 0, their plain
    mean. NaN for a clip with no modality. A visual + audio pair is `fuse_intensities` exactly.
    """
    names = list(predictions)
    if names == ["visual", "audio"]:
        return fuse_intensities(predictions["visual"], predictions["audio"], masks["visual"], masks["audio"],
                                torch.as_tensor(weights["visual"], device=predictions["visual"].device))
    first = predictions[names[0]]
    values = torch.stack([predictions[m].nan_to_num(0.0) for m in names], dim=1)  # [B, M, L]
    present = torch.stack([masks[m].bool() for m in names], dim=1)  # [B, M]
    w = torch.stack([torch.as_tensor(weights[m], dtype=first.dtype, device=first.device) for m in names])  # [M, L]
    w = w[None] * present[..., None].to(first.dtype)
    total = w.sum(dim=1, keepdim=True)
    equal = (present[..., None] / present.sum(dim=1).clamp(min=1)[:, None, None]).to(first.dtype).expand_as(w)
    all_present = present.all(dim=1)[:, None, None]  # the weights as configured (already on the simplex)
    w = torch.where(all_present, w, torch.where(total > 0, w / total.clamp(min=1e-12), equal))
    fused = (w * values).sum(dim=1)
    return torch.where(present.any(dim=1)[:, None], fused, torch.full_like(fused, float("nan")))


def drop_modalities(present: torch.Tensor, probability: float) -> torch.Tensor:
    """Modality dropout: bool `[batch, modalities]` with each present modality dropped with `probability`, never all
    of a clip's (a clip whose draw drops every one keeps them all)."""
    kept = present & (torch.rand(present.shape, device=present.device) >= probability)
    return torch.where(kept.any(dim=1, keepdim=True), kept, present)


class FeatureFusionHead(nn.Module):
    """Feature-level fusion: per modality a LayerNorm of its pooled embedding (zeros where absent), concatenated with
    the presence flags, through a two-layer MLP -> clip logits `[batch, num_labels]`."""

    def __init__(self, widths: list[int], hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(width) for width in widths)
        self.mlp = nn.Sequential(
            nn.Linear(sum(widths) + len(widths), hidden_size), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden_size, num_labels),
        )

    def forward(self, pooled: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        flags = present.to(pooled[0].dtype)
        parts = [norm(p) * flags[:, i : i + 1] for i, (norm, p) in enumerate(zip(self.norms, pooled))]
        return self.mlp(torch.cat([*parts, flags], dim=-1))


class CrossAttentionBlock(nn.Module):
    """One query `[batch, dim]` attending over a sequence `[batch, frames, width]` with a key padding mask: keys and
    values LayerNormed and projected to `dim`, multi-head scaled dot-product attention, then
    `LayerNorm(query + out_proj(attended))` -> `[batch, dim]`."""

    def __init__(self, width: int, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.key_norm = nn.LayerNorm(width)
        self.key = nn.Linear(width, dim)
        self.value = nn.Linear(width, dim)
        self.query = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, sequence: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """`query` `[batch, dim]`, `sequence` `[batch, frames, width]`, `frame_mask` bool `[batch, frames]` (True =
        a valid frame; a row without one attends to every frame, its output is replaced by the missing token)."""
        batch, frames, _ = sequence.shape
        dim = query.shape[-1]
        allowed = frame_mask | ~frame_mask.any(dim=1, keepdim=True)
        keys = self.key_norm(sequence)

        def heads(x):  # [batch, n, dim] -> [batch, heads, n, dim / heads]
            return x.view(batch, x.shape[1], self.heads, dim // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(heads(self.query(query)[:, None]), heads(self.key(keys)),
                                                  heads(self.value(keys)), attn_mask=allowed[:, None, None, :])
        attended = attended.transpose(1, 2).reshape(batch, dim)
        return self.norm(query + self.dropout(self.out_proj(attended)))


class CrossAttentionFusionHead(nn.Module):
    """
    Text-anchored cross-attention fusion: the text state (`pooler_output`, projected to `dim`) queries the visual and
    the audio sequences (`CrossAttentionBlock` each, those the model has). Per clip and modality, where it is absent
    (or dropped), its learnable `missing_tokens[m]` `[dim]` stands in: for text as the query, for visual / audio as
    that block's output. `[text query, *attended]` -> LayerNorm -> Linear -> GELU -> dropout -> Linear -> clip logits.
    """

    def __init__(self, widths: dict, dim: int, heads: int, num_labels: int, dropout: float):
        super().__init__()
        self.context_modalities = [m for m in widths if m != "text"]
        self.text_projection = nn.Linear(widths["text"], dim)
        self.blocks = nn.ModuleDict({m: CrossAttentionBlock(widths[m], dim, heads, dropout)
                                     for m in self.context_modalities})
        self.missing_tokens = nn.ParameterDict({m: nn.Parameter(torch.zeros(dim)) for m in widths})
        width = dim * (1 + len(self.context_modalities))
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(dim, num_labels))

    def _or_token(self, modality: str, values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        return torch.where(present[:, None], values, self.missing_tokens[modality].to(values.dtype)[None])

    def forward(self, outputs: dict, present: dict) -> torch.Tensor:
        """`outputs[m]`: each model's `EmiRegressionOutput`; `present[m]` bool `[batch]`: the clips whose modality
        `m` is used (absent or dropped: its token). Returns clip logits `[batch, num_labels]`."""
        text = outputs["text"].pooler_output
        query = self._or_token("text", self.text_projection(text.to(self.text_projection.weight.dtype)),
                               present["text"])
        parts = [query]
        for modality in self.context_modalities:
            out = outputs[modality]
            attended = self.blocks[modality](query, out.last_hidden_state.to(query.dtype), out.frame_mask.bool())
            parts.append(self._or_token(modality, attended, present[modality]))
        return self.mlp(torch.cat(parts, dim=-1))


class EmiFusionModel(EmiPreTrainedModel):
    """
    Fusion of any non-empty set of [`EmiVisualModel`], [`EmiAudioModel`] and [`EmiTextModel`] (the modalities whose
    config `EmiFusionConfig` holds; sub-models `visual`, `audio`, `text`): late, by per-emotion weights on the simplex
    renormalised per clip over the modalities present, or feature-level (`fusion_type="feature"`). Takes the union
    of the models' inputs, so `model(**processor(videos=...))` works.
    """

    config_class = EmiFusionConfig
    main_input_name = "visual_features"
    _no_split_modules = ["EmiVisualModel", "EmiAudioModel", "EmiTextModel"]

    def __init__(self, config: EmiFusionConfig):
        super().__init__(config)
        sub_configs = config.sub_configs_of_modalities()
        for modality, sub_config in sub_configs.items():
            setattr(self, modality, MODEL_CLASSES[modality](sub_config))
        if config.fusion_type == "feature":
            widths = [sub.hidden_size for sub in sub_configs.values()]
            self.fusion_head = FeatureFusionHead(widths, config.feature_fusion_hidden_size, len(config.id2label),
                                                 next(iter(sub_configs.values())).dropout)
        elif config.fusion_type == "cross-attention":
            widths = {m: sub.hidden_size for m, sub in sub_configs.items()}
            self.fusion_head = CrossAttentionFusionHead(widths, config.cross_attention_dim,
                                                        config.cross_attention_heads, len(config.id2label),
                                                        next(iter(sub_configs.values())).dropout)
        self.post_init()

    @property
    def modalities(self) -> list[str]:
        return self.config.modalities

    @classmethod
    def from_unimodal(
        cls, visual: str | os.PathLike | EmiVisualModel | None = None,
        audio: str | os.PathLike | EmiAudioModel | None = None, fusion_weights: list[float] | None = None,
        text: str | os.PathLike | EmiTextModel | None = None, fusion_type: str = "late",
        modality_weights: dict | None = None, **config_kwargs,
    ) -> EmiFusionModel:
        """Builds the fusion model from trained checkpoints (folders or Hub ids) or model instances of any non-empty
        set of modalities. `fusion_weights` (visual share, visual + audio) or `modality_weights`: the late weights
        (default equal)."""
        models = {}
        for modality, model in (("visual", visual), ("audio", audio), ("text", text)):
            if model is not None:
                models[modality] = model if isinstance(model, nn.Module) else \
                    MODEL_CLASSES[modality].from_pretrained(model)
        if not models:
            raise ValueError("from_unimodal needs at least one of visual, audio, text.")
        configs = {f"{m}_config": model.config.to_dict() for m, model in models.items()}
        if fusion_weights is not None:
            config_kwargs["fusion_weights"] = fusion_weights
        config = EmiFusionConfig(**configs, fusion_type=fusion_type, modality_weights=modality_weights,
                                 **config_kwargs)
        fusion = cls(config)
        for modality, model in models.items():
            getattr(fusion, modality).load_state_dict(model.state_dict())
        return fusion

    def _run_models(self, inputs: dict, extras: dict) -> dict:
        """Each sub-model on its inputs. Without any text input (a processor batch of videos alone), the text model
        is skipped and every clip counts as having no transcript."""
        outputs = {}
        for modality in self.modalities:
            model_inputs = {name: inputs[name] for name in MODALITY_INPUTS[modality]}
            if modality == "text" and len(self.modalities) > 1 and all(v is None for v in model_inputs.values()):
                continue
            outputs[modality] = getattr(self, modality)(**model_inputs, **extras)
        if len(outputs) < len(self.modalities):
            outputs["text"] = self._no_transcripts(next(iter(outputs.values())).intensities)
        return outputs

    def _no_transcripts(self, like: torch.Tensor) -> EmiRegressionOutput:
        """The text model's output for clips without a transcript: NaN intensities, `modality_mask` False."""
        batch = like.shape[0]
        return EmiRegressionOutput(
            intensities=torch.full_like(like, float("nan")), modality_mask=torch.zeros(batch, dtype=torch.bool,
                                                                                      device=like.device),
            pooler_output=torch.zeros(batch, self.config.text_config.hidden_size, dtype=like.dtype,
                                      device=like.device))

    def _feature_fusion(self, outputs: dict) -> torch.Tensor:
        present = torch.stack([outputs[m].modality_mask for m in self.modalities], dim=1)
        if self.training and self.config.modality_dropout > 0:
            present = drop_modalities(present, self.config.modality_dropout)
        if self.config.fusion_type == "cross-attention":
            logits = self.fusion_head(outputs, dict(zip(self.modalities, present.unbind(dim=1))))
        else:
            logits = self.fusion_head([outputs[m].pooler_output for m in self.modalities], present)
        intensities = logits.sigmoid()  # in [0, 1]
        return torch.where(present.any(dim=1)[:, None], intensities, torch.full_like(intensities, float("nan")))

    def _loss(self, outputs: dict, intensities: torch.Tensor, present: torch.Tensor, labels: torch.Tensor):
        loss = clip_loss(self.config.loss_type, intensities, labels, present)
        if self.config.fusion_type != "late" and self.config.unimodal_loss_weight > 0:
            own = [clip_loss(self.config.loss_type, out.intensities, labels, out.modality_mask)
                   for out in outputs.values()]
            loss = loss + self.config.unimodal_loss_weight * torch.stack(own).mean()
        return loss

    def forward(
        self, visual_features: torch.Tensor | None = None, au_features: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None, audio_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
        output_attentions: bool | None = None, return_dict: bool | None = None,
        text_features: torch.Tensor | None = None, text_mask: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
    ) -> EmiFusionOutput | tuple:
        """Inputs as in [`EmiVisualModel`], [`EmiAudioModel`] and [`EmiTextModel`] (their union: those of the
        modalities the model holds are used; other keywords raise TypeError); `labels` `[batch, num_labels]`. With
        no text input at all (`model(**processor(videos=...))`), a model with a text part scores the clips from its
        other modalities, as clips without a transcript."""
        inputs = dict(locals())
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        extras = dict(
            output_hidden_states=output_hidden_states if output_hidden_states is not None
            else self.config.output_hidden_states,
            output_attentions=output_attentions if output_attentions is not None else self.config.output_attentions,
            return_dict=True,
        )
        outputs = self._run_models(inputs, extras)
        present = torch.stack([out.modality_mask for out in outputs.values()], dim=1).any(dim=1)
        if self.config.fusion_type in ("feature", "cross-attention"):
            intensities = self._feature_fusion(outputs)
        else:
            intensities = fuse_modalities({m: out.intensities for m, out in outputs.items()},
                                          {m: out.modality_mask for m, out in outputs.items()},
                                          self.config.modality_weights)
        # Fused values are differentiable through every model where present (NaN rows are never selected).
        loss = None if labels is None else self._loss(outputs, intensities, present, labels)
        fields = {"loss": loss, "intensities": intensities,
                  "frame_intensities": next(iter(outputs.values())).frame_intensities}
        for modality, out in outputs.items():
            fields.update({f"{modality}_intensities": out.intensities, f"{modality}_mask": out.modality_mask,
                           f"{modality}_last_hidden_state": out.last_hidden_state,
                           f"{modality}_hidden_states": out.hidden_states, f"{modality}_attentions": out.attentions})
            if modality != "visual":
                fields[f"{modality}_frame_intensities"] = out.frame_intensities
        output = EmiFusionOutput(**fields)
        return output if return_dict else output.to_tuple()


__all__ = ["FUSION_MODALITIES", "CrossAttentionBlock", "CrossAttentionFusionHead", "EmiFusionModel",
           "EmiFusionOutput", "FeatureFusionHead", "drop_modalities", "fuse_intensities", "fuse_modalities"]
