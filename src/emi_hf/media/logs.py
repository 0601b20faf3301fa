"""Quiet third-party logging: what MediaPipe, TensorFlow Lite, absl and protobuf print says nothing a user can act
on, so a run shows only its progress bars and the package's own messages.

* :func:`quiet_native_logs` sets the log levels glog / TensorFlow read when their libraries load (so it runs
  before ``mediapipe`` is imported), the absl Python logger's level and a protobuf deprecation filter;
* :func:`native_stderr_silenced` covers what ignores those: the C++ lines MediaPipe 0.10.14 (absl logging) and
  TFLite write while a graph opens its models (``Created TensorFlow Lite XNNPACK delegate``, ``Feedback manager
  requires a model with a single signature``, ``All log messages before absl::InitializeLog()``). File descriptor 2
  belongs to the whole process, so for the block it goes to a temporary file, and afterwards everything written there
  except those native info and warning lines goes to stderr: what another thread wrote meanwhile (a progress bar, a
  warning, a traceback) comes out late but is never lost, and so do native error lines;
* :func:`quiet_third_party_logs` (the CLI's start) does the first and turns off the per-file progress bars of
  transformers and datasets;
* :func:`progress_bars_hidden` turns those bars off for a block (training saves a checkpoint at every better epoch)
  and leaves the settings of transformers, huggingface_hub and datasets exactly as it found them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from typing import Iterator

__all__ = ["native_stderr_silenced", "progress_bars_hidden", "quiet_native_logs", "quiet_third_party_logs"]

_STDERR_LOCK = threading.Lock()
# what native_stderr_silenced drops: absl / glog info and warning lines ("I0000 00:00:1712345678.123456   12345
# file.cc:114] ..."), TFLite's "INFO: ..." and absl's pre-initialisation notice; error and fatal lines are kept
_NATIVE_NOISE = re.compile(rb"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s\]]+:\d+\] |INFO: |"
                           rb"WARNING: All log messages before absl::InitializeLog\(\) is called)")


def quiet_native_logs() -> None:
    """Warnings and info of the native libraries off (errors stay); a variable the user set is kept."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.ERROR)
    # mediapipe 0.10.14 calls a deprecated protobuf API on every frame
    warnings.filterwarnings("ignore", message=r".*SymbolDatabase\.GetPrototype\(\) is deprecated")


def _flush_stderr() -> None:
    with contextlib.suppress(Exception):  # sys.stderr may be None or closed (pythonw, a finished capture)
        sys.stderr.flush()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Native libraries' info and warning lines written to file descriptor 2 during the block are dropped; everything
    else written there meanwhile, by any thread (Python's stderr included), is written to stderr when the block ends.
    Keep the block short (opening a graph): other threads' stderr is held back until then."""
    with _STDERR_LOCK:
        _flush_stderr()
        saved = os.dup(2)
        capture = tempfile.TemporaryFile()
        try:
            os.dup2(capture.fileno(), 2)
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            held = capture.read()
            capture.close()
            kept = b"".join(line for line in held.splitlines(keepends=True) if not _NATIVE_NOISE.match(line))
            with contextlib.suppress(OSError):
                _write_all(2, kept)


@contextlib.contextmanager
def progress_bars_hidden() -> Iterator[None]:
    """No progress bars from transformers, huggingface_hub and datasets in the block; afterwards their settings are
    exactly as before (per-group huggingface_hub settings included), whatever they were."""
    import importlib

    import datasets.utils.logging as datasets_logging
    from transformers.utils import logging as transformers_logging

    hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")  # the module (`huggingface_hub.utils.tqdm` the
    # attribute is its tqdm class)

    transformers_on = transformers_logging.is_progress_bar_enabled()
    hub_states = dict(hub_tqdm.progress_bar_states)
    datasets_on = datasets_logging.is_progress_bar_enabled()
    with warnings.catch_warnings():  # an environment variable that forces them on / off is respected, silently
        warnings.simplefilter("ignore")
        transformers_logging.disable_progress_bar()
        datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for module, was_on in ((transformers_logging, transformers_on), (datasets_logging, datasets_on)):
                (module.enable_progress_bar if was_on else module.disable_progress_bar)()
        hub_tqdm.progress_bar_states.clear()  # transformers' switch also sets huggingface_hub's: put its back
        hub_tqdm.progress_bar_states.update(hub_states)


def quiet_third_party_logs() -> None:
    """:func:`quiet_native_logs`, and no per-file load / save progress bars from transformers and datasets
    (extraction and training keep their own bars)."""
    quiet_native_logs()
    import datasets
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    datasets.disable_progress_bars()
