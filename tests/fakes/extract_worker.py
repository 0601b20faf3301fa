"""`emi-hf extract` with tiny backbones, to be started by torchrun (or by hand) in tests/test_sharding.py.

    python extract_worker.py <emi-hf extract arguments>

Random backbones get the tiny test configs (helpers.TINY_TEMPORAL / TINY_WAV2VEC2), built by the real
`emi_hf.pretrained` builders (so with their seed). `EMI_TEST_KILL_RANK=R EMI_TEST_KILL_AFTER=N`: process R kills
itself (SIGKILL, nothing cleaned up) before its clip N + 1, as a crash or an OOM kill would.

`EMI_TEST_CALL_LOG=FILE`: every call of `extract_clip_features` appends a JSON line to FILE when it starts and when it
returns (`{"run", "rank", "pid", "clip_id", "event": "start" | "done"}`, `run` from `EMI_TEST_RUN`): the tests count
what was extracted from this log of the worker's own, not from the logs the code under test writes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers

from helpers import TINY_TEMPORAL, TINY_WAV2VEC2  # noqa: E402

import emi_hf.data.extraction as extraction  # noqa: E402
import emi_hf.pretrained as pretrained  # noqa: E402
from emi_hf.cli import main  # noqa: E402
from emi_hf.data.sharding import launcher_environment  # noqa: E402

_visual_base, _audio_base = pretrained.build_visual_base, pretrained.build_audio_base


def tiny_visual_base(spec, **kwargs):
    return _visual_base(spec, **{**TINY_TEMPORAL, **kwargs})


def tiny_audio_base(spec, **kwargs):
    tiny = {**TINY_TEMPORAL, "speech_encoder_config": dict(TINY_WAV2VEC2), "audio_feature_dim": 32}
    if os.path.isdir(str(spec)):  # a saved encoder brings its own size
        tiny = dict(TINY_TEMPORAL)
    return _audio_base(spec, **{**tiny, **kwargs})


_extract_clip, _done = extraction.extract_clip_features, []


def log_call(clip_id: str, event: str) -> None:
    """One line in EMI_TEST_CALL_LOG, written with a single O_APPEND write (whole lines from several processes)."""
    path = os.environ.get("EMI_TEST_CALL_LOG")
    if not path:
        return
    line = json.dumps({"run": os.environ.get("EMI_TEST_RUN"), "rank": launcher_environment()[0], "pid": os.getpid(),
                       "clip_id": str(clip_id), "event": event}) + "\n"
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(handle, line.encode())
        os.fsync(handle)
    finally:
        os.close(handle)


def killable_extract_clip(*args, **kwargs):
    rank = launcher_environment()[0]
    if str(rank) == os.environ.get("EMI_TEST_KILL_RANK") and len(_done) == int(os.environ["EMI_TEST_KILL_AFTER"]):
        os.kill(os.getpid(), signal.SIGKILL)
    clip_id = kwargs.get("clip_id", args[4] if len(args) > 4 else None)
    log_call(clip_id, "start")
    features = _extract_clip(*args, **kwargs)
    log_call(clip_id, "done")
    _done.append(clip_id)
    return features


pretrained.build_visual_base, pretrained.build_audio_base = tiny_visual_base, tiny_audio_base
extraction.extract_clip_features = killable_extract_clip

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
