"""Cached features -> padded batches, with little per-batch Python work.

A split of the features `DatasetDict` is a memory-mapped Arrow table. [`FeatureTable`] turns each needed column into a
list of zero-copy NumPy views, one per clip (`[T, 512]`, `[T, n_au]`, `[T]`, ...), once; a batch is then a handful of
`np.copyto` calls into a preallocated padded array, so loading costs a few milliseconds per batch whatever the model.

Sequences are padded to the longest clip of the batch; padding has mask 0, which the models ignore. In training,
long clips are capped (`max_frames` video frames, `max_audio_frames` audio frames): a random window, drawn per
(seed, epoch, clip), so the crop is the same for any number of processes and after a resume. Video and audio windows
of a clip start at the same relative position, so fusion sees roughly the same moment. Evaluation, cv and submission
read whole clips (no cap): the model scores a clip longer than its `temporal_window` in overlapping windows
(`temporal_emi.TemporalEncoder`), as `emi-hf predict` does. (`ClipBatchDataset` without `random_crop` still takes
the centre window when given a cap.)

Batches come from [`EpochBatchSampler`]: a permutation drawn from (seed, epoch) in training, the split's order in
evaluation. Under `accelerate`, the sampler yields *global* batches and `split_batches=True` gives each process its
slice, so the optimisation does not depend on the number of processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import EmiUsageError
from ..modalities import FUSION, MODALITIES, feature_columns

# Independent random streams (numpy SeedSequence entropy [seed, stream, epoch]): where each epoch's crops start,
# and the order of the clips. The values are part of the seeded results; changing one changes every run.
CROP_STREAM = 7
SHUFFLE_STREAM = 11

MODALITY_COLUMNS = {name: modality.feature_columns for name, modality in MODALITIES.items()}
MODALITY_COLUMNS[FUSION] = feature_columns(name for name, m in MODALITIES.items() if not m.optional)
"""The cached feature columns each model reads (`emi_hf.modalities`); a fusion also `OPTIONAL_COLUMNS` when the
features have them (`split_columns`)."""
OPTIONAL_COLUMNS = feature_columns(name for name, m in MODALITIES.items() if m.optional)


def label_mean(dataset) -> list[float] | None:
    """The mean label vector of a split's labeled clips (rows with a NaN label left out); None without any. `dataset`:
    a features split, or a list of raw clip records (end-to-end training)."""
    if isinstance(dataset, list):  # ClipRecords
        rows = [r.labels for r in dataset if r.labels is not None]
        labels = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    elif "labels" not in dataset.column_names or not len(dataset):
        return None
    else:
        labels = np.asarray(dataset.with_format("numpy")["labels"], dtype=np.float64)
    labels = labels[np.isfinite(labels).all(axis=1)]
    return [float(v) for v in labels.mean(axis=0)] if len(labels) else None


def split_columns(dataset, modality: str) -> tuple[str, ...]:
    """The columns a `modality` batch reads from `dataset` (fusion: the text ones too when it has them)."""
    columns = MODALITY_COLUMNS[modality]
    if modality == "fusion" and set(OPTIONAL_COLUMNS) <= set(dataset.column_names):
        columns = columns + OPTIONAL_COLUMNS
    return columns

# ----------------------------------------------------------------------------------------------------------------------
# Zero-copy views of Arrow columns
# ----------------------------------------------------------------------------------------------------------------------


def _to_numpy(array) -> np.ndarray:
    try:
        return array.to_numpy(zero_copy_only=True)
    except Exception:  # nulls or a type without a zero-copy path: one copy, once
        return array.to_numpy(zero_copy_only=False)


def _frame_matrix(array) -> np.ndarray:
    """A (fixed or variable) list array whose items all have the same length -> `[items, width]` view."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(array.type):
        width = array.type.list_size
        return _to_numpy(array.flatten()).reshape(-1, width)
    offsets = _to_numpy(array.offsets).astype(np.int64)
    if len(offsets) <= 1:
        return np.zeros((0, 0), np.float32)
    width = int(offsets[1] - offsets[0])
    if not np.all(np.diff(offsets) == width):
        raise EmiUsageError("A feature column has frames of different widths.")
    values = _to_numpy(array.values)
    if not width:
        return np.zeros((len(offsets) - 1, 0), values.dtype)
    return values[offsets[0] : offsets[-1]].reshape(-1, width)


def _column_rows(column) -> list[np.ndarray]:
    """One NumPy view per row of a `pyarrow.ChunkedArray` column (2-D for `Array2D`, 1-D for sequences)."""
    import pyarrow as pa

    rows = []
    for chunk in column.chunks:
        if isinstance(chunk, pa.ExtensionArray):
            chunk = chunk.storage
        kind = chunk.type
        if pa.types.is_fixed_size_list(kind):
            matrix = _frame_matrix(chunk)
            rows.extend(matrix)
            continue
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
            rows.extend(_to_numpy(chunk))
            continue
        offsets = _to_numpy(chunk.offsets).astype(np.int64)  # into the un-sliced child array
        child = chunk.values
        nested = any(check(child.type) for check in (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list))
        # Row k of `values` is item k of the child array, which is what the offsets count.
        values = _frame_matrix(child) if nested else _to_numpy(child)
        rows.extend(values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1))
    return rows


def _row_indices(dataset) -> np.ndarray | None:
    """The rows of the underlying table that a `select()` / `shuffle()` view shows, in its order (None: all)."""
    indices = getattr(dataset, "_indices", None)
    return None if indices is None else _to_numpy(indices.column(0)).astype(np.int64)


class FeatureTable:
    """
    Per-clip NumPy views of one split's columns, built once (no copy: the views point into the memory-mapped Arrow
    files). `table["audio_features"][i]` is clip `i`'s `[Ta, D]` array. A `select()` view (a cv fold) reads through
    its indices, so no fold is ever written out (no `flatten_indices`).
    """

    def __init__(self, dataset, columns: Sequence[str]):
        self.num_rows = len(dataset)
        rows = _row_indices(dataset)
        names = set(dataset.column_names)
        missing = [c for c in columns if c not in names]
        if missing:
            raise EmiUsageError(f"The features have no column(s) {missing}; they have {sorted(names)}.")
        self.columns = {name: _column_rows(dataset.data.column(name)) for name in columns}
        if rows is not None:
            self.columns = {name: [views[i] for i in rows] for name, views in self.columns.items()}
        # Trailing shape of each column's frames ((512,) for visual_features, () for masks), from the schema.
        self.widths = {name: tuple(getattr(dataset.features[name], "shape", (None,))[1:]) for name in columns}
        if "labels" in names:
            labels = _column_rows(dataset.data.column("labels"))
            labels = labels if rows is None else [labels[i] for i in rows]
            self.labels = np.stack([np.asarray(r, dtype=np.float32) for r in labels]) if labels else np.zeros((0, 0))
        else:  # an unlabeled split
            self.labels = None
        self.clip_ids = list(dataset["clip_id"]) if "clip_id" in names else [str(i) for i in range(self.num_rows)]

    def __getitem__(self, column: str) -> list[np.ndarray]:
        return self.columns[column]

    def __len__(self) -> int:
        return self.num_rows


def sequence_lengths(dataset, column: str) -> np.ndarray:
    """`[N]` the number of frames (rows) of `column` in each clip of `dataset` (a select() view: its rows), read from
    the Arrow offsets without touching the values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lengths = []
    for chunk in dataset.data.column(column).chunks:
        if isinstance(chunk, pa.ExtensionArray):
            chunk = chunk.storage
        lengths.append(pc.list_value_length(chunk).to_numpy(zero_copy_only=False))
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    indices = getattr(dataset, "_indices", None)
    if indices is not None:
        lengths = lengths[np.asarray(indices.column(0).to_numpy(zero_copy_only=False), dtype=np.int64)]
    return np.nan_to_num(lengths.astype(np.float64)).astype(np.int64)  # null rows: 0


# ----------------------------------------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------------------------------------


def _window(length: int, cap: int | None, position: float) -> tuple[int, int]:
    """(start, stop) of a window of at most `cap` frames starting at relative `position` in [0, 1]."""
    if cap is None or length <= cap:
        return 0, length
    start = min(int(position * (length - cap + 1)), length - cap)
    return start, start + cap


def _pad_stack(rows: list[np.ndarray], windows: list[tuple[int, int]], dtype, tail_shape=()) -> np.ndarray:
    length = max([stop - start for start, stop in windows] + [1])
    out = np.zeros((len(rows), length, *tail_shape), dtype=dtype)
    for i, (row, (start, stop)) in enumerate(zip(rows, windows)):
        if stop > start:
            out[i, : stop - start] = row[start:stop]
    return out


class ClipBatchDataset(torch.utils.data.Dataset):
    """
    Map-style dataset over a [`FeatureTable`] whose `__getitems__` returns a whole padded batch (the DataLoader then
    needs no per-item collation; use `collate_fn=identity_collate`).

    A batch holds the model inputs of `modality` (`visual_features` `[B, T, 512]`, `au_features` `[B, T, n_au]`,
    `frame_mask` `[B, T]` int64; `audio_features` `[B, Ta, D]`, `audio_mask` `[B, Ta]` int64; `text_features`
    `[B, T_t, D_t]`, `text_mask` `[B, T_t]` int64), the columns of `table`; `labels` `[B, L]`
    (NaN for unlabeled clips) and `index` `[B]`, the clip's row in the split; with `clip_weights` (`[N]`, the
    split's per-clip loss weights, `training.weighting`) also `weights` `[B]`.
    """

    def __init__(
        self,
        table: FeatureTable,
        modality: str,
        num_labels: int,
        max_frames: int | None = None,
        max_audio_frames: int | None = None,
        random_crop: bool = False,
        seed: int = 0,
        clip_weights: np.ndarray | None = None,
    ):
        self.table = table
        self.clip_weights = None if clip_weights is None else np.asarray(clip_weights, dtype=np.float32)
        self.modality = modality
        self.columns = tuple(table.columns)
        self.num_labels = num_labels
        self.max_frames = max_frames
        self.max_audio_frames = max_audio_frames
        self.random_crop = random_crop
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.random_crop:
            self._positions = np.random.default_rng([self.seed, CROP_STREAM, epoch]).random(len(self.table))
        else:
            self._positions = np.full(len(self.table), 0.5)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> dict:
        indices = [int(i) for i in indices]
        batch = {}
        if "visual_features" in self.columns:
            visual = [self.table["visual_features"][i] for i in indices]
            windows = [_window(len(v), self.max_frames, self._positions[i]) for v, i in zip(visual, indices)]
            batch["visual_features"] = _pad_stack(visual, windows, np.float32, self.table.widths["visual_features"])
            aus = [self.table["au_features"][i] for i in indices]
            batch["au_features"] = _pad_stack(aus, windows, np.float32, self.table.widths["au_features"])
            batch["frame_mask"] = _pad_stack([self.table["frame_mask"][i] for i in indices], windows, np.int64)
        if "audio_features" in self.columns:
            audio = [self.table["audio_features"][i] for i in indices]
            windows = [_window(len(a), self.max_audio_frames, self._positions[i]) for a, i in zip(audio, indices)]
            batch["audio_features"] = _pad_stack(audio, windows, np.float32, self.table.widths["audio_features"])
            batch["audio_mask"] = _pad_stack([self.table["audio_mask"][i] for i in indices], windows, np.int64)
        if "text_features" in self.columns:  # a transcript is short: never cropped
            text = [self.table["text_features"][i] for i in indices]
            windows = [(0, len(t)) for t in text]
            batch["text_features"] = _pad_stack(text, windows, np.float32, self.table.widths["text_features"])
            batch["text_mask"] = _pad_stack([self.table["text_mask"][i] for i in indices], windows, np.int64)
        if self.table.labels is not None:
            labels = self.table.labels[indices]
        else:
            labels = np.full((len(indices), self.num_labels), np.nan, np.float32)
        batch["labels"] = np.ascontiguousarray(labels, dtype=np.float32)
        batch["index"] = np.asarray(indices, dtype=np.int64)
        if self.clip_weights is not None:
            batch["weights"] = self.clip_weights[indices]
        return {key: torch.from_numpy(value) for key, value in batch.items()}


def identity_collate(batch):
    """The dataset already returns a collated batch."""
    return batch


class EpochBatchSampler:
    """
    Batches of row indices: a permutation drawn from `(seed, epoch)` when `shuffle`, else the split's order. With
    `drop_last` every batch is full (training: each process then gets an equal slice under `split_batches`).
    """

    def __init__(self, num_items: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int = 0):
        if batch_size < 1:
            raise EmiUsageError(f"batch_size must be >= 1, got {batch_size}.")
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_items // self.batch_size
        return math.ceil(self.num_items / self.batch_size)

    def __iter__(self):
        if self.shuffle:
            order = np.random.default_rng([self.seed, SHUFFLE_STREAM, self.epoch]).permutation(self.num_items)
        else:
            order = np.arange(self.num_items)
        for batch in range(len(self)):
            yield order[batch * self.batch_size : (batch + 1) * self.batch_size].tolist()


def check_batch_size(num_clips: int, batch_size: int, num_processes: int = 1) -> None:
    """Every training batch holds exactly `batch_size` clips (an incomplete last one is dropped), so a train split
    of fewer clips trains nothing: the error says which --batch-size fits."""
    if num_clips >= batch_size:
        return
    fits = num_clips // num_processes * num_processes  # the global batch is split evenly across the processes
    if fits == 0:
        raise EmiUsageError(f"The train split has {num_clips} clip(s), fewer than the {num_processes} processes that "
                            "would share each batch: train with fewer processes, or on more clips.")
    multiple = f" (a multiple of the {num_processes} processes)" if num_processes > 1 else ""
    raise EmiUsageError(f"The train split has {num_clips} clip(s), fewer than --batch-size {batch_size}: every "
                        "training batch holds exactly --batch-size clips, so not one batch would run. Pass "
                        f"--batch-size {fits} or less{multiple}, or train on more clips (--train-splits).")


def make_loader(dataset: ClipBatchDataset, sampler: EpochBatchSampler) -> torch.utils.data.DataLoader:
    """A single-process DataLoader (batches are cheap views + copies; workers would only add IPC)."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=identity_collate, num_workers=0)


RAW_INPUTS = {name: modality.raw_inputs for name, modality in MODALITIES.items() if modality.raw_inputs}
"""The forward kwargs of a batch of raw clips (`training.end_to_end`), per modality."""


def model_inputs(batch: dict, modality: str) -> dict:
    """The forward kwargs of the `modality` model from a batch of cached features (fusion: the modality columns the
    batch holds) or of raw clips (`RAW_INPUTS`)."""
    columns = MODALITY_COLUMNS[modality] + (OPTIONAL_COLUMNS if modality == FUSION else ()) + RAW_INPUTS.get(modality, ())
    return {key: batch[key] for key in dict.fromkeys(columns) if key in batch}
