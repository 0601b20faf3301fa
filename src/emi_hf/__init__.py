"""emi-hf: Emotional Mimicry Intensity estimation from video, in Hugging Face style.

Importing the package registers the model types with transformers' Auto classes, so that
``AutoConfig`` / ``AutoModel`` resolve ``emi_visual``, ``emi_audio``, ``emi_text`` and ``emi_fusion`` checkpoints, and the seed
ensembles of any of them (``emi_ensemble``, ``modeling_ensemble_emi.py``).
"""

from transformers import AutoConfig, AutoModel

from .configuration_emi import (
    DEFAULT_AU_NAMES,
    EMOTION_NAMES,
    EmiAudioConfig,
    EmiFusionConfig,
    EmiTextConfig,
    EmiVisualConfig,
)
from .modeling_emi import EmiAudioModel, EmiPreTrainedModel, EmiRegressionOutput, EmiTextModel, EmiVisualModel
from .modeling_fusion_emi import EmiFusionModel, EmiFusionOutput
from .modeling_ensemble_emi import EmiEnsembleConfig, EmiEnsembleModel
from .processing_emi import EmiBatch, EmiProcessor, EmiVideoProcessor, register_processor

__version__ = "0.1.0"


def _register_auto_classes() -> None:
    for config_class, model_class in (
        (EmiVisualConfig, EmiVisualModel),
        (EmiAudioConfig, EmiAudioModel),
        (EmiTextConfig, EmiTextModel),
        (EmiFusionConfig, EmiFusionModel),
        (EmiEnsembleConfig, EmiEnsembleModel),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        # save_pretrained then writes `auto_map` and copies configuration_emi.py / modeling_emi.py next to the
        # weights, for `trust_remote_code=True` users without emi-hf installed.
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModel")


_register_auto_classes()
register_processor()

__all__ = [
    "DEFAULT_AU_NAMES",
    "EMOTION_NAMES",
    "EmiAudioConfig",
    "EmiBatch",
    "EmiAudioModel",
    "EmiEnsembleConfig",
    "EmiEnsembleModel",
    "EmiFusionConfig",
    "EmiFusionModel",
    "EmiFusionOutput",
    "EmiPreTrainedModel",
    "EmiProcessor",
    "EmiRegressionOutput",
    "EmiTextConfig",
    "EmiTextModel",
    "EmiVisualConfig",
    "EmiVideoProcessor",
    "EmiVisualModel",
    "register_processor",
]
