"""`import emi_hf` and `emi-hf --help` / `COMMAND --help` / `--version` are light: no torch, transformers or mediapipe
(issue 22). Each check runs in a fresh interpreter and reads its sys.modules. Registration with transformers' Auto
classes still happens, whichever comes first: `import emi_hf` or transformers' Auto modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "transformers", "mediapipe", "cv2", "av", "accelerate", "datasets", "timm")


def _run(code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _heavy_after(statement: str) -> list[str]:
    code = ("import contextlib, io, json, sys\n"
            f"{statement}\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    return _run(code)


COMMANDS = ("extract", "evaluate", "predict", "push", "pull", "synth", "quickstart", "stream", "import-features",
            "submit", "verify-submission", "transcribe", "cache")


def _cli_statement(argv: list[str]) -> str:
    return ("from emi_hf.cli import main\n"
            "out = io.StringIO()\n"
            "try:\n"
            "    with contextlib.redirect_stdout(out):\n"
            f"        main({argv!r})\n"
            "except SystemExit as stop:\n"
            "    assert stop.code == 0, stop.code\n"
            "assert out.getvalue().strip(), 'no output'")


def test_import_emi_hf_is_light():
    assert _heavy_after("import emi_hf") == []


@pytest.mark.parametrize("argv", [["--help"], ["--version"], *([command, "--help"] for command in COMMANDS)],
                         ids=lambda argv: " ".join(argv))
def test_cli_help_and_version_are_light(argv):
    assert _heavy_after(_cli_statement(argv)) == []


def test_train_help_imports_no_torch():
    """`emi-hf train --help` is transformers' HfArgumentParser over the training dataclass: transformers' (lazy)
    package and its argument parser, but no torch, accelerate or media."""
    assert _heavy_after(_cli_statement(["train", "--help"])) == ["transformers"]


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    import emi_hf

    assert emi_hf.__version__ == version("emi-hf")
    done = subprocess.run([sys.executable, "-m", "emi_hf.cli", "--version"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"emi-hf {version('emi-hf')}"


def test_public_names_are_listed_and_resolve():
    result = _run("import json, emi_hf\n"
                  "listed = sorted(n for n in dir(emi_hf) if n.startswith(('Emi', 'DEFAULT', 'EMOTION', 'register')))\n"
                  "values = {n: getattr(emi_hf, n).__module__ if hasattr(getattr(emi_hf, n), '__module__') else 'const'"
                  " for n in emi_hf.__all__}\n"
                  "print(json.dumps({'all': sorted(emi_hf.__all__), 'dir': listed, 'version': '__version__' in "
                  "dir(emi_hf), 'values': values}))")
    expected = sorted(["DEFAULT_AU_NAMES", "EMOTION_NAMES", "EmiAudioConfig", "EmiBatch", "EmiAudioModel",
                       "EmiEnsembleConfig", "EmiEnsembleModel", "EmiFusionConfig", "EmiFusionModel", "EmiFusionOutput",
                       "EmiPreTrainedModel", "EmiProcessor", "EmiRegressionOutput", "EmiTextConfig", "EmiTextModel",
                       "EmiVisualConfig", "EmiVideoProcessor", "EmiVisualModel", "register_processor"])
    assert result["all"] == expected and set(expected) <= set(result["dir"]) and result["version"]
    assert all(module.startswith("emi_hf.") or module == "const" for module in result["values"].values())
    with pytest.raises(AttributeError):
        import emi_hf

        emi_hf.NoSuchName  # noqa: B018


@pytest.mark.parametrize("order", ["emi_hf first", "transformers first", "submodule only"])
def test_auto_classes_registered_whatever_the_import_order(order, tmp_path):
    """A checkpoint saved by the model class loads through AutoConfig / AutoModel without trust_remote_code in a
    process that imported emi_hf (lazily, in any order) - as when `import emi_hf` imported everything."""
    from emi_hf import EmiVisualModel
    from helpers import tiny_visual_config

    EmiVisualModel(tiny_visual_config()).save_pretrained(tmp_path)
    statements = {
        "emi_hf first": "import emi_hf\nfrom transformers import AutoConfig, AutoModel",
        "transformers first": "from transformers import AutoConfig, AutoModel\nimport emi_hf",
        "submodule only": "import emi_hf.cli\nfrom transformers import AutoConfig, AutoModel",
    }
    result = _run(f"import json\n{statements[order]}\n"
                  f"config = AutoConfig.from_pretrained({str(tmp_path)!r})\n"
                  f"model = AutoModel.from_pretrained({str(tmp_path)!r})\n"
                  "print(json.dumps([type(config).__module__, type(model).__module__]))")
    assert result == ["emi_hf.models.configuration_emi", "emi_hf.models.modeling_emi"]
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoModel"].endswith("EmiVisualModel")


def test_training_choices_agree_with_the_config():
    from emi_hf.models.configuration_emi import LOSS_TYPES, POOLING_TYPES, TEMPORAL_BLOCKS
    from emi_hf.training import arguments

    assert arguments.LOSS_TYPES == LOSS_TYPES and arguments.POOLING_TYPES == POOLING_TYPES
    assert arguments.TEMPORAL_BLOCKS == TEMPORAL_BLOCKS
    from emi_hf.modalities import FUSION, MODALITY_NAMES

    assert arguments.MODALITIES == (*MODALITY_NAMES, FUSION)


def test_cli_is_a_package_of_small_modules():
    folder = SRC / "emi_hf" / "cli"
    sizes = {path.name: len(path.read_text().splitlines()) for path in folder.glob("*.py")}
    assert "stream.py" in sizes and max(sizes.values()) < 600, sizes
