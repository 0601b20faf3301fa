"""The demo's "Live" tab: webcam frames and microphone chunks streamed (Gradio streaming events) into an
`emi_hf.streaming.EmiStreamer`, with a live bar chart of the six intensities, a rolling timeline and the latency;
for a model with a text part, the running transcript (the words heard, the utterance in progress marked partial) and
a bar chart of the text model's intensities. The words come from the model's speech recognizer (the one its
training transcripts came from, or EMI_HF_ASR_MODEL); without one the page says that the text part is absent.

Each browser session gets its own streamer (a worker thread; the model is shared), made at its first frame or chunk
(the webcam's and the microphone's first events may come together: both get the same one) and closed when the
session ends (the tab is closed or reloaded) or after ``SESSION_TTL_S``. Frame times are the
server's arrival times, so the windows follow wall-clock time; frames the streamer cannot keep up with are dropped
(counted on the page).
"""

from __future__ import annotations

import collections
import threading
import time

import gradio as gr
import numpy as np
import pandas as pd

from emi_hf.inference import model_modalities
from emi_hf.streaming import EmiStreamer

WINDOW_S, HOP_S = 4.0, 0.5
FRAME_EVERY_S = 0.1  # the webcam sends a frame this often (10 fps, the rate the checkpoints are trained at)
AUDIO_EVERY_S = 0.5
TIMELINE_S = 60.0  # the timeline shows this much of the past
TIME_LIMIT_S = 600  # one streaming session runs at most this long (then press the webcam button again)
SESSION_TTL_S = 3600
MAX_PENDING_FRAMES = 2  # frames waiting for the streamer; more are dropped (a short queue keeps latency low)
MAX_PENDING_AUDIO_S = 2.0  # microphone audio waiting for the streamer; more is dropped (heard as silence)
TRANSCRIPT_UTTERANCES = 20  # the transcript area shows this many of the last utterances


class LiveSession:
    """One browser session's streamer (made at its first frame or chunk) and the updates it has shown (the
    timeline keeps the last `TIMELINE_S`)."""

    def __init__(self, engine):
        self.engine = engine
        self.streamer: EmiStreamer | None = None
        self.started = 0.0
        self.history: collections.deque = collections.deque(maxlen=int(TIMELINE_S / HOP_S))
        self.said: collections.OrderedDict = collections.OrderedDict()  # utterance start -> (text, final)
        self.count = 0
        self._lock = threading.Lock()  # the webcam's and the microphone's events run at the same time

    def _streamer(self) -> EmiStreamer:
        with self._lock:
            if self.streamer is None:
                if not self.engine.ready:
                    raise gr.Error((self.engine.load_error or "No model loaded.").replace("`", "'"))
                self.streamer = EmiStreamer(self.engine.model, self.engine.processor, window_s=WINDOW_S,
                                            hop_s=HOP_S, max_pending_frames=MAX_PENDING_FRAMES,
                                            max_pending_audio_s=MAX_PENDING_AUDIO_S,
                                            text_side=getattr(self.engine, "text_side", None))
                self.started = time.monotonic()
            return self.streamer

    def now(self) -> float:
        return time.monotonic() - self.started

    def push_frame(self, image) -> None:
        if image is not None:
            streamer = self._streamer()
            streamer.push_frame(np.asarray(image)[..., :3], self.now())

    def push_audio(self, chunk) -> None:
        """A microphone chunk, placed at its arrival time (a gap since the previous chunk is silence)."""
        if chunk is None:
            return
        rate, samples = chunk
        samples = np.asarray(samples)
        if samples.size:
            streamer = self._streamer()
            streamer.push_audio(samples, int(rate), max(0.0, self.now() - samples.shape[0] / int(rate)))

    def outputs(self) -> tuple:
        """(bar chart data, timeline data, status, transcript, text bar chart data) after the newest update, or
        skips when there is none."""
        updates = self.streamer.poll() if self.streamer is not None else []
        if not updates:
            return (gr.skip(),) * 5
        self.history.extend(updates)
        self.count += len(updates)
        latest = updates[-1]
        bars = pd.DataFrame({"emotion": list(latest.intensities),
                             "intensity": [0.0 if v != v else v for v in latest.intensities.values()]})
        rows = [(u.t, name, v) for u in self.history for name, v in u.intensities.items() if v == v]
        timeline = pd.DataFrame(rows, columns=["t", "emotion", "intensity"])
        if "text" not in latest.per_modality:
            return bars, timeline, status_markdown(latest, self.count), gr.skip(), gr.skip()
        for update in updates:
            self.hear(update)
        text = latest.per_modality["text"]
        text_bars = pd.DataFrame({"emotion": list(text), "intensity": [v for v in text.values()]}).dropna()
        return bars, timeline, status_markdown(latest, self.count), self.transcript_markdown(latest), text_bars

    def hear(self, update) -> None:
        """Keeps the utterances an update shows (a final replaces the partial that started at the same time)."""
        for utterance in update.transcript.utterances if update.transcript else []:
            start, end = utterance["start"], utterance["end"]
            if utterance["final"] and start is not None and end is not None:  # the partials it covers go
                for covered in [k for k, (_, final) in self.said.items() if not final and start <= k <= end]:
                    del self.said[covered]
            self.said[start] = (utterance["text"], utterance["final"])
        while len(self.said) > TRANSCRIPT_UTTERANCES:
            self.said.popitem(last=False)

    def transcript_markdown(self, update) -> str:
        if update.transcript is None:
            return "_" + " ".join(update.warnings or ["No words."]) + "_"
        lines = [text if final else f"_{text} ..._" for text, final in self.said.values()]
        if not lines:
            return "_No words yet: speak into the microphone._"
        lag = update.transcript.asr_lag_s
        note = f"\n\n<small>last ASR lag {1000 * lag:.0f} ms</small>" if lag is not None else ""
        return "\n\n".join(lines) + note

    def close(self) -> None:
        if self.streamer is not None:
            self.streamer.close()


def status_markdown(update, count: int) -> str:
    face = "yes" if update.face else "no"
    speech = "yes" if update.speech else "no"
    words = ""
    if update.transcript is not None:
        state = "none yet" if not update.transcript.text else "partial" if update.transcript.partial else "final"
        words = f", words: {state}"
    return (f"**Update {count}** at t = {update.t:.1f} s (window {update.window_start:.1f}-{update.t:.1f} s): "
            f"latency **{1000 * update.latency_s:.0f} ms**, hop compute {1000 * update.compute_s:.0f} ms, "
            f"face: {face}, speech: {speech}{words}, dropped frames: {update.dropped_total}")


def _close(session) -> None:
    if isinstance(session, LiveSession):
        session.close()


def build_live_tab(engine) -> None:
    """The Live tab's components and streaming events (call inside a `gr.Tab`)."""
    gr.Markdown(f"Stream your webcam (and microphone) into the model: every {HOP_S:g} s it estimates the six "
                f"intensities over the last {WINDOW_S:g} s. Press the webcam's record button to start.")
    session = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=_close)
    made = threading.Lock()
    sessions: dict = {}  # browser session hash -> the LiveSession made for it, until its gr.State holds it

    def live_session(state, request: gr.Request) -> LiveSession:
        if isinstance(state, LiveSession):
            sessions.pop(request.session_hash, None)  # the state holds it now
            return state
        with made:
            return sessions.setdefault(request.session_hash, LiveSession(engine))
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            webcam = gr.Image(label="Webcam", sources=["webcam"], streaming=True, type="numpy", height=280,
                              elem_id="emi-live-webcam")
            microphone = gr.Audio(label="Microphone", sources=["microphone"], streaming=True, type="numpy",
                                  elem_id="emi-live-mic")
            status = gr.Markdown("_Waiting for the stream._", elem_id="emi-live-status")
        with gr.Column(scale=3, min_width=420):
            bars = gr.BarPlot(x="emotion", y="intensity", y_lim=[0, 1], title="Intensities over the last window",
                              height=260, elem_id="emi-live-bars")
            timeline = gr.LinePlot(x="t", y="intensity", color="emotion", y_lim=[0, 1], x_title="time (s)",
                                   title=f"Timeline (last {TIMELINE_S:g} s)", height=260, elem_id="emi-live-timeline")
    words = "text" in model_modalities(engine.model) if engine.ready else False
    with gr.Row(equal_height=False, visible=words):
        with gr.Column(scale=2, min_width=320):
            transcript = gr.Markdown("_No words yet: speak into the microphone._", label="What was said",
                                     elem_id="emi-live-transcript")
        with gr.Column(scale=3, min_width=420):
            text_bars = gr.BarPlot(x="emotion", y="intensity", y_lim=[0, 1], height=220,
                                   title="From the words (text model), over the last window",
                                   elem_id="emi-live-text-bars")

    def on_frame(image, state, request: gr.Request):
        state = live_session(state, request)
        state.push_frame(image)
        return (*state.outputs(), state)

    def on_audio(chunk, state, request: gr.Request):
        state = live_session(state, request)
        state.push_audio(chunk)
        return (*state.outputs(), state)

    outputs = [bars, timeline, status, transcript, text_bars, session]
    webcam.stream(on_frame, inputs=[webcam, session], outputs=outputs, stream_every=FRAME_EVERY_S,
                  time_limit=TIME_LIMIT_S, concurrency_limit=8, show_progress="hidden")
    microphone.stream(on_audio, inputs=[microphone, session], outputs=outputs, stream_every=AUDIO_EVERY_S,
                      time_limit=TIME_LIMIT_S, concurrency_limit=8, show_progress="hidden")
