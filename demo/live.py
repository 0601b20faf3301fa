"""The demo's "Live" tab: webcam frames and microphone chunks streamed (Gradio streaming events) into an
`emi_hf.streaming.EmiStreamer`, with a live bar chart of the six intensities, a rolling timeline and the latency.

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

from emi_hf.streaming import EmiStreamer

WINDOW_S, HOP_S = 4.0, 0.5
FRAME_EVERY_S = 0.1  # the webcam sends a frame this often (10 fps, the rate the checkpoints are trained at)
AUDIO_EVERY_S = 0.5
TIMELINE_S = 60.0  # the timeline shows this much of the past
TIME_LIMIT_S = 600  # one streaming session runs at most this long (then press the webcam button again)
SESSION_TTL_S = 3600
MAX_PENDING_FRAMES = 2  # frames waiting for the streamer; more are dropped (a short queue keeps latency low)


class LiveSession:
    """One browser session's streamer (made at its first frame or chunk) and the updates it has shown (the
    timeline keeps the last `TIMELINE_S`)."""

    def __init__(self, engine):
        self.engine = engine
        self.streamer: EmiStreamer | None = None
        self.started = 0.0
        self.history: collections.deque = collections.deque(maxlen=int(TIMELINE_S / HOP_S))
        self.count = 0
        self._lock = threading.Lock()  # the webcam's and the microphone's events run at the same time

    def _streamer(self) -> EmiStreamer:
        with self._lock:
            if self.streamer is None:
                if not self.engine.ready:
                    raise gr.Error((self.engine.load_error or "No model loaded.").replace("`", "'"))
                self.streamer = EmiStreamer(self.engine.model, self.engine.processor, window_s=WINDOW_S,
                                            hop_s=HOP_S, max_pending_frames=MAX_PENDING_FRAMES)
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
        """(bar chart data, timeline data, status) after the newest update, or skips when there is none."""
        updates = self.streamer.poll() if self.streamer is not None else []
        if not updates:
            return gr.skip(), gr.skip(), gr.skip()
        self.history.extend(updates)
        self.count += len(updates)
        latest = updates[-1]
        bars = pd.DataFrame({"emotion": list(latest.intensities),
                             "intensity": [0.0 if v != v else v for v in latest.intensities.values()]})
        rows = [(u.t, name, v) for u in self.history for name, v in u.intensities.items() if v == v]
        timeline = pd.DataFrame(rows, columns=["t", "emotion", "intensity"])
        return bars, timeline, status_markdown(latest, self.count)

    def close(self) -> None:
        if self.streamer is not None:
            self.streamer.close()


def status_markdown(update, count: int) -> str:
    face = "yes" if update.face else "no"
    speech = "yes" if update.speech else "no"
    return (f"**Update {count}** at t = {update.t:.1f} s (window {update.window_start:.1f}-{update.t:.1f} s): "
            f"latency **{1000 * update.latency_s:.0f} ms**, hop compute {1000 * update.compute_s:.0f} ms, "
            f"face: {face}, speech: {speech}, dropped frames: {update.dropped_total}")


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

    def on_frame(image, state, request: gr.Request):
        state = live_session(state, request)
        state.push_frame(image)
        return (*state.outputs(), state)

    def on_audio(chunk, state, request: gr.Request):
        state = live_session(state, request)
        state.push_audio(chunk)
        return (*state.outputs(), state)

    outputs = [bars, timeline, status, session]
    webcam.stream(on_frame, inputs=[webcam, session], outputs=outputs, stream_every=FRAME_EVERY_S,
                  time_limit=TIME_LIMIT_S, concurrency_limit=8, show_progress="hidden")
    microphone.stream(on_audio, inputs=[microphone, session], outputs=outputs, stream_every=AUDIO_EVERY_S,
                      time_limit=TIME_LIMIT_S, concurrency_limit=8, show_progress="hidden")
