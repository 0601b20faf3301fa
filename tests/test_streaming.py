"""emi_hf.streaming: per-hop updates against the offline path over the same frames and samples, the speech
encoder's context margin, bounded memory, dropped frames, unimodal models and `emi-hf stream`."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from helpers import save_tiny_checkpoint, tiny_audio_config, tiny_visual_config

CLIP = "single_face.mp4"  # 30 fps with speech: the tiny checkpoint's 10 fps grid takes every third frame
FPS, RATE = 30.0, 16000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from emi_hf.inference import load_for_inference

    return load_for_inference(save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="module")
def clip(media_dir):
    from emi_hf.media.decoding import decode_audio, iter_video_frames

    frames = [f.image for f in iter_video_frames(media_dir / CLIP, target_fps=None)]
    waveform, _ = decode_audio(media_dir / CLIP, RATE, peak_db=None)
    return frames, waveform


def stream(model, processor, frames, waveform, **options):
    """Plays the clip through a streamer (frame i at i / FPS, its audio just before it); returns the updates."""
    from emi_hf.streaming import EmiStreamer

    streamer = EmiStreamer(model, processor, **options)
    for i, image in enumerate(frames):
        start, stop = int(round(i / FPS * RATE)), int(round((i + 1) / FPS * RATE))
        streamer.push_audio(waveform[start:stop], RATE, start / RATE)
        assert streamer.push_frame(image, i / FPS, block=True)
    return streamer.close()


@torch.inference_mode()
def offline(model, processor, frames, waveform, start: float, end: float) -> dict[str, np.ndarray]:
    """The offline prediction of a clip made of the source frames and samples in [start, end)."""
    from emi_hf.face_embedding import FaceEmbedder

    first, last = math.ceil(start * FPS - 1e-9), math.ceil(end * FPS - 1e-9)
    clip = processor.process_clip(np.stack(frames[first:last]), audio=waveform[round(start * RATE):round(end * RATE)],
                                  video_fps=FPS, sampling_rate=RATE,
                                  face_embedder=FaceEmbedder.for_model(processor, model))
    batch = processor.collate([clip])
    output = model(**{k: v for k, v in batch.items() if isinstance(v, torch.Tensor)})
    return {"visual": output.visual_intensities[0].numpy(), "audio": output.audio_intensities[0].numpy(),
            "fused": output.intensities[0].numpy()}


def differences(update, reference) -> dict[str, float]:
    return {m: float(np.max(np.abs(np.array(list(update.per_modality[m].values())) - reference[m])))
            for m in reference}


def test_updates_match_the_offline_prediction_of_the_same_window(tiny, clip):
    """Exact audio mode (the whole window re-encoded): every modality within 1e-4 of the offline path; the face
    track carried across hops is the one the offline path finds over the same frames."""
    model, processor = tiny
    frames, waveform = clip
    updates = stream(model, processor, frames, waveform, window_s=4.0, hop_s=0.5, audio_context_s=None)
    assert [u.t for u in updates] == [0.5, 1.0, 1.5, 2.0]  # 2.4 s of input: hops ending inside it
    for update in updates:
        assert update.face and update.speech and update.num_frames == round(10 * update.t)
        found = differences(update, offline(model, processor, frames, waveform, update.window_start, update.t))
        assert max(found.values()) < 1e-4, (update.t, found)


def test_speech_context_margin_effect_is_bounded(tiny, clip):
    """Incremental audio (new audio + 1 s of context): visual still exact, audio within the margin's bound, and
    the speech encoder hears each sample at most (hop + context + one hop of slack) / hop times, not the window."""
    model, processor = tiny
    frames, waveform = clip
    heard = []
    embed = model.audio.embed_audio
    model.audio.embed_audio = lambda values, mask=None: (heard.append(values.shape[1]), embed(values, mask))[1]
    try:
        updates = stream(model, processor, frames, waveform, window_s=4.0, hop_s=0.5, audio_context_s=1.0)
    finally:
        del model.audio.embed_audio
    # measured with this tiny random model: at most 3.6e-3 on the audio intensities (1.8e-3 fused)
    for update in updates:
        found = differences(update, offline(model, processor, frames, waveform, update.window_start, update.t))
        assert found["visual"] < 1e-4 and found["audio"] < 1e-2 and found["fused"] < 1e-2, (update.t, found)
    assert sum(heard) <= len(waveform) * (0.5 + 1.0 + 0.5) / 0.5
    assert max(heard) <= (0.5 + 1.0 + 0.5) * RATE  # never a whole 4 s window


def test_memory_stays_flat_over_a_long_stream(tiny):
    """Three minutes at 2 fps (face crops as frames) and audio: the caches hold one window, whatever the length
    (the benchmark measures the process's peak memory over ten minutes)."""
    from emi_hf.processing_emi import EmiProcessor
    from emi_hf.streaming import EmiStreamer

    model, _ = tiny
    processor = EmiProcessor(face_detector=None, au_backend=None, target_fps=2, use_cache=False)
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (4, 112, 112, 3), dtype=np.uint8)
    sizes, count = [], 0
    with EmiStreamer(model, processor, window_s=2.0, hop_s=1.0) as streamer:
        for i in range(360):
            streamer.push_audio(rng.normal(0, 0.1, 8000).astype(np.float32), RATE, i / 2)
            streamer.push_frame(crops[i % 4], i / 2, block=True)
            if i % 60 == 59:
                count += len(streamer.flush())
                sizes.append((len(streamer.visual.rows), len(streamer.audio.samples), len(streamer.audio.frames)))
    count += len(streamer.close())
    assert count == 180  # hops ending at 1, 2, ... 180 s (the input covers [0, 180) s)
    assert len(set(sizes[1:])) == 1, sizes  # the same after one minute as after three
    rows, samples, _ = sizes[-1]
    keep = 2.0 + 1.0 + 1.0 + 1.0  # window + hop + audio context + 1 s
    assert rows <= keep * 2 + 1 and samples <= keep * RATE


def test_frames_are_dropped_when_compute_falls_behind(tiny, clip):
    """A slow model (each call takes 0.2 s more, about 20 frame pushes), whatever the machine's own speed: while it
    runs, at most `max_pending_frames` frames wait and the rest are dropped and counted."""
    model, processor = tiny
    frames, waveform = clip
    from emi_hf.streaming import EmiStreamer

    calls = []

    def slow_call(module, args):
        calls.append(time.perf_counter())
        time.sleep(0.2)

    slow = model.register_forward_pre_hook(slow_call)
    try:
        streamer = EmiStreamer(model, processor, window_s=1.0, hop_s=0.5, max_pending_frames=2)
        kept = []
        for i in range(150):  # 5 s of frames, 10 ms apart
            kept.append(streamer.push_frame(frames[i % len(frames)], i / FPS))
            time.sleep(0.01)
        updates = streamer.close()
    finally:
        slow.remove()
    dropped = kept.count(False)
    assert len(calls) == len(updates) >= 2 and dropped > 0 and streamer.dropped_frames == dropped
    assert sum(u.dropped_frames for u in updates) <= dropped and updates[-1].dropped_total <= dropped
    assert any(u.dropped_frames for u in updates)
    assert all(u.face for u in updates)  # the kept frames still give updates with the face


def test_audio_model_streams_speech(media_dir):
    from emi_hf import EmiAudioModel
    from emi_hf.media.decoding import load_audio
    from emi_hf.processing_emi import EmiProcessor
    from emi_hf.streaming import EmiStreamer

    model = EmiAudioModel(tiny_audio_config()).eval()
    waveform = load_audio(str(media_dir / "debate_5s_16k.wav"), RATE, peak_db=None)
    processor = EmiProcessor(use_cache=False)
    calls = []  # the inputs of each model call the streamer makes
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(dict(kwargs)), with_kwargs=True)
    with EmiStreamer(model, processor, window_s=2.0, hop_s=0.5) as streamer:
        for start in range(0, len(waveform), 4000):  # 0.25 s chunks, times implied
            streamer.push_audio(waveform[start:start + 4000], RATE)
    updates = streamer.close()
    hook.remove()
    assert [u.t for u in updates] == [0.5 * k for k in range(1, 11)] and len(calls) == len(updates)
    noise = np.random.default_rng(0).normal(0, waveform.std(), waveform.shape).astype(np.float32)
    for update, call in zip(updates, calls):
        assert list(update.per_modality) == ["audio"] and update.speech and not update.face
        assert update.audio_seconds == pytest.approx(min(update.t, 2.0))
        with torch.inference_mode():  # the update reports the model's output on the features it was fed ...
            again = model(**call).intensities[0].tolist()
            window = slice(round(update.window_start * RATE), round(update.t * RATE))
            offline = {}
            for name, wave in (("speech", waveform), ("noise", noise)):
                batch = processor(audio=[wave[window]])
                offline[name] = model.embed_audio(batch["input_values"], batch["attention_mask"])[0][0]
        assert list(update.intensities.values()) == pytest.approx(again, abs=1e-6)
        # ... which are the window's speech frames up to the context margin (measured: relative difference at most
        # 0.19), where noise in place of the speech differs by more than their size (measured: at least 1.26)
        fed = call["audio_features"][0][call["audio_mask"][0].bool()]
        margin = float((fed - offline["speech"]).norm() / offline["speech"].norm())
        assert margin < 0.3 < 1.0 < float((offline["noise"] - offline["speech"]).norm() / offline["speech"].norm())


def test_visual_model_reports_speech_but_uses_only_faces(tiny):
    from emi_hf import EmiVisualModel
    from emi_hf.processing_emi import EmiProcessor
    from emi_hf.streaming import EmiStreamer

    model = EmiVisualModel(tiny_visual_config()).eval()
    processor = EmiProcessor(face_detector=None, au_backend=None, target_fps=10, use_cache=False)
    crops = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    with EmiStreamer(model, processor, window_s=1.0, hop_s=0.5) as streamer:
        for i in range(10):
            streamer.push_audio(np.sin(np.arange(1600) / 5.0).astype(np.float32), RATE, i / 10)
            streamer.push_frame(crops, i / 10, block=True)
    updates = streamer.close()
    assert [u.t for u in updates] == [0.5, 1.0]
    assert all(list(u.per_modality) == ["visual"] and u.face and u.speech for u in updates)


def test_streamer_rejects_bad_input(tiny):
    from emi_hf.processing_emi import EmiProcessor
    from emi_hf.streaming import EmiStreamer

    model, processor = tiny
    with pytest.raises(ValueError, match="hop_s"):
        EmiStreamer(model, processor, window_s=1.0, hop_s=2.0)
    with pytest.raises(ValueError, match="openface"):
        EmiStreamer(model, EmiProcessor(au_backend="openface", face_detector=None, use_cache=False))
    with EmiStreamer(model, processor) as streamer:
        with pytest.raises(ValueError, match="RGB"):
            streamer.push_frame(np.zeros((8, 8), np.uint8), 0.0)


def test_cli_stream_prints_one_json_object_per_hop(tiny, media_dir, tmp_path, capsys):
    from emi_hf.cli import main

    folder = save_tiny_checkpoint(tmp_path / "model")
    assert main(["stream", "--model", str(folder), "--video", str(media_dir / CLIP), "--json", "--hop", "0.5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    updates = [json.loads(line) for line in lines]
    assert [u["t"] for u in updates] == [0.5, 1.0, 1.5, 2.0]
    for update in updates:
        assert {"t", "intensities", "per_modality", "face", "speech", "latency_s", "dropped_frames"} <= set(update)
        assert set(update["per_modality"]) == {"visual", "audio", "fused"} and update["face"] and update["speech"]
        assert update["dropped_frames"] == 0 and update["latency_s"] >= 0
    assert main(["stream", "--model", str(folder), "--video", str(media_dir / CLIP), "--realtime"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("t=") and "latency=" in line for line in lines)
