"""The transcriber: a clip's audio -> voice activity -> ASR -> :class:`~emi_hf.text.transcript.Transcript`, with
transcripts a user already has read instead of computed, and every computed one cached.

For each file, in order: a transcript from ``transcripts`` (a CSV / JSON source, see
:mod:`emi_hf.text.transcript_files`) when it has the clip; else the cache entry; else decode the audio (PyAV, 16 kHz
mono; videos and audio-only files alike), run silero-vad, and run ASR only when there is speech (a clip with no
audio track or no speech gets an empty transcript, never Whisper's text on silence). The ASR model is loaded on
first use, so a run served from files or the cache never loads it.
"""

from __future__ import annotations

from pathlib import Path

from ..media.decoding import check_path as check_media_path
from ..media.decoding import decode_audio
from .asr import AsrBackend, build_asr_backend
from .cache import TranscriptCache, model_fingerprint
from .transcript import Transcript, clean_segments, join_segments
from .transcript_files import TranscriptTable, read_transcripts
from .vad import VAD_SAMPLING_RATE, SpeechDetector, VadOptions

__all__ = ["Transcriber", "transcribe_files"]


class Transcriber:
    """Transcribes media files.

    Args:
        backend: ``transformers`` (default) or ``faster-whisper``, or an :class:`~emi_hf.text.asr.AsrBackend`.
        model: Whisper-family Hub id or folder (transformers), CTranslate2 name or folder (faster-whisper).
        language: ISO code to transcribe in (``None``: detected per clip).
        vad: run silero-vad first and skip ASR on clips without speech.
        max_new_tokens / beam_size: decode length cap per 30 s window, beam width (backend defaults when ``None``).
        transcripts: a CSV / JSON / JSONL file or folder of transcripts to use instead of ASR where they have a clip.
        use_cache / cache_dir: the transcript cache (:mod:`emi_hf.text.cache`).
    """

    def __init__(self, backend: str | AsrBackend = "transformers", model: str | None = None,
                 language: str | None = None, vad: bool = True, device: str = "cpu",
                 max_new_tokens: int | None = None, beam_size: int | None = None, transcripts=None,
                 use_cache: bool = True, cache_dir=None, vad_options: VadOptions | None = None):
        self.asr = backend if isinstance(backend, AsrBackend) else build_asr_backend(
            backend, model, device=device, max_new_tokens=max_new_tokens, beam_size=beam_size)
        self.language = language
        self.detector = SpeechDetector(vad_options) if vad else None
        self.table: TranscriptTable | None = (
            transcripts if isinstance(transcripts, TranscriptTable) or transcripts is None
            else read_transcripts(transcripts))
        self.cache = TranscriptCache(cache_dir) if use_cache else None
        self.asr_calls = 0

    def settings(self) -> dict:
        """Everything that changes a computed transcript (the cache key's settings)."""
        settings = dict(self.asr.settings(), language=self.language,
                        model_fingerprint=model_fingerprint(self.asr.settings()["model"]),
                        vad=self.detector.options.to_dict() if self.detector else None,
                        sampling_rate=VAD_SAMPLING_RATE)
        return settings

    def transcribe(self, path) -> Transcript:
        """The transcript of one media file (see module doc for where it comes from)."""
        if self.table is not None:
            found = self.table.lookup(path)
            if found is not None:
                return found
        check_media_path(path)  # a missing or empty file: the known error, before the cache reads it
        key = self.cache.key(path, self.settings()) if self.cache else None
        if key is not None:
            cached = self.cache.get(key)
            if cached is not None:
                cached.path = str(path)
                return cached
        transcript = self._compute(path)
        if key is not None:
            self.cache.put(key, transcript)
        return transcript

    def _compute(self, path) -> Transcript:
        waveform, _ = decode_audio(path, sampling_rate=VAD_SAMPLING_RATE, peak_db=-3.0)
        if waveform is None:
            return Transcript(text="", language=self.language, path=str(path), duration=0.0,
                              speech=[] if self.detector else None, source="no-audio")
        duration = round(len(waveform) / VAD_SAMPLING_RATE, 3)
        return self.transcribe_waveform(waveform, path=str(path), duration=duration)

    def transcribe_waveform(self, waveform, path: str | None = None, duration: float | None = None) -> Transcript:
        """VAD + ASR on a 16 kHz mono waveform (not cached)."""
        if duration is None:
            duration = round(len(waveform) / VAD_SAMPLING_RATE, 3)
        speech = self.detector.segments(waveform) if self.detector else None
        if speech is not None and not speech:
            return Transcript(text="", language=self.language, path=path, duration=duration, speech=[],
                              source="vad:no-speech")
        segments, language = self.asr.transcribe(waveform, self.language)
        self.asr_calls += 1
        segments = clean_segments(segments, duration)
        return Transcript(text=join_segments(segments), segments=segments, language=language, path=path,
                          duration=duration, speech=speech, source=f"{self.asr.name}:{self.asr.model}")


def transcribe_files(paths, **options) -> list[Transcript]:
    """``Transcriber(**options).transcribe`` over `paths` (one model load for all)."""
    transcriber = Transcriber(**options)
    return [transcriber.transcribe(Path(path)) for path in paths]
