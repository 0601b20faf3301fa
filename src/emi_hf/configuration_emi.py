"""Configurations of the emi-hf models.

This file is copied next to the weights by ``save_pretrained`` for ``trust_remote_code`` users, so it imports only
transformers (and, in ``modeling_emi.py`` / ``backbones_emi.py``, torch/torchvision) and nothing else from the emi_hf
package.

Three configs:

- [`EmiVisualConfig`]: the visual-dual regressor (ResNet18 face embeddings + Action Unit intensities per frame).
- [`EmiAudioConfig`]: the audio regressor (wav2vec 2.0 frame embeddings); the speech encoder's own config is a
  sub-config, so any wav2vec2-family encoder (wav2vec2, HuBERT, WavLM, data2vec-audio) fits.
- [`EmiFusionConfig`]: late fusion of one visual and one audio model, with per-emotion fusion weights.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

EMOTION_NAMES = ("Admiration", "Amusement", "Determination", "Empathic Pain", "Excitement", "Joy")
"""The six emotions of Hume-Vidmimic2 (ABAW EMI), in the column order of its CSV files."""

DEFAULT_AU_NAMES = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU09", "AU12", "AU15", "AU17", "AU20", "AU25", "AU26", "AU45",
)  # fmt: skip
"""Action Units produced by the default (MediaPipe face mesh) AU backend, in this order."""

LOSS_TYPES = ("mse", "ccc", "pearson")
"""`loss_type` choices: mean squared error, 1 - concordance correlation, 1 - Pearson's r."""
POOLING_TYPES = ("mean", "attention")
"""`pooling` choices: masked mean or masked attention pooling of the frame logits."""
BACKBONE_PRECISIONS = ("float32", "bfloat16")
"""`backbone_precision` choices."""


class EmiTemporalConfig(PreTrainedConfig):
    r"""
    The fields shared by the two unimodal configs: the frozen backbone's running options and the temporal model (a
    projection to `hidden_size`, a TCN for short range, a Transformer encoder for long range, a frame head and masked
    pooling to clip intensities). Not a model's config on its own.

    Args:
        freeze_backbone (`bool`, defaults to `True`): keep the backbone frozen (eval mode, no gradients).
        backbone_precision (`str`, defaults to `"float32"`): `"bfloat16"` runs the frozen backbone under bfloat16
            autocast (about 2x faster on CPUs with AVX512-BF16/AMX and on recent GPUs; the face embeddings differ
            from float32 ones by about 0.5% relative, the speech frames by about 1.5%). Features cached with one
            precision should be used with it.
        hidden_size (`int`): width of the temporal model.
        tcn_kernel_size (`int`): kernel of the dilated 1-D convolutions (odd).
        tcn_dilations (`list[int]`): one residual TCN block per dilation.
        num_hidden_layers (`int`): Transformer encoder layers.
        num_attention_heads (`int`): attention heads.
        intermediate_size (`int`): feed-forward width of the Transformer layers.
        dropout (`float`): dropout in projections, TCN and Transformer.
        pooling (`str`): `"mean"` (masked mean of frame logits) or `"attention"` (masked attention pooling).
        loss_type (`str`): `"mse"` (default), `"ccc"` (1 - concordance) or `"pearson"` (1 - Pearson r).
        label_names (`list[str]`): names of the regressed intensities.
    """

    freeze_backbone: bool = True
    backbone_precision: str = "float32"
    hidden_size: int = 128
    tcn_kernel_size: int = 3
    tcn_dilations: list[int] | tuple[int, ...] = (1, 2, 4)
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 256
    dropout: float = 0.1
    pooling: str = "attention"
    loss_type: str = "mse"
    label_names: list[str] | tuple[str, ...] = EMOTION_NAMES
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.tcn_dilations = list(self.tcn_dilations)
        self.label_names = list(self.label_names)
        self.id2label = {i: name for i, name in enumerate(self.label_names)}
        self.label2id = {name: i for i, name in enumerate(self.label_names)}
        self.problem_type = "regression"
        super().__post_init__(**kwargs)
        self._validate_temporal()

    def _validate_temporal(self) -> None:
        if self.backbone_precision not in BACKBONE_PRECISIONS:
            raise ValueError(
                f"backbone_precision must be one of {BACKBONE_PRECISIONS}, got {self.backbone_precision!r}."
            )
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if self.tcn_kernel_size % 2 != 1:
            raise ValueError(f"tcn_kernel_size must be odd to keep frames aligned, got {self.tcn_kernel_size}.")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}.")
        if self.pooling not in POOLING_TYPES:
            raise ValueError(f"pooling must be one of {POOLING_TYPES}, got {self.pooling!r}.")
        if len(self.label_names) != self.num_labels:
            raise ValueError(f"label_names has {len(self.label_names)} names but num_labels is {self.num_labels}.")


class EmiVisualConfig(EmiTemporalConfig):
    r"""
    Configuration of [`EmiVisualModel`]: per-frame ResNet18 face embeddings and AU intensities, each projected to
    `hidden_size`, combined, then the temporal model of [`EmiTemporalConfig`] (whose fields it has too).

    Args:
        visual_feature_dim (`int`, defaults to 512): size of a face embedding (ResNet18 without its classifier).
        au_names (`list[str]`): the Action Units of the AU channel, in order; must match the processor's AU backend.
        face_size (`int`, defaults to 112): side of the aligned face crops the backbone sees.
        backbone (`str`, defaults to `"resnet18"`): torchvision architecture of the face backbone.
        backbone_chunk_size (`int`, defaults to 32): face crops per backbone call when running from pixels.
        channel_dropout (`float`): probability, in training, of dropping a whole input channel (face embedding or AUs)
            for a clip, so that the model does not lean on one channel only.
    """

    model_type = "emi_visual"

    visual_feature_dim: int = 512
    au_names: list[str] | tuple[str, ...] = DEFAULT_AU_NAMES
    face_size: int = 112
    backbone: str = "resnet18"
    backbone_chunk_size: int = 32
    channel_dropout: float = 0.1

    def __post_init__(self, **kwargs):
        self.au_names = list(self.au_names)
        super().__post_init__(**kwargs)
        if self.backbone != "resnet18":
            raise ValueError(f"Only the 'resnet18' face backbone is implemented, got {self.backbone!r}.")

    @property
    def num_aus(self) -> int:
        return len(self.au_names)


class EmiAudioConfig(EmiTemporalConfig):
    r"""
    Configuration of [`EmiAudioModel`]: wav2vec 2.0 frame embeddings, projected, then the temporal model of
    [`EmiTemporalConfig`] (whose fields it has too), as in the visual model.

    Args:
        speech_encoder_config (`dict` or `PreTrainedConfig`): config of the speech encoder (any wav2vec2-family model
            that `AutoModel.from_config` builds); defaults to a wav2vec2-base sized `Wav2Vec2Config`.
        audio_feature_dim (`int`, defaults to 768): size of an encoder frame; must equal the encoder's hidden size.
        sampling_rate (`int`, defaults to 16000): waveform rate the encoder expects.
        encoder_window_s (`float`, defaults to 30.0): longer waveforms are encoded in consecutive windows of this
            many seconds, so memory stays bounded (self-attention over a whole long recording is quadratic).
    """

    model_type = "emi_audio"
    sub_configs_defaults = {
        "speech_encoder_config": SubConfigSpec(
            AutoConfig, model_type="wav2vec2", init_kwargs={"apply_spec_augment": False, "layerdrop": 0.0}
        )
    }

    speech_encoder_config: dict | PreTrainedConfig | None = None
    audio_feature_dim: int = 768
    sampling_rate: int = 16000
    encoder_window_s: float = 30.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        encoder_width = getattr(self.speech_encoder_config, "hidden_size", None)
        if encoder_width is not None and encoder_width != self.audio_feature_dim:
            raise ValueError(
                f"audio_feature_dim ({self.audio_feature_dim}) must equal the speech encoder's hidden_size "
                f"({encoder_width})."
            )


class EmiFusionConfig(PreTrainedConfig):
    r"""
    Configuration of [`EmiFusionModel`]: one visual and one audio model and their late fusion.

    Args:
        visual_config (`dict` or [`EmiVisualConfig`]): config of the visual model.
        audio_config (`dict` or [`EmiAudioConfig`]): config of the audio model.
        fusion_weights (`list[float]`): per-emotion weight of the visual prediction; the audio one gets
            `1 - weight`. Defaults to 0.5 for every emotion, the plain average of the paper.
    """

    model_type = "emi_fusion"
    sub_configs_defaults = {"visual_config": EmiVisualConfig, "audio_config": EmiAudioConfig}

    visual_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    fusion_weights: list[float] | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        labels = list(self.visual_config.label_names)
        if labels != list(self.audio_config.label_names):
            raise ValueError(
                f"The visual and audio models regress different labels: {labels} vs "
                f"{list(self.audio_config.label_names)}."
            )
        if self.fusion_weights is None:
            self.fusion_weights = [0.5] * len(labels)
        self.fusion_weights = [float(w) for w in self.fusion_weights]
        if len(self.fusion_weights) != len(labels) or not all(0.0 <= w <= 1.0 for w in self.fusion_weights):
            raise ValueError(f"fusion_weights must be {len(labels)} numbers in [0, 1], got {self.fusion_weights}.")
        self.id2label = dict(enumerate(labels))
        self.label2id = {name: i for i, name in enumerate(labels)}
        self.problem_type = "regression"

    @property
    def label_names(self) -> list[str]:
        return list(self.visual_config.label_names)


__all__ = [
    "BACKBONE_PRECISIONS", "DEFAULT_AU_NAMES", "EMOTION_NAMES", "LOSS_TYPES", "POOLING_TYPES", "EmiAudioConfig",
    "EmiFusionConfig", "EmiTemporalConfig", "EmiVisualConfig",
]
