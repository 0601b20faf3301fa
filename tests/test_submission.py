"""The challenge submission file: writing (clipping, fallback rows and their report), verify-submission's checks and
exit code, and `emi-hf predict --output`."""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from emi_hf.cli import main as cli
from emi_hf.configuration_emi import EMOTION_NAMES
from emi_hf.errors import ExitCode
from emi_hf.submission import (
    SUBMISSION_HEADER,
    format_clip_id,
    report_path,
    verify_submission,
    write_prediction_table,
    write_submission,
)

TEST_IDS = ["12660", "12661", "12662", "12663"]


@pytest.fixture
def data_dir(tmp_path):
    """A data folder whose test split is a test_data/raw/ folder of (empty placeholder) videos, without a CSV."""
    root = tmp_path / "data"
    (root / "test_data" / "raw").mkdir(parents=True)
    for clip_id in TEST_IDS:
        (root / "test_data" / "raw" / f"{clip_id}.mp4").write_bytes(b"")
    return root


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def _write(path, rows, header=SUBMISSION_HEADER):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_round_trip_through_verify_submission(data_dir, tmp_path, capsys):
    predictions = {"12660": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "12661": [-0.2, 1.3, 0.5, 0.5, 0.5, 0.5],
                   "12662": [math.nan] * 6}  # 12663: no features at all
    fallback = [0.3, 0.31, 0.32, 0.33, 0.34, 0.35]
    output = tmp_path / "out" / "submission.csv"
    report = write_submission(output, predictions, TEST_IDS, fallback=fallback,
                              reasons={"12663": "features failed: EmiInputError: unreadable"})
    rows = _rows(output)
    assert rows[0] == list(SUBMISSION_HEADER)
    assert [r[0] for r in rows[1:]] == TEST_IDS
    assert [float(v) for v in rows[2][1:]] == [0.0, 1.0, 0.5, 0.5, 0.5, 0.5], "values are clipped to [0, 1]"
    assert [float(v) for v in rows[3][1:]] == fallback and [float(v) for v in rows[4][1:]] == fallback
    assert report["num_clips"] == 4 and report["num_filled_with_fallback"] == 2 and report["values_clipped_to_0_1"] == 2
    saved = json.loads(report_path(output).read_text())
    assert saved["filled"] == [{"clip_id": "12662", "reason": "no prediction"},
                               {"clip_id": "12663", "reason": "features failed: EmiInputError: unreadable"}]
    assert verify_submission(output, data_dir) == []
    assert cli(["verify-submission", str(output), "--data-dir", str(data_dir)]) == 0
    assert "valid" in capsys.readouterr().out


def test_missing_extra_and_duplicated_ids_are_rejected(data_dir, tmp_path, capsys):
    def row(v):
        return [f"{v + 0.01 * k:.2f}" for k in range(6)]

    bad = _write(tmp_path / "bad.csv", [["12660", *row(0.1)], ["12661", *row(0.2)], ["12661", *row(0.3)],
                                        ["99999", *row(0.4)]])
    problems = verify_submission(bad, data_dir)
    text = "\n".join(problems)
    assert "1 duplicated id(s): 12661 (lines 3 and 4)" in text
    assert "2 missing id(s): 12662, 12663" in text
    assert "1 extra (not a test clip) id(s): 99999" in text
    assert all(p.startswith(str(bad)) for p in problems)
    assert cli(["verify-submission", str(bad), "--data-dir", str(data_dir)]) == ExitCode.INVALID == 5
    out = capsys.readouterr().out
    assert "duplicated" in out and "missing" in out and "extra" in out and "3 problem(s)" in out


def test_header_ranges_nan_and_malformed_ids_are_reported(data_dir, tmp_path):
    header = ("Filename", *EMOTION_NAMES[:-1], "joy")
    rows = [["12660", "0.1", "0.2", "nan", "0.4", "0.5", "0.6"], ["12661", "1.5", "0.2", "0.3", "-0.1", "0.5", "x"],
            ["12662", "0.1"], ["2663", *["0.1"] * 6]]
    problems = "\n".join(verify_submission(_write(tmp_path / "bad.csv", rows, header), data_dir))
    assert "line 1: the header is" in problems
    assert "line 2: Determination is NaN" in problems
    assert "line 3: Admiration is 1.5, outside [0, 1]" in problems and "line 3: Empathic Pain is -0.1, outside" in problems
    assert "line 3: Joy is 'x', not a number" in problems
    assert "line 4: 2 fields" in problems
    assert "malformed (not a 5-digit number) id(s): '2663' (line 5)" in problems
    assert verify_submission(tmp_path / "absent.csv", data_dir) == [f"{tmp_path / 'absent.csv'}: no such file"]
    (tmp_path / "empty.csv").write_text("")
    assert "the file is empty" in verify_submission(tmp_path / "empty.csv", data_dir)[0]


def test_write_submission_refuses_bad_fallbacks_and_labels(tmp_path):
    with pytest.raises(ValueError, match="training-set label mean"):
        write_submission(tmp_path / "s.csv", {"1": [0.5] * 6}, fallback=[math.nan] * 6)
    with pytest.raises(ValueError, match="six EMI emotions"):
        write_submission(tmp_path / "s.csv", {"1": [0.5] * 2}, fallback=[0.5] * 2, label_names=["a", "b"])
    report = write_submission(tmp_path / "s.csv", {"7": [0.5] * 6}, fallback=[0.2] * 6)
    assert _rows(tmp_path / "s.csv")[1][0] == "00007" and report["num_filled_with_fallback"] == 0


def test_prediction_table_for_raw_videos(tmp_path):
    names = list(EMOTION_NAMES)
    predictions = [SimpleNamespace(path="/videos/00012.mp4", intensities=dict(zip(names, np.linspace(0, 1.2, 6)))),
                   SimpleNamespace(path="/videos/clip.mp4", intensities=dict.fromkeys(names, math.nan))]
    rows = _rows(write_prediction_table(tmp_path / "results.csv", predictions))
    assert rows[0] == list(SUBMISSION_HEADER) and rows[1][0] == "00012" and rows[1][-1] == "1.000000"
    assert rows[2] == ["clip", "", "", "", "", "", ""]
    table = json.loads(write_prediction_table(tmp_path / "results.json", predictions).read_text())
    assert table[0]["Filename"] == "00012" and table[0]["Joy"] == 1.0 and table[1]["Joy"] is None
    with pytest.raises(ValueError, match=r"\.csv or a \.json"):
        write_prediction_table(tmp_path / "results.txt", predictions)


def test_submit_fills_failed_clips_with_the_training_mean(tmp_path):
    from helpers import tiny_visual_config

    from emi_hf import EmiVisualModel
    from emi_hf.data.random_features import make_feature_dataset
    from emi_hf.data.store import load_feature_splits
    from emi_hf.submission import submission_from_features

    features = make_feature_dataset(tmp_path / "features", num_train=8, num_valid=4, num_test=3, no_face_fraction=0.0)
    (features / "failures.rank0.jsonl").write_text(json.dumps(
        {"clip_id": "99990", "path": "x.mp4", "split": "test", "error": "EmiInputError: broken"}) + "\n")
    datasets, metadata, _ = load_feature_splits(features)
    EmiVisualModel(tiny_visual_config(au_names=metadata["au_names"])).save_pretrained(tmp_path / "model")
    output = tmp_path / "submission.csv"
    report = submission_from_features(tmp_path / "model", features, output, allow_fill=True)
    test_ids = sorted(format_clip_id(i) for i in datasets["test"]["clip_id"])  # 5 digits at least
    assert [r[0] for r in _rows(output)[1:]] == sorted([*test_ids, "99990"])
    assert report["filled"] == [{"clip_id": "99990", "reason": "features failed: EmiInputError: broken"}]
    mean = np.asarray(datasets["train"]["labels"]).mean(axis=0)
    assert np.allclose([float(v) for v in _rows(output)[-1][1:]], mean, atol=1e-6)
    assert verify_submission(output, expected_ids=[*test_ids, "99990"]) == []
    # Every scored row is the model's own output on that clip's features (written with 6 decimals).
    import torch

    model = EmiVisualModel.from_pretrained(tmp_path / "model").eval()
    written = {r[0]: [float(v) for v in r[1:]] for r in _rows(output)[1:]}
    for row in datasets["test"].with_format("torch"):
        assert len(row["frame_mask"]) <= 512  # under evaluation's default cap: the whole clip is scored
        with torch.no_grad():
            out = model(visual_features=row["visual_features"][None], au_features=row["au_features"][None],
                        frame_mask=row["frame_mask"][None])
        expected = out.intensities[0].numpy()
        assert np.abs(np.array(written[format_clip_id(row["clip_id"])]) - expected).max() <= 5e-7 + 1e-7, row["clip_id"]
