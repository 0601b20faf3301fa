"""Shared fixtures: tiny random configs (tests never download weights) and the real media folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
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


def tiny_fusion_config(**overrides):
    from emi_hf import EmiFusionConfig

    return EmiFusionConfig(visual_config=tiny_visual_config(), audio_config=tiny_audio_config(), **overrides)


@pytest.fixture(scope="session")
def media_dir() -> Path:
    if not MEDIA_DIR.is_dir():
        pytest.skip(f"real test media not found at {MEDIA_DIR} (set EMI_HF_MEDIA_DIR to the shared/media folder)")
    return MEDIA_DIR


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
    yield
