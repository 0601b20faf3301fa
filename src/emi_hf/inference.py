"""End-to-end inference: load a checkpoint (any of the three model types) with its processor, predict clips.

`predict_clips` returns one [`ClipPrediction`] per clip, the one owner of what a prediction holds: `emi-hf predict`
prints it (or its `to_dict()` as JSON), the quickstart prints its intensities and the demo draws it. A clip is
scored whole through the model's forward, which windows one longer than the model's `temporal_window`
(`temporal_emi.TemporalEncoder`): the same numbers as `emi-hf evaluate` / `submit` on its extracted features.
"""

from __future__ import annotations

import math
import os
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from .models.configuration_emi import FUSION_MODALITIES
from .models.modeling_fusion_emi import output_modalities
from .devices import default_device
from .modalities import MODALITY_NAMES
from .errors import EmiNotFoundError, EmiUsageError, loading
from .media.stages import ClipStages

MODALITIES = (*MODALITY_NAMES, "fused")  # keys of ClipPrediction.modality_intensities, in display order
_MODEL_MODALITIES = {"emi_visual": ("visual",), "emi_audio": ("audio",), "emi_text": ("text",)}


def _member_config(model):
    """The config of the model that predicts: the model's own, or an ensemble's first member's."""
    return model.members[0].config if getattr(model.config, "member_model_type", None) else model.config


def model_modalities(model) -> list[str]:
    """The unimodal parts of an emi-hf model (a fusion model's modalities; an ensemble's members')."""
    config = _member_config(model)
    return list(getattr(config, "modalities", None) or _MODEL_MODALITIES[config.model_type])


def model_stages(model) -> ClipStages:
    """The clip-pipeline stages `model` needs (the rule of `emi_hf.media.stages`, read by predict, the demo and
    streaming): an audio model runs no face detection, a visual model decodes no audio, a text model neither."""
    return ClipStages.for_modalities(model_modalities(model))


class TextSide:
    """
    The text inputs of a model with a text part, for raw clips: each clip's transcript (from `transcripts`, a CSV /
    JSON source the user has, else transcribed as the training data was: the text config's `asr_backend` /
    `asr_model`, or the `asr_model` given) tokenised by the checkpoint's `text_tokenizer/`. `use_cache=False`: no
    computed transcript is written to the transcript cache (the demo: nothing derived from an upload stays on disk).
    """

    def __init__(self, model, transcripts=None, asr_model: str | None = None, asr_backend: str | None = None,
                 language: str | None = None, device: str = "cpu", missing_ok: bool = False,
                 use_cache: bool = True):
        from transformers import AutoTokenizer

        from .text.encoder import TEXT_TOKENIZER_DIR
        from .text.transcribe import Transcriber
        from .text.transcript_files import read_transcripts

        config = _member_config(model)
        config = getattr(config, "text_config", None) or config  # a fusion's text model, or the text model
        source = str(model.name_or_path)
        try:  # a local checkpoint folder, or a Hub repository (its text_tokenizer/ subfolder)
            self.tokenizer = AutoTokenizer.from_pretrained(os.path.join(source, TEXT_TOKENIZER_DIR)) \
                if os.path.isdir(source) else AutoTokenizer.from_pretrained(source, subfolder=TEXT_TOKENIZER_DIR)
        except (OSError, ValueError) as error:
            raise EmiNotFoundError(f"{source} has a text model but no loadable {TEXT_TOKENIZER_DIR}/ folder (its "
                                    f"text encoder's tokenizer; train.py saves it there): {error}") from error
        self.max_length = int(config.max_text_tokens)
        self.table = None if transcripts is None else read_transcripts(transcripts)
        transcribed = config.asr_backend not in (None, "file")  # the training transcripts came from ASR
        asr_model = asr_model or (config.asr_model if transcribed else None)
        backend = asr_backend or (config.asr_backend if transcribed else "transformers")
        self.transcriber = None if asr_model is None else Transcriber(
            backend, asr_model, language=language or config.asr_language, device=device, use_cache=use_cache)
        self.missing_ok = missing_ok
        self.last_note: str | None = None  # why the last clip had no transcript, with `missing_ok`

    @classmethod
    def for_model(cls, model, **options) -> TextSide | None:
        """`TextSide(model, **options)` for a model with a text part; None for one without."""
        return cls(model, **options) if "text" in model_modalities(model) else None

    @classmethod
    def default_for(cls, model) -> TextSide | None:
        """`for_model(model)` with the default options, made once per model (kept while the model lives): its
        tokenizer, voice-activity detector and ASR model load once however often `predict_clips` is called."""
        if model not in _DEFAULT_TEXT_SIDES:
            _DEFAULT_TEXT_SIDES[model] = cls.for_model(model)
        return _DEFAULT_TEXT_SIDES[model]

    def transcript(self, path) -> str:
        """The clip's transcript; with `missing_ok`, "" (the text model is then skipped) where there is no source or
        transcription fails, the reason in `last_note`."""
        from .text.transcript import TranscriptionError

        self.last_note = None
        if self.table is not None:
            found = self.table.lookup(path)
            if found is not None:
                return found.text
        try:
            if self.transcriber is None:
                raise EmiUsageError(f"{path}: no transcript for it{' in the transcripts given' if self.table else ''}, "
                                    "and the model's transcripts were read from a file: pass --transcripts FILE with a "
                                    "row for it, or --asr-model ID to transcribe it.")
            return self.transcriber.transcribe(path).text
        except (ValueError, TranscriptionError, OSError) as error:
            if not self.missing_ok:
                raise
            self.last_note = str(error)
            return ""

    def inputs(self, texts: list[str], device) -> dict:
        """`input_ids` and `text_mask` of the transcripts (an empty one: no valid token, a missing modality)."""
        encoded = self.tokenizer([t.strip() or self.tokenizer.pad_token for t in texts], padding=True,
                                 truncation=True, max_length=self.max_length, return_tensors="pt")
        mask = encoded["attention_mask"].clone()
        mask[[i for i, t in enumerate(texts) if not t.strip()]] = 0
        return {"input_ids": encoded["input_ids"].to(device), "text_mask": mask.to(device)}


_DEFAULT_TEXT_SIDES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its default TextSide


def load_for_inference(model_name_or_path: str | os.PathLike, processor=None, revision: str | None = None,
                       device: str | None = None, allow_random_backbones: bool = False):
    """(model in eval mode on `device`, processor) for scoring raw inputs; `processor` is a folder, an EmiProcessor,
    or None (the model's). A model with a random or no backbone is refused (`emi_hf.provenance.RandomBackboneError`)
    unless `allow_random_backbones`; the model remembers the allowance for `predict_clips` and `EmiStreamer`."""
    from transformers import AutoModel

    import emi_hf  # noqa: F401  (registers the Auto classes)

    from .models.processing_emi import EmiProcessor
    from .provenance import check_raw_input_backbones

    with loading(model_name_or_path):
        model = AutoModel.from_pretrained(model_name_or_path, revision=revision)
    check_raw_input_backbones(model, allow_random_backbones, source=model_name_or_path)
    model = model.to(default_device(device)).eval()
    if processor is None or isinstance(processor, (str, os.PathLike)):
        with loading(processor or model_name_or_path, "processor", "A model folder holds its processor "
                     "(processor_config.json) when trained on features that name one; else pass --processor FOLDER "
                     "(e.g. the features folder's processor/)."):
            processor = EmiProcessor.from_pretrained(processor or model_name_or_path, revision=revision)
    processor.check_model_compatibility(model)  # the AUs it was trained on, in the same order
    return model, processor


Timeline = list[list[float | None]]  # [frames][num_labels], None where the model had no valid input


@dataclass
class ClipPrediction:
    """One clip's prediction. Clip intensities are NaN, timeline values None, where the model had no input.

    Attributes:
        path: the video file.
        label_names: the emotions, in the order of every timeline row.
        modality_intensities: ``"visual"`` / ``"audio"`` / ``"text"`` / ``"fused"`` -> {emotion: intensity in
            [0, 1]}, for the modalities the model has (a unimodal model: its own; a fusion model: each of its
            modalities and the fused one).
        modality_mask: ``"visual"`` / ``"audio"`` / ``"text"`` -> whether the clip had that input (a face in some
            frame; audio; a non-empty transcript).
        transcript: the transcript the text model read (None without a text model).
        timestamps: ``[frames]`` seconds of the video frames.
        frame_intensities: ``[frames][6]`` face timeline (None where no face); None for an audio model.
        audio_frame_intensities: ``[audio frames][6]`` voice timeline (None rows: no audio, or a batch's padding);
            None for a visual model.
        frame_mask: ``[frames]`` bool, True where a face was found.
        face_crops: ``[frames, 112, 112, 3]`` uint8 aligned face crops (``keep_crops=True``), else None.
        face_fraction: share of the frames with a face. audio_present: the clip had usable audio. Each is None when
            the model has no part that reads it (`model_stages`: faces were not looked for, audio not decoded).
        audio_seconds: length of the waveform the audio model heard (0.0 without audio); it starts at `audio_start`.
        duration, fps, warnings: from the processor's clip metadata.
        timing: ``preprocess_s`` (decoding, faces, AUs and the face backbone, which runs in a background thread while
            the clip is decoded and tracked) and ``compute_s`` (the speech encoder and the temporal models).
    """

    path: str
    label_names: list[str]
    modality_intensities: dict[str, dict[str, float]]
    modality_mask: dict[str, bool]
    timestamps: list[float]
    frame_intensities: Timeline | None
    audio_frame_intensities: Timeline | None
    frame_mask: np.ndarray
    face_crops: np.ndarray | None
    face_fraction: float | None
    audio_present: bool | None
    audio_seconds: float
    audio_start: float | None
    duration: float | None
    fps: float | None
    warnings: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    transcript: str | None = None

    @property
    def intensities(self) -> dict[str, float]:
        """The model's clip intensities: the fused ones for a fusion model, else its one modality's."""
        found = self.modality_intensities
        return next(found[m] for m in ("fused", *FUSION_MODALITIES) if m in found)

    def to_dict(self) -> dict:
        """What `emi-hf predict --json` prints: path, intensities, frame_intensities, timestamps, face_fraction,
        audio_present, timing; and visual / audio (clip intensities) for a fusion model.

        `frame_intensities` is the model's frame-level output, one row per video frame: the face timeline, or for an
        audio model its voice timeline cut to that many rows (the format this command has always written)."""
        frames = self.frame_intensities
        if frames is None and self.audio_frame_intensities is not None:
            frames = self.audio_frame_intensities[: len(self.timestamps)]
        result = {"path": self.path, "intensities": self.intensities, "frame_intensities": frames,
                  "timestamps": self.timestamps, "face_fraction": self.face_fraction,
                  "audio_present": self.audio_present, "timing": self.timing}
        if "fused" in self.modality_intensities:
            result.update({m: self.modality_intensities[m] for m in FUSION_MODALITIES if m in self.modality_intensities})
        if self.transcript is not None:
            result["transcript"] = self.transcript
        return result


def _named(values: torch.Tensor, names) -> dict[str, float]:
    return {name: float(v) for name, v in zip(names, values.tolist())}


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)


def _timeline(rows: torch.Tensor) -> Timeline:
    return [[None if math.isnan(x) else float(x) for x in row] for row in rows.float().tolist()]


def _model_outputs(model_type: str, output, i: int, num_frames: int, names) -> dict:
    """The ClipPrediction fields read from clip `i` of a model output."""
    if model_type == "emi_fusion":
        present = output_modalities(output)
        clip = {**{m: getattr(output, f"{m}_intensities")[i] for m in present}, "fused": output.intensities[i]}
        masks = {m: bool(getattr(output, f"{m}_mask")[i]) for m in present}
        visual_rows = output.frame_intensities[i][:num_frames] if "visual" in present else None
        audio_rows = output.audio_frame_intensities[i] if "audio" in present else None
    else:
        (modality,) = _MODEL_MODALITIES[model_type]
        clip, masks = {modality: output.intensities[i]}, {modality: bool(output.modality_mask[i])}
        visual_rows = output.frame_intensities[i][:num_frames] if modality == "visual" else None
        audio_rows = output.frame_intensities[i] if modality == "audio" else None
    return {
        "modality_intensities": {m: _named(values, names) for m, values in clip.items()},
        "modality_mask": masks,
        "frame_intensities": None if visual_rows is None else _timeline(visual_rows),
        "audio_frame_intensities": None if audio_rows is None else _timeline(audio_rows),
    }


@torch.inference_mode()
def predict_clips(model, processor, videos, batch_size: int = 1, *, use_cache: bool | None = None,
                  keep_crops: bool = False, text_side: TextSide | None = None,
                  allow_random_backbones: bool = False) -> list[ClipPrediction]:
    """
    Predicts each video (a path or paths); returns one [`ClipPrediction`] per clip, in order.
    A model with a random or no backbone is refused (`emi_hf.provenance.check_raw_input_backbones`) unless
    `allow_random_backbones` (or it was allowed when loaded with `load_for_inference`).

    `use_cache`: the processor's clip cache (None: the processor's setting; the demo passes False so that nothing
    derived from an upload stays on disk). `keep_crops`: keep the aligned face crops in `ClipPrediction.face_crops`.
    `text_side`: where a model with a text part gets each clip's transcript (default `TextSide.default_for(model)`:
    transcribed as the training data was, its models loaded once per model). Only the stages the model needs run
    (`model_stages`). Raises `emi_hf.media.errors.EmiInputError` for a clip that cannot be read.
    """
    from .provenance import check_raw_input_backbones

    check_raw_input_backbones(model, allow_random_backbones, source=getattr(model, "name_or_path", None))
    if text_side is None:
        text_side = TextSide.default_for(model)
    from .encoders.face_embedding import FaceEmbedder

    videos = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
    stages = model_stages(model)
    embedder = FaceEmbedder.for_model(processor, model) if stages.faces else None
    predictions = []
    for start in range(0, len(videos), batch_size):
        chunk = [str(v) for v in videos[start : start + batch_size]]
        began = time.perf_counter()
        clips = [processor.process_clip(path, use_cache=use_cache, face_embedder=embedder, keep_crops=keep_crops,
                                        stages=stages) for path in chunk]
        predictions += score_clips(model, processor, chunk, clips, stages=stages, text_side=text_side,
                                   keep_crops=keep_crops, began=began)
    return predictions


@torch.inference_mode()
def score_clips(model, processor, paths: list[str], clips, *, stages: ClipStages, text_side: TextSide | None,
                transcripts: list[str | None] | None = None, keep_crops: bool = False,
                began: float | None = None) -> list[ClipPrediction]:
    """The [`ClipPrediction`]s of clips already processed (`processor.process_clip` of each of `paths` with
    `stages`), scored as one batch: the second half of `predict_clips`, also run by the `transformers.pipeline()`
    task (`pipeline_emi`). `transcripts`: each clip's transcript (None: `text_side.transcript(path)`)."""
    names = list(model.config.id2label[i] for i in range(len(model.config.id2label)))
    device = next(model.parameters()).device
    began = time.perf_counter() if began is None else began
    inputs = processor.collate(clips, return_tensors="pt", stages=stages)
    preprocessed = time.perf_counter()
    tensors = {k: v.to(device) for k, v in inputs.for_model(model).items() if isinstance(v, torch.Tensor)}
    transcripts = list(transcripts) if transcripts is not None else [None] * len(paths)
    if text_side is not None:
        transcripts = [text_side.transcript(path) if text is None else text for path, text in zip(paths, transcripts)]
        tensors.update(text_side.inputs(transcripts, device))
    output = model(**tensors)
    finished = time.perf_counter()
    timing = {"preprocess_s": (preprocessed - began) / len(paths), "compute_s": (finished - preprocessed) / len(paths)}
    predictions = []
    for i, (clip, meta) in enumerate(zip(clips, inputs.metadata)):
        predictions.append(ClipPrediction(
            path=paths[i], label_names=names,
            **_model_outputs(getattr(model.config, "member_model_type", None) or model.config.model_type,  # ensemble
                             output, i, len(meta["timestamps"]), names),
            timestamps=list(meta["timestamps"]), frame_mask=np.asarray(clip.frame_mask) > 0,
            face_crops=clip.face_crops if keep_crops and stages.faces else None,
            face_fraction=_float_or_none(meta["face_fraction"]),
            audio_present=None if meta["audio_present"] is None else bool(meta["audio_present"]),
            audio_seconds=0.0 if clip.waveform is None else len(clip.waveform) / processor.sampling_rate,
            audio_start=meta.get("audio_start"), duration=_float_or_none(meta.get("duration")),
            fps=_float_or_none(meta.get("fps")),
            warnings=[str(w) for w in meta.get("warnings") or []], timing=dict(timing),
            transcript=transcripts[i] if text_side is not None else None,
        ))
    return predictions
