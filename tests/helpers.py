"""Shared test helpers: tiny random configs (tests never download weights), paths, the demo harness.

Test modules import from here (``from helpers import ...``); conftest only holds fixtures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import ipaddress
import os
import socket
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = REPO_ROOT / "demo" / "app.py"
MEDIA_DIR = Path(os.environ.get("EMI_HF_MEDIA_DIR", REPO_ROOT.parent / "shared" / "media"))

TINY_WAV2VEC2 = dict(
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=37,
    conv_dim=[16, 16],
    conv_stride=[5, 4],
    conv_kernel=[10, 4],
    num_conv_pos_embeddings=4,
    num_conv_pos_embedding_groups=2,
)
TINY_TEMPORAL = dict(
    hidden_size=32, num_attention_heads=2, intermediate_size=64, tcn_dilations=[1, 2], num_hidden_layers=1
)


def tiny_visual_config(**overrides):
    from emi_hf import EmiVisualConfig

    return EmiVisualConfig(**{**TINY_TEMPORAL, **overrides})


def tiny_audio_config(**overrides):
    from emi_hf import EmiAudioConfig

    return EmiAudioConfig(**{**TINY_TEMPORAL, "speech_encoder_config": dict(TINY_WAV2VEC2), "audio_feature_dim": 32,
                             **overrides})


TINY_BERT = dict(model_type="bert", vocab_size=64, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=48, max_position_embeddings=64)


def tiny_text_config(**overrides):
    from emi_hf import EmiTextConfig

    return EmiTextConfig(**{**TINY_TEMPORAL, "text_encoder_config": dict(TINY_BERT), "text_feature_dim": 24,
                            **overrides})


def tiny_fusion_config(**overrides):
    from emi_hf import EmiFusionConfig

    return EmiFusionConfig(visual_config=tiny_visual_config(), audio_config=tiny_audio_config(), **overrides)



# Demo harness (test_demo.py and test_demo_browser.py)


def load_app():
    """demo/app.py as a module (demo/ is not a package)."""
    name = "emi_demo_app"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, APP_PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look the module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[name]


def save_tiny_checkpoint(folder: Path) -> Path:
    """A tiny random EmiFusionModel with a MediaPipe processor at 10 fps, saved as a checkpoint folder."""
    import torch

    from emi_hf import EmiFusionModel
    from emi_hf.processing_emi import EmiProcessor

    torch.manual_seed(0)
    EmiFusionModel(tiny_fusion_config()).save_pretrained(folder)
    EmiProcessor(face_detector="mediapipe", target_fps=10, use_cache=False).save_pretrained(folder)
    return folder


def save_tiny_three_way_checkpoint(folder: Path, asr_model: str | None = None, processor=None) -> Path:
    """A tiny random visual + audio + text EmiFusionModel saved as a checkpoint folder, with a word-level
    `text_tokenizer/` (on TINY_BERT's 64-token vocabulary) and a processor (default: MediaPipe at 10 fps). With
    `asr_model`, its text config names that transformers Whisper folder as the ASR its transcripts came from."""
    import torch

    from emi_hf import EmiFusionModel
    from emi_hf.processing_emi import EmiProcessor
    from emi_hf.text import build_word_tokenizer
    from emi_hf.text.encoder import TEXT_TOKENIZER_DIR

    asr = {"asr_backend": "transformers", "asr_model": str(asr_model)} if asr_model else {"asr_backend": "file"}
    torch.manual_seed(0)
    EmiFusionModel(tiny_fusion_config(text_config=tiny_text_config(**asr))).save_pretrained(folder)
    tokenizer = build_word_tokenizer(["what a wonderful surprise", "i did not expect that at all",
                                      "that is so sad", "hello there how are you"], Path(folder) / TEXT_TOKENIZER_DIR)
    assert len(tokenizer) <= TINY_BERT["vocab_size"]
    (processor or EmiProcessor(face_detector="mediapipe", target_fps=10, use_cache=False)).save_pretrained(folder)
    return folder


def clean_site_prelude() -> str:
    """Python source that adds this interpreter's site-packages by hand, skipping .pth files that point at the emi_hf
    source (editable install): run with `python -S -c prelude + script` for a Python without emi_hf."""
    import site

    paths = [p for p in site.getsitepackages() if os.path.isdir(p)]
    return (
        "import sys, os, site\n"
        f"for sp in {paths!r}:\n"
        "    sys.path.append(sp)\n"
        "    for name in sorted(os.listdir(sp)):\n"
        "        if name.endswith('.pth') and 'emi' not in name.lower():\n"
        "            site.addpackage(sp, name, set())\n"
        "sys.path = [p for p in sys.path if 'emi_hf' not in p and not p.rstrip('/').endswith('/src')]\n"
    )


def intensities_without_emi_hf(checkpoint: Path, inputs: dict, workdir: Path, class_name: str, setup: str = ""):
    """The `intensities` of `AutoModel.from_pretrained(checkpoint, trust_remote_code=True)` on `inputs`, computed in
    a fresh interpreter where emi_hf cannot be imported (this interpreter's site-packages minus the editable
    emi_hf install, run from `workdir`); the model must be `class_name` from the checkpoint's own code files.
    `setup`: Python lines run first (e.g. blocking an optional library)."""
    import subprocess

    import torch

    torch.save(inputs, workdir / "inputs.pt")
    script = f"""
import sys, torch
assert not any('emi_hf' in p for p in sys.path), sys.path
try:
    import emi_hf
    raise SystemExit('emi_hf must not be importable here')
except ImportError:
    pass
{setup}
from transformers import AutoModel
model = AutoModel.from_pretrained({str(checkpoint)!r}, trust_remote_code=True).eval()
assert type(model).__name__ == {class_name!r} and 'emi_hf' not in type(model).__module__
with torch.inference_mode():
    torch.save(model(**torch.load({str(workdir / 'inputs.pt')!r})).intensities, {str(workdir / 'out.pt')!r})
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(workdir / "hf_home"), PYTHONNOUSERSITE="1")
    result = subprocess.run([sys.executable, "-S", "-c", clean_site_prelude() + script], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(workdir / "out.pt")


def old_checkpoint_inputs() -> dict:
    """The visual + audio inputs the tests of checkpoints written by earlier versions feed (3 clips: all frames,
    5 of 9, no face; full, half and full audio)."""
    import torch

    generator = torch.Generator().manual_seed(1)
    return {"visual_features": torch.randn(3, 9, 512, generator=generator),
            "au_features": torch.rand(3, 9, 13, generator=generator),
            "frame_mask": (torch.arange(9)[None] < torch.tensor([[9], [5], [0]])).long(),
            "input_values": torch.randn(3, 6400, generator=generator),
            "attention_mask": (torch.arange(6400)[None] < torch.tensor([[6400], [3200], [6400]])).long()}


def old_checkpoints():
    """tests/fixtures/old_checkpoints.py as a module: the checkpoints of earlier versions kept as text."""
    name = "emi_old_checkpoints"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tests" / "fixtures" / "old_checkpoints.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def launched(demo, app):
    """Serves `demo` on 127.0.0.1 (a free port) in this process; yields its URL."""
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                           quiet=True)
    try:
        yield url
    finally:
        demo.close()


class LoopbackOnly:
    """Refuses (and records) any socket connection or name lookup beyond the loopback interface."""

    LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}

    def __init__(self):
        self.violations: list[str] = []

    def _allowed(self, host) -> bool:
        host = str(host).strip("[]")
        if host in self.LOCAL_NAMES:
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False

    def __enter__(self):
        guard = self
        self._connect, self._connect_ex = socket.socket.connect, socket.socket.connect_ex
        self._getaddrinfo = socket.getaddrinfo

        def check(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not guard._allowed(address[0]):
                guard.violations.append(f"connect {address}")
                raise OSError(f"test guard: no network beyond 127.0.0.1 (tried {address})")

        def connect(sock, address):
            check(sock, address)
            return guard._connect(sock, address)

        def connect_ex(sock, address):
            check(sock, address)
            return guard._connect_ex(sock, address)

        def getaddrinfo(host, *args, **kwargs):
            if host is not None and not guard._allowed(host if isinstance(host, str) else host.decode()):
                guard.violations.append(f"lookup {host}")
                raise socket.gaierror(f"test guard: no name lookups beyond localhost (tried {host})")
            return guard._getaddrinfo(host, *args, **kwargs)

        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
        return self

    def __exit__(self, *exc):
        socket.socket.connect, socket.socket.connect_ex = self._connect, self._connect_ex
        socket.getaddrinfo = self._getaddrinfo
        return False


@dataclasses.dataclass
class Record:
    """A clip record for `run_extraction` (what `emi_hf.data.layout` gives for real data)."""

    clip_id: str
    path: Path
    labels: object  # float32 [6], or None for a test clip
    split: str


class SavedSettings:
    """Stands in for the processor where only saving matters (the real one is tested in test_processor.py)."""

    fps = 30.0

    def save_pretrained(self, folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "processor_config.json").write_text("{}")


def train_killed_after(train, args, epochs: int) -> None:
    """Runs `train(args)` and kills it (an exception from the epoch-end hook) once `epochs` epochs are done, as a
    crash there would; the resume tests then continue the run."""
    import pytest

    class Killed(Exception):
        pass

    def kill(epochs_done, state):
        if epochs_done == epochs:
            raise Killed

    with pytest.raises(Killed):
        train(args, on_epoch_end=kill)

