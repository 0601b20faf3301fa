"""Face embeddings of a clip's crops: a background worker that embeds chunks while the clip is processed, and
:func:`embed_kept_crops` for crops already kept (a cache hit, or a clip processed earlier).

An embedder is any callable ``crops uint8 [n, S, S, 3] -> float32 [n, D]`` (optionally with a ``dim`` attribute,
used when no frame of a clip has a face); the media package knows nothing else about it.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

import numpy as np

__all__ = ["EmbeddingWorker", "embed_kept_crops"]

Embedder = Callable[[np.ndarray], np.ndarray]


def embed_kept_crops(embedder: Embedder, face_crops: np.ndarray, frame_mask: np.ndarray,
                     chunk_size: int = 128) -> np.ndarray:
    """Embeddings ``[T, D]`` of a clip's kept crops: face frames only (zeros elsewhere), `chunk_size` crops per
    embedder call. A crop equal to the previous frame's (a source frame repeated by the frame-rate conversion) is
    embedded once. `D` comes from the embedder's output, or its ``dim`` attribute when no frame has a face."""
    mask = np.asarray(frame_mask).astype(bool)
    repeat = np.zeros_like(mask)
    flat = face_crops.reshape(len(mask), -1)
    for start in range(1, len(mask), chunk_size):  # in chunks: a whole-clip comparison would double the crops' memory
        stop = min(start + chunk_size, len(mask))
        repeat[start:stop] = (flat[start:stop] == flat[start - 1 : stop - 1]).all(1)
    repeat &= mask & np.roll(mask, 1)
    distinct = np.flatnonzero(mask & ~repeat)
    out = None
    for start in range(0, len(distinct), chunk_size):
        index = distinct[start : start + chunk_size]
        embeddings = np.asarray(embedder(face_crops[index]), np.float32)
        if out is None:
            out = np.zeros((len(mask), embeddings.shape[1]), np.float32)
        out[index] = embeddings
    if out is None:
        return np.zeros((len(mask), int(getattr(embedder, "dim", 0))), np.float32)
    source = np.maximum.accumulate(np.where(mask & ~repeat, np.arange(len(mask)), 0))
    out[repeat] = out[source[repeat]]
    return out


class EmbeddingWorker:
    """Runs a face embedder on chunks of crops in a background thread (the backbone overlaps decoding, detection
    and the face mesh); at most `max_pending` chunks wait, so crops never pile up."""

    def __init__(self, embedder: Embedder, max_pending: int = 2):
        self.embedder = embedder
        self.results: dict[int, np.ndarray] = {}
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self.thread = threading.Thread(target=self._run, name="emi-face-embedder", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # drain after a failure
            rows, crops = item
            try:
                embeddings = np.asarray(self.embedder(crops), np.float32)
                if embeddings.shape[0] != len(rows):
                    raise ValueError(f"the face embedder returned {embeddings.shape[0]} rows for {len(rows)} crops")
                for row, embedding in zip(rows, embeddings):
                    self.results[row] = embedding
            except BaseException as error:  # re-raised in the calling thread by finish()
                self.error = error

    def submit(self, rows: list[int], crops: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((rows, crops))

    def finish(self, count: int) -> np.ndarray:
        """Waits for every chunk; per-row embeddings ``[count, D]`` (zeros for rows without a face)."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        dim = next(iter(self.results.values())).shape[0] if self.results else int(getattr(self.embedder, "dim", 0))
        out = np.zeros((count, dim), np.float32)
        for row, embedding in self.results.items():
            out[row] = embedding
        return out

    def cancel(self) -> None:
        """Stops the thread after an error in the calling thread (no-op once finished)."""
        if self.thread.is_alive():
            self.error = self.error or RuntimeError("cancelled")
            while True:  # make room for the sentinel
                try:
                    self.queue.put_nowait(None)
                    break
                except queue.Full:
                    try:
                        self.queue.get_nowait()
                    except queue.Empty:
                        pass
