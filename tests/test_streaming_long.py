"""Streaming a clip longer than the window (the window slides) against the offline computation of each window,
compared before the sigmoid: the embeddings the streamer feeds the model (speech-encoder frames, face embeddings) and
the logits of its intensities.

Why not the sigmoids: with the tiny random model, replacing a window's speech by Gaussian noise moves the audio
intensities by a few 1e-3 only, so a tolerance on intensities cannot tell speech from noise. The speech-encoder
frames change by more than their own size (relative difference > 1), and the logits by more than 5e-3; the
tolerances below are far under that, and each test checks so on its own windows.

Only the public API is used: `EmiStreamer` (push frames and audio, read `StreamUpdate`s) with a model the test
builds, whose inputs are read with a forward pre-hook on that model, and the processor + model offline.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import tiny_fusion_config

FPS, RATE = 10.0, 16000
CLIP_S, WINDOW_S, HOP_S = 8.0, 4.0, 1.0  # hops end at 1..8 s; from 5 s on the 4 s window slides

pytestmark = pytest.mark.filterwarnings("ignore::emi_hf.provenance.BackboneWarning")


@pytest.fixture(scope="module")
def long_clip(media_dir):
    """A tiny random visual + audio fusion, a processor that takes face crops as frames (10 fps), and an 8 s clip:
    face crops, and speech (the 5 s debate recording, then its first 3 s played backwards); the same 8 s of Gaussian
    noise at the speech's level."""
    from emi_hf import EmiFusionModel
    from emi_hf.media.decoding import load_audio
    from emi_hf.processing_emi import EmiProcessor

    torch.manual_seed(0)
    model = EmiFusionModel(tiny_fusion_config()).eval()
    processor = EmiProcessor(face_detector=None, au_backend=None, target_fps=FPS, use_cache=False)
    speech = load_audio(str(media_dir / "debate_5s_16k.wav"), RATE, peak_db=None)
    speech = np.concatenate([speech, speech[::-1]])[:int(CLIP_S * RATE)].astype(np.float32)
    assert len(speech) == CLIP_S * RATE
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (7, 112, 112, 3), dtype=np.uint8)
    frames = [crops[i % 7] for i in range(int(CLIP_S * FPS))]
    noise = rng.normal(0, speech.std(), speech.shape).astype(np.float32)
    return model, processor, frames, speech, noise


def stream(model, processor, frames, waveform, audio_context_s):
    """Plays the clip through an `EmiStreamer` (each frame's audio pushed just before it); returns the updates and
    the inputs of the model call of each update."""
    from emi_hf.streaming import EmiStreamer

    calls = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append({k: v.detach().clone() for k, v in kwargs.items()
                                                   if isinstance(v, torch.Tensor)}), with_kwargs=True)
    try:
        streamer = EmiStreamer(model, processor, window_s=WINDOW_S, hop_s=HOP_S, audio_context_s=audio_context_s,
                               allow_random_backbones=True)
        for i, frame in enumerate(frames):
            start, stop = round(i / FPS * RATE), round((i + 1) / FPS * RATE)
            streamer.push_audio(waveform[start:stop], RATE, start / RATE)
            assert streamer.push_frame(frame, i / FPS, block=True)
        updates = streamer.close()
    finally:
        hook.remove()
    assert len(calls) == len(updates)
    assert [u.t for u in updates] == [HOP_S * k for k in range(1, int(CLIP_S / HOP_S) + 1)]
    assert [u.window_start for u in updates] == [max(0.0, u.t - WINDOW_S) for u in updates]
    return updates, calls


@torch.inference_mode()
def offline(model, processor, frames, waveform, start: float, end: float) -> dict:
    """The offline path on the clip made of the frames and samples in [start, end): the model's inputs (face
    embeddings, speech-encoder frames) and the logits of its intensities."""
    from emi_hf.face_embedding import FaceEmbedder

    first, last = math.ceil(start * FPS - 1e-9), math.ceil(end * FPS - 1e-9)
    clip = processor.process_clip(np.stack(frames[first:last]), audio=waveform[round(start * RATE):round(end * RATE)],
                                  video_fps=FPS, sampling_rate=RATE,
                                  face_embedder=FaceEmbedder.for_model(processor, model))
    batch = processor.collate([clip])
    audio_features, audio_mask = model.audio.embed_audio(batch["input_values"], batch["attention_mask"])
    output = model(**{k: v for k, v in batch.items() if isinstance(v, torch.Tensor)})
    return {"visual_features": batch["visual_features"][0], "audio_features": audio_features[0][audio_mask[0]],
            **{m: torch.logit(getattr(output, name)[0].double()) for m, name in
               (("visual", "visual_intensities"), ("audio", "audio_intensities"), ("fused", "intensities"))}}


def streamed(update, call) -> dict:
    mask = call["audio_mask"][0].bool()
    return {"visual_features": call["visual_features"][0], "audio_features": call["audio_features"][0][mask],
            **{m: torch.logit(torch.tensor(list(update.per_modality[m].values()), dtype=torch.float64))
               for m in ("visual", "audio", "fused")}}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.double() - b.double()).norm() / b.double().norm())


def largest(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.double() - b.double()).abs().max())


def test_sliding_window_matches_offline_embeddings_and_logits_exact_audio(long_clip):
    """`audio_context_s=None` (each window re-encoded): every hop's speech-encoder frames and face embeddings are
    the offline ones to 1e-5, and the logits of the visual, audio and fused intensities agree to 1e-5 (measured: 0 on
    the embeddings, at most 6e-8 on the logits), while noise in place of the speech moves the speech frames by more
    than their size and the audio logits by more than 5e-3."""
    model, processor, frames, speech, noise = long_clip
    updates, calls = stream(model, processor, frames, speech, audio_context_s=None)
    for update, call in zip(updates, calls):
        got = streamed(update, call)
        want = offline(model, processor, frames, speech, update.window_start, update.t)
        found = {name: largest(got[name], want[name]) for name in want}
        assert max(found.values()) < 1e-5, (update.t, found)
        with_noise = offline(model, processor, frames, noise, update.window_start, update.t)
        assert relative(with_noise["audio_features"], want["audio_features"]) > 0.5
        assert largest(with_noise["audio"], want["audio"]) > 5e-3 > 100 * 1e-5


def test_sliding_window_speech_frames_stay_near_offline_with_context_margin(long_clip):
    """The default incremental audio (1 s of context before each hop's new audio): the face embeddings are exact
    and the speech-encoder frames differ from the offline encoding of the window by the context margin only:
    relative difference below 0.3 at every hop (measured: at most 0.14), where noise in place of the speech gives
    more than 1 (measured: at least 1.17). The logits are not compared here: with this tiny random model the margin
    moves them by up to 4.5e-3, about as much as noise does (6.9e-3)."""
    model, processor, frames, speech, noise = long_clip
    updates, calls = stream(model, processor, frames, speech, audio_context_s=1.0)
    for update, call in zip(updates, calls):
        got = streamed(update, call)
        want = offline(model, processor, frames, speech, update.window_start, update.t)
        with_noise = offline(model, processor, frames, noise, update.window_start, update.t)
        assert largest(got["visual_features"], want["visual_features"]) < 1e-5
        margin = relative(got["audio_features"], want["audio_features"])
        assert margin < 0.3 < 1.0 < relative(with_noise["audio_features"], want["audio_features"]), (update.t, margin)
