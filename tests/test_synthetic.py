"""The synthetic audiovisual data set: labels, rendering, face detection by MTCNN and MediaPipe, the written files."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest

from emi_hf.configuration_emi import EMOTION_NAMES
from emi_hf.data import synthetic as S
from emi_hf.data.layout import load_hume_vidmimic2

JOYFUL = np.array([0.3, 0.8, 0.1, 0.05, 0.4, 0.95])
NEUTRALISH = np.array([0.05, 0.05, 0.1, 0.1, 0.05, 0.05])


def test_labels_range_correlation_and_determinism():
    labels = S.sample_labels(np.random.default_rng(0), 3000)
    assert labels.shape == (3000, 6) and labels.min() >= 0 and labels.max() <= 1
    assert 0.25 < labels.mean() < 0.5 and labels.std(0).min() > 0.12
    corr = np.corrcoef(labels.T)
    joy, amusement, pain = EMOTION_NAMES.index("Joy"), EMOTION_NAMES.index("Amusement"), EMOTION_NAMES.index(
        "Empathic Pain")  # fmt: skip
    assert corr[joy, amusement] > 0.4 and corr[joy, pain] < -0.1
    np.testing.assert_array_equal(labels[:10], S.sample_labels(np.random.default_rng(0), 10))


def test_mapping_splits_emotions_between_face_and_voice():
    shares = S.modality_shares()
    assert S.FACE_MAPPING.shape == (len(S.FACE_PARAMETER_NAMES), 6)
    assert S.VOICE_MAPPING.shape == (len(S.VOICE_PARAMETER_NAMES), 6)
    for name in ("Joy", "Amusement", "Admiration"):
        assert shares[name] > 0.55, (name, shares[name])
    for name in ("Excitement", "Determination", "Empathic Pain"):
        assert shares[name] < 0.3, (name, shares[name])
    assert all(0 < share < 1 for share in shares.values())  # partial overlap: every emotion shows in both


def test_render_clip_shapes_and_determinism():
    subject = S.sample_subject(np.random.default_rng(3))
    clip = S.render_clip(JOYFUL, subject, duration=1.2, fps=25, size=(160, 128), sample_rate=16000, seed=7)
    assert clip.frames.shape == (30, 128, 160, 3) and clip.frames.dtype == np.uint8
    assert clip.waveform.shape == (19200,) and clip.waveform.dtype == np.float32
    assert np.all(np.isfinite(clip.waveform)) and np.abs(clip.waveform).max() <= 1 and clip.waveform.std() > 0.01
    assert clip.face_parameters.shape == (30, len(S.FACE_PARAMETER_NAMES))
    assert clip.face_boxes.shape == (30, 4) and np.all(clip.face_boxes[:, 2:] > clip.face_boxes[:, :2])
    np.testing.assert_allclose(clip.timestamps[:3], [0, 0.04, 0.08], atol=1e-6)
    again = S.render_clip(JOYFUL, subject, duration=1.2, fps=25, size=(160, 128), sample_rate=16000, seed=7)
    np.testing.assert_array_equal(clip.frames, again.frames)
    np.testing.assert_array_equal(clip.waveform, again.waveform)
    other = S.render_clip(JOYFUL, subject, duration=1.2, fps=25, size=(160, 128), sample_rate=16000, seed=8)
    assert not np.array_equal(clip.frames, other.frames)
    for bad in ([0.1] * 5, [0.1, 0.2, 0.3, 0.4, 0.5, 1.2], [0.1, np.nan, 0, 0, 0, 0]):
        with pytest.raises(ValueError, match="labels"):
            S.render_clip(bad)
    with pytest.raises(ValueError, match="even"):
        S.render_clip(JOYFUL, size=255)


def test_expression_follows_labels_and_time():
    subject = S.sample_subject(np.random.default_rng(11))
    joyful = S.render_clip(JOYFUL, subject, duration=2.0, seed=1)
    neutral = S.render_clip(NEUTRALISH, subject, duration=2.0, seed=1)
    smile = S.FACE_PARAMETER_NAMES.index("smile")
    apex = int(np.argmax(joyful.envelope))
    assert joyful.envelope[0] < 0.05 and joyful.envelope[apex] > 0.95  # onset then apex within the clip
    assert joyful.face_parameters[apex, smile] > neutral.face_parameters[apex, smile] + 0.4
    assert joyful.face_parameters[apex, smile] > joyful.face_parameters[0, smile] + 0.4
    # the voice: Determination is loud and tense, Empathic Pain quiet with tremor
    determined = S.render_clip(np.array([0, 0, 1.0, 0, 0.1, 0]), subject, seed=2)
    pained = S.render_clip(np.array([0, 0, 0, 1.0, 0, 0]), subject, seed=2)
    assert determined.waveform[-16000:].std() > 1.5 * pained.waveform[-16000:].std()
    tremor = S.VOICE_PARAMETER_NAMES.index("tremor")
    assert pained.voice_parameters[-50:, tremor].mean() > determined.voice_parameters[-50:, tremor].mean() + 0.5


def _iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def detection_frames():
    """16 frames of 4 subjects (different skin tones, hair, expressions, poses), with the drawn face boxes."""
    rng = np.random.default_rng(2024)
    labels = np.concatenate([S.sample_labels(rng, 2), [JOYFUL, [0.9, 0.1, 0.2, 0.1, 0.8, 0.2]]])
    frames, boxes = [], []
    for i, lab in enumerate(labels):
        clip = S.render_clip(lab, S.sample_subject(rng, i), duration=2.0, seed=i)
        for k in (3, 17, 31, 45):
            frames.append(clip.frames[k])
            boxes.append(clip.face_boxes[k])
    return np.stack(frames), np.stack(boxes)


def test_mtcnn_detects_the_drawn_face(detection_frames):
    torch = pytest.importorskip("torch")
    facenet = pytest.importorskip("facenet_pytorch")
    frames, boxes = detection_frames
    torch.set_num_threads(1)
    mtcnn = facenet.MTCNN(keep_all=True, device="cpu")  # weights ship inside facenet-pytorch
    detected, probs = mtcnn.detect(list(frames))
    hits = [d is not None and max(_iou(b, truth) for b in d) > 0.4 for d, truth in zip(detected, boxes)]
    assert np.mean(hits) >= 0.9, f"MTCNN found {np.mean(hits):.0%} of the synthetic faces"
    assert np.median([p.max() for p in probs if p is not None]) > 0.95
    assert sum(len(d) > 1 for d in detected if d is not None) <= 1  # no faces in the background


def test_mediapipe_detects_the_drawn_face(detection_frames):
    mp = pytest.importorskip("mediapipe")
    frames, boxes = detection_frames
    height, width = frames.shape[1:3]
    for model_selection in (0, 1):
        hits = []
        with mp.solutions.face_detection.FaceDetection(model_selection=model_selection,
                                                       min_detection_confidence=0.5) as detector:  # fmt: skip
            for frame, truth in zip(frames, boxes):
                result = detector.process(np.ascontiguousarray(frame))
                found = []
                for detection in result.detections or []:
                    box = detection.location_data.relative_bounding_box
                    found.append([box.xmin * width, box.ymin * height, (box.xmin + box.width) * width,
                                  (box.ymin + box.height) * height])  # fmt: skip
                hits.append(any(_iou(b, truth) > 0.3 for b in found))
        assert np.mean(hits) >= 0.9, f"MediaPipe (model {model_selection}) found {np.mean(hits):.0%}"
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        meshed = [mesh.process(np.ascontiguousarray(f)).multi_face_landmarks is not None for f in frames]
    assert np.mean(meshed) >= 0.9, f"MediaPipe face mesh found {np.mean(meshed):.0%}"


# ------------------------------------------------------------------------------------------------ files


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    kwargs = dict(num_train=5, num_valid=3, num_test=2, duration=1.0, fps=25, size=128, seed=3)
    path = S.generate_synthetic_dataset(root / "a", **kwargs)
    return path, kwargs


def test_dataset_layout_readable_by_loader(dataset):
    path, _ = dataset
    assert sorted(p.name for p in path.iterdir()) == ["synthetic_metadata.json", "test_split.csv",
                                                      "train_split.csv", "transcripts.csv", "valid_split.csv",
                                                      "videos"]  # fmt: skip
    with open(path / "train_split.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Filename", "Admiration", "Amusement", "Determination", "Empathic Pain", "Excitement", "Joy"]
    assert [r[0] for r in rows[1:]] == ["00000", "00001", "00002", "00003", "00004"]
    assert (path / "test_split.csv").read_text().splitlines() == ["Filename", "00008", "00009"]
    data = load_hume_vidmimic2(path)
    assert {k: len(v) for k, v in data.items()} == {"train": 5, "validation": 3, "test": 2}
    assert data["validation"][0].clip_id == "00005" and data["validation"][0].path == path / "videos" / "00005.mp4"
    assert all(r.labels.shape == (6,) and 0 <= r.labels.min() and r.labels.max() <= 1 for r in data["train"])
    assert data["test"][0].labels is None
    meta = json.loads((path / "synthetic_metadata.json").read_text())
    assert meta["generator_version"] == S.GENERATOR_VERSION and meta["seed"] == 3
    assert np.array(meta["face_mapping"]).shape == S.FACE_MAPPING.shape
    np.testing.assert_allclose([c["labels"] for c in meta["clips"][:5]], [r.labels for r in data["train"]], atol=1e-6)
    subjects = {split: {c["subject_id"] for c in meta["clips"] if c["split"] == split} for split in data}
    assert not subjects["train"] & subjects["validation"]  # subject-independent splits


def test_written_clip_decodes_with_pyav(dataset):
    av = pytest.importorskip("av")
    path, _ = dataset
    with av.open(str(path / "videos" / "00001.mp4")) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        assert float(video.average_rate) == pytest.approx(25)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 25 and frames[0].shape == (128, 128, 3)
    with av.open(str(path / "videos" / "00001.mp4")) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        chunks = [r.to_ndarray() for f in container.decode(audio=0) for r in resampler.resample(f)]
        chunks += [r.to_ndarray() for r in resampler.resample(None)]
    waveform = np.concatenate(chunks, axis=1)[0]
    assert abs(len(waveform) - 16000) < 1200 and waveform.std() > 0.01
    # what was encoded is what render_clip makes for that clip
    meta = json.loads((path / "synthetic_metadata.json").read_text())
    clip_meta = meta["clips"][1]
    subject = S.SyntheticSubject(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in meta["subjects"][clip_meta["subject_id"]].items()})  # fmt: skip
    clip = S.render_clip(clip_meta["labels"], subject, duration=1.0, fps=25, size=128, sample_rate=24000,
                         seed=np.random.SeedSequence([3, 1, 1]))  # fmt: skip
    assert np.abs(frames[12].astype(float) - clip.frames[12]).mean() < 6


def test_dataset_deterministic_across_workers_and_cached(dataset, tmp_path):
    path, kwargs = dataset
    again = S.generate_synthetic_dataset(tmp_path / "b", **kwargs, num_workers=2)
    for name in ("train_split.csv", "valid_split.csv", "test_split.csv"):
        assert (again / name).read_bytes() == (path / name).read_bytes()
    first, second = json.loads((path / "synthetic_metadata.json").read_text()), json.loads(
        (again / "synthetic_metadata.json").read_text())  # fmt: skip
    assert first == second
    same_bytes = [_digest(path / "videos" / f"{i:05d}.mp4") == _digest(again / "videos" / f"{i:05d}.mp4")
                  for i in range(10)]  # fmt: skip
    assert all(same_bytes)
    stamp = (again / "videos" / "00000.mp4").stat().st_mtime_ns
    S.generate_synthetic_dataset(again, **kwargs)  # same arguments: nothing rewritten
    assert (again / "videos" / "00000.mp4").stat().st_mtime_ns == stamp
    other = S.generate_synthetic_dataset(tmp_path / "c", **{**kwargs, "seed": 4, "num_test": 0})
    assert (other / "train_split.csv").read_bytes() != (path / "train_split.csv").read_bytes()
    assert not (other / "test_split.csv").exists()


# ------------------------------------------------------------------------------------------------ transcripts


def _tokens(text: str) -> list[str]:
    import re

    return re.findall(r"\w+|[^\w\s]+", text.lower())  # what a whitespace / punctuation word tokenizer sees


def _lexicon_hits(text: str, emotion: str) -> int:
    """How many of `emotion`'s lexicon entries (words or phrases) occur in `text`."""
    tokens = " ".join(_tokens(text))
    padded = f" {tokens} "
    return sum(padded.count(f" {' '.join(_tokens(entry))} ") for entry in S.EMOTION_LEXICONS[emotion])


def _drawn_clips(count: int, seed: int = 5) -> list[dict]:
    labels = S.sample_labels(np.random.default_rng(seed), count)
    splits = ["train"] * (count // 2) + ["validation"] * (count // 4) + ["test"] * (count - count // 2 - count // 4)
    return [{"clip_id": f"{i:05d}", "split": split, "labels": [float(x) for x in labels[i]]}
            for i, split in enumerate(splits)]  # fmt: skip


def test_transcript_is_deterministic_and_well_formed():
    text = S.synthetic_transcript(JOYFUL, np.random.default_rng(1))
    assert text == S.synthetic_transcript(JOYFUL, np.random.default_rng(1))
    assert text != S.synthetic_transcript(JOYFUL, np.random.default_rng(2))
    vocabulary = set(S.FILLER_WORDS) | {t for lex in S.EMOTION_LEXICONS.values() for e in lex for t in _tokens(e)}
    for seed in range(50):
        text = S.synthetic_transcript(S.sample_labels(np.random.default_rng(seed), 1)[0], np.random.default_rng(seed))
        assert text[0].isupper() and text[-1] in ".!" and "," not in text and "\n" not in text
        words = [t for t in _tokens(text) if t not in ".!"]
        assert 8 <= len(words) <= 18 * 4 and set(words) <= vocabulary, text
    assert list(S.EMOTION_LEXICONS) == list(EMOTION_NAMES)
    owners = {}  # no token belongs to two lexicons, nor to a lexicon and the filler
    for emotion, lexicon in S.EMOTION_LEXICONS.items():
        for token in {t for entry in lexicon for t in _tokens(entry) if t.isalnum()}:
            owners.setdefault(token, set()).add(emotion)
    assert all(len(o) == 1 for o in owners.values()) and not set(owners) & set(S.FILLER_WORDS)
    with pytest.raises(ValueError, match="labels"):
        S.synthetic_transcript([0.1] * 5, np.random.default_rng(0))


def test_transcript_words_follow_the_labels():
    clips = _drawn_clips(240)
    labels = np.array([c["labels"] for c in clips])
    texts = [S.synthetic_transcript(labels[i], np.random.default_rng([5, i])) for i in range(len(clips))]
    for j, emotion in enumerate(EMOTION_NAMES):
        hits = np.array([_lexicon_hits(t, emotion) for t in texts])
        high, low = labels[:, j] >= np.quantile(labels[:, j], 2 / 3), labels[:, j] <= np.quantile(labels[:, j], 1 / 3)
        assert hits[high].mean() > 2 * hits[low].mean() + 0.3, (emotion, hits[high].mean(), hits[low].mean())
        assert 0.25 < np.corrcoef(hits, labels[:, j])[0, 1] < 0.9, emotion  # informative, not a copy of the label


def test_write_synthetic_transcripts_csv(tmp_path):
    from emi_hf.text.transcript_files import read_transcripts

    clips = _drawn_clips(12)
    path = S.write_synthetic_transcripts(tmp_path, clips, seed=3)
    assert path == tmp_path / S.TRANSCRIPTS_FILE == tmp_path / "transcripts.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Filename", "text", "source"]
    assert [r[0] for r in rows[1:]] == [c["clip_id"] for c in clips]  # every split, test clips included
    assert all(r[2] == S.TRANSCRIPT_SOURCE and r[2].startswith("synthetic") for r in rows[1:])
    for row, clip in zip(rows[1:], clips):  # each clip's text from its own stream (seed, TRANSCRIPT_STREAM, id)
        rng = np.random.default_rng(np.random.SeedSequence([3, S.TRANSCRIPT_STREAM, int(clip["clip_id"])]))
        assert row[1] == S.synthetic_transcript(np.array(clip["labels"]), rng)
    first = path.read_bytes()
    stamp = path.stat().st_mtime_ns
    assert S.write_synthetic_transcripts(tmp_path, clips, seed=3).stat().st_mtime_ns == stamp  # same: not rewritten
    S.write_synthetic_transcripts(tmp_path / "again", clips, seed=3)
    assert (tmp_path / "again" / "transcripts.csv").read_bytes() == first
    table = read_transcripts(path)
    assert len(table) == 12
    found = table.lookup(tmp_path / "videos" / "00000.mp4")
    assert found is not None and found.text == rows[1][1] and table.lookup("00011.mp4").text == rows[12][1]
    S.write_synthetic_transcripts(tmp_path, clips, seed=4)  # other content: rewritten
    assert path.read_bytes() != first


def test_transcripts_tokenize_with_the_word_tokenizer(tmp_path):
    pytest.importorskip("tokenizers")
    pytest.importorskip("transformers")
    from emi_hf.text.word_tokenizer import build_word_tokenizer

    clips = _drawn_clips(40)
    texts = [r.split(",")[1] for r in S.write_synthetic_transcripts(tmp_path, clips, 0).read_text().splitlines()[1:]]
    tokenizer = build_word_tokenizer(texts[:30])
    ids = tokenizer(texts[30])["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.convert_ids_to_tokens(tokenizer(texts[0])["input_ids"])[1:-1] == _tokens(texts[0])
    assert tokenizer.unk_token_id not in tokenizer(texts[0])["input_ids"]


def test_generated_set_has_transcripts_and_gets_them_when_missing(dataset):
    path, kwargs = dataset
    meta = json.loads((path / "synthetic_metadata.json").read_text())
    with open(path / "transcripts.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows[1:]] == [c["clip_id"] for c in meta["clips"]] == [f"{i:05d}" for i in range(10)]
    content = (path / "transcripts.csv").read_bytes()
    stamp = (path / "videos" / "00000.mp4").stat().st_mtime_ns
    (path / "transcripts.csv").unlink()  # as in a set generated before transcripts existed
    S.generate_synthetic_dataset(path, **kwargs)
    assert (path / "transcripts.csv").read_bytes() == content
    assert (path / "videos" / "00000.mp4").stat().st_mtime_ns == stamp  # no re-rendering
