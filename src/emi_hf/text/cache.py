"""The transcript cache: a data set is never transcribed twice.

Keyed like the clip cache (:mod:`emi_hf.media.cache`): ``sha256(file sha256, the settings that change the result
(backend, model and a fingerprint of a model folder, language, decode length, VAD on/off and its settings), the
library versions that change the result, TRANSCRIPT_CACHE_VERSION)``; one ``<key>.json`` per clip, written to a
temporary file and renamed. The folder is ``cache_dir`` if given, else ``$EMI_HF_CACHE/transcripts`` when
``EMI_HF_CACHE`` is set, else ``transcripts/`` in emi-hf's cache folder (:func:`emi_hf.media.cache.cache_root`:
``$HF_HOME/emi_hf``, ``$XDG_CACHE_HOME/emi_hf`` or ``~/.cache/emi_hf``). Entries are a few kB and costly to
recompute (ASR), so the folder has no size cap; ``emi-hf cache info`` shows it, ``emi-hf cache clear
--transcripts`` empties it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from ..media.cache import library_versions, cache_root, file_sha256
from .transcript import Transcript

__all__ = ["TRANSCRIPT_CACHE_VERSION", "TranscriptCache", "default_transcript_cache_dir", "model_fingerprint"]

TRANSCRIPT_CACHE_VERSION = 1
_RESULT_PACKAGES = ("av", "transformers", "tokenizers", "faster-whisper", "ctranslate2", "silero-vad", "torch")


def default_transcript_cache_dir() -> Path:
    root = os.environ.get("EMI_HF_CACHE")
    return Path(root) / "transcripts" if root else cache_root() / "transcripts"


def model_fingerprint(model: str) -> str | None:
    """For a model folder: a hash of its files' names, sizes and modification times (a changed or re-converted
    model never hits an old entry); ``None`` for a Hub id (its name and the library versions key it)."""
    folder = Path(model)
    if not folder.is_dir():
        return None
    entries = sorted((str(path.relative_to(folder)), path.stat().st_size, path.stat().st_mtime_ns)
                     for path in folder.rglob("*") if path.is_file())
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


class TranscriptCache:
    def __init__(self, cache_dir=None):
        self.folder = Path(cache_dir) if cache_dir is not None else default_transcript_cache_dir()
        self.hits = self.misses = 0

    def key(self, path, settings: dict) -> str:
        payload = {"version": TRANSCRIPT_CACHE_VERSION, "file": file_sha256(path), "settings": settings,
                   "versions": library_versions(_RESULT_PACKAGES)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str) -> Transcript | None:
        entry = self.folder / f"{key}.json"
        try:
            data = json.loads(entry.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):  # absent, or unreadable: recompute and overwrite
            self.misses += 1
            return None
        self.hits += 1
        return Transcript.from_dict(data)

    def usage(self) -> tuple[int, int]:
        """(entries, bytes) in the folder."""
        files = self._entries()
        return len(files), sum(size for _, size in files)

    def clear(self) -> tuple[int, int]:
        """Removes every entry; returns (entries removed, bytes freed)."""
        files = self._entries()
        for path, _ in files:
            path.unlink(missing_ok=True)
        return len(files), sum(size for _, size in files)

    def _entries(self) -> list[tuple[Path, int]]:
        found = []
        for path in self.folder.glob("*.json") if self.folder.is_dir() else ():
            try:
                found.append((path, path.stat().st_size))
            except FileNotFoundError:
                continue
        return found

    def put(self, key: str, transcript: Transcript) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f"{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:  # written beside the entry, then renamed: a crash never leaves a half-written entry
            partial.write_text(json.dumps(transcript.to_dict()), encoding="utf-8")
            os.replace(partial, self.folder / f"{key}.json")
        finally:
            partial.unlink(missing_ok=True)
