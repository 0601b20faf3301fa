"""The model-side choices of the published recipes (#21): text-anchored cross-attention fusion, the LSTM temporal
block, text features as the [CLS] state with a token limit. Tiny random models; nothing is downloaded."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import tiny_audio_config, tiny_text_config, tiny_visual_config

from emi_hf import EmiAudioModel, EmiFusionConfig, EmiFusionModel, EmiTextModel, EmiVisualModel
from emi_hf.configuration_emi import EmiConfigError, EmiVisualConfig


def _cross_attention_model(**overrides) -> EmiFusionModel:
    torch.manual_seed(0)
    config = EmiFusionConfig(visual_config=tiny_visual_config(), audio_config=tiny_audio_config(),
                             text_config=tiny_text_config(), fusion_type="cross-attention", cross_attention_heads=4,
                             cross_attention_dim=16, modality_dropout=0.1, **overrides)
    return EmiFusionModel(config)


def _inputs(batch=3, frames=5, audio_frames=6, tokens=7, seed=0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "visual_features": torch.randn(batch, frames, 512, generator=generator),
        "au_features": torch.rand(batch, frames, 13, generator=generator),
        "frame_mask": torch.ones(batch, frames, dtype=torch.long),
        "audio_features": torch.randn(batch, audio_frames, 32, generator=generator),
        "audio_mask": torch.ones(batch, audio_frames, dtype=torch.long),
        "text_features": torch.randn(batch, tokens, 24, generator=generator),
        "text_mask": torch.ones(batch, tokens, dtype=torch.long),
    }


def _padded(inputs: dict, extra: int, seed=1) -> dict:
    """The same clips with `extra` more frames / tokens of random values, all masked."""
    generator = torch.Generator().manual_seed(seed)
    padded = {}
    for name, value in inputs.items():
        shape = (value.shape[0], extra, *value.shape[2:])
        filler = torch.zeros(shape, dtype=value.dtype) if name.endswith("mask") else torch.randn(shape, generator=generator)
        padded[name] = torch.cat([value, filler], dim=1)
    return padded


# ----------------------------------------------------------------------------------------------------------------------
# Cross-attention fusion
# ----------------------------------------------------------------------------------------------------------------------


def test_cross_attention_fusion_config_names_and_checks():
    model = _cross_attention_model()
    assert model.config.fusion_type == "cross-attention" and model.config.to_dict()["cross_attention_heads"] == 4
    # `fusion_mode` (the recipes' and the command line's word) is the same field.
    config = EmiFusionConfig(visual_config=tiny_visual_config(), text_config=tiny_text_config(),
                             fusion_mode="cross-attention", cross_attention_dim=8, cross_attention_heads=2)
    assert config.fusion_type == "cross-attention" and "fusion_mode" not in config.to_dict()
    with pytest.raises(EmiConfigError, match="needs a text model"):
        EmiFusionConfig(visual_config=tiny_visual_config(), audio_config=tiny_audio_config(),
                        fusion_type="cross-attention")
    with pytest.raises(EmiConfigError, match="multiple of cross_attention_heads"):
        EmiFusionConfig(visual_config=tiny_visual_config(), text_config=tiny_text_config(),
                        fusion_type="cross-attention", cross_attention_dim=10, cross_attention_heads=4)


def test_cross_attention_fusion_padding_changes_nothing():
    model = _cross_attention_model().eval()
    inputs = _inputs()
    inputs["frame_mask"][1, 3:] = 0  # clips of different lengths inside the batch
    inputs["audio_mask"][2, 2:] = 0
    inputs["text_mask"][0, 4:] = 0
    with torch.no_grad():
        plain = model(**inputs)
        padded = model(**_padded(inputs, extra=4))
        alone = model(**{k: v[1:2] for k, v in inputs.items()})
    torch.testing.assert_close(padded.intensities, plain.intensities, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone.intensities, plain.intensities[1:2], atol=1e-5, rtol=1e-5)
    assert ((plain.intensities >= 0) & (plain.intensities <= 1)).all()


def test_a_missing_modality_is_its_learnable_token():
    """A clip without audio (clip 0) or without a transcript (clip 1) is scored as the head fed that modality's
    token: the audio features of clip 0 change nothing, and the output equals the head computed by hand."""
    model = _cross_attention_model().eval()
    head = model.fusion_head
    inputs = _inputs()
    inputs["audio_mask"][0] = 0
    inputs["text_mask"][1] = 0
    other_audio = dict(inputs, audio_features=torch.randn(3, 6, 32))
    with torch.no_grad():
        out = model(**inputs)
        assert torch.equal(model(**other_audio).intensities[0], out.intensities[0])
        visual = model.visual(visual_features=inputs["visual_features"], au_features=inputs["au_features"],
                              frame_mask=inputs["frame_mask"])
        audio = model.audio(audio_features=inputs["audio_features"], audio_mask=inputs["audio_mask"])
        text = model.text(text_features=inputs["text_features"], text_mask=inputs["text_mask"])
        query = head.text_projection(text.pooler_output)
        query[1] = head.missing_tokens["text"]  # no transcript: the text token is the query
        attended_visual = head.blocks["visual"](query, visual.last_hidden_state, visual.frame_mask)
        attended_audio = head.blocks["audio"](query, audio.last_hidden_state, audio.frame_mask)
        attended_audio[0] = head.missing_tokens["audio"]  # no audio: the audio token
        expected = head.mlp(torch.cat([query, attended_visual, attended_audio], dim=-1)).sigmoid()
    torch.testing.assert_close(out.intensities, expected, atol=1e-6, rtol=1e-6)
    assert head.missing_tokens["audio"].abs().sum() > 0  # a drawn token, not zeros
    # A clip with no modality at all has no fused intensities.
    inputs["frame_mask"][0], inputs["text_mask"][0] = 0, 0
    with torch.no_grad():
        assert torch.isnan(model(**inputs).intensities[0]).all()


def test_cross_attention_fusion_trains_end_to_end_with_the_parts_losses():
    model = _cross_attention_model(unimodal_loss_weight=0.5).train()
    inputs = _inputs(batch=8, seed=3)
    labels = torch.rand(8, 6, generator=torch.Generator().manual_seed(4))
    trainable = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0]
    moved = {name for name, p in model.named_parameters() if p.requires_grad and not torch.equal(p, trainable[name])}
    for part in ("fusion_head.missing_tokens.text", "fusion_head.blocks.audio.key.weight", "fusion_head.mlp.4.weight",
                 "visual.head.frame_head.weight", "audio.head.frame_head.weight", "text.head.frame_head.weight"):
        assert part in moved, part  # the head, its tokens (modality dropout) and the parts (their own losses)
    assert not model.text.backbone.embeddings.word_embeddings.weight.requires_grad  # frozen encoder


def test_remote_code_loads_cross_attention_lstm_and_cls_without_emi_hf(tmp_path):
    from helpers import intensities_without_emi_hf

    torch.manual_seed(0)
    config = EmiFusionConfig(
        visual_config=tiny_visual_config(temporal_block="lstm", lstm_hidden=8),
        audio_config=tiny_audio_config(temporal_block="lstm", lstm_layers=1),
        text_config=tiny_text_config(text_pooling="cls", text_max_tokens=128), fusion_type="cross-attention",
        cross_attention_dim=16, cross_attention_heads=4)
    model = EmiFusionModel(config).eval()
    inputs = _inputs()
    del inputs["text_features"]
    inputs["input_ids"] = torch.randint(5, 64, (3, 7), generator=torch.Generator().manual_seed(2))
    inputs["text_mask"][2, 3:] = 0
    with torch.no_grad():
        expected = model(**inputs).intensities
    model.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["fusion_type"] == "cross-attention" and saved["visual_config"]["temporal_block"] == "lstm"
    assert saved["text_config"]["text_pooling"] == "cls" and saved["text_config"]["max_text_tokens"] == 128
    out = intensities_without_emi_hf(tmp_path / "ckpt", inputs, tmp_path, "EmiFusionModel")
    torch.testing.assert_close(out, expected)
    again = EmiFusionModel.from_pretrained(tmp_path / "ckpt").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).intensities, expected, atol=0, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# LSTM temporal block
# ----------------------------------------------------------------------------------------------------------------------


def test_lstm_block_is_packed_padding_changes_nothing_and_needs_no_windows():
    torch.manual_seed(0)
    model = EmiVisualModel(tiny_visual_config(temporal_block="lstm", lstm_hidden=8)).eval()
    assert len(model.encoder.layers) == 2 and not hasattr(model.encoder, "tcn")  # the default two layers
    generator = torch.Generator().manual_seed(0)
    features, aus = torch.randn(2, 9, 512, generator=generator), torch.rand(2, 9, 13, generator=generator)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 5:] = 0  # clip 1 is 5 frames long, then padding
    mask[0, 2] = 0  # a frame without a face inside clip 0
    with torch.no_grad():
        batch = model(visual_features=features, au_features=aus, frame_mask=mask, output_hidden_states=True)
        alone = model(visual_features=features[1:, :5], au_features=aus[1:, :5])
        model.config.temporal_window = 3  # the LSTM has no positions: no windows, the same numbers
        windowed = model(visual_features=features, au_features=aus, frame_mask=mask)
    torch.testing.assert_close(alone.intensities, batch.intensities[1:], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(alone.frame_intensities, batch.frame_intensities[1:, :5], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(windowed.intensities, batch.intensities, atol=0, rtol=0)
    assert len(batch.hidden_states) == 1 + 2 and batch.hidden_states[-1].shape == (2, 9, 16)  # 2 x lstm_hidden
    assert batch.attentions is None and not batch.last_hidden_state[1, 5:].any()


def test_lstm_block_round_trips_and_old_configs_stay_tcn_transformer(tmp_path):
    from emi_hf.temporal_emi import LSTMTemporalEncoder, TemporalEncoder

    torch.manual_seed(0)
    model = EmiAudioModel(tiny_audio_config(temporal_block="lstm", lstm_layers=3)).eval()
    assert isinstance(model.encoder, LSTMTemporalEncoder) and len(model.encoder.layers) == 3
    model.save_pretrained(tmp_path / "audio")
    loaded = EmiAudioModel.from_pretrained(tmp_path / "audio").eval()
    features = torch.randn(2, 6, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(audio_features=features).intensities,
                                   model(audio_features=features).intensities, atol=0, rtol=0)
    old = {k: v for k, v in tiny_visual_config().to_dict().items()
           if k not in ("temporal_block", "lstm_layers", "lstm_hidden")}  # a config.json of an earlier version
    config = EmiVisualConfig(**old)
    assert config.temporal_block == "tcn-transformer" and isinstance(EmiVisualModel(config).encoder, TemporalEncoder)
    with pytest.raises(EmiConfigError, match="temporal_block"):
        tiny_visual_config(temporal_block="gru")


def test_training_options_reach_the_configs():
    from emi_hf.training.arguments import build_parser
    from emi_hf.training.models import temporal_overrides

    (args,) = build_parser().parse_args_into_dataclasses(
        ["--features", "f", "--modality", "fusion", "--fusion-mode", "cross-attention", "--temporal-block", "lstm",
         "--lstm-layers", "2", "--lstm-hidden", "64", "--cross-attention-heads", "4", "--cross-attention-dim", "512",
         "--modality-dropout", "0.1"])
    assert args.fusion_mode == "cross-attention" and args.cross_attention_dim == 512
    assert temporal_overrides(args, "visual") | {"temporal_block": "lstm", "lstm_layers": 2, "lstm_hidden": 64} == \
        temporal_overrides(args, "visual")
    from emi_hf.cli import build_parser as cli_parser

    extract = cli_parser().parse_args(["extract", "--data-dir", "d", "--output", "o", "--text-encoder", "t",
                                       "--text-pooling", "cls", "--text-max-tokens", "128"])
    assert extract.text_pooling == "cls" and extract.text_max_tokens == 128


def test_cross_attention_fusion_with_lstm_parts_trains_through_the_training_loop(tmp_path):
    """`train(fusion_mode="cross-attention", temporal_block="lstm")` on random features with text: the training
    loss goes down, the saved model is that fusion and scores the validation clips in [0, 1]."""
    from emi_hf.data.random_features import make_feature_dataset
    from emi_hf.training import train

    torch.manual_seed(0)
    features = make_feature_dataset(
        tmp_path / "features", num_train=24, num_valid=8, text_dim=24, seed=1,
        base_models={"visual": EmiVisualModel(tiny_visual_config()), "audio": EmiAudioModel(tiny_audio_config()),
                     "text": EmiTextModel(tiny_text_config())})
    results = train(dict(features=str(features), modality="fusion", fusion_mode="cross-attention",
                         temporal_block="lstm", lstm_hidden=16, hidden_size=32, num_attention_heads=2,
                         cross_attention_dim=16, cross_attention_heads=2, modality_dropout=0.1, batch_size=8,
                         lr=3e-3, epochs=6, report_to="none", output_dir=str(tmp_path / "run"), seed=0))
    losses = [record["train_loss"] for record in results["history"]]
    assert losses[-1] < losses[0], losses
    model = EmiFusionModel.from_pretrained(tmp_path / "run")
    assert model.config.fusion_type == "cross-attention" and model.config.modalities == ["visual", "audio", "text"]
    assert all(sub.temporal_block == "lstm" for sub in model.config.sub_configs_of_modalities().values())
    assert math.isfinite(results["validation"]["mean_pearson"])


# ----------------------------------------------------------------------------------------------------------------------
# Text features: the [CLS] state, a token limit
# ----------------------------------------------------------------------------------------------------------------------

SENTENCES = ["what a wonderful surprise this is for all of us here today", "i am so sorry", "we did it"]


def test_cls_text_features_with_a_token_limit_are_the_same_in_extraction_and_prediction(tmp_path):
    """`emi-hf extract --text-pooling cls --text-max-tokens 6`'s text stage caches the encoder's [CLS] state of the
    truncated transcript `[1, D]`; the base text model it writes carries both settings, and a model scoring raw
    transcripts (predict / stream: `TextSide` tokens -> the model's own encoder) computes the same features."""
    from transformers import AutoModel, AutoTokenizer

    from emi_hf.configuration_emi import EMOTION_NAMES
    from emi_hf.data.text_features import TextStage
    from emi_hf.inference import TextSide
    from emi_hf.text import build_word_text_encoder

    encoder_dir = build_word_text_encoder(SENTENCES, tmp_path / "encoder", hidden_size=24, num_attention_heads=2)
    stage = TextStage.from_options(text_encoder=str(encoder_dir), vad=False, text_pooling="cls", max_text_tokens=6)
    cached = stage.encoder.encode(SENTENCES[0])
    assert cached.features.shape == (1, 24) and cached.mask.tolist() == [1] and cached.truncated
    tokenizer, encoder = AutoTokenizer.from_pretrained(encoder_dir), AutoModel.from_pretrained(encoder_dir).eval()
    tokens = tokenizer([SENTENCES[0]], truncation=True, max_length=6, return_tensors="pt")
    assert tokens["input_ids"].shape[1] == 6
    with torch.no_grad():
        states = encoder(**tokens).last_hidden_state
    torch.testing.assert_close(torch.from_numpy(cached.features), states[:, 0], atol=1e-5, rtol=1e-5)
    assert stage.record()["text_pooling"] == "cls" and stage.record()["max_text_tokens"] == 6
    stage.save_base(tmp_path / "base_text", EMOTION_NAMES)

    model = EmiTextModel.from_pretrained(tmp_path / "base_text").eval()
    assert model.config.text_pooling == "cls" and model.config.max_text_tokens == 6
    side = TextSide(model)
    raw = side.inputs([SENTENCES[0], ""], "cpu")
    assert raw["input_ids"].shape[1] == 6  # truncated to the model's limit
    with torch.no_grad():
        from_tokens = model(**raw)
        from_cache = model(text_features=torch.from_numpy(cached.features)[None], text_mask=torch.ones(1, 1))
    torch.testing.assert_close(from_tokens.intensities[:1], from_cache.intensities, atol=1e-5, rtol=1e-5)
    assert from_tokens.last_hidden_state.shape[1] == 1 and torch.isnan(from_tokens.intensities[1]).all()


def test_mean_text_pooling_and_the_default_stays_every_token(tmp_path):
    from emi_hf.data.text_features import TextStage
    from emi_hf.text import build_word_text_encoder
    from emi_hf.text.encoder import TextEncoder

    encoder_dir = build_word_text_encoder(SENTENCES, tmp_path / "encoder", hidden_size=24, num_attention_heads=2)
    tokens = TextEncoder(str(encoder_dir)).encode(SENTENCES[1])
    mean = TextEncoder(str(encoder_dir), pooling="mean").encode(SENTENCES[1])
    assert tokens.features.shape == (6, 24)  # [CLS] i am so sorry [SEP]: every token's state, as before
    torch.testing.assert_close(torch.from_numpy(mean.features[0]), torch.from_numpy(tokens.features).mean(0))
    # The default record is that of earlier versions, so their feature folders keep resuming.
    assert "text_pooling" not in TextStage.from_options(text_encoder=str(encoder_dir), vad=False).record()
    with pytest.raises(ValueError, match="text pooling"):
        TextEncoder(str(encoder_dir), pooling="max")
    with pytest.raises(EmiConfigError, match="text_pooling"):
        tiny_text_config(text_pooling="max")
    assert tiny_text_config(text_max_tokens=128).max_text_tokens == 128


# ----------------------------------------------------------------------------------------------------------------------
# Licences: the model card takes the most restrictive one; push warns when it is not permissive
# ----------------------------------------------------------------------------------------------------------------------


def _save_fusion_with_encoders(folder, speech_encoder: str, results: dict | None = None):
    config = EmiFusionConfig(
        visual_config=tiny_visual_config(backbone_provenance={"kind": "pretrained", "source": "timm:resnet18.tv_in1k"}),
        audio_config=tiny_audio_config(speech_encoder_name=speech_encoder),
        text_config=tiny_text_config(text_encoder_name="Alibaba-NLP/gte-en-mlm-base", asr_backend="faster-whisper",
                                     asr_model="large-v3"))
    torch.manual_seed(0)
    EmiFusionModel(config).save_pretrained(folder)
    if results is not None:
        (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_weights_licences_and_the_most_restrictive_one():
    from emi_hf.provenance import card_licence, weights_licence

    assert weights_licence("audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim") == "cc-by-nc-sa-4.0"
    assert weights_licence("facebook/wav2vec2-base") == "apache-2.0"
    assert weights_licence("google/vit-huge-patch14-224-in21k") == "apache-2.0"
    assert weights_licence("openai/whisper-large-v3-turbo") == "apache-2.0"
    assert weights_licence("timm:resnet18.tv_in1k") == weights_licence("resnet18") == "bsd-3-clause"
    assert weights_licence("/hf/hub/models--audeering--wav2vec2-large-robust-12-ft-emotion-msp-dim/snapshots/ab12") \
        == "cc-by-nc-sa-4.0"  # a Hub cache folder is its repository
    assert weights_licence("someone/unknown-model") is None
    permissive = card_licence(tiny_fusion_dict("facebook/wav2vec2-base"))
    assert permissive["license"] == "apache-2.0" and permissive["permissive"] and not permissive["notes"]
    restricted = card_licence(tiny_fusion_dict("audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"))
    assert restricted["license"] == "cc-by-nc-sa-4.0" and not restricted["permissive"]
    assert any("non-commercial" in note for note in restricted["notes"])
    unknown = card_licence(tiny_fusion_dict("someone/unknown-model"))
    assert unknown["license"] == "other" and any("someone/unknown-model" in n and "unknown" in n for n in unknown["notes"])
    assert card_licence(tiny_fusion_dict("facebook/wav2vec2-base"), declared="cc-by-nc-4.0")["license"] == "cc-by-nc-4.0"


def tiny_fusion_dict(speech_encoder: str) -> dict:
    return EmiFusionConfig(
        visual_config=tiny_visual_config(backbone_provenance={"kind": "pretrained", "source": "google/vit-base-patch16-224-in21k"}),
        audio_config=tiny_audio_config(speech_encoder_name=speech_encoder),
        text_config=tiny_text_config(text_encoder_name="Alibaba-NLP/gte-en-mlm-base", asr_backend="transformers",
                                     asr_model="openai/whisper-large-v3")).to_dict()


def test_model_card_takes_the_most_restrictive_licence_and_push_warns(tmp_path, monkeypatch):
    from emi_hf.hub import HubOfflineError, push_model, render_model_card
    from emi_hf.provenance import LicenceWarning

    folder = _save_fusion_with_encoders(tmp_path / "run", "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim")
    card = str(render_model_card(folder, "user/emi"))
    assert "\nlicense: cc-by-nc-sa-4.0\n" in card.split("---")[1]
    assert "## Licence" in card and "`Systran/faster-whisper-large-v3`, mit" in card and "non-commercial" in card
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.warns(LicenceWarning, match="cc-by-nc-sa-4.0.*non-commercial"), pytest.raises(HubOfflineError):
        push_model(folder, "user/emi", token="hf_x")  # warned before anything is sent
    permissive = _save_fusion_with_encoders(tmp_path / "ok", "facebook/wav2vec2-base")
    assert "\nlicense: apache-2.0\n" in str(render_model_card(permissive, "user/emi")).split("---")[1]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", LicenceWarning)
        with pytest.raises(HubOfflineError):
            push_model(permissive, "user/emi", token="hf_x")
