"""The one exception type of the media pipeline.

Bad input either raises :class:`EmiInputError` (the clip cannot be used at all) or is masked (the clip is usable,
one modality is missing); which one is documented in :mod:`emi_hf.media` and repeated here:

=============================================  ===========================================================
input                                           outcome
=============================================  ===========================================================
path that does not exist                        raises :class:`EmiFileNotFoundError` (an ``EmiInputError``
                                                and a ``FileNotFoundError``)
a directory, a zero-byte file                   raises ``EmiInputError``
not a media file (text, CSV, random bytes)      raises ``EmiInputError``
unreadable codec / container                    raises ``EmiInputError`` (says how to re-encode)
corrupt or truncated file, no frame decodable   raises ``EmiInputError``
truncated file, some frames decodable           works: the decoded frames are used, ``metadata["warnings"]``
                                                says how many packets were lost (and a ``UserWarning``)
no face in any frame                            masked: ``frame_mask`` all 0, ``face_fraction`` 0.0, warning
no audio track (video-only file)                masked: ``audio_present`` False, ``attention_mask`` all 0
no video track (audio-only file)                masked: zero frames, ``face_fraction`` 0.0
a single frame                                  works (one frame, its timestamp)
=============================================  ===========================================================
"""

from __future__ import annotations

from ..errors import EmiError

_HOW_TO_REENCODE = "ffmpeg -i INPUT -c:v libx264 -pix_fmt yuv420p -c:a aac OUTPUT.mp4"


class EmiInputError(EmiError, ValueError):
    """A media input that cannot be processed. The message names the file and says what to do."""

    def __init__(self, path, problem: str, hint: str | None = None):
        self.path = str(path) if path is not None else None
        self.problem = problem
        self.hint = hint
        where = f"{self.path!r}: " if self.path is not None else ""
        message = f"{where}{problem}"
        if hint:
            message += f" {hint}"
        super().__init__(message)

    def __reduce__(self):  # keep it picklable (multiprocessing workers of `emi-hf extract`)
        return (self.__class__, (self.path, self.problem, self.hint))


class EmiFileNotFoundError(EmiInputError, FileNotFoundError):
    """The input path does not exist (catchable as both ``EmiInputError`` and ``FileNotFoundError``)."""


__all__ = ["EmiInputError", "EmiFileNotFoundError"]
