"""Backbone provenance (`emi_hf.provenance`): a checkpoint records where each backbone's weights came from, and raw
inputs are refused with a random or missing backbone unless explicitly allowed; training without a base model is an
explicit choice. Tiny models and random features; the raw clip is a real one from ../shared/media."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from helpers import TINY_TEMPORAL, TINY_WAV2VEC2, load_app, tiny_audio_config, tiny_visual_config

from emi_hf import EmiAudioModel, EmiFusionModel, EmiProcessor, EmiVisualModel
from emi_hf.cli import main as cli
from emi_hf.data.random_features import make_feature_dataset
from emi_hf.provenance import (
    BackboneWarning,
    RandomBackboneError,
    check_raw_input_backbones,
    provenance,
)
from emi_hf.training import EmiTrainingArguments, train
from emi_hf.training.models import MissingBaseModelError

TRAIN = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, tcn_dilations=[1, 2], batch_size=8,
             epochs=1, report_to="none", seed=0)
CLIP = "single_face.mp4"


@pytest.fixture(scope="module")
def processor_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("processor")
    EmiProcessor(face_detector="mediapipe", target_fps=5, use_cache=False).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Base models as `emi-hf extract` builds them: a seeded random ResNet18, a ResNet18 whose weights the test saved
    to a .pth file, a speech encoder the test saved to a folder."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from emi_hf.pretrained import build_audio_base, build_visual_base

    folder = tmp_path_factory.mktemp("weights")
    torch.save(EmiVisualModel(tiny_visual_config()).backbone.state_dict(), folder / "resnet18.pth")
    Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC2)).save_pretrained(folder / "speech_encoder")
    random_visual, note = build_visual_base("random", **TINY_TEMPORAL)
    assert "random weights (seed 0)" in note
    file_visual, _ = build_visual_base(folder / "resnet18.pth", **TINY_TEMPORAL)
    file_audio, _ = build_audio_base(folder / "speech_encoder", **TINY_TEMPORAL)
    return {"random_visual": random_visual, "file_visual": file_visual, "file_audio": file_audio, "folder": folder}


def _features(folder, processor_dir, base_models=None):
    return make_feature_dataset(folder, num_train=16, num_valid=8, processor_dir=processor_dir,
                                base_models=base_models)


def test_base_models_record_where_their_weights_came_from(bases):
    random_record = bases["random_visual"].config.backbone_provenance
    assert random_record["kind"] == "random" and random_record["seed"] == 0 and len(random_record["fingerprint"]) == 64
    visual = bases["file_visual"].config.backbone_provenance
    assert visual["kind"] == "file" and visual["source"] == str((bases["folder"] / "resnet18.pth").resolve())
    audio = bases["file_audio"].config.backbone_provenance
    assert audio["kind"] == "file" and audio["source"] == str((bases["folder"] / "speech_encoder").resolve())
    # two seeded random bases are the same weights: the same fingerprint
    from emi_hf.pretrained import build_visual_base

    again, _ = build_visual_base("random", **TINY_TEMPORAL)
    assert again.config.backbone_provenance["fingerprint"] == random_record["fingerprint"]


def test_training_without_a_base_model_is_refused_unless_explicit_and_its_checkpoint_refuses_raw_video(
        tmp_path, processor_dir, media_dir, capsys):
    features = _features(tmp_path / "features", processor_dir)  # no base_visual/ (as after import-features)
    with pytest.raises(MissingBaseModelError) as refused:
        train(EmiTrainingArguments(features=str(features), modality="visual", output_dir=str(tmp_path / "x"), **TRAIN))
    message = str(refused.value)
    assert str(features / "base_visual") in message and "--no-base-model" in message and "--base-model" in message
    assert not (tmp_path / "x" / "config.json").exists()
    # the command line says it in one line too
    with pytest.raises(SystemExit):
        cli(["train", "--features", str(features), "--modality", "visual", "--output-dir", str(tmp_path / "x"),
             "--report-to", "none", "--epochs", "1"])
    assert "--no-base-model" in capsys.readouterr().err

    run = tmp_path / "features_only"
    results = train(EmiTrainingArguments(features=str(features), modality="visual", output_dir=str(run),
                                      no_base_model=True, **TRAIN))
    assert "none (--no-base-model)" in results["training"]["model_source"]
    saved = json.loads((run / "config.json").read_text())["backbone_provenance"]
    assert saved["kind"] == "none" and saved["source"] == str(features)

    clip = str(media_dir / CLIP)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli(["predict", clip, "--model", str(run)])
    error = capsys.readouterr().err
    assert "face backbone: none (a features-only model" in error  # the reason
    assert "--allow-random-backbones" in error and "without --no-base-model" in error  # the fixes
    assert cli(["predict", clip, "--model", str(run), "--json", "--allow-random-backbones"]) == 0
    shown = capsys.readouterr()
    assert len(json.loads(shown.out)[0]["intensities"]) == 6
    assert "emi-hf: warning: face backbone: none" in shown.err and "mean nothing" in shown.err
    with pytest.raises(SystemExit):  # emi-hf stream refuses it too
        cli(["stream", "--model", str(run), "--video", clip])
    assert "--allow-random-backbones" in capsys.readouterr().err

    with pytest.raises(ValueError, match="opposite"):
        train(EmiTrainingArguments(features=str(features), modality="visual", output_dir=str(tmp_path / "y"),
                                no_base_model=True, base_model=str(run), **TRAIN))


def test_a_seeded_random_backbone_is_refused_and_one_loaded_from_files_is_accepted(
        tmp_path, bases, processor_dir, media_dir):
    from emi_hf.inference import load_for_inference, predict_clips

    random_features = _features(tmp_path / "random", processor_dir, {"visual": bases["random_visual"]})
    file_features = _features(tmp_path / "files", processor_dir,
                              {"visual": bases["file_visual"], "audio": bases["file_audio"]})
    for name, features, modality in (("random_visual", random_features, "visual"),
                                     ("file_visual", file_features, "visual"), ("file_audio", file_features, "audio")):
        # (--no-base-model only matters where the features have no base model: this one is kept)
        train(EmiTrainingArguments(features=str(features), modality=modality, output_dir=str(tmp_path / name),
                                no_base_model=name == "file_audio", **TRAIN))
        # the trained checkpoint carries its base model's record
        saved = json.loads((tmp_path / name / "config.json").read_text())["backbone_provenance"]
        assert saved == bases[name].config.backbone_provenance
    clip = str(media_dir / CLIP)

    with pytest.raises(RandomBackboneError, match=r"RANDOM weights \(seed 0.*--allow-random-backbones") as refused:
        load_for_inference(tmp_path / "random_visual")
    assert list(refused.value.problems) == ["visual"]
    model = EmiVisualModel.from_pretrained(tmp_path / "random_visual").eval()
    processor = EmiProcessor.from_pretrained(tmp_path / "random_visual")
    with pytest.raises(RandomBackboneError):  # predict_clips checks on its own
        predict_clips(model, processor, [clip])
    with pytest.warns(BackboneWarning, match="RANDOM weights"):
        (prediction,) = predict_clips(model, processor, [clip], allow_random_backbones=True)
    assert len(prediction.intensities) == 6

    fusion = EmiFusionModel.from_unimodal(visual=tmp_path / "file_visual", audio=tmp_path / "file_audio")
    fusion.save_pretrained(tmp_path / "fusion")
    EmiProcessor.from_pretrained(processor_dir).save_pretrained(tmp_path / "fusion")
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackboneWarning)  # nothing to warn about
        model, processor = load_for_inference(tmp_path / "fusion")
        (prediction,) = predict_clips(model, processor, [clip])
    assert {k: v["kind"] for k, v in provenance(model).items()} == {"visual": "file", "audio": "file"}
    assert prediction.audio_present and len(prediction.intensities) == 6


def test_the_record_round_trips_through_save_and_load_and_appears_in_the_card(tmp_path, bases):
    from emi_hf.hub import render_model_card
    from emi_hf.modeling_ensemble_emi import EmiEnsembleModel

    visual, audio = bases["random_visual"], bases["file_audio"]
    fusion = EmiFusionModel.from_unimodal(visual=visual, audio=audio)
    fusion.save_pretrained(tmp_path / "fusion")
    loaded = EmiFusionModel.from_pretrained(tmp_path / "fusion")
    assert loaded.config.visual_config.backbone_provenance == visual.config.backbone_provenance
    assert loaded.config.audio_config.backbone_provenance == audio.config.backbone_provenance
    saved = json.loads((tmp_path / "fusion" / "config.json").read_text())
    assert saved["visual_config"]["backbone_provenance"]["kind"] == "random"
    card = str(render_model_card(tmp_path / "fusion", "user/emi-fusion"))
    assert "## Backbone weights" in card and "face backbone: RANDOM weights (seed 0" in card
    assert f"speech encoder: weights loaded from `{(bases['folder'] / 'speech_encoder').resolve()}`" in card
    assert "refuse raw inputs with it" in card

    audio.save_pretrained(tmp_path / "audio")
    card = str(render_model_card(tmp_path / "audio", "user/emi-audio"))
    assert "speech encoder: weights loaded from" in card and "refuse raw inputs" not in card
    ensemble = EmiEnsembleModel.from_members([visual, visual])
    ensemble.save_pretrained(tmp_path / "ensemble")
    records = provenance(EmiEnsembleModel.from_pretrained(tmp_path / "ensemble"))
    assert sorted(records) == ["member 0 visual", "member 1 visual"]
    assert all(r == visual.config.backbone_provenance for r in records.values())


def test_checkpoints_without_a_record_warn_and_derive_what_they_can():
    """Earlier versions wrote no record: such checkpoints keep scoring raw inputs, with a warning for what is
    unknown; an encoder named in the config (loaded by name) is derived."""
    old = EmiFusionModel.from_unimodal(visual=EmiVisualModel(tiny_visual_config()),
                                       audio=EmiAudioModel(tiny_audio_config(speech_encoder_name="org/encoder")))
    records = provenance(old)
    assert records["visual"]["kind"] == "unknown"
    assert records["audio"] == {"kind": "pretrained", "source": "org/encoder", "derived": True}
    with pytest.warns(BackboneWarning, match="face backbone: unknown origin") as shown:
        check = check_raw_input_backbones(old)
    assert len(shown) == 1 and not check.allowed_random
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackboneWarning)
        assert check_raw_input_backbones(old) is check  # checked once per model object


def test_the_streamer_and_the_demo_refuse_a_random_backbone_unless_allowed(tmp_path, bases, monkeypatch):
    from emi_hf.streaming import EmiStreamer

    model = EmiFusionModel.from_unimodal(visual=bases["random_visual"], audio=bases["file_audio"]).eval()
    processor = EmiProcessor(face_detector=None, au_backend=None, target_fps=5, use_cache=False)
    with pytest.raises(RandomBackboneError, match="face backbone: RANDOM"):
        EmiStreamer(model, processor)
    with pytest.warns(BackboneWarning):
        EmiStreamer(model, processor, allow_random_backbones=True).close()

    model.save_pretrained(tmp_path / "model")
    EmiProcessor(face_detector="mediapipe", target_fps=5, use_cache=False).save_pretrained(tmp_path / "model")
    app = load_app()
    monkeypatch.delenv("EMI_HF_ALLOW_RANDOM_BACKBONES", raising=False)
    engine = app.EmiDemo(tmp_path / "model")
    assert not engine.ready and "RANDOM weights (seed 0" in engine.load_error
    assert "EMI_HF_ALLOW_RANDOM_BACKBONES=1" in engine.load_error
    monkeypatch.setenv("EMI_HF_ALLOW_RANDOM_BACKBONES", "1")
    with pytest.warns(BackboneWarning):
        engine = app.EmiDemo(tmp_path / "model")
    assert engine.ready and any("RANDOM weights" in note for note in engine.backbone_notes)


def test_the_quickstart_step_scores_a_random_backbone_and_says_so(tmp_path, bases, media_dir, capsys):
    from emi_hf.quickstart import predict_one_clip

    model = EmiFusionModel.from_unimodal(visual=bases["random_visual"], audio=bases["file_audio"])
    model.save_pretrained(tmp_path / "fusion")
    EmiProcessor(face_detector="mediapipe", target_fps=5, use_cache=False).save_pretrained(tmp_path / "fusion")
    prediction, check = predict_one_clip(tmp_path / "fusion", media_dir / CLIP)
    assert len(prediction.intensities) == 6 and check.allowed_random
    assert "warning: face backbone: RANDOM weights (seed 0" in capsys.readouterr().out
