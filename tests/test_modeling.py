"""Model behaviour: shapes, masks, padding invariance, losses, fusion, save/load, remote code, backbones."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from helpers import TINY_WAV2VEC2, intensities_without_emi_hf, tiny_audio_config, tiny_fusion_config, tiny_visual_config

import emi_hf
from emi_hf import EmiAudioModel, EmiFusionConfig, EmiFusionModel, EmiVisualModel
import emi_hf.backbones_emi as backbones
from emi_hf.backbones_emi import chunked_conv_features, embed_distinct_frames, encode_speech_window
from emi_hf.configuration_emi import LOSS_TYPES
from emi_hf.modeling_emi import REGRESSION_LOSSES, concordance_loss, pearson_loss
from emi_hf.modeling_fusion_emi import fuse_intensities
from emi_hf.training.fusion import optimal_fusion_weights


def visual_inputs(batch=2, frames=7, num_aus=13):
    return dict(
        visual_features=torch.randn(batch, frames, 512),
        au_features=torch.rand(batch, frames, num_aus) * 5,
        frame_mask=torch.ones(batch, frames, dtype=torch.long),
    )


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_visual_shapes_and_range(pooling):
    model = EmiVisualModel(tiny_visual_config(pooling=pooling)).eval()
    out = model(**visual_inputs())
    assert out.intensities.shape == (2, 6)
    assert out.frame_intensities.shape == (2, 7, 6)
    assert out.last_hidden_state.shape == (2, 7, 32) and out.hidden_states is None and out.attentions is None
    assert torch.all((out.intensities >= 0) & (out.intensities <= 1))
    assert out.modality_mask.tolist() == [True, True]


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_padding_and_faceless_frames_do_not_change_the_result(pooling):
    model = EmiVisualModel(tiny_visual_config(pooling=pooling)).eval()
    clip = visual_inputs(batch=1, frames=6)
    clip["frame_mask"][0, 2] = 0  # a frame without a face in the middle
    alone = model(**clip)
    # Same clip padded to 10 frames with garbage, next to another clip.
    padded = visual_inputs(batch=2, frames=10)
    padded["visual_features"][0, :6] = clip["visual_features"][0]
    padded["au_features"][0, :6] = clip["au_features"][0]
    padded["frame_mask"][0] = torch.tensor([1, 1, 0, 1, 1, 1, 0, 0, 0, 0])
    padded["visual_features"][0, 2] = 1e3  # garbage at the faceless frame must be ignored too
    together = model(**padded)
    torch.testing.assert_close(together.intensities[0], alone.intensities[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        together.frame_intensities[0, :6][clip["frame_mask"][0].bool()],
        alone.frame_intensities[0][clip["frame_mask"][0].bool()], atol=1e-5, rtol=1e-5,
    )
    assert together.frame_intensities[0, 6:].isnan().all()  # masked frames are marked, not silently zero


def test_clip_without_any_face_is_masked_not_zero():
    model = EmiVisualModel(tiny_visual_config()).eval()
    inputs = visual_inputs()
    inputs["frame_mask"][1] = 0
    out = model(**inputs, labels=torch.rand(2, 6))
    assert out.modality_mask.tolist() == [True, False]
    assert out.intensities[1].isnan().all() and not out.intensities[0].isnan().any()
    assert torch.isfinite(out.loss)


def test_raw_pixels_equal_cached_features():
    model = EmiVisualModel(tiny_visual_config()).eval()
    pixels = torch.randn(2, 4, 3, 112, 112)
    aus = torch.rand(2, 4, 13)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1]])
    raw = model(pixel_values=pixels, au_features=aus, frame_mask=mask)
    with torch.no_grad():
        features = model.embed_faces(pixels.flatten(0, 1)).view(2, 4, 512)
    cached = model(visual_features=features, au_features=aus, frame_mask=mask)
    torch.testing.assert_close(raw.intensities, cached.intensities, atol=1e-5, rtol=1e-5)


def test_wrong_au_count_is_a_clear_error():
    model = EmiVisualModel(tiny_visual_config())
    with pytest.raises(ValueError, match="13"):
        model(**visual_inputs(num_aus=5))


def test_audio_raw_and_missing_audio():
    # Layer-norm encoders (wav2vec2-large style) take the attention mask, so padding is exactly ignored. Group-norm
    # ones (wav2vec2-base) normalise over the padded waveform, as in transformers; extraction runs clip by clip.
    encoder = dict(TINY_WAV2VEC2, feat_extract_norm="layer", do_stable_layer_norm=True)
    model = EmiAudioModel(tiny_audio_config(speech_encoder_config=encoder)).eval()
    waves = torch.randn(3, 8000)
    mask = torch.ones(3, 8000, dtype=torch.long)
    mask[1, 5000:] = 0
    mask[2] = 0  # no audio track
    out = model(input_values=waves, attention_mask=mask)
    assert out.intensities.shape == (3, 6)
    assert out.modality_mask.tolist() == [True, True, False]
    # The shorter clip alone gives the same as padded in the batch.
    alone = model(input_values=waves[1:2, :5000], attention_mask=mask[1:2, :5000])
    torch.testing.assert_close(out.intensities[1], alone.intensities[0], atol=1e-4, rtol=1e-4)


def test_frozen_backbones_stay_frozen_in_train_mode():
    model = EmiFusionModel(tiny_fusion_config()).train()
    assert not model.visual.backbone.training and not model.audio.backbone.training
    assert not any(p.requires_grad for p in model.visual.backbone.parameters())
    assert not any(p.requires_grad for p in model.audio.backbone.parameters())
    assert model.visual.encoder.training


def test_losses_against_hand_computation():
    preds = torch.tensor([[0.1, 0.9], [0.4, 0.5], [0.8, 0.2], [0.3, 0.3]], dtype=torch.float64)
    labels = torch.tensor([[0.0, 1.0], [0.5, 0.4], [1.0, 0.1], [0.2, 0.6]], dtype=torch.float64)
    p, l = preds.numpy(), labels.numpy()
    r = [np.corrcoef(p[:, j], l[:, j])[0, 1] for j in range(2)]
    ccc = [
        2 * np.cov(p[:, j], l[:, j], bias=True)[0, 1] / (p[:, j].var() + l[:, j].var() + (p[:, j].mean() - l[:, j].mean()) ** 2)
        for j in range(2)
    ]
    assert pearson_loss(preds, labels).item() == pytest.approx(1 - np.mean(r), abs=1e-6)
    assert concordance_loss(preds, labels).item() == pytest.approx(1 - np.mean(ccc), abs=1e-6)
    assert tuple(REGRESSION_LOSSES) == LOSS_TYPES  # every loss the config accepts is implemented
    model = EmiVisualModel(tiny_visual_config(loss_type="mse")).eval()
    inputs = visual_inputs(batch=4)
    labels6 = torch.rand(4, 6)
    out = model(**inputs, labels=labels6)
    assert out.loss.item() == pytest.approx(((out.intensities - labels6) ** 2).mean().item(), rel=1e-5)


def test_return_dict_false_and_gradient_checkpointing():
    model = EmiVisualModel(tiny_visual_config()).train()
    inputs = visual_inputs()
    labels = torch.rand(2, 6)
    plain = model(**inputs, labels=labels, return_dict=False)
    assert isinstance(plain, tuple) and plain[0].ndim == 0 and plain[1].shape == (2, 6)
    model = EmiVisualModel(tiny_visual_config(dropout=0.0, channel_dropout=0.0)).train()
    reference = model(**inputs, labels=labels)
    reference.loss.backward()
    grads = [p.grad.clone() for p in model.encoder.parameters() if p.grad is not None]
    model.zero_grad()
    model.activation_checkpointing_enable()
    checkpointed = model(**inputs, labels=labels)
    checkpointed.loss.backward()
    grads_ckpt = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert any(layer.gradient_checkpointing for layer in model.encoder.layers)
    torch.testing.assert_close(checkpointed.loss, reference.loss)
    for a, b in zip(grads, grads_ckpt):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_fusion_is_the_mean_and_falls_back_per_clip():
    model = EmiFusionModel(tiny_fusion_config()).eval()
    inputs = visual_inputs(batch=3)
    inputs["frame_mask"][1] = 0  # clip 1: no face
    waves = torch.randn(3, 8000)
    mask = torch.ones(3, 8000, dtype=torch.long)
    mask[2] = 0  # clip 2: no audio
    out = model(**inputs, input_values=waves, attention_mask=mask)
    v, a = out.visual_intensities, out.audio_intensities
    torch.testing.assert_close(out.intensities[0], (v[0] + a[0]) / 2)
    torch.testing.assert_close(out.intensities[1], a[1])
    torch.testing.assert_close(out.intensities[2], v[2])
    assert out.visual_mask.tolist() == [True, False, True] and out.audio_mask.tolist() == [True, True, False]


def test_fuse_intensities_weights_and_missing_both():
    v = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    a = torch.tensor([[0.6, 0.0], [float("nan"), float("nan")]])
    fused = fuse_intensities(v, a, torch.tensor([True, False]), torch.tensor([True, False]), torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(fused[0], torch.tensor([0.25 * 0.2 + 0.75 * 0.6, 0.8]))
    assert fused[1].isnan().all()


def test_optimal_fusion_weights_prefer_the_informative_modality():
    rng = np.random.default_rng(0)
    labels = rng.random((200, 6))
    visual = labels + rng.normal(0, 0.05, labels.shape)
    audio = rng.random((200, 6))
    audio[:, 3:] = labels[:, 3:] + rng.normal(0, 0.05, (200, 3))
    visual[:, 3:] = rng.random((200, 3))
    weights = optimal_fusion_weights(visual, audio, labels)
    assert all(w > 0.8 for w in weights[:3]) and all(w < 0.2 for w in weights[3:])
    assert EmiFusionModel(tiny_fusion_config(fusion_weights=weights)).config.fusion_weights == weights


def test_from_unimodal_and_save_load_round_trip(tmp_path):
    visual = EmiVisualModel(tiny_visual_config()).eval()
    audio = EmiAudioModel(tiny_audio_config()).eval()
    visual.save_pretrained(tmp_path / "visual")
    audio.save_pretrained(tmp_path / "audio")
    fusion = EmiFusionModel.from_unimodal(tmp_path / "visual", tmp_path / "audio").eval()
    inputs = dict(visual_inputs(), input_values=torch.randn(2, 8000))
    out = fusion(**inputs)
    torch.testing.assert_close(out.visual_intensities, visual(**visual_inputs_like(inputs)).intensities)
    fusion.save_pretrained(tmp_path / "fusion")
    files = sorted(os.listdir(tmp_path / "fusion"))
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    assert {"configuration_emi.py", "modeling_emi.py", "backbones_emi.py", "temporal_emi.py"} <= set(files)
    config = json.loads((tmp_path / "fusion" / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_fusion_emi.EmiFusionModel"
    reloaded = EmiFusionModel.from_pretrained(tmp_path / "fusion").eval()
    torch.testing.assert_close(reloaded(**inputs).intensities, out.intensities, atol=0, rtol=0)
    from transformers import AutoConfig, AutoModel

    assert isinstance(AutoConfig.from_pretrained(tmp_path / "visual"), emi_hf.EmiVisualConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path / "audio"), EmiAudioModel)


def visual_inputs_like(inputs):
    return {k: inputs[k] for k in ("visual_features", "au_features", "frame_mask")}


def test_remote_code_loads_without_emi_hf_installed(tmp_path):
    model = EmiFusionModel(tiny_fusion_config()).eval()
    inputs = dict(visual_inputs(), input_values=torch.randn(2, 8000))
    expected = model(**inputs).intensities
    model.save_pretrained(tmp_path / "ckpt")
    out = intensities_without_emi_hf(tmp_path / "ckpt", inputs, tmp_path, "EmiFusionModel")
    torch.testing.assert_close(out, expected)


def test_wav2vec2_checkpoint_saved_by_transformers_loads_into_the_audio_backbone(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    encoder = Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC2)).eval()
    encoder.save_pretrained(tmp_path / "w2v")
    model = EmiAudioModel.from_speech_encoder(tmp_path / "w2v", hidden_size=32, num_attention_heads=2).eval()
    assert model.config.audio_feature_dim == 32
    wave = torch.randn(1, 8000)
    with torch.inference_mode():
        expected = encoder(wave).last_hidden_state
        features, mask = model.embed_audio(wave)
    torch.testing.assert_close(features, expected)
    assert mask.all()


def test_unknown_speech_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(OSError):
        EmiAudioModel.from_speech_encoder(tmp_path / "does-not-exist")


def test_imagenet_weights_offline_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = EmiVisualModel(tiny_visual_config())
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth"):
        model.load_imagenet_backbone()
    # A local weights file (here: a random ResNet18 saved in torchvision's format) loads.
    from torchvision.models import resnet18

    reference = resnet18(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model.load_imagenet_backbone(tmp_path / "resnet18.pth")
    x = torch.randn(2, 3, 112, 112)
    reference.fc = torch.nn.Identity()
    torch.testing.assert_close(model.embed_faces(x), reference(x))


def test_config_json_written_before_the_shared_temporal_config_loads_the_same(tmp_path):
    """A visual config.json as written when each config declared its own temporal fields (labels shortened)."""
    written = {
        "architectures": ["EmiVisualModel"], "au_names": ["AU01", "AU12"], "backbone": "resnet18",
        "backbone_chunk_size": 32, "backbone_precision": "float32", "channel_dropout": 0.1, "dropout": 0.1,
        "dtype": "float32", "face_size": 112, "freeze_backbone": True, "hidden_size": 32, "id2label": {"0": "Joy"},
        "initializer_range": 0.02, "intermediate_size": 64, "label2id": {"Joy": 0}, "label_names": ["Joy"],
        "loss_type": "ccc", "model_type": "emi_visual", "num_attention_heads": 2, "num_hidden_layers": 1,
        "pooling": "mean", "problem_type": "regression", "tcn_dilations": [1, 2], "tcn_kernel_size": 5,
        "transformers_version": "5.24.0", "visual_feature_dim": 512,
    }
    (tmp_path / "config.json").write_text(json.dumps(written))
    config = emi_hf.EmiVisualConfig.from_pretrained(tmp_path)
    assert (config.num_labels, config.num_aus, config.tcn_kernel_size, config.loss_type) == (1, 2, 5, "ccc")
    config.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert {k: again[k] for k in written if k not in ("transformers_version", "architectures")} == {
        k: v for k, v in written.items() if k not in ("transformers_version", "architectures")
    }


def test_fusion_config_validation():
    with pytest.raises(ValueError, match="fusion_weights"):
        tiny_fusion_config(fusion_weights=[0.5] * 5)
    config = tiny_fusion_config()
    assert config.fusion_weights == [0.5] * 6
    assert EmiFusionConfig.from_dict(config.to_dict()).audio_config.speech_encoder_config.hidden_size == 32


def test_long_audio_is_encoded_in_windows():
    model = EmiAudioModel(tiny_audio_config(encoder_window_s=0.5)).eval()  # 8000-sample windows
    wave = torch.randn(1, 8000 * 3 + 1000)  # 3 windows + a 1000-sample tail joined to the last one
    assert backbones.speech_windows(wave.shape[1], 8000) == [(0, 8000), (8000, 16000), (16000, 25000)]
    with torch.no_grad():
        features, mask = model.embed_audio(wave)
        whole_window = torch.ones(1, 8000, dtype=torch.long)
        first, _ = encode_speech_window(model.backbone, model.config, wave[:, :8000], whole_window)
    assert mask.all() and features.shape[1] == 3 * first.shape[1] + model.backbone._get_feat_extract_output_lengths(9000) - first.shape[1]
    torch.testing.assert_close(features[:, : first.shape[1]], first)


def test_repeated_frames_are_embedded_once_with_the_same_result():
    model = EmiVisualModel(tiny_visual_config()).eval()
    pixels = torch.randn(1, 5, 3, 112, 112)
    pixels[0, 2] = pixels[0, 1]  # a repeated source frame
    pixels[0, 4] = pixels[0, 3]
    mask = torch.tensor([[1, 1, 1, 0, 1]])  # frame 4 repeats a masked frame: embedded itself
    calls = []
    with torch.no_grad():
        features = embed_distinct_frames(lambda x: calls.append(len(x)) or model.embed_faces(x), pixels, mask, 512)
        expected = model.embed_faces(pixels[0]).view(1, 5, 512) * mask[..., None]
    assert calls == [3]
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)


def test_inference_backbone_folds_batchnorm_and_follows_weight_changes():
    """Inference uses a BatchNorm-folded copy of the frozen ResNet18 (same function up to rounding), rebuilt when a
    backbone weight changes; with gradients to the backbone the backbone itself runs."""
    model = EmiVisualModel(tiny_visual_config()).eval()
    for module in model.backbone.modules():  # non-trivial statistics, so folding is really exercised
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    pixels = torch.randn(5, 3, 112, 112)
    with torch.no_grad():
        reference = model.backbone(pixels)
        folded = model.embed_faces(pixels)
        running = model._face_runner.backbone_to_run(model.backbone, model.config)
        assert running is not model.backbone
        assert not any(isinstance(m, nn.BatchNorm2d) for m in running.modules())
    torch.testing.assert_close(folded, reference, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        model.backbone.conv1.weight.mul_(2.0)  # in-place change: the folded copy must be rebuilt
        torch.testing.assert_close(model.embed_faces(pixels), model.backbone(pixels), atol=1e-4, rtol=1e-4)
        model.backbone.load_state_dict(EmiVisualModel(tiny_visual_config()).backbone.state_dict())  # copied in
        torch.testing.assert_close(model.embed_faces(pixels), model.backbone(pixels), atol=1e-4, rtol=1e-4)
        conv = model.backbone.layer1[0].conv1
        conv.weight.data = torch.randn_like(conv.weight)  # another tensor under the same parameter
        torch.testing.assert_close(model.embed_faces(pixels), model.backbone(pixels), atol=1e-4, rtol=1e-4)
    model.config.freeze_backbone = False
    model.train()
    assert model._face_runner.backbone_to_run(model.backbone, model.config) is model.backbone


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_chunked_conv_feature_encoder_is_exact(norm, monkeypatch):
    """The speech encoder's conv feature encoder run chunk by chunk (two passes for wav2vec2-base's whole-input
    GroupNorm) equals running it at once, padding included; so does the audio model's output."""
    config = tiny_audio_config(speech_encoder_config={**TINY_WAV2VEC2, "feat_extract_norm": norm})
    model = EmiAudioModel(config).eval()
    encoder = model.backbone.feature_extractor
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
    waveforms = torch.randn(2, 16000 * 3) * torch.tensor([[1.0], [0.2]]) + 0.05
    waveforms[1, 16000 * 2 :] = 0.0  # a padded clip
    mask = torch.ones_like(waveforms, dtype=torch.long)
    mask[1, 16000 * 2 :] = 0
    with torch.no_grad():
        whole = type(encoder).forward(encoder, waveforms)
        chunked = chunked_conv_features(encoder, waveforms, 37)
        assert chunked is not None and chunked.shape == whole.shape
        torch.testing.assert_close(chunked, whole, atol=2e-5, rtol=1e-4)
        assert chunked_conv_features(encoder, waveforms[:, :400], 37) is None  # one chunk: the plain path
        features, frame_mask = model.embed_audio(waveforms, mask)  # 2,400 frames: chunked (default 250)
        assert "forward" in encoder.__dict__  # an instance attribute: the state dict is unchanged
        assert set(model.state_dict()) == set(EmiAudioModel(config).state_dict())
        monkeypatch.setattr(backbones, "CONV_FEATURE_CHUNK_FRAMES", 10**9)  # never chunk
        plain, plain_mask = model.embed_audio(waveforms, mask)
    torch.testing.assert_close(features, plain, atol=1e-4, rtol=1e-4)
    assert torch.equal(frame_mask, plain_mask)


def test_bfloat16_backbone_precision_is_close_and_float32_out():
    visual = EmiVisualModel(tiny_visual_config()).eval()
    # Not the tiny encoder's kernel-4/stride-4 16-channel conv: on some Intel CPUs (AVX512-BF16/AMX) the oneDNN
    # bfloat16 kernel of torch 2.14.1 for exactly that shape returns garbage (relative error ~1.0; lengths 1000,
    # 4000, 16000 ...), while wav2vec2-base's shapes (512 channels, kernels 10/3/2) stay within 0.3%.
    encoder = {**TINY_WAV2VEC2, "conv_kernel": [10, 3], "conv_stride": [5, 2]}
    audio = EmiAudioModel(tiny_audio_config(speech_encoder_config=encoder)).eval()
    pixels = torch.randn(4, 3, 112, 112)
    waveforms = torch.randn(1, 16000)
    with torch.no_grad():
        faces32 = visual.embed_faces(pixels)
        audio32, _ = audio.embed_audio(waveforms)
        visual.config.backbone_precision = "bfloat16"
        audio.config.backbone_precision = "bfloat16"
        faces16 = visual.embed_faces(pixels)
        audio16, _ = audio.embed_audio(waveforms)
    for low, high in ((faces16, faces32), (audio16, audio32)):
        assert low.dtype == torch.float32 and not torch.equal(low, high)
        assert ((low - high).norm() / high.norm()).item() < 0.05
    with pytest.raises(ValueError, match="backbone_precision"):
        tiny_visual_config(backbone_precision="int8")
