"""Feature extraction driver: resumable after a kill, failures reported, merged DatasetDict schema."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import Record, SavedSettings, tiny_audio_config, tiny_visual_config

from emi_hf import EmiAudioModel, EmiVisualModel
from emi_hf.data.extraction import ClipFeatures, run_extraction
from emi_hf.data.store import load_features, load_features_metadata



def fake_clip(processor, visual_model, audio_model, path, clip_id, labels):
    """Deterministic per clip id, shaped like the real features; clip 00003 'has no video' and fails."""
    if clip_id == "00003":
        raise ValueError(f"{path}: not a video file")
    rng = np.random.default_rng(int(clip_id))
    frames, audio_frames = 5 + int(clip_id) % 4, 7
    mask = np.ones(frames, np.int8)
    mask[0] = 0
    return ClipFeatures(
        clip_id=clip_id,
        visual_features=rng.normal(size=(frames, 512)).astype(np.float32),
        au_features=rng.random((frames, visual_model.config.num_aus)).astype(np.float32),
        frame_mask=mask,
        frame_timestamps=np.arange(frames, dtype=np.float32) / 30,
        audio_features=rng.normal(size=(audio_frames, audio_model.config.audio_feature_dim)).astype(np.float32),
        audio_mask=np.ones(audio_frames, np.int8),
        labels=np.full(6, np.nan, np.float32) if labels is None else labels,
        face_fraction=float(mask.mean()),
        audio_present=True,
    )


def make_records(tmp_path):
    rng = np.random.default_rng(0)
    train = [Record(f"{i:05d}", tmp_path / f"{i:05d}.mp4", rng.random(6).astype(np.float32), "train") for i in range(6)]
    valid = [Record(f"{i:05d}", tmp_path / f"{i:05d}.mp4", rng.random(6).astype(np.float32), "validation")
             for i in range(6, 9)]
    test = [Record("00009", tmp_path / "00009.mp4", None, "test")]
    return {"train": train, "validation": valid, "test": test}


@pytest.fixture(scope="module")
def models():
    return EmiVisualModel(tiny_visual_config()), EmiAudioModel(tiny_audio_config())


def test_extraction_resumes_after_a_kill_and_equals_an_uninterrupted_run(tmp_path, models):
    visual, audio = models
    records = make_records(tmp_path)
    full = run_extraction(records, tmp_path / "full", SavedSettings(), visual, audio, progress=False, clip_fn=fake_clip)

    calls = []

    def killed_after_four(*args):
        if len(calls) == 4:
            raise KeyboardInterrupt  # the process dies mid-run
        calls.append(args[4])
        return fake_clip(*args)

    with pytest.raises(KeyboardInterrupt):
        run_extraction(records, tmp_path / "resumed", SavedSettings(), visual, audio, progress=False,
                       clip_fn=killed_after_four)
    resumed_calls = []

    def counting(*args):
        resumed_calls.append(args[4])
        return fake_clip(*args)

    report = run_extraction(records, tmp_path / "resumed", SavedSettings(), visual, audio, progress=False,
                            clip_fn=counting)
    finished = set(calls) - {"00003"}  # 00003 failed: failed clips are retried on a re-run
    assert len(finished) == 3 and not set(resumed_calls) & finished, "finished clips must not be recomputed"
    assert report["splits"] == full["splits"]
    a, b = load_features(tmp_path / "full"), load_features(tmp_path / "resumed")
    for split in a:
        assert a[split].column_names == b[split].column_names and len(a[split]) == len(b[split])
        for row_a, row_b in zip(a[split].with_format("numpy"), b[split].with_format("numpy")):
            for column in a[split].column_names:
                np.testing.assert_array_equal(row_a[column], row_b[column])  # NaN labels compare equal


def test_failures_are_reported_and_the_rest_is_kept(tmp_path, models):
    visual, audio = models
    report = run_extraction(make_records(tmp_path), tmp_path / "out", SavedSettings(), visual, audio,
                            progress=False, clip_fn=fake_clip)
    assert [f["clip_id"] for f in report["failures"]] == ["00003"]
    assert "not a video file" in report["failures"][0]["error"]
    assert report["splits"]["train"] == {"requested": 6, "extracted": 5, "failed": 1}
    dataset = load_features(tmp_path / "out")
    assert set(dataset) == {"train", "validation", "test"}
    row = dataset["train"].with_format("numpy")[0]
    assert row["visual_features"].shape[1] == 512 and row["au_features"].shape[1] == 13
    assert row["audio_features"].shape == (7, 32)
    assert np.isnan(dataset["test"].with_format("numpy")[0]["labels"]).all()
    metadata = load_features_metadata(tmp_path / "out")
    assert metadata["au_names"][0] == "AU01" and metadata["audio_feature_dim"] == 32
    assert (tmp_path / "out" / "base_visual" / "model.safetensors").exists()
    saved = json.loads((tmp_path / "out" / "extraction_report.json").read_text())
    assert saved["failures"][0]["clip_id"] == "00003"


def test_missing_features_folder_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="emi-hf extract"):
        load_features(tmp_path / "nowhere")


def test_resuming_with_other_backbone_weights_is_refused(tmp_path, models):
    visual, audio = models
    records = make_records(tmp_path)
    run_extraction(records, tmp_path / "out", SavedSettings(), visual, audio, progress=False, clip_fn=fake_clip)
    other_visual = EmiVisualModel(tiny_visual_config())
    other_visual.load_state_dict(visual.state_dict())
    with torch.no_grad():
        other_visual.backbone.conv1.weight.add_(0.01)  # other backbone weights
    with pytest.raises(ValueError, match="other backbone weights"):
        run_extraction(records, tmp_path / "out", SavedSettings(), other_visual, audio, progress=False,
                       clip_fn=fake_clip)


def test_repeated_crops_are_embedded_once_in_extraction(models):
    from types import SimpleNamespace

    from emi_hf import EmiProcessor
    from emi_hf.face_embedding import embed_clip_faces

    visual, _ = models
    visual.eval()
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (6, 112, 112, 3), dtype=np.uint8)
    crops[2] = crops[1]
    crops[5] = crops[4]
    mask = np.array([1, 1, 1, 1, 0, 1], np.int8)  # frame 5 repeats a masked frame: embedded itself
    clip = SimpleNamespace(face_crops=crops, frame_mask=mask, num_frames=6)
    processor = EmiProcessor(face_detector="mediapipe")
    calls = []
    original = visual.embed_faces
    visual.embed_faces = lambda x: calls.append(len(x)) or original(x)
    try:
        deduped = embed_clip_faces(processor, visual, clip, chunk_size=2)
    finally:
        del visual.embed_faces
    pixels = processor.video_processor(videos=[crops], return_tensors="pt")["pixel_values"][0]
    with torch.no_grad():
        expected = original(pixels).numpy() * mask[:, None]
    assert sum(calls) == 4
    np.testing.assert_allclose(deduped, expected, atol=1e-5)


@pytest.mark.parametrize("detector", ["mediapipe", "mtcnn"])
def test_streamed_face_embeddings_equal_embedding_the_kept_crops(models, media_dir, tmp_path, detector):
    """The background-thread embedder (crops not kept) gives exactly what embedding the kept crops gives, and the
    rest of the clip is unchanged; a clip without crops is not written to the clip cache."""
    from emi_hf import EmiProcessor
    from emi_hf.face_embedding import FaceEmbedder, clip_face_embeddings, embed_clip_faces

    visual, _ = models
    visual.eval()
    processor = EmiProcessor(face_detector=detector, max_frames=90)
    path = media_dir / "WolfgangLanger_Pexels.mp4"
    cache = tmp_path / "cache"
    streamed = processor.process_clip(path, face_embedder=FaceEmbedder(processor, visual), cache_dir=cache)
    assert not streamed.has_crops and streamed.face_crops.shape[0] == 0
    assert not list(cache.glob("*.npz"))  # nothing cached without crops
    kept = processor.process_clip(path, cache_dir=cache)  # written to the cache
    assert kept.has_crops and kept.face_embeddings is None
    assert len(list(cache.glob("*.npz"))) == 1
    expected = embed_clip_faces(processor, visual, kept)
    assert streamed.face_embeddings.shape == (kept.num_frames, visual.config.visual_feature_dim)
    np.testing.assert_array_equal(streamed.face_embeddings, expected)
    np.testing.assert_array_equal(clip_face_embeddings(processor, visual, kept), expected)
    for name in ("au_intensities", "frame_mask", "timestamps", "face_boxes", "waveform"):
        np.testing.assert_array_equal(getattr(streamed, name), getattr(kept, name))
    hit = processor.process_clip(path, face_embedder=FaceEmbedder(processor, visual), cache_dir=cache)
    assert hit.metadata["cache_hit"]  # cached crops are embedded on the way out
    np.testing.assert_allclose(hit.face_embeddings, expected, atol=1e-5)
    batch = processor.collate([streamed, hit])  # embeddings -> visual_features, whether or not crops were kept
    assert "pixel_values" not in batch and batch["visual_features"].shape[-1] == visual.config.visual_feature_dim
    kept.face_crops = kept.face_crops[:0]
    kept.face_embeddings = None
    with pytest.raises(ValueError, match="keep_crops"):
        processor.collate([kept])


def test_embedder_failure_surfaces_and_stops_the_thread(media_dir):
    import threading

    from emi_hf import EmiProcessor

    def broken(crops):
        raise RuntimeError("backbone exploded")

    before = threading.active_count()
    processor = EmiProcessor(face_detector="mediapipe", max_frames=150, chunk_size=16, use_cache=False)
    with pytest.raises(RuntimeError, match="backbone exploded"):
        processor.process_clip(media_dir / "WolfgangLanger_Pexels.mp4", face_embedder=broken)
    assert threading.active_count() == before


def test_faceless_clip_gets_zero_embeddings(models, media_dir):
    from emi_hf import EmiProcessor
    from emi_hf.face_embedding import FaceEmbedder, clip_face_embeddings

    visual, _ = models
    frames = np.zeros((12, 96, 128, 3), np.uint8)  # no face anywhere
    processor = EmiProcessor(face_detector="mediapipe", use_cache=False)
    clip = processor.process_clip(frames, face_embedder=FaceEmbedder(processor, visual))
    assert clip.frame_mask.sum() == 0
    embeddings = clip_face_embeddings(processor, visual, clip)
    assert embeddings.shape == (12, visual.config.visual_feature_dim) and not embeddings.any()
