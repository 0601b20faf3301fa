"""The streamer's caches, bounded by time (ring buffers): per-frame visual features and the audio of the last
window with its speech-encoder frames. Memory does not grow with the length of the stream."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from ..media.au import MediaPipeAUBackend, fill_missing
from ..media.decoding import peak_normalize, resample_waveform
from ..media.pipeline import SILENCE_PEAK

__all__ = ["AudioStore", "FrameRow", "VisualStore", "conv_geometry"]


@dataclass
class FrameRow:
    """One output frame (on the processor's frame grid) and what the visual path found on it."""

    time: float  # grid time
    source: int  # source-frame number (a source frame repeated by the frame-rate conversion shares it)
    face: bool
    crop: np.ndarray | None  # aligned crop until embedded (then None)
    embedding: np.ndarray | None
    measurement: np.ndarray | None  # per-source-frame AU inputs (NaN without a face), None without AU backend
    au12: float = math.nan


class VisualStore:
    """Output frames of the last `keep_s` seconds; crops are embedded once, in one batch per hop."""

    def __init__(self, embedder, au_backend, n_au: int, dim: int, keep_s: float):
        self.embedder = embedder
        self.au_backend = au_backend
        self.n_au = n_au
        self.dim = dim
        self.keep_s = keep_s
        self.rows: deque[FrameRow] = deque()

    def add(self, row: FrameRow) -> None:
        self.rows.append(row)
        while self.rows and self.rows[0].time < row.time - self.keep_s:
            self.rows.popleft()

    def embed_new(self) -> int:
        """Embeds the crops not embedded yet (each source frame once); returns how many crops were embedded."""
        pending: dict[int, list[FrameRow]] = {}
        for row in self.rows:
            if row.face and row.embedding is None:
                pending.setdefault(row.source, []).append(row)
        if not pending:
            return 0
        groups = list(pending.values())
        embeddings = np.asarray(self.embedder(np.stack([g[0].crop for g in groups])), np.float32)
        for group, embedding in zip(groups, embeddings):
            for row in group:
                row.embedding, row.crop = embedding, None
        return len(groups)

    def window(self, start: float, end: float) -> tuple[list[FrameRow], dict[str, np.ndarray]]:
        """The rows with grid time in ``[start, end)`` and the visual model's inputs for them (batch of one),
        built as the processor's collate builds them for a clip of these frames."""
        rows = [r for r in self.rows if start - 1e-9 <= r.time < end - 1e-9]
        count = max(len(rows), 1)
        visual = np.zeros((1, count, self.dim), np.float32)
        mask = np.zeros((1, count), np.int64)
        for i, row in enumerate(rows):
            mask[0, i] = int(row.face)
            if row.face:
                visual[0, i] = row.embedding
        au = np.zeros((1, count, self.n_au), np.float32)
        if rows:
            au[0] = self._au_values(rows)
        return rows, {"visual_features": visual, "au_features": au, "frame_mask": mask}

    def _au_values(self, rows: list[FrameRow]) -> np.ndarray:
        """AU intensities [T, n_au] of the window's rows, as the clip pipeline computes them for a clip made of
        these frames (the MediaPipe baseline percentile over the window's source frames, each counted once)."""
        face = np.array([r.face for r in rows])
        if self.au_backend is None or rows[0].measurement is None:
            return np.zeros((len(rows), self.n_au), np.float32)
        sources, repeats = [], []
        for row in rows:
            if sources and sources[-1].source == row.source:
                repeats[-1] += 1
            else:
                sources.append(row)
                repeats.append(1)
        measurements = np.stack([r.measurement for r in sources]).astype(np.float32)
        if isinstance(self.au_backend, MediaPipeAUBackend):
            au12 = np.array([r.au12 for r in sources], np.float32)
            values = self.au_backend.intensities(measurements, au12_measurement=au12)
        else:  # per-frame measurements (pyfaceau)
            values = np.clip(measurements, 0.0, 5.0)
        return fill_missing(np.repeat(values, repeats, axis=0), face).astype(np.float32)


def conv_geometry(encoder_config) -> tuple[int, int]:
    """(stride, receptive field) in samples of a wav2vec2-family conv feature encoder."""
    stride, receptive = 1, 1
    for kernel, step in zip(encoder_config.conv_kernel, encoder_config.conv_stride):
        receptive += (kernel - 1) * stride
        stride *= step
    return stride, receptive


class AudioStore:
    """The last `keep_s` seconds of 16 kHz audio and, in incremental mode, the speech-encoder frames computed
    so far (each once: new audio plus `context_s` of audio before it)."""

    def __init__(self, audio_model, processor, keep_s: float, context_s: float | None):
        self.model = audio_model
        self.processor = processor
        self.rate = processor.sampling_rate
        self.peak_db = processor.clip_settings().audio_peak_db
        self.context = None if context_s is None else int(round(context_s * self.rate))
        self.keep = int(math.ceil(keep_s * self.rate))
        self.samples = np.zeros(0, np.float32)
        self.offset = 0  # global index of samples[0]
        self.start_time: float | None = None  # media time of global sample 0
        if audio_model is not None:
            self.stride, self.receptive = conv_geometry(audio_model.backbone.config)
        self.frames: deque[tuple[int, np.ndarray]] = deque()  # (global frame index, encoder frame)
        self.next_frame = 0

    @property
    def end_time(self) -> float:
        return self.start_time + (self.offset + len(self.samples)) / self.rate

    def add(self, samples, rate: int, t: float | None) -> tuple[np.ndarray, float]:
        """Appends a chunk; returns what was appended (mono at `rate`, silence before it when it starts after the
        previous chunk ended) and the media time of its first sample."""
        samples = np.asarray(samples)
        if samples.dtype.kind == "i":
            samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
        if samples.ndim == 2:  # [n, channels] or [channels, n]: mono
            samples = samples.mean(axis=1 if samples.shape[1] <= 8 else 0)
        samples = resample_waveform(np.asarray(samples, np.float32), int(rate), self.rate)
        if self.start_time is None:
            self.start_time = 0.0 if t is None else float(t)
        elif t is not None:  # a chunk that starts later than the previous one ended: silence in between
            gap = int(round((t - self.end_time) * self.rate))
            if gap > 0:
                samples = np.concatenate([np.zeros(gap, np.float32), samples])
        start = self.end_time
        self.samples = np.concatenate([self.samples, samples])
        surplus = len(self.samples) - self.keep
        if surplus > 0:
            self.samples, self.offset = self.samples[surplus:], self.offset + surplus
        return samples, start

    def _index(self, time: float) -> int:
        return int(round((time - self.start_time) * self.rate))

    def _slice(self, start: int, end: int) -> np.ndarray:
        start, end = max(start, self.offset), max(min(end, self.offset + len(self.samples)), 0)
        return self.samples[start - self.offset : max(end - self.offset, start - self.offset)]

    def _normalised(self, waveform: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """A waveform as the processor batches one clip: peak-normalised, then zero-mean unit-variance."""
        waveform = peak_normalize(waveform, self.peak_db)
        out = self.processor.feature_extractor([waveform], sampling_rate=self.rate, padding="longest",
                                               return_attention_mask=True, return_tensors="np")
        device = next(self.model.parameters()).device
        return (torch.as_tensor(np.asarray(out["input_values"], np.float32), device=device),
                torch.as_tensor(np.asarray(out["attention_mask"], np.int64), device=device))

    def encode_new(self) -> None:
        """Incremental mode: encodes the audio whose encoder frames are not cached yet, with `context_s` before."""
        if self.model is None or self.context is None or self.start_time is None:
            return
        end = self.offset + len(self.samples)
        last = (end - self.receptive) // self.stride  # the last frame whose receptive field has arrived
        if last < self.next_frame:
            return
        first_sample = max(self.next_frame * self.stride - self.context, self.offset)
        first_sample -= first_sample % self.stride
        if first_sample < self.offset:
            first_sample += self.stride
        self.next_frame = max(self.next_frame, first_sample // self.stride)
        segment = self._slice(first_sample, last * self.stride + self.receptive)
        hidden, mask = self.model.embed_audio(*self._normalised(segment))
        base = first_sample // self.stride
        for j in range(self.next_frame, last + 1):
            if j - base < hidden.shape[1] and bool(mask[0, j - base]):
                self.frames.append((j, hidden[0, j - base].cpu().numpy()))
        self.next_frame = last + 1
        while self.frames and self.frames[0][0] * self.stride < self.offset:
            self.frames.popleft()

    def window(self, start: float, end: float) -> tuple[float, bool, dict[str, torch.Tensor] | None]:
        """(audio seconds in ``[start, end)``, whether it is more than silence, the audio model's inputs or None)."""
        if self.start_time is None:
            return 0.0, False, None
        first, stop = self._index(start), self._index(end)
        waveform = self._slice(first, stop)
        if len(waveform) == 0:
            return 0.0, False, None
        seconds = len(waveform) / self.rate
        if float(np.max(np.abs(waveform))) < SILENCE_PEAK or self.model is None:
            return seconds, float(np.max(np.abs(waveform))) >= SILENCE_PEAK, None
        if self.context is None:  # exact mode: the window's audio through the encoder, as offline
            features, mask = self.model.embed_audio(*self._normalised(waveform))
            return seconds, True, {"audio_features": features, "audio_mask": mask}
        first = max(first, self.offset)
        rows = [f for j, f in self.frames if j * self.stride >= first and j * self.stride + self.receptive <= stop]
        if not rows:
            return seconds, True, None
        features = torch.as_tensor(np.stack(rows)[None], device=next(self.model.parameters()).device)
        return seconds, True, {"audio_features": features, "audio_mask": torch.ones(features.shape[:2], dtype=bool,
                                                                                      device=features.device)}
