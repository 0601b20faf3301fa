"""What was said, live: [`LiveWords`] finds the utterances in the stream's audio (silero-vad, as it arrives),
transcribes each on its own worker thread, so that ASR never holds up a hop, and gives each update the words of its
window and their token embeddings for the text model.

An utterance is transcribed once it ends (a final), and every ``partial_every_s`` seconds while it goes on (a partial,
replaced by the next partial and then by the final); one longer than ``max_utterance_s`` is cut there (Whisper hears
30 s at a time). When ASR falls behind, the utterances that ended meanwhile are transcribed together in one call, and
those that have left every window the streamer can still emit are dropped untranscribed (counted): the work waiting
never grows. The words of a window are those of the utterances that overlap it, in order.

The text model's input is the window's words embedded by its frozen text encoder. The worker embeds the texts the
next windows will hold (the newest utterances joined) before it publishes an utterance, so a hop only looks them up.

With a known transcript (``known``: a `Transcript` read from a file) there is no ASR: a segment with times is heard
once the stream has reached its end; a transcript without times (a CSV row) holds the whole clip's words from the
first update on.
"""

from __future__ import annotations

import collections
import math
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import EmiUsageError
from ..media.decoding import resample_waveform
from ..text.transcript import Transcript
from ..text.vad import VAD_SAMPLING_RATE, SpeechStream, VadOptions
from .update import WindowWords

__all__ = ["LiveWords", "Utterance"]

RATE = VAD_SAMPLING_RATE  # the rate of silero-vad and Whisper
_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # shared object -> the lock around its use
_LOCKS_GUARD = threading.Lock()


def _use_threads(count: int | None) -> None:
    """This thread's torch ops on `count` intra-op threads (None: as set). `torch.set_num_threads` sets the calling
    thread's OpenMP setting and a process-wide default that threads started later copy; the default is put back at
    once from a short-lived thread, so that only this thread changes."""
    default = torch.get_num_threads()
    if not count or count == default:
        return
    torch.set_num_threads(count)
    restore = threading.Thread(target=torch.set_num_threads, args=(default,), name="emi-threads-restore")
    restore.start()
    restore.join()


def _lock_for(shared) -> threading.Lock:
    """One lock per shared object (an ASR backend or a tokenizer several streams use, e.g. the demo's sessions)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(shared)
        if lock is None:
            lock = _LOCKS[shared] = threading.Lock()
        return lock


@dataclass
class Utterance:
    """One stretch of speech (media seconds) and its words. A partial's `end` is where its transcription stopped."""

    start: float
    end: float
    text: str = ""
    final: bool = False
    ended_at: float | None = None  # perf_counter() when the audio at its end arrived (a final from ASR)
    shown: bool = False  # a final that an update has shown (its ASR lag is measured then)

    def to_dict(self) -> dict:
        def seconds(x):
            return round(x, 3) if math.isfinite(x) else None

        return {"start": seconds(self.start), "end": seconds(self.end), "text": self.text.strip(),
                "final": self.final}


class LiveWords:
    """
    The words of a stream (see module doc).

    Args:
        text_model: the `EmiTextModel` whose frozen encoder embeds the words (a fusion's `text`).
        text_side: an `emi_hf.inference.TextSide` of the model: its tokenizer, and its transcriber's ASR backend,
            language and voice-activity options (ASR models are shared, e.g. by the demo's sessions: one call at a
            time).
        keep_s: seconds of the past a window can still reach (older utterances are forgotten).
        window_s: the streamer's window (which utterances the next windows hold, for the embeddings made ahead).
        known: a transcript to use instead of ASR.
        partial_every_s: seconds between two partials of an utterance in progress (None: finals only).
        max_utterance_s: an utterance is cut after this many seconds.
        threads: torch intra-op threads of the worker (voice activity, ASR with the transformers backend, the text
            encoder); default 1: silero-vad's small steps only slow down with more, and the hops keep the other
            cores (None: the process's setting). faster-whisper's own threads are its `cpu_threads`.
    """

    def __init__(self, text_model, text_side, keep_s: float, window_s: float, known: Transcript | None = None,
                 partial_every_s: float | None = 2.0, max_utterance_s: float = 25.0, threads: int | None = 1):
        self.text_model, self.text_side = text_model, text_side
        self.device = next(text_model.parameters()).device
        self.keep_s, self.window_s = float(keep_s), float(window_s)
        self.threads = threads
        self.origin: float | None = None  # media time of the first audio sample
        self.utterances: list[Utterance] = []  # published: the words known so far, by start
        self.dropped = self.asr_calls = 0
        self.error: BaseException | None = None
        self._features: collections.OrderedDict = collections.OrderedDict()  # text -> (embeddings, mask)
        self._cond = threading.Condition()
        self._inbox: collections.deque = collections.deque()
        self._pending: list[tuple[int, int]] = []  # ended utterances waiting for ASR (samples)
        self._busy = self._finishing = self._closed = False
        self._thread = None
        if known is not None:
            self.source = "file"
            timed = [s for s in known.segments if s.start is not None and s.end is not None and s.text.strip()]
            self._known = [Utterance(s.start, s.end, s.text, final=True) for s in timed] or (
                [Utterance(-math.inf, math.inf, known.text, final=True)] if known.text.strip() else [])
            return
        transcriber = text_side.transcriber
        if transcriber is None:
            raise EmiUsageError("live words need a speech recognizer or a known transcript: pass --asr-model (or "
                                "--transcripts FILE with a row for the video)")
        from ..text.transcribe import Transcriber

        self.source = "asr"
        self.asr = transcriber.asr
        with _lock_for(self.asr):
            self.asr.load()  # a model that cannot be loaded fails here, before the stream starts
        self._transcriber = Transcriber(self.asr, language=transcriber.language, vad=False, use_cache=False)
        options = transcriber.detector.options if transcriber.detector is not None else VadOptions()
        self._vad = SpeechStream(options)
        self.partial_every = None if partial_every_s is None else int(partial_every_s * RATE)
        self.max_utterance = int(max_utterance_s * RATE)
        self._audio = np.zeros(0, np.float32)
        self._audio_offset = 0  # global sample index of _audio[0]
        self._arrivals: collections.deque = collections.deque()  # (global end sample of a chunk, its arrival)
        self._partial_from: int | None = None  # sample where the last partial of the utterance in progress ended
        self._thread = threading.Thread(target=self._run, name="emi-streamer-words", daemon=True)
        self._thread.start()

    # -- input (the streamer's worker thread) ------------------------------------------------------------------
    def add(self, samples: np.ndarray, rate: int, t: float, arrived: float) -> None:
        """Audio the stream received (mono float32 at `rate`, its first sample at media time `t`, contiguous with
        the previous chunk); never blocks."""
        if self.origin is None:
            self.origin = float(t)
        if self._thread is None:
            return
        with self._cond:
            self._inbox.append((samples, int(rate), arrived))
            self._cond.notify_all()

    def finish(self, timeout: float | None = None) -> bool:
        """The stream ended: the utterance in progress ends here, and what waits is transcribed. Returns False when
        `timeout` ran out first (what was transcribed by then stays)."""
        if self._thread is None:
            return True
        with self._cond:
            self._finishing = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._drained() or self.error is not None, timeout)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Waits until the audio received so far has been through voice activity, every utterance that ended has
        been transcribed, and so has a partial that is due."""
        if self._thread is None:
            return True
        with self._cond:
            return self._cond.wait_for(lambda: (not self._inbox and not self._busy and not self._pending
                                                and not self._partial_due())
                                       or self.error is not None or self._closed, timeout)

    def close(self) -> None:
        """Stops the worker after the call in progress (nothing more is transcribed)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _drained(self) -> bool:
        return (self._finishing and not self._inbox and not self._busy and not self._pending
                and self._vad.speech_start is None)

    # -- the words of a window (the streamer's worker thread) --------------------------------------------------
    def window(self, start: float, end: float) -> WindowWords:
        """The words of the utterances overlapping ``[start, end)`` (media seconds) heard so far. Finals shown here
        for the first time give the ASR lag: seconds from the arrival of the audio at their end to now."""
        if self.error is not None:
            raise self.error
        now = time.perf_counter()
        with self._cond:
            if self.source == "file":
                origin = self.origin or 0.0
                found = [Utterance(u.start + origin, u.end + origin, u.text, True) for u in self._known
                         if u.start + origin < end and u.end + origin > start and u.end + origin <= end + 1e-6
                         or not math.isfinite(u.end)]
            else:
                found = [u for u in self.utterances if u.start < end and u.end > start]
            lags = []
            for u in found:
                if u.final and not u.shown and u.ended_at is not None:
                    u.shown = True
                    lags.append(now - u.ended_at)
            pending = len(self._pending) + (self._vad.speech_start is not None if self.source == "asr" else 0)
            utterances = [u.to_dict() for u in found]
        spoken = [u for u in utterances if u["text"]]
        return WindowWords(text=" ".join(u["text"] for u in spoken), partial=any(not u["final"] for u in spoken),
                           utterances=spoken, source=self.source, asr_lag_s=max(lags) if lags else None,
                           pending=int(pending), dropped=self.dropped)

    def features(self, text: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The text encoder's token embeddings ``[1, tokens, dim]`` and mask of `text` (cached; None for no words)."""
        if not text.strip():
            return None
        with self._cond:
            found = self._features.get(text)
            if found is not None:
                self._features.move_to_end(text)
                return found
        with _lock_for(self.text_side.tokenizer):  # a fast tokenizer is not to be used by two threads at once
            inputs = self.text_side.inputs([text], self.device)
        with torch.inference_mode():
            embedded = self.text_model.embed_text(inputs["input_ids"], inputs["text_mask"])
        with self._cond:
            self._features[text] = embedded
            while len(self._features) > 64:
                self._features.popitem(last=False)
        return embedded

    # -- worker ----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            _use_threads(self.threads)
            while True:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
                    self._cond.wait_for(lambda: self._inbox or self._closed or self._pending or self._partial_due()
                                        or (self._finishing and not self._drained()))
                    if self._closed:
                        return
                    chunks, finishing = list(self._inbox), self._finishing
                    self._inbox.clear()
                    self._busy = True
                self._listen(chunks)
                if finishing:
                    self._end_utterances(self._vad.finish())
                self._transcribe_next()
                self._forget()
        except BaseException as error:  # raised by the next window() in the streamer's worker
            self.error = error
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _listen(self, chunks) -> None:
        """Voice activity over the new audio; ended utterances wait for ASR, a long one is cut."""
        for samples, rate, arrived in chunks:
            samples = resample_waveform(np.asarray(samples, np.float32), rate, RATE) if rate != RATE else samples
            self._audio = np.concatenate([self._audio, np.asarray(samples, np.float32)])
            end = self._audio_offset + len(self._audio)
            self._arrivals.append((end, arrived))
            self._end_utterances(self._vad.feed(samples))
            start = self._vad.speech_start
            if start is not None and self._vad.position - start >= self.max_utterance:
                self._end_utterances([self._vad.split()])

    def _end_utterances(self, segments) -> None:
        if segments:
            with self._cond:
                self._pending.extend(segments)
            self._partial_from = None

    def _partial_due(self) -> bool:
        start = self._vad.speech_start
        if self.partial_every is None or start is None or self._pending:
            return False
        return self._vad.position - max(start, self._partial_from or start) >= self.partial_every

    def _seconds(self, sample: int) -> float:
        return self.origin + sample / RATE

    def _arrival(self, sample: int) -> float:
        return next((arrived for end, arrived in self._arrivals if end >= sample), time.perf_counter())

    def _transcribe_next(self) -> None:
        """One ASR call: the utterances that ended (as many as fit in one), else a partial that is due."""
        horizon = self._vad.position - int(self.keep_s * RATE)
        with self._cond:
            stale = [p for p in self._pending if p[1] < horizon]
            self._pending = [p for p in self._pending if p[1] >= horizon]
            self.dropped += len(stale)
            batch = self._pending[:1]
            for item in self._pending[1:]:
                if item[1] - batch[0][0] > self.max_utterance:
                    break
                batch.append(item)
        if batch:
            start, end = batch[0][0], batch[-1][1]
            utterance = Utterance(self._seconds(start), self._seconds(end), self._words(start, end), final=True,
                                  ended_at=self._arrival(end))
            self._publish(utterance, len(batch))
        elif self._partial_due():
            start, end = self._vad.speech_start, self._vad.position
            self._partial_from = end
            self._publish(Utterance(self._seconds(start), self._seconds(end), self._words(start, end)), 0)

    def _words(self, start: int, end: int) -> str:
        first = max(start - self._audio_offset, 0)
        waveform = self._audio[first : max(end - self._audio_offset, first)]
        with _lock_for(self.asr), torch.inference_mode():
            transcript = self._transcriber.transcribe_waveform(waveform)
        self.asr_calls += 1
        return transcript.text

    def _publish(self, utterance: Utterance, done: int) -> None:
        """Embeds the texts the next windows will hold with `utterance`, then publishes it (replacing the partials
        it covers) and takes the `done` utterances it transcribed off the waiting list."""
        with self._cond:
            kept = [u for u in self.utterances if u.final or not (utterance.start - 1e-6 <= u.start <= utterance.end)]
        spoken = sorted([u for u in kept if u.text.strip()] + [utterance], key=lambda u: u.start)
        if utterance.text.strip():
            for stop in (len(spoken), len(spoken) - 1):
                for first in range(stop - 1, -1, -1):
                    if spoken[stop - 1].start - spoken[first].end >= self.window_s:
                        break
                    self.features(" ".join(u.text.strip() for u in spoken[first:stop]))
        with self._cond:
            self.utterances = sorted(kept + [utterance], key=lambda u: u.start)
            del self._pending[:done]
            self._cond.notify_all()

    def _forget(self) -> None:
        """Drops the audio and the utterances no window can reach any more."""
        keep_from = self._vad.position - int(self.keep_s * RATE)
        needed = [keep_from]
        if self._vad.speech_start is not None:
            needed.append(self._vad.speech_start)
        with self._cond:
            needed += [p[0] for p in self._pending]
            horizon = self._seconds(keep_from)
            self.utterances = [u for u in self.utterances if u.end >= horizon]
        cut = min(needed) - self._audio_offset
        if cut > 0:
            self._audio, self._audio_offset = self._audio[cut:], self._audio_offset + cut
        while self._arrivals and self._arrivals[0][0] < self._audio_offset:
            self._arrivals.popleft()
