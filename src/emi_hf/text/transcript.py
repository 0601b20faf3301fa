"""What was said in a clip: :class:`Transcript` (the whole text, its timed segments, the language) and the rules
that make backend output consistent.

Every transcript has ``text == "".join(segment.text for segment in segments).strip()`` (the whole transcript, never
only the first segment) whenever it has segments; segment times are seconds from the start of the clip's audio,
non-decreasing, with ``0 <= start <= end <= duration``. Backends do not always give both ends of a segment
(Whisper may stop without a closing timestamp) nor keep them inside the audio (a model can predict a timestamp
past the end): :func:`clean_segments` fills and clamps them in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import EmiError

__all__ = ["Segment", "Transcript", "clean_segments", "join_segments", "TranscriptionError"]


class TranscriptionError(EmiError, ValueError):
    """Transcription cannot run or a transcript file cannot be used; the message says what to pass instead."""


@dataclass
class Segment:
    start: float | None
    end: float | None
    text: str

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "text": self.text}


@dataclass
class Transcript:
    """One clip's transcript.

    Attributes:
        text: the whole transcript ("" when nothing was said).
        segments: timed pieces of `text`, in order (may be empty for a transcript read from a CSV).
        language: ISO 639-1 code given or detected (``None`` when unknown, e.g. no speech and none given).
        path: the media file.
        duration: seconds of audio (``None`` when unknown).
        speech: voice-activity segments ``[start, end]`` in seconds (``None`` when VAD was off).
        source: where it came from: ``"transformers:<model>"``, ``"faster-whisper:<model>"``, ``"file:<path>"``,
            ``"vad:no-speech"`` (ASR skipped) or ``"no-audio"``.
    """

    text: str
    segments: list[Segment] = field(default_factory=list)
    language: str | None = None
    path: str | None = None
    duration: float | None = None
    speech: list[list[float]] | None = None
    source: str = ""

    @property
    def is_empty(self) -> bool:
        return not self.text.strip()

    def to_dict(self) -> dict:
        return {"path": self.path, "text": self.text, "segments": [segment.to_dict() for segment in self.segments],
                "language": self.language, "duration": self.duration, "speech": self.speech, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict) -> "Transcript":
        segments = [Segment(item.get("start"), item.get("end"), str(item.get("text", "")))
                    for item in data.get("segments") or []]
        return cls(text=str(data.get("text") or ""), segments=segments, language=data.get("language"),
                   path=data.get("path"), duration=data.get("duration"), speech=data.get("speech"),
                   source=str(data.get("source") or ""))


def join_segments(segments: list[Segment]) -> str:
    """The whole transcript from its segments (Whisper segment texts carry their own leading space)."""
    return "".join(segment.text for segment in segments).strip()


def _clamp(value: float, low: float, high: float | None) -> float:
    value = max(low, float(value))
    return min(value, high) if high is not None else value


def clean_segments(segments: list[Segment], duration: float | None) -> list[Segment]:
    """Drops empty segments, fills a missing start with the previous end (0 for the first) and a missing end with
    the next start (the clip's end for the last), clamps times into ``[previous end, duration]``."""
    kept = [segment for segment in segments if segment.text.strip()]
    cleaned: list[Segment] = []
    previous_end = 0.0
    for index, segment in enumerate(kept):
        start = previous_end if segment.start is None else _clamp(segment.start, previous_end, duration)
        end = segment.end
        if end is None:
            following = next((later.start for later in kept[index + 1:] if later.start is not None), None)
            end = following if following is not None else (duration if duration is not None else start)
        end = _clamp(end, start, duration)
        cleaned.append(Segment(round(start, 3), round(end, 3), segment.text))
        previous_end = end
    return cleaned
