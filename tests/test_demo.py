"""The Gradio demo (demo/app.py): launched in-process on 127.0.0.1 with a tiny random model, called with gradio_client
on real clips from ../shared/media; plus its input checks, configuration and the no-model start.

Every socket the process opens during these tests is checked: only loopback addresses are allowed (gradio's analytics
and version check must stay off).
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

from helpers import APP_PATH, REPO_ROOT, LoopbackOnly, launched, load_app, save_tiny_checkpoint  # noqa: F401
API = "/predict"


# ----------------------------------------------------------------------------------------------------------------------
# Harness (also used by test_demo_browser.py)
# ----------------------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(network_guard):
    return load_app()


@pytest.fixture(scope="module")
def network_guard():
    with LoopbackOnly() as guard:
        yield guard


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("demo_model"))


@pytest.fixture(scope="module")
def served(app, tiny_checkpoint, media_dir, network_guard):
    """(url, client, demo) of the app with the tiny model, examples from the shared media folder."""
    from gradio_client import Client

    demo = app.build_demo(model_path=tiny_checkpoint, examples_dir=media_dir, max_file_mb=20, max_duration_s=30)
    assert demo.emi_engine.ready, demo.emi_engine.load_error
    with launched(demo, app) as url:
        assert url.startswith("http://127.0.0.1:")
        yield url, Client(url, verbose=False), demo


def check_result(result: dict) -> None:
    from emi_hf import EMOTION_NAMES

    assert result["emotions"] == list(EMOTION_NAMES)
    assert list(result["intensities"]) == list(EMOTION_NAMES)
    for modality in ("intensities", "visual", "audio", "fused"):
        for value in result[modality].values():
            assert value is None or 0.0 <= value <= 1.0, (modality, value)
    assert 0.0 <= result["face_fraction"] <= 1.0
    assert len(result["timeline"]["timestamps"]) == result["num_frames"]
    assert len(result["timeline"]["frame_intensities"]) == result["num_frames"]


def check_values(result: dict, checkpoint: Path, clip: Path) -> None:
    """The served numbers are the library's: `predict_clips` with the same checkpoint on the same clip gives the
    demo's visual, audio and fused intensities and its face timeline; the fused ones are the checkpoint's
    per-emotion weighting of the modalities the clip has."""
    import numpy as np

    from emi_hf.inference import load_for_inference, predict_clips

    model, processor = load_for_inference(checkpoint)
    (expected,) = predict_clips(model, processor, [str(clip)], use_cache=False)
    for modality, values in expected.modality_intensities.items():
        if result[modality] is None or any(v is None for v in result[modality].values()):
            assert all(np.isnan(list(values.values()))), modality  # the clip had no such input
            continue
        np.testing.assert_allclose(list(result[modality].values()), list(values.values()), atol=1e-6,
                                   err_msg=modality)
    shown = [[np.nan if v is None else v for v in row] for row in result["timeline"]["frame_intensities"]]
    np.testing.assert_allclose(shown, [[np.nan if v is None else v for v in row] for row in expected.frame_intensities],
                               atol=1e-6)
    weights = model.config.modality_weights
    present = [m for m in ("visual", "audio") if result[m] is not None and None not in result[m].values()]
    for i, name in enumerate(result["emotions"]):
        total = sum(weights[m][i] for m in present)
        fused = sum(weights[m][i] * result[m][name] for m in present) / total
        assert result["fused"][name] == pytest.approx(fused, abs=1e-6), name


# ----------------------------------------------------------------------------------------------------------------------
# Configuration (no server)
# ----------------------------------------------------------------------------------------------------------------------


def test_model_path_resolution(app, tmp_path, monkeypatch):
    monkeypatch.delenv("EMI_HF_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)
    path, local = app.resolve_model_path()
    assert local and path == str(REPO_ROOT / "quickstart" / "runs" / "fusion")
    (tmp_path / "my_run").mkdir()
    monkeypatch.setenv("EMI_HF_MODEL", "my_run")
    assert app.resolve_model_path() == (str((tmp_path / "my_run").resolve()), True)
    monkeypatch.setenv("EMI_HF_MODEL", "some-org/emi-fusion")
    assert app.resolve_model_path() == ("some-org/emi-fusion", False)
    assert app.resolve_model_path(tmp_path / "missing") == (str(tmp_path / "missing"), True)


def test_examples_are_the_first_validation_clips(app, tmp_path, monkeypatch):
    monkeypatch.delenv("EMI_HF_EXAMPLES_DIR", raising=False)
    (tmp_path / "videos").mkdir()
    for clip_id in ("00000", "00001", "00002", "00003", "00004", "00005", "00006"):
        (tmp_path / "videos" / f"{clip_id}.mp4").write_bytes(b"x")
    (tmp_path / "valid_split.csv").write_text("Filename,Joy\n00004,0.5\n00002,0.1\n00006,0.2\n")
    examples = app.find_examples(tmp_path, limit=2)
    assert [Path(p).name for p in examples] == ["00004.mp4", "00002.mp4"]
    monkeypatch.setenv("EMI_HF_EXAMPLES_DIR", str(tmp_path / "videos"))
    assert [Path(p).name for p in app.find_examples(limit=3)] == ["00000.mp4", "00001.mp4", "00002.mp4"]
    assert app.find_examples(tmp_path / "nowhere") == []


def test_input_checks_refuse_with_clear_messages(app, media_dir, tmp_path):
    import gradio as gr

    def refused(path, **caps) -> str:
        with pytest.raises(gr.Error) as info:
            app.check_video(path and str(path), caps.get("max_file_mb", 50), caps.get("max_duration_s", 60))
        return info.value.message

    clip = media_dir / "single_face.mp4"  # 2.4 s
    assert app.check_video(str(clip), 50, 60)["duration"] == pytest.approx(2.4, abs=0.2)
    # files whose header has no duration (webcam WebM) are measured from their packets
    assert app._container_duration(str(clip)) == pytest.approx(2.4, abs=0.2)
    assert "up to 0.01 MB" in refused(clip, max_file_mb=0.01)
    assert "lasts 2.4 s" in refused(clip, max_duration_s=1)
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    assert "is not a video file" in refused(text)
    fake = tmp_path / "fake.mp4"
    fake.write_text("plain text with a video extension")
    assert "could not be read as a video" in refused(fake)
    audio_only = tmp_path / "speech.mp4"
    shutil.copy(media_dir / "debate_5s_16k.wav", audio_only)  # a WAV renamed: audio, no video stream
    message = refused(audio_only)
    assert "no video stream" in message or "could not be read" in message
    assert "upload a video" in refused(None).lower()


def test_app_without_a_model_starts_and_says_what_to_do(app, tmp_path, media_dir, network_guard):
    from gradio_client import Client, handle_file

    demo = app.build_demo(model_path=tmp_path / "no_model_here", examples_dir=tmp_path)
    message = demo.emi_engine.load_error
    assert not demo.emi_engine.ready and "make quickstart" in message and "EMI_HF_MODEL" in message
    with launched(demo, app) as url:
        with pytest.raises(Exception, match="make quickstart"):
            Client(url, verbose=False).predict(handle_file(str(media_dir / "single_face.mp4")), api_name=API)


# ----------------------------------------------------------------------------------------------------------------------
# The served app, through gradio_client
# ----------------------------------------------------------------------------------------------------------------------


def test_predict_a_real_clip(served, media_dir):
    from gradio_client import handle_file

    _, client, _ = served
    began = time.perf_counter()
    bars, timeline, faces, summary, result = client.predict(handle_file(str(media_dir / "single_face.mp4")),
                                                            api_name=API)
    print(f"single_face.mp4 in {time.perf_counter() - began:.1f} s: {result['timing_s']}")
    check_result(result)
    check_values(result, served[2].emi_engine.model_id, media_dir / "single_face.mp4")
    assert result["intensities_from"] == "fused"
    assert result["audio_present"] is True
    assert result["face_fraction"] > 0.8  # one frontal face, MediaPipe finds it in (nearly) every frame
    assert 20 <= result["num_frames"] <= 26  # 2.4 s at 10 fps
    assert all(v is not None for m in ("visual", "audio", "fused") for v in result[m].values())
    assert bars["type"] == "matplotlib" and bars["plot"].startswith("data:image/png;base64,")
    assert timeline["type"] == "matplotlib"
    assert 1 <= len(faces) <= 8 and all(Path(item["image"]).is_file() for item in faces)
    assert faces[0]["caption"].endswith(" s")
    assert "| Joy |" in summary and "audio: present" in summary


def test_two_requests_at_once_both_get_answers(served, media_dir):
    from gradio_client import handle_file

    _, client, _ = served
    no_audio = client.submit(handle_file(str(media_dir / "multi_face_5_frames.mp4")), api_name=API)
    no_face = client.submit(handle_file(str(media_dir / "no_face.mp4")), api_name=API)
    result_no_audio = no_audio.result(timeout=120)[-1]
    result_no_face = no_face.result(timeout=120)[-1]

    check_result(result_no_audio)
    assert result_no_audio["audio_present"] is False
    assert all(v is None for v in result_no_audio["audio"].values())
    assert any("no audio" in note for note in result_no_audio["missing"])

    check_result(result_no_face)
    check_values(result_no_face, served[2].emi_engine.model_id, media_dir / "no_face.mp4")
    assert result_no_face["face_fraction"] == 0.0 and result_no_face["audio_present"] is True
    assert all(v is None for v in result_no_face["visual"].values())
    assert all(v is not None for v in result_no_face["fused"].values())  # the fusion falls back to the audio
    assert any("no face" in note for note in result_no_face["missing"])


def test_non_video_upload_is_refused(served, tmp_path):
    from gradio_client import handle_file

    _, client, _ = served
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    with pytest.raises(Exception, match="is not a video file"):
        client.predict(handle_file(str(text)), api_name=API)


def test_only_loopback_was_touched(served, network_guard):
    assert network_guard.violations == []
    with pytest.raises(OSError):  # the guard itself works
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)
    assert network_guard.violations == ["lookup 192.0.2.1"]


def test_a_model_with_text_shows_the_transcript_and_a_text_bar(app, media_dir, tmp_path):
    """A visual + audio + text fusion checkpoint with its text_tokenizer/: the clip's transcript comes from
    EMI_HF_TRANSCRIPTS' file; a clip without one is scored without the text model, and the page says so."""
    import torch
    from helpers import tiny_audio_config, tiny_text_config, tiny_visual_config

    from emi_hf import EmiFusionConfig, EmiFusionModel
    from emi_hf.processing_emi import EmiProcessor
    from emi_hf.text import build_word_tokenizer

    folder = tmp_path / "model"
    torch.manual_seed(0)
    words = ["what a wonderful happy day", "this is so funny"]
    tokenizer = build_word_tokenizer(words, folder / "text_tokenizer")
    config = EmiFusionConfig(visual_config=tiny_visual_config(), audio_config=tiny_audio_config(),
                             text_config=tiny_text_config(text_encoder_config={
                                 "model_type": "bert", "vocab_size": len(tokenizer), "hidden_size": 24,
                                 "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 48}))
    EmiFusionModel(config).save_pretrained(folder)
    EmiProcessor(face_detector="mediapipe", target_fps=10, use_cache=False).save_pretrained(folder)
    (tmp_path / "transcripts.csv").write_text("Filename,text\nsingle_face.mp4,what a wonderful happy day\n")
    engine = app.EmiDemo(folder, transcripts=tmp_path / "transcripts.csv")
    assert engine.ready, engine.load_error
    analysis = engine.analyse(str(media_dir / "single_face.mp4"))
    result = analysis.to_json()
    assert result["transcript"] == "what a wonderful happy day"
    from emi_hf.inference import TextSide, load_for_inference, predict_clips

    model, processor = load_for_inference(folder)
    (expected,) = predict_clips(model, processor, [str(media_dir / "single_face.mp4")], use_cache=False,
                                text_side=TextSide(model, transcripts=tmp_path / "transcripts.csv"))
    for modality in ("text", "fused"):
        assert list(result[modality].values()) == pytest.approx(list(expected.modality_intensities[modality].values()),
                                                                abs=1e-6), modality
    summary = app.summary_markdown(analysis)
    assert "**Transcript:** what a wonderful happy day" in summary and "words (text)" in summary
    labels = [text.get_text() for text in app.bar_chart(analysis).axes[0].get_legend().get_texts()]
    assert labels == ["face (visual)", "voice (audio)", "words (text)", "fused"]
    other = engine.analyse(str(media_dir / "debate_5s.mp4")).to_json()  # not in the file: no transcript
    assert other["transcript"] == "" and all(v is None for v in other["text"].values())
    assert any("text model was skipped" in note for note in other["missing"])


def test_space_caches_examples_and_installs_a_cpu_torch(app, tiny_checkpoint, media_dir, monkeypatch):
    from helpers import REPO_ROOT

    for env, expected in (({}, None), ({"SPACE_ID": "org/space"}, "lazy"), ({"EMI_HF_CACHE_EXAMPLES": "eager"}, "eager"),
                          ({"SPACE_ID": "org/space", "EMI_HF_CACHE_EXAMPLES": "0"}, None)):
        monkeypatch.delenv("SPACE_ID", raising=False)
        monkeypatch.delenv("EMI_HF_CACHE_EXAMPLES", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert app.examples_cache_mode() == expected, env
    monkeypatch.setenv("EMI_HF_CACHE_EXAMPLES", "sometimes")
    with pytest.raises(ValueError, match="EMI_HF_CACHE_EXAMPLES"):
        app.examples_cache_mode()
    counts = {}
    for mode in ("0", "lazy"):
        monkeypatch.setenv("EMI_HF_CACHE_EXAMPLES", mode)
        monkeypatch.setenv("GRADIO_EXAMPLES_CACHE", str(tiny_checkpoint.parent / "examples_cache"))
        demo = app.build_demo(model_path=tiny_checkpoint, examples_dir=media_dir)
        counts[mode] = len(demo.fns)
    assert counts["lazy"] > counts["0"]  # the examples' cached results are served by an event of their own
    requirements = [line.strip() for line in (REPO_ROOT / "demo" / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
    assert any(line.startswith("torch>=") for line in requirements)
