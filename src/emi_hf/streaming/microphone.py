"""The microphone of `emi-hf stream --microphone` (`sounddevice`, over the PortAudio library), and the events of a
live stream: camera frames and microphone chunks on one clock.

PortAudio calls back with each block of samples on its own thread; the blocks wait in a bounded queue
(``max_pending_s``) until the stream takes them, and when they are not taken in time the new ones are dropped, as the
camera's frames are: memory never grows, and the chunk times count the dropped samples, so what follows keeps its
place in time (the streamer hears silence where audio was dropped).

``pip install 'emi-hf[live]'`` installs sounddevice; on Linux PortAudio is a system library (Debian / Ubuntu:
``apt-get install libportaudio2``), bundled in the macOS and Windows wheels.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Iterator

import numpy as np

from ..errors import EmiDependencyError, EmiUnavailableError, EmiUsageError

__all__ = ["Microphone", "input_device", "live_events"]


def _sounddevice():
    try:
        import sounddevice
    except ImportError as error:
        raise EmiDependencyError("--microphone needs the sounddevice package: pip install 'emi-hf[live]'") from error
    except OSError as error:  # sounddevice is there, the PortAudio library is not
        raise EmiDependencyError(f"--microphone needs the PortAudio library ({error}): on Debian / Ubuntu apt-get "
                                 "install libportaudio2 (macOS: brew install portaudio)") from error
    return sounddevice


def input_device(device: int | str | None = None) -> tuple[int, dict]:
    """(index, PortAudio's description) of the input device `device` (an index or part of a name; None: the
    system's default input). Raises `EmiUnavailableError` naming the devices there are when it is not one."""
    sd = _sounddevice()
    try:
        devices = list(sd.query_devices())
    except sd.PortAudioError as error:
        raise EmiUnavailableError(f"--microphone: PortAudio could not list the audio devices ({error}). Check the "
                                  "sound system (python -m sounddevice lists the devices).") from error
    inputs = [(index, info) for index, info in enumerate(devices) if info.get("max_input_channels", 0) > 0]
    if not inputs:
        raise EmiUnavailableError("--microphone: no audio input device was found (PortAudio lists none). Connect a "
                                  "microphone (check that this user may record: python -m sounddevice lists the "
                                  "devices), or stream without --microphone.")
    if device is None or device == "default":
        default = sd.default.device[0] if isinstance(sd.default.device, (list, tuple)) else sd.default.device
        return next(((i, info) for i, info in inputs if i == default), inputs[0])
    text = str(device)
    found = [(i, info) for i, info in inputs if (text.isdigit() and i == int(text))
             or (not text.isdigit() and text.lower() in str(info.get("name", "")).lower())]
    if not found:
        names = "; ".join(f"{i}: {info.get('name')}" for i, info in inputs)
        raise EmiUsageError(f"--microphone {device}: no such input device. The input devices are: {names}")
    return found[0]


class Microphone:
    """
    Records one input device in blocks of ``chunk_s`` seconds at the device's own rate (the streamer resamples).

    Args:
        device: an index or part of a name (None: the default input).
        chunk_s: seconds per block.
        max_pending_s: seconds of blocks that may wait for `take`; newer blocks are dropped (`dropped_s`).
    """

    def __init__(self, device: int | str | None = None, chunk_s: float = 0.1, max_pending_s: float = 2.0):
        self.index, self.info = input_device(device)
        self.rate = int(self.info.get("default_samplerate") or 16000)
        self.chunk = max(1, int(round(chunk_s * self.rate)))
        self.max_pending = max(1, int(round(max_pending_s / chunk_s)))
        self.dropped_s = 0.0
        self._queue: collections.deque = collections.deque()
        self._ready = threading.Condition()
        self._origin = self._first = None
        self._position = 0  # samples delivered by PortAudio so far (dropped ones included)
        self._stream = None

    def start(self, origin: float | None = None) -> None:
        """Starts recording; chunk times are seconds since `origin` (a `time.perf_counter()` value; default now)."""
        sd = _sounddevice()
        self._origin = time.perf_counter() if origin is None else origin
        try:
            self._stream = sd.InputStream(device=self.index, channels=1, samplerate=self.rate, blocksize=self.chunk,
                                          dtype="float32", callback=self._callback)
            self._stream.start()
        except sd.PortAudioError as error:
            raise EmiUnavailableError(f"--microphone: input device {self.index} ({self.info.get('name')}) could "
                                      f"not be opened: {error}") from error

    def _callback(self, indata, frames, time_info, status) -> None:
        now = time.perf_counter()
        with self._ready:
            if self._first is None:  # the first block ended now
                self._first = max(0.0, now - frames / self.rate - self._origin)
            t = self._first + self._position / self.rate
            self._position += frames
            if len(self._queue) >= self.max_pending:
                self.dropped_s += frames / self.rate
                return
            self._queue.append(("audio", np.array(indata[:, 0], np.float32), self.rate, t))
            self._ready.notify_all()

    def take(self, timeout: float = 0.0) -> list[tuple]:
        """The blocks recorded since the last call, as ``("audio", samples, rate, t)`` events (waits up to
        `timeout` seconds for one)."""
        with self._ready:
            if timeout > 0:
                self._ready.wait_for(lambda: self._queue, timeout)
            events = list(self._queue)
            self._queue.clear()
        return events

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    def __enter__(self) -> Microphone:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def live_events(camera: int | None = None, microphone: int | str | None = None, use_microphone: bool = False,
                max_seconds: float | None = None) -> Iterator[tuple]:
    """The events of a live stream: camera `camera`'s frames (OpenCV) and, with `use_microphone`, the blocks of
    input device `microphone`, times in seconds on one clock. The device is checked before the camera opens."""
    from .sources import camera_events

    mic = Microphone(microphone) if use_microphone else None
    origin = time.perf_counter()
    try:
        if mic is not None:
            mic.start(origin)
        if camera is None:  # the microphone alone
            while max_seconds is None or time.perf_counter() - origin <= max_seconds:
                yield from mic.take(timeout=0.2)
            return
        for frame in camera_events(camera, max_seconds=max_seconds, origin=origin):
            if mic is not None:
                yield from mic.take()
            yield frame
    finally:
        if mic is not None:
            mic.close()
