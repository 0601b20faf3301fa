"""The nearest-frame rule (frame-rate conversion) and nearest-index search, for decoded files and frame arrays.

Resampling to ``target_fps`` follows ffmpeg's ``fps`` filter: output frame ``k`` lies at ``t0 + k / target_fps``
(``t0`` = time of the first source frame) and shows the source frame whose presentation time is nearest, i.e.
source frame ``i`` stands for the grid points in ``[(t[i-1] + t[i]) / 2, (t[i] + t[i+1]) / 2)`` (the last one for
half its duration after it). :func:`nearest_frames` applies it to a stream of timed frames: a source frame that
no grid point falls on is dropped, one that several fall on is kept once with ``repeat`` > 1, a frame whose time
does not increase is dropped. ``target_fps=None`` keeps every frame. ``max_frames`` / ``max_duration`` end the
output early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

__all__ = ["nearest_frames", "nearest_index"]

_TOLERANCE = 1e-9  # seconds: grid points this close to an interval bound count as on it
_LAST_FRAME_SLACK = 1e-6  # seconds added to the last frame's half duration
_MIN_LAST_DURATION = 1e-3  # seconds: the shortest duration assumed for the last frame


def nearest_index(sorted_values: np.ndarray, queries: np.ndarray, ties_to_earlier: bool = True) -> np.ndarray:
    """For each query, the index of the nearest of the ascending `sorted_values` (int64 [len(queries)]); a query
    halfway between two values goes to the earlier one (or, with ``ties_to_earlier=False``, the later one)."""
    sorted_values = np.asarray(sorted_values)
    queries = np.asarray(queries)
    if len(sorted_values) < 2:
        return np.zeros(len(queries), np.int64)
    after = np.clip(np.searchsorted(sorted_values, queries), 1, len(sorted_values) - 1)
    to_before = np.abs(queries - sorted_values[after - 1])
    to_after = np.abs(sorted_values[after] - queries)
    take_before = to_before <= to_after if ties_to_earlier else to_before < to_after
    return np.where(take_before, after - 1, after)


@dataclass
class _OutputGrid:
    """The output frames ``t0 + k / target_fps`` handed out so far (``emitted``) and whether the limits are met."""

    target_fps: float | None
    max_frames: int | None
    max_duration: float | None
    t0: float | None = None
    emitted: int = 0
    full: bool = False

    def _time(self, k: int) -> float:
        return self.t0 + k / self.target_fps

    def _limit_reached(self, k: int) -> bool:
        if self.max_frames is not None and k >= self.max_frames:
            return True
        return self.max_duration is not None and self._time(k) - self.t0 >= self.max_duration - _TOLERANCE

    def take(self, time: float, lower: float, upper: float) -> int:
        """How many output frames the source frame at `time`, nearest on ``[lower, upper)``, stands for."""
        if self.target_fps is None:
            if (self.max_frames is not None and self.emitted >= self.max_frames) or (
                    self.max_duration is not None and time - self.t0 >= self.max_duration - _TOLERANCE):
                self.full = True
                return 0
            self.emitted += 1
            self.full = self.max_frames is not None and self.emitted >= self.max_frames
            return 1
        repeat = 0
        while not self._limit_reached(self.emitted + repeat) and self._time(self.emitted + repeat) < upper - _TOLERANCE:
            if self._time(self.emitted + repeat) >= lower - _TOLERANCE:
                repeat += 1
            else:  # a grid point before this frame's interval (only possible at the start)
                self.emitted += 1
        self.emitted += repeat
        self.full = self._limit_reached(self.emitted)
        return repeat


def nearest_frames(timed_frames: Iterable[tuple[Any, float, float | None]], target_fps: float | None,
                   max_frames: int | None = None, max_duration: float | None = None,
                   frame_step: float = 1 / 30) -> Iterator[tuple[Any, float, int, int]]:
    """The kept frames of a stream on the output grid (see module doc).

    `timed_frames` yields ``(frame, time, duration)`` in presentation order (`duration` in seconds or None: the
    last frame then lasts as long as the step before it, `frame_step` for a single frame). Yields
    ``(frame, time, index, repeat)`` with ``index`` the frame's position among the frames with increasing times
    and ``repeat >= 1``. Each frame is yielded once the next one's time is known (or the stream ends).
    """
    grid = _OutputGrid(target_fps, max_frames, max_duration)
    pending = None  # (frame, time, index, lower bound of its interval, duration)
    index = 0
    for frame, time, duration in timed_frames:
        if grid.t0 is None:
            grid.t0 = time
        if pending is not None:
            if time <= pending[1]:  # non-increasing time (a broken stream): drop the later frame
                continue
            frame_step = time - pending[1]
            middle = (pending[1] + time) / 2
            yield from _emit(grid, pending, middle)
            if grid.full:
                return
            pending = (frame, time, index, middle, duration)
        else:
            pending = (frame, time, index, -math.inf, duration)
        index += 1
    if pending is not None:
        last_duration = pending[4] or frame_step
        yield from _emit(grid, pending, pending[1] + max(last_duration, _MIN_LAST_DURATION) / 2 + _LAST_FRAME_SLACK)


def _emit(grid: _OutputGrid, pending: tuple, upper: float) -> Iterator[tuple[Any, float, int, int]]:
    frame, time, index, lower, _ = pending
    repeat = grid.take(time, lower, upper)
    if repeat:
        yield frame, time, index, repeat
