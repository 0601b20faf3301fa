"""`emi-hf` command line: extract, import-features, train, cv, evaluate, submit, verify-submission, predict, stream,
transcribe, push, pull, synth, quickstart, cache (thin: parse, call, render).

Errors (every command, `emi_hf.errors`): a known error (bad input, option, data folder, missing file, Hub) is one line
``emi-hf: error: ...`` and exit code 2; anything else keeps its traceback (exit code 1). The exit codes are listed in
``emi-hf --help``."""

# The package is light on purpose: building the parser (`emi-hf --help`, `emi-hf COMMAND --help`, `--version`) imports
# no torch, transformers or mediapipe; each command imports what it needs when it runs (tests/test_light_import.py).
# One module per group of commands: common (shared options), extract, models (train, cv, evaluate, predict, submit,
# verify-submission), stream, tools (push, pull, synth, quickstart, cache, transcribe).

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback

from ..errors import ExitCode, exit_code_table, is_known_error
from .common import _add_allow_random_arg, _add_processor_args, _make_processor  # noqa: F401  (used by tests)
from .extract import _add_extract_parser, _add_import_features_parser
from .models import (
    _add_cv_parser,
    _add_evaluate_parser,
    _add_predict_parser,
    _add_submit_parser,
    _add_verify_submission_parser,
    cmd_cv,
    cmd_train,
)
from .stream import add_stream_parser
from .recipe import add_recipe_parser
from .tools import _add_cache_parser, _add_hub_parsers, _add_synth_parsers, _add_transcribe_parser

__all__ = ["build_parser", "main"]


def _fail(error: BaseException) -> None:
    """A known error: one line on stderr (its traceback too with EMI_HF_TRACEBACK=1), exit code 2."""
    if os.environ.get("EMI_HF_TRACEBACK", "").lower() not in ("", "0", "false", "no"):
        traceback.print_exception(error)
    print(f"emi-hf: error: {error}", file=sys.stderr)
    raise SystemExit(ExitCode.USAGE) from None


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="emi-hf", description=__doc__, epilog=exit_code_table(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"emi-hf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_extract_parser(sub)
    sub.add_parser("train", help="train a model on cached features (see `emi-hf train --help`)", add_help=False)
    _add_evaluate_parser(sub)
    _add_cv_parser(sub)
    _add_predict_parser(sub)
    _add_hub_parsers(sub)
    _add_synth_parsers(sub)
    add_stream_parser(sub, _add_allow_random_arg)
    add_recipe_parser(sub)
    _add_import_features_parser(sub)
    _add_submit_parser(sub)
    _add_verify_submission_parser(sub)
    _add_transcribe_parser(sub)
    _add_cache_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit code (`emi_hf.errors.ExitCode`). A known error (`emi_hf.errors.
    is_known_error`) raises SystemExit(2) after one line on stderr, as argparse does; any other exception propagates
    with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in ("train", "cv"):  # their own parsers (HfArgumentParser)
            if not {"-h", "--help"} & set(argv):
                _quiet_third_party_logs()
            with _backbone_warnings_on_stderr():
                return int((cmd_train if argv[0] == "train" else cmd_cv)(argv[1:]))
        args = build_parser().parse_args(argv)  # --help / --version exit here, before anything heavy is imported
        _quiet_third_party_logs()
        with _backbone_warnings_on_stderr():
            return int(args.func(args))
    except Exception as error:
        if not is_known_error(error):
            raise
        _fail(error)
    return ExitCode.UNEXPECTED


def _quiet_third_party_logs() -> None:
    from ..media.logs import quiet_third_party_logs

    quiet_third_party_logs()


@contextlib.contextmanager
def _backbone_warnings_on_stderr():
    """While a command runs: `BackboneWarning`s (random backbones allowed, backbones of unknown origin) as
    `emi-hf: warning: ...` lines on stderr; other warnings as Python shows them."""
    import warnings

    from ..provenance import BackboneWarning

    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, *args, **kwargs):
            if issubclass(category, BackboneWarning):
                print(f"emi-hf: warning: {message}", file=sys.stderr, flush=True)
            else:
                shown(message, category, *args, **kwargs)

        warnings.simplefilter("always", BackboneWarning)  # each model warns once (it remembers its check)
        warnings.showwarning = show
        yield
