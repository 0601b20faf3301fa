"""emi-hf: Emotional Mimicry Intensity estimation from video, in Hugging Face style.

Importing the package registers the model types with transformers' Auto classes, so that
``AutoConfig`` / ``AutoModel`` resolve ``emi_visual``, ``emi_audio``, ``emi_text`` and ``emi_fusion`` checkpoints, and the seed
ensembles of any of them (``emi_ensemble``, ``modeling_ensemble_emi.py``).
"""

import importlib.abc
import importlib.util
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
from .models import BUNDLE_MODULES
from .processing_emi import EmiBatch, EmiProcessor, EmiVideoProcessor, register_processor

__version__ = "0.1.0"


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Old module paths (before 0.2) import the module's new home, as the same module object: the remote-code
    bundle moved into `emi_hf.models`, the encoder modules into `emi_hf.encoders`."""

    MOVED = {**{f"{__name__}.{name}": f"{__name__}.models.{name}" for name in BUNDLE_MODULES},
        f"{__name__}.encoder_setup": f"{__name__}.encoders.setup",
        f"{__name__}.pretrained": f"{__name__}.encoders.pretrained",
        f"{__name__}.face_embedding": f"{__name__}.encoders.face_embedding"}

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in self.MOVED else None

    def create_module(self, spec):
        return importlib.import_module(self.MOVED[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())


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
