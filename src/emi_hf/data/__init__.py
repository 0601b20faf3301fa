"""Data: reading data folders (Hume-Vidmimic2 and generic layouts), the feature store, extraction, and synthetic
data (audiovisual clips in ``synthetic/``, random cached features in ``random_features``).

``emi_hf.data.layout`` and ``emi_hf.data.store`` import no models; ``emi_hf.data.synthetic`` (OpenCV, PyAV, SciPy)
is imported on first use. Modules:

============================  =================================================================================
``layout``                    which clips a data folder holds, their videos, labels and splits (CSV errors)
``store``                     the feature store: schema, ``emi_features.json`` (write, read, complete), loading
``extraction``                processor + frozen backbones once per clip -> the store (resumable, sharded)
``synthetic``                 synthetic audiovisual clips in the Hume-Vidmimic2 layout (labels, face, voice, ...)
``random_features``           random cached features with learnable labels (store schema; tests, benchmarks)
============================  =================================================================================
"""

from . import layout
from .layout import *  # noqa: F403 (the names in layout.__all__)

_SYNTHETIC = ("generate_synthetic_dataset", "render_clip", "write_clip", "sample_labels", "sample_subject",
              "SyntheticClip", "SyntheticSubject")  # fmt: skip


def __getattr__(name: str):
    if name in _SYNTHETIC:
        from . import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [*layout.__all__, *_SYNTHETIC]
