"""The model bundle: exactly the files that `save_pretrained` copies next to the weights for `trust_remote_code`.

Every module here imports only its neighbours (relative imports) and third-party packages (torch, torchvision,
transformers), never the rest of emi_hf, so that a saved checkpoint loads in a Python without emi-hf installed.
What is copied is this folder's listing (`bundle_files`), not a hand-kept list.

| module | holds |
|---|---|
| `configuration_emi` | the configs (`EmiVisualConfig`, `EmiAudioConfig`, `EmiTextConfig`, `EmiFusionConfig`, ...) |
| `modeling_base_emi` | `EmiPreTrainedModel`, `EmiRegressionOutput`, the shared temporal regressor |
| `modeling_emi` | the unimodal models `EmiVisualModel`, `EmiAudioModel`, `EmiTextModel` |
| `modeling_fusion_emi` | `EmiFusionModel` (late or feature-level fusion of any subset of modalities) |
| `modeling_ensemble_emi` | `EmiEnsembleModel` (seed ensembles of any of them) |
| `temporal_emi` | projection, TCN, Transformer encoder, heads, windows, the loss |
| `backbones_emi`, `encoders_emi` | the face backbones and speech encoders as submodules |
| `processor_kwargs` | the processor's typed keyword arguments |
"""

from __future__ import annotations

from pathlib import Path

def bundle_files() -> list[str]:
    """The file names `save_pretrained` copies next to the weights: this folder's Python modules but `__init__.py`."""
    return sorted(path.name for path in Path(__file__).parent.glob("*.py") if path.name != "__init__.py")


def bundle_closure(modules: list[str]) -> list[str]:
    """The file names of these bundle modules and of every bundle module they import, read from the sources
    (relative imports, as transformers resolves remote code); names outside the bundle are ignored."""
    from transformers.dynamic_module_utils import get_relative_import_files

    folder = Path(__file__).parent
    files = set()
    for module in modules:
        path = folder / f"{module}.py"
        if path.is_file():
            files |= {path.name, *(Path(name).name for name in get_relative_import_files(path))}
    return sorted(files)


def code_files(config: dict) -> list[str]:
    """The remote-code files a saved model with this `config.json` needs to load with `trust_remote_code=True`: the
    modules its `auto_map` names, the pipeline() task's files where it has `custom_pipelines` (saved by this version
    on) and, read from the bundle's sources, what they import (relative imports); a fusion or ensemble config always
    needs `modeling_fusion_emi.py`. A checkpoint saved before a bundle file existed does not need that file."""
    named = {target.split(".")[0] for target in (config.get("auto_map") or {}).values()}
    pipelines = config.get("custom_pipelines") or {}  # the pipeline() task's file, and the one that declares it
    named |= {task["impl"].split(".")[0] for task in pipelines.values()}
    if pipelines:
        named.add("pipeline_task_emi")
    if config.get("model_type") in ("emi_fusion", "emi_ensemble"):
        named.add("modeling_fusion_emi")
    files = bundle_closure(sorted(named))
    # a config without `custom_pipelines` was saved before the task existed: its own configuration_emi.py does not
    # import the pipeline files that today's does
    return files if pipelines else [name for name in files if name not in ("pipeline_emi.py", "pipeline_task_emi.py")]


BUNDLE_MODULES = tuple(name.removesuffix(".py") for name in bundle_files())
"""The bundle's module names (also importable under their earlier paths, `emi_hf.<name>`)."""
