"""[`EmiStreamer`]: live EMI estimation from pushed video frames and audio chunks, one update per hop.

```python
from emi_hf.inference import load_for_inference
from emi_hf.streaming import EmiStreamer

model, processor = load_for_inference("path/to/model")
with EmiStreamer(model, processor, window_s=4.0, hop_s=0.5) as streamer:
    streamer.push_frame(rgb, t=0.033)              # uint8 RGB [H, W, 3] and its media time in seconds
    streamer.push_audio(samples, 48000, t=0.0)     # mono (or [n, channels]) samples at their rate
    for update in streamer.poll():                 # StreamUpdate: t, per_modality, face, speech, latency_s, ...
        print(update.to_dict())
```

A worker thread does the work as the inputs arrive, incrementally: frames are resampled to the processor's
target rate by the nearest-frame rule of the offline path; the subject is tracked across hops (the detector on the
first frame, at cuts and when the track is lost, the face mesh in between: `SubjectTracker`); each source frame is
aligned, measured (AU inputs) and embedded once (in one batch per hop); the speech encoder runs on the new audio
plus ``audio_context_s`` seconds before it. Every hop the temporal models run over the cached features of the
window (cheap). Caches keep only the last window (plus the context), so memory stays flat.

Agreement with the offline path (``predict_clips`` on a clip made of the window's frames and samples): the visual
model's input is built as the processor builds it for such a clip (the AU baseline over the window's source frames,
each counted once), so visual intensities agree to float rounding, given the same per-frame face results. The
audio differs by the context margin: offline, the encoder hears the whole window (bidirectional attention, one
normalisation); here each encoder frame hears the audio of its hop plus ``audio_context_s`` before it, normalised
together. ``audio_context_s=None`` re-encodes the whole window every hop instead: exact, at about
``window_s / hop_s`` times the speech-encoder cost.

When the worker falls behind, ``push_frame`` drops the frame (at most ``max_pending_frames`` wait); audio is not
dropped, unless ``max_pending_audio_s`` bounds it too (a live microphone): then a chunk with its time that finds that
much audio waiting is dropped and heard as silence. ``StreamUpdate.dropped_frames`` / ``dropped_audio_s`` count them.

A model with a text part (a fusion of the three modalities, a visual or audio + text fusion, a text model) hears the
words too (`emi_hf.streaming.words.LiveWords`): voice activity on the incoming audio, each utterance transcribed on a
second worker thread once it ends (and every ``partial_every_s`` seconds while it goes on), so ASR never holds up a
hop; the text model reads the words of the utterances that overlap the window, and fusion includes it once there
are words (before, the text intensities are NaN and fusion weighs the other modalities). ``StreamUpdate.transcript``
holds the window's words, marked partial or final, and the ASR lag. When the input ends the utterance in progress is
transcribed and one last update (``end_of_stream``) covers the input's end, so the last words are not lost.
"""

from __future__ import annotations

import collections
import math
import threading
import time

import numpy as np
import torch

from ..errors import EmiUsageError
from ..encoders.face_embedding import FaceEmbedder
from ..inference import model_stages
from ..media.alignment import align_face
from ..media.au import OpenFaceAUBackend
from ..media.decoding import SourceFrame
from ..media.faces import SubjectTracker
from ..media.pipeline import ClipPipeline
from ..media.resampling import nearest_frames
from ..provenance import check_raw_input_backbones
from ..text.transcript import Transcript
from .features import AudioStore, FrameRow, VisualStore
from .update import StreamUpdate
from .words import LiveWords

__all__ = ["EmiStreamer"]

_UNIMODAL = {"emi_visual": "visual", "emi_audio": "audio", "emi_text": "text"}


def stream_modalities(model) -> tuple[str, ...]:
    """The keys of `StreamUpdate.per_modality` for `model`: its modalities, and "fused" for a fusion model."""
    model_type = model.config.model_type
    if model_type == "emi_fusion":
        return (*model.config.modalities, "fused")
    if model_type in _UNIMODAL:
        return (_UNIMODAL[model_type],)
    raise EmiUsageError(f"EmiStreamer takes an emi_visual, emi_audio, emi_text or emi_fusion model, got {model_type} "
                        "(stream one member of an ensemble, or a fusion model)")


class EmiStreamer:
    """Live EMI estimation: push frames and audio, read one [`StreamUpdate`] per hop (see module doc).

    Args:
        model: an `EmiFusionModel` (of any of visual, audio, text), `EmiVisualModel`, `EmiAudioModel` or
            `EmiTextModel` in eval mode (`load_for_inference`).
        processor: its `EmiProcessor` (frame rate, face detector, AU backend, audio rate and normalisation).
        window_s: seconds of input each update covers; hop_s: seconds between updates (media time).
        audio_context_s: seconds of audio before the new audio the speech encoder hears (None: the whole window,
            re-encoded every hop, exact).
        max_pending_frames: frames that may wait for the worker; more are dropped.
        max_pending_audio_s: seconds of audio that may wait for the worker (None: no limit, nothing dropped).
        on_update: optional callable run (in the worker thread) with each update, besides `poll()`.
        allow_random_backbones: score with a random or missing backbone (refused otherwise, unless the model was
            allowed when loaded; `emi_hf.provenance`).
        text_side: a model with a text part: where the words come from (`emi_hf.inference.TextSide`: its speech
            recognizer and voice-activity options, its tokenizer); default `TextSide.for_model(model)` (the ASR the
            model's training transcripts came from). Without a recognizer nor `transcript`, the text part stays
            absent and each update's warnings say so.
        transcript: a known transcript of the stream (`emi_hf.text.Transcript`, or its text) used instead of ASR.
        partial_every_s: seconds between two transcriptions of an utterance still going on (None: when it ends).
        words_timeout_s: when the input ends, how long to wait for the last utterances' words.
        words_threads: torch threads of the words' worker (`LiveWords`; default 1, None: the process's setting).
    """

    def __init__(self, model, processor, window_s: float = 4.0, hop_s: float = 0.5,
                 audio_context_s: float | None = 1.0, max_pending_frames: int = 4,
                 max_pending_audio_s: float | None = None, on_update=None,
                 allow_random_backbones: bool = False, text_side=None, transcript: Transcript | str | None = None,
                 partial_every_s: float | None = 2.0, words_timeout_s: float = 60.0, words_threads: int | None = 1):
        if not 0 < hop_s <= window_s:
            raise EmiUsageError(f"need 0 < hop_s <= window_s, got hop_s={hop_s}, window_s={window_s}")
        check_raw_input_backbones(model, allow_random_backbones, source=getattr(model, "name_or_path", None))
        self.modalities = stream_modalities(model)
        self.model, self.processor = model, processor
        self.window_s, self.hop_s = float(window_s), float(hop_s)
        self.label_names = [model.config.id2label[i] for i in range(len(model.config.id2label))]
        self.settings = processor.clip_settings()
        self.pipeline = ClipPipeline(self.settings,
                                     face_landmarker_model=getattr(processor, "_face_landmarker_model", None))
        stages = model_stages(model)  # the one rule: no face detection, mesh or AUs without a visual part
        if stages.faces and isinstance(self.pipeline.au_backend, OpenFaceAUBackend):
            raise EmiUsageError("au_backend='openface' reads AUs from OpenFace CSVs written after the fact; a live "
                                "stream needs a processor with au_backend='mediapipe' (or 'pyfaceau' or None).")
        visual = getattr(model, "visual", model) if stages.faces else None
        audio = getattr(model, "audio", model) if stages.audio else None
        keep = self.window_s + self.hop_s + (audio_context_s or 0.0) + 1.0
        self.visual = None if visual is None else VisualStore(
            FaceEmbedder(processor, visual), self.pipeline.au_backend, len(self.settings.au_names),
            int(visual.config.visual_feature_dim), keep)
        self.audio = AudioStore(audio, processor, keep, audio_context_s)
        text = getattr(model, "text", model if "text" in self.modalities else None)
        self.words, self.words_timeout_s, self._words_note = None, float(words_timeout_s), None
        if text is not None:
            self.words = self._live_words(model, text, text_side, transcript, partial_every_s, words_threads)
        self.max_pending_frames = int(max_pending_frames)
        self.max_pending_audio_s = max_pending_audio_s
        self._pending_audio_s = self.dropped_audio_s = 0.0
        self.on_update = on_update
        self._inbox: collections.deque = collections.deque()
        self._pending_frames = 0
        self._dropped = self._dropped_reported = 0
        self._updates: collections.deque[StreamUpdate] = collections.deque(maxlen=1024)
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self._t0: float | None = None
        self._next_end: float | None = None
        self._video_covered: float | None = None
        self._thread = threading.Thread(target=self._run, name="emi-streamer", daemon=True)
        self._thread.start()

    def _live_words(self, model, text, text_side, transcript, partial_every_s, threads) -> LiveWords | None:
        from ..inference import TextSide

        if text_side is None:
            text_side = TextSide.for_model(model, use_cache=False)
        if isinstance(transcript, str):
            transcript = Transcript(text=transcript, source="given")
        if transcript is None and text_side.transcriber is None:
            self._words_note = ("no words: the model's text part has neither a speech recognizer (emi-hf stream "
                                "--asr-model; the demo: EMI_HF_ASR_MODEL) nor a known transcript, so its intensities "
                                "are absent")
            return None
        keep = 2 * self.window_s + self.hop_s + 1.0  # the oldest window an update can still ask for
        return LiveWords(text, text_side, keep, self.window_s, known=transcript, partial_every_s=partial_every_s,
                         threads=threads)

    # -- input ----------------------------------------------------------------------------------------------
    def push_frame(self, image: np.ndarray, t: float, block: bool = False) -> bool:
        """Queues one RGB uint8 frame ``[H, W, 3]`` at media time `t` (seconds, increasing). Returns False when
        the frame was dropped (the worker is behind; with ``block=True`` it waits instead)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"a frame must be RGB [H, W, 3], got shape {image.shape}")
        if image.dtype != np.uint8:
            image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        with self._cond:
            self._check_open()
            if self._pending_frames >= self.max_pending_frames:
                if not block:
                    self._dropped += 1
                    return False
                self._cond.wait_for(lambda: self._pending_frames < self.max_pending_frames or self._error)
                self._check_open()
            self._pending_frames += 1
            self._inbox.append(("frame", (np.ascontiguousarray(image), float(t)), time.perf_counter()))
            self._cond.notify_all()
        return True

    def push_audio(self, samples: np.ndarray, sampling_rate: int, t: float | None = None) -> bool:
        """Queues an audio chunk (mono, or ``[n, channels]``; float or PCM integers) at `sampling_rate`; `t` is
        the media time of its first sample (default: right after the previous chunk; the first chunk at 0). A
        chunk that starts after the previous one ended leaves silence in between; chunks never overlap. Returns
        False when the chunk was dropped (``max_pending_audio_s`` of audio waits already; only chunks with `t`)."""
        seconds = len(samples) / float(sampling_rate)
        with self._cond:
            self._check_open()
            limit = self.max_pending_audio_s
            if limit is not None and t is not None and self._pending_audio_s + seconds > limit:
                self.dropped_audio_s += seconds
                return False
            self._pending_audio_s += seconds
            self._inbox.append(("audio", (samples, int(sampling_rate), t), time.perf_counter()))
            self._cond.notify_all()
        return True

    def poll(self) -> list[StreamUpdate]:
        """The updates emitted since the last call (never blocks)."""
        with self._cond:
            if self._error is not None:
                raise self._error
            updates = list(self._updates)
            self._updates.clear()
        return updates

    def flush(self, timeout: float | None = None) -> list[StreamUpdate]:
        """Waits until every queued input is processed; returns `poll()`."""
        self._wait_processed(timeout)
        return self.poll()

    def _wait_processed(self, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: (not self._inbox and not self._busy) or self._error is not None,
                                       timeout)

    def close(self, wait_for_words: bool = True) -> list[StreamUpdate]:
        """Processes what is queued, emits the hops the input completes, stops the worker; returns `poll()`. A model
        with a text part: the last utterances are transcribed first (at most `words_timeout_s`; not with
        ``wait_for_words=False``) and an `end_of_stream` update follows the hops."""
        self._stop(wait_for_words)
        return self.poll()

    def wait_for_words(self, timeout: float | None = None) -> bool:
        """Waits until the audio pushed so far has been through voice activity and every utterance that ended has
        been transcribed (the next hops then show their words); True at once without a text part."""
        self._wait_processed(timeout)
        return self.words is None or self.words.wait_idle(timeout)

    def _stop(self, wait_for_words: bool = True) -> None:
        with self._cond:
            if not self._closed:
                self._closed = True
                self._wait_for_words = wait_for_words
                self._cond.notify_all()
        self._thread.join()

    def __enter__(self) -> EmiStreamer:
        return self

    def __exit__(self, *exc) -> None:
        """Stops the worker; the updates not read yet stay for `poll()` / `close()`."""
        self._stop()

    @property
    def dropped_frames(self) -> int:
        return self._dropped

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise RuntimeError("the streamer is closed")

    # -- worker ---------------------------------------------------------------------------------------------
    _busy = False
    _wait_for_words = True
    _last_t: float | None = None

    def _next_item(self):
        with self._cond:
            self._busy = False
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._inbox or self._closed)
            if not self._inbox:
                return None
            self._busy = True
            item = self._inbox.popleft()
            if item[0] == "frame":
                self._pending_frames -= 1
                self._cond.notify_all()
            else:
                samples, rate, _ = item[1]
                self._pending_audio_s = max(0.0, self._pending_audio_s - len(samples) / float(rate))
            return item

    def _timed_frames(self):
        """The queued frames as ``(image, time, None)`` for the nearest-frame rule; audio chunks and the hop
        bookkeeping are handled in between (every output frame before the latest frame's is processed then)."""
        previous = None
        while True:
            item = self._next_item()
            if item is None:
                break
            kind, payload, arrived = item
            if kind == "audio":
                samples, rate, t = payload
                self._start(t if t is not None else 0.0)
                added, start = self.audio.add(samples, rate, t)
                if self.words is not None and len(added):
                    self.words.add(added, self.audio.rate, start, arrived)
                self._emit_ready(arrived)
                continue
            image, t = payload
            if previous is not None and t <= previous:
                continue  # the rule drops a frame whose time does not increase
            self._start(t)
            yield image, t, None
            if previous is not None:
                self._video_covered = (previous + t) / 2
            previous = t
            self._emit_ready(arrived)
        if previous is not None:
            self._video_covered = previous + 1.0 / (self.settings.target_fps or 30.0)

    def _run(self) -> None:
        try:
            self._landmarker = None
            if self.visual is not None:
                self._landmarker = self.pipeline.landmarker()
                detector = self.pipeline.detector
                self._tracker = None if detector is None else SubjectTracker(
                    detector, self._landmarker, detect_every=self.settings.detect_every, subject=self.settings.subject)
            self._grid_index = 0
            self._grid_t0 = None
            for image, t, index, repeat in nearest_frames(self._timed_frames(), self.settings.target_fps):
                self._add_frame(image, t, index, repeat)
            if self.words is not None and self._wait_for_words:
                self.words.finish(self.words_timeout_s)
            self._emit_ready(time.perf_counter(), final=True)
            if self.words is not None and self._t0 is not None:
                self._emit_end()
        except BaseException as error:  # re-raised by poll() / push_*() in the caller's thread
            with self._cond:
                self._error = error
                self._cond.notify_all()
        finally:
            if self.words is not None:
                self.words.close()
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _start(self, t: float) -> None:
        if self._t0 is None:
            self._t0 = float(t)
            self._next_end = self._t0 + self.hop_s

    def _add_frame(self, image: np.ndarray, t: float, index: int, repeat: int) -> None:
        """One kept source frame: face, alignment, AU inputs; `repeat` rows on the output grid."""
        if self._grid_t0 is None:
            self._grid_t0 = t
        if self.visual is None:
            return
        frame = SourceFrame(image, t, index, repeat)
        if self._tracker is not None:
            (result,) = self._tracker.process([image])
            crop = align_face(image, result.points, self.settings.face_size,
                              self.settings.face_alignment) if result.box is not None else None
        else:  # the frames are face crops already
            mesh = self._landmarker if self.pipeline.mesh_aus else None
            (result,), (crop,) = self.pipeline.crops_as_faces([frame], mesh)
        inputs = self.pipeline.au_inputs([frame], [result])
        measurement, au12 = (None, math.nan) if inputs is None else (inputs[0][0], float(inputs[1][0]))
        fps = self.settings.target_fps
        for _ in range(repeat):
            grid_time = self._grid_t0 + self._grid_index / fps if fps else t
            self.visual.add(FrameRow(grid_time, index, result.box is not None, crop, None, measurement, au12))
            self._grid_index += 1

    # -- updates --------------------------------------------------------------------------------------------
    def _covered(self, final: bool) -> float | None:
        """Media time up to which every input has been processed (the slower modality, unless it lags by more
        than a window: then it is taken as absent)."""
        ends = []
        if self._video_covered is not None:
            ends.append(self._video_covered)
        if self.audio.start_time is not None:
            ends.append(self.audio.end_time)
        if not ends:
            return None
        if final:
            return max(ends)
        slowest, fastest = min(ends), max(ends)
        return fastest if fastest - slowest > self.window_s else slowest

    def _emit_ready(self, arrived: float, final: bool = False) -> None:
        covered = self._covered(final)
        while covered is not None and self._next_end is not None and self._next_end <= covered + 1e-9:
            self._emit(self._update(self._next_end, arrived))
            self._next_end = self._t0 + (round((self._next_end - self._t0) / self.hop_s) + 1) * self.hop_s

    def _emit(self, update: StreamUpdate) -> None:
        self._last_t = update.t
        with self._cond:
            self._updates.append(update)
        if self.on_update is not None:
            self.on_update(update)

    def _emit_end(self) -> None:
        """The end-of-stream update of a model with a text part: the window up to where the input ended, with the
        words of the last utterances (transcribed after the last hop)."""
        end = max(self._covered(True) or self._t0, self._last_t or self._t0)
        if end > self._t0:
            self._emit(self._update(end, time.perf_counter(), end_of_stream=True))

    @torch.inference_mode()
    def _update(self, end: float, arrived: float, end_of_stream: bool = False) -> StreamUpdate:
        began = time.perf_counter()
        start = max(self._t0, end - self.window_s)
        inputs: dict[str, torch.Tensor] = {}
        rows = []
        device = next(self.model.parameters()).device
        if self.visual is not None:
            self.visual.embed_new()
            rows, visual_inputs = self.visual.window(start, end)
            inputs.update({k: torch.as_tensor(v, device=device) for k, v in visual_inputs.items()})
        self.audio.encode_new()
        audio_seconds, speech, audio_inputs = self.audio.window(start, end)
        if "audio" in self.modalities:
            inputs.update(audio_inputs or self._no_audio(device))
        words = None if self.words is None else self.words.window(start, end)
        embedded = None if words is None else self.words.features(words.text)
        if embedded is not None:
            inputs.update(text_features=embedded[0], text_mask=embedded[1])
        elif self.modalities == ("text",):  # a text model alone: an input without a token (NaN intensities)
            dim = int(self.model.config.text_feature_dim)
            inputs.update(text_features=torch.zeros(1, 1, dim, device=device),
                          text_mask=torch.zeros(1, 1, dtype=torch.bool, device=device))
        output = self.model(**inputs, return_dict=True)
        per_modality = self._intensities(output)
        dropped, self._dropped_reported = self._dropped - self._dropped_reported, self._dropped
        faces = sum(r.face for r in rows)
        return StreamUpdate(
            t=end, window_start=start, label_names=self.label_names, per_modality=per_modality, face=faces > 0,
            face_fraction=faces / len(rows) if rows else 0.0, speech=speech,
            latency_s=time.perf_counter() - arrived, compute_s=time.perf_counter() - began,
            dropped_frames=dropped, dropped_total=self._dropped, num_frames=len(rows), audio_seconds=audio_seconds,
            warnings=[self._words_note] if self._words_note else [], transcript=words, end_of_stream=end_of_stream,
            dropped_audio_s=self.dropped_audio_s)

    def _no_audio(self, device) -> dict[str, torch.Tensor]:
        dim = int(self.audio.model.config.audio_feature_dim)
        return {"audio_features": torch.zeros(1, 1, dim, device=device),
                "audio_mask": torch.zeros(1, 1, dtype=torch.bool, device=device)}

    def _intensities(self, output) -> dict[str, dict[str, float]]:
        if "fused" in self.modalities:
            values = {m: getattr(output, f"{m}_intensities") for m in self.modalities if m != "fused"}
            values["fused"] = output.intensities
        else:
            values = {self.modalities[0]: output.intensities}
        return {m: dict(zip(self.label_names, v[0].float().tolist())) for m, v in values.items()}
