"""Transcripts a user already has, read instead of computed.

Accepted sources (:func:`read_transcripts`):

* a CSV with the columns ``Filename,text`` (more columns are ignored; ``Filename`` as in Hume-Vidmimic2's split
  files, with or without the extension);
* a JSON file for one clip, ``{"text": ..., "segments": [{"start", "end", "text"}, ...], "language": ...}``
  (``segments`` and ``language`` optional), named after the clip (``<clip stem>.json``);
* a folder of such JSON files, one per clip;
* a JSON Lines file as written by ``emi-hf transcribe --json`` (one object per line, each with ``path``).

Clips are looked up by file name, then by stem (:meth:`TranscriptTable.lookup`). Bad input raises
:class:`~emi_hf.text.transcript.TranscriptionError` naming the file (and the row or line).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .transcript import Segment, Transcript, TranscriptionError, clean_segments

__all__ = ["TranscriptTable", "read_transcripts"]


def _bad(path, problem: str, hint: str = "") -> TranscriptionError:
    return TranscriptionError(f"{str(path)!r}: {problem}" + (f" {hint}" if hint else ""))


_JSON_HINT = 'Expected {"text": "...", "segments": [{"start": 0.0, "end": 1.5, "text": "..."}], "language": "en"}.'


def _transcript_from_json(data, path, where: str = "") -> Transcript:
    if not isinstance(data, dict) or "text" not in data:
        raise _bad(path, f"{where}is not a transcript object with a \"text\" field.", _JSON_HINT)
    if not isinstance(data["text"], str):
        raise _bad(path, f"{where}\"text\" is {type(data['text']).__name__}, not a string.", _JSON_HINT)
    segments = data.get("segments") or []
    if not isinstance(segments, list):
        raise _bad(path, f"{where}\"segments\" is not a list.", _JSON_HINT)
    parsed = []
    for number, item in enumerate(segments):
        try:
            parsed.append(Segment(None if item.get("start") is None else float(item["start"]),
                                  None if item.get("end") is None else float(item["end"]), str(item["text"])))
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise _bad(path, f"{where}segment {number} is not {{start, end, text}} ({error!r}).", _JSON_HINT) from None
    language = data.get("language")
    if language is not None and not isinstance(language, str):
        raise _bad(path, f"{where}\"language\" is not a string.", _JSON_HINT)
    return Transcript(text=data["text"].strip(), segments=clean_segments(parsed, data.get("duration")),
                      language=language, path=data.get("path"), duration=data.get("duration"),
                      speech=data.get("speech"), source=f"file:{path}")


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _bad(path, f"is not valid JSON ({error}).", _JSON_HINT) from None


def _read_csv(path: Path) -> dict[str, Transcript]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = [name.strip() for name in (reader.fieldnames or [])]
            reader.fieldnames = fields
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise _bad(path, f"could not be read as CSV ({error}).", "Save it as UTF-8 CSV with a Filename,text header.")
    if "Filename" not in fields or "text" not in fields:
        raise _bad(path, f"has the columns {fields}, not Filename and text.",
                   "The first line must be the header Filename,text.")
    table: dict[str, Transcript] = {}
    for number, row in enumerate(rows, start=2):
        name, text = (row.get("Filename") or "").strip(), row.get("text")
        if not name:
            raise _bad(path, f"line {number} has an empty Filename.")
        if text is None:
            raise _bad(path, f"line {number} has no text column (a missing comma?).")
        if name in table:
            raise _bad(path, f"line {number} repeats the Filename {name!r}.", "Keep one row per clip.")
        table[name] = Transcript(text=text.strip(), source=f"file:{path}")
    return table


def _read_jsonl(path: Path) -> dict[str, Transcript]:
    table: dict[str, Transcript] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise _bad(path, f"line {number} is not valid JSON ({error}).") from None
        transcript = _transcript_from_json(data, path, where=f"line {number} ")
        if not transcript.path:
            raise _bad(path, f"line {number} has no \"path\" (which clip it is).")
        table[Path(transcript.path).name] = transcript
    return table


def read_transcripts(source) -> "TranscriptTable":
    """Reads a CSV, a JSON (one clip), a JSON Lines file or a folder of JSON files (see module doc)."""
    path = Path(source)
    if not path.exists():
        raise _bad(path, "does not exist.", "Pass a Filename,text CSV, a JSON file or a folder of JSON files.")
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise _bad(path, "holds no .json transcript files.", "Write one <clip>.json per clip.")
        table = {file.stem: _transcript_from_json(_load_json(file), file) for file in files}
    elif path.suffix.lower() == ".csv":
        table = _read_csv(path)
    elif path.suffix.lower() == ".jsonl":
        table = _read_jsonl(path)
    elif path.suffix.lower() == ".json":
        table = {path.stem: _transcript_from_json(_load_json(path), path)}
    else:
        raise _bad(path, f"has the extension {path.suffix!r}.", "Pass a .csv, .json or .jsonl file, or a folder.")
    return TranscriptTable(table, str(path))


class TranscriptTable:
    """Transcripts by clip name."""

    def __init__(self, transcripts: dict[str, Transcript], source: str):
        self.transcripts, self.source = transcripts, source
        self._by_stem = {Path(name).stem: transcript for name, transcript in transcripts.items()}

    def __len__(self) -> int:
        return len(self.transcripts)

    def lookup(self, clip) -> Transcript | None:
        """The transcript of the clip at path `clip` (by file name, then stem), or ``None``."""
        clip = Path(clip)
        found = self.transcripts.get(clip.name) or self.transcripts.get(clip.stem) or self._by_stem.get(clip.stem)
        if found is None:
            return None
        return Transcript(text=found.text, segments=list(found.segments), language=found.language, path=str(clip),
                          duration=found.duration, speech=found.speech, source=found.source)
