"""emi-hf: Emotional Mimicry Intensity estimation from video, in Hugging Face style.

Importing the package registers the model types with transformers' Auto classes, so that
``AutoConfig`` / ``AutoModel`` resolve ``emi_visual``, ``emi_audio``, ``emi_text`` and ``emi_fusion`` checkpoints, and the seed
ensembles of any of them (``emi_ensemble``, ``modeling_ensemble_emi.py``).
"""

import sys

from transformers import AutoConfig, AutoModel

from .models.configuration_emi import (
    DEFAULT_AU_NAMES,
    EMOTION_NAMES,
    EmiAudioConfig,
    EmiFusionConfig,
    EmiTextConfig,
    EmiVisualConfig,
)
from .models.modeling_emi import EmiAudioModel, EmiPreTrainedModel, EmiRegressionOutput, EmiTextModel, EmiVisualModel
from .models.modeling_fusion_emi import EmiFusionModel, EmiFusionOutput
from .models.modeling_ensemble_emi import EmiEnsembleConfig, EmiEnsembleModel
from .processing_emi import EmiBatch, EmiProcessor, EmiVideoProcessor, register_processor

from . import models as _models

__version__ = "0.1.0"

# The bundle moved into `emi_hf.models`; its modules stay importable under their old paths (`emi_hf.modeling_emi`,
# `emi_hf.configuration_emi`, ...), as the same module objects.
for _name in _models.BUNDLE_MODULES:
    __import__(f"{__name__}.models.{_name}")
    sys.modules.setdefault(f"{__name__}.{_name}", sys.modules[f"{__name__}.models.{_name}"])


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
