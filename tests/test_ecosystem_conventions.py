"""The Hugging Face ecosystem's conventions (issue 22): the ResNet18 weights through the Hub cache, offline detection
as huggingface_hub does it, caches under HF_HOME / XDG_CACHE_HOME, model cards, the Space, the required set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO_ROOT, free_port


def _run(script: str, env_updates: dict, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME",
                                                            "EMI_HF_OFFLINE", "XDG_CACHE_HOME", "TORCH_HOME")}
    env.update(env_updates)
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def _fake_hub_cache_entry(hf_home: Path, repo_id: str, filename: str, tensors: dict) -> Path:
    """Writes `filename` of `repo_id` into the Hub cache layout of `hf_home` (refs/main -> snapshots/<commit>/), as
    `hf download` leaves it."""
    from safetensors.torch import save_file

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file(tensors, str(snapshot / filename))
    return snapshot / filename


def test_resnet18_weights_come_from_the_hub_cache_offline(tmp_path):
    import torch
    from torchvision.models import resnet18

    from emi_hf.backbones_emi import RESNET18_HUB_FILE, RESNET18_HUB_REPO

    assert RESNET18_HUB_REPO == "timm/resnet18.tv_in1k"
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in resnet18().state_dict().items()}
    _fake_hub_cache_entry(tmp_path / "hf", RESNET18_HUB_REPO, RESNET18_HUB_FILE, state)
    script = f"""
import torch
from safetensors.torch import save_file
from emi_hf import EmiVisualModel, EmiVisualConfig
from emi_hf.backbones_emi import load_resnet18_imagenet_state_dict
state = load_resnet18_imagenet_state_dict()
assert not any(k.startswith('fc.') for k in state)
model = EmiVisualModel(EmiVisualConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
                                       tcn_dilations=[1], num_hidden_layers=1)).load_imagenet_backbone()
save_file({{k: v.contiguous() for k, v in model.backbone.state_dict().items()}}, {str(tmp_path / 'out.safetensors')!r})
"""
    # torchvision's cache is empty: the weights can only come from the Hub cache of HF_HOME
    done = _run(script, {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "t")},
                tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    from safetensors.torch import load_file

    loaded = load_file(str(tmp_path / "out.safetensors"))
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    for name, value in loaded.items():
        torch.testing.assert_close(value, state[name], msg=name)
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").rglob("*.pth"))


def test_resnet18_weights_offline_without_a_cache_entry_name_the_download(tmp_path):
    script = """
from emi_hf.backbones_emi import load_resnet18_imagenet_state_dict
try:
    load_resnet18_imagenet_state_dict()
except FileNotFoundError as error:
    print('ERROR:', error)
"""
    done = _run(script, {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "t")},
                tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "hf download timm/resnet18.tv_in1k" in done.stdout and str(tmp_path / "hf") in done.stdout


@pytest.mark.parametrize("value, offline", [("true", True), ("false", False)])
def test_offline_is_read_as_huggingface_hub_reads_it(tmp_path, value, offline):
    # HF_HUB_OFFLINE=false is online (huggingface_hub's own reading); a Hub at a closed local port then answers
    # "could not fetch", not "downloads are off".
    script = """
from huggingface_hub import constants
from emi_hf.backbones_emi import hub_offline, load_resnet18_imagenet_state_dict
assert hub_offline() == bool(constants.is_offline_mode()), (hub_offline(), constants.is_offline_mode())
print('OFFLINE' if hub_offline() else 'ONLINE')
try:
    load_resnet18_imagenet_state_dict()
except OSError as error:
    print('ERROR:', type(error).__name__, error)
"""
    done = _run(script, {"HF_HUB_OFFLINE": value, "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "t"),
                         "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HUB_ETAG_TIMEOUT": "2",
                         "HF_HUB_DOWNLOAD_TIMEOUT": "2"}, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("OFFLINE" if offline else "ONLINE"), done.stdout
    assert ("downloads are off" in done.stdout) == offline, done.stdout
    assert "BackboneUnavailableError" in done.stdout or offline
