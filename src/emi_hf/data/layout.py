"""Reading a data folder: which clips exist, where their videos are, their labels and their split.

Two layouts:

**Hume-Vidmimic2** ([`load_hume_vidmimic2`]), as distributed for the ABAW Emotional Mimicry Intensity challenge::

    data_dir/
      train_split.csv     Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy
      valid_split.csv     same header
      test_split.csv      Filename only (optional; labels are read if the columns are there)
      raw/00000.mp4 ...   videos with their audio tracks, in any subfolder (raw/, videos/, ...) or at the top
      test_data/raw/12660.mp4 ...   the test videos as distributed, without a CSV (also test/; see below)
      audio/00000.mp3     optional per-clip audio (.mp3 / .wav / .flac / .m4a), used when a video has no
                          audio track (and for clips given only as face images)
      face_images/00000/0.jpg 1.jpg ...  optional pre-cropped faces per clip, numbered frames; a clip with these
                          needs no video (see `emi_hf.media.images`)
      test_data/audio/, test_data/face_images/   the same for the test clips, when shipped beside them

  **Test split without a CSV.** When ``test_split.csv`` is absent, the test split is every video of the test
  folder: ``test_dir`` when given, else ``test_data/`` or ``test/`` under ``data_dir`` (searched recursively, e.g.
  ``test_data/raw/``), ids from the file names, in sorted order, unlabeled.

  Split files are looked up at the top of ``data_dir`` first (also accepted: ``validation_split.csv``,
  ``val_split.csv``), then anywhere below it. Videos are found by one recursive search of ``data_dir`` (or of
  ``video_dir`` when given), hidden folders skipped, for the extensions in ``VIDEO_EXTENSIONS`` (any case).

**Generic** ([`load_generic`]): any folder of videos and one CSV with an id column and one column per label
(``label_names``, configurable, so other intensity tasks fit), and optionally a split column.

**Clip ids.** The id column may hold ``123``, ``00123``, ``00123.mp4``, ``123.0`` (a spreadsheet's float) or a
relative path inside the data folder such as ``raw/00123.mp4``. Numeric ids are normalised to at least 5 digits
(``00123``); other names are kept as they are (without a video extension). Video file names are normalised the same
way, so ``123.mp4`` and ``00123.mp4`` are the same clip.

**Errors.** A CSV that cannot be used raises [`DataLayoutError`] (a ``ValueError``) whose message names the CSV file
and the line (file line numbers, header = line 1, as shown by editors and ``sed -n Np``), says what is wrong and what
to fix: missing or duplicate columns, an empty file, a header without rows, a wrong number of fields, a missing,
non-numeric, non-finite or out-of-range label, a duplicate id (also across splits), an id without a video, an
absolute path or a path escaping the data folder, an unknown split name.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..models.configuration_emi import EMOTION_NAMES
from ..errors import EmiError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")  # what a data-folder search finds
# every container PyAV decodes (upload checks, example folders); VIDEO_EXTENSIONS stays the data-folder search list
READABLE_VIDEO_EXTENSIONS = VIDEO_EXTENSIONS + (".m4v", ".mpg", ".mpeg", ".ogv", ".3gp", ".wmv", ".flv")
SPLITS = ("train", "validation", "test")
TEST_FOLDERS = ("test_data", "test")  # where the test videos are when there is no test_split.csv
AUDIO_DIR = "audio"  # per-clip audio files
AUDIO_EXTENSIONS = (".mp3", ".wav", ".flac", ".m4a", ".ogg", ".aac")
FACE_IMAGES_DIR = "face_images"  # per-clip folders of pre-cropped faces
FACE_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
HUME_SPLIT_FILES = {
    "train": ("train_split.csv",),
    "validation": ("valid_split.csv", "validation_split.csv", "val_split.csv"),
    "test": ("test_split.csv",),
}
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                 "val": "validation", "dev": "validation", "test": "test", "testing": "test"}  # fmt: skip
ID_COLUMNS = ("Filename", "filename", "file", "video", "clip_id", "id", "path")

__all__ = ["AUDIO_DIR", "AUDIO_EXTENSIONS", "ClipRecord", "DataLayoutError", "FACE_IMAGES_DIR", "HUME_SPLIT_FILES",
           "ID_COLUMNS", "READABLE_VIDEO_EXTENSIONS", "SPLITS", "SPLIT_ALIASES", "TEST_FOLDERS", "VIDEO_EXTENSIONS",
           "find_face_image_dirs", "find_test_folder", "find_videos", "load_generic", "load_hume_vidmimic2",
           "normalize_clip_id"]  # fmt: skip


class DataLayoutError(EmiError, ValueError):
    """A data folder or CSV file that cannot be read; the message says where (file, line) and what to fix."""


@dataclass(frozen=True, eq=False)
class ClipRecord:
    """One clip of a data set.

    Attributes:
        clip_id: normalised id (``"00123"``), unique within the data set.
        path: the video file (None only when loaded with ``require_videos=False`` and the video is missing).
        labels: ``[num_labels]`` float32 intensities in [0, 1], or None for an unlabeled (test) clip.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        audio_path: the clip's file in ``audio/`` (used when the video has no audio track), or None.
        face_dir: the clip's ``face_images/<id>/`` folder of pre-cropped faces, or None.
    """

    clip_id: str
    path: Path | None
    labels: np.ndarray | None
    split: str
    audio_path: Path | None = None
    face_dir: Path | None = None

    def to_dict(self) -> dict:
        optional = {k: str(v) for k, v in (("audio_path", self.audio_path), ("face_dir", self.face_dir)) if v}
        return {"clip_id": self.clip_id, "path": None if self.path is None else str(self.path),
                "labels": None if self.labels is None else self.labels.tolist(), "split": self.split,
                **optional}  # fmt: skip


# --------------------------------------------------------------------------------------------------- ids


_FLOAT_ID = re.compile(r"^(\d+)\.0*$")


def normalize_clip_id(name: str, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> str:
    """``"123"``, ``"00123.mp4"``, ``"123.0"`` -> ``"00123"``; non-numeric names lose only a video extension (one of
    ``extensions``)."""
    stem = str(name).strip()
    if stem.lower().endswith(tuple(e.lower() for e in extensions)):
        stem = stem[: stem.rfind(".")]
    match = _FLOAT_ID.match(stem)
    if match:
        stem = match.group(1)
    if stem.isdigit() and stem.isascii():
        return str(int(stem)).zfill(5)
    return stem


def find_videos(root: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> dict[str, list[Path]]:
    """Search ``root`` once, recursively (hidden folders skipped): normalised clip id -> video paths (sorted).

    More than one path for an id means the id is ambiguous (e.g. ``raw/00001.mp4`` and ``00001.avi``).
    """
    extensions = tuple(e.lower() for e in extensions)
    found: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            if filename.startswith(".") or not filename.lower().endswith(extensions):
                continue
            found.setdefault(normalize_clip_id(filename, extensions), []).append(Path(dirpath) / filename)
    for paths in found.values():
        paths.sort()
    return found


# --------------------------------------------------------------------------------------------------- CSV


def _fail(csv_path: Path, line: int | None, problem: str, fix: str) -> DataLayoutError:
    where = f"{csv_path}" if line is None else f"{csv_path}, line {line}"
    return DataLayoutError(f"{where}: {problem}. {fix}")


def _read_csv(csv_path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (stripped) and (file line, fields) per non-blank row."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = None
            rows = []
            for fields in reader:
                if not any(field.strip() for field in fields):
                    continue
                if header is None:
                    header = [field.strip() for field in fields]
                else:
                    rows.append((reader.line_num, fields))
    except UnicodeDecodeError as error:
        raise _fail(csv_path, None, f"is not UTF-8 text ({error})", "Save it as a UTF-8 CSV file.") from None
    except csv.Error as error:
        raise _fail(csv_path, None, f"is not a valid CSV file ({error})", "Fix the quoting on that line.") from None
    if header is None:
        raise _fail(csv_path, None, "is empty", "Write a header line (e.g. 'Filename,Admiration,...') and one row "
                    "per clip.")  # fmt: skip
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise _fail(csv_path, 1, f"the header repeats column(s) {duplicates}", "Give every column a unique name.")
    if not rows:
        raise _fail(csv_path, 1, "has a header but no rows", "Add one row per clip, or remove the file.")
    return header, rows


def _column(header: list[str], name: str, csv_path: Path, what: str) -> int:
    if name in header:
        return header.index(name)
    folded = [h.casefold() for h in header]
    hint = f" (found {header[folded.index(name.casefold())]!r}: the name must match exactly)" if (
        name.casefold() in folded) else ""  # fmt: skip
    raise _fail(csv_path, 1, f"the header has no {what} column {name!r}{hint}; columns are {header}",
                f"Add the column {name!r} (or pass the right column name).")  # fmt: skip


def _parse_label(value: str, csv_path: Path, line: int, column: str) -> float:
    text = value.strip()
    if not text:
        raise _fail(csv_path, line, f"column {column!r} is empty", "Fill in an intensity between 0 and 1.")
    try:
        number = float(text)
    except ValueError:
        raise _fail(csv_path, line, f"column {column!r} holds {text!r}, not a number",
                    "Write the intensity as a decimal number between 0 and 1.") from None  # fmt: skip
    if not math.isfinite(number):
        raise _fail(csv_path, line, f"column {column!r} is {text!r}", "Replace it with an intensity in [0, 1].")
    if not 0.0 <= number <= 1.0:
        raise _fail(csv_path, line, f"column {column!r} is {number}, outside [0, 1]",
                    "Intensities must lie in [0, 1]: rescale the column or fix the value.")  # fmt: skip
    return number


class _VideoIndex:
    """Resolves a CSV id cell to (clip_id, video path) inside ``data_root``."""

    def __init__(self, data_root: Path, video_root: Path, extensions: Sequence[str], require_videos: bool,
                 without_video: Iterable[str] = ()):
        self.data_root = data_root.resolve()
        self.video_root = video_root
        self.extensions = tuple(extensions)
        self.require_videos = require_videos
        self.without_video = set(without_video)  # ids that may lack a video (they have face images)
        self.videos = find_videos(video_root, self.extensions) if video_root.is_dir() else {}

    def resolve(self, cell: str, csv_path: Path, line: int) -> tuple[str, Path | None]:
        text = cell.strip()
        if not text:
            raise _fail(csv_path, line, "the id column is empty", "Write the clip id (e.g. 00123) or file name.")
        posix = text.replace("\\", "/")
        if posix.startswith("/") or re.match(r"^[A-Za-z]:/", posix) or Path(text).is_absolute():
            raise _fail(csv_path, line, f"{text!r} is an absolute path",
                        f"Write ids or paths relative to the data folder {self.data_root}.")  # fmt: skip
        parts = [p for p in posix.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise _fail(csv_path, line, f"{text!r} points outside the data folder {self.data_root}",
                        "Write ids or paths relative to the data folder, without '..'.")  # fmt: skip
        clip_id = normalize_clip_id(parts[-1] if parts else text, self.extensions)
        if len(parts) > 1:  # a relative path: it must exist, inside the data folder
            path = self.data_root.joinpath(*parts)
            resolved = path.resolve()
            if not resolved.is_relative_to(self.data_root):
                raise _fail(csv_path, line, f"{text!r} resolves to {resolved}, outside the data folder "
                            f"{self.data_root}", "Keep videos inside the data folder (no links out of it).")  # fmt: skip
            if path.is_file():
                return clip_id, path
            if self.require_videos:
                raise _fail(csv_path, line, f"no video at {path}", "Fix the path or add the video.")
            return clip_id, None
        paths = self.videos.get(clip_id, [])
        if len(paths) > 1:
            raise _fail(csv_path, line, f"id {clip_id!r} matches several videos: {[str(p) for p in paths]}",
                        "Remove the extra copies or pass video_dir to point at one folder.")  # fmt: skip
        if paths:
            return clip_id, paths[0]
        if self.require_videos and clip_id not in self.without_video:
            raise _fail(csv_path, line, f"no video for id {clip_id!r} (searched {self.video_root} for "
                        f"{'/'.join(self.extensions)}; {sum(map(len, self.videos.values()))} videos found)",
                        "Add the video, fix the id, or pass video_dir / require_videos=False.")  # fmt: skip
        return clip_id, None


def _read_split_rows(
    csv_path: Path,
    index: _VideoIndex,
    label_names: Sequence[str],
    id_column: str | None,
    split_column: str | None,
    default_split: str,
    labels_required: bool,
) -> list[tuple[int, ClipRecord]]:
    """Parse one CSV into (file line, record) pairs.

    Labels are required on every row when ``labels_required``; otherwise test rows may go without (no label
    columns, or empty label cells), while rows of the other splits still need them.
    """
    header, rows = _read_csv(csv_path)
    if id_column is None:
        id_column = next((name for name in ID_COLUMNS if name in header), ID_COLUMNS[0])
    id_index = _column(header, id_column, csv_path, "id")
    missing = [name for name in label_names if name not in header]
    if missing and (labels_required or (split_column is None and default_split != "test")):
        _column(header, missing[0], csv_path, "label")  # raises, listing the header and a close-match hint
    label_index = [] if missing else [header.index(name) for name in label_names]
    split_index = _column(header, split_column, csv_path, "split") if split_column else None
    records = []
    for line, fields in rows:
        if len(fields) != len(header):
            raise _fail(csv_path, line, f"the row has {len(fields)} fields but the header has {len(header)}",
                        "Check for a missing or extra comma (quote values that contain commas).")  # fmt: skip
        split = default_split
        if split_index is not None:
            raw = fields[split_index].strip()
            split = SPLIT_ALIASES.get(raw.lower())
            if split is None:
                raise _fail(csv_path, line, f"unknown split {raw!r} in column {split_column!r}",
                            f"Use one of {sorted(set(SPLIT_ALIASES))}.")  # fmt: skip
        if missing and split != "test":
            _column(header, missing[0], csv_path, "label")
        clip_id, path = index.resolve(fields[id_index], csv_path, line)
        labels = None
        cells = [fields[i] for i in label_index]
        unlabeled_test = split == "test" and not labels_required and not any(c.strip() for c in cells)
        if cells and not unlabeled_test:
            labels = np.array([_parse_label(c, csv_path, line, name) for c, name in zip(cells, label_names)],
                              dtype=np.float32)  # fmt: skip
        records.append((line, ClipRecord(clip_id=clip_id, path=path, labels=labels, split=split)))
    return records


def _check_unique(records: Iterable[tuple[Path, int, ClipRecord]]) -> None:
    seen: dict[str, tuple[Path, int]] = {}
    for csv_path, line, record in records:
        if record.clip_id in seen:
            first_csv, first_line = seen[record.clip_id]
            first = first_csv if first_line is None else f"{first_csv}, line {first_line}"
            raise _fail(csv_path, line, f"duplicate id {record.clip_id!r} (already at {first})",
                        "Keep one row per clip; a clip belongs to one split only.")  # fmt: skip
        seen[record.clip_id] = (csv_path, line)


# ----------------------------------------------------------------------------------------------- layouts


def _find_split_csv(data_dir: Path, split: str) -> Path | None:
    for name in HUME_SPLIT_FILES[split]:
        if (data_dir / name).is_file():
            return data_dir / name
    for name in HUME_SPLIT_FILES[split]:
        matches = sorted(p for p in data_dir.rglob(name) if not any(part.startswith(".") for part in
                                                                   p.relative_to(data_dir).parts))  # fmt: skip
        if len(matches) > 1:
            raise DataLayoutError(f"{data_dir}: several {name} files: {[str(m) for m in matches]}. Keep one, or "
                                  f"move the one to use to the top of the data folder.")  # fmt: skip
        if matches:
            return matches[0]
    return None


def find_test_folder(data_dir: Path, test_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder of the test videos when there is no ``test_split.csv``: ``test_dir`` (must exist), else the first of
    ``TEST_FOLDERS`` under ``data_dir``; None when there is none."""
    if test_dir is not None:
        test_dir = Path(test_dir)
        if not test_dir.is_dir():
            raise DataLayoutError(f"{test_dir}: no such test folder. Pass the folder holding the test videos "
                                  f"(e.g. {Path(data_dir) / 'test_data' / 'raw'}).")  # fmt: skip
        return test_dir
    return next((data_dir / name for name in TEST_FOLDERS if (data_dir / name).is_dir()), None)


def _test_records_from_folder(folder: Path, extensions: Sequence[str]) -> list[ClipRecord]:
    videos = find_videos(folder, extensions)
    if not videos:
        raise DataLayoutError(f"{folder}: no test videos ({'/'.join(extensions)}) in it. Put the test videos there "
                              f"(as distributed: test_data/raw/12660.mp4 ...) or pass --test-dir.")  # fmt: skip
    ambiguous = {k: v for k, v in videos.items() if len(v) > 1}
    if ambiguous:
        clip_id, paths = next(iter(ambiguous.items()))
        raise DataLayoutError(f"{folder}: test id {clip_id!r} matches several videos: {[str(p) for p in paths]}. "
                              f"Remove the extra copies.")  # fmt: skip
    return [ClipRecord(clip_id=k, path=videos[k][0], labels=None, split="test") for k in sorted(videos)]


def _side_folders(data_dir: Path, name: str) -> list[Path]:
    """``data_dir/name`` and ``data_dir/<test folder>/name`` (the test clips' own side inputs), those that exist."""
    return [f for f in (data_dir / name, *(data_dir / t / name for t in TEST_FOLDERS)) if f.is_dir()]


def find_audio_files(data_dir: Path) -> dict[str, Path]:
    """Clip id -> its file in ``data_dir/audio/`` or ``data_dir/test_data/audio/`` (one per id;
    ``AUDIO_EXTENSIONS``); ``{}`` without such a folder."""
    found: dict[str, list[Path]] = {}
    for folder in _side_folders(data_dir, AUDIO_DIR):
        for clip_id, paths in find_videos(folder, AUDIO_EXTENSIONS).items():
            found.setdefault(clip_id, []).extend(paths)
    ambiguous = {k: v for k, v in found.items() if len(v) > 1}
    if ambiguous:
        clip_id, paths = next(iter(ambiguous.items()))
        raise DataLayoutError(f"{data_dir}: id {clip_id!r} has several audio files: {[str(p) for p in paths]}. "
                              f"Keep one.")  # fmt: skip
    return {k: v[0] for k, v in found.items()}


def find_face_image_dirs(data_dir: Path) -> dict[str, Path]:
    """Clip id -> ``face_images/<id>/`` (under ``data_dir`` or its test folder) holding at least one image; ``{}``
    without such a folder."""
    return {normalize_clip_id(d.name, ()): d for folder in _side_folders(data_dir, FACE_IMAGES_DIR)
            for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")
            and any(f.suffix.lower() in FACE_IMAGE_EXTENSIONS for f in d.iterdir())}  # fmt: skip


def _with_side_inputs(records: list[ClipRecord], audio: dict[str, Path], faces: dict[str, Path]) -> list[ClipRecord]:
    return [record if record.clip_id not in audio and record.clip_id not in faces else ClipRecord(
        clip_id=record.clip_id, path=record.path, labels=record.labels, split=record.split,
        audio_path=audio.get(record.clip_id), face_dir=faces.get(record.clip_id)) for record in records]  # fmt: skip


def load_hume_vidmimic2(
    data_dir: str | os.PathLike,
    splits: Sequence[str] | None = None,
    *,
    video_dir: str | os.PathLike | None = None,
    label_names: Sequence[str] = EMOTION_NAMES,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    require_videos: bool = True,
    test_dir: str | os.PathLike | None = None,
) -> dict[str, list[ClipRecord]]:
    """Read a Hume-Vidmimic2 folder (layout in the module docstring).

    Args:
        data_dir: the data set folder.
        splits: splits to read, among ``"train"``, ``"validation"`` (alias ``"valid"``) and ``"test"``; each must
            have its CSV, except test, which may come from a test folder. None (default): train and validation
            (required) and test when ``test_split.csv`` or a test folder exists.
        video_dir: where to search for videos (default: all of ``data_dir``).
        label_names: label columns (default: the six emotions), in the order of the returned label vectors.
        require_videos: when False, a row without a video gives ``path=None`` instead of an error (a clip with
            face images never needs one).
        test_dir: the test videos' folder, used when there is no ``test_split.csv`` (default: ``test_data/`` or
            ``test/`` under ``data_dir``).
    Returns:
        split name -> records in CSV order (a test split from a folder: sorted by id). Test records have
        ``labels=None`` unless the test CSV has the label columns. Records carry ``audio_path`` / ``face_dir``
        when ``audio/`` / ``face_images/`` hold files for them.
    Raises:
        DataLayoutError: with the file, the line and what to fix.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataLayoutError(f"{data_dir}: no such folder. Pass the Hume-Vidmimic2 folder (the one holding "
                              f"train_split.csv and valid_split.csv).")  # fmt: skip
    if splits is None:
        wanted, optional = ["train", "validation", "test"], {"test"}
    else:
        wanted = []
        for name in [splits] if isinstance(splits, str) else splits:
            split = SPLIT_ALIASES.get(str(name).lower())
            if split is None:
                raise DataLayoutError(f"unknown split {name!r}: use 'train', 'validation' or 'test'.")
            wanted.append(split)
        optional = set()
    audio, faces = find_audio_files(data_dir), find_face_image_dirs(data_dir)
    index = _VideoIndex(data_dir, Path(video_dir) if video_dir is not None else data_dir, extensions,
                        require_videos, without_video=faces)  # fmt: skip
    if video_dir is not None and not index.video_root.is_dir():
        raise DataLayoutError(f"{index.video_root}: no such video folder. Pass the folder holding the videos.")
    result: dict[str, list[ClipRecord]] = {}
    sources: list[tuple[Path, int, ClipRecord]] = []
    for split in dict.fromkeys(wanted):
        csv_path = _find_split_csv(data_dir, split)
        test_folder = find_test_folder(data_dir, test_dir) if csv_path is None and split == "test" else None
        if test_folder is not None:
            clips = _test_records_from_folder(test_folder, extensions)
            sources.extend((record.path, None, record) for record in clips)
            result[split] = _with_side_inputs(clips, audio, faces)
            continue
        if csv_path is None:
            if split in optional:
                continue
            present = sorted(p.name for p in data_dir.glob("*.csv"))
            folders = f" and no {' or '.join(f'{n}/' for n in TEST_FOLDERS)} folder" if split == "test" else ""
            raise DataLayoutError(f"{data_dir}: no {' or '.join(HUME_SPLIT_FILES[split])} for the {split} split"
                                  f"{folders} (CSV files there: {present or 'none'}). Add it, or leave {split!r} "
                                  f"out of splits.")  # fmt: skip
        rows = _read_split_rows(csv_path, index, label_names, "Filename", None, split,
                                labels_required=split != "test")  # fmt: skip
        sources.extend((csv_path, line, record) for line, record in rows)
        result[split] = _with_side_inputs([record for _, record in rows], audio, faces)
    _check_unique(sources)
    return result


def load_generic(
    video_dir: str | os.PathLike,
    labels_csv: str | os.PathLike,
    label_names: Sequence[str] = EMOTION_NAMES,
    *,
    id_column: str | None = None,
    split_column: str | None = None,
    default_split: str = "train",
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    require_videos: bool = True,
) -> dict[str, list[ClipRecord]]:
    """Read any folder of videos plus one CSV of labels.

    Args:
        video_dir: searched recursively for videos; relative paths in the CSV are relative to it.
        labels_csv: one row per clip: an id column, the ``label_names`` columns (values in [0, 1]) and optionally
            a split column. Rows of the test split may leave the labels empty.
        label_names: label columns, in the order of the returned label vectors (any intensity task).
        id_column: the id column (default: the first of ``ID_COLUMNS`` in the header, e.g. ``Filename``).
        split_column: column naming each row's split (train/validation/test and aliases such as valid, val, dev);
            None: every clip goes to ``default_split``.
    Returns:
        split name -> records in CSV order (only splits that occur).
    Raises:
        DataLayoutError: with the file, the line and what to fix.
    """
    video_dir, labels_csv = Path(video_dir), Path(labels_csv)
    if not video_dir.is_dir():
        raise DataLayoutError(f"{video_dir}: no such video folder. Pass the folder holding the videos.")
    if not labels_csv.is_file():
        raise DataLayoutError(f"{labels_csv}: no such CSV file. Pass the labels file.")
    split = SPLIT_ALIASES.get(default_split.lower())
    if split is None:
        raise DataLayoutError(f"unknown default_split {default_split!r}: use 'train', 'validation' or 'test'.")
    if not label_names:
        raise DataLayoutError("label_names is empty: name the label columns of the CSV.")
    index = _VideoIndex(video_dir, video_dir, extensions, require_videos)
    rows = _read_split_rows(labels_csv, index, label_names, id_column, split_column, split, labels_required=False)
    _check_unique((labels_csv, line, record) for line, record in rows)
    result: dict[str, list[ClipRecord]] = {}
    for _, record in rows:
        result.setdefault(record.split, []).append(record)
    return result
