"""Where each backbone's weights came from: the one owner of the provenance record (and of the weights fingerprint),
and the check every path that scores raw inputs calls before it runs a backbone.

A visual, audio or text config holds the record of its one backbone (face backbone, speech encoder, text encoder) in
`backbone_provenance`; a fusion's sub-configs and an ensemble's member configs hold theirs, so `config.json`, and a
Hub checkpoint, carry it. The record is a plain dict:

==========  ==========================================================  =======================================
kind        the weights                                                 other keys
==========  ==========================================================  =======================================
pretrained  published weights by name: a Hub id, torchvision's          ``source`` (the name), ``fingerprint``
            ImageNet ResNet18, timm's or torchvision's own weights
file        loaded from a local file or folder (a ``.pth`` /             ``source`` (the path), ``fingerprint``
            ``.safetensors``, a ``save_pretrained`` folder)
random      randomly initialised (smoke tests, offline quickstart)       ``seed`` (None: torch's global
                                                                        generator), ``fingerprint``
none        no backbone: a features-only model (``--no-base-model``);    ``source`` (the features folder)
            the backbone module is an untrained placeholder
unknown     a checkpoint written before emi-hf recorded provenance       ``source``, ``hint`` (what is known)
==========  ==========================================================  =======================================

``fingerprint`` is `backbone_fingerprint` (sha256) of the weights when they were recorded; ``version`` the
emi-hf version that wrote the record. Base models get their record where emi-hf builds them (`emi_hf.pretrained`,
`encoder_setup.build_visual_model`, the text stage of extraction); training copies the base model's record into the
new checkpoint (`training.models`), and `--no-base-model` writes ``none``.

**Checkpoints without a record** (written by earlier versions, or models built in Python with a config alone): the
record is derived where it can be: an audio / text config naming its encoder (`speech_encoder_name`,
`text_encoder_name`, set when the weights were loaded from it) is ``pretrained`` or ``file`` from that name; a
features folder's ``backbones.json`` that lists a random seed makes its base model ``random``; anything else is
``unknown``. Unknown backbones score raw inputs with a warning (old checkpoints keep working); ``random`` and
``none`` ones are refused.

**The raw-input check** (`check_raw_input_backbones`), called by `inference.load_for_inference`,
`inference.predict_clips`, `streaming.EmiStreamer` (so by `emi-hf predict`, `emi-hf stream`, the demo and the
quickstart's end-to-end step): a model with a ``random`` or ``none`` backbone is refused (`RandomBackboneError`, with
the reason and the fix) unless explicitly allowed: ``--allow-random-backbones`` on the command line,
``allow_random_backbones=True`` in Python, ``EMI_HF_ALLOW_RANDOM_BACKBONES=1`` for the demo. Allowed, it says that the
backbone is random (a `BackboneWarning`). Scoring cached features (train, evaluate, submit, cv) needs no backbone and
is never refused.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EmiError

KINDS = ("pretrained", "file", "random", "none", "unknown")
REFUSED_KINDS = ("random", "none")
ALLOW_FLAG = "--allow-random-backbones"
ALLOW_KEYWORD = "allow_random_backbones"
ALLOW_ENV = "EMI_HF_ALLOW_RANDOM_BACKBONES"
BACKBONE_NAMES = {"visual": "face backbone", "audio": "speech encoder", "text": "text encoder"}
FIELD = "backbone_provenance"  # the config field that holds the record
_CHECK_ATTRIBUTE = "_emi_backbone_check"  # the passed check of a model object (not saved)


class RandomBackboneError(EmiError, ValueError):
    """A model with a random or missing backbone was asked to score raw inputs; the message says why and what to do.
    `problems`: {part: record} of the backbones refused."""

    def __init__(self, message: str, problems: dict):
        super().__init__(message)
        self.problems = problems


class BackboneWarning(UserWarning):
    """Raw inputs are scored with a backbone that is random (allowed) or of unknown origin (an old checkpoint)."""


# ----------------------------------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------------------------------


def _version() -> str | None:
    try:
        from importlib.metadata import version

        return version("emi-hf")
    except Exception:  # noqa: BLE001 - a source tree without package metadata
        return None


def backbone_fingerprint(model) -> str:
    """sha256 of a model's backbone weights and of the options that change its features (precision; for a face
    backbone other than ResNet18 its spec; the speech layers and audio crop when set). The defaults add nothing, so
    fingerprints of ResNet18 / last-layer features are what they were before the options existed."""
    digest = hashlib.sha256()
    config = model.config
    options = {
        "precision": getattr(config, "backbone_precision", "float32"),
        "backbone": getattr(config, "backbone", "resnet18"),
        "speech_layers": getattr(config, "speech_layers", None),
        "max_audio_s": getattr(config, "max_audio_s", None),
    }
    defaults = {"precision": "float32", "backbone": "resnet18", "speech_layers": None, "max_audio_s": None}
    for name, value in options.items():
        if value != defaults[name]:
            digest.update(f"{name}={value}".encode())
    update_with_weights(digest, model.backbone)
    return digest.hexdigest()


def update_with_weights(digest, module) -> None:
    """Feeds every tensor of `module`'s state dict (name, then bytes, in name order) into the hash `digest`."""
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())


def _is_local(source) -> bool:
    text = os.fspath(source)
    return os.path.exists(text) or os.path.isabs(text) or text.startswith(("./", "../", "~"))


def weights_record(model, source, kind: str | None = None) -> dict:
    """The record of `model`'s backbone loaded from `source`: ``file`` for a local file or folder, else ``pretrained``
    (a Hub id, a published weights name); `kind` forces one of the two."""
    kind = kind or ("file" if _is_local(source) else "pretrained")
    if kind not in ("pretrained", "file"):
        raise ValueError(f"weights_record: kind must be 'pretrained' or 'file', got {kind!r}.")
    source = str(Path(os.fspath(source)).expanduser().resolve()) if kind == "file" else str(source)
    return {"kind": kind, "source": source, "fingerprint": backbone_fingerprint(model), "version": _version()}


def random_record(model, seed: int | None) -> dict:
    """The record of a randomly initialised backbone (`seed` None: drawn from torch's global generator)."""
    return {"kind": "random", "seed": seed, "fingerprint": backbone_fingerprint(model), "version": _version()}


def no_backbone_record(features) -> dict:
    """The record of a features-only model (`--no-base-model`): trained on the cached features of `features`."""
    return {"kind": "none", "source": str(features), "version": _version()}


def stamp(model, record: dict):
    """Writes `record` into `model.config` (see the module table); returns `model`."""
    if record.get("kind") not in KINDS:
        raise ValueError(f"a backbone provenance record's kind is one of {KINDS}, got {record.get('kind')!r}.")
    setattr(model.config, FIELD, dict(record))
    return model


def _get(config, name, default=None):
    return config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)


def _modality(config) -> str | None:
    return {"emi_visual": "visual", "emi_audio": "audio", "emi_text": "text"}.get(_get(config, "model_type"))


def derived_record(config, modality: str) -> dict:
    """The record of a unimodal config without one (module docstring): from the encoder name it gives, else
    ``unknown``."""
    name = _get(config, {"audio": "speech_encoder_name", "text": "text_encoder_name"}.get(modality, ""), None)
    if name:
        return {"kind": "file" if _is_local(name) else "pretrained", "source": str(name), "derived": True}
    hint = {"visual": f"face backbone {_get(config, 'backbone', 'resnet18')!r}, weights not recorded",
            "audio": "no speech_encoder_name: the encoder was not loaded by name, so probably random weights",
            "text": "no text_encoder_name: the encoder was not loaded by name, so probably random weights"}[modality]
    return {"kind": "unknown", "hint": hint, "derived": True}


def record_of(config, modality: str | None = None) -> dict:
    """The provenance record of a unimodal config (object or `config.json` dict): its own, else derived."""
    modality = modality or _modality(config)
    return dict(_get(config, FIELD, None) or derived_record(config, modality))


def base_record(base_model, modality: str, base_dir, features_root=None) -> dict:
    """The record a model trained on the backbone of `base_model` (loaded from `base_dir`) carries: the base's own;
    for a base without one, a random seed listed by the extraction's ``backbones.json`` (`features_root`), else the
    derived record, with the base folder and the weights' fingerprint."""
    own = _get(base_model.config, FIELD, None)
    if own:
        return dict(own)
    seeds = _extraction_seeds(features_root) if features_root is not None else {}
    if seeds.get(modality) is not None:
        return {**random_record(base_model, seeds[modality]), "derived": True, "source": str(base_dir)}
    return {**derived_record(base_model.config, modality), "base_model": str(base_dir),
            "fingerprint": backbone_fingerprint(base_model)}


def _extraction_seeds(root) -> dict:
    import json

    path = Path(root) / "backbones.json"
    try:
        return json.loads(path.read_text()).get("random_backbone_seed") or {}
    except (OSError, ValueError, AttributeError):
        return {}


# ----------------------------------------------------------------------------------------------------------------------
# Reading a model's records, describing them
# ----------------------------------------------------------------------------------------------------------------------


def unimodal_parts(config) -> list[tuple[str, str, object]]:
    """[(part name, modality, unimodal config)] of a visual / audio / text / fusion / ensemble config (object or
    `config.json` dict); the part name is the modality, prefixed by the member for an ensemble of several."""
    model_type = _get(config, "model_type")
    if model_type == "emi_ensemble":
        members = _get(config, "members") or []
        parts = []
        for index, member in enumerate(members):
            prefix = f"member {index} " if len(members) > 1 else ""
            parts += [(prefix + name, modality, sub) for name, modality, sub in unimodal_parts(member)]
        return parts
    if model_type == "emi_fusion":
        return [(m, m, _get(config, f"{m}_config")) for m in ("visual", "audio", "text")
                if _get(config, f"{m}_config") is not None]
    modality = _modality(config)
    return [] if modality is None else [(modality, modality, config)]


def provenance(model_or_config) -> dict[str, dict]:
    """{part: record} of a model (or its config, or a `config.json` dict); see `unimodal_parts`."""
    return {part: record for part, _, record in _part_records(model_or_config)}


def _part_records(model_or_config) -> list[tuple[str, str, dict]]:
    config = getattr(model_or_config, "config", model_or_config)
    return [(part, modality, record_of(sub, modality)) for part, modality, sub in unimodal_parts(config)]


def describe(record: dict, modality: str) -> str:
    """One phrase on where a backbone's weights came from, e.g. "face backbone: random weights (seed 0)"."""
    what = BACKBONE_NAMES[modality]
    kind = record.get("kind")
    fingerprint = f", sha256 {str(record['fingerprint'])[:12]}" if record.get("fingerprint") else ""
    derived = " (derived: no provenance recorded)" if record.get("derived") and kind != "unknown" else ""
    if kind == "pretrained":
        return f"{what}: pretrained weights `{record.get('source')}`{fingerprint}{derived}"
    if kind == "file":
        return f"{what}: weights loaded from `{record.get('source')}`{fingerprint}{derived}"
    if kind == "random":
        seed = record.get("seed")
        drawn = f"seed {seed}" if seed is not None else "drawn from torch's global generator"
        return f"{what}: RANDOM weights ({drawn}{fingerprint}){derived}"
    if kind == "none":
        return (f"{what}: none (a features-only model trained on the cached features of `{record.get('source')}`; "
                "its backbone is an untrained placeholder)")
    base = f", backbone kept from `{record['base_model']}`" if record.get("base_model") else ""
    return f"{what}: unknown origin ({record.get('hint') or 'no provenance recorded'}{base})"


def card_provenance(config: dict) -> dict:
    """For a model card: `lines` (one per backbone) and `raw_inputs_refused` (whether predict refuses raw inputs)."""
    records = _part_records(config)
    return {"lines": [describe(record, modality) for _, modality, record in records],
            "raw_inputs_refused": any(record["kind"] in REFUSED_KINDS for _, _, record in records)}


# ----------------------------------------------------------------------------------------------------------------------
# The raw-input check
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class BackboneCheck:
    """What `check_raw_input_backbones` found: {part: record}, and the notes it warned with (random backbones that
    were allowed, backbones of unknown origin)."""

    records: dict
    notes: list[str] = field(default_factory=list)
    allowed_random: bool = False


def _named(part: str, modality: str, record: dict) -> str:
    """`describe`, with the ensemble member in front where there is one."""
    member = part[: -len(modality)]
    return member + describe(record, modality)


def passed_check(model) -> BackboneCheck | None:
    """The check `model` passed (`check_raw_input_backbones`), or None when it has not been checked."""
    return getattr(model, _CHECK_ATTRIBUTE, None)


def allowed_by_environment() -> bool:
    """`EMI_HF_ALLOW_RANDOM_BACKBONES` set to 1 / true / yes (the demo's switch)."""
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def refusal_message(problems: list[tuple[str, str, dict]], source=None) -> str:
    """Why raw inputs are refused with these backbones [(part, modality, record)], and the two ways on."""
    where = f"{source}: " if source else ""
    reasons = "; ".join(_named(part, modality, record) for part, modality, record in problems)
    features_only = any(record.get("kind") == "none" for _, _, record in problems)
    fix = ("train it from the extraction's base models (emi-hf extract with pretrained backbones, then train on "
           "that folder without --no-base-model)" if features_only else
           "extract and train again with pretrained backbones (emi-hf extract --visual-backbone imagenet or a "
           "weights file, --speech-encoder a Hub id or folder, without --allow-random-backbones)")
    return (f"{where}this model cannot score raw video or audio meaningfully: {reasons}. Its intensities on raw "
            f"inputs would be numbers from random features. To fix it, {fix}. To score anyway (smoke tests; the "
            f"numbers mean nothing), pass {ALLOW_FLAG} (Python: {ALLOW_KEYWORD}=True; the demo: {ALLOW_ENV}=1). "
            "Cached features (evaluate, submit) need no backbone.")


def check_raw_input_backbones(model, allow_random_backbones: bool = False, source=None,
                              warn: bool = True) -> BackboneCheck:
    """
    The check before `model` scores raw inputs (video, audio, transcripts through its own backbones).

    Raises `RandomBackboneError` when a backbone is ``random`` or ``none`` and `allow_random_backbones` is False.
    Otherwise returns a `BackboneCheck` and, with `warn`, says once per model object what is random (allowed) or of
    unknown origin (`BackboneWarning`). A model that passed once (e.g. in `load_for_inference` with the allowance)
    passes again without repeating the warning. `source`: the checkpoint, for the message.
    """
    previous = getattr(model, _CHECK_ATTRIBUTE, None)
    if previous is not None:
        return previous
    records = _part_records(model)
    problems = [(part, modality, record) for part, modality, record in records if record["kind"] in REFUSED_KINDS]
    if problems and not allow_random_backbones:
        raise RandomBackboneError(refusal_message(problems, source), {part: record for part, _, record in problems})
    notes = [f"{_named(*part)}: scored anyway (random backbones allowed); its intensities on raw inputs mean "
             "nothing" for part in problems]
    notes += [f"{_named(*part)}: nothing records where these weights came from (a checkpoint of an emi-hf "
              "version before provenance records, or a model built in Python), so raw-input scores are only as good "
              "as those weights" for part in records if part[2]["kind"] == "unknown"]
    check = BackboneCheck({part: record for part, _, record in records}, notes, allowed_random=bool(problems))
    if warn:
        for note in notes:
            warnings.warn(note, BackboneWarning, stacklevel=3)
    try:
        setattr(model, _CHECK_ATTRIBUTE, check)
    except AttributeError:  # an object that takes no attributes: checked again next time
        pass
    return check


# ----------------------------------------------------------------------------------------------------------------------
# Licences: the most restrictive licence of the weights a checkpoint contains or was trained on (its model card's)
# ----------------------------------------------------------------------------------------------------------------------

KNOWN_LICENCES = (  # (case-insensitive fnmatch pattern over a weights name, Hub licence id), first match wins;
    # from the Hub model cards of these repositories (checked 2026-12-06)
    ("audeering/*emotion*", "cc-by-nc-sa-4.0"),  # audEERING's emotion models: non-commercial, research only
    ("facebook/wav2vec2-*", "apache-2.0"),
    ("google/vit-*", "apache-2.0"),
    ("alibaba-nlp/gte-*", "apache-2.0"),
    ("thenlper/gte-*", "mit"),
    ("openai/whisper-*", "apache-2.0"),
    ("systran/faster-whisper-*", "mit"),
    ("timm/resnet18.tv_in1k", "bsd-3-clause"),
    ("torchvision:*", "bsd-3-clause"),  # torchvision's published weights, among them the default ResNet18's
)
LICENCE_ORDER = ("mit", "bsd-2-clause", "bsd-3-clause", "apache-2.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0",
                 "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0", "other")
"""Licences from the least to the most restrictive; anything not listed ranks as "other" (unknown terms)."""
PERMISSIVE_LICENCES = ("mit", "bsd-2-clause", "bsd-3-clause", "apache-2.0", "cc-by-4.0")
FASTER_WHISPER_SIZES = ("tiny", "base", "small", "medium", "large-v1", "large-v2", "large-v3")


def _weights_name(name: str) -> str:
    """A weights name as `KNOWN_LICENCES` spells it: `timm:X` -> `timm/X`; torchvision's (`resnet18`, `torchvision:X`,
    its ImageNet record) -> `torchvision:...`; a Hub cache folder (`models--org--name/snapshots/...`) -> `org/name`."""
    text = str(name).strip()
    if text.startswith("timm:"):
        return "timm/" + text[len("timm:"):]
    if text in ("resnet18", "imagenet") or text.startswith("torchvision"):
        return "torchvision:" + text.split(":")[-1]
    cached = [part for part in Path(text).parts if part.startswith("models--")]
    return cached[-1][len("models--"):].replace("--", "/") if cached else text


def _card_licence_of_folder(folder: str) -> str | None:
    """The `license:` of a local model folder's README.md front matter (a downloaded Hub snapshot has one)."""
    import re

    try:
        text = (Path(folder) / "README.md").read_text(encoding="utf-8")
    except OSError:
        return None
    front = text.split("---", 2)[1] if text.startswith("---") and text.count("---") >= 2 else ""
    found = re.search(r"^license:\s*['\"]?([\w.+-]+)", front, flags=re.MULTILINE)
    return found.group(1).lower() if found else None


def weights_licence(name: str) -> str | None:
    """The Hub licence id of the weights called `name` (a Hub id, a timm / torchvision name, a local folder with a
    README.md), or None when it is not known."""
    from fnmatch import fnmatch

    normalised = _weights_name(name)
    for pattern, licence in KNOWN_LICENCES:
        if fnmatch(normalised.lower(), pattern):
            return licence
    return _card_licence_of_folder(str(name)) if os.path.isdir(str(name)) else None


def _licence_sources(config) -> list[tuple[str, str]]:
    """[(what, weights name)] of the third-party weights a (fusion / ensemble / unimodal) config holds or its training
    data was made with: each backbone with published or loaded weights, and the ASR model of the transcripts."""
    sources = []
    for part, modality, sub in unimodal_parts(config):
        record = record_of(sub, modality)
        member = part[: -len(modality)]  # "member N " of an ensemble, else ""
        what = member + BACKBONE_NAMES[modality]
        if record.get("kind") in ("pretrained", "file"):
            sources.append((what, str(record.get("source"))))
        elif record.get("kind") == "unknown":  # not recorded: whatever the architecture, the weights' terms unknown
            sources.append((what, f"unrecorded weights ({record.get('hint') or record.get('source')})"))
        asr = _get(sub, "asr_model", None) if _get(sub, "asr_backend", None) not in (None, "file") else None
        if asr:
            short = _get(sub, "asr_backend") == "faster-whisper" and str(asr).removesuffix(".en") in FASTER_WHISPER_SIZES
            sources.append((f"{member}transcripts (ASR)", f"Systran/faster-whisper-{asr}" if short else str(asr)))
    return sources


def card_licence(config, declared: str | None = None) -> dict:
    """
    The licence of a checkpoint: the most restrictive (`LICENCE_ORDER`) of the licences of the weights it contains or
    was trained on (`_licence_sources`) and of `declared` (results.json's `license`, when set). Returns `{"license":
    Hub id ("other" when any is unknown or unlisted), "permissive": bool, "parts": [(what, name, licence or None)],
    "notes": [str]}`. Random weights and features-only placeholders carry no third-party licence.
    """
    parts = [(what, name, weights_licence(name)) for what, name in _licence_sources(config)]
    if declared:
        parts.append(("declared in results.json", str(declared), str(declared).lower()))
    ranks = [LICENCE_ORDER.index(lic) if lic in LICENCE_ORDER else len(LICENCE_ORDER) - 1 for _, _, lic in parts]
    licence = LICENCE_ORDER[max(ranks)] if ranks else "other"
    notes = [f"{what} `{name}`: licence unknown; check its terms (and set `license` in results.json)"
             for what, name, lic in parts if lic is None]
    notes += [f"{what} `{name}`: {lic}, non-commercial (research use only)" for what, name, lic in parts
              if lic and "-nc" in lic]
    if not parts:
        notes.append("no third-party weights are recorded: licence unknown")
    return {"license": licence, "permissive": licence in PERMISSIVE_LICENCES, "parts": parts, "notes": notes}


class LicenceWarning(UserWarning):
    """A model about to be published carries weights under a licence that is not permissive (or unknown)."""


def warn_unless_permissive(folder, config, declared: str | None = None) -> None:
    """A `LicenceWarning` when the licence of the model saved in `folder` (`card_licence`) is not permissive."""
    licence = card_licence(config, declared)
    if not licence["permissive"]:
        warnings.warn(
            f"{folder}: this model's licence is {licence['license']!r}, not a permissive one: "
            f"{'; '.join(licence['notes']) or 'see the model card'}. The model card says so; publish it only under "
            "those terms (a non-commercial licence binds the fine-tuned model too).", LicenceWarning, stacklevel=3)


__all__ = [
    "ALLOW_ENV", "ALLOW_FLAG", "backbone_fingerprint", "update_with_weights", "ALLOW_KEYWORD", "BackboneCheck", "BackboneWarning", "KINDS", "RandomBackboneError",
    "allowed_by_environment", "base_record", "card_provenance", "check_raw_input_backbones", "derived_record",
    "describe", "no_backbone_record", "passed_check", "provenance", "random_record", "record_of", "stamp", "unimodal_parts",
    "weights_record", "KNOWN_LICENCES", "LICENCE_ORDER", "LicenceWarning", "PERMISSIVE_LICENCES", "card_licence",
    "warn_unless_permissive", "weights_licence",
]
