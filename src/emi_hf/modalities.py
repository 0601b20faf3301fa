"""The modality table: each modality emi-hf models (visual, audio, text) declared once, with its config class, model
class, cached feature columns, mask, raw-clip inputs and output fields. Code outside the model bundle derives its
vocabulary from here.

The bundle (`emi_hf.models`) cannot import this module (a checkpoint runs it as remote code without emi-hf), so it
keeps the one minimal declaration this table builds on: the names and their order,
`models.configuration_emi.FUSION_MODALITIES`.

| modality | config | model | feature columns (cached) | mask | raw-clip inputs |
|---|---|---|---|---|---|
| visual | `EmiVisualConfig` | `EmiVisualModel` | `visual_features` `[T, D_v]`, `au_features` `[T, n_au]` | `frame_mask` | `pixel_values`, `au_features`, `frame_mask` |
| audio | `EmiAudioConfig` | `EmiAudioModel` | `audio_features` `[T_a, D_a]` | `audio_mask` | `input_values`, `attention_mask` |
| text | `EmiTextConfig` | `EmiTextModel` | `text_features` `[T_t, D_t]` | `text_mask` | (none: the transcript runs at extraction) |

Outputs: an `EmiFusionOutput` holds `<name>_intensities` `[batch, 6]` and `<name>_mask` `[batch]` per modality
(`Modality.output_field`, `Modality.output_mask`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .models.configuration_emi import (
    DEFAULT_AU_NAMES,
    FUSION_MODALITIES,
    EmiAudioConfig,
    EmiTextConfig,
    EmiVisualConfig,
)
from .models.modeling_emi import EmiAudioModel, EmiTextModel, EmiVisualModel

__all__ = ["DEFAULT_AU_NAMES", "FUSION", "MODALITIES", "MODALITY_NAMES", "Modality", "feature_columns"]


@dataclass(frozen=True)
class Modality:
    """One modality: what configures and models it, and what it reads and writes."""

    name: str
    config_class: type
    model_class: type
    feature_columns: tuple[str, ...]
    """The cached feature columns its model reads (`emi_hf.data.store`), its mask last."""
    raw_inputs: tuple[str, ...]
    """The forward kwargs of a batch of raw clips (`training.end_to_end`); () when it has no raw-clip path."""
    optional: bool = False
    """Feature folders may lack it (written before it existed): a fusion reads its columns only when present."""

    @property
    def mask(self) -> str:
        """The mask column of its features: `[T]` int, 1 where a frame holds data."""
        return self.feature_columns[-1]

    @property
    def output_field(self) -> str:
        """The `EmiFusionOutput` field of its clip predictions `[batch, 6]`."""
        return f"{self.name}_intensities"

    @property
    def output_mask(self) -> str:
        """The `EmiFusionOutput` field saying which clips it scored `[batch]`."""
        return f"{self.name}_mask"

    @property
    def config_key(self) -> str:
        """Its sub-config's key in an `EmiFusionConfig` (`config.json`)."""
        return f"{self.name}_config"


_DECLARED = {
    EmiVisualConfig: (EmiVisualModel, ("visual_features", "au_features", "frame_mask"),
                      ("pixel_values", "au_features", "frame_mask")),
    EmiAudioConfig: (EmiAudioModel, ("audio_features", "audio_mask"), ("input_values", "attention_mask")),
    EmiTextConfig: (EmiTextModel, ("text_features", "text_mask"), (), True),
}
MODALITIES: dict[str, Modality] = {
    name: Modality(name, config_class, *_DECLARED[config_class])
    for name in FUSION_MODALITIES
    for config_class in _DECLARED
    if config_class.model_type == f"emi_{name}"
}
"""`{name: Modality}` in the bundle's order (visual, audio, text)."""
if list(MODALITIES) != list(FUSION_MODALITIES):
    raise RuntimeError(f"the modality table lacks {sorted(set(FUSION_MODALITIES) - set(MODALITIES))}")

MODALITY_NAMES = tuple(MODALITIES)
FUSION = "fusion"
"""The name of the model that fuses them (`EmiFusionModel`), beside the modality names in run folders and CLIs."""


def feature_columns(names) -> tuple[str, ...]:
    """The cached feature columns of the modalities `names`, in order, each once."""
    return tuple(dict.fromkeys(column for name in names for column in MODALITIES[name].feature_columns))
