"""Data: reading data folders (Hume-Vidmimic2 and generic layouts) and the synthetic audiovisual data set.

``emi_hf.data.layout`` needs only numpy; ``emi_hf.data.synthetic`` (OpenCV, PyAV, SciPy) is imported on first use.
"""

from .layout import (
    VIDEO_EXTENSIONS,
    ClipRecord,
    DataLayoutError,
    find_videos,
    load_generic,
    load_hume_vidmimic2,
    normalize_clip_id,
)

_SYNTHETIC = ("generate_synthetic_dataset", "render_clip", "write_clip", "sample_labels", "sample_subject",
              "SyntheticClip", "SyntheticSubject")  # fmt: skip


def __getattr__(name: str):
    if name in _SYNTHETIC:
        from . import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "VIDEO_EXTENSIONS",
    "ClipRecord",
    "DataLayoutError",
    "find_videos",
    "load_generic",
    "load_hume_vidmimic2",
    "normalize_clip_id",
    *_SYNTHETIC,
]
