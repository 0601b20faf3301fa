"""Bounded resources: the clip cache's size cap (LRU) and `emi-hf cache`, a model running only the stages its
modalities need, heavy objects loaded once, one copy of the features after a merge, cv folds without copies,
and training checkpoints that do not rewrite frozen backbones."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_BERT, tiny_audio_config, tiny_text_config, tiny_visual_config

from emi_hf.media.cache import ClipData


def _clip(frames: int, seed: int = 0) -> ClipData:
    rng = np.random.default_rng(seed)  # random crops: compression cannot make the entries' sizes differ much
    return ClipData(face_crops=rng.integers(0, 255, (frames, 8, 8, 3), dtype=np.uint8),
                    au_intensities=np.zeros((frames, 2), np.float32), frame_mask=np.ones(frames, np.int8),
                    timestamps=np.arange(frames, dtype=np.float64), face_boxes=np.zeros((frames, 4), np.float32),
                    waveform=None, metadata={"seed": seed})


# ----------------------------------------------------------------------------------------------------------------------
# The clip cache: a size cap, least recently used first, `emi-hf cache info|clear`
# ----------------------------------------------------------------------------------------------------------------------


def test_clip_cache_evicts_the_least_recently_used_entries_under_its_cap(tmp_path):
    from emi_hf.media.cache import ClipCache

    probe = ClipCache(tmp_path / "probe", max_size=None)
    probe.put("x", _clip(40))
    entry = probe.entries()[0][1]
    cache = ClipCache(tmp_path / "clips", max_size=int(2.5 * entry))  # room for two entries
    assert cache.put("a", _clip(40, 1)) and cache.put("b", _clip(40, 2))
    os.utime(cache.path("a"), (1000, 1000))  # a and b were written long ago, a before b
    os.utime(cache.path("b"), (2000, 2000))
    assert cache.get("a").metadata == {"seed": 1}  # a hit makes a the most recently used
    assert cache.put("c", _clip(40, 3))
    assert sorted(p.stem for p, _, _ in cache.entries()) == ["a", "c"]  # b, used longest ago, went
    assert cache.get("b") is None
    info = cache.info()
    assert info["entries"] == 2 and info["bytes"] <= cache.max_size
    # An entry larger than the whole cap is not kept; a cap of 0 writes nothing.
    assert not ClipCache(tmp_path / "small", max_size=entry // 2).put("big", _clip(40))
    assert not ClipCache(tmp_path / "off", max_size=0).put("a", _clip(4)) and not (tmp_path / "off").exists()
    # A temporary file left by a crashed writer goes once it is old.
    stale = cache.folder / "dead.npz.tmp"
    stale.write_bytes(b"x" * 10)
    os.utime(stale, (1000, 1000))
    cache.put("d", _clip(4))
    assert not stale.exists()


def test_cache_cap_location_and_size_come_from_the_environment(tmp_path, monkeypatch, media_dir):
    from emi_hf.media import ClipPipeline, ClipSettings
    from emi_hf.media.cache import ClipCache, cache_root, default_cache_dir, parse_size

    for name in ("EMI_HF_CACHE", "HF_HOME", "XDG_CACHE_HOME", "EMI_HF_CACHE_MAX_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "emi_hf" / "clips"  # where it always was
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "emi_hf" / "clips"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert default_cache_dir() == tmp_path / "hf" / "emi_hf" / "clips" and cache_root() == tmp_path / "hf" / "emi_hf"
    monkeypatch.setenv("EMI_HF_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert ClipCache().max_size == 10 * 1000**3  # the default cap
    assert parse_size("1.5GiB") == int(1.5 * 2**30) and parse_size("500 MB") == 500 * 10**6
    assert parse_size("none") is None and parse_size("0") == 0
    monkeypatch.setenv("EMI_HF_CACHE_MAX_SIZE", "ten gigs")
    with pytest.raises(ValueError, match="EMI_HF_CACHE_MAX_SIZE='ten gigs' is not a size"):
        ClipCache()
    # The pipeline writes through the capped cache: a cap below one clip keeps none, one above keeps the newest.
    pipeline = ClipPipeline(ClipSettings(face_detector="mediapipe", max_frames=4))
    monkeypatch.setenv("EMI_HF_CACHE_MAX_SIZE", "1kB")
    pipeline.process(media_dir / "single_face.mp4")
    assert not list((tmp_path / "env").glob("*.npz"))
    monkeypatch.setenv("EMI_HF_CACHE_MAX_SIZE", "none")
    pipeline.process(media_dir / "single_face.mp4")
    (entry,) = (tmp_path / "env").glob("*.npz")
    monkeypatch.setenv("EMI_HF_CACHE_MAX_SIZE", str(int(entry.stat().st_size * 1.5)))
    os.utime(entry, (1000, 1000))
    other = ClipPipeline(ClipSettings(face_detector="mediapipe", max_frames=5))  # another entry, about as big
    other.process(media_dir / "single_face.mp4")
    (kept,) = (tmp_path / "env").glob("*.npz")
    assert kept != entry  # the older entry made room for the newer one
    assert other.process(media_dir / "single_face.mp4").metadata["cache_hit"] is True


def test_cli_cache_info_and_clear(tmp_path, capsys):
    from emi_hf.cli import main as cli
    from emi_hf.media.cache import ClipCache
    from emi_hf.text.cache import TranscriptCache
    from emi_hf.text.transcript import Transcript

    cache = ClipCache(tmp_path / "clips", max_size=None)
    for i in range(3):
        cache.put(f"k{i}", _clip(10, i))
    TranscriptCache(tmp_path / "transcripts").put("t", Transcript(text="hello"))
    folders = ["--dir", str(tmp_path / "clips"), "--transcripts-dir", str(tmp_path / "transcripts")]
    assert cli(["cache", "info", *folders]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "clips") in out and "entries    3" in out and "10.00 GB" in out and "entries    1" in out
    assert cli(["cache", "clear", *folders]) == 0
    assert "removed 3 clip entries" in capsys.readouterr().out and not cache.entries()
    assert len(list((tmp_path / "transcripts").glob("*.json"))) == 1  # transcripts only with --transcripts
    assert cli(["cache", "clear", "--transcripts", *folders]) == 0
    assert "removed 1 transcripts" in capsys.readouterr().out
    assert not list((tmp_path / "transcripts").glob("*.json"))


# ----------------------------------------------------------------------------------------------------------------------
# A model runs only the stages its modalities need (one rule: emi_hf.media.stages, read by predict, demo, stream)
# ----------------------------------------------------------------------------------------------------------------------


def _checkpoint(folder: Path, model) -> Path:
    from emi_hf.processing_emi import EmiProcessor

    model.save_pretrained(folder)
    EmiProcessor(face_detector="mediapipe", target_fps=10, use_cache=False).save_pretrained(folder)
    return folder


class _Forbidden:
    def __init__(self, what: str):
        self.what = what

    def __call__(self, *args, **kwargs):
        raise AssertionError(f"{self.what} ran for a model that does not need it")


def test_stage_rule():
    from emi_hf.media.stages import ClipStages

    assert ClipStages.for_modalities(["audio"]) == ClipStages(faces=False, audio=True, frame_times=True)
    assert ClipStages.for_modalities(["visual"]) == ClipStages(faces=True, audio=False, frame_times=True)
    assert ClipStages.for_modalities(["text"]) == ClipStages(faces=False, audio=False, frame_times=False)
    assert ClipStages.for_modalities(["visual", "audio", "text"]).complete
    with pytest.raises(ValueError, match="unknown modalities"):
        ClipStages.for_modalities(["smell"])


def test_audio_model_predict_runs_no_face_stage(tmp_path, media_dir, monkeypatch):
    """No face detector, mesh, AUs, crops, clip cache or pixel collate for an audio model; the same numbers as the
    full processor path."""
    from emi_hf import EmiAudioModel
    from emi_hf.inference import load_for_inference, predict_clips
    from emi_hf.media import pipeline as pipeline_module

    model, processor = load_for_inference(_checkpoint(tmp_path / "audio", EmiAudioModel(tiny_audio_config())))
    clip = media_dir / "single_face.mp4"
    with torch.inference_mode():  # what the whole processor gives the model (every stage)
        expected = model(**processor(videos=clip).for_model(model)).intensities[0]
    monkeypatch.setenv("EMI_HF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pipeline_module, "build_face_detector", _Forbidden("the face detector"))
    monkeypatch.setattr(pipeline_module.FaceMeshLandmarker, "for_this_thread", _Forbidden("the face mesh"))
    monkeypatch.setattr(pipeline_module.ClipPipeline, "au_inputs", _Forbidden("AU extraction"))
    monkeypatch.setattr(pipeline_module, "clip_cache_key", _Forbidden("the clip cache"))
    monkeypatch.setattr(processor, "video_processor", _Forbidden("the pixel collate"))
    processor._pipeline = None  # built again, with the forbidden detector
    (prediction,) = predict_clips(model, processor, [clip], use_cache=True)
    torch.testing.assert_close(torch.tensor(list(prediction.intensities.values())), expected.float())
    assert prediction.face_fraction is None and prediction.audio_present is True and prediction.face_crops is None
    assert len(prediction.timestamps) == 24  # 2.4 s at 10 fps: the frames' times are still read
    assert len(prediction.to_dict()["frame_intensities"]) == 24
    assert not (tmp_path / "cache").exists()


def test_visual_model_decodes_no_audio_and_text_model_no_video(tmp_path, media_dir, monkeypatch):
    from emi_hf import EmiTextModel, EmiVisualModel
    from emi_hf.inference import TextSide, load_for_inference, predict_clips
    from emi_hf.media import pipeline as pipeline_module
    from emi_hf.text import build_word_tokenizer

    model, processor = load_for_inference(_checkpoint(tmp_path / "visual", EmiVisualModel(tiny_visual_config())))
    clip = media_dir / "single_face.mp4"
    with torch.inference_mode():
        expected = model(**processor(videos=clip).for_model(model)).intensities[0]
    monkeypatch.setattr(pipeline_module, "decode_audio", _Forbidden("audio decoding"))
    (prediction,) = predict_clips(model, processor, [clip])
    torch.testing.assert_close(torch.tensor(list(prediction.intensities.values())), expected.float())
    assert prediction.audio_present is None and prediction.face_fraction > 0.5

    tokenizer = build_word_tokenizer(["hello there"], tmp_path / "text" / "text_tokenizer")
    text = EmiTextModel(tiny_text_config(text_encoder_config={**TINY_BERT, "vocab_size": len(tokenizer)}))
    model, processor = load_for_inference(_checkpoint(tmp_path / "text", text))
    (tmp_path / "transcripts.csv").write_text("Filename,text\nsingle_face,hello there\n")
    monkeypatch.setattr(pipeline_module, "iter_video_frames", _Forbidden("video decoding"))
    (prediction,) = predict_clips(model, processor, [clip],
                                  text_side=TextSide(model, transcripts=tmp_path / "transcripts.csv"))
    assert prediction.transcript == "hello there" and set(prediction.modality_intensities) == {"text"}
    assert prediction.face_fraction is None and prediction.audio_present is None
    assert prediction.duration == pytest.approx(2.4, abs=0.1)  # from the container's header
    assert not prediction.warnings  # e.g. no "looks truncated" for frames that were never decoded


def test_streamer_reads_the_same_stage_rule(tmp_path, monkeypatch):
    from emi_hf import EmiAudioModel
    from emi_hf.inference import load_for_inference
    from emi_hf.media import pipeline as pipeline_module
    from emi_hf.streaming import EmiStreamer
    from emi_hf.media.faces import FaceMeshLandmarker

    model, processor = load_for_inference(_checkpoint(tmp_path / "audio", EmiAudioModel(tiny_audio_config())))
    monkeypatch.setattr(pipeline_module, "build_face_detector", _Forbidden("the face detector"))
    monkeypatch.setattr(FaceMeshLandmarker, "for_this_thread", _Forbidden("the face mesh"))
    monkeypatch.setattr(FaceMeshLandmarker, "borrowed", _Forbidden("the face mesh"))
    with EmiStreamer(model, processor, window_s=1.0, hop_s=0.5) as streamer:
        rng = np.random.default_rng(0)
        for k in range(12):
            streamer.push_frame(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), k / 10, block=True)
            streamer.push_audio(rng.normal(0, 0.1, 1600).astype(np.float32), 16000, k / 10)
        updates = streamer.flush()
    assert updates and all(u.num_frames == 0 and "audio" in u.per_modality for u in updates)


# ----------------------------------------------------------------------------------------------------------------------
# Heavy objects load once per run
# ----------------------------------------------------------------------------------------------------------------------


def test_asr_loads_once_across_predict_calls(tmp_path, media_dir, monkeypatch):
    from emi_hf import EmiTextModel
    from emi_hf.inference import load_for_inference, predict_clips
    from emi_hf.text import asr as asr_module
    from emi_hf.text import build_word_tokenizer
    from emi_hf.text import vad as vad_module
    from emi_hf.text.random_whisper import build_random_whisper

    whisper = build_random_whisper(tmp_path / "whisper", max_new_tokens=4)
    tokenizer = build_word_tokenizer(["hello there"], tmp_path / "text" / "text_tokenizer")
    config = tiny_text_config(text_encoder_config={**TINY_BERT, "vocab_size": len(tokenizer)},
                              asr_backend="transformers", asr_model=str(whisper), asr_language="en")
    model, processor = load_for_inference(_checkpoint(tmp_path / "text", EmiTextModel(config)))
    monkeypatch.setenv("EMI_HF_CACHE", str(tmp_path / "cache"))
    loads = {"asr": 0, "vad": 0}
    pipeline, silero = asr_module.TransformersAsr._load, vad_module._load_silero

    def counted_asr(self):
        loads["asr"] += self._pipeline is None
        return pipeline(self)

    def counted_vad():
        loads["vad"] += 1
        return silero()

    monkeypatch.setattr(asr_module.TransformersAsr, "_load", counted_asr)
    monkeypatch.setattr(vad_module, "_load_silero", counted_vad)
    for name in ("debate_5s.mp4", "debate_5s_16k.wav"):  # two files: neither is in the transcript cache
        (prediction,) = predict_clips(model, processor, [media_dir / name])
        assert prediction.transcript is not None
    assert loads == {"asr": 1, "vad": 1}


# ----------------------------------------------------------------------------------------------------------------------
# cv: no copy of the features per fold
# ----------------------------------------------------------------------------------------------------------------------


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def tiny_features(tmp_path_factory) -> Path:
    from emi_hf import EmiAudioModel, EmiVisualModel
    from emi_hf.data.random_features import make_feature_dataset

    torch.manual_seed(0)
    return make_feature_dataset(
        tmp_path_factory.mktemp("features"), num_train=30, num_valid=15,
        base_models={"visual": EmiVisualModel(tiny_visual_config()), "audio": EmiAudioModel(tiny_audio_config())})


def test_cv_folds_are_index_views_not_copies(tiny_features, tmp_path):
    from datasets import concatenate_datasets

    from emi_hf.data.store import load_features
    from emi_hf.training import EmiTrainingArguments
    from emi_hf.training.cv import CVArguments, assign_folds, fold_splits, run_cv
    from emi_hf.training.data import FeatureTable

    before = _files(tiny_features)
    data = load_features(tiny_features)
    pooled = concatenate_datasets([data["train"], data["validation"]])
    fold = fold_splits(pooled, assign_folds(pooled["clip_id"], 3, seed=0), 0)["train"]
    columns = ("visual_features", "au_features", "frame_mask", "audio_features", "audio_mask")
    view = FeatureTable(fold, columns)
    assert _files(tiny_features) == before  # reading a fold wrote nothing
    copy = FeatureTable(fold.flatten_indices(keep_in_memory=True), columns)  # what a copy would hold
    assert view.clip_ids == copy.clip_ids and np.array_equal(view.labels, copy.labels, equal_nan=True)
    for column in columns:
        assert all(np.array_equal(a, b) for a, b in zip(view[column], copy[column]))
    run_cv(EmiTrainingArguments(features=str(tiny_features), modality="visual", output_dir=str(tmp_path / "cv"),
                             hidden_size=32, num_hidden_layers=1, num_attention_heads=2, tcn_dilations=[1, 2],
                             batch_size=8, report_to="none", max_frames=16, epochs=1, checkpoint_every_epoch=False),
           CVArguments(folds=3))
    assert _files(tiny_features) == before  # no fold was written next to the features (cache-*.arrow)
    assert not list((tmp_path / "cv").rglob("*.arrow"))  # nor anywhere else


# ----------------------------------------------------------------------------------------------------------------------
# Extraction leaves one copy of the features
# ----------------------------------------------------------------------------------------------------------------------


def _extract(records, output, models, clip_fn):
    from helpers import SavedSettings

    from emi_hf.data.extraction import run_extraction

    return run_extraction(records, output, SavedSettings(), *models, progress=False, clip_fn=clip_fn)


def _dataset_rows(folder: Path) -> dict:
    from emi_hf.data.store import load_features

    return {split: {row["clip_id"]: row for row in part.with_format("numpy")}
            for split, part in load_features(folder).items()}


def _same_rows(a: dict, b: dict) -> None:
    assert {s: sorted(r) for s, r in a.items()} == {s: sorted(r) for s, r in b.items()}
    for split in a:
        for clip_id, row in a[split].items():
            for column, value in row.items():
                np.testing.assert_array_equal(value, b[split][clip_id][column], err_msg=f"{split} {clip_id} {column}")


@pytest.fixture(scope="module")
def extraction_models():
    from emi_hf import EmiAudioModel, EmiVisualModel

    return EmiVisualModel(tiny_visual_config()), EmiAudioModel(tiny_audio_config())


def test_extraction_leaves_one_copy_of_the_features(tmp_path, extraction_models):
    from test_features import fake_clip, make_records

    output = tmp_path / "features"
    _extract(make_records(tmp_path), output, extraction_models, fake_clip)
    assert not list(output.rglob("*.npz"))  # the per-clip files went once the dataset was verified
    dataset = _files(output / "dataset")
    other = {name: size for name, size in _files(output).items()
             if not name.startswith(("dataset/", "base_visual/", "base_audio/", "processor/"))}
    assert sum(other.values()) < 64_000, other  # reports, logs and metadata: no second copy of any features
    assert sum(dataset.values()) > 64_000
    assert {p.name for p in output.iterdir()} >= {"dataset", "clips"} and not list(output.glob("dataset.*"))
    assert not list(output.glob("tmp*")) and not list(output.glob("generator-*"))  # no generator cache is left
    rows = _dataset_rows(output)
    assert sorted(rows["train"]) == ["00000", "00001", "00002", "00004", "00005"]  # 00003 failed
    expected = fake_clip(None, *extraction_models, None, "00004", rows["train"]["00004"]["labels"])
    np.testing.assert_array_equal(rows["train"]["00004"]["visual_features"], expected.visual_features)


def test_resume_retry_and_added_split_after_the_files_are_gone(tmp_path, extraction_models):
    from test_features import fake_clip, make_records

    from emi_hf.data.extraction import ClipFeatures

    from dataclasses import replace

    records = make_records(tmp_path)
    calls, fixed = [], []

    def counting(*args):
        calls.append(args[4])
        if args[4] == "00003" and fixed:  # fails on the first run, is fixed before the retry
            return replace(fake_clip(*args[:4], "00002", args[5]), clip_id="00003")
        return fake_clip(*args)

    first = _extract({s: records[s] for s in ("train", "validation")}, tmp_path / "out", extraction_models, counting)
    assert sorted(calls) == [f"{i:05d}" for i in range(9)] and first["splits"]["train"]["extracted"] == 5
    merged = _dataset_rows(tmp_path / "out")
    calls.clear()
    fixed.append(True)
    second = _extract({s: records[s] for s in ("train", "validation")}, tmp_path / "out", extraction_models, counting)
    assert calls == ["00003"], "merged clips are not extracted again; the failed one is retried"
    assert second["splits"]["train"] == {"requested": 6, "extracted": 6, "failed": 0} and not second["failures"]
    again = _dataset_rows(tmp_path / "out")
    assert sorted(again["train"]) == [f"{i:05d}" for i in range(6)]
    _same_rows({s: {c: r for c, r in rows.items()} for s, rows in merged.items()},
               {s: {c: r for c, r in rows.items() if c != "00003"} for s, rows in again.items()})
    calls.clear()
    third = _extract({"test": records["test"]}, tmp_path / "out", extraction_models, counting)  # a split added
    assert calls == ["00009"]
    assert set(third["splits"]) == {"train", "validation", "test"}
    added = _dataset_rows(tmp_path / "out")
    _same_rows({s: again[s] for s in again}, {s: added[s] for s in again})  # the others kept as they were
    assert list(added["test"]) == ["00009"] and not list((tmp_path / "out").rglob("*.npz"))
    # A clip the next run no longer lists leaves the dataset, and is kept as its per-clip file.
    fewer = {"train": records["train"][:4], "validation": records["validation"]}
    _extract(fewer, tmp_path / "out", extraction_models, counting)
    assert sorted(_dataset_rows(tmp_path / "out")["train"]) == ["00000", "00001", "00002", "00003"]
    assert sorted(p.stem for p in (tmp_path / "out" / "clips" / "train").glob("*.npz")) == ["00004", "00005"]
    kept = ClipFeatures.load(tmp_path / "out" / "clips" / "train" / "00004.npz").columns()
    for column, value in again["train"]["00004"].items():  # the row, unchanged
        np.testing.assert_array_equal(np.asarray(kept[column]), value, err_msg=column)


def test_a_failed_or_interrupted_merge_loses_nothing(tmp_path, extraction_models, monkeypatch):
    from test_features import fake_clip, make_records

    from emi_hf.data import merge as merge_module
    from emi_hf.data.merge import recover_interrupted_merge

    records = make_records(tmp_path)
    output = tmp_path / "out"
    _extract({"train": records["train"]}, output, extraction_models, fake_clip)
    before = _dataset_rows(output)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(merge_module, "_write_split", broken)
    with pytest.raises(OSError, match="disk full"):
        _extract({"train": records["train"], "validation": records["validation"]}, output, extraction_models,
                 fake_clip)
    assert len(list((output / "clips" / "validation").glob("*.npz"))) == 3  # the new clips' files are kept
    _same_rows(before, _dataset_rows(output))  # and the dataset is the one before
    monkeypatch.undo()
    (output / "dataset").rename(output / "dataset.previous")  # killed between the two renames of the swap
    recover_interrupted_merge(output)
    _same_rows(before, _dataset_rows(output))
    _extract({"train": records["train"], "validation": records["validation"]}, output, extraction_models,
             fake_clip)
    assert sorted(_dataset_rows(output)) == ["train", "validation"] and not list(output.rglob("*.npz"))


# ----------------------------------------------------------------------------------------------------------------------
# Training checkpoints do not rewrite the frozen backbones at every improvement
# ----------------------------------------------------------------------------------------------------------------------


def test_improving_epochs_do_not_rewrite_the_frozen_backbones(tiny_features, tmp_path, monkeypatch):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from emi_hf import EmiVisualModel
    from emi_hf.training import EmiTrainingArguments, train

    writes = []
    save_pretrained = EmiVisualModel.save_pretrained

    def counted(self, folder, *args, **kwargs):
        writes.append(Path(folder))
        return save_pretrained(self, folder, *args, **kwargs)

    monkeypatch.setattr(EmiVisualModel, "save_pretrained", counted)
    output = tmp_path / "run"
    seen = []

    def on_epoch_end(epoch, state):
        assert state.best_epoch == epoch  # every epoch improves (the evaluation split is trained on)
        seen.append((output / "model.safetensors").stat().st_mtime_ns)

    args = EmiTrainingArguments(features=str(tiny_features), modality="visual", output_dir=str(output), epochs=3,
                             hidden_size=32, num_hidden_layers=1, num_attention_heads=2, tcn_dilations=[1, 2],
                             batch_size=8, report_to="none", max_frames=16, train_splits=["train", "validation"],
                             checkpoint_every_epoch=True, keep_checkpoints=1)
    train(args, on_epoch_end=on_epoch_end)
    assert len(set(seen)) == 1, "the complete model (frozen backbone included) was written at the first improvement only"
    assert writes == [output, output], "and once more at the end, for the best epoch's weights"
    assert not list(output.rglob("best_trainable*"))
    final = load_file(output / "model.safetensors")
    backbone = {name for name, _ in EmiVisualModel.from_pretrained(output).named_parameters()
                if name.startswith("backbone.")}  # the frozen ResNet18's weights
    (checkpoint,) = (output / "checkpoints").glob("epoch_*")
    with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as handle:
        saved = set(handle.keys())
        assert not saved & backbone, "epoch checkpoints leave the frozen weights out (buffers are kept: small)"
        assert sum(handle.get_tensor(k).numel() for k in saved) < sum(final[k].numel() for k in backbone) / 20
        for name in saved:  # the last epoch is the best one: its trained weights are the final model's
            torch.testing.assert_close(handle.get_tensor(name), final[name], atol=0, rtol=0)
    base = load_file(tiny_features / "base_visual" / "model.safetensors")
    for name in backbone:
        torch.testing.assert_close(final[name], base[name], atol=0, rtol=0)
    resumed = EmiTrainingArguments(**{**args.__dict__, "epochs": 4, "resume": "auto"})
    train(resumed)  # resuming from a checkpoint without the frozen weights
    assert EmiVisualModel.from_pretrained(output).config.model_type == "emi_visual"


def test_the_assembled_best_model_equals_saving_it_at_its_epoch(tmp_path):
    from helpers import intensities_without_emi_hf

    from emi_hf import EmiAudioModel
    from emi_hf.training.best_model import BestModelWriter

    torch.manual_seed(0)
    model = EmiAudioModel(tiny_audio_config())
    trains = [p for p in model.parameters() if p.requires_grad]
    assert any(not p.requires_grad for p in model.parameters())
    writer = BestModelWriter(tmp_path / "run")
    writer.save(model)  # epoch 1: complete
    with torch.no_grad():
        for p in trains:
            p.add_(0.1)
    writer.save(model)  # epoch 2, better: only what trains
    model.save_pretrained(tmp_path / "reference")  # what a save_pretrained at the best epoch writes
    with torch.no_grad():
        for p in trains:
            p.add_(0.1)  # epoch 3, not better
    assert writer.finish(model) and writer.complete_writes == 2
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes()
    inputs = {"input_values": torch.randn(1, 3200), "attention_mask": torch.ones(1, 3200, dtype=torch.long)}
    with torch.no_grad():
        expected = EmiAudioModel.from_pretrained(tmp_path / "reference").eval()(**inputs).intensities
    (tmp_path / "remote").mkdir()
    got = intensities_without_emi_hf(tmp_path / "run", inputs, tmp_path / "remote", "EmiAudioModel")
    torch.testing.assert_close(got, expected)
    # A file of another model's parts is refused, naming it.
    (tmp_path / "run" / "checkpoints" / "best_trainable.safetensors").write_bytes(b"")
    other = BestModelWriter(tmp_path / "run")
    from safetensors.torch import save_file

    save_file({"head.weight": torch.zeros(1)}, str(other.trainable_file))
    with pytest.raises(RuntimeError, match="best_trainable.safetensors does not match"):
        other.finish(model)


# ----------------------------------------------------------------------------------------------------------------------
# Memory of a server: face-mesh graphs per clip in progress, not per worker thread
# ----------------------------------------------------------------------------------------------------------------------


def test_face_mesh_graphs_are_pooled_not_kept_per_thread(media_dir, monkeypatch):
    import threading

    from emi_hf.media import ClipPipeline, ClipSettings
    from emi_hf.media import faces as faces_module

    built = []
    init = faces_module.FaceMeshLandmarker.__init__

    def counted(self, *args, **kwargs):
        built.append(threading.get_ident())
        init(self, *args, **kwargs)

    monkeypatch.setattr(faces_module.FaceMeshLandmarker, "__init__", counted)
    monkeypatch.setattr(faces_module, "_IDLE_LANDMARKERS", {}, raising=False)  # an empty pool
    pipeline = ClipPipeline(ClipSettings(face_detector="mediapipe", max_frames=3, mesh_refine=False))
    results = []
    for _ in range(4):  # a server's worker threads, one request after the other
        worker = threading.Thread(target=lambda: results.append(
            pipeline.process(media_dir / "single_face.mp4", use_cache=False)))
        worker.start()
        worker.join()
    assert len(results) == 4 and all(r.face_fraction > 0 for r in results)
    assert len(built) == 1, "one graph, borrowed by each clip in turn"
