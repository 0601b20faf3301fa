"""End-to-end inference: load a checkpoint (any of the three model types) with its processor, predict clips."""

from __future__ import annotations

import math
import os
import time

import torch


def load_for_inference(model_name_or_path: str | os.PathLike, processor=None, revision: str | None = None,
                       device: str | None = None):
    """(model in eval mode on `device`, processor); `processor` is a folder, an EmiProcessor, or None (the model's)."""
    from transformers import AutoModel

    import emi_hf  # noqa: F401  (registers the Auto classes)

    from .processing_emi import EmiProcessor

    model = AutoModel.from_pretrained(model_name_or_path, revision=revision)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    if processor is None or isinstance(processor, (str, os.PathLike)):
        processor = EmiProcessor.from_pretrained(processor or model_name_or_path, revision=revision)
    processor.check_model_compatibility(model)  # the AUs it was trained on, in the same order
    return model, processor


def _named(values, names) -> dict[str, float]:
    return {name: float(v) for name, v in zip(names, values.tolist())}


@torch.inference_mode()
def predict_clips(model, processor, videos, batch_size: int = 1) -> list[dict]:
    """
    Predicts each video (paths); returns one dict per clip: `intensities` {emotion: value} (fused for a fusion
    model), `visual` / `audio` (fusion models), `frame_intensities` [[6 values] per frame], `timestamps`,
    `face_fraction`, `audio_present`, `timing` (preprocess_s: decoding, faces, AUs and the face backbone, which
    runs in a background thread while the clip is decoded and tracked; compute_s: the speech encoder and the
    temporal models).
    """
    from .data.features import FaceEmbedder

    videos = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
    names = list(model.config.id2label[i] for i in range(len(model.config.id2label)))
    device = next(model.parameters()).device
    embedder = FaceEmbedder.for_model(processor, model)
    results = []
    for start in range(0, len(videos), batch_size):
        chunk = [str(v) for v in videos[start : start + batch_size]]
        began = time.perf_counter()
        clips = [processor.process_clip(path, face_embedder=embedder) for path in chunk]
        inputs = processor.collate(clips, return_tensors="pt")
        preprocessed = time.perf_counter()
        tensors = {k: v.to(device) for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        output = model(**tensors)
        finished = time.perf_counter()
        for i, meta in enumerate(inputs.metadata):
            result = {
                "path": chunk[i],
                "intensities": _named(output.intensities[i], names),
                "frame_intensities": [
                    [None if math.isnan(x) else float(x) for x in row]
                    for row in output.frame_intensities[i][: len(meta["timestamps"])].tolist()
                ],
                "timestamps": list(meta["timestamps"]),
                "face_fraction": float(meta["face_fraction"]),
                "audio_present": bool(meta["audio_present"]),
                "timing": {"preprocess_s": (preprocessed - began) / len(chunk),
                           "compute_s": (finished - preprocessed) / len(chunk)},
            }
            if hasattr(output, "visual_intensities"):
                result["visual"] = _named(output.visual_intensities[i], names)
                result["audio"] = _named(output.audio_intensities[i], names)
            results.append(result)
    return results
