"""Long clips: one inference rule. A clip longer than a model's `temporal_window` (the span training showed it) is
scored over overlapping windows of that span, stitched (`temporal_emi.TemporalEncoder`), by every path: predict,
extract + submit, evaluate, training's evaluation, streaming, `trust_remote_code` without emi_hf."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from helpers import TINY_WAV2VEC2, intensities_without_emi_hf, tiny_audio_config, tiny_text_config, tiny_visual_config

from emi_hf import EmiAudioModel, EmiFusionModel, EmiTextModel, EmiVisualModel


def visual_inputs(lengths, frames=None, seed=0):
    """A visual batch of clips of `lengths` frames (all with a face), padded to `frames`."""
    generator = torch.Generator().manual_seed(seed)
    frames = frames or max(lengths)
    mask = (torch.arange(frames)[None] < torch.tensor(lengths)[:, None]).long()
    return {"visual_features": torch.randn(len(lengths), frames, 512, generator=generator) * mask[..., None],
            "au_features": torch.rand(len(lengths), frames, 13, generator=generator) * mask[..., None],
            "frame_mask": mask}


def one_clip(inputs: dict, i: int, length: int) -> dict:
    return {k: v[i : i + 1, :length] for k, v in inputs.items()}


# The rule --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [1, 2, 7, 16, 512])
def test_windows_cover_the_clip_with_at_least_half_overlap(window):
    from emi_hf.temporal_emi import window_starts

    for length in [1, window - 1, window, window + 1, 2 * window, 3 * window + 5, 10 * window + 3]:
        if length < 1:
            continue
        starts = window_starts(length, window)
        if length <= window:
            assert starts == [0]
            continue
        assert starts[0] == 0 and starts[-1] + window == length  # the first at the start, the last at the end
        hops = np.diff(starts)
        assert (hops >= 1).all() and (hops <= max(window // 2, 1)).all()  # at least 50% overlap
        assert hops.max() - hops.min() <= 1  # evenly spread
        assert len(starts) == -(-(length - window) // max(window // 2, 1)) + 1


@pytest.mark.parametrize("kind", ["visual", "audio", "text"])
def test_windowed_forward_is_the_plain_forward_within_the_window(kind):
    """Clips of at most `temporal_window` frames (and batches of them, whatever their padding) take the single
    pass: bit for bit what the model gives without a window."""
    torch.manual_seed(0)
    if kind == "visual":
        model, inputs = EmiVisualModel(tiny_visual_config(temporal_window=12)), visual_inputs([12, 5, 9], frames=20)
    elif kind == "audio":
        model = EmiAudioModel(tiny_audio_config(temporal_window=12))
        inputs = {"audio_features": torch.randn(3, 20, 32), "audio_mask": visual_inputs([12, 5, 0], 20)["frame_mask"]}
    else:
        model = EmiTextModel(tiny_text_config(temporal_window=12))
        inputs = {"text_features": torch.randn(3, 20, 24), "text_mask": visual_inputs([3, 12, 1], 20)["frame_mask"]}
    model.eval()
    with torch.no_grad():
        windowed = model(**inputs, output_hidden_states=True, output_attentions=True)
        model.config.temporal_window = None
        plain = model(**inputs, output_hidden_states=True, output_attentions=True)
    for name in ("intensities", "frame_intensities", "pooler_output", "last_hidden_state"):
        torch.testing.assert_close(getattr(windowed, name), getattr(plain, name), atol=0, rtol=0, equal_nan=True)
    for a, b in zip(windowed.hidden_states + windowed.attentions, plain.hidden_states + plain.attentions):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_a_long_clip_is_encoded_at_trained_positions_only(monkeypatch):
    """No encoder pass over a long clip is longer than the window: no sinusoidal position past W - 1 is used."""
    import emi_hf.temporal_emi as temporal

    lengths, original = [], temporal.sinusoidal_positions
    monkeypatch.setattr(temporal, "sinusoidal_positions", lambda n, *a: (lengths.append(n), original(n, *a))[1])
    torch.manual_seed(0)
    model = EmiVisualModel(tiny_visual_config(temporal_window=16)).eval()
    with torch.no_grad():
        windowed = model(**visual_inputs([100]))
        model.config.temporal_window = None
        plain = model(**visual_inputs([100]))
    assert lengths == [16, 100]
    assert (windowed.intensities - plain.intensities).abs().max() > 1e-3  # the rule changes long clips' numbers


def test_batch_padding_changes_no_clip():
    """Short and long clips batched together (and a long clip whose last frames have no face) give what each gives
    alone, to 1e-6: windows are placed by each clip's own length."""
    torch.manual_seed(0)
    model = EmiVisualModel(tiny_visual_config(temporal_window=16, pooling="attention")).eval()
    lengths = [70, 9, 33, 16]
    inputs = visual_inputs(lengths, frames=80)
    inputs["frame_mask"][2, 30:] = 0  # clip 2: no face in its last 3 frames
    inputs["frame_mask"][0, 20:25] = 0  # clip 0: no face in the middle
    with torch.no_grad():
        batched = model(**inputs)
        for i, length in enumerate(lengths):
            alone = model(**one_clip(inputs, i, length))
            torch.testing.assert_close(batched.intensities[i], alone.intensities[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(batched.pooler_output[i], alone.pooler_output[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(batched.frame_intensities[i, :length], alone.frame_intensities[0],
                                       atol=1e-6, rtol=0, equal_nan=True)
            assert batched.frame_intensities[i, length:].isnan().all()


def test_fusion_and_feature_fusion_use_windowed_parts():
    """A fusion model's parts window their own long inputs (each its own window); the fused and the feature-level
    intensities come from those parts, in a batch as alone."""
    torch.manual_seed(0)
    visual, audio = tiny_visual_config(temporal_window=8), tiny_audio_config(temporal_window=24)
    for fusion_type in ("late", "feature"):
        model = EmiFusionModel.from_unimodal(visual=EmiVisualModel(visual), audio=EmiAudioModel(audio),
                                             fusion_type=fusion_type).eval()
        inputs = {**visual_inputs([30, 6], seed=1), "audio_features": torch.randn(2, 90, 32),
                  "audio_mask": visual_inputs([90, 20], seed=2)["frame_mask"]}
        with torch.no_grad():
            batched = model(**inputs)
            alone = model(**{**one_clip(inputs, 0, 30), "audio_features": inputs["audio_features"][:1],
                             "audio_mask": inputs["audio_mask"][:1]})
            visual_alone = model.visual(**one_clip({k: inputs[k] for k in ("visual_features", "au_features",
                                                                           "frame_mask")}, 0, 30))
        torch.testing.assert_close(batched.intensities[0], alone.intensities[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(batched.visual_intensities[0], visual_alone.intensities[0], atol=1e-6, rtol=0)


# Where the window comes from ---------------------------------------------------------------------------------------------


def test_a_checkpoint_carries_its_windows_without_results_json(tmp_path):
    """The window is in config.json: a folder without results.json (as pulled from the Hub) keeps it, and so does a
    `trust_remote_code` load in a Python without emi_hf, which scores a long clip by the same rule."""
    from transformers import AutoModel

    torch.manual_seed(0)
    model = EmiVisualModel(tiny_visual_config(temporal_window=24)).eval()
    model.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "config.json").read_text())["temporal_window"] == 24
    assert not (tmp_path / "model" / "results.json").exists()
    loaded = AutoModel.from_pretrained(tmp_path / "model").eval()
    assert loaded.config.temporal_window == 24
    inputs = visual_inputs([100, 30])
    with torch.no_grad():
        expected = model(**inputs).intensities
        model.config.temporal_window = None
        unwindowed = model(**inputs).intensities
    assert (expected[0] - unwindowed[0]).abs().max() > 1e-3  # the 100-frame clip is windowed
    torch.testing.assert_close(loaded(**inputs).intensities.detach(), expected, atol=0, rtol=0)
    remote = intensities_without_emi_hf(tmp_path / "model", inputs, tmp_path, "EmiVisualModel")
    torch.testing.assert_close(remote, expected, atol=1e-6, rtol=0)


def test_checkpoint_of_an_earlier_version_takes_its_windows_from_results_json(tmp_path):
    """A config.json without `temporal_window` (written by an earlier version): the caps of the run's results.json
    (null: no cap, no window), else 512 / 1024; a text part keeps None; ensemble members too."""
    from transformers import AutoModel

    from emi_hf.modeling_ensemble_emi import EmiEnsembleModel

    torch.manual_seed(0)
    fusion = EmiFusionModel.from_unimodal(visual=EmiVisualModel(tiny_visual_config()),
                                          audio=EmiAudioModel(tiny_audio_config()),
                                          text=EmiTextModel(tiny_text_config()))
    fusion.save_pretrained(tmp_path / "fusion")
    config = json.loads((tmp_path / "fusion" / "config.json").read_text())
    for name in ("visual_config", "audio_config", "text_config"):
        config[name].pop("temporal_window")
    (tmp_path / "fusion" / "config.json").write_text(json.dumps(config))
    loaded = AutoModel.from_pretrained(tmp_path / "fusion").config
    assert (loaded.visual_config.temporal_window, loaded.audio_config.temporal_window) == (512, 1024)
    assert loaded.text_config.temporal_window is None
    (tmp_path / "fusion" / "results.json").write_text(json.dumps(
        {"modality": "fusion", "training": {"max_frames": 40, "max_audio_frames": None}}))
    loaded = EmiFusionModel.from_pretrained(tmp_path / "fusion").config
    assert (loaded.visual_config.temporal_window, loaded.audio_config.temporal_window) == (40, None)

    EmiEnsembleModel.from_members([EmiVisualModel(tiny_visual_config()) for _ in range(2)]).save_pretrained(
        tmp_path / "ensemble")
    config = json.loads((tmp_path / "ensemble" / "config.json").read_text())
    for member in config["members"]:
        member.pop("temporal_window")
    (tmp_path / "ensemble" / "config.json").write_text(json.dumps(config))
    (tmp_path / "ensemble" / "results.json").write_text(json.dumps({"modality": "visual",
                                                                    "training": {"max_frames": 33}}))
    ensemble = AutoModel.from_pretrained(tmp_path / "ensemble")
    assert [m.config.temporal_window for m in ensemble.members] == [33, 33]
    assert [m["temporal_window"] for m in ensemble.config.members] == [33, 33]  # and saved so


def test_training_sets_the_window_from_its_caps_and_its_clips(tmp_path):
    """The window is the span training showed the model: the cap, or the longest training clip when shorter; the
    run's own evaluation reads whole clips, as `evaluate_model` does, and they agree."""
    from emi_hf.data.random_features import make_feature_dataset
    from emi_hf.data.store import load_feature_splits
    from emi_hf.training import EmiTrainingArguments, evaluate_model, train

    features = make_feature_dataset(tmp_path / "features", num_train=12, num_valid=8, frames=(6, 30),
                                    audio_frames=(8, 12), no_face_fraction=0.0)
    datasets, _, _ = load_feature_splits(features)
    longest_audio = max(len(a) for a in datasets["train"]["audio_features"])
    flags = dict(features=str(features), epochs=1, batch_size=4, report_to="none", hidden_size=32,
                 num_attention_heads=2, num_hidden_layers=1, tcn_dilations=[1, 2], no_base_model=True)
    results = train(EmiTrainingArguments(**flags, modality="visual", output_dir=str(tmp_path / "visual"), max_frames=8))
    assert EmiVisualModel.from_pretrained(tmp_path / "visual").config.temporal_window == 8
    assert any(len(v) > 8 for v in datasets["validation"]["visual_features"])  # windowed in evaluation
    evaluated, _, _ = evaluate_model(tmp_path / "visual", features, "validation", num_resamples=0)
    assert evaluated["mean_pearson"] == pytest.approx(results["validation"]["mean_pearson"], abs=1e-6)
    train(EmiTrainingArguments(**flags, modality="audio", output_dir=str(tmp_path / "audio"), max_audio_frames=500))
    assert EmiAudioModel.from_pretrained(tmp_path / "audio").config.temporal_window == longest_audio


# Every path -------------------------------------------------------------------------------------------------------------


def loop_clip(source, target, times: int):
    """`source` played `times` times in a row, re-encoded with PyAV (H.264 + AAC, 16 kHz mono): a long real clip."""
    import av

    with av.open(str(source)) as container:
        rate = container.streams.video[0].average_rate
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with av.open(str(source)) as container:
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=16000)
        waveform = np.concatenate([out.to_ndarray()[0] for frame in container.decode(audio=0)
                                   for out in resampler.resample(frame)])
    waveform = np.tile(waveform.astype(np.float32), times)
    with av.open(str(target), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        video.codec_context.options = {"preset": "veryfast", "threads": "1"}
        audio = container.add_stream("aac", rate=16000)
        audio.codec_context.layout = "mono"
        for i, image in enumerate(frames * times):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode())
        for start in range(0, len(waveform), 1024):
            frame = av.AudioFrame.from_ndarray(waveform[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    return target


def read_table(path) -> dict[str, np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return {row[0]: np.array([float(v) for v in row[1:]]) for row in rows}


def test_predict_equals_submit_on_a_long_and_a_short_clip(media_dir, tmp_path):
    """`emi-hf predict` on the videos and `emi-hf extract --splits test` + `emi-hf submit` on the same videos give
    the same six numbers (1e-5) for a real clip looped to 4x the model's visual window and over 3x its audio window,
    and for the clip itself (within both). Earlier, submit read the central window and predict the whole clip."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from emi_hf.cli import main as cli
    from emi_hf.data.store import load_features
    from emi_hf.processing_emi import EmiProcessor

    data, model_dir = tmp_path / "data", tmp_path / "model"
    videos = data / "test_data" / "raw"
    videos.mkdir(parents=True)
    loop_clip(media_dir / "single_face.mp4", videos / "00001.mp4", times=4)  # 9.6 s
    shutil.copy(media_dir / "single_face.mp4", videos / "00002.mp4")  # 2.4 s
    (data / "train_split.csv").write_text("Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,"
                                          "Joy\n00009,0.1,0.2,0.3,0.4,0.5,0.6\n")  # the submission's fallback row
    EmiProcessor(face_detector="mediapipe", target_fps=5, use_cache=False).save_pretrained(tmp_path / "processor")
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC2)).save_pretrained(tmp_path / "speech")  # 800 frames per second
    assert cli(["extract", "--data-dir", str(data), "--splits", "test", "--output", str(tmp_path / "features"),
                "--visual-backbone", "random", "--speech-encoder", str(tmp_path / "speech"), "--no-vad",
                "--processor", str(tmp_path / "processor"), "--no-progress"]) == 0
    test = load_features(tmp_path / "features")["test"]
    assert [len(v) for v in test["visual_features"]] == [48, 12]
    audio_frames = [len(a) for a in test["audio_features"]]
    assert audio_frames[0] > 3 * 2000 and audio_frames[1] < 2000

    torch.manual_seed(0)
    model = EmiFusionModel.from_unimodal(visual=tmp_path / "features" / "base_visual",
                                         audio=tmp_path / "features" / "base_audio")
    model.config.visual_config.temporal_window, model.config.audio_config.temporal_window = 12, 2000
    model.save_pretrained(model_dir)
    EmiProcessor.from_pretrained(tmp_path / "processor").save_pretrained(model_dir)
    (model_dir / "results.json").write_text(json.dumps(  # what a run trained with these caps records
        {"modality": "fusion", "training": {"max_frames": 12, "max_audio_frames": 2000}}))

    assert cli(["submit", "--model", str(model_dir), "--features", str(tmp_path / "features"), "--data-dir",
                str(data), "--output", str(tmp_path / "submission.csv")]) == 0
    assert cli(["predict", str(videos / "00001.mp4"), str(videos / "00002.mp4"), "--model", str(model_dir),
                "--output", str(tmp_path / "predicted.csv"), "--allow-random-backbones"]) == 0
    submitted, predicted = read_table(tmp_path / "submission.csv"), read_table(tmp_path / "predicted.csv")
    assert sorted(submitted) == sorted(predicted) == ["00001", "00002"]
    for clip_id in submitted:
        np.testing.assert_allclose(predicted[clip_id], submitted[clip_id], atol=1e-5, rtol=0, err_msg=clip_id)


def test_the_streamer_scores_a_window_longer_than_the_models_by_the_rule(media_dir, tmp_path):
    """A stream whose window (2 s: 20 frames at 10 fps) is longer than the visual model's (8 frames) and the audio
    model's (600 encoder frames): each update is what the offline path gives for the same frames and samples."""
    from test_streaming import differences, offline, stream

    from emi_hf.inference import load_for_inference
    from emi_hf.media.decoding import decode_audio, iter_video_frames
    from helpers import save_tiny_checkpoint

    model, processor = load_for_inference(save_tiny_checkpoint(tmp_path / "model"))
    model.config.visual_config.temporal_window, model.config.audio_config.temporal_window = 8, 600
    frames = [f.image for f in iter_video_frames(media_dir / "single_face.mp4", target_fps=None)]
    waveform, _ = decode_audio(media_dir / "single_face.mp4", 16000, peak_db=None)
    updates = stream(model, processor, frames, waveform, window_s=2.0, hop_s=1.0, audio_context_s=None)
    assert [u.t for u in updates] == [1.0, 2.0] and updates[-1].num_frames == 20
    for update in updates:
        found = differences(update, offline(model, processor, frames, waveform, update.window_start, update.t))
        assert max(found.values()) < 1e-4, (update.t, found)
    model.config.visual_config.temporal_window = model.config.audio_config.temporal_window = None
    whole = differences(updates[-1], offline(model, processor, frames, waveform, 0.0, 2.0))
    assert whole["visual"] > 1e-4 and whole["audio"] > 1e-4, whole  # the windows made a difference
