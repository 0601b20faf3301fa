"""The package's known errors and the `emi-hf` exit codes (one place for both).

Known errors against unexpected ones
------------------------------------
An :class:`EmiError` is a problem the user can fix without changing the code: a path that does not exist, an option
or a combination of options that cannot work, a file whose content is wrong, a data folder laid out otherwise, weights
or a package that are not available here, the Hub refusing a request. Its message is complete on its own (it names
the file or option and says what to do), so ``emi-hf`` prints it as one line, ``emi-hf: error: MESSAGE``, and exits
with :attr:`ExitCode.USAGE`. Everything else (a ``ValueError`` from a bug, a ``KeyError``, an ``OSError`` that no
check foresaw) is unexpected: ``emi-hf`` lets it through with its traceback (exit code 1, Python's own), because
the traceback is what finds the bug. ``EMI_HF_TRACEBACK=1`` shows the traceback of known errors too.

Raise a subclass that also derives from the built-in type a caller would catch (``ValueError``,
``FileNotFoundError``, ``OSError``, ``ImportError``), so code written against the built-in types keeps working:

=============================  ========================  ==========================================================
class                          also a                    for
=============================  ========================  ==========================================================
:class:`EmiUsageError`         ``ValueError``            an option, argument, file content or folder that cannot
                                                         be used as it is
:class:`EmiNotFoundError`      ``FileNotFoundError``     a file, folder or checkpoint the user named is not there
:class:`EmiUnavailableError`   ``OSError``               something needed cannot be had here (weights offline, a
                                                         camera)
:class:`EmiDependencyError`    ``ImportError``           an optional package is not installed (the message says
                                                         what to install)
``EmiInputError``              ``ValueError``            a media file that cannot be processed
                                                         (:mod:`emi_hf.media.errors`)
``DataLayoutError``,           ``ValueError``            a data folder, split CSV, organiser pickle or transcript
``OrganiserFeatureError``,                               file that cannot be read
``TranscriptionError``
``EmiHubError`` and            ``RuntimeError``, ...     the Hub: no token, no such repository or revision, offline
subclasses                                               (:mod:`emi_hf.hub`)
``ShardsIncomplete``           ``TimeoutError``          an extraction process stopped answering
``EmiConfigError``             ``ValueError``            a model setting that cannot work (``configuration_emi``)
``BackboneError`` and          ``ValueError``, ...       a face backbone choice or weights file that cannot be used
subclasses                                               (``encoders_emi``)
:class:`IncompleteSubmission`  ``ValueError``            `emi-hf submit`: clips without a prediction and no
                                                         ``--allow-fill``
=============================  ========================  ==========================================================

The model files (``configuration_emi.py``, ``encoders_emi.py``, ...) are also the remote code of saved models and
import nothing of emi_hf, so their error classes are not ``EmiError`` subclasses: they carry the class attribute
``emi_known_error = True`` instead, which is what :func:`is_known_error` reads. Environment errors that no code
change fixes (no permission, disk full, read-only file system) are also printed as one line.
"""

from __future__ import annotations

import contextlib
import errno
import enum
import os
from collections.abc import Iterator

__all__ = [
    "EmiDependencyError",
    "EmiError",
    "EmiNotFoundError",
    "EmiUnavailableError",
    "EmiUsageError",
    "ExitCode",
    "IncompleteSubmission",
    "exit_code_table",
    "extraction_exit_code",
    "is_known_error",
    "loading",
]


class EmiError(Exception):
    """Base of the errors a user can act on; the message names the file or option and says what to do."""

    emi_known_error = True  # what `is_known_error` reads (the remote-code files' own error classes set it too)


class EmiUsageError(EmiError, ValueError):
    """An option, argument, file content or folder that cannot be used as it is."""


class EmiNotFoundError(EmiError, FileNotFoundError):
    """A file, folder or checkpoint the user named does not exist."""


class EmiUnavailableError(EmiError, OSError):
    """Something the command needs cannot be had on this machine (weights while offline, a camera)."""


class EmiDependencyError(EmiError, ImportError):
    """An optional package is missing; the message says what to install."""


class IncompleteSubmission(EmiError, ValueError):
    """`emi-hf submit` found test clips without a prediction and was not allowed to fill them (``--allow-fill``)."""


class ExitCode(enum.IntEnum):
    """The exit codes of every `emi-hf` command (documented in ``emi-hf --help`` and changes/loud.md)."""

    OK = 0  # done: everything asked for succeeded
    UNEXPECTED = 1  # an unexpected error (a bug, or a failure no check foresaw): its traceback is printed
    USAGE = 2  # a known error: bad command line, input, option, data folder, missing file, Hub (one line)
    PARTIAL = 3  # extract / import-features: some clips failed; the rest were extracted and merged
    ALL_FAILED = 4  # extract / import-features: every requested clip failed; nothing was extracted
    INVALID = 5  # verify-submission, submit: the submission file has errors (warnings alone do not count)


_MEANINGS = {
    ExitCode.OK: "success: everything asked for was done",
    ExitCode.UNEXPECTED: "unexpected error (a bug or an unforeseen failure): the traceback is printed",
    ExitCode.USAGE: "known error (bad command line, input file, option, data folder, missing file, Hub, "
                    "submit without --allow-fill): one line 'emi-hf: error: ...'",
    ExitCode.PARTIAL: "extract, import-features: some clips failed (the others were extracted and merged; the report "
                      "counts the failures per reason)",
    ExitCode.ALL_FAILED: "extract, import-features: every requested clip failed, none was extracted",
    ExitCode.INVALID: "verify-submission, submit: the submission file has errors (e.g. every row the same)",
}


def exit_code_table() -> str:
    """The exit codes, one per line (the CLI's help epilog)."""
    lines = [f"  {int(code):>3}  {_MEANINGS[code]}" for code in ExitCode]
    return "\n".join(["exit codes:", *lines, "  130  interrupted (Ctrl-C; Python's own)"])


_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_known_error(error: BaseException) -> bool:
    """True for an :class:`EmiError` (or a class marked ``emi_known_error = True``) and for an environment
    ``OSError`` (permission denied, no space left, read-only file system): the CLI prints these as one line;
    anything else keeps its traceback."""
    if getattr(type(error), "emi_known_error", False):
        return True
    return isinstance(error, OSError) and error.errno in _ENVIRONMENT_ERRNOS


def extraction_exit_code(splits: dict) -> ExitCode:
    """The exit code of an extraction or import report's ``splits`` ({split: {"requested", "extracted", ...}}):
    OK when every requested clip was extracted, ALL_FAILED when none was, PARTIAL otherwise."""
    requested = sum(int(counts.get("requested", 0)) for counts in splits.values())
    extracted = sum(int(counts.get("extracted", 0)) for counts in splits.values())
    if extracted >= requested:
        return ExitCode.OK
    return ExitCode.ALL_FAILED if extracted == 0 else ExitCode.PARTIAL


@contextlib.contextmanager
def loading(name: str | os.PathLike, what: str = "model", hint: str | None = None) -> Iterator[None]:
    """Around a transformers ``from_pretrained`` of a name the user gave: transformers says that it cannot load a name
    (no such folder, not on the Hub or offline, a folder without the files) with an ``OSError``, which becomes an
    :class:`EmiNotFoundError` naming it (the original chained); other errors pass unchanged."""
    try:
        yield
    except OSError as error:
        if is_known_error(error):
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        where = "no such folder" if not os.path.exists(name) else "a folder without its files"
        hint = hint or ("Pass a folder written by save_pretrained (e.g. a training run's --output-dir) or a Hub id "
                        "reachable from here.")
        raise EmiNotFoundError(f"{name}: cannot load the {what} ({where}; {first_line}). {hint}") from error
