"""A small word-level tokenizer built offline (for the synthetic set's sentences): a ``tokenizers`` WordLevel
model (lower-cased, accents stripped, split on whitespace and punctuation) saved as a transformers
``PreTrainedTokenizerFast`` folder, so ``AutoTokenizer.from_pretrained(folder)`` loads it and any BERT-style
encoder with ``vocab_size = len(tokenizer)`` can sit on it. Sentences are wrapped as ``[CLS] ... [SEP]``."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

__all__ = ["WORD_SPECIAL_TOKENS", "build_word_text_encoder", "build_word_tokenizer"]

WORD_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def build_word_tokenizer(sentences: Iterable[str], folder=None, min_frequency: int = 1,
                         model_max_length: int = 512):
    """Builds the vocabulary of `sentences` (special tokens first: ``[PAD]`` = 0, ``[UNK]`` = 1, ...), saves it
    to `folder` when given, and returns the ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from tokenizers.trainers import WordLevelTrainer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel(unk_token="[UNK]"))
    backend.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(),
                                               normalizers.StripAccents()])
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = WordLevelTrainer(special_tokens=list(WORD_SPECIAL_TOKENS), min_frequency=min_frequency)
    backend.train_from_iterator([str(sentence) for sentence in sentences], trainer=trainer)
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id),
                                                                                  ("[SEP]", sep_id)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                        model_max_length=model_max_length)
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(folder)
    return tokenizer


def build_word_text_encoder(sentences: Iterable[str], folder, hidden_size: int = 64, num_hidden_layers: int = 1,
                            num_attention_heads: int = 4, seed: int = 0):
    """A text encoder folder for data without a published one (the synthetic set, offline tests): the word-level
    tokenizer of `sentences` and a randomly initialised BERT of `hidden_size` on its vocabulary (weights drawn from
    `seed`), saved with `save_pretrained` so that ``TextEncoder(folder)`` / ``AutoModel`` + ``AutoTokenizer`` load it.
    A random encoder still gives each word its own embedding, which the frozen-encoder text model learns from; its
    figures are not those of a pretrained one (``thenlper/gte-base``). Returns `folder`."""
    import torch
    from transformers import BertConfig, BertModel

    folder = Path(folder)
    tokenizer = build_word_tokenizer(sentences, folder, model_max_length=128)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                        num_attention_heads=num_attention_heads, intermediate_size=4 * hidden_size,
                        max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(folder)
    return folder
