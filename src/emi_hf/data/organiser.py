"""The challenge organisers' baseline features -> a features folder (`emi-hf import-features`).

Hume-Vidmimic2 ships per-clip pickles of baseline features: ``vit/<id>.pkl`` (face ViT embeddings, about
``[38, 384]``) and ``wav2vec2/<id>.pkl`` (speech frames, about ``[294, 768]``). [`import_organiser_features`] turns
them into the DatasetDict `emi-hf extract` writes (`emi_hf.data.store`), ids and labels from the data folder's
split files (`emi_hf.data.layout.load_hume_vidmimic2`), so a model trains on them right away. The visual features
come without AUs (``au_names = []``; the visual model then has no AU channel input) and at the organisers' width.

**Safety.** A pickle runs code when it is loaded. [`load_feature_pickle`] reads them with an allow-list unpickler:
NumPy arrays, scalars and dtypes, lists, tuples and dicts of them, and torch tensors (their storage through
``torch.load(weights_only=True)``); any other object in the file is refused with an error naming the file, before it
is built, so nothing in it runs (whatever the protocol, 0 included, and however deep the object sits: inside an
object array, a container, or as the callable or argument of another reduce); a module is never imported by a name
that only looks like numpy's. A tensor storage in the pickle is a pickle itself and goes through torch's allow-list.
Files written by ``torch.save`` are read with ``torch.load(weights_only=True)``. A refused file stops an import
naming it, and the features folder of an earlier import is left as it was. tests/test_challenge_data.py tries each
of these payloads.

**Rows.** A feature row that is all zeros or not finite is masked (``frame_mask`` / ``audio_mask`` 0); frame times
are the row index divided by ``visual_fps`` (the organisers do not state the rate; default 1.0, i.e. row units). A
clip without its visual (or audio) pickle keeps the other modality (one masked frame for the missing one, as
extraction stores a clip without a face); a clip without either is listed in ``failures.rank0.jsonl``, the file
`emi-hf extract` writes for clips that failed, so `emi-hf submit` fills it with the training mean.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import time
import zipfile
from pathlib import Path

import numpy as np

from ..models.configuration_emi import EMOTION_NAMES
from ..errors import EmiError, EmiUsageError
from .failures import reason_counts
from .layout import DataLayoutError, load_hume_vidmimic2, normalize_clip_id
from .store import DATASET_DIR, feature_schema, write_features_metadata

PICKLE_EXTENSIONS = (".pkl", ".pickle", ".pt", ".pth", ".npy")
FEATURE_KEYS = ("features", "feature", "feats", "feat", "embeddings", "embedding", "data", "x")
_NUMPY_GLOBALS = {
    (module, name)
    for prefix in ("numpy.core", "numpy._core")
    for module, name in ((f"{prefix}.multiarray", "_reconstruct"), (f"{prefix}.multiarray", "scalar"),
                         (f"{prefix}.numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # fmt: skip
_TORCH_GLOBALS = {("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict")}


class OrganiserFeatureError(EmiError, ValueError):
    """A features file that cannot be imported; the message names the file and says what to do."""


def _torch_refusal(error: Exception) -> str:
    """What torch.load(weights_only=True) refused, without its advice to load the file with weights_only=False."""
    found = re.search(r"WeightsUnpickler error: ([^\n]*?was not an allowed global)", str(error))
    return found.group(1) if found else f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, handle, path: Path):
        super().__init__(handle)
        self.path = path

    def storage_from_bytes(self, data: bytes):
        """`torch.storage._load_from_bytes`, with weights_only: a tensor's storage inside a plain pickle (a pickle
        in the pickle: its code is refused by torch's own allow-list, with this file named)."""
        import torch

        try:
            return torch.load(io.BytesIO(data), weights_only=True)
        except pickle.UnpicklingError as error:
            reason = _torch_refusal(error)
            raise OrganiserFeatureError(
                f"{self.path}: refused to load: a tensor storage in the pickle holds a pickle that torch.load("
                f"weights_only=True) refuses ({reason}). Only feature arrays are imported; nothing in the file was "
                f"run. Convert it to a .npy file of the features, or check where it came from.") from None

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if (module, name) in _TORCH_GLOBALS:
            return super().find_class(module, name)
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return self.storage_from_bytes
        if module == "numpy.dtypes" and name.endswith("DType"):  # numpy.dtypes.Float32DType (numpy >= 1.25)
            return super().find_class(module, name)
        raise OrganiserFeatureError(
            f"{self.path}: refused to load: the pickle wants {module}.{name}, which is not an array, a dtype or a "
            f"list / tuple / dict of them (it could run code). Only feature arrays are imported; nothing in the file "
            f"was run. Convert it to a .npy file of the features, or check where it came from."
        )

    def persistent_load(self, pid):
        raise OrganiserFeatureError(f"{self.path}: refused to load: the pickle references external objects "
                                    f"({pid!r}). Save the features as arrays.")  # fmt: skip


def load_feature_pickle(path: str | os.PathLike):
    """The object in a features file, loaded safely (see the module docstring); raises `OrganiserFeatureError`."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as error:
            raise OrganiserFeatureError(f"{path}: not a plain .npy array ({error}); object arrays are refused.")
    with open(path, "rb") as handle:
        head = handle.read(4)
        handle.seek(0)
        if head.startswith(b"PK") and zipfile.is_zipfile(handle):  # a torch.save file
            import torch

            handle.seek(0)
            try:
                return torch.load(handle, weights_only=True, map_location="cpu")
            except Exception as error:
                raise OrganiserFeatureError(f"{path}: refused by torch.load(weights_only=True) "
                                            f"({_torch_refusal(error)}); only tensors and containers of them are "
                                            f"imported; nothing in the file was run.") from None  # fmt: skip
        try:
            return _AllowListUnpickler(handle, path).load()
        except OrganiserFeatureError:
            raise
        except Exception as error:
            raise OrganiserFeatureError(f"{path}: not a readable features pickle ({type(error).__name__}: "
                                        f"{error}). Re-download the file.") from None  # fmt: skip


def feature_matrix(value, path: Path) -> np.ndarray:
    """``[T, D]`` float32 from a loaded features object: an array or tensor (``[T, D]``, ``[1, T, D]`` or ``[D]``),
    a list of per-frame vectors, or a dict with one array (or one under a key of ``FEATURE_KEYS``)."""
    if isinstance(value, dict):
        arrays = {k: v for k, v in value.items() if not isinstance(v, (str, int, float))}
        key = next((k for k in FEATURE_KEYS if k in arrays), None)
        if key is None and len(arrays) != 1:
            raise OrganiserFeatureError(f"{path}: a dict with keys {sorted(map(str, value))}; expected one array "
                                        f"(or one under {list(FEATURE_KEYS)}).")  # fmt: skip
        value = arrays[key] if key is not None else next(iter(arrays.values()))
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().float().cpu().numpy()
    try:
        array = np.asarray(value if not isinstance(value, (list, tuple)) else [np.asarray(v) for v in value],
                           dtype=np.float32)  # fmt: skip
    except (TypeError, ValueError) as error:
        raise OrganiserFeatureError(f"{path}: the features are not a numeric array ({error}).") from None
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or 0 in array.shape:
        raise OrganiserFeatureError(f"{path}: features of shape {list(array.shape)}; expected [frames, width].")
    return array


def _index_files(folder: Path | None, what: str) -> dict[str, Path]:
    if folder is None:
        return {}
    if not folder.is_dir():
        raise DataLayoutError(f"{folder}: no such {what} features folder. Pass the folder of per-clip pickles "
                              f"(e.g. DATA/{'vit' if what == 'visual' else 'wav2vec2'}).")  # fmt: skip
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in PICKLE_EXTENSIONS and not path.name.startswith("."):
            clip_id = normalize_clip_id(path.name, PICKLE_EXTENSIONS)
            if clip_id in files:
                raise DataLayoutError(f"{folder}: clip {clip_id!r} has two files: {files[clip_id]} and {path}.")
            files[clip_id] = path
    if not files:
        raise DataLayoutError(f"{folder}: no {'/'.join(PICKLE_EXTENSIONS)} files in it.")
    return files


def _valid_rows(matrix: np.ndarray) -> np.ndarray:
    return (np.isfinite(matrix).all(axis=1) & (np.abs(matrix).sum(axis=1) > 0)).astype(np.int8)


def _modality(files: dict, clip_id: str, width: int) -> tuple[np.ndarray, np.ndarray]:
    if clip_id not in files:
        return np.zeros((1, width), np.float32), np.zeros(1, np.int8)
    matrix = feature_matrix(load_feature_pickle(files[clip_id]), files[clip_id])
    if matrix.shape[1] != width:
        raise OrganiserFeatureError(f"{files[clip_id]}: {matrix.shape[1]}-wide features, but the other clips' are "
                                    f"{width}-wide.")  # fmt: skip
    mask = _valid_rows(matrix)
    return np.nan_to_num(matrix, nan=0.0, posinf=0.0, neginf=0.0), mask


def clip_row(clip_id: str, labels, visual_files: dict, audio_files: dict, widths: tuple[int, int],
             visual_fps: float) -> dict:
    """One clip's dataset row (the columns of `emi_hf.data.store.feature_schema`, no AUs)."""
    visual, frame_mask = _modality(visual_files, clip_id, widths[0])
    audio, audio_mask = _modality(audio_files, clip_id, widths[1])
    return {"clip_id": clip_id, "visual_features": visual, "au_features": np.zeros((len(visual), 0), np.float32),
            "frame_mask": frame_mask, "frame_timestamps": (np.arange(len(visual)) / visual_fps).astype(np.float32),
            "audio_features": audio, "audio_mask": audio_mask,
            "labels": np.full(6, np.nan, np.float32) if labels is None else np.asarray(labels, np.float32),
            "face_fraction": float(frame_mask.mean()), "audio_present": bool(audio_mask.any())}  # fmt: skip


def _width(files: dict) -> int | None:
    if not files:
        return None
    first = next(iter(files.values()))
    return feature_matrix(load_feature_pickle(first), first).shape[1]


def _generate_rows(clips: list, visual_files: dict, audio_files: dict, widths, visual_fps: float):
    for clip_id, labels in clips:
        yield clip_row(clip_id, labels, visual_files, audio_files, widths, visual_fps)


def import_organiser_features(
    data_dir: str | os.PathLike,
    output: str | os.PathLike,
    visual_dir: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
    splits=None,
    *,
    test_dir: str | os.PathLike | None = None,
    visual_fps: float = 1.0,
) -> dict:
    """Write a features folder at ``output`` from the organisers' pickles; returns the import report.

    Args:
        data_dir: the Hume-Vidmimic2 folder (split CSVs; the test split from its CSV or test folder).
        visual_dir, audio_dir: folders of per-clip ``<id>.pkl`` (at least one).
        splits: the splits to import (default: train, validation, and test when the data folder has one).
    """
    import shutil
    import tempfile

    from datasets import Dataset, DatasetDict
    from datasets.exceptions import DatasetGenerationError

    if visual_dir is None and audio_dir is None:
        raise EmiUsageError("pass --visual and/or --audio: the folders of the organisers' per-clip pickles.")
    started = time.time()
    records = load_hume_vidmimic2(data_dir, splits=splits, require_videos=False, test_dir=test_dir)
    visual_files = _index_files(None if visual_dir is None else Path(visual_dir), "visual")
    audio_files = _index_files(None if audio_dir is None else Path(audio_dir), "audio")
    widths = (_width(visual_files) or 384, _width(audio_files) or 768)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    schema = feature_schema(0, widths[1], 6, visual_dim=widths[0])
    failures = [{"clip_id": r.clip_id, "path": None, "split": r.split, "error": "no visual and no audio features "
                 "file for this clip"} for clips in records.values() for r in clips
                if r.clip_id not in visual_files and r.clip_id not in audio_files]  # fmt: skip
    failed = {f["clip_id"] for f in failures}
    counts, datasets = {}, {}
    with tempfile.TemporaryDirectory(dir=output) as cache_dir:
        for split, records_of_split in records.items():
            clips = sorted((r.clip_id, None if r.labels is None else r.labels.tolist()) for r in records_of_split
                           if r.clip_id not in failed)  # fmt: skip
            counts[split] = {"requested": len(records_of_split), "extracted": len(clips),
                             "failed": len(records_of_split) - len(clips)}  # fmt: skip
            if clips:
                try:
                    datasets[split] = Dataset.from_generator(
                        _generate_rows, features=schema, cache_dir=cache_dir,
                        gen_kwargs={"clips": clips, "visual_files": visual_files, "audio_files": audio_files,
                                    "widths": widths, "visual_fps": visual_fps})  # fmt: skip
                except DatasetGenerationError as error:  # the file's own error, not the datasets wrapper's
                    if isinstance(error.__cause__, OrganiserFeatureError):
                        raise error.__cause__ from None
                    raise
        if (output / DATASET_DIR).exists():
            shutil.rmtree(output / DATASET_DIR)
        DatasetDict(datasets).save_to_disk(str(output / DATASET_DIR))
    with open(output / "failures.rank0.jsonl", "w") as handle:
        handle.writelines(json.dumps(f) + "\n" for f in failures)
    write_features_metadata(output, au_names=[], label_names=list(EMOTION_NAMES), visual_feature_dim=widths[0],
                            audio_feature_dim=widths[1], splits=counts, fps=None,
                            source={"kind": "organiser baseline features", "visual": str(visual_dir),
                                    "audio": str(audio_dir), "visual_fps": visual_fps})  # fmt: skip
    report = {"splits": counts, "failures": failures, "failure_reasons": reason_counts(failures),
              "visual_files": len(visual_files),
              "audio_files": len(audio_files), "widths": {"visual": widths[0], "audio": widths[1]},
              "wall_time_s": round(time.time() - started, 2)}  # fmt: skip
    (output / "import_report.json").write_text(json.dumps(report, indent=2))
    return report
