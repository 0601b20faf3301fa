"""Inputs for the streamer: a video file's frames and audio in media order, a local camera (OpenCV), and
:func:`run_stream`, which plays events through an [`EmiStreamer`] (paced at real time or as fast as it can)."""

from __future__ import annotations

import time
from typing import Iterable, Iterator

import numpy as np

from ..media.decoding import decode_audio, iter_video_frames, probe_media
from ..media.errors import EmiInputError

__all__ = ["camera_events", "file_events", "run_stream"]

AUDIO_RATE = 16000  # the file's audio is decoded at this rate (the streamer resamples to the processor's anyway)


def file_events(path, loops: int = 1) -> Iterator[tuple]:
    """A file's inputs in media order: ``("audio", samples, rate, t)`` for the audio up to each frame, then
    ``("frame", rgb, t)``; frames are decoded as they are played. `loops` > 1 plays the file that many times back
    to back (times keep increasing): a long input made of a short clip."""
    info = probe_media(path)
    if not info.has_video and not info.has_audio:
        raise EmiInputError(path, "has neither a video nor an audio stream.", "Pass a video file.")
    waveform, audio_start = decode_audio(path, AUDIO_RATE, peak_db=None) if info.has_audio else (None, None)
    shift = 0.0
    for _ in range(loops):
        sent, first, last, step = 0, None, None, 1 / 30
        for frame in iter_video_frames(path, target_fps=None) if info.has_video else ():
            first = frame.time if first is None else first
            step, last = (frame.time - last if last is not None else step), frame.time
            audio_start = first if audio_start is None else audio_start
            if waveform is not None:
                upto = min(len(waveform), max(0, int(round((frame.time - audio_start) * AUDIO_RATE))))
                if upto > sent:
                    yield "audio", waveform[sent:upto], AUDIO_RATE, audio_start + shift + sent / AUDIO_RATE
                    sent = upto
            yield "frame", frame.image, frame.time + shift
        length = (last - first + step) if last is not None else len(waveform) / AUDIO_RATE
        audio_start = 0.0 if audio_start is None else audio_start
        end = len(waveform) if waveform is not None else 0
        if loops > 1:  # the audio of one loop lasts as long as its frames
            end = min(end, int(round(((first or 0.0) + length - audio_start) * AUDIO_RATE)))
        if end > sent:
            yield "audio", waveform[sent:end], AUDIO_RATE, audio_start + shift + sent / AUDIO_RATE
        shift += length


def camera_events(index: int = 0, max_seconds: float | None = None, origin: float | None = None) -> Iterator[tuple]:
    """Frames of local camera `index` (OpenCV) as ``("frame", rgb, t)``, `t` = seconds since the first frame (or
    since `origin`, a `time.perf_counter()` value: the clock shared with the microphone, `live_events`). OpenCV reads
    no microphone."""
    import cv2

    capture = cv2.VideoCapture(int(index))
    if not capture.isOpened():
        raise EmiInputError(f"camera {index}", "could not be opened by OpenCV.",
                            "Check that a camera is connected and not used by another program, or pass --video.")
    started = None
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                if started is None:
                    raise EmiInputError(f"camera {index}", "gave no frame.", "Try another --camera index.")
                return
            now = time.perf_counter()
            started = now if started is None else started
            if max_seconds is not None and now - started > max_seconds:
                return
            yield "frame", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), now - (started if origin is None else origin)
    finally:
        capture.release()


def run_stream(streamer, events: Iterable[tuple], realtime: bool = False, live: bool = False):
    """Plays `events` through `streamer` and yields its updates as they come (the remaining ones at the end).

    `realtime`: pace the events at media time (a file played like a camera); frames the streamer cannot keep up
    with are dropped. Without it (and not `live`) the events go as fast as the streamer takes them, none dropped.
    `live`: the events arrive at their own pace already (a camera): no pacing, frames may be dropped."""
    drop = realtime or live
    started, origin = time.perf_counter(), None
    try:
        for event in events:
            t = event[-1]
            origin = t if origin is None else origin
            if realtime:
                delay = (t - origin) - (time.perf_counter() - started)
                if delay > 0:
                    time.sleep(delay)
            if event[0] == "frame":
                streamer.push_frame(event[1], t, block=not drop)
            else:
                streamer.push_audio(np.asarray(event[1]), event[2], t)
            yield from streamer.poll()
    except BaseException:  # an error, Ctrl-C, or the caller stopped reading: no waiting for the last words
        streamer.close(wait_for_words=False)
        raise
    yield from streamer.close()
