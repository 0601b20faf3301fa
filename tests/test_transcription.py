"""Transcription (transformers + faster-whisper on a tiny random Whisper built here), silero-vad on real speech and
digital silence, transcripts from files, the transcript cache, the text encoder and the word-level tokenizer.

Random weights write arbitrary text: the tests check structure (segments cover the text, times monotonic and within
the clip, a language code), never content."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emi_hf.media.decoding import load_audio
from emi_hf.text import (Segment, SpeechDetector, TextEncoder, Transcriber, TranscriptionError, build_word_tokenizer,
                         clean_segments, join_segments, read_transcripts, speech_frame_mask)
from emi_hf.text.random_whisper import build_random_whisper, convert_to_ctranslate2

DECODE = 4  # tokens per 30 s window: fixed and short, so the tests are fast


@pytest.fixture(scope="module")
def whisper_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("whisper")
    folder = build_random_whisper(root / "tiny", max_new_tokens=DECODE)
    return {"transformers": str(folder), "faster-whisper": str(convert_to_ctranslate2(folder, root / "tiny_ct2"))}


def _check_structure(transcript, duration, tolerance=0.05):
    assert transcript.duration == pytest.approx(duration, abs=tolerance)
    assert transcript.segments, "the random model always writes something on speech"
    previous_end = 0.0
    for segment in transcript.segments:
        assert previous_end <= segment.start <= segment.end <= transcript.duration
        previous_end = segment.end
    assert transcript.text == join_segments(transcript.segments)
    assert isinstance(transcript.language, str) and 2 <= len(transcript.language) <= 3


@pytest.mark.parametrize("backend", ["transformers", "faster-whisper"])
def test_backend_transcribes_audio_and_video(backend, whisper_folders, media_dir, tmp_path):
    transcriber = Transcriber(backend, whisper_folders[backend], vad=False, max_new_tokens=DECODE, beam_size=1,
                              cache_dir=tmp_path)
    for name in ("debate_5s_16k.wav", "debate_5s.mp4"):
        transcript = transcriber.transcribe(media_dir / name)
        _check_structure(transcript, 5.0)
        assert transcript.source == f"{backend}:{whisper_folders[backend]}" and transcript.speech is None
    given = Transcriber(backend, whisper_folders[backend], language="de", vad=False, max_new_tokens=DECODE,
                        beam_size=1, use_cache=False).transcribe(media_dir / "debate_5s_16k.wav")
    assert given.language == "de"


@pytest.mark.parametrize("backend", ["transformers", "faster-whisper"])
def test_long_form_keeps_every_segment(backend, whisper_folders, media_dir):
    """40 s of audio: more than one 30 s window, and every window's segments are kept."""
    waveform = np.tile(load_audio(media_dir / "debate_5s_16k.wav"), 8)
    transcriber = Transcriber(backend, whisper_folders[backend], vad=False, max_new_tokens=DECODE, beam_size=1)
    transcript = transcriber.transcribe_waveform(waveform)
    _check_structure(transcript, len(waveform) / 16000)
    assert transcript.segments[-1].end > 30.0, "the second window was transcribed"


def test_vad_finds_speech_and_skips_silence(whisper_folders, media_dir, tmp_path):
    speech = SpeechDetector().segments(load_audio(media_dir / "debate_5s_16k.wav"))
    assert speech and all(0.0 <= start < end <= 5.05 for start, end in speech)
    transcriber = Transcriber("transformers", whisper_folders["transformers"], max_new_tokens=DECODE,
                              cache_dir=tmp_path)
    silent = transcriber.transcribe(media_dir / "WolfgangLanger_Pexels.mp4")  # its audio track is all zeros
    assert (silent.text, silent.segments, silent.speech, silent.source) == ("", [], [], "vad:no-speech")
    assert transcriber.asr_calls == 0 and transcriber.asr._pipeline is None, "ASR never ran nor loaded"
    spoken = transcriber.transcribe(media_dir / "debate_5s_16k.wav")
    assert spoken.speech == speech and transcriber.asr_calls == 1
    no_audio = transcriber.transcribe(media_dir / "multi_face_5_frames.mp4")  # a video-only file
    assert (no_audio.text, no_audio.source) == ("", "no-audio")


def test_speech_frame_mask():
    mask = speech_frame_mask([[0.1, 0.3], [0.5, 0.52]], num_frames=10, frame_rate=10)
    # frame centres 0.05, 0.15, ... 0.95
    assert mask.tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert speech_frame_mask([], 5, 50).tolist() == [0] * 5
    assert speech_frame_mask([[0.0, 1.0]], 4, 2, start_time=0.5).tolist() == [1, 0, 0, 0]
    with pytest.raises(ValueError):
        speech_frame_mask([], 3, 0)


def test_clean_segments_fills_and_clamps():
    cleaned = clean_segments([Segment(None, 2.0, " a"), Segment(1.5, None, " b"), Segment(3.0, 99.0, " c"),
                              Segment(4.0, 5.0, "  ")], duration=10.0)
    assert [(s.start, s.end, s.text) for s in cleaned] == [(0.0, 2.0, " a"), (2.0, 3.0, " b"), (3.0, 10.0, " c")]
    assert join_segments(cleaned) == "a b c"


def test_cache_hit_on_second_call(whisper_folders, media_dir, tmp_path):
    first = Transcriber("faster-whisper", whisper_folders["faster-whisper"], max_new_tokens=DECODE, beam_size=1,
                        cache_dir=tmp_path)
    computed = first.transcribe(media_dir / "debate_5s_16k.wav")
    assert (first.cache.hits, first.cache.misses, first.asr_calls) == (0, 1, 1)
    second = Transcriber("faster-whisper", whisper_folders["faster-whisper"], max_new_tokens=DECODE, beam_size=1,
                         cache_dir=tmp_path)
    cached = second.transcribe(media_dir / "debate_5s_16k.wav")
    assert (second.cache.hits, second.asr_calls) == (1, 0) and second.asr._model is None
    assert cached.to_dict() == computed.to_dict()
    other = Transcriber("faster-whisper", whisper_folders["faster-whisper"], max_new_tokens=DECODE + 1,
                        beam_size=1, cache_dir=tmp_path)
    other.transcribe(media_dir / "debate_5s_16k.wav")
    assert (other.cache.hits, other.asr_calls) == (0, 1), "other settings never hit an old entry"


def test_transcripts_from_files(tmp_path, media_dir):
    csv_path = tmp_path / "transcripts.csv"
    csv_path.write_text('Filename,text\ndebate_5s,"  hello there, world "\nother.mp4,\n', encoding="utf-8")
    transcriber = Transcriber(transcripts=csv_path, use_cache=False)
    found = transcriber.transcribe(media_dir / "debate_5s.mp4")
    assert (found.text, found.source, found.path) == ("hello there, world", f"file:{csv_path}",
                                                     str(media_dir / "debate_5s.mp4"))
    assert transcriber.asr_calls == 0
    table = read_transcripts(csv_path)
    assert len(table) == 2 and table.lookup("x/other.mp4").text == "" and table.lookup("missing.mp4") is None
    folder = tmp_path / "json"
    folder.mkdir()
    (folder / "clip1.json").write_text(json.dumps({"text": "a b", "language": "en", "segments": [
        {"start": 0.0, "end": 1.0, "text": " a"}, {"start": 1.0, "end": 2.0, "text": " b"}]}))
    clip = read_transcripts(folder).lookup("clip1.mp4")
    assert clip.language == "en" and [s.text for s in clip.segments] == [" a", " b"]


@pytest.mark.parametrize("name, content, expected", [
    ("bad.csv", "name,text\na,b\n", "not Filename and text"),
    ("bad.csv", "Filename,text\na,b\na,c\n", "line 3 repeats the Filename 'a'"),
    ("bad.csv", "Filename,text\n,b\n", "line 2 has an empty Filename"),
    ("clip.json", "{not json", "is not valid JSON"),
    ("clip.json", '{"words": "x"}', 'with a "text" field'),
    ("clip.json", '{"text": 3}', '"text" is int'),
    ("clip.json", '{"text": "x", "segments": [{"start": 0}]}', "segment 0 is not"),
    ("t.jsonl", '{"text": "x"}\n', 'line 1 has no "path"'),
    ("t.txt", "x", "Pass a .csv, .json or .jsonl file"),
])
def test_bad_transcript_files_name_the_file(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TranscriptionError, match=expected) as error:
        read_transcripts(path)
    assert str(path) in str(error.value)


def test_missing_transcript_source(tmp_path):
    with pytest.raises(TranscriptionError, match="does not exist"):
        Transcriber(transcripts=tmp_path / "absent.csv")


def test_hub_ids_fail_offline_with_what_to_pass(media_dir):
    for backend, model in (("transformers", "emi-hf-tests/not-a-cached-whisper"), ("faster-whisper", "large-v3")):
        with pytest.raises(TranscriptionError, match="--asr-model FOLDER"):
            Transcriber(backend, model, vad=False, use_cache=False).transcribe(media_dir / "debate_5s_16k.wav")


def test_word_tokenizer_and_text_encoder(tmp_path):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path / "encoder"
    tokenizer = build_word_tokenizer(["the voice sounds calm", "The face looks surprised!"], folder)
    reloaded = AutoTokenizer.from_pretrained(folder)
    ids = reloaded("The voice looks happy")["input_ids"]
    assert reloaded.convert_ids_to_tokens(ids) == ["[CLS]", "the", "voice", "looks", "[UNK]", "[SEP]"]
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=8)).save_pretrained(folder)
    encoder = TextEncoder(str(folder))
    assert not any(parameter.requires_grad for parameter in encoder.model.parameters())
    short, empty, long = encoder.encode_batch(["the voice sounds calm", "  ", "the " * 20])
    assert short.features.shape == (6, 16) and short.mask.tolist() == [1] * 6 and short.present
    assert empty.features.shape == (0, 16) and empty.mask.shape == (0,) and not empty.present
    assert long.features.shape == (8, 16) and long.truncated
    single = encoder.encode("the voice sounds calm")
    np.testing.assert_allclose(single.features, short.features, atol=1e-5)
    with pytest.raises(TranscriptionError, match="--text-encoder FOLDER"):
        TextEncoder(str(tmp_path / "missing"))


@pytest.mark.parametrize("backend", ["transformers", "faster-whisper"])
def test_cli_transcribe_audio_and_video(backend, whisper_folders, media_dir, capsys):
    from emi_hf.cli import main

    files = [str(media_dir / "debate_5s_16k.wav"), str(media_dir / "debate_5s.mp4"),
             str(media_dir / "WolfgangLanger_Pexels.mp4")]
    common = ["--asr-backend", backend, "--asr-model", whisper_folders[backend], "--max-new-tokens", str(DECODE),
              "--beam-size", "1", "--no-cache"]
    assert main(["transcribe", *files, *common, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["path"] for line in lines] == files
    for line in lines:
        assert {"path", "text", "segments", "language"} <= set(line)
        assert line["text"] == "".join(segment["text"] for segment in line["segments"]).strip()
    assert lines[0]["segments"] and lines[1]["segments"] and lines[2]["segments"] == []
    assert main(["transcribe", files[1], *common, "--no-vad", "--language", "en"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{files[1]}  (language en, ") and backend in out


def test_faster_whisper_without_timestamps(whisper_folders, media_dir):
    """timestamps=False: one segment per 30 s window, still the whole transcript."""
    from emi_hf.text import FasterWhisperAsr

    waveform = np.tile(load_audio(media_dir / "debate_5s_16k.wav"), 8)
    asr = FasterWhisperAsr(whisper_folders["faster-whisper"], max_new_tokens=DECODE, beam_size=1, timestamps=False)
    transcript = Transcriber(asr, vad=False, use_cache=False).transcribe_waveform(waveform)
    _check_structure(transcript, len(waveform) / 16000)
    assert [(s.start, s.end) for s in transcript.segments] == [(0.0, 30.0), (30.0, transcript.duration)]


def _write_audio(path, waveform, codec: str):
    """Encodes a 16 kHz mono float waveform with PyAV (the formats users bring: flac, m4a/aac, mp3)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=16000, layout="mono")
        frame_format = stream.codec_context.codec.audio_formats[0].name
        frame = av.AudioFrame.from_ndarray(waveform[None, :].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = 16000
        resampler = av.AudioResampler(format=frame_format, layout="mono", rate=16000)
        for piece in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(piece):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.mark.parametrize("suffix, codec", [(".flac", "flac"), (".m4a", "aac"), (".mp3", "libmp3lame")])
def test_audio_formats(suffix, codec, whisper_folders, media_dir, tmp_path):
    waveform = load_audio(media_dir / "debate_5s_16k.wav")
    path = tmp_path / f"speech{suffix}"
    _write_audio(path, waveform, codec)
    transcript = Transcriber("faster-whisper", whisper_folders["faster-whisper"], max_new_tokens=DECODE,
                             beam_size=1, use_cache=False).transcribe(path)
    assert transcript.speech, f"silero-vad finds the speech in the {suffix} file"
    _check_structure(transcript, 5.0, tolerance=0.15)  # AAC / MP3 add encoder delay and frame padding


def test_voice_activity_detection_keeps_the_process_thread_count(media_dir):
    """Importing silero_vad sets torch's threads to 1 for the whole process; the detector restores them, so an
    extraction's backbones after it keep their threads (a fresh interpreter: the import happens once)."""
    import subprocess
    import sys

    script = f"""
import torch
torch.set_num_threads(2)
from emi_hf.media.decoding import decode_audio
from emi_hf.text.vad import SpeechDetector
speech, _ = decode_audio({str(media_dir / "debate_5s_16k.wav")!r}, sampling_rate=16000)
assert SpeechDetector().segments(speech)
print(torch.get_num_threads())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "2"
