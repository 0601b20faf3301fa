"""Face embeddings from a processor and a visual model: the embedder the media pipeline calls, and a clip's
``[T, D]`` embeddings (the ones computed while it was processed, else from its kept crops).

The media pipeline only knows a callable ``crops uint8 [n, 112, 112, 3] -> float32 [n, D]``; [`FaceEmbedder`] is
that callable for an EMI model: the processor's pixel normalisation, then ``EmiVisualModel.embed_faces``. It sits
above processing and models (extraction, inference and the demo use it), so neither of those imports the other.
"""

from __future__ import annotations

import numpy as np


class FaceEmbedder:
    """``crops uint8 [n, S, S, 3] -> float32 [n, D]``: the processor's pixel normalisation, then the visual model's
    frozen backbone (on the model's device, in inference mode). Passed to ``process_clip(face_embedder=...)`` it
    runs in the pipeline's background thread, overlapping decoding, detection and the face mesh."""

    def __init__(self, processor, visual_model):
        self.processor = processor
        self.visual_model = visual_model
        self.dim = int(visual_model.config.visual_feature_dim)

    @classmethod
    def for_model(cls, processor, model) -> FaceEmbedder | None:
        """The embedder of a visual or fusion model's face backbone; None for an audio model (no faces to embed)."""
        visual = getattr(model, "visual", model if hasattr(model, "embed_faces") else None)
        return cls(processor, visual) if visual is not None else None

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        import torch

        device = next(self.visual_model.parameters()).device
        pixels = self.processor.video_processor(videos=[crops], return_tensors="pt")["pixel_values"][0]
        with torch.inference_mode():
            return self.visual_model.embed_faces(pixels.float().to(device)).float().cpu().numpy()


def embed_clip_faces(processor, visual_model, clip, chunk_size: int = 128) -> np.ndarray:
    """Face embeddings `[T, 512]` of a ClipData's kept crops, valid frames only (zeros elsewhere), `chunk_size` crops
    at a time, so float pixels for a whole clip never exist; a repeated crop is embedded once (`embed_kept_crops`)."""
    from ..media.embedding import embed_kept_crops

    return embed_kept_crops(FaceEmbedder(processor, visual_model), clip.face_crops, clip.frame_mask, chunk_size)


def clip_face_embeddings(processor, visual_model, clip) -> np.ndarray:
    """`[T, D]` face embeddings of a ClipData: the ones computed while it was processed, else from its crops."""
    dim = int(visual_model.config.visual_feature_dim)
    if clip.face_embeddings is not None:
        if clip.face_embeddings.shape[1] == dim:
            return clip.face_embeddings
        if clip.face_embeddings.shape[1] == 0:  # no face in the clip: nothing was embedded
            return np.zeros((clip.num_frames, dim), np.float32)
        raise ValueError(f"clip embeddings have {clip.face_embeddings.shape[1]} dims, the model {dim}")
    if not clip.has_crops:
        raise ValueError("the clip has neither face embeddings nor face crops (processed with keep_crops=False)")
    return embed_clip_faces(processor, visual_model, clip)
