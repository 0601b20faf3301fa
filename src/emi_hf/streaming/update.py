"""What the streamer emits once per hop: [`StreamUpdate`]."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["StreamUpdate", "WindowWords"]


def _value(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 6)


@dataclass
class WindowWords:
    """The words heard in an update's window so far (a model with a text part).

    Attributes:
        text: the words of the utterances that overlap the window, in order ("" before any).
        partial: the newest of them is still being spoken (its words may change in a later update).
        utterances: each ``{"start", "end", "text", "final"}`` (media seconds; None for a transcript without times).
        source: ``"asr"`` (transcribed live) or ``"file"`` (a known transcript).
        asr_lag_s: for utterances whose final words this update shows first: seconds from the arrival of the audio at
            the end of the utterance to this update (the largest, if several); None otherwise.
        pending: utterances heard and not transcribed yet (the one in progress included).
        dropped: utterances never transcribed because ASR fell so far behind that no window held them any more.
    """

    text: str
    partial: bool
    utterances: list[dict]
    source: str
    asr_lag_s: float | None = None
    pending: int = 0
    dropped: int = 0

    def to_dict(self) -> dict:
        return {"text": self.text, "partial": self.partial, "utterances": [dict(u) for u in self.utterances],
                "source": self.source, "asr_lag_s": None if self.asr_lag_s is None else round(self.asr_lag_s, 4),
                "pending": self.pending, "dropped": self.dropped}


@dataclass
class StreamUpdate:
    """The intensities over the last window, emitted every hop.

    Attributes:
        t: media seconds at the end of the window (the window is ``[window_start, t)``).
        window_start: media seconds at its start (later than ``t - window_s`` during the first window).
        label_names: the emotions, in the order of every intensity dict.
        per_modality: ``"visual"`` / ``"audio"`` / ``"text"`` / ``"fused"`` -> {emotion: intensity in [0, 1], NaN
            where that modality had no input (text: no words in the window yet)}, for the modalities the model has.
        face: the window has a frame with the subject's face; face_fraction: share of its frames with one.
        speech: the window has audio that is not digital silence (the audio modality is then present).
        latency_s: seconds from the arrival (``push_*`` call) of the input that completed the hop to this update.
        compute_s: seconds the streamer spent on this hop's update (face embeddings of the hop's new frames, the
            speech encoder on the new audio, the temporal models over the window).
        dropped_frames: video frames dropped since the previous update because compute fell behind (the input
            queue was full); dropped_total: since the start.
        num_frames: output frames in the window (at the processor's target rate); audio_seconds: audio in it.
        transcript: a model with a text part: the words of the window ([`WindowWords`]); None otherwise.
        dropped_audio_s: seconds of audio dropped since the start (a live microphone the streamer could not keep up
            with; see `EmiStreamer`'s ``max_pending_audio_s``).
        end_of_stream: the update emitted when the input ended (a model with a text part): its window ends where the
            input did, after the last utterance was transcribed; not on the hop grid.
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
    transcript: WindowWords | None = None
    end_of_stream: bool = False
    dropped_audio_s: float = 0.0

    @property
    def intensities(self) -> dict[str, float]:
        """The fused intensities for a fusion model, else its one modality's."""
        found = self.per_modality
        return next(found[m] for m in ("fused", "visual", "audio", "text") if m in found)

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
            "dropped_audio_s": round(self.dropped_audio_s, 4),
            **({"transcript": self.transcript.to_dict()} if self.transcript is not None else {}),
            **({"end_of_stream": True} if self.end_of_stream else {}),
        }

    def line(self) -> str:
        """One human-readable line (what `emi-hf stream` prints without --json)."""
        values = " ".join(f"{name[:4]}={'n/a' if v != v else f'{v:.2f}'}" for name, v in self.intensities.items())
        return (f"t={self.t:7.2f}s  {values}  face={'yes' if self.face else 'no '} "
                f"speech={'yes' if self.speech else 'no '} latency={1000 * self.latency_s:6.1f}ms "
                f"dropped={self.dropped_frames}" + self._words_line())

    def _words_line(self, width: int = 48) -> str:
        """The last words of the window (a model with a text part)."""
        if self.transcript is None:
            return ""
        text = self.transcript.text
        text = text if len(text) <= width else "..." + text[-(width - 3):]
        return f'  words="{text}"' + (" (partial)" if self.transcript.partial else "")
