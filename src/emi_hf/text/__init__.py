"""What was said: voice activity detection (silero-vad), transcription (transformers Whisper pipeline or
faster-whisper), transcripts read from files, the transcript cache, a frozen text encoder, and a small word-level
tokenizer built offline.

    from emi_hf.text import Transcriber
    transcript = Transcriber("faster-whisper", "large-v3-turbo", language="en").transcribe("clip.mp4")
    transcript.text, [(s.start, s.end, s.text) for s in transcript.segments], transcript.language
"""

from .asr import ASR_BACKENDS, DEFAULT_ASR_MODELS, AsrBackend, FasterWhisperAsr, TransformersAsr, build_asr_backend
from .cache import TranscriptCache, default_transcript_cache_dir
from .encoder import DEFAULT_TEXT_ENCODER, TextEmbedding, TextEncoder
from .transcribe import Transcriber, transcribe_files
from .transcript import Segment, Transcript, TranscriptionError, clean_segments, join_segments
from .transcript_files import TranscriptTable, read_transcripts
from .vad import SpeechDetector, VadOptions, speech_frame_mask, speech_seconds
from .word_tokenizer import build_word_text_encoder, build_word_tokenizer

__all__ = [
    "ASR_BACKENDS", "DEFAULT_ASR_MODELS", "AsrBackend", "FasterWhisperAsr", "TransformersAsr", "build_asr_backend",
    "TranscriptCache", "default_transcript_cache_dir", "DEFAULT_TEXT_ENCODER", "TextEmbedding", "TextEncoder",
    "Transcriber", "transcribe_files", "Segment", "Transcript", "TranscriptionError", "clean_segments",
    "join_segments", "TranscriptTable", "read_transcripts", "SpeechDetector", "VadOptions", "speech_frame_mask",
    "speech_seconds", "build_word_text_encoder", "build_word_tokenizer",
]
