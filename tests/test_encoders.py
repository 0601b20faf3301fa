"""Face backbones and speech encoders by configuration: each family against its own library's forward, weights
from files, layer selection, fine-tuning the last blocks, the features contract, old checkpoints, remote code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import TINY_TEMPORAL, intensities_without_emi_hf, tiny_audio_config, tiny_visual_config

from emi_hf import EmiAudioModel, EmiVisualConfig, EmiVisualModel
from emi_hf.encoder_setup import backbone_fingerprint, card_encoders, check_input_dims, encoder_record

TINY_SPEECH = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                   conv_dim=[16, 16], conv_stride=[5, 4], conv_kernel=[10, 4], num_conv_pos_embeddings=4,
                   num_conv_pos_embedding_groups=2)


def crops(side: int, n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# Face backbones
# ----------------------------------------------------------------------------------------------------------------------


def test_torchvision_backbone_from_a_pth_file_equals_torchvision(tmp_path):
    from torchvision.models import mobilenet_v2
    from torchvision.models.feature_extraction import create_feature_extractor

    reference = mobilenet_v2(weights=None).eval()  # random weights, classifier included
    torch.save(reference.state_dict(), tmp_path / "mobilenet_v2.pth")
    model = EmiVisualModel.from_backbone("torchvision:mobilenet_v2", weights=tmp_path / "mobilenet_v2.pth",
                                         **TINY_TEMPORAL).eval()
    assert (model.config.visual_feature_dim, model.config.face_size) == (1280, 224)
    pooled = create_feature_extractor(reference, {"flatten": "pooled"})
    with torch.inference_mode():
        close(model.embed_faces(crops(64)), pooled(crops(64))["pooled"])
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_torchvision_resnet_from_safetensors_equals_torchvision(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import resnet34

    reference = resnet34(weights=None).eval()
    save_file(reference.state_dict(), tmp_path / "resnet34.safetensors")
    model = EmiVisualModel(EmiVisualConfig(backbone="torchvision:resnet34", **TINY_TEMPORAL)).eval()
    model.load_backbone_weights(tmp_path / "resnet34.safetensors")
    reference.fc = torch.nn.Identity()
    with torch.inference_mode():  # embed_faces runs a BatchNorm-folded copy: equal up to float rounding
        close(model.embed_faces(crops(64)), reference(crops(64)))


def test_timm_backbone_from_a_file_equals_timm_pooled_features(tmp_path):
    import timm
    from safetensors.torch import save_file

    reference = timm.create_model("test_vit", pretrained=False).eval()  # with its classifier
    save_file(reference.state_dict(), tmp_path / "test_vit.safetensors")
    model = EmiVisualModel.from_backbone("timm:test_vit", weights=tmp_path / "test_vit.safetensors",
                                         **TINY_TEMPORAL).eval()
    assert model.config.face_size == 160 and model.config.image_mean == [0.5, 0.5, 0.5]
    with torch.inference_mode():
        expected = reference.forward_head(reference.forward_features(crops(160)), pre_logits=True)
        close(model.embed_faces(crops(160)), expected)


def _save_transformers_vision(folder, family: str):
    from transformers import (BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, Dinov2Config,
                              Dinov2Model, ViTConfig, ViTImageProcessor, ViTModel)

    tiny = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                patch_size=8)
    if family == "dinov2":
        model = Dinov2Model(Dinov2Config(**tiny))
        processor = BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32},
                                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    elif family == "vit":
        model = ViTModel(ViTConfig(**tiny))
        processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    else:
        text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=99)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=tiny, projection_dim=16))
        processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return model


@pytest.mark.parametrize("family", ["dinov2", "vit", "clip"])
def test_transformers_backbone_folder_equals_the_models_own_output(tmp_path, family):
    reference = _save_transformers_vision(tmp_path / family, family)
    model = EmiVisualModel.from_backbone(tmp_path / family, **TINY_TEMPORAL).eval()
    assert model.config.visual_feature_dim == 32 and model.config.face_size == 32
    x = crops(32)
    with torch.inference_mode():
        if family == "dinov2":
            expected = reference(pixel_values=x).pooler_output  # CLS after the final layer norm
        elif family == "vit":
            expected = reference(pixel_values=x).last_hidden_state[:, 0]  # CLS after the final layer norm
        else:
            expected = reference.vision_model(pixel_values=x).pooler_output  # the vision tower's pooled CLS
        close(model.embed_faces(x), expected)
    # self-contained: the saved model rebuilds the backbone from its sub-config, without the folder
    model.save_pretrained(tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["backbone_config"]["model_type"] in ("dinov2", "vit", "clip_vision_model")
    reloaded = EmiVisualModel.from_pretrained(tmp_path / "ckpt").eval()
    with torch.inference_mode():
        close(reloaded.embed_faces(x), expected)


def test_processor_follows_the_backbone_input_size_and_normalisation(tmp_path):
    from emi_hf import EmiProcessor
    from emi_hf.encoder_setup import processor_for_face_backbone

    _save_transformers_vision(tmp_path / "vit", "vit")
    model = EmiVisualModel.from_backbone(tmp_path / "vit", weights="random", **TINY_TEMPORAL)
    processor = EmiProcessor(face_detector=None, au_backend=None)
    assert processor_for_face_backbone(processor, EmiVisualConfig()) is processor  # ResNet18: as it was
    fitted = processor_for_face_backbone(processor, model.config)
    assert fitted.face_size == 32 and list(fitted.video_processor.image_mean) == [0.5] * 3
    pixels = fitted.video_processor(videos=[np.full((2, 32, 32, 3), 255, np.uint8)], return_tensors="pt")
    torch.testing.assert_close(pixels["pixel_values"][0], torch.ones(2, 3, 32, 32))  # (1 - 0.5) / 0.5
    with pytest.raises(ValueError, match="leave --processor out"):
        processor_for_face_backbone(processor, model.config, fixed=True)


def test_unknown_backbones_say_what_to_use():
    with pytest.raises(ValueError, match="from_backbone"):
        EmiVisualConfig(backbone="facebook/dinov2-small")  # a transformers id without its config
    with pytest.raises(ValueError, match="list_models"):
        EmiVisualModel(EmiVisualConfig(backbone="torchvision:no_such_net"))
    with pytest.raises(ValueError, match="gives 1280-d embeddings but visual_feature_dim is 512"):
        EmiVisualModel(EmiVisualConfig(backbone="torchvision:mobilenet_v2"))


def test_weights_of_another_architecture_are_refused(tmp_path):
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    model = EmiVisualModel.from_backbone("torchvision:mobilenet_v2", weights="random", **TINY_TEMPORAL)
    with pytest.raises(ValueError, match="do not fit the face backbone"):
        model.load_backbone_weights(tmp_path / "resnet18.pth")


def test_old_resnet18_checkpoints_load_and_predict_identically(tmp_path):
    model = EmiVisualModel(tiny_visual_config()).eval()
    model.save_pretrained(tmp_path / "ckpt")
    # a config.json as written before the encoder options existed
    path = tmp_path / "ckpt" / "config.json"
    config = json.loads(path.read_text())
    for key in ("backbone_config", "backbone_pooling", "image_mean", "image_std", "trainable_backbone_layers"):
        config.pop(key)
    path.write_text(json.dumps(config))
    reloaded = EmiVisualModel.from_pretrained(tmp_path / "ckpt").eval()
    assert reloaded.config.backbone == "resnet18" and reloaded.config.face_size == 112
    assert set(reloaded.state_dict()) == set(model.state_dict())
    pixels = torch.randn(1, 3, 3, 112, 112)
    inputs = dict(pixel_values=pixels, au_features=torch.rand(1, 3, model.config.num_aus))
    with torch.inference_mode():
        close(reloaded(**inputs).intensities, model(**inputs).intensities)


# ----------------------------------------------------------------------------------------------------------------------
# Speech encoders
# ----------------------------------------------------------------------------------------------------------------------


def _save_speech_encoder(folder, family: str):
    from transformers import (Data2VecAudioConfig, Data2VecAudioModel, HubertConfig, HubertModel, WavLMConfig,
                              WavLMModel, WhisperConfig, WhisperModel)

    if family == "hubert":
        model = HubertModel(HubertConfig(**TINY_SPEECH))
    elif family == "data2vec-audio":
        model = Data2VecAudioModel(Data2VecAudioConfig(**{**TINY_SPEECH, "num_conv_pos_embeddings": 2},
                                                       conv_pos_kernel_size=3))
    elif family == "wavlm":
        model = WavLMModel(WavLMConfig(**TINY_SPEECH, num_buckets=8, max_bucket_distance=20))
    else:  # 50 positions: a 1 s log-mel input (Whisper's own is 1500 positions, 30 s)
        model = WhisperModel(WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                           num_mel_bins=80, max_source_positions=50, max_target_positions=16,
                                           vocab_size=99, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                           decoder_start_token_id=1, suppress_tokens=[], begin_suppress_tokens=[]))
    model.eval().save_pretrained(folder)
    return model


def waveform(seconds: float, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, int(seconds * 16000), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", ["hubert", "wavlm", "data2vec-audio"])
def test_speech_encoder_folder_equals_the_encoders_own_output(tmp_path, family):
    reference = _save_speech_encoder(tmp_path / family, family)
    model = EmiAudioModel.from_speech_encoder(tmp_path / family, **TINY_TEMPORAL).eval()
    assert model.config.speech_encoder_name == str(tmp_path / family)
    x = waveform(0.5)
    with torch.inference_mode():
        frames, mask = model.embed_audio(x)
        close(frames, reference(x).last_hidden_state)
        assert mask.all()
        layered = EmiAudioModel.from_speech_encoder(tmp_path / family, speech_layers=[1, 2], **TINY_TEMPORAL).eval()
        hidden = reference(x, output_hidden_states=True).hidden_states
        close(layered.embed_audio(x)[0], torch.cat([hidden[1], hidden[2]], dim=-1))


def test_whisper_encoder_takes_log_mel_through_its_feature_extractor(tmp_path):
    from transformers import WhisperFeatureExtractor

    reference = _save_speech_encoder(tmp_path / "whisper", "whisper").get_encoder()
    model = EmiAudioModel.from_speech_encoder(tmp_path / "whisper", **TINY_TEMPORAL).eval()
    extractor = WhisperFeatureExtractor(feature_size=80, chunk_length=1)  # 1 s: the tiny encoder's input
    x = waveform(2.5)
    with torch.inference_mode():
        frames, mask = model.embed_audio(x)
        assert frames.shape == (1, 125, 32) and mask.all()  # 50 Hz: two full windows and a half one
        for start, count in ((0, 50), (16000, 50), (32000, 25)):
            mel = extractor(x[0, start:start + 16000].numpy(), sampling_rate=16000, return_tensors="pt")
            expected = reference(mel.input_features).last_hidden_state[:, :count]
            offset = start // 320
            close(frames[:, offset:offset + count], expected)


def test_two_speech_layers_are_a_learned_softmax_weighted_sum():
    model = EmiAudioModel(tiny_audio_config(speech_encoder_config=dict(TINY_SPEECH), speech_layers=[1, -1]))
    assert model.config.speech_layers == [1, 2] and model.layer_weights.shape == (2,)
    features = torch.randn(2, 7, 64)
    first, second = features[..., :32], features[..., 32:]
    close(model.combine_layers(features), (first + second) / 2)  # zero weights: the plain mean
    with torch.no_grad():
        model.layer_weights.copy_(torch.tensor([0.0, 30.0]))
    close(model.combine_layers(features), second)
    model.train()
    model(audio_features=features, labels=torch.rand(2, 6)).loss.backward()
    assert model.layer_weights.grad is not None and model.layer_weights.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="2 speech layer"):
        model(audio_features=torch.randn(2, 7, 32))


def test_audio_crop_and_options_change_the_fingerprint_and_defaults_do_not(tmp_path):
    import hashlib

    model = EmiAudioModel(tiny_audio_config())
    digest = hashlib.sha256()  # the fingerprint as it was computed before the options existed
    for name, tensor in sorted(model.backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    assert backbone_fingerprint(model) == digest.hexdigest()
    cropped = EmiAudioModel(tiny_audio_config(max_audio_s=1.0))
    cropped.load_state_dict(model.state_dict())
    assert backbone_fingerprint(cropped) != backbone_fingerprint(model)
    with torch.inference_mode():
        frames, _ = cropped.embed_audio(waveform(3.0))
        assert frames.shape[1] == model.embed_audio(waveform(1.0))[0].shape[1]  # only the first second is encoded


# ----------------------------------------------------------------------------------------------------------------------
# Fine-tuning the last blocks
# ----------------------------------------------------------------------------------------------------------------------


def test_trainable_backbone_layers_unfreeze_the_last_blocks_only():
    model = EmiVisualModel(tiny_visual_config(trainable_backbone_layers=1)).train()
    trainable = {name for name, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("layer4.1.") for name in trainable)
    assert not model.backbone.layer1.training and model.backbone.layer4[1].training
    inputs = dict(pixel_values=torch.randn(1, 2, 3, 112, 112), au_features=torch.rand(1, 2, model.config.num_aus),
                  labels=torch.rand(1, 6))
    model(**inputs).loss.backward()
    assert model.backbone.layer4[1].conv2.weight.grad is not None and model.backbone.conv1.weight.grad is None

    audio = EmiAudioModel(tiny_audio_config(speech_encoder_config=dict(TINY_SPEECH), trainable_backbone_layers=1))
    names = {name for name, p in audio.backbone.named_parameters() if p.requires_grad}
    assert names and all(name.startswith("encoder.layers.1.") for name in names)
    frozen = EmiAudioModel(tiny_audio_config())
    assert not any(p.requires_grad for p in frozen.backbone.parameters())


# ----------------------------------------------------------------------------------------------------------------------
# Contracts: features record, training refuses other dims, model card, remote code
# ----------------------------------------------------------------------------------------------------------------------


def test_features_record_the_encoders_and_training_refuses_other_dims():
    visual = EmiVisualModel.from_backbone("torchvision:mobilenet_v2", weights="random", **TINY_TEMPORAL)
    audio = EmiAudioModel(tiny_audio_config(speech_layers=[0, 1], cache_dtype="float16"))
    record = encoder_record(visual, audio)
    assert record["visual"]["backbone"] == "torchvision:mobilenet_v2"
    assert record["visual"]["visual_feature_dim"] == 1280 and len(record["visual"]["fingerprint"]) == 64
    assert record["audio"]["feature_width"] == 64 and record["audio"]["cache_dtype"] == "float16"
    metadata = {"visual_feature_dim": 1280, "audio_feature_dim": 64, "encoders": record}
    check_input_dims(visual.config, metadata, "visual", "the model")
    check_input_dims(audio.config, metadata, "audio", "the model")
    with pytest.raises(ValueError, match=r"512-d face features but the features are 1280-d.*torchvision:mobilenet"):
        check_input_dims(tiny_visual_config(), metadata, "visual", "base_visual")
    with pytest.raises(ValueError, match=r"32-d audio frames .* 64-d.*layers \[0, 1\]"):
        check_input_dims(tiny_audio_config(), metadata, "audio", "base_audio")


def test_model_card_names_the_encoders(tmp_path):
    visual = EmiVisualModel.from_backbone("torchvision:mobilenet_v2", weights="random", **TINY_TEMPORAL)
    phrases = card_encoders(visual.config.to_dict())
    assert "torchvision:mobilenet_v2" in phrases["visual"] and "1280-d" in phrases["visual"]
    audio = card_encoders(tiny_audio_config(speech_layers=[0, 1], speech_encoder_name="org/enc").to_dict())["audio"]
    assert "`org/enc`" in audio and "weighted sum of hidden layers [0, 1]" in audio


def test_remote_code_loads_a_non_default_backbone_without_emi_hf(tmp_path):
    model = EmiVisualModel.from_backbone("torchvision:mobilenet_v2", weights="random", **TINY_TEMPORAL).eval()
    inputs = dict(pixel_values=torch.randn(1, 2, 3, 64, 64), au_features=torch.rand(1, 2, model.config.num_aus))
    with torch.inference_mode():
        expected = model(**inputs).intensities
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "encoders_emi.py").is_file()
    # and no timm: a torchvision backbone must not need it
    close(intensities_without_emi_hf(tmp_path / "ckpt", inputs, tmp_path, "EmiVisualModel",
                                     setup="sys.modules['timm'] = None"), expected)


# ----------------------------------------------------------------------------------------------------------------------
# Done-when: `emi-hf extract` with other encoders, into train.py
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    from emi_hf.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("encoders")
    generate_synthetic_dataset(root / "data", num_train=4, num_valid=2, duration=1.0, fps=10, size=160, seed=5)
    return root


TRAIN_FLAGS = ["--hidden-size", "32", "--num-heads", "2", "--num-layers", "1", "--tcn-dilations", "1,2",
               "--batch-size", "2", "--epochs", "1", "--report-to", "none", "--seed", "0"]


def test_extract_with_mobilenet_and_random_speech_encoder_then_train(tiny_set, tmp_path):
    from torchvision.models import mobilenet_v2

    from emi_hf.cli import main as cli
    from emi_hf.data.store import load_features, load_features_metadata

    torch.save(mobilenet_v2(weights=None).state_dict(), tmp_path / "mobilenet_v2.pth")
    features = tmp_path / "features"
    assert cli(["extract", "--data-dir", str(tiny_set / "data"), "--output", str(features), "--visual-backbone",
                "torchvision:mobilenet_v2", "--visual-weights", str(tmp_path / "mobilenet_v2.pth"),
                "--speech-encoder", "random", "--face-detector", "mediapipe", "--fps", "5", "--no-progress"]) == 0
    metadata = load_features_metadata(features)
    assert metadata["visual_feature_dim"] == 1280 and metadata["encoders"]["visual"]["face_size"] == 224
    assert json.loads((features / "processor" / "processor_config.json").read_text())["face_size"] == 224
    rows = load_features(features)["train"].with_format("numpy")
    assert rows[0]["visual_features"].shape[1] == 1280 and np.mean([r["frame_mask"].mean() for r in rows]) > 0.5
    assert cli(["train", "--features", str(features), "--modality", "visual", "--output-dir",
                str(tmp_path / "run"), *TRAIN_FLAGS]) == 0
    trained = EmiVisualModel.from_pretrained(tmp_path / "run")
    assert trained.config.backbone == "torchvision:mobilenet_v2"
    assert "validation" in json.loads((tmp_path / "run" / "results.json").read_text())


@pytest.fixture(scope="module")
def hubert_features(tiny_set):
    """`emi-hf extract` with a random ResNet18 and a tiny HuBERT folder: two layers, float16, audio cropped."""
    from emi_hf.cli import main as cli

    _save_speech_encoder(tiny_set / "hubert", "hubert")
    features = tiny_set / "hubert_features"
    assert cli(["extract", "--data-dir", str(tiny_set / "data"), "--output", str(features), "--visual-backbone",
                "random", "--speech-encoder", str(tiny_set / "hubert"), "--speech-layers", "1,2",
                "--audio-cache-dtype", "float16", "--max-audio-s", "0.5", "--face-detector", "mediapipe", "--fps",
                "5", "--no-progress"]) == 0
    return features


def test_extract_with_a_hubert_folder_and_two_layers_in_float16_then_train(hubert_features, tmp_path):
    from emi_hf.cli import main as cli
    from emi_hf.data.store import load_features, load_features_metadata

    features = hubert_features
    record = load_features_metadata(features)["encoders"]["audio"]
    assert record["speech_layers"] == [1, 2] and record["max_audio_s"] == 0.5
    split = load_features(features)["train"]
    assert split.features["audio_features"].dtype == "float16"
    frames = split.with_format("numpy")[0]["audio_features"]
    # cropped to 0.5 s = 8000 samples, through the tiny encoder's convolutions (kernels 10, 4; strides 5, 4); two
    # 32-d layers side by side
    assert frames.shape == (((8000 - 10) // 5 + 1 - 4) // 4 + 1, 64)
    assert cli(["train", "--features", str(features), "--modality", "audio", "--output-dir", str(tmp_path / "run"),
                *TRAIN_FLAGS]) == 0
    trained = EmiAudioModel.from_pretrained(tmp_path / "run")
    assert trained.config.speech_layers == [1, 2] and trained.layer_weights.shape == (2,)


def test_end_to_end_fine_tuning_from_raw_clips_trains_the_last_blocks_only(tiny_set, hubert_features, tmp_path):
    features = hubert_features
    # its own process: accelerate keeps one mixed-precision setting per process, and this run uses bf16
    command = [sys.executable, "-m", "emi_hf.cli", "train", "--features", str(features), "--modality", "visual",
               "--raw-data", str(tiny_set / "data"), "--trainable-backbone-layers", "1", "--gradient-checkpointing",
               "--mixed-precision", "bf16", "--output-dir", str(tmp_path / "run"), *TRAIN_FLAGS]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    base = EmiVisualModel.from_pretrained(features / "base_visual")
    tuned = EmiVisualModel.from_pretrained(tmp_path / "run")
    changed = {name for name, value in tuned.backbone.state_dict().items()
               if not torch.equal(value, base.backbone.state_dict()[name])}
    assert changed and all(name.startswith("layer4.1.") for name in changed)  # the last block learned, nothing else
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["training"]["end_to_end"] and results["training"]["trainable_backbone_layers"] == 1


def test_raw_batches_pad_clips_and_mark_missing_audio():
    from emi_hf import EmiProcessor
    from emi_hf.training.end_to_end import collate_raw

    processor = EmiProcessor(face_detector=None, au_backend=None)
    items = [
        {"crops": np.full((3, 112, 112, 3), 255, np.uint8), "au": np.ones((3, 2), np.float32),
         "mask": np.array([1, 0, 1], np.int8), "waveform": np.ones(8000, np.float32), "labels": np.ones(6)},
        {"crops": np.zeros((1, 112, 112, 3), np.uint8), "au": np.zeros((1, 2), np.float32),
         "mask": np.ones(1, np.int8), "waveform": None, "labels": None},
    ]
    visual = collate_raw(items, processor, "visual", 6)
    assert visual["pixel_values"].shape == (2, 3, 3, 112, 112) and visual["frame_mask"].tolist() == [[1, 0, 1],
                                                                                                      [1, 0, 0]]
    assert torch.isnan(visual["labels"][1]).all() and visual["au_features"].shape == (2, 3, 2)
    audio = collate_raw(items, processor, "audio", 6)
    assert audio["input_values"].shape == (2, 8000)
    assert audio["attention_mask"][0].all() and not audio["attention_mask"][1].any()  # no audio: all masked
