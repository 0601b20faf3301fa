"""`emi-hf extract` with tiny backbones, to be started by torchrun (or by hand) in tests/test_sharding.py.

    python extract_worker.py <emi-hf extract arguments>

Random backbones get the tiny test configs (helpers.TINY_TEMPORAL / TINY_WAV2VEC2), built by the real
`emi_hf.pretrained` builders (so with their seed). `EMI_TEST_KILL_RANK=R EMI_TEST_KILL_AFTER=N`: process R kills
itself (SIGKILL, nothing cleaned up) before its clip N + 1, as a crash or an OOM kill would.
"""

from __future__ import annotations

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


def killable_extract_clip(*args, **kwargs):
    rank = launcher_environment()[0]
    if str(rank) == os.environ.get("EMI_TEST_KILL_RANK") and len(_done) == int(os.environ["EMI_TEST_KILL_AFTER"]):
        os.kill(os.getpid(), signal.SIGKILL)
    features = _extract_clip(*args, **kwargs)
    _done.append(args[4])
    return features


pretrained.build_visual_base, pretrained.build_audio_base = tiny_visual_base, tiny_audio_base
extraction.extract_clip_features = killable_extract_clip

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
