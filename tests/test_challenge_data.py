"""The EMI challenge data as distributed: a test folder without CSV, audio/ and face_images/ side inputs, the
organisers' feature pickles (and a malicious one), and the synthetic set in the challenge layout."""

from __future__ import annotations

import collections
import csv
import io
import os
import pickle
import sys

import numpy as np
import pytest
import torch
from helpers import tiny_audio_config, tiny_visual_config

from emi_hf import EmiAudioModel, EmiProcessor, EmiVisualModel
from emi_hf.cli import main as cli
from emi_hf.configuration_emi import EMOTION_NAMES
from emi_hf.data.extraction import run_extraction
from emi_hf.data.layout import DataLayoutError, load_hume_vidmimic2
from emi_hf.data.organiser import OrganiserFeatureError, import_organiser_features, load_feature_pickle
from emi_hf.data.store import load_feature_splits
from emi_hf.media.images import load_face_images
from emi_hf.submission import verify_submission

TINY_FLAGS = ["--hidden-size", "32", "--num-heads", "2", "--num-layers", "1", "--tcn-dilations", "1,2",
              "--batch-size", "2", "--epochs", "2", "--report-to", "none", "--seed", "0"]
TRAIN, VALID, TEST = ("00000", "00001"), ("00002", "00003"), ("12660", "12661")


def _write_split(path, ids, rng):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Filename", *EMOTION_NAMES])
        for clip_id in ids:
            writer.writerow([clip_id, *(f"{x:.4f}" for x in rng.uniform(0, 1, 6))])


def _face_crops(media_dir, count: int = 12) -> np.ndarray:
    processor = EmiProcessor(face_detector="mediapipe", target_fps=10, use_cache=False)
    clip = processor.process_clip(str(media_dir / "single_face.mp4"), keep_crops=True)
    crops = clip.face_crops[clip.frame_mask > 0]
    assert len(crops) >= count
    return crops[:count]


@pytest.fixture(scope="module")
def hume(tmp_path_factory, media_dir):
    """A Hume-Vidmimic2-shaped folder: raw/ videos (one without an audio track, its audio in audio/), one clip given
    only as face_images/, test videos in test_data/raw/ without a test CSV."""
    import cv2

    root = tmp_path_factory.mktemp("hume")
    for folder in ("raw", "audio", "test_data/raw"):
        (root / folder).mkdir(parents=True)
    os.symlink(media_dir / "single_face.mp4", root / "raw" / "00000.mp4")
    os.symlink(media_dir / "multi_face_5_frames.mp4", root / "raw" / "00001.mp4")  # no audio track
    os.symlink(media_dir / "debate_5s_16k.wav", root / "audio" / "00001.wav")
    os.symlink(media_dir / "debate_5s.mp4", root / "raw" / "00003.mp4")
    os.symlink(media_dir / "single_face.mp4", root / "test_data" / "raw" / "12660.mp4")
    os.symlink(media_dir / "debate_5s.mp4", root / "test_data" / "raw" / "12661.mp4")
    faces = root / "face_images" / "00002"
    faces.mkdir(parents=True)
    for n, crop in enumerate(_face_crops(media_dir)):
        if n != 5:  # a gap in the numbering: frame 5 has no saved face
            cv2.imwrite(str(faces / f"{n}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    rng = np.random.default_rng(0)
    _write_split(root / "train_split.csv", TRAIN, rng)
    _write_split(root / "valid_split.csv", VALID, rng)
    return root


def test_test_split_comes_from_the_test_folder(hume, tmp_path):
    records = load_hume_vidmimic2(hume)  # default: test included when there is a test folder
    assert [r.clip_id for r in records["test"]] == list(TEST)
    assert all(r.labels is None and r.path.parent == hume / "test_data" / "raw" for r in records["test"])
    assert load_hume_vidmimic2(hume, splits=("test",), test_dir=hume / "test_data" / "raw")["test"][1].clip_id == "12661"
    with pytest.raises(DataLayoutError, match="no such test folder"):
        load_hume_vidmimic2(hume, splits=("test",), test_dir=tmp_path / "nowhere")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "train_split.csv").write_text((hume / "train_split.csv").read_text())
    with pytest.raises(DataLayoutError, match="test_data/ or test/ folder"):
        load_hume_vidmimic2(bare, splits=("test",), require_videos=False)


def test_side_inputs_are_attached_to_the_records(hume):
    records = load_hume_vidmimic2(hume, splits=("train", "validation"))
    by_id = {r.clip_id: r for split in records.values() for r in split}
    assert by_id["00001"].audio_path == hume / "audio" / "00001.wav"
    assert by_id["00002"].path is None and by_id["00002"].face_dir == hume / "face_images" / "00002"
    assert by_id["00000"].audio_path is None and by_id["00000"].face_dir is None


def test_face_images_follow_their_numbering(hume):
    frames, numbers = load_face_images(hume / "face_images" / "00002", 112)
    assert frames.shape == (12, 112, 112, 3) and list(numbers) == list(range(12))
    assert np.array_equal(frames[5], frames[4]), "the missing frame 5 repeats frame 4"
    assert not np.array_equal(frames[6], frames[4])


def test_extraction_uses_audio_files_and_face_images(hume, tmp_path):
    records = load_hume_vidmimic2(hume)
    processor = EmiProcessor(face_detector="mediapipe", target_fps=5, use_cache=False)
    visual, audio = EmiVisualModel(tiny_visual_config()).eval(), EmiAudioModel(tiny_audio_config()).eval()
    report = run_extraction(records, tmp_path / "features", processor, visual, audio, progress=False,
                            face_image_fps=10.0)
    assert report["failures"] == [] and report["splits"]["test"]["extracted"] == 2
    datasets, _, _ = load_feature_splits(tmp_path / "features")
    rows = {r["clip_id"]: r for split in datasets.values() for r in split.with_format("numpy")}
    assert set(rows) == set(TRAIN + VALID + TEST)
    assert rows["00001"]["audio_present"], "the audio/ file stands in for the missing audio track"
    face_only = rows["00002"]
    assert face_only["frame_mask"].all() and not face_only["audio_present"]
    # 12 numbered frames at 10 fps = 1.2 s, resampled to the processor's 5 fps
    assert np.allclose(face_only["frame_timestamps"], np.arange(6) / 5.0)
    assert np.isnan(rows["12660"]["labels"]).all()

    # --face-source images: a clip that has a video and face images uses the images
    (hume / "face_images" / "00000").symlink_to(hume / "face_images" / "00002", target_is_directory=True)
    try:
        records = load_hume_vidmimic2(hume, splits=("train",))
        report = run_extraction(records, tmp_path / "images", processor, visual, audio, progress=False,
                                face_source="images", face_image_fps=10.0)
    finally:
        (hume / "face_images" / "00000").unlink()
    rows = {r["clip_id"]: r for r in load_feature_splits(tmp_path / "images")[0]["train"].with_format("numpy")}
    assert np.allclose(rows["00000"]["visual_features"], face_only["visual_features"])
    assert rows["00000"]["audio_present"], "the video's own audio track is kept"


# ----------------------------------------------------------------------------------------- organisers' pickles


def _organiser_pickles(root):
    rng = np.random.default_rng(1)
    vit, w2v = root / "vit", root / "wav2vec2"
    vit.mkdir()
    w2v.mkdir()
    visual = {i: rng.normal(size=(38 + k, 384)).astype(np.float32) for k, i in enumerate(TRAIN + VALID + TEST)}
    acoustic = {i: rng.normal(size=(294 - k, 768)).astype(np.float32) for k, i in enumerate(TRAIN + VALID + TEST)}
    visual["00000"][3] = 0.0  # a frame without a face: masked
    for clip_id in ("00000", "00002", "12660"):
        (vit / f"{clip_id}.pkl").write_bytes(pickle.dumps(visual[clip_id], protocol=4))  # numpy
    (vit / "00001.pkl").write_bytes(pickle.dumps(torch.from_numpy(visual["00001"])))  # a torch tensor, pickled
    torch.save(torch.from_numpy(acoustic["00000"]), w2v / "00000.pkl")  # torch.save
    (w2v / "00001.pkl").write_bytes(pickle.dumps({"features": acoustic["00001"]}, protocol=2))
    for clip_id in ("00002", "12660", "12661"):
        (w2v / f"{int(clip_id)}.pkl").write_bytes(pickle.dumps([row for row in acoustic[clip_id]], protocol=5))
    return vit, w2v, visual, acoustic  # 00003: no file at all; 12661: audio only


def test_import_organiser_features_and_train_without_aus(hume, tmp_path, capsys):
    vit, w2v, visual, acoustic = _organiser_pickles(tmp_path)
    features = tmp_path / "features"
    assert cli(["import-features", "--data-dir", str(hume), "--visual", str(vit), "--audio", str(w2v),
                "--output", str(features)]) == 3  # 00003 has no file: some clips failed (ExitCode.PARTIAL)
    assert "1 no visual and no audio features file for this clip" in capsys.readouterr().err.replace("  ", " ")
    datasets, metadata, _ = load_feature_splits(features)
    assert metadata["au_names"] == [] and metadata["visual_feature_dim"] == 384
    assert metadata["splits"]["validation"] == {"requested": 2, "extracted": 1, "failed": 1}
    assert (features / "failures.rank0.jsonl").read_text().count('"00003"') == 1
    rows = {r["clip_id"]: r for split in datasets.values() for r in split.with_format("numpy")}
    assert np.allclose(rows["00001"]["visual_features"], visual["00001"])
    assert np.allclose(rows["00000"]["audio_features"], acoustic["00000"])
    assert np.allclose(rows["12661"]["audio_features"], acoustic["12661"])
    assert rows["00000"]["au_features"].shape == (38, 0)
    assert rows["00000"]["frame_mask"].sum() == 37 and rows["12661"]["frame_mask"].sum() == 0
    with open(hume / "train_split.csv") as handle:
        first = next(r for r in csv.DictReader(handle) if r["Filename"] == "00000")
    assert np.allclose(rows["00000"]["labels"], [float(first[n]) for n in EMOTION_NAMES], atol=1e-6)

    runs = tmp_path / "runs"
    for modality in ("visual", "audio"):  # the organisers' features have no backbone: features-only models
        assert cli(["train", "--features", str(features), "--modality", modality, "--output-dir",
                    str(runs / modality), "--no-base-model", *TINY_FLAGS]) == 0
    assert cli(["train", "--features", str(features), "--modality", "fusion", "--output-dir", str(runs / "fusion"),
                "--visual-model", str(runs / "visual"), "--audio-model", str(runs / "audio"),
                "--report-to", "none"]) == 0
    assert EmiVisualModel.from_pretrained(runs / "visual").config.num_aus == 0

    submission = tmp_path / "submission.csv"
    with pytest.raises(SystemExit):  # a clip without a prediction: refused unless --allow-fill
        cli(["submit", "--model", str(runs / "visual"), "--features", str(features), "--output", str(submission),
             "--data-dir", str(hume)])
    assert "--allow-fill" in capsys.readouterr().err and not submission.exists()
    assert cli(["submit", "--model", str(runs / "visual"), "--features", str(features), "--output", str(submission),
                "--data-dir", str(hume), "--allow-fill"]) == 0
    assert verify_submission(submission, hume) == []
    import json

    report = json.loads((tmp_path / "submission.report.json").read_text())
    # the visual model cannot score 12661 (no visual features): training mean, listed with the reason
    assert [f["clip_id"] for f in report["filled"]] == ["12661"] and "could not score" in report["filled"][0]["reason"]
    assert cli(["submit", "--model", str(runs / "fusion"), "--features", str(features), "--output",
                str(tmp_path / "fused.csv"), "--data-dir", str(hume)]) == 0
    assert json.loads((tmp_path / "fused.report.json").read_text())["num_filled_with_fallback"] == 0


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({str(self.target)!r}, 'w').write('pwned')",))


def test_a_malicious_pickle_is_refused_and_nothing_runs(hume, tmp_path):
    target = tmp_path / "created_by_the_pickle"
    evil = tmp_path / "vit" / "00000.pkl"
    evil.parent.mkdir()
    evil.write_bytes(pickle.dumps({"features": np.zeros((2, 384), np.float32), "x": _Payload(target)}))
    with pytest.raises(OrganiserFeatureError, match=r"00000\.pkl.*refused.*builtins\.exec"):
        load_feature_pickle(evil)
    assert not target.exists()
    with pytest.raises(OrganiserFeatureError, match="00000.pkl"):
        import_organiser_features(hume, tmp_path / "features", visual_dir=evil.parent)
    assert not target.exists()
    # a torch.save file whose payload is code: torch.load(weights_only=True) refuses it
    buffer = io.BytesIO()
    torch.save({"x": _Payload(target)}, buffer)
    (tmp_path / "evil.pt").write_bytes(buffer.getvalue())
    with pytest.raises(OrganiserFeatureError, match="evil.pt"):
        load_feature_pickle(tmp_path / "evil.pt")
    assert not target.exists()


class _CallableFromReduce:
    """A callable that pickles as a reduce (``builtins.eval("exec")``): the outer reduce's callable is built by an
    inner one."""

    def __call__(self, *args):
        return exec(*args)

    def __reduce__(self):
        return (eval, ("exec",))


class _Outer:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (_CallableFromReduce(), (f"open({str(self.target)!r}, 'w').write('pwned')",))


class _StorageHoldingPickle:
    """Pickles as torch's storage rebuild (allowed) whose bytes are a torch.save file of code."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        buffer = io.BytesIO()
        torch.save({"x": _Payload(self.target)}, buffer)
        return (torch.storage._load_from_bytes, (buffer.getvalue(),))


def _hostile_pickles(target) -> dict[str, bytes]:
    """Pickles that run code (writing `target`) when loaded by pickle.load, each by another route."""
    code = f"open({str(target)!r}, 'w').write('pwned')".encode()
    payload = _Payload(target)
    return {
        "protocol 0, GLOBAL builtins.exec": b"cbuiltins\nexec\n(V" + code + b"\ntR.",
        "protocol 0, Python 2 name __builtin__.eval": b"c__builtin__\neval\n(V" + code + b"\ntR.",
        "protocol 0, INST opcode": b"(V" + code + b"\ni__builtin__\nexec\n.",
        "protocol 0, pickle.dumps of a reduce": pickle.dumps({"features": payload}, protocol=0),
        "object array": pickle.dumps(np.array([payload, 1.0], dtype=object), protocol=4),
        "object array, protocol 0": pickle.dumps(np.array([1.0, payload], dtype=object), protocol=0),
        "object array inside a float array's dict": pickle.dumps(
            {"features": np.zeros((2, 8), np.float32), "meta": np.array([[payload]], dtype=object)}, protocol=5),
        "nested reduce, deep in containers": pickle.dumps(
            {"features": [(np.zeros(3, np.float32), {"a": [(1, payload)]})]}, protocol=2),
        "nested reduce, the callable built by a reduce": pickle.dumps({"features": _Outer(target)}, protocol=4),
        "nested reduce, an allowed callable over a refused argument": pickle.dumps(
            {"features": _OrderedDictOf(payload)}, protocol=3),
        "a tensor storage holding a pickle of code": pickle.dumps({"features": _StorageHoldingPickle(target)}),
    }


class _OrderedDictOf:
    """Pickles as collections.OrderedDict (allowed) called with an argument that is itself a reduce of code."""

    def __init__(self, inner):
        self.inner = inner

    def __reduce__(self):
        return (collections.OrderedDict, ([("x", self.inner)],))


@pytest.mark.parametrize("kind", list(_hostile_pickles("t")))
def test_hostile_pickles_are_refused_naming_the_file_and_nothing_runs(kind, tmp_path):
    target = tmp_path / "created_by_the_pickle"
    evil = tmp_path / "00000.pkl"
    evil.write_bytes(_hostile_pickles(target)[kind])
    with pytest.raises(OrganiserFeatureError, match=r"00000\.pkl: refused.*nothing in the file was run") as caught:
        load_feature_pickle(evil)
    assert not target.exists(), kind
    assert "weights_only=False" not in str(caught.value)  # never advises loading it unsafely
    pickle.loads(evil.read_bytes())  # the same bytes, loaded by plain pickle, do write the file: the payload is real
    assert target.exists(), kind


def test_a_pickle_naming_a_numpy_lookalike_module_does_not_import_it(tmp_path, monkeypatch):
    """Only numpy.dtypes' *DType classes are allowed by name pattern: a module whose name merely starts with
    "numpy" is never imported (importing runs its code)."""
    target = tmp_path / "created_on_import"
    module = f"open({str(target)!r}, 'w').write('pwned')\nclass EvilDType: pass\n"
    (tmp_path / "numpy_lookalike_mod.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    evil = tmp_path / "00000.pkl"
    evil.write_bytes(b"cnumpy_lookalike_mod\nEvilDType\n)R.")
    try:
        with pytest.raises(OrganiserFeatureError, match=r"00000\.pkl: refused.*numpy_lookalike_mod\.EvilDType"):
            load_feature_pickle(evil)
        assert not target.exists()
    finally:
        sys.modules.pop("numpy_lookalike_mod", None)


def test_a_hostile_pickle_among_good_ones_keeps_the_earlier_import(hume, tmp_path):
    """A hostile file that is not the first one read: the import stops naming it, nothing in it runs, and the
    features folder of an earlier import is left as it was."""
    vit, w2v, _, _ = _organiser_pickles(tmp_path)
    features = tmp_path / "features"
    import_organiser_features(hume, features, visual_dir=vit, audio_dir=w2v)
    before = {p.relative_to(features): p.read_bytes() for p in sorted(features.rglob("*")) if p.is_file()}
    target = tmp_path / "created_by_the_pickle"
    last = sorted(vit.iterdir())[-1]
    assert last != sorted(vit.iterdir())[0]
    for kind, data in _hostile_pickles(target).items():
        last.write_bytes(data)
        with pytest.raises(OrganiserFeatureError, match=rf"{last.name}: refused"):
            import_organiser_features(hume, features, visual_dir=vit, audio_dir=w2v)
        assert not target.exists(), kind
        after = {p.relative_to(features): p.read_bytes() for p in sorted(features.rglob("*")) if p.is_file()}
        assert after == before, kind


# ------------------------------------------------------------------------------------ synthetic challenge layout


def test_synthetic_challenge_layout_keeps_train_and_validation_identical(tmp_path):
    from emi_hf.data.synthetic import generate_synthetic_dataset

    kwargs = dict(num_train=3, num_valid=2, duration=0.6, fps=10, size=96, seed=5)
    plain = generate_synthetic_dataset(tmp_path / "plain", **kwargs)
    challenge = generate_synthetic_dataset(tmp_path / "challenge", num_test=2, layout="challenge", **kwargs)
    assert not (challenge / "test_split.csv").exists()
    for name in ("train_split.csv", "valid_split.csv", *(f"videos/{i:05d}.mp4" for i in range(5))):
        assert (plain / name).read_bytes() == (challenge / name).read_bytes(), name
    assert sorted(p.name for p in (challenge / "test_data" / "raw").iterdir()) == ["00005.mp4", "00006.mp4"]
    records = load_hume_vidmimic2(challenge)
    assert [r.clip_id for r in records["test"]] == ["00005", "00006"]
    assert generate_synthetic_dataset(challenge, num_test=2, layout="challenge", **kwargs) == challenge  # kept
