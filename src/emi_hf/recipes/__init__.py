"""Named recipes: every choice of a published EMI system in one file (`emi-hf recipe list / show / run`).

A recipe is a YAML file of flat keys (`RECIPE_KEYS`: name, type, meaning). The package ships three (`emi_hf/recipes/`):
`abaw6-yu` (the paper emi-hf implements), `abaw8-hallmen` (the ABAW8 EMI winner) and `abaw10-taemi` (the ABAW10 EMI
winner); a user's own file runs the same way. A key a recipe leaves out takes the default below; an unknown key is an
error that lists the valid ones. `--set KEY=VALUE` (YAML value syntax: `epochs=2`, `face_weights=null`,
`parts=[visual,audio]`) reaches every key, so that a recipe runs offline on local folders. These key names are stable:
face_backbone, face_weights, speech_encoder, text_encoder, asr_model, asr_backend, face_fps, epochs, batch_size.

Running one is `emi_hf.recipes.run.run_recipe`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import EmiUsageError


@dataclass(frozen=True)
class RecipeKey:
    kind: str  # str, float, int, bool, list (of strings), with "?" when null is allowed
    default: object
    help: str
    choices: tuple | None = None


def _k(kind, default, text, choices=None) -> RecipeKey:
    return RecipeKey(kind, default, text, choices)


# fmt: off
RECIPE_KEYS: dict[str, RecipeKey] = {
    # what the recipe is (shown by `recipe list` / `show`; not choices)
    "name": _k("str", "", "the recipe's name"),
    "title": _k("str", "", "one line: what it runs"),
    "source": _k("str", "", "the paper / code it follows"),
    "published_score": _k("float?", None, "the score its authors published (mean Pearson over the six emotions)"),
    "published_split": _k("str?", None, "the split of that score (validation or test)"),
    "downloads": _k("list", [], "what a run downloads (models, weights) on a connected machine"),
    "gpu_hours": _k("str?", None, "rough GPU hours on the full Hume-Vidmimic2 set"),
    "notes": _k("str?", None, "where this recipe differs from the published system"),
    # the models
    "parts": _k("list", ["visual", "audio"], "the unimodal models trained (and fused)",
                ("visual", "audio", "text")),
    # faces
    "face_detector": _k("str", "mtcnn", "face detector", ("mtcnn", "mediapipe")),
    "face_alignment": _k("str", "arcface", "face crops: 5-point ArcFace template or the FFHQ quad",
                         ("arcface", "ffhq")),
    "face_fps": _k("float", 30.0, "face frames per second, sampled evenly in time"),
    "au_backend": _k("str?", "mediapipe", "Action Unit channel (null: none, all zeros)"),
    "face_backbone": _k("str", "imagenet", "face encoder: imagenet (ResNet18), torchvision:NAME, timm:NAME, or a "
                                           "transformers vision model id / folder (ViT)"),
    "face_weights": _k("str?", None, "the face encoder's weights file, or null for its published weights"),
    "backbone_precision": _k("str", "float32", "precision of the frozen encoders at extraction",
                             ("float32", "bfloat16")),
    # speech
    "speech_encoder": _k("str", "facebook/wav2vec2-base", "speech encoder id / folder (wav2vec2, HuBERT, WavLM, "
                                                          "Whisper)"),
    "speech_layers": _k("list?", None, "hidden layers kept (null: the last)"),
    "audio_max_seconds": _k("float?", None, "only the first N seconds of each clip's audio"),
    # text
    "text_encoder": _k("str?", None, "text encoder id / folder (with its tokenizer); null: no text"),
    "text_pooling": _k("str?", None, "text features: null (every token's state), cls (the [CLS] state) or mean"),
    "text_max_tokens": _k("int?", None, "tokens per transcript (null: the encoder's limit)"),
    "transcripts": _k("str?", None, "a Filename,text CSV / JSON of transcripts used before ASR"),
    "asr_model": _k("str?", None, "Whisper id / folder (faster-whisper: a CTranslate2 name / folder)"),
    "asr_backend": _k("str", "transformers", "ASR backend", ("transformers", "faster-whisper")),
    "asr_beam_size": _k("int?", None, "ASR beam width (null: the backend's default)"),
    "language": _k("str?", None, "transcription language (null: detected)"),
    "vad": _k("bool", True, "silero-vad speech segments; ASR skips clips without speech"),
    # temporal models and fusion
    "temporal_block": _k("str?", None, "temporal model: null (TCN + Transformer, the default) or lstm"),
    "lstm_layers": _k("int?", None, "temporal_block lstm: layers (null: the default, 2)"),
    "lstm_hidden": _k("int?", None, "temporal_block lstm: hidden size per direction (null: the hidden size)"),
    "hidden_size": _k("int?", None, "width of the temporal models (null: the default)"),
    "num_hidden_layers": _k("int?", None, "layers of the temporal models (null: the default)"),
    "num_attention_heads": _k("int?", None, "attention heads (null: the default)"),
    "intermediate_size": _k("int?", None, "feed-forward width (null: the default)"),
    "tcn_dilations": _k("list?", None, "one TCN block per dilation (null: the default)"),
    "dropout": _k("float?", None, "dropout of the temporal models (null: the default)"),
    "fusion_mode": _k("str", "late", "late (weights fitted on validation), feature (pooled states -> MLP), or "
                                     "cross-attention (the text state queries the audio and visual sequences)"),
    "cross_attention_heads": _k("int?", None, "cross-attention fusion: heads (null: the default, 4)"),
    "cross_attention_dim": _k("int?", None, "cross-attention fusion: width (null: the default, 512)"),
    "fusion_init": _k("str", "parts", "trained fusion modes: start from the trained parts, or from new models",
                      ("parts", "new")),
    "modality_dropout": _k("float", 0.25, "trained fusion: probability of dropping a modality of a training clip"),
    # training
    "epochs": _k("int", 30, "training epochs (at most)"),
    "batch_size": _k("int", 32, "batch size"),
    "lr": _k("float", 3e-4, "peak AdamW learning rate (cosine schedule after warm-up)"),
    "weight_decay": _k("float", 0.01, "AdamW weight decay"),
    "warmup_ratio": _k("float", 0.1, "fraction of steps of linear warm-up"),
    "loss": _k("str", "mse", "training loss", ("mse", "ccc", "pearson")),
    "patience": _k("int", 5, "early stopping patience in epochs (0: never)"),
    "max_frames": _k("int?", None, "training crop in video frames (null: the default)"),
    "max_audio_frames": _k("int?", None, "training crop in speech-encoder frames (null: the default)"),
    "mixed_precision": _k("str", "no", "training autocast", ("no", "fp16", "bf16")),
    "seed": _k("int", 42, "seed of initialisation, data order and crops"),
    "final_fit": _k("str", "train", "train: the submission's models are those chosen on validation; "
                                    "train+validation: refit on both with the epochs chosen on validation",
                    ("train", "train+validation")),
    "device": _k("str?", None, "cpu | cuda | cuda:N (null: cuda when available)"),
}
# fmt: on

STABLE_KEYS = ("face_backbone", "face_weights", "speech_encoder", "text_encoder", "asr_model", "asr_backend",
               "face_fps", "epochs", "batch_size")
META_KEYS = ("name", "title", "source", "published_score", "published_split", "downloads", "gpu_hours", "notes")
RECIPE_SUFFIXES = (".yaml", ".yml")


def recipe_folder():
    """The package's recipes (a `importlib.resources` traversable)."""
    return resources.files("emi_hf").joinpath("recipes")


def recipe_names() -> list[str]:
    """The names of the recipes shipped with the package, sorted."""
    return sorted(entry.name.rsplit(".", 1)[0] for entry in recipe_folder().iterdir()
                  if entry.name.endswith(RECIPE_SUFFIXES))


def _unknown_keys_error(keys, where: str) -> EmiUsageError:
    return EmiUsageError(f"{where}: unknown recipe key(s) {sorted(keys)}; the valid keys are: "
                         f"{', '.join(RECIPE_KEYS)} (`emi-hf recipe show NAME` shows a recipe's values).")


def _convert(key: str, value, where: str):
    """`value` checked (and converted) to the type of `key`."""
    spec = RECIPE_KEYS[key]
    kind, nullable = spec.kind.rstrip("?"), spec.kind.endswith("?")
    if value is None:
        if nullable:
            return None
        raise EmiUsageError(f"{where}: {key} cannot be null ({spec.help}).")
    bad = EmiUsageError(f"{where}: {key} must be a {kind}{' or null' if nullable else ''}, got {value!r} "
                        f"({spec.help}).")
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
    elif kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise bad
        try:
            value = float(value) if kind == "float" else int(value)
        except ValueError:
            raise bad from None
        if kind == "int" and isinstance(value, float):
            raise bad
    elif kind == "list":
        value = [value] if isinstance(value, (str, int, float)) else value
        if not isinstance(value, (list, tuple)):
            raise bad
        value = list(value)
    elif kind == "str":
        if isinstance(value, (dict, list, tuple)):
            raise bad
        value = str(value)
    if spec.choices is not None:
        items = value if isinstance(value, list) else [value]
        wrong = [item for item in items if item not in spec.choices]
        if wrong:
            raise EmiUsageError(f"{where}: {key} {wrong if isinstance(value, list) else value!r} is not one of "
                                f"{list(spec.choices)}.")
    return value


def validate_recipe(values: dict, where: str) -> dict:
    """The full recipe (every key, defaults filled in) from `values`; unknown keys and wrong types are errors."""
    if not isinstance(values, dict):
        raise EmiUsageError(f"{where}: a recipe is a mapping of keys to values, got {type(values).__name__}.")
    unknown = set(values) - set(RECIPE_KEYS)
    if unknown:
        raise _unknown_keys_error(unknown, where)
    recipe = {key: _convert(key, values.get(key, spec.default), where) for key, spec in RECIPE_KEYS.items()}
    if not recipe["parts"]:
        raise EmiUsageError(f"{where}: parts must name at least one of visual, audio, text.")
    if "text" in recipe["parts"] and not recipe["text_encoder"]:
        raise EmiUsageError(f"{where}: parts has text but text_encoder is null: set text_encoder (and transcripts "
                            "or asr_model).")
    if recipe["epochs"] < 1 or recipe["batch_size"] < 1:
        raise EmiUsageError(f"{where}: epochs and batch_size must be >= 1.")
    return recipe


def read_recipe_file(name_or_path: str | os.PathLike) -> tuple[dict, str]:
    """The raw keys of a recipe (a shipped name, or a YAML file) and where they came from."""
    import yaml

    text, where = None, os.fspath(name_or_path)
    path = Path(where)
    if path.suffix in RECIPE_SUFFIXES or os.sep in where or path.is_file():
        if not path.is_file():
            raise EmiUsageError(f"{where}: no such recipe file.")
        text = path.read_text(encoding="utf-8")
    else:
        for suffix in RECIPE_SUFFIXES:
            entry = recipe_folder().joinpath(where + suffix)
            if entry.is_file():
                text, where = entry.read_text(encoding="utf-8"), f"recipe {where}"
                break
        if text is None:
            raise EmiUsageError(f"no recipe named {where!r}: the recipes are {', '.join(recipe_names())} (or "
                                "pass a .yaml file).")
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise EmiUsageError(f"{where} is not valid YAML: {error}") from None
    return values, where


def parse_overrides(pairs: list[str] | None) -> dict:
    """`--set KEY=VALUE` words -> {key: value} (values in YAML syntax); unknown keys are an error."""
    import yaml

    overrides = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise EmiUsageError(f"--set {pair!r}: write KEY=VALUE, e.g. --set epochs=2.")
        if key not in RECIPE_KEYS:
            raise _unknown_keys_error([key], "--set")
        try:
            overrides[key] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            overrides[key] = text
    return overrides


def load_recipe(name_or_path: str | os.PathLike, overrides: dict | list[str] | None = None) -> dict:
    """A validated recipe: a shipped name or a YAML file, with `overrides` ({key: value} or `--set` words)."""
    values, where = read_recipe_file(name_or_path)
    if isinstance(values, dict):
        unknown = set(values) - set(RECIPE_KEYS)
        if unknown:
            raise _unknown_keys_error(unknown, where)
    changes = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    recipe = validate_recipe({**values, **changes} if isinstance(values, dict) else values,
                             where + (" with --set" if changes else ""))
    if not recipe["name"]:
        recipe["name"] = Path(os.fspath(name_or_path)).stem
    return recipe


def recipe_table() -> list[dict]:
    """One row per shipped recipe: name, source, published score (and split), downloads, GPU hours."""
    rows = []
    for name in recipe_names():
        recipe = load_recipe(name)
        rows.append({"name": name, "source": recipe["source"], "published_score": recipe["published_score"],
                     "published_split": recipe["published_split"], "downloads": recipe["downloads"],
                     "gpu_hours": recipe["gpu_hours"], "title": recipe["title"]})
    return rows


def format_recipe(recipe: dict, overrides: dict | None = None) -> str:
    """Every key of a recipe, one per line in the file's own key names (YAML), the changed ones marked."""
    import yaml

    lines = []
    for key in RECIPE_KEYS:
        text = yaml.safe_dump({key: recipe[key]}, default_flow_style=True, width=10_000, sort_keys=False).strip()
        text = text[1:-1] if text.startswith("{") else text
        marks = []
        if overrides and key in overrides:
            marks.append("--set")
        elif recipe[key] == RECIPE_KEYS[key].default and key not in META_KEYS:
            marks.append("default")
        lines.append(f"{text}{'  # ' + ', '.join(marks) if marks else ''}")
    return "\n".join(lines)


__all__ = ["RECIPE_KEYS", "STABLE_KEYS", "format_recipe", "load_recipe", "parse_overrides", "recipe_names",
           "recipe_table", "validate_recipe"]
