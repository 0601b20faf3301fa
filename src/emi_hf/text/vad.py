"""Voice activity detection with silero-vad (its model ships inside the ``silero-vad`` wheel: loaded offline from
the installed package, never downloaded), and the frame mask that marks speech on a feature frame grid.

:class:`SpeechDetector` returns speech segments ``[start, end]`` in seconds for a 16 kHz mono waveform; digital
silence gives none, so the transcriber skips ASR on it (Whisper writes text on silence).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["VadOptions", "SpeechDetector", "SpeechStream", "speech_frame_mask", "speech_seconds"]

VAD_SAMPLING_RATE = 16000


@dataclass(frozen=True)
class VadOptions:
    """silero-vad's settings (its defaults): speech probability threshold, shortest speech kept, shortest silence
    that splits two segments, padding added on both sides of each segment."""

    threshold: float = 0.5
    min_speech_duration_ms: int = 250
    min_silence_duration_ms: int = 100
    speech_pad_ms: int = 30

    def to_dict(self) -> dict:
        return asdict(self)


def _load_silero():
    """silero-vad's TorchScript model from the installed wheel, and its segmenter (whole clips; `VADIterator` for
    streams is in the same package). Importing silero_vad calls
    ``torch.set_num_threads(1)`` for the whole process (which would slow everything that runs after it, e.g. an
    extraction's backbones, to one thread): the thread count is restored."""
    import warnings

    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad import get_speech_timestamps, load_silero_vad

        with warnings.catch_warnings():  # deprecation notices about silero-vad's own loader (torch.jit, importlib)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return load_silero_vad(), get_speech_timestamps
    except ImportError as error:
        from .transcript import TranscriptionError

        raise TranscriptionError("voice activity detection needs the silero-vad package: pip install silero-vad "
                                 "(or pass --no-vad)") from error
    finally:
        torch.set_num_threads(threads)


class SpeechDetector:
    """silero-vad over whole clips. The model is loaded once, on first use."""

    def __init__(self, options: VadOptions | None = None):
        self.options = options or VadOptions()
        self._model = self._segmenter = None

    def segments(self, waveform: np.ndarray | None, sampling_rate: int = VAD_SAMPLING_RATE) -> list[list[float]]:
        """Speech segments ``[start, end]`` (seconds, 3 decimals) of a mono waveform; ``[]`` for ``None``, an
        empty waveform or one without speech."""
        if waveform is None or len(waveform) == 0 or not np.any(waveform):
            return []
        if sampling_rate != VAD_SAMPLING_RATE:
            raise ValueError(f"silero-vad is run at {VAD_SAMPLING_RATE} Hz here, got {sampling_rate} Hz audio")
        import torch

        if self._model is None:
            self._model, self._segmenter = _load_silero()
        self._model.reset_states()
        audio = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
        with torch.inference_mode():
            stamps = self._segmenter(audio, self._model, sampling_rate=sampling_rate, **self.options.to_dict())
        return [[round(item["start"] / sampling_rate, 3), round(item["end"] / sampling_rate, 3)] for item in stamps]


class SpeechStream:
    """silero-vad over a stream, as it arrives: `feed` 16 kHz mono samples, get the speech segments that ended (in
    samples from the start of the stream). silero-vad's own streaming rule (`VADIterator`: a segment starts at the
    first 32 ms chunk whose speech probability reaches ``threshold`` and ends after ``min_silence_duration_ms`` below
    ``threshold - 0.15``; ``speech_pad_ms`` on both sides) with the options of :class:`VadOptions`; segments shorter
    than ``min_speech_duration_ms`` are dropped, as for whole clips. The model keeps state per stream, so every
    stream loads its own copy (a 2 MB TorchScript file from the installed wheel)."""

    CHUNK = 512  # samples per silero-vad step at 16 kHz

    def __init__(self, options: VadOptions | None = None):
        self.options = options or VadOptions()
        model, _ = _load_silero()  # first: it imports silero_vad without letting it change the thread count
        from silero_vad import VADIterator

        self._iterator = VADIterator(model, threshold=self.options.threshold, sampling_rate=VAD_SAMPLING_RATE,
                                     min_silence_duration_ms=self.options.min_silence_duration_ms,
                                     speech_pad_ms=self.options.speech_pad_ms)
        self._rest = np.zeros(0, np.float32)
        self.position = 0  # samples fed to the model so far
        self.speech_start: int | None = None  # the segment in progress (None: silence)

    def feed(self, samples: np.ndarray) -> list[tuple[int, int]]:
        """The segments ``(start, end)`` (samples) that ended within `samples`; the one still going is
        `speech_start`."""
        import torch

        audio = np.concatenate([self._rest, np.asarray(samples, np.float32)])
        stop = len(audio) - len(audio) % self.CHUNK
        self._rest = audio[stop:]
        ended = []
        with torch.inference_mode():
            for offset in range(0, stop, self.CHUNK):
                event = self._iterator(torch.from_numpy(audio[offset : offset + self.CHUNK]))
                self.position += self.CHUNK
                if event and "start" in event:
                    self.speech_start = int(event["start"])
                elif event and "end" in event and self.speech_start is not None:
                    ended += self._kept(self.speech_start, int(event["end"]))
                    self.speech_start = None
        return ended

    def finish(self) -> list[tuple[int, int]]:
        """The end of the stream: the segment still going ends at the last sample fed."""
        start, self.speech_start = self.speech_start, None
        self._iterator.reset_states()
        return [] if start is None else self._kept(start, self.position + len(self._rest))

    def split(self) -> tuple[int, int] | None:
        """Ends the segment in progress here and starts the next at the same sample (a long utterance cut in two);
        None in silence."""
        if self.speech_start is None:
            return None
        start, self.speech_start = self.speech_start, self.position
        return start, self.position

    def _kept(self, start: int, end: int) -> list[tuple[int, int]]:
        return [(start, end)] if end - start >= self.options.min_speech_duration_ms * VAD_SAMPLING_RATE / 1000 else []


def speech_seconds(segments: list[list[float]]) -> float:
    return float(sum(end - start for start, end in segments))


def speech_frame_mask(segments: list[list[float]], num_frames: int, frame_rate: float,
                      start_time: float = 0.0) -> np.ndarray:
    """int8 ``[num_frames]``: 1 where frame ``k`` (centred at ``start_time + (k + 0.5) / frame_rate``) lies inside
    a speech segment. Multiply an audio feature mask by it to mask non-speech frames (e.g. wav2vec2's 50 Hz grid:
    ``frame_rate=50``)."""
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    centres = start_time + (np.arange(int(num_frames)) + 0.5) / float(frame_rate)
    mask = np.zeros(int(num_frames), dtype=np.int8)
    for start, end in segments:
        mask[(centres >= start) & (centres < end)] = 1
    return mask
