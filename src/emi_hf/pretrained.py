"""Base models with their backbones: pretrained weights when they can be had, random ones only when allowed.

The real loading code is always tried first: torchvision's ImageNet ResNet18 (from `$TORCH_HOME`, or a `.pth`
path) and a wav2vec2-family encoder by Hub id or local folder (from the Hugging Face cache when offline). With
`allow_random=True` a failure falls back to randomly initialised backbones of the same architecture and says so;
features from random backbones are fine for smoke tests and the synthetic quickstart, not for real EMI work.
"""

from __future__ import annotations

import logging
import os

from .configuration_emi import DEFAULT_AU_NAMES, EmiAudioConfig, EmiVisualConfig
from .modeling_emi import EmiAudioModel, EmiVisualModel

logger = logging.getLogger(__name__)

DEFAULT_SPEECH_ENCODER = "facebook/wav2vec2-base"


def build_visual_base(
    visual_backbone: str | os.PathLike = "imagenet", au_names=DEFAULT_AU_NAMES, allow_random: bool = False,
    **config_kwargs,
) -> tuple[EmiVisualModel, str]:
    """`visual_backbone`: "imagenet" (torchvision cache), a `.pth` path, or "random". Returns (model, note)."""
    model = EmiVisualModel(EmiVisualConfig(au_names=list(au_names), **config_kwargs))
    if str(visual_backbone) == "random":
        return model, "face backbone: ResNet18 with random weights (asked for)"
    try:
        model.load_imagenet_backbone(None if str(visual_backbone) == "imagenet" else visual_backbone)
        return model, f"face backbone: ResNet18 ImageNet weights ({visual_backbone})"
    except (OSError, FileNotFoundError) as error:
        if not allow_random:
            raise
        return model, (
            f"face backbone: ResNet18 with RANDOM weights, because the ImageNet weights are not available here "
            f"({error}). For real use pass --visual-backbone /path/to/resnet18-f37072fd.pth."
        )


def build_audio_base(
    speech_encoder: str | os.PathLike = DEFAULT_SPEECH_ENCODER, allow_random: bool = False, **config_kwargs
) -> tuple[EmiAudioModel, str]:
    """`speech_encoder`: a Hub id or folder of a wav2vec2-family model, or "random". Returns (model, note)."""
    if str(speech_encoder) == "random":
        return EmiAudioModel(EmiAudioConfig(**config_kwargs)), (
            "speech encoder: wav2vec2-base sized, random weights (asked for)"
        )
    try:
        return (
            EmiAudioModel.from_speech_encoder(speech_encoder, **config_kwargs),
            f"speech encoder: pretrained {speech_encoder}",
        )
    except OSError as error:
        if not allow_random:
            raise OSError(
                f"Could not load the speech encoder {speech_encoder!r} ({error}). Pass a local folder saved with "
                "save_pretrained, a Hub id reachable from here, or 'random'."
            ) from error
        return EmiAudioModel(EmiAudioConfig(**config_kwargs)), (
            f"speech encoder: wav2vec2-base sized with RANDOM weights, because {speech_encoder!r} is not available "
            f"here (offline, not in the Hugging Face cache). For real use pass --speech-encoder "
            f"{DEFAULT_SPEECH_ENCODER} on a connected machine, or a local folder."
        )
