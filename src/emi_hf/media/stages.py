"""Which stages of the clip pipeline run: the one rule, read by every path that scores raw clips (predict, the demo,
live streaming) through :meth:`ClipStages.for_modalities`.

=============  ==========================================================================================
modality       what it needs from a clip
=============  ==========================================================================================
``visual``     the video frames in RGB, face detection and tracking, the face mesh, alignment, AU inputs, the
               face crops (embedded by the model's face backbone), the frames' times
``audio``      the waveform, and the video frames' times without their pixels (the waveform starts at the first
               video frame, as in extraction; the timeline has a row per video frame)
``text``       nothing from the clip pipeline: the transcript comes from a file, or from ASR on the clip's
               audio, which the transcriber decodes itself
=============  ==========================================================================================

A stage that does not run leaves its outputs empty (no frame has a face, no waveform) and its clip metadata
``None`` (``face_fraction`` without ``faces``, ``audio_present`` without ``audio``): not looked at, rather than
absent. Only a clip processed with every stage is written to the clip cache (which stores the face crops and the
waveform); a cached clip serves any stages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["ClipStages"]


@dataclass(frozen=True)
class ClipStages:
    """
    Args:
        faces: decode the frames to RGB; detect, track and align the subject's face; AU inputs; face crops.
        audio: decode the waveform.
        frame_times: decode the video frames' times (without ``faces``: no pixels are converted).
    """

    faces: bool = True
    audio: bool = True
    frame_times: bool = True

    @classmethod
    def for_modalities(cls, modalities) -> ClipStages:
        """The stages a model with these modalities (``visual`` / ``audio`` / ``text``) needs (module table)."""
        from ..modalities import MODALITY_NAMES

        modalities = set(modalities)
        unknown = modalities - set(MODALITY_NAMES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}: expected visual, audio or text")
        return cls(faces="visual" in modalities, audio="audio" in modalities,
                   frame_times=bool(modalities & {"visual", "audio"}))

    @property
    def complete(self) -> bool:
        """Every stage runs (what the processor does by default, and what the clip cache stores)."""
        return self.faces and self.audio and self.frame_times

    @property
    def decodes_video(self) -> bool:
        return self.faces or self.frame_times

    def to_dict(self) -> dict:
        return asdict(self)
