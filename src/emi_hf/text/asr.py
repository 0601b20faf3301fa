"""Speech recognition backends behind one interface: :class:`TransformersAsr` (the transformers ASR pipeline, any
Whisper-family id or folder, long-form in 30 s chunks with segment timestamps) and :class:`FasterWhisperAsr`
(faster-whisper: a CTranslate2 model name or folder; ``pip install emi-hf[asr]``).

Both take a 16 kHz mono float32 waveform and return every segment (start / end seconds, text) and the given or
detected language. A Hub id that is neither a folder nor in the local cache while offline raises
:class:`~emi_hf.text.transcript.TranscriptionError` saying what to pass instead.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from .transcript import Segment, TranscriptionError

__all__ = ["ASR_BACKENDS", "DEFAULT_ASR_MODELS", "AsrBackend", "TransformersAsr", "FasterWhisperAsr",
           "build_asr_backend", "hub_offline"]

SAMPLING_RATE = 16000
DEFAULT_ASR_MODELS = {"transformers": "openai/whisper-large-v3-turbo", "faster-whisper": "large-v3-turbo"}
ASR_BACKENDS = tuple(DEFAULT_ASR_MODELS)


def hub_offline() -> bool:
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _offline_error(model: str, what: str, example: str) -> TranscriptionError:
    return TranscriptionError(
        f"{model!r} is not a local folder and is not in the Hugging Face cache, and the Hub is offline "
        f"(HF_HUB_OFFLINE=1). Pass --asr-model FOLDER with {what} (e.g. {example}), or download it once with the "
        f"Hub online: hf download {model}")


def _resolve_transformers_model(model: str) -> str:
    if Path(model).is_dir():
        return str(model)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(model, local_files_only=hub_offline())
    except LocalEntryNotFoundError as error:
        raise _offline_error(model, "a Whisper model saved by save_pretrained",
                             "WhisperForConditionalGeneration + WhisperProcessor saved to one folder") from error
    except Exception as error:  # a network or repository error: say which model and what to do
        raise TranscriptionError(f"could not get the ASR model {model!r} ({error}). Pass --asr-model with a local "
                                 "Whisper folder or a Hub id you can reach.") from error


def _language_code(name: str | None) -> str | None:
    """transformers reports languages by name ("english"): the code ("en")."""
    if not name:
        return None
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    name = str(name).strip("<|>").lower()
    return name if name in LANGUAGES else TO_LANGUAGE_CODE.get(name, name)


class AsrBackend:
    """``transcribe(waveform, language)`` -> ``(segments, language)``; ``settings()`` -> what changes the result."""

    name = ""

    def transcribe(self, waveform: np.ndarray, language: str | None = None) -> tuple[list[Segment], str | None]:
        raise NotImplementedError

    def settings(self) -> dict:
        raise NotImplementedError

    def load(self) -> None:
        """Loads the model now (otherwise on the first `transcribe`): a live stream loads it before it starts, so
        that a model that cannot be loaded is reported at once and the first utterance does not wait for it."""
        loader = getattr(self, "_load", None)
        if loader is not None:
            loader()


class TransformersAsr(AsrBackend):
    """The transformers ASR pipeline, chunked long-form (``chunk_length_s`` windows, ``stride_length_s``
    overlap), with segment timestamps. ``max_new_tokens`` caps the decode length of each window."""

    name = "transformers"

    def __init__(self, model: str | None = None, device: str = "cpu", max_new_tokens: int | None = None,
                 chunk_length_s: float = 30.0, batch_size: int = 1, num_beams: int = 1):
        self.model = model or DEFAULT_ASR_MODELS["transformers"]
        self.device, self.max_new_tokens = device, max_new_tokens
        self.chunk_length_s, self.batch_size, self.num_beams = chunk_length_s, batch_size, num_beams
        self._pipeline = None

    def settings(self) -> dict:
        return {"backend": self.name, "model": self.model, "max_new_tokens": self.max_new_tokens,
                "chunk_length_s": self.chunk_length_s, "num_beams": self.num_beams}

    def _load(self):
        if self._pipeline is None:
            from transformers import pipeline

            folder = _resolve_transformers_model(self.model)
            self._pipeline = pipeline("automatic-speech-recognition", model=folder, device=self.device)
        return self._pipeline

    def transcribe(self, waveform, language=None):
        generate = {"task": "transcribe", "num_beams": self.num_beams}
        if language:
            generate["language"] = language
        if self.max_new_tokens is not None:
            generate["max_new_tokens"] = int(self.max_new_tokens)
        output = self._load()({"raw": np.asarray(waveform, dtype=np.float32), "sampling_rate": SAMPLING_RATE},
                              chunk_length_s=self.chunk_length_s, batch_size=self.batch_size, return_timestamps=True,
                              return_language=True, generate_kwargs=generate, ignore_warning=True)
        chunks = output.get("chunks") or []
        segments = [Segment(*(chunk.get("timestamp") or (None, None)), str(chunk.get("text", "")))
                    for chunk in chunks]
        if not segments and str(output.get("text", "")).strip():
            segments = [Segment(None, None, str(output["text"]))]
        if language is None:
            detected = Counter(code for code in (_language_code(chunk.get("language")) for chunk in chunks) if code)
            language = detected.most_common(1)[0][0] if detected else None
        return segments, language


class FasterWhisperAsr(AsrBackend):
    """faster-whisper (CTranslate2). `model`: a converted folder, a faster-whisper size name (``large-v3``) or a
    CTranslate2 Hub id. Its own VAD filter is off: the transcriber runs silero-vad itself. ``timestamps=False``
    decodes without timestamp tokens: one segment per 30 s window (faster, coarser times)."""

    name = "faster-whisper"

    def __init__(self, model: str | None = None, device: str = "cpu", max_new_tokens: int | None = None,
                 beam_size: int = 5, compute_type: str = "default", cpu_threads: int | None = None,
                 timestamps: bool = True):
        self.model = model or DEFAULT_ASR_MODELS["faster-whisper"]
        self.device, self.max_new_tokens, self.beam_size = device, max_new_tokens, beam_size
        self.compute_type, self.cpu_threads, self.timestamps = compute_type, cpu_threads, timestamps
        self._model = None

    def settings(self) -> dict:
        return {"backend": self.name, "model": self.model, "max_new_tokens": self.max_new_tokens,
                "beam_size": self.beam_size, "compute_type": self.compute_type, "timestamps": self.timestamps}

    def _resolve(self) -> str:
        if Path(self.model).is_dir():
            if not (Path(self.model) / "tokenizer.json").is_file():
                raise TranscriptionError(f"{self.model!r} has no tokenizer.json (faster-whisper would fetch one "
                                         "from the Hub): copy the Whisper tokenizer.json into the folder, e.g. "
                                         "convert with copy_files=['tokenizer.json', 'preprocessor_config.json']")
            return str(self.model)
        from faster_whisper.utils import download_model
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return download_model(self.model, local_files_only=hub_offline())
        except LocalEntryNotFoundError as error:
            from faster_whisper.utils import _MODELS

            raise _offline_error(_MODELS.get(self.model, self.model), "a CTranslate2 Whisper model and its "
                                 "tokenizer.json",
                                 "ct2-transformers-converter --model WHISPER_FOLDER --output_dir OUT "
                                 "--copy_files tokenizer.json preprocessor_config.json") from error
        except ValueError as error:  # an unknown size name
            raise TranscriptionError(f"{error}. Or pass --asr-model with a CTranslate2 folder.") from error
        except Exception as error:  # a network or repository error: say which model and what to do
            raise TranscriptionError(f"could not get the faster-whisper model {self.model!r} ({error}). Pass "
                                     "--asr-model with a local CTranslate2 folder or a name you can reach.") from error

    def _load(self):
        if self._model is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError as error:
                raise TranscriptionError("the faster-whisper backend needs faster-whisper: "
                                         "pip install 'emi-hf[asr]'") from error
            import torch

            device = "cuda" if str(self.device).startswith("cuda") else "cpu"
            self._model = WhisperModel(self._resolve(), device=device, compute_type=self.compute_type,
                                       cpu_threads=self.cpu_threads or torch.get_num_threads())
        return self._model

    def transcribe(self, waveform, language=None):
        pieces, info = self._load().transcribe(
            np.asarray(waveform, dtype=np.float32), language=language, task="transcribe", beam_size=self.beam_size,
            max_new_tokens=self.max_new_tokens, vad_filter=False, condition_on_previous_text=False,
            without_timestamps=not self.timestamps)
        segments = [Segment(piece.start, piece.end, piece.text) for piece in pieces]
        return segments, language or info.language


def build_asr_backend(backend: str = "transformers", model: str | None = None, device: str = "cpu",
                      max_new_tokens: int | None = None, beam_size: int | None = None) -> AsrBackend:
    """The backend named `backend` (``transformers`` | ``faster-whisper``); loading happens on first use."""
    if backend == "transformers":
        return TransformersAsr(model, device=device, max_new_tokens=max_new_tokens, num_beams=beam_size or 1)
    if backend == "faster-whisper":
        return FasterWhisperAsr(model, device=device, max_new_tokens=max_new_tokens, beam_size=beam_size or 5)
    raise TranscriptionError(f"unknown ASR backend {backend!r}: choose one of {', '.join(ASR_BACKENDS)}")
