"""The package's shape: the remote-code bundle in `emi_hf/models/` (relative imports only, copied whole next to the
weights), imports that follow the data flow (no module imports a higher layer), and no private helper imported
across packages. Read with `ast`, so the checks cost no import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from helpers import tiny_visual_config

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "emi_hf"

# The data flow of DESIGN.md, lowest first: a module may import its own layer and those below, never one above.
LAYERS = (
    ("errors", "devices"),
    ("models",),
    ("modalities", "provenance", "results", "metrics"),
    ("media", "text"),
    ("encoders",),
    ("data",),
    ("training",),
    ("inference", "submission", "hub"),
    ("streaming", "recipes"),
    ("quickstart", "cli", "__init__"),
)
LAYER_OF = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        yield path, name, name if is_package else name.rsplit(".", 1)[0]


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _optional(tree) -> set[int]:
    """Ids of the import nodes inside a `try:` that catches ImportError: in the bundle, its optional use of the
    installed package (the processor reads files with emi_hf's media code when emi-hf is there, and says what to
    install when it is not; transformers' remote-code import check skips try blocks too)."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return guarded


def _imports(path: Path, package: str):
    """(imported module, imported names, line) for every emi_hf import of the file, lazy ones included (in the
    bundle, not its optional imports of the installed package: `_optional`)."""
    tree = ast.parse(path.read_text(), str(path))
    optional = _optional(tree) if package == "emi_hf.models" else set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "emi_hf" or target.startswith("emi_hf."):
                names = [alias.name for alias in node.names]
                if target == "emi_hf" or node.module is None:  # `from . import x`: x is a module or a name
                    yield from ((f"{target}.{name}", [], node.lineno) for name in names)
                else:
                    yield target, names, node.lineno
        elif isinstance(node, ast.Import):
            yield from ((alias.name, [], node.lineno) for alias in node.names if alias.name.startswith("emi_hf."))


def test_every_unit_of_the_package_has_a_layer():
    units = {_unit(name) for _, name, _ in _modules()} - {"__init__"}
    assert units <= set(LAYER_OF), f"give these a layer in LAYERS: {sorted(units - set(LAYER_OF))}"


def test_no_module_imports_a_higher_layer():
    violations = []
    for path, name, package in _modules():
        for target, _, line in _imports(path, package):
            here, there = _unit(name), _unit(target)
            if here != there and there in LAYER_OF and LAYER_OF[there] > LAYER_OF[here]:
                violations.append(f"{name}:{line} imports {target} ({here} < {there})")
    assert violations == []


def test_no_private_helper_is_imported_across_packages():
    violations = []
    for path, name, package in _modules():
        for target, names, line in _imports(path, package):
            target_package = target.rsplit(".", 1)[0]
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target_package != package and target != package:
                violations.append(f"{name}:{line} imports {', '.join(private)} from {target}")
    assert violations == []


def test_the_bundle_imports_only_itself_and_third_party_packages():
    for path in sorted((PACKAGE / "models").glob("*.py")):
        tree = ast.parse(path.read_text())
        optional = _optional(tree)
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module and (PACKAGE / "models" / f"{node.module}.py").is_file(), (
                    f"{path.name}:{node.lineno}: the bundle imports only its own modules (relatively)")
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
                     [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            assert not any(n == "emi_hf" or n.startswith("emi_hf.") for n in names), f"{path.name}:{node.lineno}"


def test_save_pretrained_writes_the_whole_bundle_next_to_the_weights(tmp_path):
    from emi_hf import EmiVisualModel
    from emi_hf.models import bundle_files

    EmiVisualModel(tiny_visual_config()).save_pretrained(tmp_path)
    assert "modeling_ensemble_emi.py" in bundle_files() and "processor_kwargs.py" in bundle_files()
    assert sorted(p.name for p in tmp_path.glob("*.py")) == bundle_files()
    for name in bundle_files():
        assert (tmp_path / name).read_bytes() == (PACKAGE / "models" / name).read_bytes()


def test_the_code_a_checkpoint_needs_is_read_from_the_bundles_imports():
    from emi_hf.hub import code_files

    visual = code_files({"model_type": "emi_visual", "auto_map": {"AutoConfig": "configuration_emi.EmiVisualConfig",
                                                                 "AutoModel": "modeling_emi.EmiVisualModel"}})
    assert visual == ["backbones_emi.py", "configuration_emi.py", "encoders_emi.py", "modeling_base_emi.py",
                      "modeling_emi.py", "temporal_emi.py"]  # saved before the pipeline task: no pipeline files
    ensemble = code_files({"model_type": "emi_ensemble",
                           "auto_map": {"AutoModel": "modeling_ensemble_emi.EmiEnsembleModel"}})
    assert {"modeling_ensemble_emi.py", "modeling_fusion_emi.py", *visual} == set(ensemble)


@pytest.mark.parametrize("old, new", [("emi_hf.modeling_fusion_emi", "emi_hf.models.modeling_fusion_emi"),
                                      ("emi_hf.configuration_emi", "emi_hf.models.configuration_emi"),
                                      ("emi_hf.temporal_emi", "emi_hf.models.temporal_emi")])
def test_the_bundles_old_module_paths_still_import(old, new):
    import importlib

    assert importlib.import_module(old) is importlib.import_module(new)
    from emi_hf import EmiFusionModel
    from emi_hf.modeling_fusion_emi import EmiFusionModel as old_path_class

    assert EmiFusionModel is old_path_class and torch.nn.Module in EmiFusionModel.__mro__
