"""Speech encoders with a regression head in audEERING's layout (`audeering/wav2vec2-large-robust-12-ft-emotion-
msp-dim`: an `EmotionModel` of `wav2vec2` + `classifier` RegressionHead over mean-pooled states, outputs arousal,
dominance, valence): loaded from such a folder, its hidden states and head outputs are the audio features (hidden size
+ 3), and end-to-end fine-tuning from raw waveforms trains the last encoder layer and the head, not the frozen ones."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_WAV2VEC2
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2Model, Wav2Vec2PreTrainedModel

from emi_hf import EmiAudioModel

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

LABELS = ["arousal", "dominance", "valence"]


class RegressionHead(nn.Module):  # audEERING's, as in their model card
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.final_dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, features):
        x = self.dropout(features)
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))


class EmotionModel(Wav2Vec2PreTrainedModel):  # audEERING's, as in their model card
    def __init__(self, config):
        super().__init__(config)
        self.wav2vec2 = Wav2Vec2Model(config)
        self.classifier = RegressionHead(config)
        self.post_init()

    def forward(self, input_values):
        hidden_states = self.wav2vec2(input_values)[0]
        pooled = torch.mean(hidden_states, dim=1)
        return pooled, self.classifier(pooled)


def write_emotion_model(folder, layers: int = 2) -> EmotionModel:
    """A tiny random wav2vec2 with an A/D/V head, saved as audEERING's model is (keys wav2vec2.*, classifier.*)."""
    config = Wav2Vec2Config(**{**TINY_WAV2VEC2, "num_hidden_layers": layers}, num_labels=3, final_dropout=0.1,
                            id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
                            architectures=["Wav2Vec2ForSpeechClassification"])
    torch.manual_seed(1)
    model = EmotionModel(config).eval()
    with torch.no_grad():  # random, but not the zero-initialised biases of post_init
        for parameter in model.classifier.parameters():
            parameter.normal_(0, 0.5)
    model.save_pretrained(folder)
    return model


def test_a_folder_in_audeerings_layout_gives_hidden_states_and_head_outputs(tmp_path):
    reference = write_emotion_model(tmp_path / "emotion")
    from safetensors.torch import load_file

    assert any(k.startswith("classifier.out_proj") for k in load_file(tmp_path / "emotion" / "model.safetensors"))
    model = EmiAudioModel.from_speech_encoder(tmp_path / "emotion", hidden_size=16, num_attention_heads=2,
                                              intermediate_size=32, num_hidden_layers=1, tcn_dilations=[1])
    assert model.config.speech_head_labels == LABELS
    assert model.config.audio_feature_dim == TINY_WAV2VEC2["hidden_size"] + 3
    waveform = torch.randn(1, 16000)
    features, mask = model.embed_audio(waveform)
    assert features.shape[-1] == 35 and mask.all()
    with torch.no_grad():
        pooled, adv = reference(waveform)
        hidden = reference.wav2vec2(waveform)[0]
    torch.testing.assert_close(features[..., :32], hidden, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(features[0, :, 32:], adv.expand(features.shape[1], -1), atol=1e-5, rtol=1e-4)
    # the whole model (cached features of width 35 in, intensities out) and its save / load keep the head
    output = model(input_values=waveform)
    assert output.intensities.shape == (1, 6)
    model.save_pretrained(tmp_path / "saved")
    again = EmiAudioModel.from_pretrained(tmp_path / "saved")
    assert again.config.speech_head_labels == LABELS
    torch.testing.assert_close(again.embed_audio(waveform)[0], features)
    # a plain encoder keeps its width
    Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC2)).save_pretrained(tmp_path / "plain")
    plain = EmiAudioModel.from_speech_encoder(tmp_path / "plain")
    assert plain.config.speech_head_labels is None and plain.config.audio_feature_dim == 32


def test_end_to_end_fine_tuning_trains_the_last_layer_and_the_head_only(tmp_path):
    from emi_hf import EmiProcessor, EmiVisualModel
    from emi_hf.data.random_features import make_feature_dataset
    from emi_hf.data.synthetic import generate_synthetic_dataset
    from emi_hf.training import train
    from helpers import tiny_visual_config

    write_emotion_model(tmp_path / "emotion")
    audio = EmiAudioModel.from_speech_encoder(tmp_path / "emotion", hidden_size=16, num_attention_heads=2,
                                              intermediate_size=32, num_hidden_layers=1, tcn_dilations=[1])
    generate_synthetic_dataset(tmp_path / "data", num_train=4, num_valid=4, duration=1.0, fps=10, size=96, seed=3)
    EmiProcessor(face_detector="mediapipe", target_fps=5).save_pretrained(tmp_path / "processor")
    make_feature_dataset(tmp_path / "features", num_train=4, num_valid=4, processor_dir=tmp_path / "processor",
                         audio_dim=35, base_models={"visual": EmiVisualModel(tiny_visual_config()), "audio": audio})
    train(dict(features=str(tmp_path / "features"), modality="audio", raw_data=str(tmp_path / "data"),
               trainable_backbone_layers=1, gradient_checkpointing=True, output_dir=str(tmp_path / "run"),
               epochs=1, batch_size=4, lr=3e-2, seed=0, report_to="none", cpu=True))
    base = EmiAudioModel.from_pretrained(tmp_path / "features" / "base_audio").backbone.state_dict()
    tuned = EmiAudioModel.from_pretrained(tmp_path / "run")
    assert tuned.config.speech_head_labels == LABELS
    changed = {name for name, value in tuned.backbone.state_dict().items() if not torch.equal(value, base[name])}
    assert any(name.startswith("encoder.layers.1.") for name in changed), sorted(changed)
    assert any(name.startswith("emotion_head.") for name in changed), sorted(changed)
    assert all(name.startswith(("encoder.layers.1.", "emotion_head.")) for name in changed), sorted(changed)
