"""What the streamer emits once per hop: [`StreamUpdate`]."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["StreamUpdate"]


def _value(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 6)


@dataclass
class StreamUpdate:
    """The intensities over the last window, emitted every hop.

    Attributes:
        t: media seconds at the end of the window (the window is ``[window_start, t)``).
        window_start: media seconds at its start (later than ``t - window_s`` during the first window).
        label_names: the emotions, in the order of every intensity dict.
        per_modality: ``"visual"`` / ``"audio"`` / ``"fused"`` -> {emotion: intensity in [0, 1], NaN where that
            modality had no input}, for the modalities the model has.
        face: the window has a frame with the subject's face; face_fraction: share of its frames with one.
        speech: the window has audio that is not digital silence (the audio modality is then present).
        latency_s: seconds from the arrival (``push_*`` call) of the input that completed the hop to this update.
        compute_s: seconds the streamer spent on this hop's update (face embeddings of the hop's new frames, the
            speech encoder on the new audio, the temporal models over the window).
        dropped_frames: video frames dropped since the previous update because compute fell behind (the input
            queue was full); dropped_total: since the start.
        num_frames: output frames in the window (at the processor's target rate); audio_seconds: audio in it.
    """

    t: float
    window_start: float
    label_names: list[str]
    per_modality: dict[str, dict[str, float]]
    face: bool
    face_fraction: float
    speech: bool
    latency_s: float
    compute_s: float
    dropped_frames: int
    dropped_total: int
    num_frames: int
    audio_seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def intensities(self) -> dict[str, float]:
        """The fused intensities for a fusion model, else its one modality's."""
        found = self.per_modality
        return next(found[m] for m in ("fused", "visual", "audio") if m in found)

    def to_dict(self) -> dict:
        """JSON-ready (NaN -> None): what `emi-hf stream --json` prints, one object per update."""
        named = {m: {k: _value(v) for k, v in values.items()} for m, values in self.per_modality.items()}
        return {
            "t": round(self.t, 4), "window_start": round(self.window_start, 4),
            "intensities": {k: _value(v) for k, v in self.intensities.items()}, "per_modality": named,
            "face": self.face, "face_fraction": round(self.face_fraction, 4), "speech": self.speech,
            "latency_s": round(self.latency_s, 4), "compute_s": round(self.compute_s, 4),
            "dropped_frames": self.dropped_frames, "dropped_total": self.dropped_total,
            "num_frames": self.num_frames, "audio_seconds": round(self.audio_seconds, 4),
            "warnings": list(self.warnings),
        }

    def line(self) -> str:
        """One human-readable line (what `emi-hf stream` prints without --json)."""
        values = " ".join(f"{name[:4]}={'n/a' if v != v else f'{v:.2f}'}" for name, v in self.intensities.items())
        return (f"t={self.t:7.2f}s  {values}  face={'yes' if self.face else 'no '} "
                f"speech={'yes' if self.speech else 'no '} latency={1000 * self.latency_s:6.1f}ms "
                f"dropped={self.dropped_frames}")
