"""The modality table (`emi_hf.modalities`) is the one declaration the package's vocabulary derives from."""

from __future__ import annotations

import dataclasses

from emi_hf.models.configuration_emi import FUSION_MODALITIES
from emi_hf.models.modeling_fusion_emi import MODALITY_INPUTS, EmiFusionOutput


def test_each_modality_is_declared_once_in_the_bundles_order():
    from emi_hf.modalities import MODALITIES, MODALITY_NAMES

    assert MODALITY_NAMES == FUSION_MODALITIES
    fields = {field.name for field in dataclasses.fields(EmiFusionOutput)}
    for name, modality in MODALITIES.items():
        assert modality.model_class.config_class is modality.config_class
        assert modality.config_class.model_type == f"emi_{name}"
        assert {modality.output_field, modality.output_mask} <= fields
        assert modality.mask in MODALITY_INPUTS[name] and set(modality.feature_columns) <= set(MODALITY_INPUTS[name])
        assert set(modality.raw_inputs) <= set(MODALITY_INPUTS[name])


def test_training_columns_and_choices_derive_from_the_table():
    from emi_hf.inference import MODALITIES as prediction_keys
    from emi_hf.modalities import MODALITIES, feature_columns
    from emi_hf.training.arguments import MODALITIES as trainable
    from emi_hf.training.data import MODALITY_COLUMNS, OPTIONAL_COLUMNS, RAW_INPUTS

    assert {name: MODALITY_COLUMNS[name] for name in MODALITIES} == {n: m.feature_columns for n, m in MODALITIES.items()}
    required = [name for name, modality in MODALITIES.items() if not modality.optional]
    assert MODALITY_COLUMNS["fusion"] == feature_columns(required)
    assert OPTIONAL_COLUMNS == MODALITIES["text"].feature_columns  # feature folders written before text lack it
    assert RAW_INPUTS == {"visual": ("pixel_values", "au_features", "frame_mask"),
                          "audio": ("input_values", "attention_mask")}
    assert trainable == (*MODALITIES, "fusion") and prediction_keys == (*MODALITIES, "fused")
