"""Why clips failed, in words that group: the per-reason counts of `emi-hf extract` / `import-features` reports and
the refusal of `emi-hf submit`.

A failure entry (one line of ``failures.rank*.jsonl``) keeps the full error (``error``, with the clip's path and
details); its ``reason`` is the same error without what differs from clip to clip: the path, and the details in
parentheses (codec messages, packet counts). Entries written before ``reason`` existed get it from ``error``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable

__all__ = ["failure_reason", "reason_counts", "reason_of", "reasons_line"]

_DETAILS = re.compile(r"\s*\([^()]*\)")
_MAX_REASON = 160


def _without_details(text: str) -> str:
    previous = None
    while previous != text:  # nested parentheses: innermost first
        previous, text = text, _DETAILS.sub("", text)
    text = " ".join(text.split()).rstrip(" .:;,")
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def failure_reason(error: BaseException, path: str | os.PathLike | None = None) -> str:
    """``"EmiInputError: could not be opened as a media file"``: the error's type and message without the clip's
    path or the details in parentheses (an ``EmiInputError``: its ``problem``)."""
    message = getattr(error, "problem", None) or str(error)
    if path is not None:
        for form in {str(path), repr(str(path)), os.path.basename(str(path))}:
            message = message.replace(form, "<clip>")
    return f"{type(error).__name__}: {_without_details(message) or 'no message'}"


def reason_of(entry: dict) -> str:
    """A failure entry's ``reason`` (derived from its ``error`` for entries of earlier versions)."""
    if entry.get("reason"):
        return str(entry["reason"])
    error = str(entry.get("error") or "unknown error")
    path = entry.get("path")
    if path:
        for form in (repr(str(path)) + ": ", str(path) + ": ", repr(str(path)), str(path)):
            error = error.replace(form, "")
    return _without_details(error) or "unknown error"


def reason_counts(failures: Iterable[dict]) -> dict[str, int]:
    """{reason: number of clips}, the most frequent first."""
    return dict(Counter(reason_of(entry) for entry in failures).most_common())


def reasons_line(counts: dict[str, int], limit: int = 5) -> str:
    """``"2 EmiInputError: ...; 1 EmiInputError: ..."`` (the `limit` most frequent, then how many more)."""
    shown = [f"{count} {reason}" for reason, count in list(counts.items())[:limit]]
    if len(counts) > limit:
        shown.append(f"{sum(list(counts.values())[limit:])} for {len(counts) - limit} other reason(s)")
    return "; ".join(shown)
