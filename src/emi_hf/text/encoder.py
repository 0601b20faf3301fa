"""A frozen transformers text encoder (AutoModel + AutoTokenizer, by Hub id or folder: GTE-style, BERT/RoBERTa,
multilingual E5, ...) turning a transcript into token embeddings ``[T_t, D]`` with a mask.

An empty transcript is a missing modality, not an error: it gives ``features`` of shape ``[0, D]`` and an empty
``mask`` (``present`` False). A transcript longer than ``max_length`` tokens is truncated (``truncated`` True).
``pooling`` (`EmiTextConfig.text_pooling`, one rule: `pool_text_states`, which the text model applies to raw token
ids too): ``"tokens"`` keeps every token's state; ``"cls"`` the first ([CLS]) token's, ``"mean"`` the masked mean
of them, each ``[1, D]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .asr import hub_offline
from .transcript import TranscriptionError

__all__ = ["DEFAULT_TEXT_ENCODER", "TEXT_TOKENIZER_DIR", "TextEmbedding", "TextEncoder", "copy_text_tokenizer",
           "pool_text_states"]

DEFAULT_TEXT_ENCODER = "thenlper/gte-base"
TEXT_TOKENIZER_DIR = "text_tokenizer"
"""Where a saved text or fusion model keeps its text encoder's tokenizer (a subfolder of the checkpoint)."""


def copy_text_tokenizer(source_dir, output_dir) -> bool:
    """Copies `source_dir`'s `text_tokenizer/` into `output_dir` (a model folder to another); False when it has
    none. Copying a folder onto itself does nothing."""
    import shutil

    source, target = Path(source_dir) / TEXT_TOKENIZER_DIR, Path(output_dir) / TEXT_TOKENIZER_DIR
    if not source.is_dir():
        return False
    if source.resolve() != target.resolve():
        shutil.copytree(source, target, dirs_exist_ok=True)
    return True


@dataclass
class TextEmbedding:
    features: np.ndarray  # float32 [T_t, D]
    mask: np.ndarray  # int8 [T_t], 1 = a real token
    truncated: bool = False

    @property
    def present(self) -> bool:
        return bool(self.mask.size and self.mask.any())


def _load(model: str):
    from transformers import AutoModel, AutoTokenizer

    local = Path(model).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=hub_offline() and not local)
        encoder = AutoModel.from_pretrained(model, local_files_only=hub_offline() and not local)
    except OSError as error:
        where = "is not a loadable folder" if local else "is not a local folder nor in the Hugging Face cache"
        raise TranscriptionError(
            f"text encoder {model!r} {where} ({error}). Pass --text-encoder FOLDER with a transformers encoder and "
            f"its tokenizer saved by save_pretrained, or download it once with the Hub online: hf download {model}"
        ) from error
    return tokenizer, encoder


MAX_TEXT_TOKENS = 512


def default_max_length(config, tokenizer) -> int:
    """Tokens a transcript is truncated to: the encoder's position table (less RoBERTa-style encoders' offset of
    `pad_token_id + 1` positions), the tokenizer's limit, and at most `MAX_TEXT_TOKENS`."""
    positions = getattr(config, "max_position_embeddings", None) or MAX_TEXT_TOKENS
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        positions -= int(getattr(config, "pad_token_id", 1) or 1) + 1
    limit = tokenizer.model_max_length if 0 < (tokenizer.model_max_length or 0) < 10**6 else positions
    return int(min(positions, limit, MAX_TEXT_TOKENS))


def pool_text_states(states, mask, pooling: str):
    """`pooling` of token states `[batch, tokens, D]` with their bool mask `[batch, tokens]` (torch tensors) ->
    (states, mask): unchanged for `"tokens"`; `[batch, 1, D]` and `[batch, 1]` (a row with any token) for `"cls"`
    (the first token's state: the [CLS] of BERT-style encoders) and `"mean"` (masked mean). The rule of
    `modeling_emi.EmiTextModel.embed_text` (a copy there, as that file must not import emi_hf)."""
    if pooling == "tokens":
        return states, mask
    present = mask.any(dim=1, keepdim=True)
    if pooling == "cls":
        return states[:, :1], present
    if pooling == "mean":
        weights = mask[..., None].to(states.dtype)
        return (states * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp(min=1.0), present
    raise ValueError(f"text pooling must be one of ('tokens', 'cls', 'mean'), got {pooling!r}.")


class TextEncoder:
    """Frozen text encoder; `encode` / `encode_batch` give :class:`TextEmbedding` (last hidden states, pooled as
    `pooling` says)."""

    def __init__(self, model: str = DEFAULT_TEXT_ENCODER, device: str = "cpu", max_length: int | None = None,
                 pooling: str = "tokens"):
        import torch

        if pooling not in ("tokens", "cls", "mean"):
            raise ValueError(f"text pooling must be one of ('tokens', 'cls', 'mean'), got {pooling!r}.")
        self.pooling = pooling

        self.model_name = model
        self.tokenizer, self.model = _load(model)
        self.model.requires_grad_(False).eval().to(device)
        self.device = torch.device(device)
        self.max_length = int(max_length or default_max_length(self.model.config, self.tokenizer))

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def _empty(self) -> TextEmbedding:
        return TextEmbedding(np.zeros((0, self.hidden_size), np.float32), np.zeros(0, np.int8))

    def encode(self, text: str) -> TextEmbedding:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str], batch_size: int = 16) -> list[TextEmbedding]:
        """One embedding per text; empty texts give the empty embedding (and are not run)."""
        import torch

        results: list[TextEmbedding | None] = [None] * len(texts)
        todo = [index for index, text in enumerate(texts) if text and text.strip()]
        for begin in range(0, len(todo), batch_size):
            indices = todo[begin:begin + batch_size]
            batch = self.tokenizer([texts[index].strip() for index in indices], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
            full = self.tokenizer([texts[index].strip() for index in indices], truncation=False)["input_ids"]
            inputs = {name: value.to(self.device) for name, value in batch.items()
                      if name in ("input_ids", "attention_mask", "token_type_ids")}
            with torch.inference_mode():
                hidden, pooled_mask = pool_text_states(self.model(**inputs).last_hidden_state.float(),
                                                       inputs["attention_mask"].bool(), self.pooling)
            hidden, masks = hidden.cpu().numpy(), pooled_mask.cpu().numpy().astype(np.int8)
            for row, index in enumerate(indices):
                length = int(masks[row].sum())
                results[index] = TextEmbedding(hidden[row, :length].astype(np.float32), masks[row, :length],
                                               truncated=len(full[row]) > self.max_length)
        return [result if result is not None else self._empty() for result in results]
