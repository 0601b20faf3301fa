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


BUNDLE_MODULES = tuple(name.removesuffix(".py") for name in bundle_files())
"""The bundle's module names (also importable under their earlier paths, `emi_hf.<name>`)."""
