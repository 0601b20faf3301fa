"""The keyword arguments of `EmiProcessor.__call__`, in transformers' `ProcessorMixin` form.

`processor(videos=..., videos_kwargs={...}, audio_kwargs={...}, text_kwargs={...}, **flat)` goes through
`ProcessorMixin._merge_kwargs` with :class:`EmiProcessorKwargs`: flat keywords are routed to the sub-processor that
takes them (`do_normalize` to the video processor, `padding` to the feature extractor, ...), per-modality dicts go to
theirs. What the EmiProcessor applies:

- video processor (the face crops -> pixel values step): `do_resize`, `resample`, `do_rescale`, `rescale_factor`,
  `do_normalize`, `image_mean`, `image_std`;
- feature extractor (waveform normalisation and padding): `padding`, `max_length`, `truncation`,
  `pad_to_multiple_of`, and `sampling_rate` (the rate of waveforms passed as arrays, as the `sampling_rate=`
  argument);
- both: `return_tensors`.

Everything else is ignored with one warning naming it and why: frame sampling (`do_sample_frames`, `fps`,
`num_frames`, `video_metadata`) is the media pipeline's (`target_fps`, `max_frames`), the crop size is `face_size`,
attention masks are always returned, and there is no text or image sub-processor (`text_kwargs`, `images_kwargs`).
"""

# No `from __future__ import annotations`: transformers reads the typed dicts' annotations as classes.
import logging

from transformers.processing_utils import AudioKwargs, ImagesKwargs, ProcessingKwargs, TextKwargs, VideosKwargs

logger = logging.getLogger(__name__)

__all__ = ["APPLIED_AUDIO_KWARGS", "APPLIED_VIDEO_KWARGS", "EmiProcessorKwargs", "route_processor_kwargs"]

APPLIED_VIDEO_KWARGS = frozenset(
    {"do_resize", "resample", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std"}
)
"""`videos_kwargs` the EmiProcessor passes to its video processor."""
APPLIED_AUDIO_KWARGS = frozenset({"padding", "max_length", "truncation", "pad_to_multiple_of"})
"""`audio_kwargs` the EmiProcessor passes to its feature extractor (`sampling_rate`, `return_tensors`: see below)."""

_WHY_IGNORED = {
    "do_sample_frames": "frames are sampled by the media pipeline at target_fps (a processor setting)",
    "fps": "the frame rate is the processor's target_fps",
    "num_frames": "the frame cap is the processor's max_frames",
    "video_metadata": "the pipeline reads the video's own metadata",
    "size": "the crop size is the processor's face_size",
    "return_attention_mask": "the attention mask is always returned",
}


class EmiProcessorKwargs(ProcessingKwargs, total=False):
    """`ProcessingKwargs` of the EmiProcessor (transformers' per-modality typed dicts; no processor-level extras)."""

    videos_kwargs: VideosKwargs
    audio_kwargs: AudioKwargs
    text_kwargs: TextKwargs
    images_kwargs: ImagesKwargs


def route_processor_kwargs(processor, kwargs: dict) -> tuple[dict, dict, str | None]:
    """
    Merges `kwargs` of `processor(...)` the transformers way and returns (video processor kwargs, feature extractor
    kwargs incl. `sampling_rate` when given, `return_tensors` when given); what does not apply is logged once as a
    warning. Invalid values raise as in transformers (`ProcessorMixin._merge_kwargs` validates them).
    """
    merged = processor._merge_kwargs(EmiProcessorKwargs, **kwargs)
    ignored = [f"{name}={kwargs[name]!r} (EmiProcessor has no {name.split('_')[0]} processor)"
               for name in ("text_kwargs", "images_kwargs") if name in kwargs]
    media_keys = set(VideosKwargs.__annotations__) | set(AudioKwargs.__annotations__)
    modality_keys = set(EmiProcessorKwargs.__annotations__)
    ignored += [f"{key} (a text / image option)" for key in kwargs
                if key not in modality_keys and key not in media_keys and
                (key in TextKwargs.__annotations__ or key in ImagesKwargs.__annotations__)]
    return_tensors = None
    routed = []
    for modality, applied in (("videos_kwargs", APPLIED_VIDEO_KWARGS), ("audio_kwargs", APPLIED_AUDIO_KWARGS)):
        options = {}
        for key, value in merged[modality].items():
            if key == "return_tensors":
                return_tensors = value
            elif key in applied or (modality == "audio_kwargs" and key == "sampling_rate"):
                options[key] = value
            else:
                ignored.append(f"{modality[:-7]} {key}={value!r} ({_WHY_IGNORED.get(key, 'not used by EmiProcessor')})")
        routed.append(options)
    if ignored:
        logger.warning("EmiProcessor ignores: %s.", "; ".join(ignored))
    return routed[0], routed[1], return_tensors
