"""A random-weight Whisper folder with the real Whisper token layout, built offline (tests and benchmarks).

Real Whisper checkpoints are downloads; this builds the same *shape* of folder from nothing, so that both
transcription backends can be exercised without a network: ``config.json`` + weights, ``generation_config.json``
(language / task / timestamp token ids, suppressed tokens), a byte-level BPE tokenizer (``tokenizer.json``, plus the
``vocab.json`` / ``merges.txt`` pair) and ``preprocessor_config.json``.

The vocabulary follows the multilingual Whisper layout (large-v3's, 100 languages): 50 257 text tokens (the 256
byte symbols, then filler tokens that stand for unused BPE entries, and the empty token multilingual
vocabularies end with), ``<|endoftext|>`` at 50 257,
``<|startoftranscript|>``, one ``<|xx|>`` per language, ``<|translate|>``, ``<|transcribe|>``, ``<|startoflm|>``,
``<|startofprev|>``, ``<|nospeech|>``, ``<|notimestamps|>`` and the 1 501 timestamp tokens ``<|0.00|>`` ...
``<|30.00|>`` (transformers' and CTranslate2's timestamp logic both take ``timestamp_begin = notimestamps + 1``).
The weights are random, so the text it produces is arbitrary: use it to test structure, never content.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["WHISPER_BASE_DIMS", "WHISPER_TINY_DIMS", "WHISPER_TINY_TEST_DIMS", "whisper_special_tokens", "build_random_whisper",
           "convert_to_ctranslate2"]

NUM_TEXT_TOKENS = 50257
WHISPER_TINY_TEST_DIMS = dict(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                              decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32)
# openai/whisper-tiny's dimensions (39 M parameters)
WHISPER_TINY_DIMS = dict(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
                         decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536)
# openai/whisper-base's dimensions (74 M parameters)
WHISPER_BASE_DIMS = dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                         decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048)


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values (the byte-level BPE alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    codes, extra = list(keep), 0
    for value in range(256):
        if value not in keep:
            keep.append(value)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def whisper_special_tokens() -> list[str]:
    """The special tokens after the text vocabulary, in Whisper's order (ids 50 257 ...)."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    tokens = ["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{code}|>" for code in LANGUAGES]
    tokens += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
               "<|notimestamps|>"]
    return tokens + [f"<|{0.02 * step:.2f}|>" for step in range(1501)]


def _text_vocab() -> dict[str, int]:
    symbols = _byte_symbols()
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    for index in range(len(symbols), NUM_TEXT_TOKENS):
        vocab[f"Ġw{index}"] = index  # unreachable by the (merge-free) BPE; random weights may still emit them
    # multilingual Whisper vocabularies hold an empty token (CTranslate2 tells multilingual models by it)
    del vocab[f"Ġw{NUM_TEXT_TOKENS - 1}"]
    vocab[""] = NUM_TEXT_TOKENS - 1
    return vocab


def _write_tokenizer(folder: Path) -> "object":
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import WhisperTokenizerFast

    vocab = _text_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = whisper_special_tokens()
    backend.add_special_tokens(specials)
    tokenizer = WhisperTokenizerFast(tokenizer_object=backend, unk_token="<|endoftext|>",
                                     bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                     additional_special_tokens=specials[1:])
    tokenizer.save_pretrained(folder)
    return tokenizer


def _generation_config(tokenizer, max_new_tokens: int, suppress_eot: bool):
    from transformers import GenerationConfig
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    ids = tokenizer.convert_tokens_to_ids
    suppress = [ids(token) for token in ("<|startoflm|>", "<|startofprev|>", "<|nospeech|>")]
    if suppress_eot:  # every window then decodes exactly max_new_tokens tokens (benchmarks)
        suppress.append(ids("<|endoftext|>"))
    return GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"), bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|endoftext|>"), pad_token_id=ids("<|endoftext|>"),
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"), prev_sot_token_id=ids("<|startofprev|>"),
        is_multilingual=True, max_initial_timestamp_index=50, suppress_tokens=suppress,
        begin_suppress_tokens=[ids("Ġ"), ids("<|endoftext|>")],
        forced_decoder_ids=None, max_length=448, max_new_tokens=max_new_tokens,
    )


def build_random_whisper(folder, dims: dict | None = None, num_mel_bins: int = 80, max_new_tokens: int = 8,
                         seed: int = 0, suppress_eot: bool = False) -> Path:
    """Writes a random Whisper (``dims``: :data:`WHISPER_TINY_TEST_DIMS` by default) with the full tokenizer layout
    into `folder`. ``max_new_tokens`` (in ``generation_config.json``) caps the decode length per 30 s window;
    ``suppress_eot`` makes it exact (the end-of-text token is never chosen; also carried into CTranslate2)."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _write_tokenizer(folder)
    vocab_size = len(tokenizer)
    config = WhisperConfig(vocab_size=vocab_size, num_mel_bins=num_mel_bins, max_source_positions=1500,
                           max_target_positions=448, decoder_start_token_id=tokenizer.convert_tokens_to_ids(
                               "<|startoftranscript|>"), pad_token_id=50257, bos_token_id=50257, eos_token_id=50257,
                           **(dims or WHISPER_TINY_TEST_DIMS))
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = _generation_config(tokenizer, max_new_tokens, suppress_eot)
    model.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=num_mel_bins).save_pretrained(folder)
    return folder


def convert_to_ctranslate2(whisper_folder, output, quantization: str | None = None) -> Path:
    """Converts a Whisper folder to CTranslate2 (offline) for faster-whisper, copying the tokenizer and
    preprocessor files next to the converted weights (without ``tokenizer.json`` faster-whisper asks the Hub)."""
    from ctranslate2.converters import TransformersConverter

    copy = [name for name in ("tokenizer.json", "preprocessor_config.json")
            if (Path(whisper_folder) / name).is_file()]
    TransformersConverter(str(whisper_folder), copy_files=copy).convert(str(output), quantization=quantization,
                                                                       force=True)
    return Path(output)
