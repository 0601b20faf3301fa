"""The random-feature generator: its rows as before, and the clip files shaped like a data set (`write_clip_files`,
`ClipLengths`) that the benchmark section `scale` builds Hume-Vidmimic2-sized folders from."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from helpers import Record, SavedSettings, tiny_audio_config, tiny_visual_config

from emi_hf.data import random_features as rf
from emi_hf.data.extraction import ClipFeatures
from emi_hf.data.random_features import (
    HUME_VIDMIMIC2_CLIPS,
    HUME_VIDMIMIC2_FIRST_IDS,
    ClipLengths,
    text_tokens,
    wav2vec2_frames,
    write_clip_files,
)

# sha256 of the rows below as main's generator (commit 59ddd18) wrote them, before ClipLengths existed
ROWS_DIGEST = "08848d56c3be0f2e55ddd192192e3e0e5b80b64e0b45dfa1f7cbfbb0b6dbc079"


def test_rows_without_the_new_options_are_unchanged():
    mappings, text_map = rf._mappings(3, 13, 512, 32), rf._text_mapping(3, 24)
    digest = hashlib.sha256()
    for index, (no_face, no_audio) in enumerate([(False, False), (True, False), (False, True)]):
        row = rf.random_clip_row(index, 31, mappings, (6, 20), (8, 30), no_face, no_audio, 1.0)
        row.update(rf.random_text_columns(index, 31, row["labels"], text_map, 1.0, index == 2))
        for key in sorted(row):
            digest.update(key.encode())
            digest.update(np.asarray(row[key]).tobytes())
    assert digest.hexdigest() == ROWS_DIGEST


def test_clip_lengths_have_the_documented_shape():
    lengths = ClipLengths()
    seconds = lengths.sample(np.random.default_rng(0), 200_000)
    assert seconds.min() >= lengths.min_s and seconds.max() <= lengths.max_s
    assert seconds.mean() == pytest.approx(6.0, abs=0.1)  # the docstring's figures
    assert np.median(seconds) == pytest.approx(4.56, abs=0.05)
    assert (seconds > 15).mean() == pytest.approx(0.028, abs=0.003)
    assert (seconds > 60).mean() == pytest.approx(0.0066, abs=0.0015)
    assert seconds.max() > 110  # the tail reaches 2 minutes
    hours = lengths.mean_s(200_000) * sum(HUME_VIDMIMIC2_CLIPS.values()) / 3600
    assert hours > 25  # "over 25 hours"
    assert lengths.clip_seconds(0, 1, 7) == lengths.clip_seconds(0, 1, 7) != lengths.clip_seconds(0, 1, 8)
    with pytest.raises(ValueError, match="median_s"):
        ClipLengths(median_s=200.0)
    with pytest.raises(ValueError, match="tail_fraction"):
        ClipLengths(tail_fraction=1.5)


def test_speech_frames_follow_wav2vec2s_feature_encoder():
    from transformers import Wav2Vec2Config

    config = Wav2Vec2Config()  # wav2vec2-base's convolutions (no download)
    for seconds in (0.03, 1.0, 4.56, 6.0, 119.99):
        length = int(round(seconds * 16000))
        for kernel, stride in zip(config.conv_kernel, config.conv_stride):
            length = (length - kernel) // stride + 1
        assert wav2vec2_frames(seconds) == max(1, length)
    assert text_tokens(10.0) == 2 + 32 and text_tokens(600.0) == 512


def test_clip_files_are_shaped_like_the_data_set(tmp_path):
    counts = {"train": 5, "validation": 3, "test": 3}
    lengths = ClipLengths(median_s=2.0, tail_fraction=0.3, tail_min_s=3.0, max_s=8.0)  # short clips: a fast test
    records = write_clip_files(tmp_path / "big", counts, lengths, first_ids=HUME_VIDMIMIC2_FIRST_IDS, seed=4)
    ids = {split: [r["clip_id"] for r in records if r["split"] == split] for split in counts}
    assert ids == {"train": ["00000", "00001", "00002", "00003", "00004"], "validation": ["08072", "08073", "08074"],
                   "test": ["12660", "12661", "12662"]}
    for record in records:
        clip = ClipFeatures.load(tmp_path / "big" / "clips" / record["split"] / f"{record['clip_id']}.npz")
        frames = int(round(record["seconds"] * 30))
        assert clip.visual_features.shape == (frames, 512) and clip.au_features.shape == (frames, 13)
        assert clip.frame_timestamps[-1] == pytest.approx((frames - 1) / 30)
        assert clip.audio_features.shape == (wav2vec2_frames(record["seconds"]), 768)
        assert clip.audio_speech_mask.shape == clip.audio_mask.shape
        assert clip.text_features.shape[1] == 768
        if clip.text_mask.any():
            assert len(clip.text_mask) == text_tokens(record["seconds"]) == record["text_tokens"]
        assert np.isnan(clip.labels).all() == (record["split"] == "test")
        arrays = [v for v in clip.columns().values() if isinstance(v, np.ndarray) and v.dtype.kind != "U"]
        assert record["array_bytes"] == sum(a.nbytes for a in arrays)
        assert record["frames"] == frames
    # a smaller count writes the first clips of a larger one, byte for byte
    small = write_clip_files(tmp_path / "small", {"train": 2, "validation": 1}, lengths, seed=4,
                             first_ids=HUME_VIDMIMIC2_FIRST_IDS)
    for record in small:
        name = Path("clips") / record["split"] / f"{record['clip_id']}.npz"
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / "big" / name).read_bytes()



def test_clip_files_merge_into_a_features_folder(tmp_path):
    """An extraction over the written files extracts nothing and merges them: the benchmark's merge step."""
    from emi_hf import EmiAudioModel, EmiVisualModel
    from emi_hf.data.extraction import run_extraction
    from emi_hf.data.store import load_feature_splits

    visual, audio = EmiVisualModel(tiny_visual_config()), EmiAudioModel(tiny_audio_config())
    counts = {"train": 3, "validation": 2}
    written = write_clip_files(tmp_path, counts, ClipLengths(median_s=1.5, max_s=3.0, tail_min_s=2.0),
                               audio_dim=audio.config.audio_feature_dim, text_dim=0)
    records = {split: [Record(r["clip_id"], tmp_path / f"{r['clip_id']}.mp4", np.asarray(r["labels"], np.float32),
                              split) for r in written if r["split"] == split] for split in counts}

    def not_called(*args, **kwargs):
        raise AssertionError("every clip was extracted already")

    report = run_extraction(records, tmp_path, SavedSettings(), visual, audio, progress=False, clip_fn=not_called)
    assert report["splits"]["train"]["extracted"] == 3 and not report["failures"]
    datasets, metadata, _ = load_feature_splits(tmp_path)
    assert metadata["audio_feature_dim"] == audio.config.audio_feature_dim
    first = datasets["train"][0]
    assert first["clip_id"] == written[0]["clip_id"]
    assert np.asarray(first["visual_features"]).shape == (written[0]["frames"], 512)
