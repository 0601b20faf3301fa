"""Label-dependent transcripts of the synthetic set: one or two short English-looking sentences per clip whose
emotion words follow the clip's labels, written to ``transcripts.csv`` (``Filename,text,source``) so that a text
model has a third, noisy modality to learn from. Lexicons and the rule are in the package docstring.

Determinism: clip ``i``'s text comes from its own stream ``(seed, TRANSCRIPT_STREAM, i)``, so writing transcripts
changes nothing else the generator writes (videos, split CSVs and metadata draw from other streams).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ...models.configuration_emi import EMOTION_NAMES

__all__ = [
    "EMOTION_LEXICONS",
    "FILLER_WORDS",
    "TRANSCRIPTS_FILE",
    "TRANSCRIPT_SOURCE",
    "TRANSCRIPT_STREAM",
    "synthetic_transcript",
    "transcripts_csv_text",
    "write_synthetic_transcripts",
]

TRANSCRIPT_STREAM = 3  # SeedSequence([seed, TRANSCRIPT_STREAM, i]): the words of clip i's transcript
TRANSCRIPTS_FILE = "transcripts.csv"
TRANSCRIPT_SOURCE = "synthetic: label-dependent template (emi_hf.data.synthetic.transcripts)"
TRANSCRIPT_HEADER = ("Filename", "text", "source")

# Keys follow EMOTION_NAMES. Lexicons do not share words with each other nor with the filler vocabulary.
EMOTION_LEXICONS: dict[str, tuple[str, ...]] = {
    "Admiration": ("impressive", "brilliant", "respect", "talented", "masterful", "incredible skill", "admire",
                   "remarkable", "well done"),
    "Amusement": ("funny", "hilarious", "joke", "haha", "laughing", "silly", "ridiculous", "giggling",
                  "lol"),
    "Determination": ("will", "must", "focus", "never give up", "keep pushing", "stronger", "fight", "push",
                      "commit"),
    "Empathic Pain": ("sorry", "hurts", "painful", "sad", "poor soul", "suffering", "heartbreaking", "tears",
                      "awful"),
    "Excitement": ("wow", "amazing", "can't wait", "omg", "awesome", "thrilling", "epic", "let's go", "insane"),
    "Joy": ("happy", "wonderful", "love", "smile", "delighted", "glad", "lovely", "cheerful", "sunshine"),
}
FILLER_WORDS: tuple[str, ...] = (
    "the", "and", "so", "today", "we", "video", "this", "that", "is", "was", "a", "to", "of", "it", "in", "on",
    "just", "really", "then", "you", "i", "they", "there", "here", "look", "at", "with", "what", "see", "now",
    "guy", "people", "time", "thing", "going", "about", "like", "one", "again", "right",
)  # fmt: skip

# The rule (see synthetic_transcript): per word slot, filler with FILLER_PROBABILITY; otherwise a cue word of an
# emotion drawn at random (NOISE_PROBABILITY) or with probability proportional to y_e**2 + CUE_FLOOR.
NUM_WORDS = (8, 18)
FILLER_PROBABILITY = 0.35
NOISE_PROBABILITY = 0.2
CUE_FLOOR = 0.01


def synthetic_transcript(labels: np.ndarray, rng: np.random.Generator) -> str:
    """One or two English-looking sentences (8-18 word slots) whose emotion words follow ``labels`` (6
    intensities in [0, 1], in the order of ``EMOTION_NAMES``); deterministic given ``rng``.

    Each slot is a filler word with probability ``FILLER_PROBABILITY``, else a word (or short phrase) of one
    emotion's lexicon: with probability ``NOISE_PROBABILITY`` a uniformly random emotion, otherwise emotion ``e``
    with probability proportional to ``y_e**2 + CUE_FLOOR``.
    """
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if y.shape != (len(EMOTION_NAMES),) or not np.all(np.isfinite(y)):
        raise ValueError(f"labels must be {len(EMOTION_NAMES)} finite intensities, got {labels!r}.")
    weights = np.clip(y, 0.0, 1.0) ** 2 + CUE_FLOOR
    weights /= weights.sum()
    num_slots = int(rng.integers(NUM_WORDS[0], NUM_WORDS[1] + 1))
    words = []
    for _ in range(num_slots):
        if rng.random() < FILLER_PROBABILITY:
            words.append(FILLER_WORDS[rng.integers(len(FILLER_WORDS))])
            continue
        if rng.random() < NOISE_PROBABILITY:
            emotion = int(rng.integers(len(EMOTION_NAMES)))
        else:
            emotion = int(rng.choice(len(EMOTION_NAMES), p=weights))
        lexicon = EMOTION_LEXICONS[EMOTION_NAMES[emotion]]
        words.append(lexicon[rng.integers(len(lexicon))])
    # two sentences when long enough and the coin says so; the first word of each capitalised
    cut = int(rng.integers(4, num_slots - 3)) if num_slots >= 12 and rng.random() < 0.5 else num_slots
    sentences = [words[:cut], words[cut:]] if cut < num_slots else [words]
    marks = rng.choice([".", "!"], size=len(sentences), p=[0.7, 0.3])
    return " ".join(_sentence(s, str(m)) for s, m in zip(sentences, marks))


def _sentence(words: list[str], mark: str) -> str:
    text = " ".join(words)
    return text[:1].upper() + text[1:] + mark


def transcripts_csv_text(clips: Iterable[dict], seed: int) -> str:
    """The content of ``transcripts.csv`` for ``clips`` (dicts with ``clip_id`` and ``labels``), in their order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TRANSCRIPT_HEADER)
    for clip in clips:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), TRANSCRIPT_STREAM, int(clip["clip_id"])]))
        writer.writerow([clip["clip_id"], synthetic_transcript(np.asarray(clip["labels"]), rng), TRANSCRIPT_SOURCE])
    return buffer.getvalue()


def write_synthetic_transcripts(output_dir: str | os.PathLike, clips: Iterable[dict], seed: int) -> Path:
    """Writes ``output_dir/transcripts.csv`` (``Filename,text,source``, one row per clip of every split, test
    clips included) unless it already holds exactly that content; returns its path."""
    path = Path(output_dir) / TRANSCRIPTS_FILE
    text = transcripts_csv_text(clips, seed)
    try:
        if path.read_text(encoding="utf-8") == text:
            return path
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
