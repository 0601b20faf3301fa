"""Features as Parquet, in the layout `DatasetDict.push_to_hub` writes, so that `load_dataset` and the Hub's dataset
viewer read them.

A features repo (or a local folder of the same layout, `write_parquet_repo`)::

    data/{split}-{index:05d}-of-{count:05d}.parquet    each split in shards of at most MAX_SHARD_BYTES of Arrow data
    README.md                                          YAML: `configs` (the splits and their files) and
                                                       `dataset_info` (the feature types: Array2D, int8 masks, ...)

Each Parquet file also carries the `datasets.Features` in its schema metadata, so every column comes back with its
type (variable-length `[T, D]` float32 / float16 arrays, int8 masks, NaN labels) and its values unchanged:
`load_parquet_repo(folder)` or `load_dataset(folder)` / `load_dataset("org/name")`.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

DATA_DIR = "data"
MAX_SHARD_BYTES = 500 * 1024 * 1024  # as DatasetDict.push_to_hub's default max_shard_size
_SHARD = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")

__all__ = ["DATA_DIR", "card_metadata", "is_parquet_repo", "load_parquet_repo", "parquet_files",
           "write_parquet_repo"]


def _as_dict(dataset):
    """A `DatasetDict` as it is; a `Dataset` as the split `train`."""
    from datasets import DatasetDict

    return dataset if isinstance(dataset, DatasetDict) else DatasetDict({"train": dataset})


def card_metadata(dataset) -> dict:
    """The README YAML that makes `load_dataset` and the dataset viewer read the shards: `configs` and
    `dataset_info` (feature types, split sizes), as `push_to_hub` writes them."""
    splits = _as_dict(dataset)
    first = next(iter(splits.values()))
    return {
        "configs": [{"config_name": "default",
                     "data_files": [{"split": name, "path": f"{DATA_DIR}/{name}-*"} for name in splits]}],
        "dataset_info": {"features": first.features._to_yaml_list(),
                         "splits": [{"name": name, "num_examples": len(split)} for name, split in splits.items()]},
    }


def write_parquet_repo(dataset, folder: str | os.PathLike, max_shard_bytes: int = MAX_SHARD_BYTES) -> list[Path]:
    """Writes `dataset` (a `DatasetDict`, or a `Dataset` as split `train`) as Parquet shards under `folder/data/`
    (the repo layout of `push_to_hub`); returns the files written. The README is the caller's (`card_metadata`)."""
    written = []
    for name, split in _as_dict(dataset).items():
        if not re.fullmatch(r"[\w.]+", name):
            raise ValueError(f"split name {name!r}: use letters, digits, '_' and '.' only (the Hub's rule).")
        count = max(1, math.ceil(split.data.nbytes / max_shard_bytes)) if len(split) else 1
        for index in range(count):
            path = Path(folder) / DATA_DIR / f"{name}-{index:05d}-of-{count:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            split.shard(count, index, contiguous=True).to_parquet(str(path))
            written.append(path)
    return written


def parquet_files(folder: str | os.PathLike) -> dict[str, list[str]]:
    """The shards of a folder in that layout, by split, in order (`{}` for another layout)."""
    found: dict[str, list[str]] = {}
    data = Path(folder) / DATA_DIR
    for path in sorted(data.glob("*.parquet")) if data.is_dir() else []:
        match = _SHARD.match(path.name)
        if match:
            found.setdefault(match["split"], []).append(str(path))
    return found


def is_parquet_repo(folder: str | os.PathLike) -> bool:
    return bool(parquet_files(folder))


def load_parquet_repo(folder: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
    """The `DatasetDict` of a folder in the Parquet layout, every column with its saved type."""
    from datasets import load_dataset

    return load_dataset("parquet", data_files=parquet_files(folder),
                        cache_dir=None if cache_dir is None else os.fspath(cache_dir))
