"""The `transformers.pipeline()` task ``"emotion-mimicry-intensity"`` of the emi-hf models.

    from transformers import pipeline
    scorer = pipeline("emotion-mimicry-intensity", model="FOLDER_OR_ID")   # with emi-hf installed
    scorer("clip.mp4")  # {"Admiration": 0.31, "Amusement": 0.12, ..., "Joy": 0.27}

An input is a video file (a path, or ``{"video": path, "transcript": "..."}``) or one clip's features as a dict of
arrays named as the model's inputs, without a batch axis: ``visual_features`` ``[frames, D]`` (face embeddings) with
``au_features`` ``[frames, AUs]`` and ``frame_mask`` ``[frames]``, ``input_values`` ``[samples]`` (16 kHz audio) or
``audio_features`` ``[audio frames, D]``, ``input_ids`` ``[tokens]`` or a ``transcript`` string (tokenised by the
checkpoint's ``text_tokenizer/``). A list of inputs is scored in batches of ``batch_size``; ``device=`` as for any
pipeline. Call options: ``per_modality=True`` adds ``"per_modality"`` (each modality's intensities, and the fused
ones, and ``"modality_mask"``, ``"transcript"``), ``timeline=True`` adds ``"timeline"`` (per-frame intensities,
``None`` where the model had no input there), ``transcript=`` the transcript of a model with a text part,
``allow_random_backbones=True`` scores a video with a randomly initialised backbone (tests), ``use_cache=`` the
processor's clip cache. Clip intensities are floats in [0, 1], NaN where the model had no input at all.

This file is saved next to the weights (``config.json`` names it in ``custom_pipelines``), so
``pipeline("emotion-mimicry-intensity", model=FOLDER, trust_remote_code=True)`` works in a Python without emi-hf on
feature inputs; a video file needs emi-hf's media code (decoding, faces, AUs, audio), and then gives exactly the
numbers of ``emi-hf predict`` (`emi_hf.inference.score_clips`). It imports only third-party packages (emi_hf where
installed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from types import SimpleNamespace

import numpy as np
import torch
from transformers import AutoTokenizer, Pipeline

INSTALL_HINT = ("pip install emi-hf (or `pip install .` in a checkout of the emi-hf source), then call the pipeline "
                "again")
FEATURE_NDIM = {"visual_features": 2, "au_features": 2, "frame_mask": 1, "pixel_values": 4, "audio_features": 2,
                "audio_mask": 1, "input_values": 1, "attention_mask": 1, "text_features": 2, "text_mask": 1,
                "input_ids": 1, "token_type_ids": 1}
"""The feature inputs of one clip and their number of axes (no batch axis)."""
MASK_OF = {"visual_features": "frame_mask", "au_features": "frame_mask", "pixel_values": "frame_mask",
           "audio_features": "audio_mask", "input_values": "attention_mask", "text_features": "text_mask",
           "input_ids": "text_mask", "token_type_ids": "text_mask"}
INTEGER_INPUTS = ("frame_mask", "audio_mask", "attention_mask", "text_mask", "input_ids", "token_type_ids")
MODALITY_OF_TYPE = {"emi_visual": "visual", "emi_audio": "audio", "emi_text": "text"}
TEXT_TOKENIZER_DIR = "text_tokenizer"


def _emi():
    """emi-hf's inference pieces where emi-hf is installed, else None. (Its imports sit in a `try` block, which
    transformers' check of a remote file's imports skips: emi-hf is optional here.)"""
    try:
        from emi_hf import inference
        from emi_hf.encoders.face_embedding import FaceEmbedder
        from emi_hf.models.processing_emi import EmiProcessor
        from emi_hf.provenance import check_raw_input_backbones
    except ImportError:
        return None
    return SimpleNamespace(inference=inference, FaceEmbedder=FaceEmbedder, EmiProcessor=EmiProcessor,
                           check_raw_input_backbones=check_raw_input_backbones)


def _list_collate(items: list) -> list:
    return list(items)


def _member_config(config):
    """The config of the model that predicts: the model's own, or an ensemble's first member's (as a dict)."""
    members = getattr(config, "members", None)
    return members[0] if getattr(config, "member_model_type", None) and members else config


def _get(config, name: str, default=None):
    return config.get(name, default) if isinstance(config, Mapping) else getattr(config, name, default)


def _named(values: torch.Tensor, names: list[str]) -> dict[str, float]:
    return {name: float(v) for name, v in zip(names, values.float().tolist())}


def _timeline(rows: torch.Tensor | None) -> list | None:
    if rows is None:
        return None
    return [[None if math.isnan(x) else float(x) for x in row] for row in rows.float().tolist()]


def _pad(values: list[torch.Tensor | None], length: int, like: torch.Tensor) -> torch.Tensor:
    """Stacks `values` padded with zeros on axis 0 to `length` (None: all zeros, shaped as `like`)."""
    out = like.new_zeros((len(values), length, *like.shape[1:]))
    for i, value in enumerate(values):
        if value is not None:
            out[i, : len(value)] = value
    return out


class EmiIntensityPipeline(Pipeline):
    """The clip intensities of a video file or of one clip's features (see the module's docstring)."""

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(self, per_modality=None, timeline=None, transcript=None, allow_random_backbones=None,
                             use_cache=None):
        preprocess = {k: v for k, v in (("transcript", transcript), ("use_cache", use_cache),
                                        ("allow_random_backbones", allow_random_backbones)) if v is not None}
        postprocess = {k: bool(v) for k, v in (("per_modality", per_modality), ("timeline", timeline)) if v is not None}
        return preprocess, {}, postprocess

    # --- inputs --------------------------------------------------------------------------------------------------

    def preprocess(self, inputs, transcript: str | None = None, use_cache: bool | None = None,
                   allow_random_backbones: bool = False) -> dict:
        if isinstance(inputs, Mapping) and ("video" in inputs or "path" in inputs):
            transcript = inputs.get("transcript", transcript)
            inputs = inputs["video"] if "video" in inputs else inputs["path"]
        if isinstance(inputs, (str, os.PathLike)):
            return self._preprocess_video(os.fspath(inputs), transcript, use_cache, allow_random_backbones)
        if isinstance(inputs, Mapping):
            features = dict(inputs)
            transcript = features.pop("transcript", transcript)
            return {"features": self._feature_tensors(features, transcript), "transcript": transcript}
        raise TypeError(f"emotion-mimicry-intensity takes a video file path, a dict {{'video': path, 'transcript': "
                        f"text}} or a dict of one clip's features ({', '.join(FEATURE_NDIM)}); got "
                        f"{type(inputs).__name__}.")

    def _preprocess_video(self, path: str, transcript, use_cache, allow_random_backbones) -> dict:
        emi = _emi()
        if emi is None:
            raise ImportError(f"{path}: scoring a video file needs emi-hf's media code (video and audio decoding, face "
                              f"detection, Action Units), which is not installed here: {INSTALL_HINT}. Without it, "
                              f"this pipeline scores features: a dict of {', '.join(FEATURE_NDIM)}.")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such video file.")
        source = getattr(self.model, "name_or_path", None)
        emi.check_raw_input_backbones(self.model, allow_random_backbones, source=source)
        tools = self._video_tools()
        text_side = tools["text_side"]
        if text_side is not None and transcript is None and text_side.transcriber is None:
            raise ValueError(f"{path}: this model has a text part, and its transcripts were read from a file (no ASR "
                             "model to transcribe with): pass the clip's transcript, transcript='...' or "
                             "{'video': path, 'transcript': '...'}.")
        clip = tools["processor"].process_clip(path, use_cache=use_cache, face_embedder=tools["embedder"],
                                               stages=tools["stages"])
        return {"clip": clip, "path": path, "transcript": transcript}

    def _video_tools(self) -> dict:
        """The processor, stages, face embedder and text side of this model, made once (as `predict_clips` does)."""
        if getattr(self, "_tools", None) is None:
            emi = _emi()
            processor = self.processor
            if processor is None or isinstance(processor, (str, os.PathLike)):
                processor = emi.EmiProcessor.from_pretrained(processor or self.model.name_or_path)
            processor.check_model_compatibility(self.model)
            stages = emi.inference.model_stages(self.model)
            self._tools = {"processor": processor, "stages": stages,
                           "embedder": emi.FaceEmbedder.for_model(processor, self.model) if stages.faces else None,
                           "text_side": emi.inference.TextSide.default_for(self.model)}
        return self._tools

    def _feature_tensors(self, features: dict, transcript: str | None) -> dict:
        """One clip's features as tensors without a batch axis (a leading axis of 1 is dropped)."""
        unknown = sorted(set(features) - set(FEATURE_NDIM))
        if unknown:
            raise ValueError(f"Unknown feature input(s) {unknown}: a clip's features are {', '.join(FEATURE_NDIM)} "
                             "(and an optional 'transcript').")
        dtype = next(self.model.parameters()).dtype
        tensors = {}
        for name, value in features.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
            if tensor.ndim == FEATURE_NDIM[name] + 1 and tensor.shape[0] == 1:
                tensor = tensor[0]
            if tensor.ndim != FEATURE_NDIM[name]:
                raise ValueError(f"{name}: one clip's {name} has {FEATURE_NDIM[name]} axes, got shape "
                                 f"{tuple(tensor.shape)} (pass a list of dicts for several clips).")
            tensors[name] = tensor.long() if name in INTEGER_INPUTS else tensor.to(dtype)
        if transcript is not None and "input_ids" not in tensors and "text_features" not in tensors:
            tensors.update(self._tokenize(transcript))
        return tensors

    def _text_config(self):
        config = _member_config(self.model.config)
        return _get(config, "text_config") or (config if _get(config, "model_type") == "emi_text" else None)

    def _tokenize(self, transcript: str) -> dict:
        """`input_ids` and `text_mask` of a transcript, as emi-hf's `TextSide` makes them (an empty transcript: no
        valid token, the text part missing)."""
        text_config = self._text_config()
        if text_config is None:
            raise ValueError("transcript= was given, but this model has no text part to read it.")
        if getattr(self, "_tokenizer", None) is None:
            source = str(self.model.name_or_path)
            self._tokenizer = AutoTokenizer.from_pretrained(os.path.join(source, TEXT_TOKENIZER_DIR)) \
                if os.path.isdir(source) else AutoTokenizer.from_pretrained(source, subfolder=TEXT_TOKENIZER_DIR)
        encoded = self._tokenizer([transcript.strip() or self._tokenizer.pad_token], truncation=True,
                                  max_length=int(_get(text_config, "max_text_tokens", 512)), return_tensors="pt")
        mask = encoded["attention_mask"][0] * int(bool(transcript.strip()))
        return {"input_ids": encoded["input_ids"][0], "text_mask": mask}

    # --- batching and the model ----------------------------------------------------------------------------------

    def get_iterator(self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params,
                     postprocess_params):
        """The base class's iterator with this task's collation (clips and feature dicts of any lengths)."""
        from torch.utils.data import DataLoader
        from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

        if isinstance(inputs, (list, tuple)):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            dataset, num_workers = PipelineIterator(inputs, self.preprocess, preprocess_params), min(num_workers, 1)
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=_list_collate)
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def _forward(self, model_inputs) -> dict:
        items = model_inputs if isinstance(model_inputs, list) else [model_inputs]
        results: list = [None] * len(items)
        videos = [i for i, item in enumerate(items) if "clip" in item]
        if videos:
            tools = self._video_tools()
            predictions = _emi().inference.score_clips(
                self.model, tools["processor"], [items[i]["path"] for i in videos], [items[i]["clip"] for i in videos],
                stages=tools["stages"], text_side=tools["text_side"],
                transcripts=[items[i]["transcript"] for i in videos])
            for i, prediction in zip(videos, predictions):
                results[i] = {"intensities": prediction.intensities, "modalities": prediction.modality_intensities,
                              "modality_mask": prediction.modality_mask, "transcript": prediction.transcript,
                              "timeline": {"timestamps": prediction.timestamps,
                                           "visual": prediction.frame_intensities,
                                           "audio": prediction.audio_frame_intensities}}
        features = [i for i, item in enumerate(items) if "clip" not in item]
        if features:
            batch, frames = self._collate_features([items[i]["features"] for i in features])
            output = self.model(**batch, return_dict=True)
            for j, i in enumerate(features):
                results[i] = {**self._feature_result(output, j, frames[j]), "transcript": items[i]["transcript"]}
        return {"clip": results}

    def _collate_features(self, clips: list[dict]) -> tuple[dict, list[int | None]]:
        """One batch of feature dicts, padded on the time axis; a mask is made where padding (or a clip without
        that input) needs one. Also each clip's number of video frames (None without visual input)."""
        device = self.device
        present = [name for name in FEATURE_NDIM if any(name in clip for clip in clips)]
        batch = {}
        for name in sorted(present, key=lambda n: n not in MASK_OF):  # the inputs, then masks given on their own
            if name in batch:
                continue
            values = [clip.get(name) for clip in clips]
            like = next(v for v in values if v is not None)
            length = max(len(v) for v in values if v is not None)
            batch[name] = _pad(values, length, like).to(device)
            mask = MASK_OF.get(name)
            uneven = any(v is None or len(v) != length for v in values)
            if mask is not None and mask not in batch and (uneven or any(mask in clip for clip in clips)):
                given = [clip.get(mask) if mask in clip else None if values[i] is None
                         else torch.ones(len(values[i]), dtype=torch.long) for i, clip in enumerate(clips)]
                batch[mask] = _pad(given, length, torch.zeros(1, dtype=torch.long)).to(device)
        frames = [len(clip["visual_features"]) if "visual_features" in clip else
                  len(clip["pixel_values"]) if "pixel_values" in clip else None for clip in clips]
        return batch, frames

    def _feature_result(self, output, i: int, num_frames: int | None) -> dict:
        """Clip `i` of a model output: intensities, each modality's, the masks and the timelines."""
        config = self.model.config
        names = [config.id2label[k] for k in range(len(config.id2label))]
        model_type = getattr(config, "member_model_type", None) or config.model_type
        if model_type == "emi_fusion":
            present = [m for m in ("visual", "audio", "text") if getattr(output, f"{m}_intensities", None) is not None]
            modalities = {**{m: _named(getattr(output, f"{m}_intensities")[i], names) for m in present},
                          "fused": _named(output.intensities[i], names)}
            masks = {m: bool(getattr(output, f"{m}_mask")[i]) for m in present}
            visual = output.frame_intensities[i] if "visual" in present else None
            audio = output.audio_frame_intensities[i] if "audio" in present else None
        else:
            modality = MODALITY_OF_TYPE[model_type]
            modalities = {modality: _named(output.intensities[i], names)}
            masks = {modality: bool(output.modality_mask[i])}
            visual = output.frame_intensities[i] if modality == "visual" else None
            audio = output.frame_intensities[i] if modality == "audio" else None
        if visual is not None and num_frames is not None:
            visual = visual[:num_frames]
        return {"intensities": modalities["fused" if "fused" in modalities else next(iter(modalities))],
                "modalities": modalities, "modality_mask": masks,
                "timeline": {"timestamps": None, "visual": _timeline(visual), "audio": _timeline(audio)}}

    # --- outputs -------------------------------------------------------------------------------------------------

    def postprocess(self, model_outputs, per_modality: bool = False, timeline: bool = False) -> dict:
        result = model_outputs["clip"]
        if isinstance(result, list):  # one input not batched by the loader
            (result,) = result
        scores = dict(result["intensities"])
        if per_modality:
            scores["per_modality"] = result["modalities"]
            scores["modality_mask"] = result["modality_mask"]
            scores["transcript"] = result["transcript"]
        if timeline:
            scores["timeline"] = result["timeline"]
        return scores


__all__ = ["EmiIntensityPipeline"]
