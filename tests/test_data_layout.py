"""Reading Hume-Vidmimic2 and generic data folders, and the CSV error messages (file, line, what to fix)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emi_hf.configuration_emi import EMOTION_NAMES
from emi_hf.data.layout import (
    READABLE_VIDEO_EXTENSIONS,
    VIDEO_EXTENSIONS,
    ClipRecord,
    DataLayoutError,
    find_videos,
    load_generic,
    load_hume_vidmimic2,
    normalize_clip_id,
)

HEADER = "Filename," + ",".join(EMOTION_NAMES)


def _row(clip_id: str, values=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6)) -> str:
    return clip_id + "," + ",".join(str(v) for v in values)


def _hume(tmp_path: Path, train: list[str], valid: list[str], test: list[str] | None = None,
          videos=("00000.mp4", "00001.mp4", "00002.avi", "00003.mp4"), video_sub="raw") -> Path:  # fmt: skip
    root = tmp_path / "hume"
    (root / video_sub).mkdir(parents=True)
    for name in videos:
        (root / video_sub / name).write_bytes(b"")  # only names matter here
    (root / "train_split.csv").write_text("\n".join([HEADER, *train]) + "\n")
    (root / "valid_split.csv").write_text("\n".join([HEADER, *valid]) + "\n")
    if test is not None:
        (root / "test_split.csv").write_text("\n".join(["Filename", *test]) + "\n")
    return root


@pytest.fixture
def hume(tmp_path):
    return _hume(tmp_path, [_row("0"), _row("00001.mp4", (1, 0, 0, 0, 0, 0.25))], [_row("2.0")], ["3"])


def test_normalize_clip_id():
    assert normalize_clip_id("123") == "00123"
    assert normalize_clip_id(" 00123.mp4 ") == "00123"
    assert normalize_clip_id("123.0") == "00123"
    assert normalize_clip_id("00123.MOV") == "00123"
    assert normalize_clip_id("123456") == "123456"
    assert normalize_clip_id("clip_a.webm") == "clip_a"


def test_hume_layout_reads_all_splits(hume):
    data = load_hume_vidmimic2(hume)
    assert list(data) == ["train", "validation", "test"]
    train = data["train"]
    assert [r.clip_id for r in train] == ["00000", "00001"]
    assert all(isinstance(r, ClipRecord) and r.split == "train" for r in train)
    assert train[0].path == hume / "raw" / "00000.mp4"
    assert train[1].labels.dtype == np.float32
    np.testing.assert_allclose(train[1].labels, [1, 0, 0, 0, 0, 0.25])
    assert data["validation"][0].clip_id == "00002" and data["validation"][0].path.suffix == ".avi"
    assert data["test"][0].labels is None and data["test"][0].path.name == "00003.mp4"
    assert data["test"][0].to_dict()["labels"] is None


def test_hume_test_split_optional_unless_asked(tmp_path):
    root = _hume(tmp_path, [_row("0")], [_row("1")])
    assert list(load_hume_vidmimic2(root)) == ["train", "validation"]
    assert list(load_hume_vidmimic2(root, splits=("valid",))) == ["validation"]
    with pytest.raises(DataLayoutError, match=r"no test_split.csv for the test split"):
        load_hume_vidmimic2(root, splits=("train", "test"))
    with pytest.raises(DataLayoutError, match="unknown split 'dev2'"):
        load_hume_vidmimic2(root, splits=("dev2",))


def test_hume_videos_in_nested_folder_and_relative_paths(tmp_path):
    root = _hume(tmp_path, [_row("videos/a/00000.mp4")], [_row("1")], video_sub="videos/a",
                 videos=("00000.mp4", "00001.mkv"))  # fmt: skip
    data = load_hume_vidmimic2(root)
    assert data["train"][0].path == root / "videos" / "a" / "00000.mp4"
    assert data["validation"][0].path.suffix == ".mkv"


def test_hume_csv_in_subfolder(tmp_path):
    root = _hume(tmp_path, [_row("0")], [_row("1")])
    (root / "splits").mkdir()
    for name in ("train_split.csv", "valid_split.csv"):
        (root / name).rename(root / "splits" / name)
    assert len(load_hume_vidmimic2(root)["train"]) == 1


def test_find_videos_skips_hidden_and_flags_ambiguous(tmp_path):
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "00005.mp4").write_bytes(b"")
    (tmp_path / "00001.mp4").write_bytes(b"")
    (tmp_path / "1.webm").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    found = find_videos(tmp_path)
    assert set(found) == {"00001"} and len(found["00001"]) == 2


# ------------------------------------------------------------------------------------------------ errors


def _error(tmp_path, train, valid=(_row("1"),), **kwargs) -> str:
    root = _hume(tmp_path, list(train), list(valid), **kwargs)
    with pytest.raises(DataLayoutError) as info:
        load_hume_vidmimic2(root)
    assert isinstance(info.value, ValueError)
    return str(info.value)


@pytest.mark.parametrize(
    "rows, line, expected",
    [
        ([_row("0"), _row("1", (0.1, 0.2, 0.3, 0.4, 0.5, 1.5))], 3, r"column 'Joy' is 1.5, outside \[0, 1\]"),
        ([_row("0", (0.1, -0.2, 0.3, 0.4, 0.5, 0.6))], 2, r"'Amusement' is -0.2, outside \[0, 1\]"),
        ([_row("0", (0.1, "nan", 0.3, 0.4, 0.5, 0.6))], 2, r"column 'Amusement' is 'nan'"),
        (["0,0.1,,0.3,0.4,0.5,0.6"], 2, r"column 'Amusement' is empty"),
        (["0,0.1,abc,0.3,0.4,0.5,0.6"], 2, r"column 'Amusement' holds 'abc', not a number"),
        (["0,0.1,0.2,0.3"], 2, r"the row has 4 fields but the header has 7"),
        ([_row("0"), _row("7")], 3, r"no video for id '00007'"),
        ([_row("../x.mp4")], 2, r"'../x.mp4' points outside the data folder"),
        ([_row("raw/../../x.mp4")], 2, r"points outside the data folder"),
        ([_row("/etc/passwd")], 2, r"'/etc/passwd' is an absolute path"),
        ([_row("C:\\data\\00000.mp4")], 2, r"is an absolute path"),
        ([_row("0"), _row("00000.mp4")], 3, r"duplicate id '00000' \(already at .*train_split.csv, line 2\)"),
        ([_row("raw/00009.mp4")], 2, r"no video at"),
        ([",0.1,0.2,0.3,0.4,0.5,0.6"], 2, r"the id column is empty"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path, rows, line, expected):
    message = _error(tmp_path, rows)
    assert "train_split.csv" in message
    assert f"line {line}:" in message
    assert __import__("re").search(expected, message), message
    assert message.rstrip().endswith(".") and len(message.split(". ")) >= 2  # problem, then what to fix


def test_duplicate_across_splits(tmp_path):
    message = _error(tmp_path, [_row("0"), _row("1")], valid=[_row("1")])
    assert "valid_split.csv, line 2" in message and "duplicate id '00001'" in message
    assert "one split only" in message


def test_blank_lines_count_in_line_numbers(tmp_path):
    message = _error(tmp_path, [_row("0"), "", _row("1", (2, 0, 0, 0, 0, 0))])
    assert "line 4:" in message


def test_header_problems(tmp_path):
    root = _hume(tmp_path, [_row("0")], [_row("1")])
    (root / "train_split.csv").write_text("Filename,Admiration,Amusement,Determination,Empathic pain,Excitement,Joy\n"
                                          + _row("0") + "\n")  # fmt: skip
    with pytest.raises(DataLayoutError, match=r"train_split.csv, line 1: the header has no label column "
                                              r"'Empathic Pain' \(found 'Empathic pain'"):  # fmt: skip
        load_hume_vidmimic2(root)
    (root / "train_split.csv").write_text("Name," + ",".join(EMOTION_NAMES) + "\n" + _row("0") + "\n")
    with pytest.raises(DataLayoutError, match=r"line 1: the header has no id column 'Filename'"):
        load_hume_vidmimic2(root)
    (root / "train_split.csv").write_text("Filename,Joy,Joy\n0,0.1,0.2\n")
    with pytest.raises(DataLayoutError, match=r"line 1: the header repeats column\(s\) \['Joy'\]"):
        load_hume_vidmimic2(root)
    (root / "train_split.csv").write_text("")
    with pytest.raises(DataLayoutError, match=r"train_split.csv: is empty\. Write a header line"):
        load_hume_vidmimic2(root)
    (root / "train_split.csv").write_text(HEADER + "\n")
    with pytest.raises(DataLayoutError, match=r"line 1: has a header but no rows"):
        load_hume_vidmimic2(root)
    (root / "train_split.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataLayoutError, match=r"is not UTF-8 text"):
        load_hume_vidmimic2(root)


def test_ambiguous_video_and_missing_folder(tmp_path):
    root = _hume(tmp_path, [_row("0")], [_row("1")], videos=("00000.mp4", "0.avi", "00001.mp4"))
    with pytest.raises(DataLayoutError, match=r"line 2: id '00000' matches several videos"):
        load_hume_vidmimic2(root)
    with pytest.raises(DataLayoutError, match="no such folder"):
        load_hume_vidmimic2(tmp_path / "nope")


def test_symlink_escaping_the_data_folder(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "00000.mp4").write_bytes(b"")
    root = _hume(tmp_path, [_row("link/00000.mp4")], [_row("1")])
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DataLayoutError, match=r"train_split.csv, line 2: 'link/00000.mp4' resolves to .*outside"):
        load_hume_vidmimic2(root)


def test_require_videos_false(tmp_path):
    root = _hume(tmp_path, [_row("0"), _row("9")], [_row("1")])
    data = load_hume_vidmimic2(root, require_videos=False)
    assert data["train"][1].clip_id == "00009" and data["train"][1].path is None


def test_one_split_without_labels_for_an_example_list(tmp_path):
    """What the demo reads for its examples: one split's ids and videos (any readable container), no labels."""
    root = _hume(tmp_path, [_row("0")], [_row("1"), _row("7")], videos=("00000.mp4", "00001.m4v"))
    records = load_hume_vidmimic2(root, splits=("validation",), video_dir=root / "raw", label_names=(),
                                  extensions=READABLE_VIDEO_EXTENSIONS, require_videos=False)["validation"]  # fmt: skip
    assert [(r.clip_id, r.path, r.labels) for r in records] == [("00001", root / "raw" / "00001.m4v", None),
                                                                ("00007", None, None)]  # fmt: skip
    assert set(VIDEO_EXTENSIONS) < set(READABLE_VIDEO_EXTENSIONS)


def test_test_split_labels_read_when_present(tmp_path):
    root = _hume(tmp_path, [_row("0")], [_row("1")])
    (root / "test_split.csv").write_text(HEADER + "\n" + _row("3") + "\n")
    assert load_hume_vidmimic2(root)["test"][0].labels is not None


# ------------------------------------------------------------------------------------------------ generic


def test_generic_layout_with_split_column_and_custom_labels(tmp_path):
    videos = tmp_path / "clips"
    (videos / "sub").mkdir(parents=True)
    for name in ("a.mp4", "b.mov", "sub/c.webm", "d.mp4"):
        (videos / name).write_bytes(b"")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("video,valence,arousal,split\na.mp4,0.5,0.1,train\nb,0.2,0.9,valid\nsub/c.webm,,,test\n"
                        "d,0.3,0.3,dev\n")  # fmt: skip
    data = load_generic(videos, csv_path, label_names=("valence", "arousal"), split_column="split")
    assert {k: [r.clip_id for r in v] for k, v in data.items()} == {
        "train": ["a"], "validation": ["b", "d"], "test": ["c"]}  # fmt: skip
    np.testing.assert_allclose(data["validation"][0].labels, [0.2, 0.9])
    assert data["test"][0].labels is None and data["test"][0].path == videos / "sub" / "c.webm"


def test_generic_defaults_and_errors(tmp_path):
    videos = tmp_path / "v"
    videos.mkdir()
    (videos / "00001.mp4").write_bytes(b"")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(HEADER + "\n" + _row("1") + "\n")
    data = load_generic(videos, csv_path)
    assert list(data) == ["train"] and data["train"][0].clip_id == "00001"

    csv_path.write_text("Filename,Joy,split\n1,0.5,holdout\n")
    with pytest.raises(DataLayoutError, match=r"labels.csv, line 2: unknown split 'holdout' in column 'split'"):
        load_generic(videos, csv_path, label_names=("Joy",), split_column="split")
    csv_path.write_text("Filename,Joy\n1,0.5\n")
    with pytest.raises(DataLayoutError, match=r"labels.csv, line 1: the header has no label column 'Admiration'"):
        load_generic(videos, csv_path)
    with pytest.raises(DataLayoutError, match=r"line 1: the header has no split column 'fold'"):
        load_generic(videos, csv_path, label_names=("Joy",), split_column="fold")
    csv_path.write_text("Filename,Joy\n1,0.5\n00001,0.5\n")
    with pytest.raises(DataLayoutError, match=r"labels.csv, line 3: duplicate id '00001'"):
        load_generic(videos, csv_path, label_names=("Joy",))
    csv_path.write_text("Filename,Joy\n1,\n")
    with pytest.raises(DataLayoutError, match=r"line 2: column 'Joy' is empty"):
        load_generic(videos, csv_path, label_names=("Joy",))
    # the test split may go without label columns at all
    csv_path.write_text("Filename\n1\n")
    assert load_generic(videos, csv_path, default_split="test")["test"][0].labels is None
