"""Quiet third-party logging: what MediaPipe, TensorFlow Lite, absl and protobuf print says nothing a user can act
on, so a run shows only its progress bars and the package's own messages.

* :func:`quiet_native_logs` sets the log levels glog / TensorFlow read when their libraries load (so it runs
  before ``mediapipe`` is imported), the absl Python logger's level and a protobuf deprecation filter;
* :func:`native_stderr_silenced` covers what ignores those: the C++ lines MediaPipe 0.10.14 (absl logging) and
  TFLite write while a graph opens its models (``Created TensorFlow Lite XNNPACK delegate``, ``Feedback manager
  requires a model with a single signature``, ``All log messages before absl::InitializeLog()``);
* :func:`quiet_third_party_logs` (the CLI's start) does the first and turns off the per-file progress bars of
  transformers and datasets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings
from typing import Iterator

__all__ = ["native_stderr_silenced", "quiet_native_logs", "quiet_third_party_logs"]

_STDERR_LOCK = threading.Lock()


def quiet_native_logs() -> None:
    """Warnings and info of the native libraries off (errors stay); a variable the user set is kept."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.ERROR)
    # mediapipe 0.10.14 calls a deprecated protobuf API on every frame
    warnings.filterwarnings("ignore", message=r".*SymbolDatabase\.GetPrototype\(\) is deprecated")


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """The process's file descriptor 2 goes to /dev/null for the block (native code writes there directly).
    Keep the block short (opening a graph): what any thread writes to stderr meanwhile is lost."""
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def quiet_third_party_logs() -> None:
    """:func:`quiet_native_logs`, and no per-file load / save progress bars from transformers and datasets
    (extraction and training keep their own bars)."""
    quiet_native_logs()
    import datasets
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    datasets.disable_progress_bars()
