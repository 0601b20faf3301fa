"""The media pipeline on the real recordings in ../shared/media (skipped when that folder is absent)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from emi_hf.media import (
    ARCFACE_TEMPLATE_112,
    OPENFACE_AU_NAMES,
    ClipData,
    ClipPipeline,
    ClipSettings,
    EmiFileNotFoundError,
    EmiInputError,
    align_face,
    build_au_backend,
    check_au_names,
    decode_audio,
    estimate_similarity,
    fill_missing,
    iter_video_frames,
    match_openface,
    probe_media,
    read_openface_csv,
)
from emi_hf.media.faces import box_iou

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FAST = dict(face_detector="mediapipe")  # MediaPipe is the fast detector; MTCNN gets its own tests


@pytest.fixture(scope="module")
def mp_pipeline():
    return ClipPipeline(ClipSettings(**FAST))


@pytest.fixture(scope="module")
def single_face(media_dir, mp_pipeline) -> ClipData:
    return mp_pipeline.process(media_dir / "single_face.mp4", use_cache=False)


def _source_pattern(clip: ClipData) -> tuple[np.ndarray, np.ndarray]:
    """(unique source timestamps, face flag per source frame)"""
    times, first = np.unique(clip.timestamps, return_index=True)
    return times, clip.frame_mask[first].astype(bool)


# -- decoding ------------------------------------------------------------------------------------------------
def test_decode_native_and_resampled(media_dir):
    frames = list(iter_video_frames(media_dir / "single_face.mp4", target_fps=None))
    assert len(frames) == 72 and frames[0].image.shape == (360, 640, 3) and frames[0].image.dtype == np.uint8
    times = np.array([f.time for f in frames])
    assert np.all(np.diff(times) > 0)
    np.testing.assert_allclose(np.diff(times), 1 / 30, atol=1e-3)

    # 23.976 -> 30 fps: some source frames stand for two output frames, real timestamps kept
    frames = list(iter_video_frames(media_dir / "WolfgangLanger_Pexels.mp4", target_fps=30, max_frames=60))
    assert sum(f.repeat for f in frames) == 60
    assert len(frames) < 60 and max(f.repeat for f in frames) == 2
    assert np.all(np.diff([f.time for f in frames]) > 0)
    # downsampling drops frames before RGB conversion
    frames = list(iter_video_frames(media_dir / "WolfgangLanger_Pexels.mp4", target_fps=10, max_duration=2.0))
    assert len(frames) == 20 and all(f.repeat == 1 for f in frames)


def test_decode_variable_frame_rate_hevc(media_dir):
    info = probe_media(media_dir / "noface_face.mov")
    assert info.video_codec == "hevc" and info.has_audio
    frames = list(iter_video_frames(media_dir / "noface_face.mov", target_fps=30))
    times = np.array([f.time for f in frames])
    assert np.all(np.diff(times) > 0)
    assert abs(sum(f.repeat for f in frames) / 30 - times[-1]) < 0.1  # output covers the clip at 30 fps


def test_decode_audio(media_dir):
    waveform, start = decode_audio(media_dir / "single_face.mp4")  # MP3 44.1 kHz stereo
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert abs(len(waveform) / 16000 - 2.4) < 0.1
    assert np.max(np.abs(waveform)) == pytest.approx(10 ** (-3 / 20), rel=1e-3)  # peak at -3 dBFS
    wav, _ = decode_audio(media_dir / "debate_5s_16k.wav", peak_db=None)
    assert len(wav) == 80640
    assert decode_audio(media_dir / "multi_face_5_frames.mp4") == (None, None)  # video-only file


# -- bad input -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_files(media_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    data = (media_dir / "single_face.mp4").read_bytes()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    (folder / "cut_header.mp4").write_bytes(data[: len(data) // 2])  # moov atom at the end: lost
    (folder / "truncated.mp4").write_bytes((media_dir / "WolfgangLanger_Pexels.mp4").read_bytes()[:100_000])
    shutil.copy(media_dir / "README.md", folder / "text.mp4")
    garbage = bytearray(data)  # container intact, every video / audio packet random: nothing decodes
    start, end = garbage.find(b"mdat") + 4, garbage.find(b"moov") - 4
    garbage[start:end] = np.random.default_rng(1).integers(0, 256, end - start, np.uint8).tobytes()
    (folder / "garbage.mp4").write_bytes(bytes(garbage))
    return folder


@pytest.mark.parametrize("name", ["empty.mp4", "random.mp4", "cut_header.mp4", "text.mp4", "garbage.mp4",
                                  "OpenFace_Test.csv", "."])
def test_unusable_inputs_raise(name, bad_files, media_dir, mp_pipeline):
    path = media_dir / name if name.endswith(".csv") else bad_files / name
    with pytest.raises(EmiInputError) as error:
        mp_pipeline.process(path, use_cache=False)
    assert str(path) in str(error.value)


def test_missing_path(mp_pipeline, tmp_path):
    with pytest.raises(EmiFileNotFoundError, match="does not exist") as error:
        mp_pipeline.process(tmp_path / "nope.mp4")
    assert isinstance(error.value, FileNotFoundError) and isinstance(error.value, ValueError)


def test_truncated_file_is_used_with_a_warning(bad_files, mp_pipeline):
    with pytest.warns(UserWarning, match="truncated"):
        clip = mp_pipeline.process(bad_files / "truncated.mp4", use_cache=False)
    assert 0 < clip.num_frames < 60
    assert any("truncated" in w for w in clip.metadata["warnings"])


def test_single_frame_video(single_face, mp_pipeline, tmp_path):
    import av

    path = tmp_path / "one_frame.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        frame = np.zeros((360, 640, 3), np.uint8)
        frame[100:212, 264:376] = single_face.face_crops[0]  # an aligned face pasted on black
        for packet in list(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24"))) + list(stream.encode()):
            container.mux(packet)
    clip = mp_pipeline.process(path, use_cache=False)
    assert clip.num_frames == 1 and clip.timestamps.tolist() == [0.0] and not clip.audio_present
    assert clip.face_fraction == 1.0


# -- alignment -----------------------------------------------------------------------------------------------
def test_similarity_and_alignment():
    rng = np.random.default_rng(0)
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = rng.normal(size=(5, 2)) * 20
    matrix = estimate_similarity(source, source @ rotation.T + shift)
    np.testing.assert_allclose(matrix[:, :2], rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
    image = np.zeros((200, 200, 3), np.uint8)
    image[90:110, 90:110] = 255
    crop = align_face(image, ARCFACE_TEMPLATE_112 + 50, face_size=112)  # a pure shift by -50
    assert crop.shape == (112, 112, 3) and crop[45, 45].sum() == 3 * 255 and crop[5, 5].sum() == 0


# -- faces ---------------------------------------------------------------------------------------------------
def test_single_face_every_frame(single_face):
    clip = single_face
    assert clip.num_frames == 72 and clip.face_fraction == 1.0
    assert clip.face_crops.shape == (72, 112, 112, 3) and clip.face_crops.dtype == np.uint8
    assert clip.face_crops.reshape(72, -1).std(axis=1).min() > 10  # real image content in every crop
    assert np.isfinite(clip.face_boxes).all()
    assert np.all(np.diff(clip.timestamps) > 0)
    assert clip.audio_present and clip.metadata["tracks"] == 1
    au = clip.au_intensities
    assert au.shape == (72, 13) and np.isfinite(au).all() and au.min() >= 0 and au.max() <= 5
    assert au.std(axis=0).max() > 0.1  # AUs move with the expression


def test_no_face_is_masked(media_dir, mp_pipeline):
    with pytest.warns(UserWarning, match="no face"):
        clip = mp_pipeline.process(media_dir / "no_face.mp4", use_cache=False)
    assert clip.num_frames > 90 and clip.face_fraction == 0.0 and not clip.frame_mask.any()
    assert not clip.au_intensities.any() and not clip.face_crops.any()
    assert clip.metadata["face_fraction"] == 0.0 and clip.audio_present


@pytest.mark.parametrize("name, face_first", [("face_noface.mov", True), ("noface_face.mov", False)])
def test_face_switches_at_the_cut(name, face_first, media_dir, mp_pipeline):
    clip = mp_pipeline.process(media_dir / name, use_cache=False)
    times, face = _source_pattern(clip)
    # the face part is the 72 frames of single_face.mp4 (2.4 s), cut together with no_face.mp4
    changes = np.flatnonzero(np.diff(face.astype(int)))
    if face_first:
        assert face[0] and changes.size == 1 and face[: changes[0] + 1].all() and not face[changes[0] + 1:].any()
        assert abs(times[changes[0] + 1] - 2.4) < 0.1
    else:
        start = changes[0] + 1
        assert not face[:start].any() and face[start: start + 70].all()
        assert abs(times[start] - (times[-1] - 2.4)) < 0.15
    assert 70 <= face.sum() <= 73
    assert np.all(np.diff(clip.timestamps) >= 0)


def test_debate_keeps_one_subject(media_dir, mp_pipeline):
    clip = mp_pipeline.process(media_dir / "debate_5s.mp4", use_cache=False)
    boxes, tracks = clip.face_boxes, np.array([-1 if t is None else t for t in clip.metadata["track_ids"]])
    assert len(tracks) == clip.num_frames and np.array_equal(tracks >= 0, clip.frame_mask.astype(bool))
    close_up = clip.timestamps >= 3.9  # the close-up speaker (after the cross-fade)
    assert clip.frame_mask[close_up].all() and len(set(tracks[close_up])) == 1
    first = boxes[close_up][0]
    assert all(box_iou(box, first) > 0.5 for box in boxes[close_up])
    # a track is one person: it never jumps by more than a face size between its frames
    for track in set(tracks[tracks >= 0]):
        centers = (boxes[tracks == track, :2] + boxes[tracks == track, 2:]) / 2
        sizes = boxes[tracks == track, 2] - boxes[tracks == track, 0]
        assert np.all(np.linalg.norm(np.diff(centers, axis=0), axis=1) <= np.maximum(sizes[1:], 10))
    assert clip.metadata["tracks"] <= 3


def test_video_only_file(media_dir, mp_pipeline):
    with pytest.warns(UserWarning, match="no audio"):
        clip = mp_pipeline.process(media_dir / "multi_face_5_frames.mp4", use_cache=False)
    assert not clip.audio_present and clip.waveform is None and clip.metadata["audio_present"] is False
    assert clip.num_frames == 6 and clip.face_fraction == 1.0  # 5 frames at 25 fps -> 6 at 30 fps


def test_audio_only_file(media_dir, mp_pipeline):
    clip = mp_pipeline.process(media_dir / "debate_5s_16k.wav", use_cache=False)
    assert clip.num_frames == 0 and clip.face_fraction == 0.0 and clip.audio_present
    assert len(clip.waveform) == 80640 and clip.metadata["video_present"] is False


def test_subject_policies(media_dir):
    boxes = {}
    for policy in ("largest", "central"):
        clip = ClipPipeline(ClipSettings(subject=policy, **FAST)).process(
            media_dir / "multi_face_5_frames.mp4", use_cache=False)
        assert clip.face_fraction == 1.0
        boxes[policy] = clip.face_boxes[0]
    center = np.array([270 / 2, 480 / 2])

    def distance(b):
        return np.linalg.norm((b[:2] + b[2:]) / 2 - center)

    def area(b):
        return (b[2] - b[0]) * (b[3] - b[1])

    assert distance(boxes["central"]) <= distance(boxes["largest"]) + 1
    assert area(boxes["largest"]) >= area(boxes["central"]) * 0.8


def test_mtcnn_detector(media_dir):
    clip = ClipPipeline(ClipSettings(face_detector="mtcnn", max_frames=24)).process(
        media_dir / "single_face.mp4", use_cache=False)
    assert clip.num_frames == 24 and clip.face_fraction == 1.0
    assert np.isfinite(clip.au_intensities).all() and clip.metadata["detector_runs"] >= 5


def test_inputs_already_face_crops(single_face):
    pipeline = ClipPipeline(ClipSettings(face_detector=None, target_fps=None))
    clip = pipeline.process(single_face.face_crops[:20], video_fps=30)
    assert clip.num_frames == 20 and clip.face_fraction == 1.0
    np.testing.assert_array_equal(clip.face_crops, single_face.face_crops[:20])  # already 112 px: unchanged
    assert clip.metadata["au_fraction"] > 0.9 and np.isfinite(clip.au_intensities).all()


# -- Action Units --------------------------------------------------------------------------------------------
def test_mediapipe_aus_follow_the_expression(media_dir):
    pipeline = ClipPipeline(ClipSettings(target_fps=10, **FAST))
    clip = pipeline.process(media_dir / "WolfgangLanger_Pexels.mp4", use_cache=False)
    assert clip.face_fraction == 1.0
    au = dict(zip(clip.metadata["au_names"], clip.au_intensities.T))
    start, end = clip.timestamps < 3.0, clip.timestamps > clip.timestamps[-1] - 2.0
    assert au["AU12"][end].mean() > au["AU12"][start].mean() + 1.0  # the broad smile at the end
    assert au["AU25"][end].mean() > au["AU25"][start].mean()  # teeth show in the smile
    baseline = ClipPipeline(ClipSettings(target_fps=10, au_neutral_baseline=True, **FAST)).process(
        media_dir / "WolfgangLanger_Pexels.mp4", use_cache=False)
    for k, name in enumerate(baseline.metadata["au_names"]):
        if name not in ("AU05", "AU45"):  # low-percentile baseline: at least ~10% of frames at 0
            assert np.mean(baseline.au_intensities[:, k] == 0) >= 0.09, name


def test_openface_csv(media_dir):
    table = read_openface_csv(media_dir / "OpenFace_Test.csv")
    assert table.values.shape == (len(table.timestamps), 17) and table.au_names == OPENFACE_AU_NAMES
    finite = table.values[np.isfinite(table.values)]
    assert finite.min() >= 0 and finite.max() <= 5
    values = match_openface(table, table.timestamps[:10])
    np.testing.assert_array_equal(values, table.values[:10])
    assert np.isnan(match_openface(table, np.array([100.0]))).all()  # nothing near: NaN, filled later
    by_frame = match_openface(table, np.zeros(3), np.array([0, 1, 2]), match="frame")
    rows = [int(np.flatnonzero(table.frames == f)[0]) if (table.frames == f).any() else None for f in (1, 2, 3)]
    for k, row in enumerate(rows):
        if row is not None:
            np.testing.assert_array_equal(by_frame[k], table.values[row])


def test_openface_backend_on_frames(media_dir, single_face):
    names = ("AU01", "AU06", "AU12", "AU25")
    pipeline = ClipPipeline(ClipSettings(face_detector=None, target_fps=None, au_backend="openface",
                                         au_names=names, openface_match="frame"))
    clip = pipeline.process(single_face.face_crops[:8], au_file=media_dir / "OpenFace_Test.csv")
    table = read_openface_csv(media_dir / "OpenFace_Test.csv", names)
    expected = fill_missing(match_openface(table, np.zeros(8), np.arange(8), match="frame"), np.ones(8, bool))
    np.testing.assert_allclose(clip.au_intensities, expected)
    with pytest.raises(EmiInputError, match="OpenFace CSV"):
        pipeline.process(media_dir / "single_face.mp4", use_cache=False)  # no CSV next to the video


def test_au_backend_errors():
    with pytest.raises(ValueError, match="cannot estimate"):
        build_au_backend("mediapipe", ["AU01", "AU07"])
    with pytest.raises(ValueError, match="au_backend must be one of"):
        build_au_backend("nope", ["AU01"])
    try:
        import pyfaceau  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pyfaceau"):
            build_au_backend("pyfaceau", ["AU01"])
    with pytest.raises(ValueError, match="AU mismatch"):
        check_au_names(["AU01", "AU02"], ["AU02", "AU01"])


def test_fill_missing():
    values = np.array([[np.nan], [1.0], [np.nan], [np.nan], [4.0], [7.0]], np.float32)
    face = np.array([True, True, True, True, True, False])
    np.testing.assert_array_equal(fill_missing(values, face)[:, 0], [1, 1, 1, 4, 4, 0])


# -- cache ---------------------------------------------------------------------------------------------------
def test_clip_cache(media_dir, tmp_path, monkeypatch):
    settings = ClipSettings(max_frames=10, **FAST)
    pipeline = ClipPipeline(settings)
    first = pipeline.process(media_dir / "single_face.mp4", cache_dir=tmp_path)
    assert first.metadata["cache_hit"] is False
    entries = list(tmp_path.iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".npz"  # no temporary file left behind
    second = ClipPipeline(settings).process(media_dir / "single_face.mp4", cache_dir=tmp_path)
    assert second.metadata["cache_hit"] is True
    for name in ("face_crops", "au_intensities", "frame_mask", "timestamps", "waveform"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    other = ClipPipeline(ClipSettings(max_frames=11, **FAST)).process(media_dir / "single_face.mp4",
                                                                      cache_dir=tmp_path)
    assert other.metadata["cache_hit"] is False and len(list(tmp_path.iterdir())) == 2
    monkeypatch.setenv("EMI_HF_CACHE", str(tmp_path / "env"))
    pipeline.process(media_dir / "single_face.mp4")
    assert len(list((tmp_path / "env").iterdir())) == 1
    assert pipeline.process(media_dir / "single_face.mp4", use_cache=True).metadata["cache_hit"] is True
