"""The text side of an extraction: per clip, voice activity (silero-vad), the transcript (read from a file the user
has, else the transcript cache, else ASR), and the frozen text encoder's token embeddings.

`TextStage` is built once per extraction (`emi-hf extract --text-encoder ID --asr-model ID | --transcripts FILE`)
and adds these columns to every clip (`emi_hf.data.store.feature_schema`):

=======================  =====================================================================================
``transcript``           the whole transcript ("" when nothing was said, or the clip has no audio)
``speech_segments``      ``[n, 2]`` float32 voice-activity segments, seconds (``[0, 2]``: no speech)
``audio_speech_mask``    ``[Ta]`` int8, 1 where the audio frame lies in a speech segment (the audio frames' grid)
``text_features``        ``[T_t, D]`` float32 token embeddings (with a text encoder; one masked row when empty)
``text_mask``            ``[T_t]`` int8, 1 = a real token; all 0 = no transcript (a missing modality)
=======================  =====================================================================================

With ``mask_non_speech_audio`` the clip's ``audio_mask`` is also multiplied by ``audio_speech_mask``, so the audio
model hears speech frames only (recorded in ``emi_features.json`` under ``text``). A clip with no speech keeps an
empty transcript: ASR is never run on silence (Whisper writes text there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..text.encoder import TEXT_TOKENIZER_DIR, TextEncoder
from ..text.transcribe import Transcriber
from ..text.transcript import Transcript, TranscriptionError
from ..text.transcript_files import read_transcripts
from ..text.vad import VAD_SAMPLING_RATE, SpeechDetector, speech_frame_mask


@dataclass
class TextStage:
    """
    Args:
        encoder: the frozen text encoder (None: transcripts and voice activity only, no text features).
        transcriber: ASR with VAD and the transcript cache (None: transcripts only from `transcripts`).
        transcripts: a CSV / JSON source of transcripts (`emi_hf.text.read_transcripts`), used first.
        vad: voice-activity detection for `speech_segments` (on by default).
        mask_non_speech_audio: multiply each clip's audio mask by its speech mask.
    """

    encoder: TextEncoder | None = None
    transcriber: Transcriber | None = None
    transcripts: str | os.PathLike | None = None
    vad: bool = True
    mask_non_speech_audio: bool = False
    _table: object = field(default=None, init=False, repr=False)
    _detector: SpeechDetector | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.transcripts is not None:
            self._table = read_transcripts(self.transcripts)
        if self.vad or self.mask_non_speech_audio:  # the transcriber's detector when it has one (same options)
            own = self.transcriber.detector if self.transcriber is not None else None
            self._detector = own or SpeechDetector()

    @classmethod
    def from_options(cls, text_encoder: str | None = None, asr_model: str | None = None,
                     asr_backend: str = "transformers", transcripts=None, language: str | None = None,
                     vad: bool = True, mask_non_speech_audio: bool = False, device: str = "cpu",
                     max_new_tokens: int | None = None, text_pooling: str = "tokens",
                     max_text_tokens: int | None = None) -> TextStage | None:
        """The stage `emi-hf extract`'s text options ask for; None when they ask for nothing. `text_pooling`,
        `max_text_tokens`: of the text features (`TextEncoder`)."""
        if not (text_encoder or asr_model or transcripts or mask_non_speech_audio):
            return None
        transcriber = None
        if asr_model:
            transcriber = Transcriber(asr_backend, asr_model, language=language, vad=vad, device=device,
                                      max_new_tokens=max_new_tokens)
        encoder = TextEncoder(text_encoder, device=device, max_length=max_text_tokens,
                              pooling=text_pooling) if text_encoder else None
        return cls(encoder=encoder, transcriber=transcriber, transcripts=transcripts, vad=vad,
                   mask_non_speech_audio=mask_non_speech_audio)

    # ------------------------------------------------------------------------------------------------------------------
    # per clip
    # ------------------------------------------------------------------------------------------------------------------

    def transcript(self, path, clip_id: str) -> Transcript:
        """The clip's transcript: from `transcripts`, else the transcriber (cache, then VAD + ASR)."""
        if self._table is not None:
            found = self._table.lookup(path) or self._table.lookup(f"{clip_id}.mp4")
            if found is not None:
                return found
        if self.transcriber is None:
            if self._table is None:
                return Transcript(text="", source="none")  # voice activity only
            raise TranscriptionError(
                f"{self.transcripts}: no transcript for clip {clip_id} ({path}). Add a row for it, or pass "
                "--asr-model ID to transcribe the clips the file lacks."
            )
        return self.transcriber.transcribe(path)

    def clip_fields(self, path, clip_id: str, waveform: np.ndarray | None, audio_mask: np.ndarray) -> dict:
        """The text columns of one clip (module table); `audio_mask` is the clip's audio frame mask."""
        transcript = self.transcript(path, clip_id)
        segments = transcript.speech
        if segments is None:
            segments = self._detector.segments(waveform, VAD_SAMPLING_RATE) if self._detector else []
        fields = {"transcript": np.asarray(transcript.text),
                  "speech_segments": np.asarray(segments, np.float32).reshape(-1, 2)}
        seconds = 0.0 if waveform is None else len(waveform) / VAD_SAMPLING_RATE
        rate = len(audio_mask) / seconds if seconds > 0 else 1.0
        fields["audio_speech_mask"] = speech_frame_mask(segments, len(audio_mask), rate) * (audio_mask > 0)
        if self.encoder is not None:
            embedding = self.encoder.encode(transcript.text)
            if embedding.present:
                fields["text_features"], fields["text_mask"] = embedding.features, embedding.mask.astype(np.int8)
            else:  # an empty transcript: one masked row, as for the other modalities
                fields["text_features"] = np.zeros((1, self.encoder.hidden_size), np.float32)
                fields["text_mask"] = np.zeros(1, np.int8)
        return fields

    def masked_audio(self, audio_mask: np.ndarray, fields: dict) -> np.ndarray:
        """The audio mask the clip is stored with: speech frames only with `mask_non_speech_audio`."""
        if not self.mask_non_speech_audio:
            return audio_mask
        return (audio_mask * fields["audio_speech_mask"]).astype(np.int8)

    # ------------------------------------------------------------------------------------------------------------------
    # per extraction
    # ------------------------------------------------------------------------------------------------------------------

    @property
    def text_feature_dim(self) -> int | None:
        return None if self.encoder is None else self.encoder.hidden_size

    def record(self) -> dict:
        """What made the text columns (`emi_features.json` "text", and the resume check)."""
        asr = self.transcriber.settings() if self.transcriber is not None else None
        pooling = None if self.encoder is None else self.encoder.pooling
        return {
            "text_encoder": None if self.encoder is None else self.encoder.model_name,
            "text_feature_dim": self.text_feature_dim,
            "max_text_tokens": None if self.encoder is None else self.encoder.max_length,
            # only when not every token's (the default), so that folders of earlier versions keep resuming
            **({"text_pooling": pooling} if pooling not in (None, "tokens") else {}),
            "asr": asr,
            "transcripts": None if self.transcripts is None else str(self.transcripts),
            "vad": self._detector.options.to_dict() if self._detector else None,
            "audio_masked_to_speech": self.mask_non_speech_audio,
        }

    def encoder_fingerprint(self) -> str | None:
        """sha256 of the text encoder's weights (the resume check: other weights would mix features)."""
        if self.encoder is None:
            return None
        import hashlib

        from ..encoder_setup import update_with_weights

        digest = hashlib.sha256(self.encoder.model_name.encode())
        update_with_weights(digest, self.encoder.model)
        return digest.hexdigest()

    def base_model(self, label_names):
        """An `EmiTextModel` holding the frozen encoder (random temporal part), as `base_text/`, for training; its
        provenance record names the encoder's Hub id or folder."""
        from ..modeling_emi import EmiTextModel
        from ..provenance import stamp, weights_record

        asr = self.transcriber.settings() if self.transcriber is not None else {}
        backend = asr.get("backend") or ("file" if self.transcripts is not None else None)
        model = EmiTextModel.from_encoder_model(
            self.encoder.model, self.encoder.model_name, label_names=list(label_names),
            max_text_tokens=self.encoder.max_length, text_pooling=self.encoder.pooling, asr_backend=backend, asr_model=asr.get("model"),
            asr_language=asr.get("language"),
        )
        return stamp(model, weights_record(model, self.encoder.model_name))  # a Hub id, or a folder (file)

    def save_base(self, folder: Path, label_names) -> None:
        """`folder` (base_text/): the base text model and its tokenizer (`text_tokenizer/`)."""
        self.base_model(label_names).save_pretrained(folder)
        self.encoder.tokenizer.save_pretrained(Path(folder) / TEXT_TOKENIZER_DIR)
