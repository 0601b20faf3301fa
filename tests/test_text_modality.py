"""The text modality and fusion over any set of modalities: EmiTextModel, late fusion of every subset with its
per-clip fallback, feature-level fusion with modality dropout, the checkpoint of the previous version, extraction
with a text stage, and training a text model on it."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    TINY_BERT,
    old_checkpoint_inputs,
    old_checkpoints,
    tiny_audio_config,
    tiny_text_config,
    tiny_visual_config,
)
from transformers import AutoModel

from emi_hf import EmiFusionConfig, EmiFusionModel, EmiTextConfig, EmiTextModel
from emi_hf.modeling_fusion_emi import drop_modalities, fuse_modalities

FIXTURES = Path(__file__).parent / "fixtures"


def _text_inputs(batch=3, tokens=7, empty_row=2):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 64, (batch, tokens), generator=generator)
    mask = (torch.arange(tokens)[None] < torch.tensor([[tokens], [4], [0]])[:batch]).long()
    return ids, mask


# ----------------------------------------------------------------------------------------------------------------------
# EmiTextModel
# ----------------------------------------------------------------------------------------------------------------------


def test_text_model_from_ids_equals_cached_features_and_empty_transcript_is_missing(tmp_path):
    torch.manual_seed(0)
    model = EmiTextModel(tiny_text_config()).eval()
    ids, mask = _text_inputs()
    with torch.no_grad():
        from_ids = model(input_ids=ids, text_mask=mask, output_hidden_states=True, output_attentions=True)
        features, feature_mask = model.embed_text(ids, mask)
        cached = model(text_features=features, text_mask=feature_mask)
    torch.testing.assert_close(from_ids.intensities, cached.intensities, equal_nan=True)
    assert from_ids.modality_mask.tolist() == [True, True, False]  # the empty transcript: a missing modality
    assert torch.isnan(from_ids.intensities[2]).all() and torch.isfinite(from_ids.intensities[:2]).all()
    assert len(from_ids.hidden_states) == 1 + 2 + 1 and len(from_ids.attentions) == 1  # embedding, TCN x2, layer
    assert from_ids.pooler_output.shape == (3, 32) and not from_ids.pooler_output[2].any()
    # A padded clip predicts as the unpadded one.
    with torch.no_grad():
        alone = model(input_ids=ids[1:2, :4], text_mask=mask[1:2, :4])
    torch.testing.assert_close(alone.intensities, from_ids.intensities[1:2], atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="attention_mask"):
        model(input_ids=ids, attention_mask=mask)  # strict arguments: the token mask is text_mask
    model.save_pretrained(tmp_path / "text")
    loaded = AutoModel.from_pretrained(tmp_path / "text").eval()
    assert type(loaded) is EmiTextModel and loaded.config.text_encoder_config.model_type == "bert"
    with torch.no_grad():
        again = loaded(input_ids=ids, text_mask=mask)
    torch.testing.assert_close(again.intensities, from_ids.intensities, atol=0, rtol=0, equal_nan=True)


def test_text_model_from_a_pretrained_encoder_folder_keeps_its_weights(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    encoder = BertModel(BertConfig(**{k: v for k, v in TINY_BERT.items() if k != "model_type"}))
    encoder.save_pretrained(tmp_path / "bert")
    model = EmiTextModel.from_text_encoder(tmp_path / "bert", **{"hidden_size": 32, "num_attention_heads": 2})
    assert model.config.text_feature_dim == 24 and model.config.text_encoder_name == str(tmp_path / "bert")
    for name, value in encoder.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[name], value, atol=0, rtol=0)
    assert not any(p.requires_grad for p in model.backbone.parameters())  # frozen by default
    with pytest.raises(ValueError, match="text_feature_dim"):
        EmiTextConfig(text_encoder_config=dict(TINY_BERT), text_feature_dim=32)


# ----------------------------------------------------------------------------------------------------------------------
# Late fusion over any set, and its per-clip fallback
# ----------------------------------------------------------------------------------------------------------------------


def test_three_way_fusion_is_the_weighted_mean_and_falls_back_for_every_subset_of_missing_modalities():
    torch.manual_seed(0)
    names = ["visual", "audio", "text"]
    predictions = {m: torch.rand(8, 6) for m in names}
    raw = {m: torch.rand(6) for m in names}
    weights = {m: raw[m] / sum(raw.values()) for m in names}  # on the simplex per emotion
    everything = {m: torch.ones(8, dtype=torch.bool) for m in names}
    fused = fuse_modalities(predictions, everything, weights)
    torch.testing.assert_close(fused, sum(weights[m] * predictions[m] for m in names))
    for size in range(0, 4):
        for missing in itertools.combinations(names, size):
            masks = {m: torch.full((8,), m not in missing) for m in names}
            shown = {m: torch.where(masks[m][:, None], predictions[m], torch.nan) for m in names}
            result = fuse_modalities(shown, masks, weights)
            present = [m for m in names if m not in missing]
            if not present:
                assert torch.isnan(result).all()
                continue
            total = sum(weights[m] for m in present)
            torch.testing.assert_close(result, sum(weights[m] / total * predictions[m] for m in present))
    # Weights of 0 for every present modality of an emotion: their plain mean.
    zero_text = {"visual": torch.ones(6), "audio": torch.zeros(6), "text": torch.zeros(6)}
    masks = {"visual": torch.zeros(8, dtype=torch.bool), "audio": torch.ones(8, dtype=torch.bool),
             "text": torch.ones(8, dtype=torch.bool)}
    torch.testing.assert_close(fuse_modalities(predictions, masks, zero_text),
                               (predictions["audio"] + predictions["text"]) / 2)


@pytest.mark.parametrize("modalities", [("visual",), ("audio", "text"), ("visual", "text"), ("visual", "audio", "text")])
def test_fusion_model_of_any_subset_round_trips(modalities, tmp_path):
    builders = {"visual": tiny_visual_config, "audio": tiny_audio_config, "text": tiny_text_config}
    torch.manual_seed(0)
    config = EmiFusionConfig(**{f"{m}_config": builders[m]() for m in modalities})
    assert config.modalities == list(modalities)
    assert all(abs(sum(config.modality_weights[m][i] for m in modalities) - 1) < 1e-9 for i in range(6))
    model = EmiFusionModel(config).eval()
    ids, mask = _text_inputs()
    generator = torch.Generator().manual_seed(2)
    inputs = {"visual_features": torch.randn(3, 5, 512, generator=generator), "au_features": torch.rand(3, 5, 13),
              "frame_mask": torch.tensor([[1] * 5, [0] * 5, [1] * 5]), "audio_features": torch.randn(3, 7, 32),
              "audio_mask": torch.tensor([[1] * 7, [1] * 7, [0] * 7]), "input_ids": ids, "text_mask": mask}
    with torch.no_grad():
        out = model(**inputs)
    for modality in ("visual", "audio", "text"):
        assert (getattr(out, f"{modality}_intensities") is None) == (modality not in modalities)
    expected = fuse_modalities({m: getattr(out, f"{m}_intensities") for m in modalities},
                               {m: getattr(out, f"{m}_mask") for m in modalities}, config.modality_weights)
    torch.testing.assert_close(out.intensities, expected, equal_nan=True)
    model.save_pretrained(tmp_path / "fusion")
    written = json.loads((tmp_path / "fusion" / "config.json").read_text())
    assert sorted(k for k in written if k.endswith("_config")) == sorted(f"{m}_config" for m in modalities)
    assert ("fusion_weights" in written) == (list(modalities) == ["visual", "audio"])
    again = EmiFusionModel.from_pretrained(tmp_path / "fusion").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).intensities, out.intensities, atol=0, rtol=0, equal_nan=True)


def test_modality_weights_must_be_on_the_simplex():
    with pytest.raises(ValueError, match="simplex"):
        EmiFusionConfig(visual_config=tiny_visual_config(), text_config=tiny_text_config(),
                        modality_weights={"visual": [0.5] * 6, "text": [0.6] * 6})
    with pytest.raises(ValueError, match="one entry per modality"):
        EmiFusionConfig(visual_config=tiny_visual_config(), text_config=tiny_text_config(),
                        modality_weights={"visual": [1.0] * 6})
    with pytest.raises(ValueError, match="visual \\+ audio"):
        EmiFusionConfig(visual_config=tiny_visual_config(), text_config=tiny_text_config()).fusion_weights = [0.5] * 6


def test_fitted_three_way_weights_prefer_the_informative_modalities():
    from emi_hf.training.fusion import optimal_modality_weights, simplex_grid

    assert np.allclose(simplex_grid(3).sum(1), 1) and len(simplex_grid(3)) == 51 * 52 // 2
    rng = np.random.default_rng(0)
    labels = rng.random((200, 6))
    predictions = {"visual": labels + 0.3 * rng.standard_normal((200, 6)),
                   "audio": rng.random((200, 6)),  # noise only
                   "text": labels + 0.3 * rng.standard_normal((200, 6))}
    weights = optimal_modality_weights(predictions, labels)
    for i in range(6):
        assert weights["audio"][i] <= 0.1 and weights["visual"][i] >= 0.25 and weights["text"][i] >= 0.25
        assert abs(weights["visual"][i] + weights["audio"][i] + weights["text"][i] - 1) < 1e-9


# ----------------------------------------------------------------------------------------------------------------------
# Feature-level fusion
# ----------------------------------------------------------------------------------------------------------------------


def test_modality_dropout_never_drops_every_modality_nor_adds_one():
    torch.manual_seed(0)
    present = torch.rand(2000, 3) < 0.7
    kept = drop_modalities(present, 0.5)
    assert not (kept & ~present).any()  # never a modality the clip lacks
    assert (kept.any(1) == present.any(1)).all()  # never all of a clip's
    assert 0.3 < (kept.sum() / present.sum()).item() < 0.8


def test_feature_fusion_handles_a_missing_modality_and_trains_jointly():
    torch.manual_seed(0)
    config = EmiFusionConfig(visual_config=tiny_visual_config(), text_config=tiny_text_config(),
                             fusion_type="feature", feature_fusion_hidden_size=16)
    model = EmiFusionModel(config)
    ids, mask = _text_inputs()
    inputs = {"visual_features": torch.randn(3, 5, 512), "au_features": torch.rand(3, 5, 13),
              "frame_mask": torch.tensor([[1] * 5, [0] * 5, [0] * 5]), "input_ids": ids, "text_mask": mask}
    model.eval()
    with torch.no_grad():
        out = model(**inputs)
    assert torch.isfinite(out.intensities[:2]).all()  # visual alone, text alone
    assert torch.isnan(out.intensities[2]).all()  # neither: no face, empty transcript
    labels = torch.rand(3, 6)
    model.train()
    loss = model(**inputs, labels=labels).loss
    loss.backward()
    head = model.fusion_head.mlp[0].weight.grad
    assert head is not None and head.abs().sum() > 0
    assert model.visual.head.frame_head.weight.grad.abs().sum() > 0  # trained jointly, through the pooled embedding
    assert model.text.backbone.embeddings.word_embeddings.weight.grad is None  # the encoder stays frozen


# ----------------------------------------------------------------------------------------------------------------------
# Checkpoints of the previous version
# ----------------------------------------------------------------------------------------------------------------------


def test_two_modality_checkpoint_of_the_previous_version_gives_its_outputs(tmp_path):
    """The config.json of a tiny visual + audio fusion saved by commit 57ef453 (the version before the text
    modality), weights drawn by a fixed rule (face backbone included), and the outputs that version computed from
    them on cached features and on raw video (kept as hex floats in tests/fixtures, written by
    tests/fixtures/old_checkpoints.py with the 57ef453 code): the new code loads the folder and gives the same
    outputs, bit for bit."""
    fixtures = old_checkpoints()
    old = json.loads((FIXTURES / "fusion_checkpoint_57ef453.json").read_text())
    assert old["commit"] == "57ef453" and any(k.startswith("visual.backbone.conv1") for k in old["backbone_shapes"])
    model = EmiFusionModel.from_pretrained(fixtures.checkpoint_folder(old, tmp_path)).eval()
    assert model.config.modalities == ["visual", "audio"] and model.config.text_config is None
    assert model.config.fusion_weights == old["config"]["fusion_weights"]
    cached = old_checkpoint_inputs()
    fixtures.assert_reproduces(model, old, cached)
    model.save_pretrained(tmp_path / "again")  # and it is written in a form that version reads (fusion_weights)
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["fusion_weights"] == old["config"]["fusion_weights"] and "text_config" not in again


# ----------------------------------------------------------------------------------------------------------------------
# Extraction with a text stage, training a text model, three-way fusion, prediction with the transcript
# ----------------------------------------------------------------------------------------------------------------------

TRAIN_FLAGS = ["--hidden-size", "32", "--num-heads", "2", "--num-layers", "1", "--tcn-dilations", "1,2",
               "--batch-size", "2", "--epochs", "1", "--report-to", "none", "--seed", "0"]


@pytest.fixture(scope="module")
def text_features(tmp_path_factory):
    """`emi-hf extract` of a tiny synthetic set with random backbones, its transcripts.csv, voice activity and a
    word-level text encoder built offline."""
    from emi_hf.cli import main as cli
    from emi_hf.data.synthetic import generate_synthetic_dataset
    from emi_hf.text import build_word_text_encoder, read_transcripts

    root = tmp_path_factory.mktemp("text")
    data = root / "data"
    generate_synthetic_dataset(data, num_train=4, num_valid=3, duration=1.0, fps=10, size=160, seed=5)
    # One clip's transcript is empty: a missing modality, not an error.
    rows = (data / "transcripts.csv").read_text().splitlines()
    rows[1] = rows[1].split(",")[0] + ",,synthetic"
    (data / "transcripts.csv").write_text("\n".join(rows) + "\n")
    table = read_transcripts(data / "transcripts.csv")
    build_word_text_encoder([table.lookup(f"{i:05d}.mp4").text for i in range(7)], root / "encoder", hidden_size=24,
                            num_attention_heads=2)
    features = root / "features"
    assert cli(["extract", "--data-dir", str(data), "--output", str(features), "--visual-backbone", "random",
                "--speech-encoder", "random", "--allow-random-backbones", "--face-detector", "mediapipe", "--fps",
                "5", "--no-progress", "--text-encoder", str(root / "encoder"), "--transcripts",
                str(data / "transcripts.csv")]) == 0
    return root


def test_extraction_stores_transcripts_voice_activity_and_text_features(text_features):
    from emi_hf.data.store import load_features, load_features_metadata

    features = text_features / "features"
    metadata = load_features_metadata(features)
    assert metadata["text_feature_dim"] == 24 and metadata["text_base_model"] == "base_text"
    assert metadata["text"]["transcripts"].endswith("transcripts.csv") and metadata["text"]["vad"] is not None
    assert (features / "base_text" / "text_tokenizer" / "tokenizer.json").is_file()
    rows = load_features(features)["train"].with_format("numpy")
    first = rows[0]
    assert first["transcript"] == "" and not first["text_mask"].any()  # the emptied transcript
    assert all(r["text_mask"].sum() > 3 and r["text_features"].shape[1] == 24 for r in list(rows)[1:])
    assert all(r["audio_speech_mask"].shape == r["audio_mask"].shape for r in rows)
    assert all(r["speech_segments"].ndim == 2 and r["speech_segments"].shape[1] == 2 for r in rows)


def test_text_training_three_way_fusion_and_prediction_with_the_transcript(text_features, tmp_path, capsys):
    from emi_hf.cli import main as cli

    features, data = text_features / "features", text_features / "data"
    for modality in ("visual", "audio", "text"):
        assert cli(["train", "--features", str(features), "--modality", modality, "--output-dir",
                    str(tmp_path / modality), *TRAIN_FLAGS]) == 0
    assert (tmp_path / "text" / "text_tokenizer" / "tokenizer.json").is_file()
    assert cli(["train", "--features", str(features), "--modality", "fusion", "--output-dir", str(tmp_path / "fusion"),
                "--visual-model", str(tmp_path / "visual"), "--audio-model", str(tmp_path / "audio"),
                "--text-model", str(tmp_path / "text"), *TRAIN_FLAGS]) == 0
    results = json.loads((tmp_path / "fusion" / "results.json").read_text())
    assert sorted(results["unimodal"]) == ["audio", "text", "visual"]
    assert sorted(results["modality_weights"]) == ["audio", "text", "visual"]
    fusion = EmiFusionModel.from_pretrained(tmp_path / "fusion")
    assert fusion.config.modalities == ["visual", "audio", "text"]
    from emi_hf.hub import render_model_card

    card = str(render_model_card(tmp_path / "fusion", "user/emi-three-way"))
    assert "visual, audio, text (the face, the voice, the transcript)" in card and "Text branch" in card
    assert "| Emotion | visual | audio | text |" in card and "- transcript" in card  # weights table, tags
    text_card = str(render_model_card(tmp_path / "text", "user/emi-text"))
    assert "text encoder `" in text_card and "read from a transcripts file" in text_card
    # The text card's usage snippet, as written there (the local run folder in place of the repository id).
    from transformers import AutoTokenizer

    assert 'AutoTokenizer.from_pretrained("user/emi-text", subfolder="text_tokenizer")' in text_card
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "text"), subfolder="text_tokenizer")
    tokens = tokenizer(["what a wonderful surprise"], padding=True, return_tensors="pt")
    text_model = EmiTextModel.from_pretrained(tmp_path / "text")
    assert text_model(input_ids=tokens["input_ids"], text_mask=tokens["attention_mask"]).intensities.shape == (1, 6)
    capsys.readouterr()
    clip = data / "videos" / "00001.mp4"
    assert cli(["predict", str(clip), "--model", str(tmp_path / "fusion"), "--transcripts",
                str(data / "transcripts.csv"), "--json", "--allow-random-backbones"]) == 0  # extracted with random ones
    (shown,) = json.loads(capsys.readouterr().out)
    from emi_hf.text import read_transcripts

    assert shown["transcript"] == read_transcripts(data / "transcripts.csv").lookup(clip).text
    assert set(shown["text"]) == set(shown["intensities"]) and "visual" in shown and "audio" in shown
    # Without a transcript source the error says what to pass.
    with pytest.raises(SystemExit):
        cli(["predict", str(clip), "--model", str(tmp_path / "text")])
    assert "were read from a file: pass --transcripts FILE" in capsys.readouterr().err


def test_a_transcript_file_without_the_clip_fails_that_clip_only(text_features, tmp_path):
    from emi_hf.data.text_features import TextStage
    from emi_hf.text.transcript import TranscriptionError

    (tmp_path / "some.csv").write_text("Filename,text\n00000,hello there\n")
    stage = TextStage(transcripts=tmp_path / "some.csv", vad=False)
    assert stage.transcript(tmp_path / "00000.mp4", "00000").text == "hello there"
    with pytest.raises(TranscriptionError, match="some.csv.*00004.*--asr-model"):
        stage.transcript(tmp_path / "00004.mp4", "00004")


def test_remote_code_loads_a_three_way_fusion_without_emi_hf(tmp_path):
    from helpers import intensities_without_emi_hf

    torch.manual_seed(0)
    config = EmiFusionConfig(visual_config=tiny_visual_config(), audio_config=tiny_audio_config(),
                             text_config=tiny_text_config(), fusion_type="feature", feature_fusion_hidden_size=8)
    model = EmiFusionModel(config).eval()
    ids, mask = _text_inputs()
    inputs = {"visual_features": torch.randn(3, 4, 512), "au_features": torch.rand(3, 4, 13),
              "audio_features": torch.randn(3, 6, 32), "input_ids": ids, "text_mask": mask}
    with torch.no_grad():
        expected = model(**inputs).intensities
    model.save_pretrained(tmp_path / "ckpt")
    assert {"modeling_fusion_emi.py", "modeling_base_emi.py", "modeling_emi.py"} <= {
        p.name for p in (tmp_path / "ckpt").glob("*.py")}
    out = intensities_without_emi_hf(tmp_path / "ckpt", inputs, tmp_path, "EmiFusionModel")
    torch.testing.assert_close(out, expected, equal_nan=True)


def test_speech_mask_marks_the_speech_and_can_mask_non_speech_audio(media_dir):
    """silero-vad on the real speech of debate_5s_16k.wav followed by 2 s of digital silence, on wav2vec2's 50 Hz
    audio frame grid: the speech frames are marked, the silent ones are not, and `mask_non_speech_audio` keeps
    only the speech frames."""
    from emi_hf.data.text_features import TextStage
    from emi_hf.media.decoding import decode_audio

    speech, _ = decode_audio(media_dir / "debate_5s_16k.wav", sampling_rate=16000)
    waveform = np.concatenate([speech, np.zeros(32000, np.float32)])
    frames = int(len(waveform) / 320)
    audio_mask = np.ones(frames, np.int8)
    stage = TextStage(mask_non_speech_audio=True)
    fields = stage.clip_fields(media_dir / "debate_5s_16k.wav", "debate", waveform, audio_mask)
    speech_frames = int(len(speech) / 320)
    assert fields["transcript"] == "" and "text_features" not in fields  # voice activity only, no text encoder
    assert fields["speech_segments"].shape[1] == 2 and fields["speech_segments"][-1, 1] <= len(speech) / 16000 + 0.1
    start, end = fields["speech_segments"][0]
    inside = fields["audio_speech_mask"][int(start * 50) + 1:int(end * 50) - 1]
    assert len(inside) > 25 and inside.all()  # at least half a second of speech, every frame of it marked
    assert not fields["audio_speech_mask"][speech_frames + 10:].any()  # the silence
    masked = stage.masked_audio(audio_mask, fields)
    assert masked.sum() == fields["audio_speech_mask"].sum() < audio_mask.sum()
    assert (TextStage(vad=True).masked_audio(audio_mask, fields) == audio_mask).all()  # off by default


def test_a_fusion_with_text_without_text_inputs_scores_from_the_other_modalities():
    torch.manual_seed(0)
    model = EmiFusionModel(EmiFusionConfig(visual_config=tiny_visual_config(), text_config=tiny_text_config())).eval()
    with torch.no_grad():
        out = model(visual_features=torch.randn(2, 4, 512), au_features=torch.rand(2, 4, 13))
    assert out.text_mask.tolist() == [False, False] and torch.isnan(out.text_intensities).all()
    torch.testing.assert_close(out.intensities, out.visual_intensities)
    with pytest.raises(ValueError, match="exactly one"):  # a text model alone still needs its inputs
        EmiTextModel(tiny_text_config())(text_mask=torch.ones(1, 3))


def test_feature_fusion_training_loss_trains_the_models_own_heads():
    """The training loop's loss (`training_loss`, the model's own) of a feature-level fusion adds the models' own
    losses (`unimodal_loss_weight`), so their heads get gradients, not only the fusion head."""
    from accelerate import Accelerator

    from emi_hf.training.loop import training_loss

    torch.manual_seed(0)
    model = EmiFusionModel(EmiFusionConfig(visual_config=tiny_visual_config(), text_config=tiny_text_config(),
                                           fusion_type="feature", modality_dropout=0.0)).train()
    _, mask = _text_inputs()
    batch = {"visual_features": torch.randn(3, 5, 512), "au_features": torch.rand(3, 5, 13),
             "text_features": torch.randn(3, 7, 24), "text_mask": mask, "labels": torch.rand(3, 6)}
    accelerator = Accelerator(cpu=True)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    model.config.unimodal_loss_weight = 0.0
    fused_only = model(**inputs, labels=batch["labels"]).loss
    model.config.unimodal_loss_weight = 0.5
    loss = training_loss(accelerator, model, batch, "fusion")
    assert loss > fused_only
    loss.backward()
    for head in (model.visual.head.frame_head, model.text.head.frame_head, model.fusion_head.mlp[0]):
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_text_ensembles_and_hub_uploads_carry_the_tokenizer(text_features, tmp_path):
    from emi_hf.cli import main as cli
    from emi_hf.hub import _model_files
    from emi_hf.inference import TextSide, load_for_inference, model_modalities, predict_clips

    features, data = text_features / "features", text_features / "data"
    assert cli(["train", "--features", str(features), "--modality", "text", "--output-dir", str(tmp_path / "ens"),
                "--seeds", "2", *TRAIN_FLAGS]) == 0
    assert (tmp_path / "ens" / "text_tokenizer" / "tokenizer.json").is_file()
    model, processor = load_for_inference(tmp_path / "ens")
    assert model.config.model_type == "emi_ensemble" and model_modalities(model) == ["text"]
    (prediction,) = predict_clips(model, processor, [data / "videos" / "00002.mp4"],
                                  text_side=TextSide(model, transcripts=data / "transcripts.csv"))
    assert prediction.transcript and set(prediction.modality_intensities) == {"text"}
    uploaded = {path.relative_to(tmp_path / "ens").as_posix() for path in _model_files(tmp_path / "ens")}
    assert "text_tokenizer/tokenizer.json" in uploaded and "model.safetensors" in uploaded


def test_text_token_limit():
    from transformers import BertConfig, RobertaConfig

    from emi_hf.text.encoder import default_max_length

    class Unbounded:
        model_max_length = int(1e30)

    class Short:
        model_max_length = 128

    assert default_max_length(BertConfig(max_position_embeddings=8192), Unbounded()) == 512
    assert default_max_length(RobertaConfig(max_position_embeddings=514), Unbounded()) == 512  # 2 offset positions
    assert default_max_length(RobertaConfig(max_position_embeddings=130), Unbounded()) == 128
    assert default_max_length(BertConfig(), Short()) == 128


def test_review_fixes_field_order_merge_check_and_no_transcript_cache(tmp_path):
    from emi_hf.data.extraction import ClipFeatures, _generate_rows
    from emi_hf.inference import TextSide
    from emi_hf.modeling_emi import EmiRegressionOutput
    from emi_hf.text import build_word_tokenizer

    # pooler_output is the last field: tuple outputs keep the indices of earlier versions.
    assert list(EmiRegressionOutput.__dataclass_fields__)[-1] == "pooler_output"
    # A clip file made without the text columns is refused by a merge that writes them, naming the file.
    clip = ClipFeatures("00001", np.zeros((1, 512), np.float32), np.zeros((1, 13), np.float32), np.ones(1, np.int8),
                        np.zeros(1, np.float32), np.zeros((1, 32), np.float32), np.ones(1, np.int8),
                        np.zeros(6, np.float32), 1.0, True)
    clip.save(tmp_path / "00001.npz")
    columns = tuple(clip.columns()) + ("transcript", "text_features", "text_mask")
    with pytest.raises(ValueError, match="00001.npz.*rerun"):
        list(_generate_rows([str(tmp_path / "00001.npz")], columns))
    # The demo's text side writes no transcript to the cache.
    tokenizer = build_word_tokenizer(["hello there"], tmp_path / "model" / "text_tokenizer")
    config = tiny_text_config(text_encoder_config={**TINY_BERT, "vocab_size": len(tokenizer)})
    EmiTextModel(config).save_pretrained(tmp_path / "model")
    model = EmiTextModel.from_pretrained(tmp_path / "model")
    side = TextSide(model, asr_model="openai/whisper-tiny", use_cache=False)  # the ASR model loads on first use
    assert side.transcriber.cache is None
    assert TextSide(model, asr_model="openai/whisper-tiny").transcriber.cache is not None
