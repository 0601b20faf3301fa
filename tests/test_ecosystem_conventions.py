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


# -- features as Parquet ----------------------------------------------------------------------------------------------


def _feature_rows(num_clips: int, labeled: bool, seed: int) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for index in range(num_clips):
        frames, audio_frames, tokens = 2 + index, 4 + 3 * index, index  # the last clip of a split: no transcript
        rows.append({
            "clip_id": f"{seed}-{index:05d}",
            "visual_features": rng.standard_normal((frames, 8)).astype(np.float32),
            "au_features": rng.random((frames, 13)).astype(np.float32) * 5,
            "frame_mask": (rng.random(frames) > 0.3).astype(np.int8),
            "frame_timestamps": np.arange(frames, dtype=np.float32) / 30,
            "audio_features": rng.standard_normal((audio_frames, 6)).astype(np.float16),
            "audio_mask": np.ones(audio_frames, dtype=np.int8),
            "labels": rng.random(6).astype(np.float32) if labeled else np.full(6, np.nan, np.float32),
            "face_fraction": float(index) / max(num_clips, 1),
            "audio_present": bool(index % 2),
            "transcript": "" if index == 0 else f"words {index}",
            "speech_segments": rng.random((index, 2)).astype(np.float32),
            "audio_speech_mask": np.ones(audio_frames, np.int8),
            "text_features": rng.standard_normal((max(tokens, 1), 5)).astype(np.float32),
            "text_mask": np.ones(max(tokens, 1), np.int8) * (tokens > 0),
        })
    return rows


def _assert_same_splits(expected, actual) -> None:
    import numpy as np

    assert sorted(expected) == sorted(actual)
    for name in expected:
        assert actual[name].features == expected[name].features, name
        assert len(actual[name]) == len(expected[name])
        left, right = expected[name].with_format("numpy"), actual[name].with_format("numpy")
        for column in expected[name].column_names:
            for a, b in zip(left[column], right[column]):
                if isinstance(a, str):
                    assert a == b, column
                else:
                    a, b = np.asarray(a), np.asarray(b)
                    assert a.dtype == b.dtype and a.shape == b.shape, (column, a.dtype, b.dtype, a.shape, b.shape)
                    assert np.array_equal(a, b, equal_nan=True), column


def test_features_round_trip_through_parquet_in_the_push_to_hub_layout(tmp_path):
    import datasets

    from emi_hf.data.parquet import load_parquet_repo, parquet_files, write_parquet_repo
    from emi_hf.data.store import feature_schema
    from emi_hf.hub import _features_card

    schema = feature_schema(13, 6, 6, visual_dim=8, audio_dtype="float16", text=True, text_dim=5)
    features = datasets.DatasetDict({
        "train": datasets.Dataset.from_list(_feature_rows(4, True, 0), features=schema),
        "validation": datasets.Dataset.from_list(_feature_rows(2, True, 1), features=schema),
        "test": datasets.Dataset.from_list(_feature_rows(3, False, 2), features=schema),
    })
    folder = tmp_path / "repo"
    written = write_parquet_repo(features, folder, max_shard_bytes=2000)  # several shards per split
    assert len(parquet_files(folder)["train"]) > 1 and all(p.parent.name == "data" for p in written)
    (folder / "README.md").write_text(_features_card(features, "org/emi-features"))
    _assert_same_splits(features, load_parquet_repo(folder, cache_dir=tmp_path / "cache1"))
    # what `load_dataset("org/emi-features")` does with the repo: the README's configs and feature types
    _assert_same_splits(features, datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache2")))


# -- model cards ------------------------------------------------------------------------------------------------------


def _card(tmp_path: Path, config, results: dict):
    from huggingface_hub import ModelCard

    from emi_hf.hub import render_model_card

    folder = tmp_path / config.model_type
    config.save_pretrained(folder)
    (folder / "results.json").write_text(json.dumps(results))
    text = str(render_model_card(folder, f"org/{config.model_type}"))
    return text, ModelCard(text).data.to_dict()


def _card_results(modality: str, **overrides) -> dict:
    from emi_hf import EMOTION_NAMES

    per_emotion = {name: 0.1 * (i + 1) + 1e-7 * (i + 1) for i, name in enumerate(EMOTION_NAMES)}  # unrounded
    return {"modality": modality, "dataset": "Hume-Vidmimic2", "dataset_repo_id": "org/emi-features",
            "validation": {"mean_pearson": sum(per_emotion.values()) / 6, "per_emotion": per_emotion}, **overrides}


def test_model_cards_follow_the_hub_conventions(tmp_path):
    from emi_hf import EmiFusionConfig
    from helpers import tiny_audio_config, tiny_text_config, tiny_visual_config

    evaluate = pytest.importorskip("evaluate")
    metric = evaluate.load(str(REPO_ROOT / "hub" / "metrics" / "emi_mean_pearson"),
                           cache_dir=str(tmp_path / "metric_cache"))
    audio = tiny_audio_config(speech_encoder_name="facebook/wav2vec2-base")
    text_config = tiny_text_config(text_encoder_name="thenlper/gte-base")
    cases = [
        (tiny_visual_config(), "visual", "video-classification", ["timm/resnet18.tv_in1k"]),
        (tiny_visual_config(backbone="timm:resnet50.a1_in1k", visual_feature_dim=2048), "visual",
         "video-classification", ["timm/resnet50.a1_in1k"]),
        (audio, "audio", "audio-classification", ["facebook/wav2vec2-base"]),
        (text_config, "text", "text-classification", ["thenlper/gte-base"]),
        (EmiFusionConfig(visual_config=tiny_visual_config(), audio_config=audio), "fusion", "video-classification",
         ["timm/resnet18.tv_in1k", "facebook/wav2vec2-base"]),
    ]
    for index, (config, modality, tag, base) in enumerate(cases):
        text, data = _card(tmp_path / str(index), config, _card_results(modality))
        assert data["pipeline_tag"] == tag and data["base_model"] == base, (modality, data.get("base_model"))
        # the most restrictive licence of the encoders (provenance.card_licence): "other" where one is unrecorded
        expected = {"visual": "other", "audio": "apache-2.0", "text": "mit", "fusion": "other"}[modality]
        assert data["license"] == expected, (modality, data["license"])
        if expected == "other":
            assert data["license_name"] and data["license_link"].startswith("https://")
        else:
            assert "license_name" not in data and "license_link" not in data
        assert data["datasets"] == ["org/emi-features"]
        results = data["model-index"][0]["results"][0]
        assert results["dataset"]["type"] == "org/emi-features"
        values = [m["value"] for m in results["metrics"]]
        assert all(value == round(value, 4) for value in values), values
        assert results["metrics"][0]["type"] == metric.name == "emi_mean_pearson"
        assert metric.name in data["metrics"]
        assert "pip install emi-hf" not in text and "pip install ." in text
    text, data = _card(tmp_path / "apache", tiny_audio_config(speech_encoder_name="facebook/wav2vec2-base"),
                       _card_results("audio", license="apache-2.0"))
    assert data["license"] == "apache-2.0" and "license_name" not in data and "license_link" not in data
    text, data = _card(tmp_path / "named", tiny_visual_config(), _card_results(
        "visual", license="other", license_name="my-terms", license_link="LICENSE.md"))
    assert (data["license_name"], data["license_link"]) == ("my-terms", "LICENSE.md")
    # a local encoder folder is no Hub id: left out of base_model
    local = tiny_audio_config(speech_encoder_name=str(tmp_path))
    _, data = _card(tmp_path / "local", local, _card_results("audio"))
    assert "base_model" not in data


# -- caches -----------------------------------------------------------------------------------------------------------


def test_caches_follow_hf_home_then_xdg_cache_home(tmp_path, monkeypatch):
    from emi_hf.media.cache import default_cache_dir
    from emi_hf.media.mediapipe_tasks import FACE_LANDMARKER_FILE, face_landmarker_model, models_cache_dir
    from emi_hf.text.cache import default_transcript_cache_dir

    for name in ("EMI_HF_CACHE", "EMI_HF_MODELS", "EMI_HF_FACE_LANDMARKER", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for folder in (default_cache_dir(), default_transcript_cache_dir(), models_cache_dir()):
        assert Path(folder).is_relative_to(tmp_path / "xdg" / "emi_hf"), folder
    # a model file fetched before HF_HOME was set stays found
    (tmp_path / "xdg" / "emi_hf" / "models").mkdir(parents=True)
    (tmp_path / "xdg" / "emi_hf" / "models" / FACE_LANDMARKER_FILE).write_bytes(b"model")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for folder in (default_cache_dir(), default_transcript_cache_dir(), models_cache_dir()):
        assert Path(folder).is_relative_to(tmp_path / "hf" / "emi_hf"), folder
    assert face_landmarker_model(download=False) == tmp_path / "xdg" / "emi_hf" / "models" / FACE_LANDMARKER_FILE
    (tmp_path / "hf" / "emi_hf" / "models").mkdir(parents=True)
    (tmp_path / "hf" / "emi_hf" / "models" / FACE_LANDMARKER_FILE).write_bytes(b"model")
    assert face_landmarker_model(download=False) == tmp_path / "hf" / "emi_hf" / "models" / FACE_LANDMARKER_FILE
