"""The EMI challenge submission file: write it, check it.

Format (ABAW Emotional Mimicry Intensity)::

    Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy
    12660,0.123456,...

one row per test clip, its id written with 5 digits, every value a finite number in [0, 1].

[`write_submission`] never drops a clip: a clip without a prediction (its features failed, or the model could not
score it) gets the fallback row (the training-set label mean) and is listed, with the reason, in the report written
beside the file (``<name>.report.json``). [`submission_from_features`] (`emi-hf submit`) refuses to write such rows
unless told to (``allow_fill``, ``--allow-fill``): a filled row is not a prediction.

[`check_submission`] checks a file against the data folder's test ids and returns its problems (errors: the file is
not valid) and warnings; [`verify_submission`] returns the problems alone.

=====================================================================  =======
check                                                                  kind
=====================================================================  =======
header, field count, a value that is not a number, NaN, outside [0,1]  error
ids missing, extra (not a test clip), duplicated, malformed            error
no rows                                                                error
every row has the same six values (2 rows or more)                     error
some rows repeat another row's six values                              warning
one emotion has the same value in every row                            warning
=====================================================================  =======

The challenge's labels are fractions of annotators, so real predictions differ from clip to clip: a file whose rows
are all the same (every clip filled with the training mean, or a model that ignores its input) has no correlation to
score and is never valid. A few identical rows happen legitimately (rows filled with ``--allow-fill``, the same video
under two ids) and an emotion predicted the same everywhere (a head clipped to 0) scores nothing for that emotion
but is still a file: warnings.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .models.configuration_emi import EMOTION_NAMES
from .data.layout import normalize_clip_id
from .errors import EmiUsageError, IncompleteSubmission

SUBMISSION_HEADER = ("Filename", *EMOTION_NAMES)
MAX_PROBLEMS_PER_KIND = 10  # verify_submission lists at most this many ids per kind of problem

__all__ = ["SUBMISSION_HEADER", "SubmissionCheck", "check_submission", "expected_test_ids", "format_clip_id",
           "report_path", "verify_submission", "write_prediction_table", "write_submission"]  # fmt: skip


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
    fallback: Sequence[float] | None,
    reasons: Mapping[str, str] | None = None,
    label_names: Sequence[str] = EMOTION_NAMES,
) -> dict:
    """Write the challenge CSV and its report; returns the report.

    Args:
        output: the CSV file to write (its folder is created).
        predictions: clip id -> ``[6]`` intensities (NaN / None: no prediction).
        expected_ids: every clip the file must hold (default: the keys of ``predictions``); ids are normalised
            (``format_clip_id``), rows are written in sorted id order.
        fallback: the row written for a clip without a finite prediction (the training-set label mean); None when
            every clip has one.
        reasons: clip id -> why it has no prediction (e.g. the extraction error); default "no prediction".
        label_names: the emotion columns, in the order of the prediction vectors; must be the six emotions.
    Raises:
        ValueError: label names other than the challenge's, or a fallback that is not 6 finite numbers (or None
            while a clip needs it).
    """
    if tuple(label_names) != EMOTION_NAMES:
        raise EmiUsageError(f"The challenge file has the columns {list(EMOTION_NAMES)}; the model predicts "
                            f"{list(label_names)}. Use a model trained on the six EMI emotions.")  # fmt: skip
    width = len(EMOTION_NAMES)
    by_id = {format_clip_id(k): v for k, v in predictions.items()}
    ids = sorted({format_clip_id(i) for i in (expected_ids if expected_ids is not None else by_id)})
    filled = unpredicted_clips(by_id, ids, reasons)
    if (filled or fallback is not None) and not _finite_row(fallback, width):
        raise EmiUsageError(f"The fallback row must be {width} finite numbers (the training-set label mean); got "
                            f"{fallback!r}.")  # fmt: skip
    fallback = None if fallback is None else np.clip(np.asarray(fallback, dtype=np.float64), 0.0, 1.0)
    missing, clipped, rows = {entry["clip_id"] for entry in filled}, 0, []
    for clip_id in ids:
        if clip_id in missing:
            row = fallback
        else:
            raw = np.asarray(by_id[clip_id], dtype=np.float64).reshape(-1)
            clipped += int(((raw < 0.0) | (raw > 1.0)).sum())
            row = np.clip(raw, 0.0, 1.0)
        rows.append([clip_id, *(f"{v:.6f}" for v in row)])
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUBMISSION_HEADER)
        writer.writerows(rows)
    report = {"submission": str(output), "num_clips": len(rows), "num_predicted": len(rows) - len(filled),
              "num_filled_with_fallback": len(filled),
              "fallback": None if fallback is None else [round(float(v), 6) for v in fallback],
              "fallback_source": "training-set label mean", "values_clipped_to_0_1": clipped,
              "unexpected_predictions_ignored": sorted(set(by_id) - set(ids)), "filled": filled}  # fmt: skip
    report_path(output).write_text(json.dumps(report, indent=2))
    return report


def unpredicted_clips(predictions: Mapping[str, Sequence[float] | None], ids: Sequence[str],
                      reasons: Mapping[str, str] | None = None) -> list[dict]:
    """``[{"clip_id", "reason"}]`` of the `ids` without a finite prediction (the rows a fallback would fill)."""
    width = len(EMOTION_NAMES)
    by_id = {format_clip_id(k): v for k, v in predictions.items()}
    reasons = {format_clip_id(k): v for k, v in (reasons or {}).items()}
    return [{"clip_id": clip_id, "reason": reasons.get(clip_id) or ("no prediction" if clip_id in by_id else
                                                                    "no features")}
            for clip_id in map(format_clip_id, ids) if not _finite_row(by_id.get(clip_id), width)]  # fmt: skip


def expected_test_ids(data_dir: str | os.PathLike, test_dir: str | os.PathLike | None = None) -> list[str]:
    """The test clip ids of a data folder: from ``test_split.csv``, else from the test video folder (see
    `emi_hf.data.layout.load_hume_vidmimic2`)."""
    from .data.layout import load_hume_vidmimic2

    records = load_hume_vidmimic2(data_dir, splits=("test",), require_videos=False, test_dir=test_dir)
    return [record.clip_id for record in records["test"]]


def _shown(ids: list[str]) -> str:
    more = f", ... ({len(ids)} in all)" if len(ids) > MAX_PROBLEMS_PER_KIND else ""
    return ", ".join(ids[:MAX_PROBLEMS_PER_KIND]) + more


def _listed(kind: str, ids: list[str]) -> str:
    return f"{len(ids)} {kind} id(s): {_shown(ids)}"


def _check_row(fields: list[str], line: int, problems: list[str]) -> tuple[float, ...] | None:
    """Checks a row's six values; returns them when all are numbers in [0, 1]."""
    values = []
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
        else:
            values.append(value)
    return tuple(values) if len(values) == len(EMOTION_NAMES) else None


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


@dataclass
class SubmissionCheck:
    """What [`check_submission`] found: ``problems`` make the file invalid, ``warnings`` do not (see the module
    docstring for which is which). Each names the file, and the line (header = line 1) or the ids."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


def _check_values(values: list[tuple[int, str, tuple[float, ...]]], problems: list[str], warnings: list[str]) -> None:
    """Constant files (an error), repeated rows and constant emotions (warnings) among the rows whose six values
    are numbers in [0, 1]: ``(line, clip id, values)``."""
    if len(values) < 2:
        return
    groups: dict[tuple[float, ...], list[str]] = {}
    for line, clip_id, row in values:
        groups.setdefault(row, []).append(f"{clip_id} (line {line})")
    if len(groups) == 1:
        row = values[0][2]
        problems.append(f"all {len(values)} rows have the same values ({', '.join(f'{v:g}' for v in row)}): a "
                        "constant submission (every clip filled with the training mean, or a model that ignores its "
                        "input) has no correlation to score; real predictions differ from clip to clip")
        return
    repeated = sorted((ids for ids in groups.values() if len(ids) > 1), key=len, reverse=True)
    if repeated:
        warnings.append(f"{sum(len(ids) for ids in repeated)} rows share their six values with another row "
                        f"({len(repeated)} group(s); the largest: {_shown(repeated[0])}): "
                        "rows filled with the same fallback (--allow-fill), or the same video under two ids?")
    for index, name in enumerate(EMOTION_NAMES):
        column = {row[index] for _, _, row in values}
        if len(column) == 1:
            warnings.append(f"{name} is {next(iter(column)):g} in every row: its Pearson correlation is undefined")


def check_submission(
    path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    expected_ids: Sequence[str] | None = None,
    test_dir: str | os.PathLike | None = None,
) -> SubmissionCheck:
    """The problems and warnings of a submission file (no problems: it is valid).

    Checks the header, every row's field count, numbers, NaN and range [0, 1], malformed (not 5-digit) and duplicated
    ids, against the expected ids (``expected_ids``, else the test split of ``data_dir``) missing and extra ids, and
    the values: every row the same is a problem, repeated rows and an emotion constant over the rows are warnings.
    """
    path = Path(path)
    if not path.is_file():
        return SubmissionCheck([f"{path}: no such file"])
    if expected_ids is None and data_dir is not None:
        expected_ids = expected_test_ids(data_dir, test_dir)
    problems: list[str] = []
    warnings: list[str] = []
    rows = _read_rows(path, problems)
    if rows is None:
        return SubmissionCheck([f"{path}: {p}" for p in problems])
    seen: dict[str, int] = {}
    duplicated, malformed, values = [], [], []
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
        row = _check_row(fields, line, problems)
        if row is not None:
            values.append((line, clip_id, row))
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
    _check_values(values, problems, warnings)
    return SubmissionCheck([f"{path}: {p}" for p in problems], [f"{path}: {w}" for w in warnings])


def verify_submission(
    path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    expected_ids: Sequence[str] | None = None,
    test_dir: str | os.PathLike | None = None,
) -> list[str]:
    """The problems of a submission file (empty list: it is valid); [`check_submission`] without the warnings."""
    return check_submission(path, data_dir, expected_ids=expected_ids, test_dir=test_dir).problems


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
        raise EmiUsageError(f"{output}: write a .csv or a .json file.")
    with open(output, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUBMISSION_HEADER)
        writer.writerows([clip_id, *("" if math.isnan(v) else f"{v:.6f}" for v in values)] for clip_id, values in rows)
    return output


def recorded_label_mean(model_dir: str | os.PathLike) -> np.ndarray | None:
    """The training-set label mean a model's run recorded (``config.json``, else ``results.json``); None for runs of
    earlier versions, or a model that is not a local folder."""
    from .results import RESULTS_FILE, TRAINING_LABEL_MEAN

    folder = Path(model_dir)
    for name, block in (("config.json", None), (RESULTS_FILE, "training")):
        try:
            record = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        value = (record.get(block) or {}) if block else record
        value = value.get(TRAINING_LABEL_MEAN) if isinstance(value, dict) else None
        if _finite_row(value, len(EMOTION_NAMES)):
            return np.asarray(value, dtype=np.float64)
    return None


def training_label_mean(features_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The mean label vector of the training clips: from the features' train split, else ``data_dir``'s
    ``train_split.csv``."""
    return _label_mean_and_source(features_dir, data_dir)[0]


def _label_mean_and_source(features_dir, data_dir=None, model_dir=None) -> tuple[np.ndarray, str]:
    """The fallback row and where it came from: the model's own record, the features' train split, or ``data_dir``'s
    ``train_split.csv``."""
    from .data.store import load_features

    recorded = None if model_dir is None else recorded_label_mean(model_dir)
    if recorded is not None:
        return recorded, f"training-set label mean recorded by the model's run ({model_dir})"
    datasets = load_features(features_dir)
    if "train" in datasets:
        labels = np.asarray(datasets["train"].with_format("numpy")["labels"], dtype=np.float64)
        labels = labels[np.isfinite(labels).all(axis=1)]
        if len(labels):
            return labels.mean(axis=0), f"training-set label mean of {features_dir} (its train split)"
    if data_dir is None:
        model = f" and {model_dir} records no training-set label mean (an earlier version's run)" if model_dir else ""
        raise EmiUsageError(f"{features_dir} has no labeled train split{model}, so the fallback row (the training-set "
                            "label mean) is unknown: pass --data-dir (its train_split.csv gives it).")
    from .data.layout import load_hume_vidmimic2

    records = load_hume_vidmimic2(data_dir, splits=("train",), require_videos=False)["train"]
    mean = np.mean([record.labels for record in records], axis=0)
    return mean, f"training-set label mean of {Path(data_dir) / 'train_split.csv'}"


def _failed_clips(features_dir: Path, split: str) -> dict[str, str]:
    from .data.extraction import SPLIT_NAMES, collect_failures
    from .data.failures import reason_of

    return {f["clip_id"]: f"features failed: {reason_of(f)}" for f in collect_failures(features_dir)
            if SPLIT_NAMES.get(f.get("split"), f.get("split")) == split}  # fmt: skip


def _refusal(unfilled: list[dict], total: int, split: str, output, features_dir) -> str:
    from collections import Counter

    counts = "; ".join(f"{count} {reason}" for reason, count in Counter(e["reason"] for e in unfilled).most_common())
    return (f"{len(unfilled)} of {total} {split} clip(s) have no prediction ({counts}; e.g. "
            f"{_shown([e['clip_id'] for e in unfilled])}), so {output} was not written. Extract the failed clips "
            f"again (each clip and its error: {features_dir}/failures.rank*.jsonl), or pass --allow-fill to write "
            "the training-set label mean in their rows (they are then listed in the report).")


def submission_from_features(
    model_dir: str | os.PathLike,
    features_dir: str | os.PathLike,
    output: str | os.PathLike,
    split: str = "test",
    *,
    data_dir: str | os.PathLike | None = None,
    test_dir: str | os.PathLike | None = None,
    device: str | None = None,
    allow_fill: bool = False,
) -> dict:
    """`emi-hf submit`: a saved model's predictions for a split of cached features -> the challenge CSV and report.

    The clips the file must hold: the data folder's test ids when ``data_dir`` is given, else the split's clips in
    the features plus the ones whose extraction failed (the folder's ``failures.rank*.jsonl``). A clip without a
    prediction (its features failed, or the model had no input for it) makes this raise `IncompleteSubmission`
    (nothing written) unless ``allow_fill``: then its row is the training-set label mean, from the model's run
    ([`recorded_label_mean`]), else the features' train split, else ``data_dir``'s ``train_split.csv``, and the
    report lists it (``filled``) with ``allow_fill`` and ``fallback_source``.
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
        raise EmiUsageError(f"{features_dir} has no {split!r} split (it has {sorted(datasets)}): extract it first, "
                            f"e.g. `emi-hf extract --data-dir DATA --splits {split} --output {features_dir}`.")
    expected = expected_test_ids(data_dir, test_dir) if data_dir is not None and split == "test" else None
    if expected is None:
        expected = sorted(set(predictions) | set(failed))
    reasons = {clip_id: "the model could not score it (no usable input for its modalities)"
               for clip_id, values in predictions.items() if not np.isfinite(values).all()}  # fmt: skip
    reasons.update(failed)
    unfilled = unpredicted_clips(predictions, expected, reasons)
    if unfilled and not allow_fill:
        raise IncompleteSubmission(_refusal(unfilled, len(expected), split, output, features_dir))
    fallback, source = _label_mean_and_source(features_dir, data_dir, model_dir) if unfilled else (None, None)
    report = write_submission(output, predictions, expected, fallback=fallback, reasons=reasons)
    report.update(model=str(model_dir), features=str(features_dir), split=split, allow_fill=allow_fill,
                  fallback_source=source)
    report_path(output).write_text(json.dumps(report, indent=2))
    return report
