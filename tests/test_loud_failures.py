"""Failures are loud (issue 20): `emi-hf extract`'s exit codes and per-reason counts on corrupt test splits, `emi-hf
submit` refusing to fill rows without --allow-fill (and saying so with it, the fallback taken from the model's own
run), `verify-submission` flagging constant files, known errors as one line against unexpected ones with their
traceback, stderr of other threads kept while native logs are silenced, training leaving the progress-bar settings as
it found them, and the --batch-size message.

The corrupt clips are random bytes and an empty file, named like test clips, in a test folder given with --test-dir
next to a small synthetic data set; the backbones are a random ResNet18 and a tiny wav2vec2 folder.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from helpers import REPO_ROOT, TINY_WAV2VEC2

from emi_hf.cli import main as cli
from emi_hf.configuration_emi import EMOTION_NAMES
from emi_hf.errors import EmiUsageError, ExitCode, IncompleteSubmission, is_known_error

TINY_FLAGS = ["--hidden-size", "32", "--num-heads", "2", "--num-layers", "1", "--tcn-dilations", "1,2",
              "--batch-size", "4", "--epochs", "1", "--report-to", "none", "--seed", "0", "--no-base-model"]
UNREADABLE = "EmiInputError: could not be opened as a media file"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A synthetic data folder, a tiny speech encoder, and a visual model trained on random features (its run
    records the training-set label mean)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from emi_hf.data.random_features import make_feature_dataset
    from emi_hf.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("loud")
    generate_synthetic_dataset(root / "data", num_train=2, num_valid=1, duration=1.0, fps=10, size=160, seed=3)
    Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC2)).save_pretrained(root / "speech")
    make_feature_dataset(root / "train_features", num_train=8, num_valid=4)
    assert cli(["train", "--features", str(root / "train_features"), "--modality", "visual", "--output-dir",
                str(root / "run"), *TINY_FLAGS]) == 0
    return root


def _test_folder(root, name: str, good: int = 0, random_bytes: int = 0, empty: int = 0):
    """A test-video folder: `good` synthetic clips, `random_bytes` unreadable files, `empty` zero-byte files."""
    folder = root / name
    folder.mkdir()
    videos = sorted((root / "data" / "videos").glob("*.mp4"))
    rng = np.random.default_rng(0)
    clip = 90000
    for kind, count in (("good", good), ("random", random_bytes), ("empty", empty)):
        for i in range(count):
            target = folder / f"{clip}.mp4"
            if kind == "good":
                shutil.copy(videos[i], target)
            else:
                target.write_bytes(rng.bytes(4000) if kind == "random" else b"")
            clip += 1
    return folder


def _extract(root, test_dir, output) -> int:
    return cli(["extract", "--data-dir", str(root / "data"), "--splits", "test", "--test-dir", str(test_dir),
                "--output", str(output), "--visual-backbone", "random", "--speech-encoder", str(root / "speech"),
                "--face-detector", "mediapipe", "--fps", "5", "--no-progress"])


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))[1:]


def _recorded_mean(run) -> list[float]:
    return json.loads((run / "config.json").read_text())["training_label_mean"]


def test_an_all_corrupt_test_split_fails_at_every_step(workspace, capsys):
    root = workspace
    features, submission = root / "all_corrupt", root / "all_corrupt.csv"
    assert _extract(root, _test_folder(root, "corrupt_videos", random_bytes=3), features) == ExitCode.ALL_FAILED == 4
    err = capsys.readouterr().err
    assert "3 of 3 clip(s) failed (none extracted; exit code 4)" in err and f"3  {UNREADABLE}" in err
    report = json.loads((features / "extraction_report.json").read_text())
    assert report["failure_reasons"] == {UNREADABLE: 3}
    assert all(entry["reason"] == UNREADABLE for entry in report["failures"])

    # submit refuses to fill the rows: one line saying why and what to pass, nothing written
    with pytest.raises(SystemExit) as stopped:
        cli(["submit", "--model", str(root / "run"), "--features", str(features), "--output", str(submission)])
    assert stopped.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"3 of 3 test clip(s) have no prediction (3 features failed: {UNREADABLE}" in err
    assert "--allow-fill" in err and "Traceback" not in err and not submission.exists()

    # --allow-fill: written, said on stderr and in the report, the fallback from the model's own run (the features
    # folder holds only the test split and no --data-dir is given); three identical rows are an invalid file
    code = cli(["submit", "--model", str(root / "run"), "--features", str(features), "--output", str(submission),
                "--allow-fill"])
    err = capsys.readouterr().err
    assert code == ExitCode.INVALID == 5
    assert "warning: --allow-fill: 3 of 3 rows hold the training-set label mean recorded by the model's run" in err
    assert "all 3 rows have the same values" in err
    saved = json.loads((root / "all_corrupt.report.json").read_text())
    assert saved["allow_fill"] is True and saved["num_filled_with_fallback"] == 3
    assert saved["fallback_source"].startswith("training-set label mean recorded by the model's run")
    mean = _recorded_mean(root / "run")
    assert all(np.allclose([float(v) for v in row[1:]], np.clip(mean, 0, 1), atol=1e-6) for row in _rows(submission))

    # the verifier does not call it valid
    code = cli(["verify-submission", str(submission), "--data-dir", str(root / "data"), "--test-dir",
                str(root / "corrupt_videos")])
    out = capsys.readouterr().out
    assert code == ExitCode.INVALID and "all 3 rows have the same values" in out and "valid" not in out


def test_a_partly_corrupt_test_split_extracts_the_rest_and_counts_the_reasons(workspace, capsys):
    root = workspace
    videos = _test_folder(root, "partly_corrupt_videos", good=1, random_bytes=2, empty=1)
    features = root / "partly_corrupt"
    assert _extract(root, videos, features) == ExitCode.PARTIAL == 3
    err = capsys.readouterr().err
    assert "3 of 4 clip(s) failed (the others extracted; exit code 3)" in err
    report = json.loads((features / "extraction_report.json").read_text())
    assert report["failure_reasons"] == {UNREADABLE: 2, "EmiInputError: is empty": 1}
    assert report["splits"]["test"] == {"requested": 4, "extracted": 1, "failed": 3}

    submission = root / "partly.csv"
    code = cli(["submit", "--model", str(root / "run"), "--features", str(features), "--output", str(submission),
                "--allow-fill", "--data-dir", str(root / "data"), "--test-dir", str(videos)])
    err = capsys.readouterr().err
    assert code == ExitCode.OK, err
    assert "3 of 4 rows hold the training-set label mean" in err
    assert "2 features failed: " + UNREADABLE in err and "1 features failed: EmiInputError: is empty" in err
    assert "warning: " in err and "3 rows share their six values with another row" in err
    assert len(_rows(submission)) == 4


def test_submit_on_a_test_only_folder_takes_the_training_mean_from_the_models_run(workspace, tmp_path):
    from emi_hf.data.random_features import make_feature_dataset
    from emi_hf.submission import submission_from_features

    root = workspace
    features = make_feature_dataset(tmp_path / "test_only", num_train=0, num_valid=0, num_test=4)
    (features / "failures.rank0.jsonl").write_text(json.dumps(
        {"clip_id": "99990", "path": "x.mp4", "split": "test", "error": "EmiInputError: 'x.mp4': broken (3 packets)"})
        + "\n")  # fmt: skip
    with pytest.raises(IncompleteSubmission, match=r"1 of 5 test clip\(s\) have no prediction \(1 features failed: "
                                                   r"EmiInputError: broken; e\.g\. 99990\)"):
        submission_from_features(root / "run", features, tmp_path / "refused.csv")
    report = submission_from_features(root / "run", features, tmp_path / "s.csv", allow_fill=True)
    assert report["num_predicted"] == 4 and report["filled"] == [{"clip_id": "99990",
                                                                   "reason": "features failed: EmiInputError: broken"}]
    assert np.allclose(report["fallback"], _recorded_mean(root / "run"), atol=1e-6)
    # the recorded mean is the mean of the labels the model was trained on
    from emi_hf.data.store import load_features

    labels = np.asarray(load_features(root / "train_features")["train"]["labels"])
    assert np.allclose(_recorded_mean(root / "run"), labels.mean(axis=0), atol=1e-6)

    # a run of an earlier version records no mean: --data-dir is needed, and then its train_split.csv gives it
    old_run = tmp_path / "old_run"
    shutil.copytree(root / "run", old_run)
    for name, block in (("config.json", None), ("results.json", "training")):
        saved = json.loads((old_run / name).read_text())
        (saved[block] if block else saved).pop("training_label_mean")
        (old_run / name).write_text(json.dumps(saved))
    with pytest.raises(EmiUsageError, match="records no training-set label mean .* pass --data-dir"):
        submission_from_features(old_run, features, tmp_path / "old.csv", allow_fill=True)
    data = tmp_path / "data"  # the data folder: its train_split.csv, and the test ids as placeholder videos
    (data / "test_data" / "raw").mkdir(parents=True)
    shutil.copy(root / "data" / "train_split.csv", data / "train_split.csv")
    shutil.copy(root / "data" / "valid_split.csv", data / "valid_split.csv")
    for clip_id in [*load_features(features)["test"]["clip_id"], "99990"]:
        (data / "test_data" / "raw" / f"{clip_id}.mp4").write_bytes(b"")
    report = submission_from_features(old_run, features, tmp_path / "old.csv", allow_fill=True, data_dir=data)
    assert report["fallback_source"].endswith("train_split.csv") and report["num_filled_with_fallback"] == 1
    with open(data / "train_split.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    expected = [np.mean([float(row[name]) for row in table]) for name in EMOTION_NAMES]
    assert np.allclose(report["fallback"], expected, atol=1e-6)


def test_verify_submission_flags_constant_files_and_warns_on_repeated_rows(tmp_path, capsys):
    from emi_hf.submission import SUBMISSION_HEADER

    ids = ["12660", "12661", "12662", "12663"]
    data = tmp_path / "data" / "test_data" / "raw"
    data.mkdir(parents=True)
    for clip_id in ids:
        (data / f"{clip_id}.mp4").write_bytes(b"")

    def write(name, rows):
        path = tmp_path / name
        with open(path, "w", newline="") as handle:
            csv.writer(handle).writerows([SUBMISSION_HEADER, *([i, *row] for i, row in zip(ids, rows))])
        return path

    def verify(path):
        code = cli(["verify-submission", str(path), "--data-dir", str(tmp_path / "data")])
        return code, capsys.readouterr().out

    constant = write("constant.csv", [["0.500000", "0.4", "0.3", "0.2", "0.1", "0"]] * 3 +
                     [["0.5", "0.40", "0.30", "0.2", "0.1", "0.0"]])  # the same numbers, written otherwise
    code, out = verify(constant)
    assert code == ExitCode.INVALID and "all 4 rows have the same values (0.5, 0.4, 0.3, 0.2, 0.1, 0)" in out
    assert out.strip().endswith("1 problem(s)")
    varied = [[f"{0.1 * k + 0.01 * j:.2f}" for j in range(6)] for k in range(4)]
    repeated = write("repeated.csv", [varied[0], varied[1], varied[0], varied[3]])
    code, out = verify(repeated)
    assert code == ExitCode.OK and out.strip().endswith("valid, 1 warning(s)")
    assert "warning: " in out and "2 rows share their six values with another row (1 group(s); the largest: 12660 " \
                                  "(line 2), 12662 (line 4))" in out
    flat_joy = write("flat_joy.csv", [[*row[:5], "0.000000"] for row in varied])
    code, out = verify(flat_joy)
    assert code == ExitCode.OK and f"warning: {flat_joy}: Joy is 0 in every row: its Pearson correlation is " \
                                   "undefined" in out

    from emi_hf.submission import check_submission, verify_submission

    check = check_submission(repeated, expected_ids=ids)
    assert check.valid and len(check.warnings) == 1 and verify_submission(repeated, expected_ids=ids) == []
    assert len(verify_submission(constant, expected_ids=ids)) == 1


def test_a_known_error_is_one_line_and_an_unexpected_one_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    import emi_hf.submission

    (tmp_path / "s.csv").write_text("Filename\n")
    # known errors, in every command (train and cv included): one line, exit code 2
    for command in (["verify-submission", str(tmp_path / "s.csv"), "--data-dir", str(tmp_path / "no_data")],
                    ["train", "--features", str(tmp_path / "no_features"), "--output-dir", str(tmp_path / "run")],
                    ["cv", "--features", str(tmp_path / "no_features"), "--output-dir", str(tmp_path / "cv")],
                    ["predict", str(tmp_path / "clip.mp4"), "--model", str(tmp_path / "no_model")]):
        with pytest.raises(SystemExit) as stopped:
            cli(command)
        err = capsys.readouterr().err
        assert stopped.value.code == ExitCode.USAGE, command
        assert err.startswith("emi-hf: error: ") and err.count("\n") == 1 and "Traceback" not in err, err

    # a bug is not turned into one line: the exception goes through, with its traceback
    def bug(*args, **kwargs):
        raise ValueError("an unforeseen bug")

    monkeypatch.setattr(emi_hf.submission, "check_submission", bug)
    with pytest.raises(ValueError, match="an unforeseen bug"):
        cli(["verify-submission", str(tmp_path / "s.csv"), "--data-dir", str(tmp_path)])
    assert not is_known_error(ValueError("x")) and not is_known_error(FileNotFoundError(2, "x"))
    assert is_known_error(PermissionError(13, "denied")) and is_known_error(EmiUsageError("x"))

    # as a command: the traceback on stderr and exit code 1
    script = textwrap.dedent(f"""
        import sys
        import emi_hf.submission
        def bug(*args, **kwargs):
            raise ValueError("an unforeseen bug")
        emi_hf.submission.check_submission = bug
        from emi_hf.cli import main
        sys.exit(main(["verify-submission", {str(tmp_path / 's.csv')!r}, "--data-dir", {str(tmp_path)!r}]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=REPO_ROOT)
    assert result.returncode == ExitCode.UNEXPECTED == 1
    assert "Traceback (most recent call last)" in result.stderr and "ValueError: an unforeseen bug" in result.stderr
    assert "emi-hf: error" not in result.stderr


def test_silencing_native_logs_keeps_what_other_threads_write(capfd):
    import os

    from emi_hf.media.logs import native_stderr_silenced

    entered, written = threading.Event(), threading.Event()

    def other_thread():
        entered.wait(timeout=60)
        try:
            raise RuntimeError("a worker thread's error")
        except RuntimeError:
            import traceback

            traceback.print_exc()  # to sys.stderr, as threading's excepthook does
        print("another thread's progress", file=sys.stderr, flush=True)
        os.write(2, b"another thread's native line\n")
        written.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with native_stderr_silenced():
        os.write(2, b"W0000 00:00:1712345678.123456   12345 inference_feedback_manager.cc:114] Feedback manager "
                    b"requires a model with a single signature inference.\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"E0000 00:00:1712345678.223456   12345 graph.cc:1] a native error\n")
        entered.set()
        assert written.wait(timeout=60)
    worker.join()
    err = capfd.readouterr().err
    assert "RuntimeError: a worker thread's error" in err and "Traceback (most recent call last)" in err
    assert "another thread's progress" in err and "another thread's native line" in err
    assert "a native error" in err, "native error lines are kept"
    assert "Feedback manager" not in err and "XNNPACK" not in err, "native info and warning lines are dropped"


def test_training_leaves_the_progress_bar_settings_as_it_found_them(workspace, tmp_path):
    import importlib

    import datasets.utils.logging as datasets_logging
    from transformers.utils import logging as transformers_logging

    from emi_hf.training import train

    hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")
    transformers_logging.enable_progress_bar()
    datasets_logging.disable_progress_bar()
    hub_tqdm.progress_bar_states.clear()
    hub_tqdm.progress_bar_states.update({"_global": True, "huggingface_hub.http_get": False})
    before = (transformers_logging.is_progress_bar_enabled(), datasets_logging.is_progress_bar_enabled(),
              dict(hub_tqdm.progress_bar_states))
    try:
        train({"features": str(workspace / "train_features"), "modality": "visual", "output_dir": str(tmp_path / "r"),
               "hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1, "tcn_dilations": [1, 2],
               "batch_size": 4, "epochs": 1, "report_to": "none", "no_base_model": True})
        after = (transformers_logging.is_progress_bar_enabled(), datasets_logging.is_progress_bar_enabled(),
                 dict(hub_tqdm.progress_bar_states))
    finally:
        hub_tqdm.progress_bar_states.clear()
        hub_tqdm.progress_bar_states["_global"] = True
    assert after == before


def test_too_few_clips_for_the_batch_size_says_what_to_pass(workspace, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli(["train", "--features", str(workspace / "train_features"), "--modality", "visual", "--output-dir",
             str(tmp_path / "run"), *TINY_FLAGS, "--batch-size", "64"])
    assert stopped.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "The train split has 8 clip(s), fewer than --batch-size 64" in err and "Pass --batch-size 8 or less" in err
    from emi_hf.training.data import check_batch_size

    with pytest.raises(EmiUsageError, match=r"Pass --batch-size 6 or less \(a multiple of the 3 processes\)"):
        check_batch_size(8, 9, num_processes=3)
    with pytest.raises(EmiUsageError, match="fewer than the 4 processes"):
        check_batch_size(3, 8, num_processes=4)
    check_batch_size(8, 8, num_processes=2)
