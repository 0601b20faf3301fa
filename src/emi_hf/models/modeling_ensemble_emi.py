"""A seed ensemble of emi-hf models: N trained models of one type whose clip intensities are averaged.

`emi-hf train --seeds N` (`EmiTrainingArguments(seeds=N)`) trains N seeds and saves their ensemble with
`save_pretrained`; it loads like any other checkpoint (`AutoModel.from_pretrained(folder)`, or
`EmiEnsembleModel.from_pretrained`), and with `trust_remote_code=True` without emi-hf installed: this file and the
files it imports (relatively: `configuration_emi`, `modeling_emi` and theirs) are copied next to the weights.

The ensemble takes the inputs of its members and returns their output type (`EmiRegressionOutput` or
`EmiFusionOutput`) with every intensity field the mean over the members (`intensities`, `frame_intensities`, and for
fusion members `visual_intensities` / `audio_intensities` / `audio_frame_intensities`); the masks are the first
member's (all members see the same inputs, so the same frames and clips are valid). Every member keeps its own
weights, backbone included: the checkpoint is N times a member's size, and raw-video inputs run the backbones N times.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import PreTrainedConfig

from .configuration_emi import EmiAudioConfig, EmiFusionConfig, EmiTextConfig, EmiVisualConfig
from .modeling_emi import EmiAudioModel, EmiPreTrainedModel, EmiTextModel, EmiVisualModel
from .temporal_emi import clip_loss
from .modeling_fusion_emi import EmiFusionModel
from .pipeline_task_emi import EmiPipelineTaskMixin

MEMBER_CLASSES = {
    "emi_visual": (EmiVisualConfig, EmiVisualModel),
    "emi_audio": (EmiAudioConfig, EmiAudioModel),
    "emi_text": (EmiTextConfig, EmiTextModel),
    "emi_fusion": (EmiFusionConfig, EmiFusionModel),
}
AVERAGED_FIELDS = ("intensities", "frame_intensities", "visual_intensities", "audio_intensities",
                   "audio_frame_intensities", "text_intensities", "text_frame_intensities")


class EmiEnsembleConfig(EmiPipelineTaskMixin, PreTrainedConfig):
    """
    Configuration of an [`EmiEnsembleModel`].

    Args:
        members (`list[dict]`): the members' configs (`config.to_dict()`), all of one model type (`emi_visual`,
            `emi_audio` or `emi_fusion`) and one list of labels.
        seeds (`list[int]`, *optional*): the training seed of each member, for the record.
    """

    model_type = "emi_ensemble"

    def __init__(self, members: list[dict] | None = None, seeds: list[int] | None = None, **kwargs):
        self.members = [m.to_dict() if hasattr(m, "to_dict") else dict(m) for m in (members or [])]
        self.seeds = list(seeds) if seeds is not None else None
        types = {m.get("model_type") for m in self.members}
        if len(types) > 1 or not types <= set(MEMBER_CLASSES):
            raise ValueError(f"An ensemble's members must all be one of {sorted(MEMBER_CLASSES)}, got {sorted(types)}.")
        labels = [list(self.member_config(i).label_names) for i in range(len(self.members))]
        if any(names != labels[0] for names in labels):
            raise ValueError(f"The ensemble's members regress different labels: {labels}.")
        if self.seeds is not None and len(self.seeds) != len(self.members):
            raise ValueError(f"{len(self.seeds)} seeds for {len(self.members)} members.")
        if labels:
            kwargs["id2label"] = dict(enumerate(labels[0]))
            kwargs["label2id"] = {name: i for i, name in enumerate(labels[0])}
        super().__init__(**kwargs)

    @property
    def member_model_type(self) -> str | None:
        """`emi_visual`, `emi_audio` or `emi_fusion` (None for an empty ensemble)."""
        return self.members[0]["model_type"] if self.members else None

    def member_config(self, index: int):
        """The config object of member `index`."""
        config_class = MEMBER_CLASSES[self.members[index]["model_type"]][0]
        return config_class.from_dict(self.members[index])

    @property
    def label_names(self) -> list[str]:
        return [self.id2label[i] for i in range(len(self.id2label))]

    @property
    def au_names(self) -> list[str] | None:
        """The AUs the members' visual inputs hold (what a processor must give); None for audio members."""
        if not self.members:
            return None
        config = self.member_config(0)
        visual = getattr(config, "visual_config", config)
        return list(visual.au_names) if visual is not None and hasattr(visual, "au_names") else None


class EmiEnsembleModel(EmiPreTrainedModel):
    """The mean of N emi-hf models of one type (see the module docstring); `from_members` builds one."""

    config_class = EmiEnsembleConfig
    base_model_prefix = "emi_ensemble"
    _no_split_modules = ["EmiVisualModel", "EmiAudioModel", "EmiTextModel", "EmiFusionModel"]

    def __init__(self, config: EmiEnsembleConfig):
        super().__init__(config)
        if not config.members:
            raise ValueError("An EmiEnsembleModel needs at least one member config.")
        model_class = MEMBER_CLASSES[config.member_model_type][1]
        self.members = nn.ModuleList(model_class(config.member_config(i)) for i in range(len(config.members)))
        self.main_input_name = self.members[0].main_input_name
        self.post_init()

    @classmethod
    def from_members(cls, members, seeds: list[int] | None = None) -> EmiEnsembleModel:
        """The ensemble of trained models (instances, or folders / Hub ids loaded with the member type's class)."""
        loaded = []
        for member in members:
            if isinstance(member, (str, os.PathLike)):
                from transformers import AutoConfig

                model_type = AutoConfig.from_pretrained(member).model_type
                if model_type not in MEMBER_CLASSES:
                    raise ValueError(f"{member} holds a {model_type!r} model; ensemble members are "
                                     f"{sorted(MEMBER_CLASSES)}.")
                member = MEMBER_CLASSES[model_type][1].from_pretrained(member)
            loaded.append(member)
        model = cls(EmiEnsembleConfig(members=[m.config.to_dict() for m in loaded], seeds=seeds))
        for target, source in zip(model.members, loaded):
            target.load_state_dict(source.state_dict())
        return model

    def _loss_type(self) -> str:
        return self.members[0].config.loss_type

    def forward(self, labels: torch.Tensor | None = None, return_dict: bool | None = None, **inputs):
        """The members' inputs (e.g. `visual_features`, `au_features`, `frame_mask`); `labels` `[batch, labels]`."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = [member(**inputs, return_dict=True) for member in self.members]
        first = outputs[0]
        averaged = {}
        for name in AVERAGED_FIELDS:
            values = [getattr(output, name, None) for output in outputs]
            if values[0] is not None:
                averaged[name] = torch.stack(values).mean(0)
        if hasattr(first, "modality_mask"):
            present = first.modality_mask
        else:  # a fusion output: any modality the members hold
            present = torch.stack([getattr(first, f"{m}_mask") for m in self.members[0].modalities]).any(dim=0)
        loss = None if labels is None else clip_loss(self._loss_type(), averaged["intensities"], labels, present)
        dropped = {*averaged, "loss", "hidden_states"}  # averaged, recomputed, or per member (not kept)
        kept = {name: value for name, value in first.items() if name not in dropped}
        output = type(first)(loss=loss, **averaged, **kept)
        return output if return_dict else output.to_tuple()


__all__ = ["EmiEnsembleConfig", "EmiEnsembleModel"]
