"""The merge of an extraction: per-clip files and the dataset already there -> one verified dataset, then the per-clip
files go, so a features folder holds one copy of its features.

Extraction writes each finished clip to ``DIR/clips/<split>/<clip_id>.npz`` (the unit of resuming). The merge:

1. builds the new ``DIR/dataset`` in ``DIR/dataset.partial``, split by split: the rows of the clips the run lists,
   each from its per-clip file or, when it was merged before, from the current dataset; sorted by clip id. A split
   the run does not list is carried over as it is (hard links, no copy). Each split's generator cache is removed as
   soon as the split is saved, so the disk holds at most one split's cache beside the two copies;
2. verifies it: ``load_from_disk`` reads it back with exactly the expected clip ids in each split;
3. swaps it in (``dataset`` -> ``dataset.previous``, ``dataset.partial`` -> ``dataset``, then the previous one goes;
   an interrupted swap is completed or undone by :func:`recover_interrupted_merge` at the next run);
4. only then removes the per-clip files now in the dataset. Rows of the previous dataset whose clips the run no
   longer lists are written back to per-clip files (kept, and merged again when a run lists them).

A clip is done (never extracted again) when it has a per-clip file or a row in the dataset
(:func:`merged_clip_ids`), so resuming, retrying failed clips and adding a split all keep working with the per-clip
files gone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import EmiUsageError
from .store import DATASET_DIR

PARTIAL_DIR = DATASET_DIR + ".partial"
PREVIOUS_DIR = DATASET_DIR + ".previous"


def recover_interrupted_merge(output_dir: Path) -> None:
    """Completes or undoes a swap that a kill interrupted; removes a partial dataset (it is rebuilt)."""
    dataset, previous, partial = (output_dir / name for name in (DATASET_DIR, PREVIOUS_DIR, PARTIAL_DIR))
    if previous.exists():
        if dataset.exists():  # the swap was done: only the removal of the previous dataset was left
            shutil.rmtree(previous)
        else:  # killed between the two renames: the previous dataset is the valid one
            os.replace(previous, dataset)
    if partial.exists():
        shutil.rmtree(partial)


def _load_dataset(output_dir: Path):
    from datasets import load_from_disk

    folder = output_dir / DATASET_DIR
    if not folder.is_dir():
        return None
    try:
        return load_from_disk(str(folder))
    except Exception as error:  # noqa: BLE001 - a damaged dataset must not be overwritten silently
        raise EmiUsageError(f"{folder} cannot be read ({type(error).__name__}: {error}); it holds the clips merged so "
                         "far. Restore it, or move it away and rerun `emi-hf extract` to extract every clip "
                         "again.") from error


def merged_clip_ids(output_dir: Path) -> dict[str, set[str]]:
    """{split: clip ids with a row in the current dataset} ({} before the first merge)."""
    dataset = _load_dataset(output_dir)
    return {} if dataset is None else {split: set(part["clip_id"]) for split, part in dataset.items()}


def _rows(sources: list[tuple[str, object]], previous, read_file: Callable[[Path], dict]) -> Iterable[dict]:
    """Rows in clip-id order: ("file", path) from a per-clip file, ("row", index) from the previous split."""
    numpy_rows = previous.with_format("numpy") if previous is not None else None
    for kind, source in sources:
        yield read_file(source) if kind == "file" else numpy_rows[int(source)]


def _write_split(target: Path, sources: list, previous, read_file, features, cache_root: Path) -> None:
    from datasets import Dataset

    cache = Path(tempfile.mkdtemp(dir=cache_root, prefix="generator-"))
    try:
        split = Dataset.from_generator(_rows, gen_kwargs={"sources": sources, "previous": previous,
                                                         "read_file": read_file},
                                       features=features, cache_dir=str(cache))
        split.save_to_disk(str(target))
        del split
    finally:
        shutil.rmtree(cache, ignore_errors=True)  # the generator cache: never a third copy of the features


def _link_tree(source: Path, target: Path) -> None:
    """A split carried over unchanged: hard links (no copy), or a copy where the file system has none."""
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    # cache-*.arrow: files that datasets' map / flatten_indices left beside the split, not part of it
    shutil.copytree(source, target, copy_function=link, ignore=shutil.ignore_patterns("cache-*.arrow"))


def _plan(wanted: dict[str, list[str]], clip_file: Callable[[str, str], Path], previous) -> tuple[dict, dict]:
    """Per split: the row sources in clip-id order, and the previous rows no longer listed ({split: [index]})."""
    plans, unlisted = {}, {}
    for split, clip_ids in wanted.items():
        old = {} if previous is None or split not in previous else \
            {clip_id: i for i, clip_id in enumerate(previous[split]["clip_id"])}
        sources = []
        for clip_id in sorted(set(clip_ids)):
            path = clip_file(split, clip_id)
            if path.exists():
                sources.append((clip_id, ("file", path)))
            elif clip_id in old:
                sources.append((clip_id, ("row", old[clip_id])))
        plans[split] = sources
        listed = set(clip_ids)
        unlisted[split] = [i for clip_id, i in old.items() if clip_id not in listed]
    return plans, unlisted


def merge_into_dataset(output_dir: Path, wanted: dict[str, list[str]], clip_file: Callable[[str, str], Path],
                       read_file: Callable[[Path], dict], write_file: Callable[[Path, dict], None],
                       features) -> dict[str, int]:
    """
    The merge of the module doc. `wanted`: {split: the clip ids the run lists}; `clip_file(split, clip_id)`: the
    per-clip file's path; `read_file(path)` / `write_file(path, row)`: a per-clip file as a dataset row and back;
    `features`: the schema. Returns {split: rows} of the new dataset (every split, carried over ones included).
    """
    from datasets import config, load_from_disk

    recover_interrupted_merge(output_dir)
    previous = _load_dataset(output_dir)
    plans, unlisted = _plan(wanted, clip_file, previous)
    partial = output_dir / PARTIAL_DIR
    partial.mkdir()
    expected = {}
    for split, sources in plans.items():
        if sources:
            _write_split(partial / split, [s for _, s in sources], previous.get(split) if previous else None,
                         read_file, features, output_dir)
            expected[split] = [clip_id for clip_id, _ in sources]
    for split in (previous or {}):
        if split not in wanted:
            _link_tree(output_dir / DATASET_DIR / split, partial / split)
            expected[split] = list(previous[split]["clip_id"])
    (partial / config.DATASETDICT_JSON_FILENAME).write_text(json.dumps({"splits": list(expected)}))
    written = load_from_disk(str(partial))  # verified before anything is removed
    found = {split: list(part["clip_id"]) for split, part in written.items()}
    if found != expected:
        raise RuntimeError(f"the merged dataset in {partial} does not read back as written (splits "
                           f"{sorted(found)} vs {sorted(expected)}); nothing was removed: rerun the command.")
    del written
    for split, indices in unlisted.items():  # kept as per-clip files, merged again when a run lists them
        if not indices:
            continue
        rows = previous[split].with_format("numpy")
        for index in indices:
            row = rows[index]
            write_file(clip_file(split, str(row["clip_id"])), row)
    del previous
    dataset, old = output_dir / DATASET_DIR, output_dir / PREVIOUS_DIR
    if dataset.exists():
        os.replace(dataset, old)
    os.replace(partial, dataset)
    shutil.rmtree(old, ignore_errors=True)
    for split, sources in plans.items():  # now in the verified dataset: the per-clip files go
        for _, (kind, source) in sources:
            if kind == "file":
                Path(source).unlink(missing_ok=True)
    return {split: len(ids) for split, ids in expected.items()}
