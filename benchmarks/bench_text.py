"""Benchmark section "text": transcription speed of both ASR backends on a Whisper-base-sized random model with a
fixed decode length (x real time), and text-encoder speed on a BERT-base / GTE-base-sized random encoder.

Random weights cost the same compute per token as trained ones; what they do not reproduce is how many tokens real
speech yields, so the decode length is fixed (end-of-text suppressed): DECODE_TOKENS per 30 s window, about what
fast conversational English gives (~2-3 tokens/s)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from table import load_note, row

DECODE_TOKENS = 64
# Speech time a transcript stands for, for the encoding's x real time: 2.5 words/s (150 words a minute, a usual
# conversational rate) is an assumption, stated in the row's note, not a measurement.
WORDS_PER_SECOND = 2.5
SENTENCE = ("i think the point you are making about the budget is fair but the numbers tell a different story and "
            "people deserve to hear it")  # 25 words, a 5-10 s clip's transcript


def _models(work: Path) -> tuple[Path, Path]:
    from emi_hf.text.random_whisper import WHISPER_BASE_DIMS, build_random_whisper, convert_to_ctranslate2

    folder = work / "text" / "whisper_base_random"
    if not (folder / "model.safetensors").is_file():
        build_random_whisper(folder, dims=WHISPER_BASE_DIMS, max_new_tokens=DECODE_TOKENS, suppress_eot=True)
    converted = work / "text" / "whisper_base_random_ct2"
    if not (converted / "model.bin").is_file():
        convert_to_ctranslate2(folder, converted)
    return folder, converted


def _transcription(media: Path, work: Path, quick: bool) -> None:
    import torch

    from emi_hf.media.decoding import load_audio
    from emi_hf.text import FasterWhisperAsr, Transcriber, TransformersAsr

    folder, converted = _models(work)
    repeats = 6 if quick else 12  # 30 s or 60 s of the debate clip's speech
    waveform = np.tile(load_audio(media / "debate_5s_16k.wav"), repeats)
    seconds = len(waveform) / 16000
    backends = (("transformers", TransformersAsr(str(folder), max_new_tokens=DECODE_TOKENS)),
                # without timestamps: one 30 s window after the other, as real speech with segment ends at the
                # window's end (timestamps from random weights end early, and faster-whisper re-seeks from there)
                ("faster-whisper", FasterWhisperAsr(str(converted), max_new_tokens=DECODE_TOKENS, beam_size=1,
                                                    timestamps=False)))
    for backend, asr in backends:
        transcriber = Transcriber(asr, language="en", vad=False, use_cache=False)
        transcriber.transcribe_waveform(waveform[: 16000 * 5])  # load + warm up
        began = time.perf_counter()
        transcript = transcriber.transcribe_waveform(waveform)
        elapsed = time.perf_counter() - began
        row("text", f"transcription, {backend} (Whisper-base size, random, {DECODE_TOKENS} tokens / 30 s window, "
            f"greedy)", round(seconds / elapsed, 2), "x real time",  # transformers: 30 s chunks, 5 s overlaps
            note=f"{seconds:.0f} s of speech in {elapsed:.2f} s, {len(transcript.segments)} segments, "
                 f"{torch.get_num_threads()} threads; {load_note()}")


def _encoding(work: Path, quick: bool) -> None:
    import torch
    from transformers import BertConfig, BertModel

    from emi_hf.text import TextEncoder, build_word_tokenizer

    folder = work / "text" / "bert_base_random"
    if not (folder / "model.safetensors").is_file():
        tokenizer = build_word_tokenizer([SENTENCE], folder)
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=max(30522, len(tokenizer)))).save_pretrained(folder)  # BERT-base dims
    encoder = TextEncoder(str(folder))
    texts = [SENTENCE] * (32 if quick else 128)
    encoder.encode_batch(texts[:16])  # warm up
    began = time.perf_counter()
    embeddings = encoder.encode_batch(texts, batch_size=16)
    elapsed = time.perf_counter() - began
    tokens = sum(int(item.mask.sum()) for item in embeddings)
    note = (f"BERT-base / GTE-base size (110 M), random; {len(texts)} transcripts of {tokens // len(texts)} tokens, "
            f"batch 16, {torch.get_num_threads()} threads; {load_note()}")
    row("text", "text encoding (BERT-base size)", round(len(texts) / elapsed, 1), "transcripts/s", note=note)
    row("text", "text encoding (BERT-base size), tokens", round(tokens / elapsed), "tokens/s", note=note)
    speech_s = len(texts) * len(SENTENCE.split()) / WORDS_PER_SECOND
    row("text", "text encoding (BERT-base size), speech the transcripts stand for", round(speech_s / elapsed),
        "x real time", note=f"{len(SENTENCE.split())} words = {len(SENTENCE.split()) / WORDS_PER_SECOND:.0f} s of "
                            f"speech each at an assumed {WORDS_PER_SECOND} words/s; {note}")


def run(media: Path, work: Path, quick: bool) -> None:
    _transcription(media, work, quick)
    _encoding(work, quick)
