"""transformers conventions of the models and the processor (issue 15): labels, hidden states, attentions, exact
inputs, weight initialisation, processor keyword arguments; and checkpoints written before still predict the same."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (old_checkpoint_inputs, old_checkpoints, tiny_audio_config, tiny_fusion_config,
                     tiny_visual_config)
from safetensors.torch import load_file, save_file

from emi_hf import EmiAudioModel, EmiFusionConfig, EmiFusionModel, EmiVisualConfig, EmiVisualModel
from emi_hf.configuration_emi import EMOTION_NAMES
from emi_hf.processing_emi import EmiProcessor, model_inputs
from emi_hf.processor_kwargs import EmiProcessorKwargs
from emi_hf.temporal_emi import SelfAttention

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def visual_inputs(batch=2, frames=7):
    generator = torch.Generator().manual_seed(0)
    mask = torch.ones(batch, frames, dtype=torch.long)
    mask[-1, frames - 2:] = 0  # padding in the last clip
    return dict(visual_features=torch.randn(batch, frames, 512, generator=generator),
                au_features=torch.rand(batch, frames, 13, generator=generator) * 5, frame_mask=mask)


def audio_inputs(batch=2, samples=6400):
    mask = torch.ones(batch, samples, dtype=torch.long)
    mask[-1, samples // 2:] = 0
    return dict(input_values=torch.randn(batch, samples, generator=torch.Generator().manual_seed(1)),
                attention_mask=mask)


MODELS = {
    "visual": (EmiVisualModel, tiny_visual_config, visual_inputs),
    "audio": (EmiAudioModel, tiny_audio_config, audio_inputs),
    "fusion": (EmiFusionModel, tiny_fusion_config, lambda: {**visual_inputs(), **audio_inputs()}),
}


def build(kind, **config_kwargs):
    model_class, make_config, make_inputs = MODELS[kind]
    torch.manual_seed(0)
    return model_class(make_config(**config_kwargs)).eval(), make_inputs()


# 1. Labels --------------------------------------------------------------------------------------------------------


def test_label_fields_are_one_thing_whichever_is_set():
    three = EmiVisualConfig(num_labels=3)
    assert three.label_names == ["LABEL_0", "LABEL_1", "LABEL_2"] and three.label2id == {"LABEL_0": 0, "LABEL_1": 1,
                                                                                           "LABEL_2": 2}
    assert EmiVisualConfig().label_names == list(EMOTION_NAMES) and EmiVisualConfig(num_labels=6).num_labels == 6
    given = EmiVisualConfig(id2label={0: "calm", 1: "joy"})
    assert (given.num_labels, given.label_names, given.label2id) == (2, ["calm", "joy"], {"calm": 0, "joy": 1})
    assert EmiVisualConfig(label2id={"joy": 1, "calm": 0}).id2label == {0: "calm", 1: "joy"}
    with pytest.raises(ValueError, match="disagree"):
        EmiVisualConfig(label_names=["a", "b"], id2label={0: "b", 1: "a"})
    with pytest.raises(ValueError, match="distinct"):
        EmiVisualConfig(label_names=["a", "a"])

    config = EmiVisualConfig()
    config.num_labels = 3  # set after construction: all four follow
    assert config.label_names == ["LABEL_0", "LABEL_1", "LABEL_2"] and len(config.label2id) == 3
    config.id2label = {0: "x", 1: "y"}
    assert (config.num_labels, config.label_names, config.label2id) == (2, ["x", "y"], {"x": 0, "y": 1})
    config.label2id = {"q": 0}
    assert (config.num_labels, config.id2label) == (1, {0: "q"})
    config.label_names = ["p", "q", "r"]
    assert config.to_dict()["id2label"] == {0: "p", 1: "q", 2: "r"} and config.to_dict()["label_names"] == ["p", "q",
                                                                                                            "r"]


def test_fusion_labels_are_the_sub_models_labels():
    fusion = tiny_fusion_config(num_labels=3)
    assert fusion.visual_config.label_names == fusion.audio_config.label_names == fusion.label_names
    assert fusion.num_labels == 3 and fusion.fusion_weights == [0.5] * 3
    fusion.label_names = ["a", "b"]
    assert (fusion.visual_config.num_labels, fusion.audio_config.id2label, fusion.fusion_weights) == (
        2, {0: "a", 1: "b"}, [0.5, 0.5])
    with pytest.raises(ValueError, match="different labels"):
        EmiFusionConfig(visual_config=tiny_visual_config(num_labels=2), audio_config=tiny_audio_config())


@pytest.mark.parametrize("kind", ["visual", "audio", "fusion"])
def test_head_of_another_size_saves_and_loads(kind, tmp_path):
    model, inputs = build(kind)
    model.config.num_labels = 3  # the path: the config changed after construction, a model built from it
    model = type(model)(model.config).eval()
    with torch.no_grad():
        expected = model(**inputs).intensities
    assert expected.shape == (2, 3)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["label_names"] == ["LABEL_0", "LABEL_1", "LABEL_2"] and len(saved["id2label"]) == 3
    reloaded = type(model).from_pretrained(tmp_path).eval()
    assert reloaded.config.label_names == model.config.label_names
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).intensities, expected, atol=0, rtol=0)


@pytest.mark.parametrize("kind", ["visual", "fusion"])
def test_from_pretrained_with_another_num_labels_replaces_the_head(kind, tmp_path):
    model, inputs = build(kind)
    model.save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        type(model).from_pretrained(tmp_path, num_labels=3)
    new = type(model).from_pretrained(tmp_path, num_labels=3, ignore_mismatched_sizes=True).eval()
    assert new.config.num_labels == 3 and new.config.label_names == ["LABEL_0", "LABEL_1", "LABEL_2"]
    old_state, new_state = model.state_dict(), new.state_dict()
    replaced = {key for key in old_state if old_state[key].shape != new_state[key].shape}
    assert replaced and all(".head." in f".{key}" for key in replaced)  # only the head changed size
    for key in replaced:
        assert new_state[key].shape[0] == 3 and torch.isfinite(new_state[key]).all()
    kept = [key for key in old_state if key not in replaced]
    assert all(torch.equal(old_state[key], new_state[key]) for key in kept)
    with torch.no_grad():
        assert new(**inputs).intensities.shape == (2, 3)
    named = type(model).from_pretrained(tmp_path, id2label={0: "calm", 1: "joy"}, ignore_mismatched_sizes=True)
    assert named.config.label2id == {"calm": 0, "joy": 1} and named.config.num_labels == 2


# 2. Hidden states and 3. attentions -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["visual", "audio"])
def test_hidden_states_follow_the_convention(kind):
    model, inputs = build(kind)
    config = model.config
    with torch.no_grad():
        plain = model(**inputs)
        out = model(**inputs, output_hidden_states=True)
    assert plain.hidden_states is None and plain.attentions is None
    layers = len(config.tcn_dilations) + config.num_hidden_layers
    assert isinstance(out.hidden_states, tuple) and len(out.hidden_states) == 1 + layers
    frames = out.last_hidden_state.shape[1]
    assert all(h.shape == (2, frames, config.hidden_size) for h in out.hidden_states)
    mask = out.frame_mask[..., None].to(out.last_hidden_state.dtype)
    # The last entry is the last layer's output, before the final norm (applied to last_hidden_state).
    torch.testing.assert_close(model.encoder.final_norm(out.hidden_states[-1]) * mask, out.last_hidden_state)
    torch.testing.assert_close(out.intensities, plain.intensities, atol=0, rtol=0, equal_nan=True)
    model.config.output_hidden_states = True  # or from the config
    with torch.no_grad():
        assert len(model(**inputs).hidden_states) == 1 + layers


@pytest.mark.parametrize("kind", ["visual", "audio"])
def test_attentions_are_returned_per_layer(kind):
    model, inputs = build(kind, num_hidden_layers=2)
    with torch.no_grad():
        plain = model(**inputs)
        out = model(**inputs, output_attentions=True)
    assert model.config._attn_implementation == "sdpa" and plain.attentions is None
    assert len(out.attentions) == 2
    frames = out.last_hidden_state.shape[1]
    heads = model.config.num_attention_heads
    for weights in out.attentions:
        assert weights.shape == (2, heads, frames, frames)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, heads, frames))
        padded = ~out.frame_mask[-1]
        assert padded.any() and torch.all(weights[-1][..., padded] == 0)  # padding is never attended
    torch.testing.assert_close(out.intensities, plain.intensities, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["visual", "audio", "fusion"])
def test_eager_and_sdpa_agree_and_are_chosen_the_transformers_way(kind, tmp_path):
    model, inputs = build(kind)
    model.save_pretrained(tmp_path)
    eager = type(model).from_pretrained(tmp_path, attn_implementation="eager").eval()
    sdpa = type(model).from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    assert (eager.config._attn_implementation, sdpa.config._attn_implementation) == ("eager", "sdpa")
    layers = [m for m in eager.modules() if isinstance(m, SelfAttention)]  # sub-models of the fusion too
    assert layers and all(layer.config._attn_implementation == "eager" for layer in layers)
    built = type(model)._from_config(model.config, attn_implementation="eager")
    assert built.config._attn_implementation == "eager"
    with torch.no_grad():
        a, b = eager(**inputs), sdpa(**inputs)
    torch.testing.assert_close(a.intensities, b.intensities, atol=1e-6, rtol=1e-5, equal_nan=True)
    torch.testing.assert_close(a.frame_intensities, b.frame_intensities, atol=1e-6, rtol=1e-5, equal_nan=True)
    with pytest.raises(ValueError, match="Flash Attention"):
        type(model).from_pretrained(tmp_path, attn_implementation="flash_attention_2")


def test_fusion_names_each_models_hidden_states_and_attentions():
    model, inputs = build("fusion")
    with torch.no_grad():
        plain = model(**inputs)
        out = model(**inputs, output_hidden_states=True, output_attentions=True)
    assert plain.visual_hidden_states is None and plain.audio_attentions is None
    assert plain.visual_last_hidden_state.shape[-1] == plain.audio_last_hidden_state.shape[-1] == 32
    visual_layers = 1 + len(model.config.visual_config.tcn_dilations) + model.config.visual_config.num_hidden_layers
    assert len(out.visual_hidden_states) == visual_layers and len(out.audio_hidden_states) > 1
    assert out.visual_attentions[0].shape[-1] == out.visual_last_hidden_state.shape[1]
    assert out.audio_attentions[0].shape[-1] == out.audio_last_hidden_state.shape[1]
    as_tuple = model(**inputs, return_dict=False)
    assert len(as_tuple) == len(plain.to_tuple())


# 4. Exact inputs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["visual", "audio", "fusion"])
def test_unknown_keyword_is_a_type_error_naming_it(kind):
    model, inputs = build(kind)
    with pytest.raises(TypeError, match="frame_masks"):
        model(**inputs, frame_masks=torch.ones(2, 7))


def test_model_inputs_keeps_what_each_model_takes():
    batch = {**visual_inputs(), **audio_inputs()}
    visual, _ = build("visual")
    audio, _ = build("audio")
    fusion, _ = build("fusion")
    assert set(model_inputs(batch, visual)) == {"visual_features", "au_features", "frame_mask"}
    assert set(model_inputs(batch, audio)) == {"input_values", "attention_mask"}
    assert set(model_inputs(batch, fusion)) == set(batch)  # the union of the two models' inputs
    with torch.no_grad():
        fused = fusion(**batch)
        alone = visual(**model_inputs(batch, visual))
    assert alone.intensities.shape == fused.visual_intensities.shape


def test_processor_batch_for_model(tmp_path):
    processor = EmiProcessor(face_detector="mediapipe", use_cache=False)
    wave = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    batch = processor(audio=[wave, wave[:4000]])
    audio, _ = build("audio")
    with pytest.raises(TypeError, match="pixel_values|au_features|frame_mask"):
        audio(**batch)
    assert set(batch.for_model(audio)) == {"input_values", "attention_mask"}
    with torch.no_grad():
        assert audio(**batch.for_model(audio)).intensities.shape == (2, 6)


# 5. Weight initialisation -----------------------------------------------------------------------------------------


def _close_distributions(fresh: torch.Tensor, loaded: torch.Tensor) -> bool:
    fresh, loaded = fresh.double().flatten(), loaded.double().flatten()
    if fresh.numel() < 2 or float(fresh.std()) == 0.0:
        return torch.equal(fresh, loaded)
    spread, shift = float(fresh.std()), abs(float(loaded.mean() - fresh.mean()))
    same_centre = shift < 0.35 * spread + 0.05 * abs(float(fresh.mean()))
    if fresh.numel() < 16:  # e.g. the 4 magnitudes of a weight-normed convolution: too few for a spread
        return same_centre
    return same_centre and 0.6 < float(loaded.std()) / spread < 1.6


@pytest.mark.parametrize("kind", ["visual", "audio"])
def test_missing_weights_are_initialised_as_in_a_new_model(kind, tmp_path):
    model, _ = build(kind, hidden_size=64, intermediate_size=128)
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    kept = "encoder.final_norm.weight"
    save_file({kept: weights[kept]}, tmp_path / "model.safetensors", metadata={"format": "pt"})
    torch.manual_seed(1)
    loaded = type(model).from_pretrained(tmp_path)
    fresh, restored = model.state_dict(), loaded.state_dict()
    different = [key for key in fresh if not _close_distributions(fresh[key], restored[key])]
    assert different == []
    if kind == "audio":  # the speech encoder's projection and weight-normed positional convolution
        names = [key for key in fresh if "feature_projection.projection" in key or "pos_conv_embed" in key]
        assert len(names) >= 4 and all(torch.isfinite(restored[key]).all() for key in names)


# 6. Processor keyword arguments -----------------------------------------------------------------------------------


def test_processor_takes_the_standard_keyword_arguments(caplog):
    processor = EmiProcessor(face_detector="mediapipe", use_cache=False)
    assert processor.valid_processor_kwargs is EmiProcessorKwargs
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    reference = processor(audio=[wave])
    with caplog.at_level(logging.WARNING, logger="emi_hf.processor_kwargs"):
        batch = processor(audio=[wave], do_sample_frames=False, text_kwargs={})
    assert "do_sample_frames" in caplog.text and "text_kwargs" in caplog.text
    torch.testing.assert_close(batch["input_values"], reference["input_values"])
    padded = processor(audio=[wave], audio_kwargs={"padding": "max_length", "max_length": 20000},
                       videos_kwargs={"return_tensors": "np"})
    assert isinstance(padded["input_values"], np.ndarray) and padded["input_values"].shape == (1, 20000)
    assert int(padded["attention_mask"].sum()) == 16000
    flat = processor(audio=[wave[:8000]], padding="max_length", max_length=9000)  # flat, routed to the extractor
    assert flat["input_values"].shape == (1, 9000)
    with pytest.raises(ValueError, match="two times"):
        processor(audio=[wave], padding="longest", audio_kwargs={"padding": "longest"})


def test_processor_routes_video_kwargs_to_the_video_processor(media_dir, tmp_path):
    processor = EmiProcessor(face_detector="mediapipe", max_frames=4, clip_cache_dir=tmp_path)
    video = media_dir / "single_face.mp4"
    normalised = processor(videos=video)
    raw = processor(videos=video, videos_kwargs={"do_normalize": False})
    valid = normalised["frame_mask"][0].bool()
    assert valid.any()
    mean = torch.tensor(processor.video_processor.image_mean)[:, None, None]
    std = torch.tensor(processor.video_processor.image_std)[:, None, None]
    torch.testing.assert_close(normalised["pixel_values"][0][valid], (raw["pixel_values"][0][valid] - mean) / std,
                               atol=1e-5, rtol=1e-5)


# Checkpoints written before still load and predict identically -----------------------------------------------------


def test_checkpoint_written_before_predicts_identically(tmp_path):
    """The config.json commit 148e3d8 wrote for a tiny visual + audio fusion, weights drawn by a fixed rule (face
    backbone included), and the outputs the 148e3d8 code computed from them on cached features and on raw video
    (face crops through the ResNet18), kept as hex floats (tests/fixtures/old_checkpoints.py wrote them with that
    code): today's code loads the folder and gives the same outputs, bit for bit."""
    fixtures = old_checkpoints()
    old = json.loads((FIXTURES / "fusion_checkpoint_148e3d8.json").read_text())
    assert old["commit"] == "148e3d8" and any(k.startswith("visual.backbone.conv1") for k in old["backbone_shapes"])
    model = EmiFusionModel.from_pretrained(fixtures.checkpoint_folder(old, tmp_path)).eval()
    cached = old_checkpoint_inputs()
    fixtures.assert_reproduces(model, old, cached)
    assert model.config.fusion_weights == old["config"]["fusion_weights"]
    assert model.config.label_names == list(EMOTION_NAMES) == model.config.visual_config.label_names
    assert "label_names" in old["config"]["visual_config"] and "label_names" not in old["config"]  # the old layout
