"""Choosing the encoders and recording them: base models from a backbone spec, a processor whose crops fit the face
backbone, and the record of the encoders that features folders and model cards carry (the weights fingerprints and
where the weights came from: `emi_hf.provenance`).

A face backbone spec (`EmiVisualConfig.backbone`, `emi-hf extract --visual-backbone`): `resnet18` (default; with
`imagenet` / `random` / a `.pth` path keeping their old meaning for it), `torchvision:NAME`, `timm:NAME`, or a
transformers vision model id / folder (see `encoders_emi.py`). Weights (`--visual-weights`): a `.pth` /
`.safetensors` path, `random`, or unset for the backbone's published weights (torchvision's cache, timm's own loading,
the transformers id / folder).
"""

from __future__ import annotations

import hashlib
import os
import re

from ..models.encoders_emi import backbone_family
from ..errors import EmiUsageError
from ..provenance import backbone_fingerprint, update_with_weights  # noqa: F401  (re-exported: their earlier home)

LEGACY_RESNET18_CHOICES = ("imagenet", "random")
"""`--visual-backbone` values that mean ResNet18 with those weights (the meaning they had before specs)."""


def split_visual_choice(visual_backbone: str | os.PathLike, visual_weights: str | os.PathLike | None = None):
    """(backbone spec, weights) from the `--visual-backbone` / `--visual-weights` pair: `imagenet`, `random` and a
    weights file given as the backbone mean ResNet18 with those weights."""
    choice = os.fspath(visual_backbone)
    if choice in LEGACY_RESNET18_CHOICES:
        return "resnet18", visual_weights if visual_weights is not None else choice
    if os.path.isfile(choice) and choice.endswith((".pth", ".pt", ".safetensors", ".bin")):
        return "resnet18", choice
    return choice, visual_weights


def build_visual_model(spec: str, weights=None, allow_random: bool = False, randomised=None, **config_kwargs):
    """An `EmiVisualModel` on the face backbone `spec` with `weights` (see module docstring). Returns (model, note);
    with `allow_random`, unavailable published weights fall back to random ones (said in the note). `randomised`
    runs the build of a random model (`emi_hf.pretrained` seeds it); default: as is."""
    from ..models.modeling_emi import EmiVisualModel
    from ..provenance import random_record, stamp, weights_record

    def random_model():
        build = lambda: EmiVisualModel.from_backbone(spec, weights="random", **config_kwargs)  # noqa: E731
        model = randomised(build) if randomised is not None else build()
        return stamp(model, random_record(model, getattr(model, "random_backbone_seed", None)))

    weights = None if weights in (None, "imagenet", "pretrained") else weights
    if str(weights) == "random":
        return random_model(), f"face backbone: {spec} with random weights (asked for)"
    try:
        model = EmiVisualModel.from_backbone(spec, weights=weights, **config_kwargs)
    except OSError as error:
        if not allow_random or weights is not None or backbone_family(spec) == "transformers":
            raise
        return random_model(), (
            f"face backbone: {spec} with RANDOM weights, because its published weights are not available here "
            f"({error}). For real use pass --visual-weights FILE.")
    # published weights by name (a transformers folder counts as a file), or a weights file
    stamp(model, weights_record(model, spec) if weights is None else weights_record(model, weights, "file"))
    source = weights or ("its Hub id / folder" if backbone_family(spec) == "transformers" else "published weights")
    return model, f"face backbone: {spec}, {model.config.visual_feature_dim}-d, weights from {source}"


def processor_for_face_backbone(processor, visual_config, fixed: bool = False):
    """`processor`, or a copy of it whose face crops have the backbone's input size and normalisation
    (`visual_config.face_size`, `image_mean`, `image_std`); with `fixed` (a processor the user chose) a mismatch is
    an error instead."""
    from ..models.processing_emi import EmiProcessor, EmiVideoProcessor

    video = processor.video_processor
    if processor.face_size == visual_config.face_size and \
            [round(float(v), 6) for v in video.image_mean] == [round(v, 6) for v in visual_config.image_mean] and \
            [round(float(v), 6) for v in video.image_std] == [round(v, 6) for v in visual_config.image_std]:
        return processor
    if fixed:
        raise EmiUsageError(
            f"The processor makes {processor.face_size} px crops normalised with mean {list(video.image_mean)} / std "
            f"{list(video.image_std)}, but the face backbone {visual_config.backbone!r} takes {visual_config.face_size}"
            f" px with {visual_config.image_mean} / {visual_config.image_std}: leave --processor out (one that fits is "
            "made), or save a processor with those values."
        )
    side = int(visual_config.face_size)
    settings = processor.clip_settings().to_dict()
    settings.update(face_size=side)
    video = EmiVideoProcessor(size={"height": side, "width": side}, image_mean=list(visual_config.image_mean),
                              image_std=list(visual_config.image_std))
    return EmiProcessor(video_processor=video, feature_extractor=processor.feature_extractor,
                        clip_cache_dir=processor.clip_cache_dir, openface_dir=processor._openface_dir, **settings)


def encoder_record(visual_model, audio_model, fingerprints: dict | None = None) -> dict:
    """What made a features folder (`emi_features.json` key `encoders`) or a checkpoint (model card): for each
    modality the backbone spec, its weights fingerprint, its dims and, when the model has one, its provenance record
    (`weights`: where the weights came from, `emi_hf.provenance`)."""
    fingerprints = fingerprints or {}
    record = {}
    if visual_model is not None:
        config = visual_model.config
        record["visual"] = {
            "backbone": config.backbone,
            "fingerprint": fingerprints.get("visual") or backbone_fingerprint(visual_model),
            "visual_feature_dim": config.visual_feature_dim, "face_size": config.face_size,
            "image_mean": list(config.image_mean), "image_std": list(config.image_std),
            **({"weights": config.backbone_provenance} if getattr(config, "backbone_provenance", None) else {}),
        }
    if audio_model is not None:
        config = audio_model.config
        record["audio"] = {
            "speech_encoder": speech_encoder_label(config),
            "fingerprint": fingerprints.get("audio") or backbone_fingerprint(audio_model),
            "audio_feature_dim": config.audio_feature_dim, "speech_layers": config.speech_layers,
            "feature_width": config.num_speech_layers * config.audio_feature_dim,
            "max_audio_s": config.max_audio_s, "cache_dtype": config.cache_dtype,
            **({"weights": config.backbone_provenance} if getattr(config, "backbone_provenance", None) else {}),
        }
    return record


def speech_encoder_label(audio_config) -> str:
    """The speech encoder's source (`speech_encoder_name`) or, without one, its architecture."""
    encoder = audio_config.speech_encoder_config
    return audio_config.speech_encoder_name or f"{encoder.model_type} ({encoder.hidden_size}-d, random weights)"


def card_encoders(config: dict) -> dict:
    """For a model card: one phrase per modality naming the encoder of a `config.json` (visual, audio, text or
    fusion)."""
    visual = config.get("visual_config") or (config if config.get("model_type") == "emi_visual" else None)
    audio = config.get("audio_config") or (config if config.get("model_type") == "emi_audio" else None)
    phrases = {}
    if visual is not None:
        spec = visual.get("backbone", "resnet18")
        name = "ResNet18 (torchvision)" if spec == "resnet18" else f"`{spec}`"
        phrases["visual"] = (f"face backbone {name}, {visual.get('visual_feature_dim', 512)}-d embeddings of "
                             f"{visual.get('face_size', 112)} px crops")
    if audio is not None:
        encoder = audio.get("speech_encoder_config") or {}
        source = audio.get("speech_encoder_name")
        layers = audio.get("speech_layers")
        used = "the last hidden layer" if layers is None else (
            f"a learned weighted sum of hidden layers {layers}" if len(layers) > 1 else f"hidden layer {layers[0]}")
        depth = encoder.get("encoder_layers") or encoder.get("num_hidden_layers")
        crop = f", audio cropped to {audio['max_audio_s']} s" if audio.get("max_audio_s") else ""
        phrases["audio"] = (f"{'`' + source + '` ' if source else ''}({encoder.get('model_type', 'wav2vec2')}, "
                            f"{depth} layers, {audio.get('audio_feature_dim', 768)}-d frames, {used}{crop})")
    text = config.get("text_config") or (config if config.get("model_type") == "emi_text" else None)
    if text is not None:
        encoder = text.get("text_encoder_config") or {}
        source = text.get("text_encoder_name")
        phrases["text"] = (f"{'`' + source + '` ' if source else ''}({encoder.get('model_type', 'bert')}, "
                           f"{encoder.get('num_hidden_layers')} layers, {text.get('text_feature_dim', 768)}-d tokens)")
    return phrases


def _hub_id(name) -> bool:
    """`name` reads as a Hub repo id (`org/name`) and is not a local folder."""
    return isinstance(name, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not os.path.exists(name)


def card_base_models(config: dict) -> list[str]:
    """For a model card's `base_model`: the Hub ids of the encoders of a `config.json` (the ResNet18 face backbone's
    ImageNet weights `timm/resnet18.tv_in1k`, a `timm:NAME.TAG` backbone's `timm/NAME.TAG`, a transformers vision
    backbone, speech or text encoder id); local folders and torchvision-only names are left out."""
    ids = []
    visual = config.get("visual_config") or (config if config.get("model_type") == "emi_visual" else None)
    if visual is not None:
        spec = visual.get("backbone", "resnet18")
        if spec == "resnet18":
            ids.append("timm/resnet18.tv_in1k")
        elif spec.startswith("timm:") and "." in spec:
            ids.append("timm/" + spec[len("timm:"):])
        elif _hub_id(spec):
            ids.append(spec)
    for key, name in (("audio_config", "speech_encoder_name"), ("text_config", "text_encoder_name")):
        part = config.get(key) or (config if name in config else {})
        if _hub_id(part.get(name)):
            ids.append(part[name])
    return list(dict.fromkeys(ids))


MODALITY_PHRASES = {"visual": "the face", "audio": "the voice", "text": "the transcript"}


def card_modalities(config: dict) -> list[str]:
    """The modalities of a fusion `config.json` (those whose sub-config it holds)."""
    from ..models.configuration_emi import FUSION_MODALITIES

    return [m for m in FUSION_MODALITIES if config.get(f"{m}_config")]


def card_fusion(config: dict, label_names: list[str]) -> dict:
    """The fusion card's modalities and weights table (earlier checkpoints: `fusion_weights`, the visual share)."""
    modalities = card_modalities(config)
    weights = config.get("modality_weights")
    if weights is None and config.get("fusion_weights"):
        weights = {"visual": config["fusion_weights"], "audio": [1 - w for w in config["fusion_weights"]]}
    rows = [(name, [weights[m][i] for m in modalities]) for i, name in enumerate(label_names)] if weights else []
    return {"modalities": modalities, "modality_phrases": [MODALITY_PHRASES[m] for m in modalities],
            "modality_weights": rows}


def describe_extraction(metadata: dict) -> str:
    """One line naming the extraction that made a features folder (from its `encoders` record)."""
    encoders = metadata.get("encoders") or {}
    visual, audio = encoders.get("visual") or {}, encoders.get("audio") or {}
    if not encoders:
        return "an extraction that did not record its encoders (ResNet18 / wav2vec2-family, before encoder records)"
    parts = []
    if visual:
        parts.append(f"--visual-backbone {visual['backbone']} ({visual['visual_feature_dim']}-d, weights "
                     f"{str(visual['fingerprint'])[:12]})")
    if audio:
        layers = f", layers {audio['speech_layers']}" if audio.get("speech_layers") is not None else ""
        parts.append(f"--speech-encoder {audio['speech_encoder']} ({audio['audio_feature_dim']}-d{layers}, weights "
                     f"{str(audio['fingerprint'])[:12]})")
    return "emi-hf extract " + " ".join(parts)


def check_input_dims(config, metadata: dict, modality: str, source: str) -> None:
    """Raises when the model `config` (from `source`) takes inputs of other widths than the features of `metadata`
    (`emi_features.json`), naming the extraction that made them."""
    if modality == "visual":
        wanted, stored, what = config.visual_feature_dim, metadata.get("visual_feature_dim"), "face features"
    elif modality == "text":
        wanted, stored, what = config.text_feature_dim, metadata.get("text_feature_dim"), "token embeddings"
    else:
        layers = getattr(config, "num_speech_layers", 1)
        wanted, stored = layers * config.audio_feature_dim, metadata.get("audio_feature_dim")
        what = f"audio frames ({layers} speech layer(s) of {config.audio_feature_dim})"
    if stored is None or int(stored) == int(wanted):
        return
    hint = ("" if metadata.get("encoders") else " (features without an encoder record, e.g. the organisers' ViT "
            "features: train without --base-model, from the features' metadata)")
    raise EmiUsageError(
        f"{source} expects {wanted}-d {what} but the features are {stored}-d; they were made by "
        f"`{describe_extraction(metadata)}`{hint}. Train from that extraction's base_{modality} model (the default "
        "when training on its folder), or re-extract with this model's encoders."
    )


__all__ = [
    "card_fusion", "card_modalities", "backbone_fingerprint", "check_input_dims", "build_visual_model", "describe_extraction", "encoder_record",
    "processor_for_face_backbone", "speech_encoder_label", "split_visual_choice",
]
