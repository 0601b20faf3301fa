"""Base models with their backbones: pretrained weights when they can be had, random ones only when allowed.

The real loading code is always tried first: torchvision's ImageNet ResNet18 (from `$TORCH_HOME`, or a `.pth`
path) and a wav2vec2-family encoder by Hub id or local folder (from the Hugging Face cache when offline). With
`allow_random=True` a failure falls back to randomly initialised backbones of the same architecture and says so;
features from random backbones are fine for smoke tests and the synthetic quickstart, not for real EMI work.

Random backbones are drawn from torch's generator seeded with `seed` (default `RANDOM_BACKBONE_SEED` = 0; the
global generator is left as it was), so every process of a sharded extraction, and every rerun that resumes one, has
the same weights (same torch version); the seed is kept on the model as `random_backbone_seed` and recorded in the
extraction folder's backbones.json. `seed=None` draws from the global generator instead.

Every base model returned carries its provenance record (`emi_hf.provenance`: pretrained, file or random with its
seed) in its config, so the checkpoints trained on it carry it too.
"""

from __future__ import annotations

import logging
import os

from ..models.configuration_emi import DEFAULT_AU_NAMES, EmiAudioConfig, EmiVisualConfig
from .setup import build_visual_model, split_visual_choice
from ..errors import EmiUnavailableError
from ..models.modeling_emi import EmiAudioModel, EmiVisualModel
from ..provenance import random_record, stamp, weights_record

logger = logging.getLogger(__name__)

DEFAULT_SPEECH_ENCODER = "facebook/wav2vec2-base"
IMAGENET_SOURCE = "torchvision resnet18 IMAGENET1K_V1"  # the provenance source of the ImageNet ResNet18 weights
RANDOM_BACKBONE_SEED = 0


def _random_model(build, seed: int | None):
    """`build()` with torch's generator seeded by `seed` (restored afterwards); the model notes its seed."""
    import torch

    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    model.random_backbone_seed = seed
    return model


def _seed_note(seed: int | None) -> str:
    return "" if seed is None else f" (seed {seed})"


def build_visual_base(
    visual_backbone: str | os.PathLike = "imagenet", au_names=DEFAULT_AU_NAMES, allow_random: bool = False,
    seed: int | None = RANDOM_BACKBONE_SEED, visual_weights: str | os.PathLike | None = None, **config_kwargs,
) -> tuple[EmiVisualModel, str]:
    """`visual_backbone`: "imagenet" (torchvision cache), a `.pth` path, or "random" (ResNet18), or a backbone spec
    (`torchvision:NAME`, `timm:NAME`, a transformers id / folder) with `visual_weights` (a file, "random", or None for
    its published weights; see `emi_hf.encoder_setup`). Returns (model, note)."""
    spec, weights = split_visual_choice(visual_backbone, visual_weights)
    if spec != "resnet18":
        return build_visual_model(spec, weights, allow_random, lambda build: _random_model(build, seed),
                                  au_names=list(au_names), **config_kwargs)
    visual_backbone = weights
    def build():
        return EmiVisualModel(EmiVisualConfig(au_names=list(au_names), **config_kwargs))

    if str(visual_backbone) == "random":
        return _random_base(build, seed), f"face backbone: ResNet18 with random weights{_seed_note(seed)}"
    model = build()
    try:
        model.load_imagenet_backbone(None if str(visual_backbone) == "imagenet" else visual_backbone)
    except (OSError, FileNotFoundError) as error:
        if not allow_random:
            raise
        return (stamp(model, random_record(model, None)) if seed is None else _random_base(build, seed)), (
            f"face backbone: ResNet18 with RANDOM weights{_seed_note(seed)}, because the ImageNet weights are not "
            f"available here ({error}). For real use pass --visual-backbone /path/to/resnet18-f37072fd.pth."
        )
    record = weights_record(model, IMAGENET_SOURCE, "pretrained") if str(visual_backbone) == "imagenet" else \
        weights_record(model, visual_backbone, "file")
    return stamp(model, record), f"face backbone: ResNet18 ImageNet weights ({visual_backbone})"


def _random_base(build, seed: int | None):
    """`_random_model` with its provenance record (random, `seed`)."""
    model = _random_model(build, seed)
    return stamp(model, random_record(model, seed))


def build_audio_base(
    speech_encoder: str | os.PathLike = DEFAULT_SPEECH_ENCODER, allow_random: bool = False,
    seed: int | None = RANDOM_BACKBONE_SEED, **config_kwargs
) -> tuple[EmiAudioModel, str]:
    """`speech_encoder`: a Hub id or folder of a wav2vec2-family model, or "random". Returns (model, note)."""
    def build():
        return EmiAudioModel(EmiAudioConfig(**config_kwargs))

    if str(speech_encoder) == "random":
        return _random_base(build, seed), f"speech encoder: wav2vec2-base sized, random weights{_seed_note(seed)}"
    try:
        model = EmiAudioModel.from_speech_encoder(speech_encoder, **config_kwargs)
    except OSError as error:
        if not allow_random:
            raise EmiUnavailableError(
                f"Could not load the speech encoder {speech_encoder!r} ({error}). Pass a local folder saved with "
                "save_pretrained, a Hub id reachable from here, or 'random'."
            ) from error
        return _random_base(build, seed), (
            f"speech encoder: wav2vec2-base sized with RANDOM weights{_seed_note(seed)}, because {speech_encoder!r} is "
            f"not available here (offline, not in the Hugging Face cache). For real use pass --speech-encoder "
            f"{DEFAULT_SPEECH_ENCODER} on a connected machine, or a local folder."
        )
    return stamp(model, weights_record(model, speech_encoder)), f"speech encoder: pretrained {speech_encoder}"
