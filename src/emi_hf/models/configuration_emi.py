"""Configurations of the emi-hf models. Copied next to the weights by ``save_pretrained`` for ``trust_remote_code``
users, this file imports only transformers and the bundle file beside it ``pipeline_task_emi.py``.

Four configs:

- [`EmiVisualConfig`]: the visual-dual regressor (face embeddings, ResNet18 by default or any torchvision / timm /
  transformers backbone, + Action Unit intensities per frame).
- [`EmiAudioConfig`]: the audio regressor (wav2vec 2.0 frame embeddings); the speech encoder's own config is a
  sub-config, so any transformers audio encoder (wav2vec2, HuBERT, WavLM, data2vec-audio, the Whisper encoder) fits.
- [`EmiTextConfig`]: the text regressor (token embeddings of a frozen text encoder over the transcript).
- [`EmiFusionConfig`]: fusion of any non-empty set of the three models: late (per-emotion weights on the simplex)
  or feature-level (pooled embeddings, an MLP head).
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import logging

from .pipeline_task_emi import EmiPipelineTaskMixin  # `custom_pipelines`, the `pipeline()` task

logger = logging.get_logger(__name__)

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
TEMPORAL_BLOCKS = ("tcn-transformer", "lstm")  # `temporal_block` choices (the first: the paper's, the default)
TEXT_POOLINGS = ("tokens", "cls", "mean")  # `text_pooling` choices: every token's state, the [CLS] state, their mean


class EmiConfigError(ValueError):
    """A model setting that cannot work; the message names it. `emi-hf` prints it as one line like the known errors
    of `emi_hf.errors` (`emi_known_error`): this file is also the remote code of saved models, so it imports nothing
    of emi_hf."""

    emi_known_error = True


def default_label_names(num_labels: int) -> list[str]:
    """The label names of a head of `num_labels` outputs set by count alone: the six emotions for 6, else
    `LABEL_0`, `LABEL_1`, ... (transformers' names)."""
    if int(num_labels) < 1:
        raise EmiConfigError(f"num_labels must be at least 1, got {num_labels}.")
    return list(EMOTION_NAMES) if int(num_labels) == len(EMOTION_NAMES) else [f"LABEL_{i}" for i in range(num_labels)]


def _names_from_mapping(mapping: dict, field: str) -> list[str]:
    """`id2label` ({index: name}) or `label2id` ({name: index}) -> names in index order (indices 0..n-1)."""
    pairs = {int(k): v for k, v in mapping.items()} if field == "id2label" else {int(v): k for k, v in mapping.items()}
    if len(pairs) != len(mapping) or sorted(pairs) != list(range(len(pairs))):
        raise EmiConfigError(f"{field} must map the indices 0..{len(mapping) - 1} one to one, got {mapping}.")
    return [str(pairs[i]) for i in range(len(pairs))]


def resolve_label_names(label_names=None, id2label=None, label2id=None, num_labels=None, default=EMOTION_NAMES):
    """
    The one label list that `label_names`, `id2label`, `label2id` and `num_labels` describe, whichever are given.
    The names must agree (else ValueError); a `num_labels` of another count wins, as in transformers (a new head:
    `default_label_names(num_labels)`), with a warning when it drops given names. None given: `default`.
    """
    given = {}
    if label_names is not None:
        given["label_names"] = [str(name) for name in label_names]
    for field, mapping in (("id2label", id2label), ("label2id", label2id)):
        if mapping is not None:
            given[field] = _names_from_mapping(mapping, field)
    if len({tuple(names) for names in given.values()}) > 1:
        raise EmiConfigError(f"The label fields disagree: {given}; pass one of them (the others follow).")
    names = next(iter(given.values()), None)
    if num_labels is not None and (names is None or len(names) != int(num_labels)):
        if names is not None:
            logger.warning(f"num_labels={num_labels} replaces the {len(names)} labels {names}.")
        names = default_label_names(int(num_labels))
    if names is None:
        return None if default is None else list(default)
    if not names or len(set(names)) != len(names):
        raise EmiConfigError(f"Label names must be distinct and at least one, got {names}.")
    return names


class EmiLabelsMixin(EmiPipelineTaskMixin):
    """
    `num_labels`, `id2label`, `label2id` and `label_names` as one thing: `id2label` holds the labels, the other three
    follow it, and setting any of them (in the constructor, in `from_pretrained(..., num_labels=3)` or on the config
    afterwards) updates all four. `label_names` is written to `config.json` too (for readers of the file).
    """

    @property
    def label_names(self) -> list[str]:
        return [self.id2label[i] for i in range(len(self.id2label))]

    @label_names.setter
    def label_names(self, names) -> None:
        self._set_labels(resolve_label_names(label_names=names))

    @property
    def num_labels(self) -> int | None:
        return None if self.id2label is None else len(self.id2label)

    @num_labels.setter
    def num_labels(self, num_labels: int) -> None:
        if getattr(self, "id2label", None) is None or int(num_labels) != len(self.id2label):
            self._set_labels(default_label_names(int(num_labels)))

    def _set_labels(self, names: list[str]) -> None:
        super().__setattr__("id2label", dict(enumerate(names)))
        super().__setattr__("label2id", {name: i for i, name in enumerate(names)})
        if getattr(self, "_post_init_done", False):
            self._labels_changed(names)

    def _labels_changed(self, names: list[str]) -> None:
        """Called after the labels of a built config change (the fusion config passes them on)."""

    def __setattr__(self, key, value):
        if key in ("id2label", "label2id") and value is not None and getattr(self, "_post_init_done", False):
            self._set_labels(resolve_label_names(**{key: value}))
            return
        super().__setattr__(key, value)

    def _pop_label_kwargs(self, kwargs: dict, default=EMOTION_NAMES) -> list[str] | None:
        """Resolves the label fields given to the constructor (`num_labels` and `label_names` are popped)."""
        return resolve_label_names(kwargs.pop("label_names", None), self.id2label, self.label2id,
                                   kwargs.pop("num_labels", None), default=default)

    def to_dict(self) -> dict:
        output = super().to_dict()
        output["label_names"] = self.label_names
        return output


class EmiTemporalConfig(EmiLabelsMixin, PreTrainedConfig):
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
        trainable_backbone_layers (`int`, defaults to 0): with `freeze_backbone`, the last N blocks of the backbone
            (and the norms / pooler after them) are trained; 0 keeps it wholly frozen.
        backbone_provenance (`dict`, *optional*): where the backbone's weights came from: `{"kind": "pretrained" |
            "file" | "random" | "none" | "unknown", "source", "fingerprint", "seed", ...}`, written by emi-hf where it
            builds or trains a model (`emi_hf.provenance` owns the format); None in checkpoints of earlier versions.
        hidden_size (`int`): width of the temporal model.
        tcn_kernel_size (`int`): kernel of the dilated 1-D convolutions (odd).
        tcn_dilations (`list[int]`): one residual TCN block per dilation.
        num_hidden_layers (`int`): Transformer encoder layers.
        num_attention_heads (`int`): attention heads.
        intermediate_size (`int`): feed-forward width of the Transformer layers.
        dropout (`float`): dropout in projections, TCN and Transformer.
        pooling (`str`): `"mean"` (masked mean of frame logits) or `"attention"` (masked attention pooling).
        loss_type (`str`): `"mse"` (default), `"ccc"` (1 - concordance) or `"pearson"` (1 - Pearson r).
        label_names (`list[str]`): names of the regressed intensities (default the six emotions); `num_labels`,
            `id2label` and `label2id` are the same labels in transformers' form: set any one (see `EmiLabelsMixin`).
        temporal_window (`int`, *optional*): the longest sequence (frames; tokens for the text model) the temporal
            encoder runs over at once: the span training showed it (training sets it: the frame cap, or the longest
            training sequence if shorter). A longer input is scored over overlapping windows of this length, each at
            positions 0..temporal_window-1, stitched (the rule: `temporal_emi.TemporalEncoder`). None: the whole
            sequence at once. Defaults: 512 (visual), 1024 (audio), None (text); a checkpoint saved before this field
            existed takes it from the `results.json` beside it (`max_frames` / `max_audio_frames`), else these.
        temporal_block (`str`, defaults to `"tcn-transformer"`, also that of older checkpoints): or `"lstm"`: a
            packed bidirectional LSTM of `lstm_layers` (2) layers of `lstm_hidden` (default `hidden_size`) per
            direction over each clip's valid frames; it has no positions, so `temporal_window` does not apply.
    """

    freeze_backbone: bool = True
    backbone_precision: str = "float32"
    trainable_backbone_layers: int = 0
    backbone_provenance: dict | None = None
    hidden_size: int = 128
    tcn_kernel_size: int = 3
    tcn_dilations: list[int] | tuple[int, ...] = (1, 2, 4)
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 256
    dropout: float = 0.1
    pooling: str = "attention"
    loss_type: str = "mse"
    initializer_range: float = 0.02
    temporal_window: int | None = None
    temporal_block: str = "tcn-transformer"
    lstm_layers: int = 2
    lstm_hidden: int | None = None

    def __post_init__(self, **kwargs):
        self.tcn_dilations = list(self.tcn_dilations)
        self.temporal_window = int(self.temporal_window) if self.temporal_window else None  # 0: none, as a cap
        self._set_labels(self._pop_label_kwargs(kwargs))
        self.problem_type = "regression"
        super().__post_init__(**kwargs)
        self._validate_temporal()

    def _validate_temporal(self) -> None:
        if int(self.trainable_backbone_layers) < 0:
            raise EmiConfigError(f"trainable_backbone_layers must be >= 0, got {self.trainable_backbone_layers}.")
        if self.backbone_precision not in BACKBONE_PRECISIONS:
            raise EmiConfigError(
                f"backbone_precision must be one of {BACKBONE_PRECISIONS}, got {self.backbone_precision!r}."
            )
        if self.hidden_size % self.num_attention_heads != 0:
            raise EmiConfigError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if self.tcn_kernel_size % 2 != 1:
            raise EmiConfigError(f"tcn_kernel_size must be odd to keep frames aligned, got {self.tcn_kernel_size}.")
        if self.loss_type not in LOSS_TYPES:
            raise EmiConfigError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}.")
        if self.pooling not in POOLING_TYPES:
            raise EmiConfigError(f"pooling must be one of {POOLING_TYPES}, got {self.pooling!r}.")
        if self.temporal_window is not None and self.temporal_window < 1:
            raise EmiConfigError(f"temporal_window must be a number of frames >= 1 or None, got {self.temporal_window}.")
        if self.temporal_block not in TEMPORAL_BLOCKS:
            raise EmiConfigError(f"temporal_block must be one of {TEMPORAL_BLOCKS}, got {self.temporal_block!r}.")
        if int(self.lstm_layers) < 1 or int(self.lstm_hidden or 1) < 1:
            raise EmiConfigError(f"lstm_layers and lstm_hidden must be >= 1, got {self.lstm_layers}, {self.lstm_hidden}.")


class EmiVisualConfig(EmiTemporalConfig):
    r"""
    Configuration of [`EmiVisualModel`]: per-frame ResNet18 face embeddings and AU intensities, each projected to
    `hidden_size`, combined, then the temporal model of [`EmiTemporalConfig`] (whose fields it has too).

    Args:
        visual_feature_dim (`int`, defaults to 512): size of a face embedding (ResNet18 without its classifier); the
            backbone's embedding size (`EmiVisualModel.from_backbone` sets it).
        au_names (`list[str]`): the Action Units of the AU channel, in order; must match the processor's AU backend.
        face_size (`int`, defaults to 112): side of the aligned face crops the backbone sees (its input size).
        backbone (`str`, defaults to `"resnet18"`): the face backbone: `"resnet18"`, `"torchvision:NAME"`,
            `"timm:NAME"`, or a transformers vision model id / folder (then `backbone_config` holds its config); see
            `encoders_emi.py`.
        backbone_config (`dict`, *optional*): config of a transformers face backbone (the checkpoint is
            self-contained: the backbone is built from it).
        backbone_pooling (`str`, *optional*): for a transformers backbone, `"pooler"` (pooler_output), `"cls"`
            (CLS token of last_hidden_state) or `"mean"` (mean patch token); default per family (`encoders_emi`).
        image_mean, image_std (`list[float]`): normalisation of the crops the backbone expects (ImageNet's for
            ResNet18).
        backbone_chunk_size (`int`, defaults to 32): face crops per backbone call when running from pixels.
        channel_dropout (`float`): probability, in training, of dropping a whole input channel (face embedding or AUs)
            for a clip, so that the model does not lean on one channel only.
    """

    model_type = "emi_visual"

    visual_feature_dim: int = 512
    au_names: list[str] | tuple[str, ...] = DEFAULT_AU_NAMES
    face_size: int = 112
    backbone: str = "resnet18"
    backbone_config: dict | None = None
    backbone_pooling: str | None = None
    image_mean: list[float] | tuple[float, ...] = (0.485, 0.456, 0.406)
    image_std: list[float] | tuple[float, ...] = (0.229, 0.224, 0.225)
    backbone_chunk_size: int = 32
    channel_dropout: float = 0.1
    temporal_window: int | None = 512  # frames (17 s at 30 fps): the training default of --max-frames

    def __post_init__(self, **kwargs):
        self.au_names = list(self.au_names)
        super().__post_init__(**kwargs)
        self.image_mean, self.image_std = [float(v) for v in self.image_mean], [float(v) for v in self.image_std]
        if hasattr(self.backbone_config, "to_dict"):
            self.backbone_config = self.backbone_config.to_dict()
        named = self.backbone == "resnet18" or self.backbone.split(":", 1)[0] in ("torchvision", "timm")
        if not named and not self.backbone_config:
            raise EmiConfigError(
                f"Face backbone {self.backbone!r}: a transformers model needs its backbone_config; build the config "
                f"with EmiVisualModel.from_backbone({self.backbone!r}) (or use 'resnet18', 'torchvision:NAME', "
                "'timm:NAME')."
            )
        if self.backbone_pooling not in (None, "pooler", "cls", "mean"):
            raise EmiConfigError(f"backbone_pooling must be 'pooler', 'cls' or 'mean', got {self.backbone_pooling!r}.")

    @property
    def num_aus(self) -> int:
        return len(self.au_names)


class EmiAudioConfig(EmiTemporalConfig):
    r"""
    Configuration of [`EmiAudioModel`]: wav2vec 2.0 frame embeddings, projected, then the temporal model of
    [`EmiTemporalConfig`] (whose fields it has too), as in the visual model.

    Args:
        speech_encoder_config (`dict` or `PreTrainedConfig`): config of the speech encoder (any audio encoder that
            `AutoModel.from_config` builds, or a Whisper config: its encoder alone, on log-mel input); defaults to a
            wav2vec2-base sized `Wav2Vec2Config`.
        audio_feature_dim (`int`, defaults to 768): size of an encoder frame; must equal the encoder's hidden size.
        sampling_rate (`int`, defaults to 16000): waveform rate the encoder expects.
        encoder_window_s (`float`, defaults to 30.0): longer waveforms are encoded in consecutive windows of this
            many seconds, so memory stays bounded (self-attention over a whole long recording is quadratic). A
            Whisper encoder's windows are at most its fixed input (30 s).
        speech_encoder_name (`str`, *optional*): Hub id or folder the encoder's weights came from (model card).
        speech_layers (`list[int]`, *optional*): hidden states of the encoder to use (0 = the input of its first
            layer, i = the output of layer i); default the last. With more than one, the model learns a
            softmax-weighted sum of them (SUPERB); cached features hold the chosen layers side by side
            (`[T_a, len(speech_layers) * audio_feature_dim]`).
        max_audio_s (`float`, *optional*): waveforms longer than this are cropped to their first `max_audio_s`
            seconds before encoding (off by default).
        cache_dtype (`str`, defaults to `"float32"`): dtype the extraction stores encoder frames in (`"float16"`
            halves the disk).
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
    speech_encoder_name: str | None = None
    speech_layers: list[int] | tuple[int, ...] | None = None
    max_audio_s: float | None = None
    cache_dtype: str = "float32"
    speech_head_labels: list[str] | None = None  # outputs of an audEERING-style head (A/D/V) after each frame
    temporal_window: int | None = 1024  # encoder frames (20 s at 50 Hz): the training default of --max-audio-frames

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._validate_speech_options()
        encoder_width = getattr(self.speech_encoder_config, "hidden_size", None)
        if encoder_width is not None and encoder_width + (head := len(self.speech_head_labels or ())) != \
                self.audio_feature_dim:  # an audEERING-style head: its outputs follow the last hidden state
            raise EmiConfigError(f"audio_feature_dim ({self.audio_feature_dim}) must equal the speech encoder's "
                                 f"hidden_size ({encoder_width}){f' + its {head} head outputs' if head else ''}.")

    def _validate_speech_options(self) -> None:
        if self.cache_dtype not in ("float32", "float16"):
            raise EmiConfigError(f"cache_dtype must be 'float32' or 'float16', got {self.cache_dtype!r}.")
        if self.max_audio_s is not None and not float(self.max_audio_s) > 0:
            raise EmiConfigError(f"max_audio_s must be a positive number of seconds or None, got {self.max_audio_s}.")
        if self.speech_layers is None:
            return
        encoder = self.speech_encoder_config
        depth = getattr(encoder, "encoder_layers", None) or getattr(encoder, "num_hidden_layers", None)
        layers = [int(i) for i in self.speech_layers]
        if not layers or (depth is not None and any(not -depth - 1 <= i <= depth for i in layers)):
            raise EmiConfigError(f"speech_layers {list(self.speech_layers)} must be hidden-state indices in "
                                 f"[0, {depth}] (or negative from the end) of the speech encoder.")
        self.speech_layers = [i % (depth + 1) if depth is not None else i for i in layers]

    @property
    def num_speech_layers(self) -> int:
        """Hidden states per cached frame (1 when `speech_layers` is unset)."""
        return 1 if self.speech_layers is None else len(self.speech_layers)


class EmiTextConfig(EmiTemporalConfig):
    r"""
    Configuration of [`EmiTextModel`]: token embeddings of a frozen transformers text encoder (GTE-style, BERT,
    RoBERTa, multilingual E5, ...) over the clip's transcript, projected, then the temporal model of
    [`EmiTemporalConfig`] (whose fields it has too), as in the other two models. A clip with an empty transcript
    is a missing modality (NaN intensities, `modality_mask` False), not an error.

    Args:
        text_encoder_config (`dict` or `PreTrainedConfig`): config of the text encoder (anything `AutoModel.from_config`
            builds into a model with `last_hidden_state`); defaults to a BERT-base sized `BertConfig` (the shape of
            `thenlper/gte-base`).
        text_feature_dim (`int`, defaults to 768): size of a token embedding; must equal the encoder's hidden size.
        text_encoder_name (`str`, *optional*): Hub id or folder the encoder (and its tokenizer) came from.
        max_text_tokens (`int`, defaults to 512; or `text_max_tokens`): transcripts are truncated to this many tokens.
        text_pooling (`str`, defaults to `"tokens"`): the text features: every token's state `[tokens, D]`, the
            [CLS] state `"cls"` or the masked mean `"mean"` (`[1, D]`); extraction and predict / stream alike.
        asr_backend, asr_model, asr_language (`str`, *optional*): how the transcripts of the training data were made
            (`"transformers"` / `"faster-whisper"` and a model id or folder; `asr_backend="file"` when they were read
            from a file): inference transcribes new clips the same way unless told otherwise.
    """

    model_type = "emi_text"
    sub_configs_defaults = {"text_encoder_config": SubConfigSpec(AutoConfig, model_type="bert")}

    text_encoder_config: dict | PreTrainedConfig | None = None
    text_feature_dim: int = 768
    text_encoder_name: str | None = None
    max_text_tokens: int = 512
    text_pooling: str = "tokens"
    asr_backend: str | None = None
    asr_model: str | None = None
    asr_language: str | None = None

    def __post_init__(self, **kwargs):
        if kwargs.get("text_max_tokens") is not None:  # the recipes' name of max_text_tokens
            self.max_text_tokens = int(kwargs.pop("text_max_tokens"))
        super().__post_init__(**kwargs)
        if self.text_pooling not in TEXT_POOLINGS:
            raise EmiConfigError(f"text_pooling must be one of {TEXT_POOLINGS}, got {self.text_pooling!r}.")
        width = getattr(self.text_encoder_config, "hidden_size", None)
        if width is not None and width != self.text_feature_dim:
            raise EmiConfigError(f"text_feature_dim ({self.text_feature_dim}) must equal the text encoder's "
                                 f"hidden_size ({width}).")
        if int(self.max_text_tokens) < 1:
            raise EmiConfigError(f"max_text_tokens must be >= 1, got {self.max_text_tokens}.")


FUSION_MODALITIES = ("visual", "audio", "text")
"""The modalities a fusion model can hold, in this order (sub-configs `visual_config`, `audio_config`,
`text_config`; sub-models `visual`, `audio`, `text`)."""


FUSION_TYPES = ("late", "feature", "cross-attention")
"""`fusion_type` choices: late fusion of clip predictions, feature-level fusion of pooled embeddings or of them
queried by the text state (cross-attention)."""


def equal_modality_weights(modalities, num_labels: int) -> dict[str, list[float]]:
    """`{modality: [num_labels] weights}`, every emotion's shared equally by `modalities` (the plain average)."""
    return {m: [1.0 / len(modalities)] * num_labels for m in modalities}


def _simplex_columns(weights: dict, modalities, num_labels: int) -> dict[str, list[float]]:
    """`{modality: [num_labels] weights}` checked: every modality present, weights >= 0, each emotion's summing to 1
    (within 1e-6; renormalised exactly)."""
    if sorted(weights) != sorted(modalities):
        raise EmiConfigError(f"modality_weights must have one entry per modality {list(modalities)}, got "
                             f"{sorted(weights)}.")
    rows = {m: [float(w) for w in weights[m]] for m in modalities}
    if any(len(row) != num_labels or any(not w >= 0.0 for w in row) for row in rows.values()):
        raise EmiConfigError(f"modality_weights must hold {num_labels} non-negative numbers per modality, got "
                             f"{weights}.")
    totals = [sum(rows[m][i] for m in modalities) for i in range(num_labels)]
    if any(abs(total - 1.0) > 1e-6 for total in totals):
        raise EmiConfigError(f"each emotion's modality_weights must sum to 1 (the simplex), got sums {totals}.")
    return {m: [w / total for w, total in zip(rows[m], totals)] for m in modalities}


class EmiFusionConfig(EmiLabelsMixin, PreTrainedConfig):
    r"""
    Configuration of [`EmiFusionModel`]: any non-empty set of the visual, audio and text models, and their fusion.

    Args:
        visual_config (`dict` or [`EmiVisualConfig`], *optional*): config of the visual model.
        audio_config (`dict` or [`EmiAudioConfig`], *optional*): config of the audio model.
        text_config (`dict` or [`EmiTextConfig`], *optional*): config of the text model.
            The modalities of the fusion are those whose config is given (`modalities`); none given: visual and
            audio with default configs (the paper's pair).
        fusion_type (`str`, defaults to `"late"`): `"late"`: per-emotion weighted average of the clip predictions
            (`modality_weights`), renormalised per clip over the modalities present; `"feature"`: each model's
            pooled embedding, concatenated (zeros and a 0 flag for a missing one), through an MLP head, trained
            jointly with modality dropout; `"cross-attention"`: the text model's pooled state queries the audio and
            the visual sequences (`modeling_fusion_emi.CrossAttentionFusionHead`), trained as `"feature"` is.
            `fusion_mode` is accepted as another name for this field.
        modality_weights (`dict[str, list[float]]`, *optional*): late fusion: per modality, one weight per emotion;
            each emotion's weights are on the simplex (>= 0, sum 1). Default: equal (the paper's plain average).
        fusion_weights (`list[float]`, *optional*): the earlier form of the weights, for a visual + audio fusion: the
            visual share per emotion (audio `1 - w`). Still accepted (checkpoints of earlier versions), and kept in
            `config.json` for such a pair; `config.fusion_weights` reads / sets it.
        feature_fusion_hidden_size (`int`, defaults to 128): width of the feature-level fusion MLP.
        cross_attention_heads (`int`, defaults to 4), cross_attention_dim (`int`, defaults to 512): the heads and the
            width of the cross-attention fusion (`cross_attention_dim` divisible by the heads).
        modality_dropout (`float`, defaults to 0.25): feature-level and cross-attention fusion, in training:
            probability of dropping each present modality of a clip (never all), so that a modality missing at test
            time is handled as in training.
        unimodal_loss_weight (`float`, defaults to 0.5): feature-level fusion: the training loss adds this times the
            mean of the models' own losses, so that each model's clip intensities stay meaningful.
        label_names / num_labels / id2label / label2id (*optional*): the labels of the models (default theirs, which
            must agree); set on the fusion config, they are set on every sub-config too.
    """

    model_type = "emi_fusion"
    sub_configs_defaults = {
        "visual_config": SubConfigSpec(EmiVisualConfig, optional=True),
        "audio_config": SubConfigSpec(EmiAudioConfig, optional=True),
        "text_config": SubConfigSpec(EmiTextConfig, optional=True),
    }

    visual_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    fusion_type: str = "late"
    modality_weights: dict | None = None
    feature_fusion_hidden_size: int = 128
    cross_attention_heads: int = 4
    cross_attention_dim: int = 512
    modality_dropout: float = 0.25
    unimodal_loss_weight: float = 0.5

    def __post_init__(self, **kwargs):
        given = self._pop_label_kwargs(kwargs, default=None)  # labels set on the fusion config itself, if any
        visual_share = kwargs.pop("fusion_weights", None)
        if kwargs.get("fusion_mode") is not None:  # the recipes' / command line's name of fusion_type
            self.fusion_type = kwargs.pop("fusion_mode")
        if self.visual_config is None and self.audio_config is None and self.text_config is None:
            self.visual_config, self.audio_config = {}, {}  # the paper's pair, default configs
        super().__post_init__(**kwargs)
        labels = self._agreed_labels(given)
        if self.fusion_type not in FUSION_TYPES:
            raise EmiConfigError(f"fusion_type must be one of {FUSION_TYPES}, got {self.fusion_type!r}.")
        if not 0.0 <= float(self.modality_dropout) < 1.0:
            raise EmiConfigError(f"modality_dropout must be in [0, 1), got {self.modality_dropout}.")
        if self.fusion_type == "cross-attention" and ("text" not in self.modalities or len(self.modalities) < 2
                                                      or int(self.cross_attention_dim) % int(self.cross_attention_heads)):
            raise EmiConfigError(f"fusion_type='cross-attention' needs a text model (its state is the query), a visual "
                                 f"and/or audio one, cross_attention_dim a multiple of cross_attention_heads; got "
                                 f"{self.modalities}, {self.cross_attention_dim}, {self.cross_attention_heads}.")
        if self.modality_weights is None and visual_share is not None:  # an earlier version's form (visual + audio)
            if len(visual_share) == len(labels):
                self.fusion_weights = visual_share
            elif given is None:
                raise EmiConfigError(f"fusion_weights must be {len(labels)} numbers in [0, 1], got {visual_share}.")
        weights = self.modality_weights
        if weights is None or (given is not None and len(next(iter(weights.values()))) != len(labels)):
            self.modality_weights = self.equal_weights(len(labels))  # default, or labels set anew
        self.modality_weights = _simplex_columns(self.modality_weights, self.modalities, len(labels))
        self._set_labels(labels)
        self.problem_type = "regression"

    def _agreed_labels(self, given) -> list[str]:
        configs = self.sub_configs_of_modalities()
        labels = list(next(iter(configs.values())).label_names)
        if given is not None and given != labels:
            for config in configs.values():
                config.label_names = given
            return given
        for modality, config in configs.items():
            if list(config.label_names) != labels:
                raise EmiConfigError(f"The {', '.join(configs)} models regress different labels: {labels} vs "
                                     f"{list(config.label_names)} ({modality}).")
        return labels

    @property
    def modalities(self) -> list[str]:
        """The modalities of this fusion, in `FUSION_MODALITIES` order."""
        return [m for m in FUSION_MODALITIES if getattr(self, f"{m}_config", None) is not None]

    def sub_configs_of_modalities(self) -> dict:
        return {m: getattr(self, f"{m}_config") for m in self.modalities}

    def equal_weights(self, num_labels: int) -> dict[str, list[float]]:
        return equal_modality_weights(self.modalities, num_labels)

    @property
    def loss_type(self) -> str:
        return next(iter(self.sub_configs_of_modalities().values())).loss_type

    @property
    def fusion_weights(self) -> list[float] | None:
        """Visual + audio fusion: the visual share per emotion (the earlier form of `modality_weights`); else None."""
        if self.modalities != ["visual", "audio"] or self.modality_weights is None:
            return None
        return list(self.modality_weights["visual"])

    @fusion_weights.setter
    def fusion_weights(self, weights) -> None:
        if self.modalities != ["visual", "audio"]:
            raise EmiConfigError(f"fusion_weights (the visual share) is for a visual + audio fusion; this one has "
                                 f"{self.modalities}: set modality_weights instead.")
        weights = [float(w) for w in weights]
        if not all(0.0 <= w <= 1.0 for w in weights):
            raise EmiConfigError(f"fusion_weights must be numbers in [0, 1], got {weights}.")
        self.modality_weights = {"visual": weights, "audio": [1.0 - w for w in weights]}

    def to_dict(self) -> dict:
        output = super().to_dict()
        if self.fusion_weights is not None:  # readable by earlier versions too
            output["fusion_weights"] = self.fusion_weights
        for modality in FUSION_MODALITIES:  # absent modalities are left out, not written as null
            if output.get(f"{modality}_config") is None:
                output.pop(f"{modality}_config", None)
        return output

    def _labels_changed(self, names: list[str]) -> None:
        # One label set for the fusion and every model; weights of another label set are reset to equal ones.
        for config in self.sub_configs_of_modalities().values():
            config.label_names = names
        if len(next(iter(self.modality_weights.values()))) != len(names):
            self.modality_weights = self.equal_weights(len(names))


__all__ = [
    "BACKBONE_PRECISIONS", "DEFAULT_AU_NAMES", "EMOTION_NAMES", "FUSION_MODALITIES", "FUSION_TYPES", "LOSS_TYPES",
    "POOLING_TYPES", "TEMPORAL_BLOCKS", "TEXT_POOLINGS", "EmiAudioConfig", "EmiFusionConfig", "EmiLabelsMixin",
    "EmiTemporalConfig", "EmiTextConfig", "EmiVisualConfig", "default_label_names",
    "resolve_label_names",
]
