"""EmiProcessor: video / audio files (or decoded arrays) in, batched model inputs out.

```python
from emi_hf import EmiProcessor

processor = EmiProcessor()                                   # MTCNN + MediaPipe-geometry AUs, 30 fps, 16 kHz
inputs = processor(videos=["a.mp4", "b.mov"], return_tensors="pt")
inputs["pixel_values"]    # float32 [B, T, 3, 112, 112]  aligned faces, ImageNet-normalised
inputs["au_features"]     # float32 [B, T, n_au]         AU intensities in [0, 5], order processor.au_names
inputs["frame_mask"]      # int64   [B, T]               1 = real frame with a face
inputs["input_values"]    # float32 [B, S]               16 kHz mono, zero-mean unit-variance per clip
inputs["attention_mask"]  # int64   [B, S]               1 = real audio sample (all 0 for a clip without audio)
inputs.metadata           # list of per-clip dicts: path, fps, timestamps, face_fraction, audio_present, ...
clip = processor.process_clip("a.mp4")                      # numpy ClipData (crops, AUs, waveform, metadata)
```

The processor is a transformers ``ProcessorMixin`` made of an :class:`EmiVideoProcessor` (face crops -> normalised
tensors) and a ``Wav2Vec2FeatureExtractor`` (waveform normalisation and padding), plus the media settings (face
detector, subject policy, AU backend and names, frame rate, ...). ``save_pretrained`` writes all of it to one
``processor_config.json``; ``from_pretrained`` / ``AutoProcessor.from_pretrained`` (after ``import emi_hf``) read it.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from transformers import BatchFeature, Wav2Vec2FeatureExtractor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling
from transformers.processing_utils import ProcessorMixin, Unpack
from transformers.video_processing_utils import BaseVideoProcessor

from .processing_standalone_emi import MEDIA_INSTALL_HINT, channels_last, standalone_frames, standalone_waveform
from .processor_kwargs import EmiProcessorKwargs, route_processor_kwargs

# This file is also copied next to the weights (processor_config.json's `auto_map`), so that
# `AutoProcessor.from_pretrained(folder, trust_remote_code=True)` works without emi-hf: its bundle imports
# (configuration_emi, processor_kwargs) are relative, and the media pipeline (decoding, face detection, AUs) is
# emi-hf's own package, imported in this try block (transformers' import check skips try blocks). Without it the
# processor takes what needs no media code: face crops (`face_detector=None`), waveforms at its sampling rate.
try:
    from emi_hf.errors import EmiUsageError
    from emi_hf.media.au import check_au_names
    from emi_hf.media.cache import ClipData
    from emi_hf.media.decoding import rows_are_channels
    from emi_hf.media.errors import EmiInputError
    from emi_hf.media.pipeline import ClipPipeline
    from emi_hf.media.settings import ClipSettings
    from emi_hf.media.stages import ClipStages

    MEDIA_IMPORT_ERROR = None
except ImportError as _error:  # the remote-code copy in a Python without emi-hf (inside emi-hf: a real error)
    if __name__.startswith("emi_hf."):
        raise
    MEDIA_IMPORT_ERROR = _error
    ClipData = ClipPipeline = ClipStages = Any
    from .processing_standalone_emi import (  # noqa: F811  (stand-ins of the same names)
        ClipSettings,
        EmiInputError,
        EmiUsageError,
        check_au_names,
        rows_are_channels,
    )

__all__ = ["EmiBatch", "EmiVideoProcessor", "EmiProcessor", "model_inputs", "register_processor"]

_DEFAULTS = ClipSettings()  # the keywords' defaults (ClipSettings owns them)


def require_media(what: str) -> None:
    """Raises ImportError naming what to install when `what` needs emi-hf's media package and it is missing."""
    if MEDIA_IMPORT_ERROR is not None:
        raise ImportError(f"{what} needs emi-hf's media pipeline (decoding, face detection, AUs), which this Python "
                          f"lacks ({MEDIA_IMPORT_ERROR}): {MEDIA_INSTALL_HINT}. Without it the processor takes face "
                          "crops (frames arrays with `face_detector=None`) and waveforms at its sampling rate.")


class EmiBatch(BatchFeature):
    """A ``BatchFeature`` whose ``.metadata`` (a list with one dict per clip) is an attribute, not a key, so that
    ``model(**batch)`` passes only tensors."""

    def __init__(self, data=None, tensor_type=None, metadata: list[dict] | None = None):
        super().__init__(data, tensor_type=tensor_type)
        self.metadata = list(metadata or [])

    def for_model(self, model) -> dict:
        """The entries `model` takes (see :func:`model_inputs`): `model(**batch.for_model(model))`."""
        return model_inputs(self, model)

    def __getstate__(self):
        return {"data": self.data, "metadata": self.metadata}

    def __setstate__(self, state):
        self.data = state.get("data", {})
        self.metadata = state.get("metadata", [])


def model_inputs(batch, model) -> dict:
    """
    The entries of a processor batch (or any dict of inputs) that `model.forward` takes: the models accept exactly
    their documented inputs (an unknown keyword is a TypeError), so a batch with both modalities is filtered for a
    unimodal model: `visual_model(**model_inputs(batch, visual_model))`. A forward with `**kwargs` that hands them to
    its `members` (the ensemble) takes its first member's inputs, and its own named ones.
    """
    parameters = inspect.signature(model.forward).parameters.values()
    names = {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD}
    if len(names) < len(parameters):
        members = getattr(model, "members", None)
        if not members:
            return dict(batch)
        names |= set(model_inputs(batch, members[0]))
    return {key: value for key, value in batch.items() if key in names}


class EmiVideoProcessor(BaseVideoProcessor):
    """Face crops to model pixels: uint8 RGB ``[T, H, W, 3]`` -> float32 ``[T, 3, size, size]`` (resized only when
    the crops are not already ``size``; rescaled to [0, 1]; normalised with the ImageNet mean / std)."""

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 112, "width": 112}
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = False
    do_sample_frames = False

    def _preprocess(self, videos, do_resize, size, resample, do_center_crop, crop_size, do_rescale, rescale_factor,
                    do_normalize, image_mean, image_std, return_tensors=None, **kwargs) -> BatchFeature:
        processed = []
        for video in videos:
            if do_resize and tuple(video.shape[-2:]) != (size.height, size.width):
                video = self.resize(video, size=size, resample=resample)
            processed.append(self.rescale_and_normalize(video, do_rescale, rescale_factor, do_normalize, image_mean,
                                                        image_std))
        return BatchFeature(data={"pixel_values": processed}, tensor_type=return_tensors)


def _is_path(value) -> bool:
    return isinstance(value, (str, os.PathLike))


def _as_clip_list(value, is_batch) -> list | None:
    """None -> []; a path -> [path]; an array (numpy, or anything with ``.numpy()``) -> its rows when
    ``is_batch(array)``, else [array]; anything else (a list) -> None."""
    if value is None:
        return []
    if _is_path(value):
        return [value]
    if isinstance(value, np.ndarray) or hasattr(value, "numpy"):
        array = np.asarray(value)
        return list(array) if is_batch(array) else [array]
    return None


def _as_video_list(videos) -> list:
    """One entry per clip: a path, a frames array [T, H, W, 3] (given `[T, H, W, 3]` or `[T, 3, H, W]`) or None."""
    clips = _as_clip_list(videos, lambda array: array.ndim == 5)
    if clips is not None:
        return [channels_last(clip) for clip in clips]
    if isinstance(videos, (list, tuple)):
        if len(videos) == 0:
            raise EmiInputError(None, "`videos` is an empty list.")
        videos = [np.asarray(v) if hasattr(v, "numpy") and not isinstance(v, np.ndarray) else v for v in videos]
        if all(isinstance(v, np.ndarray) and v.ndim == 3 for v in videos):
            return [channels_last(np.stack(videos))]  # a list of frames is one video
        return [channels_last(v) for v in videos]
    raise TypeError(f"videos must be a path, a list of paths or decoded frames, got {type(videos).__name__}")


def _as_audio_list(audio) -> list:
    clips = _as_clip_list(audio, lambda array: array.ndim == 2 and not rows_are_channels(array))
    if clips is not None:
        return clips
    if isinstance(audio, (list, tuple)):
        if audio and all(np.isscalar(x) for x in audio):
            return [np.asarray(audio, np.float32)]
        return list(audio)
    raise TypeError(f"audio must be a path, an array or a list of them, got {type(audio).__name__}")


class EmiProcessor(ProcessorMixin):
    r"""Turns videos (and audio) into the inputs of the emi-hf models.

    Args:
        video_processor ([`EmiVideoProcessor`], *optional*): crops -> normalised tensors (default: 112 px).
        feature_extractor ([`Wav2Vec2FeatureExtractor`], *optional*): waveform normalisation and padding
            (default: 16 kHz, zero-mean unit-variance, attention masks).
        face_detector, au_backend, au_names, target_fps, detect_every, detect_max_side, min_face_score, subject,
            face_size, face_alignment, mesh_refine, mediapipe_backend, au_neutral_baseline, au_baseline_percentile, openface_match, audio_peak_db,
            max_frames, max_duration, chunk_size, use_cache: the media settings, documented (with their defaults
            and checks) by :class:`emi_hf.media.ClipSettings`; they are attributes of the processor too (setting
            one checks it again) and :meth:`to_dict` saves them.
        clip_cache_dir (`str`, *optional*): the cache folder (default: see :mod:`emi_hf.media.cache`, e.g.
            `~/.cache/emi_hf/clips`; size-capped by `EMI_HF_CACHE_MAX_SIZE`); not saved with the processor.
        openface_dir (`str`, *optional*): folder of OpenFace CSVs named `<video stem>.csv`; not saved.
        face_landmarker_model (`str`, *optional*): MediaPipe's `face_landmarker.task` for the Tasks API (default:
            `$EMI_HF_FACE_LANDMARKER`, the cache, or a download once; see `emi_hf.media.mediapipe_tasks`); not saved.
    """

    valid_processor_kwargs = EmiProcessorKwargs

    def __init__(
        self,
        video_processor: EmiVideoProcessor | None = None,
        feature_extractor: Wav2Vec2FeatureExtractor | None = None,
        face_detector: str | None = _DEFAULTS.face_detector,
        au_backend: str | None = _DEFAULTS.au_backend,
        au_names: Sequence[str] = _DEFAULTS.au_names,
        target_fps: float | None = _DEFAULTS.target_fps,
        detect_every: int = _DEFAULTS.detect_every,
        detect_max_side: int | None = _DEFAULTS.detect_max_side,
        min_face_score: float | None = _DEFAULTS.min_face_score,
        subject: str = _DEFAULTS.subject,
        face_size: int = _DEFAULTS.face_size,
        face_alignment: str = _DEFAULTS.face_alignment,
        mesh_refine: bool = _DEFAULTS.mesh_refine,
        mediapipe_backend: str = _DEFAULTS.mediapipe_backend,
        au_neutral_baseline: bool = _DEFAULTS.au_neutral_baseline,
        au_baseline_percentile: float = _DEFAULTS.au_baseline_percentile,
        openface_match: str = _DEFAULTS.openface_match,
        audio_peak_db: float | None = _DEFAULTS.audio_peak_db,
        max_frames: int | None = _DEFAULTS.max_frames,
        max_duration: float | None = _DEFAULTS.max_duration,
        chunk_size: int = _DEFAULTS.chunk_size,
        use_cache: bool = _DEFAULTS.use_cache,
        clip_cache_dir: str | os.PathLike | None = None,
        openface_dir: str | os.PathLike | None = None,
        face_landmarker_model: str | os.PathLike | None = None,
    ):
        if video_processor is None:
            video_processor = EmiVideoProcessor(size={"height": int(face_size), "width": int(face_size)})
        if feature_extractor is None:
            feature_extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                         do_normalize=True, return_attention_mask=True)
        keywords = locals()
        self._settings = ClipSettings(sampling_rate=feature_extractor.sampling_rate,
                                      **{name: keywords[name] for name in ClipSettings.saved_fields()})
        # machine-specific, not serialised (private attributes are left out of to_dict)
        self._clip_cache_dir = os.fspath(clip_cache_dir) if clip_cache_dir is not None else None
        self._openface_dir = os.fspath(openface_dir) if openface_dir is not None else None
        self._face_landmarker_model = os.fspath(face_landmarker_model) if face_landmarker_model is not None else None
        self._pipeline: ClipPipeline | None = None
        self._pipeline_lock = threading.Lock()
        super().__init__(video_processor, feature_extractor)
        size = self.video_processor.size
        if (size.height, size.width) != (self.face_size, self.face_size):
            raise EmiUsageError(f"face_size={self.face_size} but the video processor's size is "
                                f"{size.height}x{size.width}; pass the same size to both.")
        if MEDIA_IMPORT_ERROR is None:
            self._build_pipeline()  # validates the settings now rather than at the first call

    # -- settings -------------------------------------------------------------------------------------------
    @property
    def sampling_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values", "au_features", "frame_mask", "input_values", "attention_mask"]

    def clip_settings(self) -> ClipSettings:
        """The media settings as a :class:`ClipSettings` (what the clip cache is keyed on)."""
        if self._settings.sampling_rate != self.sampling_rate:  # the feature extractor owns the audio rate
            self._settings = dataclasses.replace(self._settings, sampling_rate=self.sampling_rate)
        return self._settings

    def _build_pipeline(self) -> ClipPipeline:
        settings = self.clip_settings()
        with self._pipeline_lock:
            if self._pipeline is None or self._pipeline.settings != settings or \
                    self._pipeline.openface_dir != self._openface_dir:
                self._pipeline = ClipPipeline(settings, openface_dir=self._openface_dir,
                                              face_landmarker_model=self._face_landmarker_model)
            return self._pipeline

    @property
    def clip_cache_dir(self) -> str | None:
        return self._clip_cache_dir

    @clip_cache_dir.setter
    def clip_cache_dir(self, value) -> None:
        self._clip_cache_dir = os.fspath(value) if value is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The processor_config.json content: both sub-processors and the media settings."""
        output: dict[str, Any] = {
            "video_processor": self.video_processor.to_dict(),
            "feature_extractor": self.feature_extractor.to_dict(),
        }
        output.update(self.clip_settings().to_dict())
        if getattr(self, "auto_map", None):
            output["auto_map"] = self.auto_map
        output["processor_class"] = self.__class__.__name__
        return output

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`ProcessorMixin.from_pretrained`, then, for a local folder that also holds a model `config.json`,
        a check that the model's `au_names` are the processor's (a mismatch raises ValueError)."""
        processor = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        config_file = Path(os.fspath(pretrained_model_name_or_path)) / "config.json"
        if config_file.is_file():
            with open(config_file, encoding="utf-8") as handle:
                config = json.load(handle)
            au_names = config.get("au_names") or (config.get("visual_config") or {}).get("au_names")
            if au_names is not None:
                check_au_names(processor.au_names, au_names, where=str(config_file))
        return processor

    def check_model_compatibility(self, model_or_config) -> None:
        """Raises ValueError when a model (or its config) expects other AUs (names or order) than this processor
        gives. Accepts EmiVisualConfig / EmiFusionConfig, a model, or a config dict."""
        config = getattr(model_or_config, "config", model_or_config)
        if isinstance(config, dict):
            au_names = config.get("au_names") or (config.get("visual_config") or {}).get("au_names")
        else:
            visual = getattr(config, "visual_config", None)
            au_names = getattr(config, "au_names", None) or getattr(visual, "au_names", None)
        if au_names is not None:
            check_au_names(self.au_names, au_names)

    # -- processing -----------------------------------------------------------------------------------------
    def process_clip(self, video=None, audio=None, au_file=None, video_fps: float | None = None,
                     sampling_rate: int | None = None, use_cache: bool | None = None, cache_dir=None,
                     face_embedder=None, keep_crops: bool | None = None, stages: ClipStages | None = None) -> ClipData:
        """One clip to numpy results (:class:`emi_hf.media.ClipData`: ``face_crops`` uint8 [T, 112, 112, 3],
        ``au_intensities`` float32 [T, n_au], ``frame_mask`` int8 [T], ``timestamps`` float64 [T],
        ``face_boxes`` float32 [T, 4], ``waveform`` float32 [S] or None, ``metadata`` dict).

        `video`: a path, RGB frames [T, H, W, 3] (at `video_fps`, default the target rate) or None; `audio`: a
        separate audio file or waveform (at `sampling_rate`, default 16 kHz) that replaces the video's track;
        `au_file`: the clip's OpenFace CSV (``au_backend="openface"``). `face_embedder` (e.g.
        ``emi_hf.face_embedding.FaceEmbedder(processor, visual_model)``) embeds the crops in a background thread while
        the clip is processed and fills ``face_embeddings``; with it the crops are not kept unless `keep_crops`
        (see :meth:`emi_hf.media.ClipPipeline.process`). `stages` (:class:`emi_hf.media.stages.ClipStages`, default
        all): the parts of the pipeline that run, e.g. ``ClipStages.for_modalities(["audio"])`` for an audio model.
        """
        require_media("EmiProcessor.process_clip")
        pipeline = self._build_pipeline()
        use_cache = self.use_cache if use_cache is None else use_cache
        return pipeline.process(video, audio=audio, au_file=au_file, video_fps=video_fps,
                                audio_sampling_rate=sampling_rate, use_cache=use_cache,
                                cache_dir=cache_dir if cache_dir is not None else self._clip_cache_dir,
                                face_embedder=face_embedder, keep_crops=keep_crops, stages=stages)

    def __call__(self, videos=None, audio=None, return_tensors: str | None = "pt", au_files=None,
                 video_fps: float | None = None, sampling_rate: int | None = None, use_cache: bool | None = None,
                 cache_dir=None, **kwargs: Unpack[EmiProcessorKwargs]) -> EmiBatch:
        """Processes a batch of clips and pads them together.

        Args:
            videos: a path, a list of paths, decoded frames `[T, H, W, 3]` or a list of such arrays (one per clip).
            audio: separate audio per clip (paths or waveforms), or the only input for audio-only clips.
            return_tensors: `"pt"` (default), `"np"` or None (numpy).
            au_files: OpenFace CSVs, one per clip (`au_backend="openface"`).
            kwargs: transformers' per-modality keyword arguments (`videos_kwargs`, `audio_kwargs`, `text_kwargs`, or
                flat ones routed to their sub-processor); those that do not apply are ignored with a warning (see
                `emi_hf.processor_kwargs`).

        Returns an :class:`EmiBatch` with `pixel_values`, `au_features`, `frame_mask`, `input_values`,
        `attention_mask` and `.metadata` (one dict per clip; see `ClipPipeline.process`); `batch.for_model(model)`
        keeps the inputs one model takes.
        """
        videos_kwargs, audio_kwargs, routed_tensors = route_processor_kwargs(self, kwargs)
        return_tensors = routed_tensors if routed_tensors is not None else return_tensors
        sampling_rate = audio_kwargs.pop("sampling_rate", None) if sampling_rate is None else sampling_rate
        video_list = _as_video_list(videos)
        audio_list = _as_audio_list(audio)
        if not video_list and not audio_list:
            raise EmiInputError(None, "nothing to process: pass `videos` and/or `audio`.")
        count = max(len(video_list), len(audio_list))
        if video_list and audio_list and len(video_list) != len(audio_list):
            raise ValueError(f"got {len(video_list)} videos but {len(audio_list)} audio inputs; pass one audio per "
                             "video (or none, to use the videos' own audio tracks).")
        au_list = [au_files] if _is_path(au_files) else list(au_files) if au_files is not None else []
        if au_list and len(au_list) != count:
            raise ValueError(f"got {len(au_list)} au_files for {count} clips")
        if MEDIA_IMPORT_ERROR is not None:
            return self._standalone_batch(video_list, audio_list, count, video_fps, sampling_rate, au_list,
                                          return_tensors, videos_kwargs, audio_kwargs)
        clips = [
            self.process_clip(video_list[i] if video_list else None, audio_list[i] if audio_list else None,
                              au_list[i] if au_list else None, video_fps=video_fps, sampling_rate=sampling_rate,
                              use_cache=use_cache, cache_dir=cache_dir)
            for i in range(count)
        ]
        return self.collate(clips, return_tensors=return_tensors, videos_kwargs=videos_kwargs,
                            audio_kwargs=audio_kwargs)

    def _standalone_batch(self, video_list, audio_list, count, video_fps, sampling_rate, au_list, return_tensors,
                          videos_kwargs, audio_kwargs) -> EmiBatch:
        """`__call__` without emi-hf's media package (the remote-code copy): face crops and waveforms only, as the
        media pipeline turns them into model inputs (crops: every frame a face, cut to `max_frames`; waveforms:
        peak-normalised to `audio_peak_db`, cut to the video's span). The AU channel is left out (the models treat
        it as missing) unless `au_backend` is None (zeros, as emi-hf gives)."""
        if any(_is_path(v) for v in [*video_list, *audio_list]) or au_list:
            require_media("Reading video / audio files (and OpenFace CSVs)")
        if video_list and self.face_detector is not None:
            require_media(f"Face detection (face_detector={self.face_detector!r}; set `processor.face_detector = "
                          "None` to pass face crops)")
        if video_fps is not None and self.target_fps is not None and float(video_fps) != float(self.target_fps):
            require_media(f"Resampling frames from {video_fps} to {self.target_fps} fps")
        if audio_list and sampling_rate is not None and int(sampling_rate) != self.sampling_rate:
            require_media(f"Resampling audio from {sampling_rate} to {self.sampling_rate} Hz")
        fps = float(video_fps or self.target_fps or 30.0)
        crops, waveforms, metadata = [], [], []
        for i in range(count):
            frames = standalone_frames(video_list[i], self.max_frames, self.max_duration, fps) \
                if video_list and video_list[i] is not None else None
            crops.append(frames)
            span = None if self.max_duration is None else float(self.max_duration)
            if self.max_frames is not None:  # the audio covers the span the frames may take (ClipPipeline's rule)
                span = min(span or np.inf, self.max_frames / fps)
            waveform = audio_list[i] if audio_list else None
            waveforms.append(None if waveform is None else
                             standalone_waveform(waveform, self.audio_peak_db, self.sampling_rate, span))
            metadata.append({"path": None, "fps": fps if frames is not None else None,
                             "num_frames": 0 if frames is None else len(frames),
                             "audio_present": waveforms[-1] is not None, "standalone": True})
        batch = len(crops)
        max_frames = max([len(c) for c in crops if c is not None] + [1])
        pixel_values = np.zeros((batch, max_frames, 3, self.face_size, self.face_size), np.float32)
        frame_mask = np.zeros((batch, max_frames), np.int64)
        for b, frames in enumerate(crops):
            if frames is not None:
                pixels = self.video_processor(videos=[frames], return_tensors="np",
                                              **(videos_kwargs or {}))["pixel_values"]
                pixel_values[b, :len(frames)] = np.asarray(pixels[0], np.float32)
                frame_mask[b, :len(frames)] = 1
        data = {"pixel_values": pixel_values, "frame_mask": frame_mask}
        if self.au_backend is None:
            data["au_features"] = np.zeros((batch, max_frames, len(self.au_names)), np.float32)
        data.update(self._pad_audio(waveforms, batch, audio_kwargs))
        return EmiBatch(data, tensor_type=return_tensors, metadata=metadata)

    def collate(self, clips: Sequence[ClipData], return_tensors: str | None = "pt", videos_kwargs: dict | None = None,
                audio_kwargs: dict | None = None, stages: ClipStages | None = None) -> EmiBatch:
        """Pads per-clip results into one batch (frames to the longest clip, audio to the longest waveform);
        `videos_kwargs` / `audio_kwargs` go to the video processor / feature extractor (see `processor_kwargs`).

        Clips processed with a ``face_embedder`` (every clip with frames has ``face_embeddings``) give
        ``visual_features`` `[B, T, D]` instead of ``pixel_values``: the models take either. `stages` (default
        all): without ``faces`` the batch has no visual entries, without ``audio`` no audio ones.
        """
        stages = stages or ClipStages()
        data = self._collate_visual(clips, videos_kwargs) if stages.faces else {}
        if stages.audio:
            data.update(self._collate_audio(clips, audio_kwargs))
        metadata = [dict(clip.metadata) for clip in clips]
        return EmiBatch(data, tensor_type=return_tensors, metadata=metadata)

    def _collate_visual(self, clips: Sequence[ClipData], videos_kwargs: dict | None) -> dict:
        """`pixel_values` (or `visual_features`), `au_features`, `frame_mask` of `collate`."""
        batch = len(clips)
        size = self.face_size
        n_au = len(self.au_names)
        max_frames = max([clip.num_frames for clip in clips] + [1])
        with_frames = [clip for clip in clips if clip.num_frames]
        embedded = bool(with_frames) and all(clip.face_embeddings is not None for clip in with_frames)
        if embedded:
            dim = max(clip.face_embeddings.shape[1] for clip in with_frames)
            visual_values = np.zeros((batch, max_frames, dim), np.float32)
        else:
            visual_values = np.zeros((batch, max_frames, 3, size, size), np.float32)
        au_features = np.zeros((batch, max_frames, n_au), np.float32)
        frame_mask = np.zeros((batch, max_frames), np.int64)
        for b, clip in enumerate(clips):
            t = clip.num_frames
            if t == 0:
                continue
            if clip.au_intensities.shape[1] != n_au:
                raise ValueError(f"clip has {clip.au_intensities.shape[1]} AUs, the processor {n_au}")
            if embedded:
                if clip.face_embeddings.shape[1]:  # 0 columns: no face in the clip
                    visual_values[b, :t] = clip.face_embeddings
            else:
                if not clip.has_crops:
                    raise ValueError("a clip processed with keep_crops=False has no face crops to batch; process "
                                     "it again with keep_crops=True (the default without a face_embedder)")
                pixels = self.video_processor(videos=[clip.face_crops], return_tensors="np",
                                              **(videos_kwargs or {}))["pixel_values"]
                visual_values[b, :t] = np.asarray(pixels[0], np.float32)
            au_features[b, :t] = clip.au_intensities
            frame_mask[b, :t] = clip.frame_mask
        return {"visual_features" if embedded else "pixel_values": visual_values, "au_features": au_features,
                "frame_mask": frame_mask}

    def _collate_audio(self, clips: Sequence[ClipData], audio_kwargs: dict | None) -> dict:
        """`input_values`, `attention_mask` of `collate`."""
        return self._pad_audio([clip.waveform for clip in clips], len(clips), audio_kwargs)

    def _pad_audio(self, waveforms: list, batch: int, audio_kwargs: dict | None) -> dict:
        """Waveforms (None for a clip without audio) -> padded `input_values`, int64 `attention_mask`."""
        if any(w is not None for w in waveforms):
            audio = self.feature_extractor(
                [w if w is not None else np.zeros(1, np.float32) for w in waveforms], sampling_rate=self.sampling_rate,
                **{"padding": "longest", **(audio_kwargs or {})}, return_attention_mask=True, return_tensors="np")
            input_values = np.asarray(audio["input_values"], np.float32)
            attention_mask = np.asarray(audio["attention_mask"], np.int64)
            for b, w in enumerate(waveforms):
                if w is None:
                    input_values[b] = 0.0
                    attention_mask[b] = 0
        else:
            input_values = np.zeros((batch, self.sampling_rate), np.float32)
            attention_mask = np.zeros((batch, self.sampling_rate), np.int64)
        return {"input_values": input_values, "attention_mask": attention_mask}


def _setting_property(name: str) -> property:
    """A processor attribute that reads the ClipSettings field `name` (setting it makes new, checked settings)."""

    def get(self):
        value = getattr(self._settings, name)
        return list(value) if name == "au_names" else value  # a list, as processor_config.json stores it

    def set(self, value) -> None:
        self._settings = dataclasses.replace(self._settings, **{name: value})

    return property(get, set, doc=f"The media setting ``{name}`` (see :class:`emi_hf.media.ClipSettings`).")


for _name in ClipSettings.saved_fields():
    setattr(EmiProcessor, _name, _setting_property(_name))


def register_processor() -> None:
    """Registers EmiProcessor / EmiVideoProcessor with transformers' Auto classes (idempotent), so that
    ``AutoProcessor.from_pretrained`` resolves a saved EmiProcessor. Called by ``import emi_hf``."""
    from transformers import AutoProcessor, AutoVideoProcessor

    from .configuration_emi import EmiAudioConfig, EmiFusionConfig, EmiVisualConfig

    for config_class in (EmiVisualConfig, EmiAudioConfig, EmiFusionConfig):
        AutoVideoProcessor.register(config_class, EmiVideoProcessor, exist_ok=True)
        AutoProcessor.register(config_class, EmiProcessor, exist_ok=True)
    # save_pretrained then writes `auto_map` into processor_config.json and copies this file (with
    # configuration_emi.py and processor_kwargs.py) next to it: `trust_remote_code=True` loads it without emi-hf.
    EmiProcessor.register_for_auto_class("AutoProcessor")
    EmiVideoProcessor.register_for_auto_class("AutoVideoProcessor")
