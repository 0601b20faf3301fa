"""Live with all three modalities: the words of a stream (voice activity, ASR on a worker, the text model), the
microphone, `emi-hf stream` with a three-way fusion.

A tiny random Whisper (built here, offline) writes arbitrary words: the tests check when words come and what follows
from them (text intensities with the words and not before, the hops never wait for ASR, agreement with `predict` on
the same transcript), never what the words are. Timing is checked by the order of hops and events, not by clocks."""

from __future__ import annotations

import json
import math
import sys
import threading
import types

import numpy as np
import pytest
import torch

from emi_hf.text import AsrBackend, Segment
from helpers import save_tiny_three_way_checkpoint

RATE = 16000
CHUNK = 4000  # 0.25 s of audio per push
SPEECH_CLIP = "debate_5s_16k.wav"  # silence, then speech from about 3.9 s to its end (5.04 s), by silero-vad
VIDEO_CLIP = "debate_5s.mp4"  # the same clip with its video


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    from emi_hf.text.random_whisper import build_random_whisper, convert_to_ctranslate2

    root = tmp_path_factory.mktemp("whisper")
    folder = build_random_whisper(root / "tiny", max_new_tokens=4)
    return {"transformers": str(folder), "faster-whisper": str(convert_to_ctranslate2(folder, root / "tiny_ct2"))}


@pytest.fixture(scope="module")
def no_faces(tmp_path_factory, whisper):
    """A three-way fusion whose transcripts came from the tiny Whisper, with a processor that looks for no face (the
    audio-only streams below push no frames)."""
    from emi_hf.inference import load_for_inference
    from emi_hf.processing_emi import EmiProcessor

    folder = save_tiny_three_way_checkpoint(
        tmp_path_factory.mktemp("three_way") / "model", asr_model=whisper["transformers"],
        processor=EmiProcessor(face_detector=None, au_backend=None, target_fps=10, use_cache=False))
    return load_for_inference(folder)


@pytest.fixture(scope="module")
def with_faces(tmp_path_factory):
    """A three-way fusion with a MediaPipe processor; its transcripts were read from a file (no ASR named)."""
    return save_tiny_three_way_checkpoint(tmp_path_factory.mktemp("three_way_faces") / "model")


@pytest.fixture(scope="module")
def speech(media_dir):
    from emi_hf.media.decoding import load_audio

    return load_audio(str(media_dir / SPEECH_CLIP), RATE, peak_db=None)


def push_step_by_step(streamer, audio):
    """Pushes `audio` in 0.25 s chunks and lets the words catch up after each (what a fast ASR does in real time):
    every hop then shows the words transcribed from the audio before it."""
    updates = []
    for start in range(0, len(audio), CHUNK):
        streamer.push_audio(audio[start:start + CHUNK], RATE, start / RATE)
        assert streamer.wait_for_words(120)
        updates += streamer.poll()
    return updates + streamer.close()


def has_text(update) -> bool:
    values = list(update.per_modality["text"].values())
    assert all(math.isnan(v) for v in values) or not any(math.isnan(v) for v in values)
    return not math.isnan(values[0])


@pytest.mark.parametrize("backend", ["transformers", "faster-whisper"])
def test_words_come_after_the_speech_and_the_text_intensities_with_them(backend, no_faces, whisper, speech):
    from emi_hf.inference import TextSide
    from emi_hf.streaming import EmiStreamer

    model, processor = no_faces
    text_side = TextSide(model, asr_backend=backend, asr_model=whisper[backend], use_cache=False)
    audio = np.concatenate([speech, np.zeros(6 * RATE, np.float32)])  # 11 s: the utterance ends, then leaves
    streamer = EmiStreamer(model, processor, window_s=4.0, hop_s=0.5, text_side=text_side)
    updates = push_step_by_step(streamer, audio)
    hops, end = updates[:-1], updates[-1]
    assert [u.t for u in hops] == [0.5 * k for k in range(1, 23)] and end.end_of_stream
    assert all(list(u.per_modality) == ["visual", "audio", "text", "fused"] for u in updates)
    spoken = [u for u in hops if u.transcript.text]
    assert spoken, "the tiny Whisper writes something on speech"
    (utterance,) = spoken[0].transcript.utterances
    assert 3.5 < utterance["start"] < 4.2 and 5.0 <= utterance["end"] < 5.6 and utterance["final"]
    # The words come once the utterance has been heard (it ends after the clip's speech): in the first hop after
    # voice activity decided that it ended (0.1 s of silence), not before.
    assert utterance["end"] <= spoken[0].t < utterance["end"] + 0.5 + 0.25 + 0.15
    assert all(not u.transcript.text for u in hops if u.t < utterance["end"])
    # The text intensities are there exactly where words are: not before, and not once the utterance left the window.
    assert [has_text(u) for u in hops] == [bool(u.transcript.text) for u in hops]
    assert all(u.transcript.text for u in hops if spoken[0].t <= u.t < utterance["end"] + 4.0)
    assert not any(u.transcript.text for u in hops if u.t - 4.0 >= utterance["end"])
    # The ASR lag is measured once, in the update that shows the final words first.
    lags = [u.transcript.asr_lag_s for u in hops if u.transcript.asr_lag_s is not None]
    assert len(lags) == 1 and lags[0] >= 0 and spoken[0].transcript.asr_lag_s == lags[0]
    # Fusion includes the text part once there are words: the fused value is then not the audio's alone.
    assert streamer.words.asr_calls >= 1 and spoken[0].to_dict()["transcript"]["text"] == spoken[0].transcript.text
    assert spoken[0].transcript.text[-20:] in spoken[0].line() and "words=" not in hops[0].line().split("dropped")[0]


def test_a_long_utterance_gives_partials_then_its_final(no_faces, speech):
    """3.4 s of speech without a pause, a partial every second: words marked partial while it goes on, then the
    final replaces them (the same utterance, never both)."""
    from emi_hf.streaming import EmiStreamer

    model, processor = no_faces
    talk = speech[int(3.9 * RATE):]
    audio = np.concatenate([np.zeros(RATE, np.float32), talk, talk, talk, np.zeros(3 * RATE, np.float32)])
    streamer = EmiStreamer(model, processor, window_s=4.0, hop_s=0.5, partial_every_s=1.0)
    updates = push_step_by_step(streamer, audio)
    partial = [u for u in updates if u.transcript.partial]
    final = [u for u in updates if u.transcript.text and not u.transcript.partial]
    assert partial and final and partial[-1].t < final[0].t
    assert all(len(u.transcript.utterances) == 1 for u in partial + final)
    first_partial, first_final = partial[0].transcript.utterances[0], final[0].transcript.utterances[0]
    assert first_partial["start"] == first_final["start"] and first_partial["end"] < first_final["end"]
    assert partial[0].t < first_final["end"]  # words while the utterance is still being spoken
    assert all(has_text(u) for u in partial + final)


class BlockedAsr(AsrBackend):
    """A speech recognizer that blocks in `transcribe` until the test releases it (a very slow ASR)."""

    name, model = "blocked", "fake"

    def __init__(self):
        self.started, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def settings(self):
        return {"backend": self.name, "model": self.model}

    def transcribe(self, waveform, language=None):
        self.calls += 1
        self.started.set()
        assert self.release.wait(300)
        return [Segment(0.0, len(waveform) / RATE, " hello there")], "en"


def text_side_with(model, asr):
    """The model's TextSide with `asr` as its speech recognizer (voice activity as usual)."""
    from emi_hf.inference import TextSide
    from emi_hf.text import Transcriber

    text_side = TextSide(model, use_cache=False)
    text_side.transcriber = Transcriber(asr, use_cache=False)
    return text_side


def test_a_slow_asr_does_not_hold_up_the_hops(no_faces, speech):
    """ASR blocked in its first call: every hop is emitted anyway, in order, with the utterance counted as pending
    and no words; released, the words come in the end-of-stream update."""
    from emi_hf.streaming import EmiStreamer

    model, processor = no_faces
    fake = BlockedAsr()
    text_side = text_side_with(model, fake)
    audio = np.concatenate([speech, np.zeros(3 * RATE, np.float32)])
    streamer = EmiStreamer(model, processor, window_s=4.0, hop_s=0.5, text_side=text_side)
    updates, last = [], (len(audio) - 1) // CHUNK * CHUNK
    for start in range(0, last, CHUNK):
        streamer.push_audio(audio[start:start + CHUNK], RATE, start / RATE)
        updates += streamer.flush()
    assert fake.started.wait(120), "the utterance ended and went to ASR"
    streamer.push_audio(audio[last:], RATE, last / RATE)  # the last hop comes while ASR is surely blocked
    updates += streamer.flush()
    assert [u.t for u in updates] == [0.5 * k for k in range(1, 17)]  # every hop of the 8 s, while ASR is blocked
    assert not any(u.transcript.text or has_text(u) for u in updates)
    assert updates[-1].transcript.pending >= 1 and fake.calls == 1
    fake.release.set()
    (end,) = streamer.close()
    assert end.end_of_stream and end.t == pytest.approx(len(audio) / RATE, abs=1e-3)
    assert end.transcript.text == "hello there" and has_text(end) and not end.transcript.partial


def test_streaming_agrees_with_predict_on_the_same_transcript(with_faces, media_dir, tmp_path):
    """A known transcript, a window that covers the clip: the end-of-stream update's text intensities are
    `predict`'s; timed segments come as the stream reaches their end."""
    from emi_hf.inference import TextSide, load_for_inference, predict_clips
    from emi_hf.streaming import EmiStreamer, file_events, run_stream
    from emi_hf.text import read_transcripts

    clip = media_dir / "single_face.mp4"
    model, processor = load_for_inference(with_faces)
    rows = tmp_path / "transcripts.csv"
    rows.write_text("Filename,text\nsingle_face,what a wonderful surprise\n")
    timed = tmp_path / "single_face.json"  # one clip's transcript with timed segments
    timed.write_text(json.dumps({"text": "hello there how are you", "segments": [
        {"start": 0.2, "end": 0.9, "text": " hello there"}, {"start": 1.2, "end": 2.1, "text": " how are you"}]}))
    for source in (rows, timed):
        (expected,) = predict_clips(model, processor, [clip], text_side=TextSide(model, transcripts=source))
        known = read_transcripts(source).lookup(clip)
        streamer = EmiStreamer(model, processor, window_s=4.0, hop_s=0.5, audio_context_s=None, transcript=known)
        updates = list(run_stream(streamer, file_events(clip)))
        end = updates[-1]
        assert end.end_of_stream and end.window_start == updates[0].window_start
        assert end.transcript.text == expected.transcript and end.transcript.source == "file"
        got = np.array(list(end.per_modality["text"].values()))
        want = np.array(list(expected.modality_intensities["text"].values()))
        np.testing.assert_allclose(got, want, atol=1e-6)
        if source == timed:
            texts = {u.t: u.transcript.text for u in updates[:-1]}
            assert texts[0.5] == "" and texts[1.0] == texts[1.5] == "hello there"
            assert texts[2.0] == "hello there" and end.transcript.text == "hello there how are you"
            assert not has_text(updates[0]) and has_text(updates[1])
        else:
            assert all(u.transcript.text == "what a wonderful surprise" for u in updates)


def test_cli_stream_three_way_fusion_prints_the_words_and_the_text_intensities(with_faces, whisper, media_dir,
                                                                               tmp_path, capsys):
    """The issue's done-when: `emi-hf stream --model <three-way fusion> --video clip.mp4 --realtime --json
    --asr-model FOLDER`."""
    from emi_hf.cli import main

    clip = str(media_dir / VIDEO_CLIP)
    assert main(["stream", "--model", str(with_faces), "--video", clip, "--realtime", "--json", "--asr-model",
                 whisper["transformers"]]) == 0
    updates = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(updates) >= 10 and updates[-1]["end_of_stream"]
    for update in updates:
        assert set(update["per_modality"]) == {"visual", "audio", "text", "fused"}
        words = update["transcript"]
        assert words["source"] == "asr" and (words["text"] != "") == (update["per_modality"]["text"]["Joy"] is not None)
    spoken = [u for u in updates if u["transcript"]["text"]]
    assert spoken and spoken[-1] is updates[-1], "the clip's speech runs to its end: its words close the stream"
    first = spoken[0]["transcript"]["utterances"][0]
    assert 3.5 < first["start"] < 4.2 and first["final"]  # the speech starts at about 3.9 s
    assert all(not u["transcript"]["text"] for u in updates if u["t"] <= first["start"])
    assert all(v is not None for v in spoken[0]["per_modality"]["text"].values())
    # A file's known words (--transcripts) instead of ASR, and the text line of the plain output.
    rows = tmp_path / "transcripts.csv"
    rows.write_text("Filename,text\ndebate_5s,that is so sad\n")
    assert main(["stream", "--model", str(with_faces), "--video", clip, "--transcripts", str(rows)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all('words="that is so sad"' in line for line in lines)
    # Without a source of words the command says what to pass.
    with pytest.raises(SystemExit) as exit_info:
        main(["stream", "--model", str(with_faces), "--video", clip])
    assert exit_info.value.code == 2 and "pass --asr-model" in capsys.readouterr().err


def test_microphone_without_an_input_device_fails_with_the_message(with_faces, capsys, monkeypatch):
    from emi_hf.cli import main

    try:
        import sounddevice
    except (ImportError, OSError):
        sounddevice = None
    if sounddevice is not None and any(d["max_input_channels"] > 0 for d in sounddevice.query_devices()):
        pytest.skip("this machine has an audio input device")
    with pytest.raises(SystemExit) as exit_info:
        main(["stream", "--model", str(with_faces), "--microphone"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith("emi-hf: error: --microphone")
    assert ("no audio input device was found" in error) if sounddevice else ("libportaudio2" in error)
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # the package missing: what to install
    with pytest.raises(SystemExit):
        main(["stream", "--model", str(with_faces), "--camera", "0", "--microphone", "2"])
    assert "pip install 'emi-hf[live]'" in capsys.readouterr().err


class FakeInputStream:
    """sounddevice.InputStream for a fake device: the test hands it blocks (`deliver`) as PortAudio would."""

    opened: list = []

    def __init__(self, device, channels, samplerate, blocksize, dtype, callback):
        self.callback, self.blocksize = callback, blocksize
        FakeInputStream.opened.append(self)

    def start(self):
        pass

    def stop(self):
        pass

    def close(self):
        pass

    def deliver(self, count: int):
        for _ in range(count):
            self.callback(np.full((self.blocksize, 1), 0.1, np.float32), self.blocksize, None, None)


def test_microphone_blocks_wait_in_a_bounded_queue_and_keep_their_times(monkeypatch):
    fake = types.SimpleNamespace(
        PortAudioError=type("PortAudioError", (Exception,), {}), InputStream=FakeInputStream,
        query_devices=lambda: [{"name": "speaker", "max_input_channels": 0, "default_samplerate": 48000},
                               {"name": "USB mic", "max_input_channels": 1, "default_samplerate": 16000}],
        default=types.SimpleNamespace(device=[1, 0]))
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    from emi_hf.errors import EmiUsageError
    from emi_hf.streaming import Microphone

    with pytest.raises(EmiUsageError, match="no such input device.*1: USB mic"):
        Microphone("webcam")
    with Microphone("usb", chunk_s=0.1, max_pending_s=0.3) as mic:
        assert (mic.index, mic.rate) == (1, 16000)
        mic.start()
        stream = FakeInputStream.opened[-1]
        stream.deliver(10)  # nobody takes them: 3 wait, 7 are dropped
        events = mic.take()
        assert len(events) == 3 and mic.dropped_s == pytest.approx(0.7)
        stream.deliver(2)
        later = mic.take()
    times = [e[3] for e in events + later]
    assert all(e[0] == "audio" and e[2] == 16000 and len(e[1]) == 1600 for e in events + later)
    # the dropped blocks keep their place in time: the next block starts 1 s after the first
    assert np.allclose(np.diff(times[:3]), 0.1) and times[3] - times[0] == pytest.approx(1.0)


def test_streamer_drops_audio_beyond_its_bound_and_says_so(no_faces, monkeypatch):
    """`max_pending_audio_s` (a live microphone): chunks beyond it are dropped while the worker is busy, heard as
    silence, counted in the updates."""
    from emi_hf.streaming import EmiStreamer
    from emi_hf.streaming.features import AudioStore

    model, processor = no_faces
    gate, add = threading.Event(), AudioStore.add
    monkeypatch.setattr(AudioStore, "add", lambda self, *a: (gate.wait(60), add(self, *a))[1])
    streamer = EmiStreamer(model, processor, window_s=1.0, hop_s=0.5, max_pending_audio_s=0.5, text_side=None,
                           transcript="")
    kept = [streamer.push_audio(np.zeros(1600, np.float32), RATE, k / 10) for k in range(10)]
    assert kept.count(False) >= 4 and streamer.dropped_audio_s == pytest.approx(0.1 * kept.count(False))
    gate.set()
    streamer.flush()
    assert streamer.push_audio(np.zeros(1600, np.float32), RATE, 1.0)
    updates = streamer.close()
    assert updates and updates[-1].dropped_audio_s == pytest.approx(streamer.dropped_audio_s)
    assert updates[-1].t == pytest.approx(1.1)


def threads_of_a_new_thread() -> int:
    seen = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def test_memory_stays_flat_with_words(no_faces, speech):
    """A minute of utterances and pauses: the words' audio, utterances and embeddings hold one window's worth."""
    from emi_hf.streaming import EmiStreamer

    model, processor = no_faces
    threads = torch.get_num_threads(), threads_of_a_new_thread()
    fake = BlockedAsr()
    fake.release.set()  # answers at once
    text_side = text_side_with(model, fake)
    talk = np.concatenate([speech[int(3.9 * RATE):], np.zeros(int(1.4 * RATE), np.float32)])  # 2.5 s
    sizes = []
    with EmiStreamer(model, processor, window_s=2.0, hop_s=1.0, text_side=text_side) as streamer:
        for k in range(24):
            streamer.push_audio(talk, RATE, k * len(talk) / RATE)
            streamer.wait_for_words(120)
            if k % 8 == 7:
                words = streamer.words
                sizes.append((len(words.utterances), len(words._audio) // RATE, len(streamer.audio.samples) // RATE))
    assert fake.calls >= 20
    assert sizes[1] == sizes[2], sizes  # the same after 40 s as after 60 s
    # The worker ran on one torch thread without changing the count of this thread or of threads started later.
    assert (torch.get_num_threads(), threads_of_a_new_thread()) == threads
    utterances, words_seconds, _ = sizes[-1]
    assert utterances <= 3 and words_seconds <= 2 * 2.0 + 1.0 + 1.0 + 1


def test_a_text_part_without_a_source_of_words_is_absent_and_says_so(no_faces, speech):
    from emi_hf.inference import TextSide
    from emi_hf.streaming import EmiStreamer

    model, processor = no_faces
    text_side = TextSide(model, use_cache=False)
    text_side.transcriber = None  # e.g. training transcripts read from a file, and no --asr-model
    with EmiStreamer(model, processor, window_s=2.0, hop_s=1.0, text_side=text_side) as streamer:
        streamer.push_audio(speech, RATE, 0.0)
    updates = streamer.close()
    assert [u.t for u in updates] == [1.0, 2.0, 3.0, 4.0, 5.0] and streamer.words is None
    assert all(u.transcript is None and not has_text(u) and "no words" in u.warnings[0] for u in updates)
    assert not math.isnan(updates[-1].intensities["Joy"])  # fused from the voice


@pytest.mark.parametrize("asr", [False, True])
def test_camera_without_microphone_streams_without_words_and_warns(with_faces, whisper, capsys, asr):
    """`--camera N` alone hears nothing: the text part is absent (no recognizer loaded), with a warning, instead of
    refusing a model whose transcripts came from a file (no recognizer named) for want of --asr-model."""
    import argparse

    from emi_hf.cli.stream import _stream_words
    from emi_hf.inference import load_for_inference

    model, _ = load_for_inference(with_faces)
    args = argparse.Namespace(model=str(with_faces), camera=0, microphone=None, video=None, transcripts=None,
                              asr_backend=None, language=None, asr_model=whisper["transformers"] if asr else None)
    text_side, known = _stream_words(args, model)
    assert known is None and text_side is not None and text_side.transcriber is None
    assert "--camera without --microphone" in capsys.readouterr().err
