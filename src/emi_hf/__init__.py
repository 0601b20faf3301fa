"""emi-hf: Emotional Mimicry Intensity estimation from video, in Hugging Face style.

``import emi_hf`` is light: the public names below (configs, models, the processor) are imported on first use (PEP
562), so ``import emi_hf`` and the ``emi-hf`` command line's ``--help`` load no torch, transformers or mediapipe.

The model types are still registered with transformers' Auto classes as soon as transformers' Auto classes exist in
the process: ``AutoConfig`` / ``AutoModel`` / ``AutoProcessor`` resolve ``emi_visual``, ``emi_audio``, ``emi_text``,
``emi_fusion`` and ``emi_ensemble`` checkpoints, whether transformers' Auto modules were imported before or after
``import emi_hf`` (an import hook registers the classes when transformers finishes importing its Auto modules). The
same hook registers the `transformers.pipeline()` task ``"emotion-mimicry-intensity"`` (`pipeline_emi`) once
``transformers.pipelines`` is imported.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time these come from __getattr__
    from .models.configuration_emi import (
        DEFAULT_AU_NAMES,
        EMOTION_NAMES,
        EmiAudioConfig,
        EmiFusionConfig,
        EmiTextConfig,
        EmiVisualConfig,
    )
    from .models.modeling_emi import EmiAudioModel, EmiPreTrainedModel, EmiRegressionOutput, EmiTextModel, EmiVisualModel
    from .models.modeling_ensemble_emi import EmiEnsembleConfig, EmiEnsembleModel
    from .models.modeling_fusion_emi import EmiFusionModel, EmiFusionOutput
    from .models.processing_emi import EmiBatch, EmiProcessor, EmiVideoProcessor, register_processor


def _package_version() -> str:
    """The installed distribution's version (importlib.metadata); a source tree without metadata says so."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emi-hf")
    except PackageNotFoundError:
        return "0+unknown (source tree without package metadata: pip install . to get one)"


__version__ = _package_version()

# public name -> the module (relative) that defines it
_LAZY = {
    **dict.fromkeys(("DEFAULT_AU_NAMES", "EMOTION_NAMES", "EmiAudioConfig", "EmiFusionConfig", "EmiTextConfig",
                     "EmiVisualConfig"), ".models.configuration_emi"),
    **dict.fromkeys(("EmiAudioModel", "EmiPreTrainedModel", "EmiRegressionOutput", "EmiTextModel", "EmiVisualModel"),
                    ".models.modeling_emi"),
    **dict.fromkeys(("EmiFusionModel", "EmiFusionOutput"), ".models.modeling_fusion_emi"),
    **dict.fromkeys(("EmiEnsembleConfig", "EmiEnsembleModel"), ".models.modeling_ensemble_emi"),
    **dict.fromkeys(("EmiBatch", "EmiProcessor", "EmiVideoProcessor", "register_processor"), ".models.processing_emi"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    if name not in ("DEFAULT_AU_NAMES", "EMOTION_NAMES"):
        register_all()  # a class handed out is a registered class, as when this file imported everything
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Old module paths (before 0.2) import the module's new home, as the same module object: the remote-code
    bundle moved into `emi_hf.models`, the encoder modules into `emi_hf.encoders`."""

    def __init__(self):
        from .models import BUNDLE_MODULES  # light: the folder's listing

        self.moved = {**{f"{__name__}.{name}": f"{__name__}.models.{name}" for name in BUNDLE_MODULES},
                      f"{__name__}.encoder_setup": f"{__name__}.encoders.setup",
                      f"{__name__}.pretrained": f"{__name__}.encoders.pretrained",
                      f"{__name__}.face_embedding": f"{__name__}.encoders.face_embedding"}

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in self.moved else None

    def create_module(self, spec):
        return importlib.import_module(self.moved[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())


# --- registration with transformers (Auto classes, pipeline task) --------------------------------------------------

_registered: set[str] = set()
_lock = threading.RLock()


def _register_configs() -> None:
    from transformers import AutoConfig

    from .models.configuration_emi import EmiAudioConfig, EmiFusionConfig, EmiTextConfig, EmiVisualConfig
    from .models.modeling_ensemble_emi import EmiEnsembleConfig

    for config_class in (EmiVisualConfig, EmiAudioConfig, EmiTextConfig, EmiFusionConfig, EmiEnsembleConfig):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        # save_pretrained then writes `auto_map` and copies the bundle files next to the weights, for
        # `trust_remote_code=True` users without emi-hf installed.
        config_class.register_for_auto_class()


def _register_models() -> None:
    from transformers import AutoModel

    from .models.configuration_emi import EmiAudioConfig, EmiFusionConfig, EmiTextConfig, EmiVisualConfig
    from .models.modeling_emi import EmiAudioModel, EmiTextModel, EmiVisualModel
    from .models.modeling_ensemble_emi import EmiEnsembleConfig, EmiEnsembleModel
    from .models.modeling_fusion_emi import EmiFusionModel

    _register("configs")
    for config_class, model_class in ((EmiVisualConfig, EmiVisualModel), (EmiAudioConfig, EmiAudioModel),
                                      (EmiTextConfig, EmiTextModel), (EmiFusionConfig, EmiFusionModel),
                                      (EmiEnsembleConfig, EmiEnsembleModel)):
        AutoModel.register(config_class, model_class, exist_ok=True)
        model_class.register_for_auto_class("AutoModel")


def _register_processors() -> None:
    from .models.processing_emi import register_processor

    register_processor()


def _register_pipeline() -> None:
    from transformers import AutoModel
    from transformers.pipelines import PIPELINE_REGISTRY

    from .models.pipeline_emi import EmiIntensityPipeline
    from .models.pipeline_task_emi import PIPELINE_TASK

    PIPELINE_REGISTRY.register_pipeline(PIPELINE_TASK, pipeline_class=EmiIntensityPipeline, pt_model=AutoModel,
                                        type="multimodal")


_STEPS = {"configs": _register_configs, "models": _register_models, "processors": _register_processors,
          "pipelines": _register_pipeline}
_AUTO_STEPS = ("configs", "models", "processors")  # `register_all`; the pipeline task waits for transformers.pipelines
# transformers module (fully imported) -> what can then be registered
_TRIGGERS = {
    "transformers.models.auto.configuration_auto": "configs",
    "transformers.models.auto.modeling_auto": "models",
    "transformers.models.auto.processing_auto": "processors",
    "transformers.models.auto.video_processing_auto": "processors",
    "transformers.pipelines": "pipelines",
}


def _register(step: str) -> None:
    with _lock:
        if step in _registered:
            return
        _registered.add(step)
        try:
            _STEPS[step]()
        except BaseException:
            _registered.discard(step)
            raise


def register_all() -> None:
    """Registers everything with transformers now (idempotent): the configs and models with AutoConfig / AutoModel,
    the processor with AutoProcessor / AutoVideoProcessor. (The pipeline task is registered when
    `transformers.pipelines` is imported, which `pipeline()` needs anyway: importing it here would cost every user.)"""
    for step in _AUTO_STEPS:
        _register(step)


class _RegisterAfterImport:
    """A meta-path finder that lets the real finders load transformers' and emi-hf's modules and registers emi-hf's
    classes once a module of `_TRIGGERS` has run, as soon as no transformers or emi_hf module is still half-imported
    in this thread (registering imports both: in the middle of their imports it would meet half-made modules). So
    `import emi_hf` costs nothing, and registration still happens however transformers' Auto classes are reached."""

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(("transformers.", "emi_hf.")):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader, fullname)
        return spec


_state = threading.local()  # .loading: the names being imported (stack); .pending: registration steps to run


class _Loader:
    def __init__(self, loader, fullname: str):
        self._loader, self._fullname = loader, fullname

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        loading = _state.__dict__.setdefault("loading", [])
        loading.append(self._fullname)
        try:
            self._loader.exec_module(module)
        finally:
            loading.pop()
        pending = _state.__dict__.setdefault("pending", [])
        if self._fullname in _TRIGGERS and _TRIGGERS[self._fullname] not in _registered:
            pending.append(_TRIGGERS[self._fullname])
        while pending and not loading:
            _register(pending.pop(0))

    def __getattr__(self, name):
        return getattr(self._loader, name)


if not any(type(finder).__name__ == "_RegisterAfterImport" for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterImport())
for _module, _step in _TRIGGERS.items():  # transformers got there first
    if _module in sys.modules:
        _register(_step)
