"""The EMI challenge submission file: write it, check it.

Format (ABAW Emotional Mimicry Intensity)::

    Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy
    12660,0.123456,...

one row per test clip, its id written with 5 digits, every value a finite number in [0, 1].

[`write_submission`] never drops a clip: a clip without a prediction (its features failed, or the model could not
score it) gets the fallback row (the training-set label mean) and is listed, with the reason, in the report written
beside the file (``<name>.report.json``). [`verify_submission`] checks a file against the data folder's test ids
(header, ids missing / extra / duplicated / malformed, ranges, NaN) and returns the problems found.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .configuration_emi import EMOTION_NAMES
from .data.layout import normalize_clip_id

SUBMISSION_HEADER = ("Filename", *EMOTION_NAMES)
MAX_PROBLEMS_PER_KIND = 10  # verify_submission lists at most this many ids per kind of problem

__all__ = ["SUBMISSION_HEADER", "expected_test_ids", "format_clip_id", "report_path", "verify_submission",
           "write_prediction_table", "write_submission"]  # fmt: skip


def format_clip_id(clip_id: str) -> str:
    """``"123"``, ``"00123.mp4"`` -> ``"00123"`` (numeric ids with at least 5 digits; other names unchanged)."""
    return normalize_clip_id(str(clip_id))


def report_path(submission: str | os.PathLike) -> Path:
    """Where [`write_submission`] writes its report: ``submission.csv`` -> ``submission.report.json``."""
    submission = Path(submission)
    return submission.with_name(submission.stem + ".report.json")


def _finite_row(values, width: int) -> bool:
    if values is None:
        return False
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    return array.shape[0] == width and bool(np.isfinite(array).all())


def write_submission(
    output: str | os.PathLike,
    predictions: Mapping[str, Sequence[float] | None],
    expected_ids: Sequence[str] | None = None,
    *,
    fallback: Sequence[float],
    reasons: Mapping[str, str] | None = None,
    label_names: Sequence[str] = EMOTION_NAMES,
) -> dict:
    """Write the challenge CSV and its report; returns the report.

    Args:
        output: the CSV file to write (its folder is created).
        predictions: clip id -> ``[6]`` intensities (NaN / None: no prediction).
        expected_ids: every clip the file must hold (default: the keys of ``predictions``); ids are normalised
            (``format_clip_id``), rows are written in sorted id order.
        fallback: the row written for a clip without a finite prediction (the training-set label mean).
        reasons: clip id -> why it has no prediction (e.g. the extraction error); default "no prediction".
        label_names: the emotion columns, in the order of the prediction vectors; must be the six emotions.
    Raises:
        ValueError: label names other than the challenge's, or a fallback that is not 6 finite numbers.
    """
    if tuple(label_names) != EMOTION_NAMES:
        raise ValueError(f"The challenge file has the columns {list(EMOTION_NAMES)}; the model predicts "
                         f"{list(label_names)}. Use a model trained on the six EMI emotions.")  # fmt: skip
    width = len(EMOTION_NAMES)
    if not _finite_row(fallback, width):
        raise ValueError(f"The fallback row must be {width} finite numbers (the training-set label mean); got "
                         f"{fallback!r}.")  # fmt: skip
    fallback = np.clip(np.asarray(fallback, dtype=np.float64), 0.0, 1.0)
    by_id = {format_clip_id(k): v for k, v in predictions.items()}
    reasons = {format_clip_id(k): v for k, v in (reasons or {}).items()}
    ids = sorted({format_clip_id(i) for i in (expected_ids if expected_ids is not None else by_id)})
    filled, clipped, rows = [], 0, []
    for clip_id in ids:
        values = by_id.get(clip_id)
        if _finite_row(values, width):
            raw = np.asarray(values, dtype=np.float64).reshape(-1)
            clipped += int(((raw < 0.0) | (raw > 1.0)).sum())
            row = np.clip(raw, 0.0, 1.0)
        else:
            reason = reasons.get(clip_id) or ("no prediction" if clip_id in by_id else "no features")
            filled.append({"clip_id": clip_id, "reason": reason})
            row = fallback
        rows.append([clip_id, *(f"{v:.6f}" for v in row)])
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUBMISSION_HEADER)
        writer.writerows(rows)
    report = {"submission": str(output), "num_clips": len(rows), "num_predicted": len(rows) - len(filled),
              "num_filled_with_fallback": len(filled), "fallback": [round(float(v), 6) for v in fallback],
              "fallback_source": "training-set label mean", "values_clipped_to_0_1": clipped,
              "unexpected_predictions_ignored": sorted(set(by_id) - set(ids)), "filled": filled}  # fmt: skip
    report_path(output).write_text(json.dumps(report, indent=2))
    return report


def expected_test_ids(data_dir: str | os.PathLike, test_dir: str | os.PathLike | None = None) -> list[str]:
    """The test clip ids of a data folder: from ``test_split.csv``, else from the test video folder (see
    `emi_hf.data.layout.load_hume_vidmimic2`)."""
    from .data.layout import load_hume_vidmimic2

    records = load_hume_vidmimic2(data_dir, splits=("test",), require_videos=False, test_dir=test_dir)
    return [record.clip_id for record in records["test"]]


def _listed(kind: str, ids: list[str]) -> str:
    shown = ", ".join(ids[:MAX_PROBLEMS_PER_KIND]) + (f", ... ({len(ids)} in all)" if len(ids) >
                                                        MAX_PROBLEMS_PER_KIND else "")  # fmt: skip
    return f"{len(ids)} {kind} id(s): {shown}"


def _check_row(fields: list[str], line: int, problems: list[str]) -> None:
    for name, text in zip(EMOTION_NAMES, fields[1:]):
        try:
            value = float(text)
        except ValueError:
            problems.append(f"line {line}: {name} is {text!r}, not a number")
            continue
        if math.isnan(value):
            problems.append(f"line {line}: {name} is NaN")
        elif not 0.0 <= value <= 1.0:
            problems.append(f"line {line}: {name} is {value}, outside [0, 1]")


def _read_rows(path: Path, problems: list[str]) -> list[tuple[int, list[str]]] | None:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [(reader.line_num, fields) for fields in reader if any(f.strip() for f in fields)]
    except (UnicodeDecodeError, csv.Error) as error:
        problems.append(f"not a readable UTF-8 CSV file ({error})")
        return None
    if header is None:
        problems.append("the file is empty")
        return None
    if [h.strip() for h in header] != list(SUBMISSION_HEADER):
        problems.append(f"line 1: the header is {header}; it must be {list(SUBMISSION_HEADER)}")
    return rows


def verify_submission(
    path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    expected_ids: Sequence[str] | None = None,
    test_dir: str | os.PathLike | None = None,
) -> list[str]:
    """The problems of a submission file (empty list: it is valid).

    Checks the header, every row's field count, numbers, NaN and range [0, 1], malformed (not 5-digit) and duplicated
    ids, and against the expected ids (``expected_ids``, else the test split of ``data_dir``) missing and extra ids.
    Each problem names the line (header = line 1) or the ids.
    """
    path = Path(path)
    if not path.is_file():
        return [f"{path}: no such file"]
    if expected_ids is None and data_dir is not None:
        expected_ids = expected_test_ids(data_dir, test_dir)
    problems: list[str] = []
    rows = _read_rows(path, problems)
    if rows is None:
        return [f"{path}: {p}" for p in problems]
    seen: dict[str, int] = {}
    duplicated, malformed = [], []
    for line, fields in rows:
        if len(fields) != len(SUBMISSION_HEADER):
            problems.append(f"line {line}: {len(fields)} fields, the header has {len(SUBMISSION_HEADER)}")
            continue
        text = fields[0].strip()
        if not (text.isdigit() and len(text) >= 5):
            malformed.append(f"{text!r} (line {line})")
        clip_id = format_clip_id(text)
        if clip_id in seen:
            duplicated.append(f"{clip_id} (lines {seen[clip_id]} and {line})")
        seen.setdefault(clip_id, line)
        _check_row(fields, line, problems)
    if not rows:
        problems.append("no rows: one row per test clip is needed")
    if malformed:
        problems.append(_listed("malformed (not a 5-digit number)", malformed))
    if duplicated:
        problems.append(_listed("duplicated", duplicated))
    if expected_ids is not None:
        expected = {format_clip_id(i) for i in expected_ids}
        missing, extra = sorted(expected - set(seen)), sorted(set(seen) - expected)
        if missing:
            problems.append(_listed("missing", missing))
        if extra:
            problems.append(_listed("extra (not a test clip)", extra))
    return [f"{path}: {p}" for p in problems]


def write_prediction_table(output: str | os.PathLike, predictions) -> Path:
    """`emi-hf predict --output`: the submission table (``.csv``) or a JSON list of ``{Filename, emotions...}``
    (``.json``) for `ClipPrediction`s of raw videos; values clipped to [0, 1], NaN (no input) kept as empty / null."""
    output = Path(output)
    rows = []
    for prediction in predictions:
        values = [prediction.intensities.get(name, math.nan) for name in EMOTION_NAMES]
        values = [v if math.isnan(v) else min(max(v, 0.0), 1.0) for v in values]
        rows.append((format_clip_id(Path(prediction.path).name), values))
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".json":
        table = [{"Filename": clip_id, **{n: (None if math.isnan(v) else round(v, 6)) for n, v in
                                           zip(EMOTION_NAMES, values)}} for clip_id, values in rows]  # fmt: skip
        output.write_text(json.dumps(table, indent=2))
        return output
    if output.suffix.lower() != ".csv":
        raise ValueError(f"{output}: write a .csv or a .json file.")
    with open(output, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUBMISSION_HEADER)
        writer.writerows([clip_id, *("" if math.isnan(v) else f"{v:.6f}" for v in values)] for clip_id, values in rows)
    return output


def training_label_mean(features_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The mean label vector of the training clips: from the features' train split, else ``data_dir``'s
    ``train_split.csv``."""
    from .data.store import load_features

    datasets = load_features(features_dir)
    if "train" in datasets:
        labels = np.asarray(datasets["train"].with_format("numpy")["labels"], dtype=np.float64)
        labels = labels[np.isfinite(labels).all(axis=1)]
        if len(labels):
            return labels.mean(axis=0)
    if data_dir is None:
        raise ValueError(f"{features_dir} has no labeled train split, so the fallback row (the training-set label "
                         f"mean) is unknown: pass --data-dir (its train_split.csv gives it).")  # fmt: skip
    from .data.layout import load_hume_vidmimic2

    records = load_hume_vidmimic2(data_dir, splits=("train",), require_videos=False)["train"]
    return np.mean([record.labels for record in records], axis=0)


def _failed_clips(features_dir: Path, split: str) -> dict[str, str]:
    from .data.extraction import SPLIT_NAMES, _collect_failures

    return {f["clip_id"]: f"features failed: {f.get('error', 'unknown error')}" for f in _collect_failures(features_dir)
            if SPLIT_NAMES.get(f.get("split"), f.get("split")) == split}  # fmt: skip


def submission_from_features(
    model_dir: str | os.PathLike,
    features_dir: str | os.PathLike,
    output: str | os.PathLike,
    split: str = "test",
    *,
    data_dir: str | os.PathLike | None = None,
    test_dir: str | os.PathLike | None = None,
    device: str | None = None,
) -> dict:
    """`emi-hf submit`: a saved model's predictions for a split of cached features -> the challenge CSV and report.

    The clips the file must hold: the data folder's test ids when ``data_dir`` is given, else the split's clips in
    the features plus the ones whose extraction failed (the folder's ``failures.rank*.jsonl``). Clips without a
    prediction get the training-set label mean ([`training_label_mean`]).
    """
    from .data.store import load_features
    from .training.evaluation import evaluate_model

    features_dir = Path(features_dir)
    datasets = load_features(features_dir)
    failed = _failed_clips(features_dir, split)
    predictions: dict[str, np.ndarray] = {}
    if split in datasets:
        results, values, _ = evaluate_model(model_dir, features_dir, split, device=device)
        predictions = dict(zip(datasets[split]["clip_id"], values))
    elif not failed:
        raise ValueError(f"{features_dir} has no {split!r} split (it has {sorted(datasets)}): extract it first, e.g. "
                         f"`emi-hf extract --data-dir DATA --splits {split} --output {features_dir}`.")  # fmt: skip
    expected = expected_test_ids(data_dir, test_dir) if data_dir is not None and split == "test" else None
    if expected is None:
        expected = sorted(set(predictions) | set(failed))
    reasons = {clip_id: "the model could not score it (no usable input for its modalities)"
               for clip_id, values in predictions.items() if not np.isfinite(values).all()}  # fmt: skip
    reasons.update(failed)
    report = write_submission(output, predictions, expected, fallback=training_label_mean(features_dir, data_dir),
                              reasons=reasons)  # fmt: skip
    report.update(model=str(model_dir), features=str(features_dir), split=split)
    report_path(output).write_text(json.dumps(report, indent=2))
    return report
