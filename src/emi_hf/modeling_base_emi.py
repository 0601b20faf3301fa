"""The shared base of the emi-hf models: their outputs' unimodal form, weight initialisation, and the temporal
regressor (temporal encoder, head, pooling and loss) that the visual, audio and text models share.

This file is copied next to the weights by ``save_pretrained`` (with ``modeling_emi.py``): it imports only torch,
transformers and the other ``*_emi.py`` files (relatively).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .backbones_emi import FrozenBackboneMixin, init_resnet_module
from .configuration_emi import EmiVisualConfig
from .temporal_emi import IntensityHead, _finalise, build_temporal_encoder, clip_loss, init_submodel_on_load


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
        pooler_output (`torch.FloatTensor` of shape `[batch, hidden_size]`): masked mean of `last_hidden_state` over
            the valid frames (zeros for a clip without any); what feature-level fusion concatenates.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): with `output_hidden_states=True` (or
            `config.output_hidden_states`): the encoder input (projected features) and the output of each temporal
            layer (TCN blocks, then Transformer layers), each `[batch, frames, hidden_size]`; else None.
        attentions (`tuple(torch.FloatTensor)`, *optional*): with `output_attentions=True`: one
            `[batch, heads, frames, frames]` tensor of attention weights per Transformer layer; else None.

    A clip longer than `config.temporal_window` is encoded in overlapping windows and stitched
    (`temporal_emi.TemporalEncoder`): `last_hidden_state`, `hidden_states` and the frame intensities are the
    stitched ones, `intensities` and `pooler_output` pool them; `attentions` hold, per frame, the stitch-weighted
    mixture of its windows' attention rows (zero outside those windows).
    """

    loss: torch.FloatTensor | None = None
    intensities: torch.FloatTensor | None = None
    frame_intensities: torch.FloatTensor | None = None
    modality_mask: torch.BoolTensor | None = None
    frame_mask: torch.BoolTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    pooler_output: torch.FloatTensor | None = None  # last, so tuple outputs keep the indices of earlier versions


def masked_mean(hidden_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Mean of `[batch, frames, hidden]` over the valid frames of bool `frame_mask` `[batch, frames]` (zeros for a
    clip without a valid frame)."""
    weights = frame_mask[..., None].to(hidden_states.dtype)
    return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


# Checkpoints saved before `temporal_window` existed: the `training` entry of the run's results.json that held each
# model's frame cap (the window its evaluation read), and the training default when there is none.
RESULTS_FILE = "results.json"
RECORDED_WINDOWS = {"emi_visual": ("max_frames", 512), "emi_audio": ("max_audio_frames", 1024)}


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def restore_unrecorded_windows(model: nn.Module, folder: str) -> None:
    """
    Gives the unimodal parts of a model loaded from `folder` whose `config.json` entry has no `temporal_window` (saved
    by an earlier version) the frame cap their run trained with: `max_frames` / `max_audio_frames` of the `training`
    block of `folder/results.json` (null or 0: no cap, so no window), else 512 / 1024 (the defaults then). A text part
    keeps None (its transcripts were never cropped). Fusion parts and ensemble members are visited too.
    """
    raw = _read_json(os.path.join(folder, "config.json"))
    training = _read_json(os.path.join(folder, RESULTS_FILE)).get("training")
    training = training if isinstance(training, dict) else {}

    def visit(module: nn.Module, entry: dict) -> bool:
        """Sets the windows of `module` and its parts that `entry` (their config.json entry) lacks; True if any."""
        changed = False
        recorded = RECORDED_WINDOWS.get(entry.get("model_type"))
        if recorded is not None and "temporal_window" not in entry:
            cap = training.get(recorded[0], recorded[1])
            module.config.temporal_window = int(cap) if isinstance(cap, (int, float)) and cap > 0 else None
            changed = True
        for name in ("visual", "audio", "text"):
            if isinstance(entry.get(f"{name}_config"), dict) and isinstance(getattr(module, name, None), nn.Module):
                changed |= visit(getattr(module, name), entry[f"{name}_config"])
        members = getattr(module, "members", None)
        if isinstance(members, nn.ModuleList) and isinstance(entry.get("members"), list):
            if any([visit(member, item if isinstance(item, dict) else {}) for member, item in zip(members,
                                                                                                entry["members"])]):
                module.config.members = [member.config.to_dict() for member in members]  # saved as they now run
                changed = True
        return changed

    visit(model, raw)


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
        elif isinstance(module, nn.ParameterDict):  # the cross-attention fusion's missing-modality tokens
            for token in module.values():
                init.normal_(token, mean=0.0, std=std)
        if isinstance(getattr(module, "layer_weights", None), nn.Parameter):
            init.zeros_(module.layer_weights)  # the speech layers' mixing weights start uniform

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`; from a local folder written by an earlier version (no
        `temporal_window` in its config), the windows its run trained with (`restore_unrecorded_windows`)."""
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if pretrained_model_name_or_path is not None:
            folder = os.path.join(os.fspath(pretrained_model_name_or_path), kwargs.get("subfolder") or "")
            if os.path.isfile(os.path.join(folder, "config.json")):
                restore_unrecorded_windows(model, folder)
        return loaded

    def initialize_weights(self):
        # A transformers sub-model (the speech encoder) not initialised yet (from_pretrained): after transformers' pass,
        # the parts it skips there for custom code, drawn as in Model(config) (see `init_submodel_on_load`).
        pending = [module for module in self.modules() if isinstance(module, PreTrainedModel)
                   and not isinstance(module, EmiPreTrainedModel) and not getattr(module, "_is_hf_initialized", False)]
        super().initialize_weights()
        for module in pending:
            init_submodel_on_load(module)


class _TemporalRegressor(FrozenBackboneMixin, EmiPreTrainedModel):
    """Temporal encoder, head and loss shared by the unimodal models (visual, audio, text; the input side differs)."""

    def _build_temporal(self, config):
        self.encoder = build_temporal_encoder(config)  # TCN + Transformer, or an LSTM (`temporal_block`)
        self.head = IntensityHead(config)

    @staticmethod
    def _feature_projection(width: int, config) -> nn.Sequential:
        """Frame / token features `[..., width]` -> `[..., hidden_size]` (LayerNorm, Linear, GELU, dropout): the
        audio and text models' input projection."""
        return nn.Sequential(nn.LayerNorm(width), nn.Linear(width, config.hidden_size), nn.GELU(),
                             nn.Dropout(config.dropout))

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
            loss = clip_loss(self.config.loss_type, clip_logits.sigmoid(), labels, clip_mask)
        output = EmiRegressionOutput(
            loss=loss, intensities=intensities, frame_intensities=frame_intensities, modality_mask=clip_mask,
            frame_mask=frame_mask, last_hidden_state=hidden_states,
            pooler_output=masked_mean(hidden_states, frame_mask), hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = ["EmiPreTrainedModel", "EmiRegressionOutput", "masked_mean", "restore_unrecorded_windows"]
