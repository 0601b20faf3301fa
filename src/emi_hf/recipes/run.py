"""Running a recipe (`emi-hf recipe run`): extract, train each part, fuse, score validation, refit, submit, verify.

Each step calls the package's own entry points (`data.extraction.run_extraction`, `training.train`,
`training.evaluate_model`, `submission.submission_from_features`, `submission.check_submission`), in `output_dir`:

    features/           the cached features (processor, base models) of train, validation and test
    runs/<part>         each part trained on train, its epoch chosen on validation; runs/fusion the fusion
    final/<part>        with final_fit train+validation: refitted on both with the epochs chosen on validation
    submission.csv      written with the final fusion model and verified (`emi-hf verify-submission`'s checks)
    recipe.yaml         the recipe as it ran (every key), recipe_results.json the table and the timings

Validation scores: each part and the fusion model on validation; for late fusion also the cross-fitted score (weights
fitted on one half of the clips, scored on the other), since its weights are fitted on validation.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
from pathlib import Path

from ..errors import EmiUsageError

# Recipe keys that are training arguments of the same name (passed when not null).
TRAINING_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_ratio", "loss", "patience", "max_frames",
                 "max_audio_frames", "mixed_precision", "seed", "hidden_size", "num_hidden_layers",
                 "num_attention_heads", "intermediate_size", "tcn_dilations", "dropout", "temporal_block",
                 "lstm_layers", "lstm_hidden", "cross_attention_heads", "cross_attention_dim")


def _training_fields() -> set[str]:
    from ..training.arguments import EmiTrainingArguments

    return {item.name for item in dataclasses.fields(EmiTrainingArguments)}


def check_supported(recipe: dict) -> None:
    """Raises, before any work, when the recipe asks for a choice this emi-hf does not have."""
    from ..training.arguments import FUSION_MODES

    fields = _training_fields()
    missing = [f"{key}={recipe[key]!r}" for key in TRAINING_KEYS if recipe[key] is not None and key not in fields]
    if recipe["fusion_mode"] not in FUSION_MODES:
        missing.append(f"fusion_mode={recipe['fusion_mode']!r} (this emi-hf has {list(FUSION_MODES)})")
    if recipe["text_pooling"] is not None and "pooling" not in inspect.signature(_text_encoder_class()).parameters:
        missing.append(f"text_pooling={recipe['text_pooling']!r}")
    if missing:
        raise EmiUsageError(f"recipe {recipe['name']}: this emi-hf does not have {', '.join(missing)}; upgrade "
                            "emi-hf, or change them with --set (e.g. --set fusion_mode=feature).")


def _text_encoder_class():
    from ..text import TextEncoder

    return TextEncoder


def training_options(recipe: dict) -> dict:
    """The `EmiTrainingArguments` keywords of a recipe (its training keys that are not null)."""
    options = {key: recipe[key] for key in TRAINING_KEYS if recipe[key] is not None}
    options.update(report_to="none", cpu=recipe["device"] == "cpu")
    return options


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def build_text_stage(recipe: dict, device: str):
    """The extraction's text stage of a recipe (None without text_encoder, transcripts or asr_model)."""
    from ..data.text_features import TextStage
    from ..text import Transcriber

    if not (recipe["text_encoder"] or recipe["transcripts"] or recipe["asr_model"]):
        return None
    encoder = None
    if recipe["text_encoder"]:
        options = {"max_length": recipe["text_max_tokens"]}
        if recipe["text_pooling"] is not None:
            options["pooling"] = recipe["text_pooling"]
        encoder = _text_encoder_class()(recipe["text_encoder"], device=device, **options)
    transcriber = None
    if recipe["asr_model"]:
        transcriber = Transcriber(recipe["asr_backend"], recipe["asr_model"], language=recipe["language"],
                                  vad=recipe["vad"], device=device, beam_size=recipe["asr_beam_size"])
    return TextStage(encoder=encoder, transcriber=transcriber, transcripts=recipe["transcripts"], vad=recipe["vad"])


def extract(recipe: dict, records: dict, features_dir: Path, device) -> list[str]:
    """Step 1: the recipe's processor and frozen encoders over every clip -> `features_dir`; returns the notes."""
    from ..data.extraction import run_extraction
    from ..encoders.setup import processor_for_face_backbone
    from ..encoders.pretrained import build_audio_base, build_visual_base
    from ..models.processing_emi import EmiProcessor

    counts = ", ".join(f"{len(rows)} {split}" for split, rows in records.items())
    _banner(f"1 extract ({counts} clips) -> {features_dir}")
    processor = EmiProcessor(face_detector=recipe["face_detector"], au_backend=recipe["au_backend"],
                             target_fps=recipe["face_fps"], face_alignment=recipe["face_alignment"])
    visual, visual_note = build_visual_base(recipe["face_backbone"], au_names=processor.au_names,
                                            visual_weights=recipe["face_weights"])
    processor = processor_for_face_backbone(processor, visual.config)
    audio, audio_note = build_audio_base(recipe["speech_encoder"], speech_layers=recipe["speech_layers"],
                                         max_audio_s=recipe["audio_max_seconds"])
    for model in (visual, audio):
        model.config.backbone_precision = recipe["backbone_precision"]
        model.to(device)
    text_stage = build_text_stage(recipe, str(device))
    notes = [visual_note, audio_note]
    if text_stage is not None and text_stage.encoder is not None:
        notes.append(f"text encoder: {recipe['text_encoder']} (ASR: {recipe['asr_model'] or 'none'}, transcripts: "
                     f"{recipe['transcripts'] or 'none'})")
    print("\n".join(notes), flush=True)
    report = run_extraction(records, features_dir, processor, visual, audio, progress=False, text_stage=text_stage)
    failed = sum(c["requested"] - c["extracted"] for c in report["splits"].values())
    if failed:
        print(f"{failed} clip(s) failed extraction (see {features_dir}/failures.rank*.jsonl); the others go on")
    return notes


def train_parts(recipe: dict, features_dir: Path, runs_dir: Path, **extra) -> dict[str, dict]:
    """Step 2: each part trained (its epoch chosen on validation) in `runs_dir/<part>`; returns their results."""
    from ..training import train

    results = {}
    for part in recipe["parts"]:
        args = {**training_options(recipe), **extra}
        results[part] = train(dict(features=str(features_dir), modality=part, output_dir=str(runs_dir / part),
                                   **args))
    return results


def fuse(recipe: dict, features_dir: Path, runs_dir: Path, parts_dir: Path | None = None, **extra) -> dict:
    """Step 3: the fusion of the parts in `runs_dir/fusion`: late (weights fitted on validation, or kept from
    `fusion_weights_from`), or a trained fusion mode from the trained parts of `parts_dir` or new models."""
    from ..training import train

    parts_dir = parts_dir or runs_dir
    options = dict(features=str(features_dir), modality="fusion", output_dir=str(runs_dir / "fusion"),
                   fusion_mode=recipe["fusion_mode"], modality_dropout=recipe["modality_dropout"])
    if recipe["fusion_mode"] == "late" or recipe["fusion_init"] == "parts":
        options.update({f"{part}_model": str(parts_dir / part) for part in recipe["parts"]})
    else:
        options["fusion_modalities"] = list(recipe["parts"])
    if recipe["fusion_mode"] != "late":
        options.update(training_options(recipe))
    return train({**options, **extra})


def score_validation(recipe: dict, features_dir: Path, runs_dir: Path, fusion_results: dict) -> dict:
    """Step 4: mean Pearson on validation of each part and the fusion (and, for late fusion, cross-fitted)."""
    from ..training import evaluate_model

    table = {}
    for name in (*recipe["parts"], "fusion"):
        results, _, _ = evaluate_model(runs_dir / name, features_dir, "validation", num_resamples=0)
        table[name] = results
    if fusion_results.get("validation_crossfit"):
        table["fusion (cross-fitted)"] = fusion_results["validation_crossfit"]
    return table


def refit(recipe: dict, features_dir: Path, runs_dir: Path, final_dir: Path, part_results: dict,
          fusion_results: dict) -> Path:
    """Step 5 (final_fit train+validation): each part and a trained fusion refitted on train + validation for the
    epochs chosen on validation; a late fusion keeps the weights fitted on validation. Returns the final fusion."""
    _banner("5 refit on train + validation (epochs chosen on validation)")
    splits = {"train_splits": ["train", "validation"], "patience": 0}
    for part, results in part_results.items():
        epochs = int(results["training"]["best_epoch"] or recipe["epochs"])
        train_parts({**recipe, "parts": [part]}, features_dir, final_dir, **splits, epochs=epochs)
    if recipe["fusion_mode"] == "late":
        fuse(recipe, features_dir, final_dir, train_splits=["train", "validation"],
             fusion_weights_from=str(runs_dir / "fusion"))
    else:
        epochs = int(fusion_results["training"]["best_epoch"] or recipe["epochs"])
        fuse(recipe, features_dir, final_dir, **splits, epochs=epochs)
    return final_dir / "fusion"


def submit(data_dir: Path, features_dir: Path, fusion_dir: Path, output: Path) -> dict:
    """Step 6: submission.csv of the test clips with the final fusion model, verified."""
    from ..submission import check_submission, submission_from_features

    _banner(f"6 submission -> {output}")
    report = submission_from_features(fusion_dir, features_dir, output, "test", data_dir=data_dir)
    check = check_submission(output, data_dir)
    report["problems"], report["warnings"] = list(check.problems), list(check.warnings)
    return report


def format_recipe_table(recipe: dict, table: dict, timings: dict, submission: dict | None) -> str:
    """The one table `recipe run` prints: validation mean Pearson per model and the six emotions, then the
    published score, the submission and the wall times."""
    names = list(next(iter(table.values()))["per_emotion"]) if table else []
    header = f"{'model':<22} {'mean r':>7} " + " ".join(f"{name[:9]:>9}" for name in names)
    lines = [f"recipe {recipe['name']}: validation (Pearson's r)", header, "-" * len(header)]
    for model, results in table.items():
        per = results.get("per_emotion") or {}
        lines.append(f"{model:<22} {results['mean_pearson']:>7.4f} " +
                     " ".join(f"{per.get(name, float('nan')):>9.4f}" for name in names))
    if recipe["published_score"] is not None:
        lines.append(f"published: {recipe['published_score']:.4f} on {recipe['published_split']} "
                     f"({recipe['source']}); not comparable with a score on other data")
    if submission is not None:
        verdict = "valid" if not submission["problems"] else "INVALID: " + "; ".join(submission["problems"])
        lines.append(f"submission: {submission['submission']} ({submission['num_clips']} clips, "
                     f"{submission['num_filled_with_fallback']} filled with the training mean): {verdict}")
    lines.append("wall time (s): " + ", ".join(f"{step} {seconds:.1f}" for step, seconds in timings.items()))
    return "\n".join(lines)


def _timed(timings: dict, step: str, function, *args, **kwargs):
    mark = time.perf_counter()
    try:
        return function(*args, **kwargs)
    finally:
        timings[step] = round(time.perf_counter() - mark, 1)


def run_recipe(recipe: dict, data_dir, output_dir) -> dict:
    """Runs `recipe` (from `load_recipe`) on the Hume-Vidmimic2-layout folder `data_dir` (train, validation and test
    clips) in `output_dir` (module doc). Returns the summary it writes to `recipe_results.json`; raises
    `EmiUsageError` before any work when a choice is not available or the data has no test clips."""
    import yaml

    from ..data.layout import load_hume_vidmimic2
    from ..devices import default_device
    from ..training.loop import show_training_log

    check_supported(recipe)
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    records = load_hume_vidmimic2(data_dir)
    if not records.get("test"):
        raise EmiUsageError(f"{data_dir}: no test clips (test_split.csv or test_data/): a recipe ends with the "
                            "submission of the test clips.")
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True))
    features_dir, runs_dir = output_dir / "features", output_dir / "runs"
    show_training_log("[emi-hf recipe]")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    device = default_device(recipe["device"])
    notes = _timed(timings, "extract", extract, recipe, records, features_dir, device)
    _banner(f"2 train {', '.join(recipe['parts'])}; 3 fuse ({recipe['fusion_mode']})")
    parts = _timed(timings, "train", train_parts, recipe, features_dir, runs_dir)
    fusion = _timed(timings, "fuse", fuse, recipe, features_dir, runs_dir)
    _banner("4 validation")
    table = _timed(timings, "score", score_validation, recipe, features_dir, runs_dir, fusion)
    fusion_dir = runs_dir / "fusion"
    if recipe["final_fit"] == "train+validation":
        fusion_dir = _timed(timings, "refit", refit, recipe, features_dir, runs_dir, output_dir / "final", parts,
                            fusion)
    submission = _timed(timings, "submit", submit, data_dir, features_dir, fusion_dir,
                        output_dir / "submission.csv")
    timings["total"] = round(time.perf_counter() - started, 1)
    summary = {"recipe": recipe["name"], "encoders": notes,
               "validation": {name: {"mean_pearson": r["mean_pearson"], "per_emotion": r.get("per_emotion")}
                              for name, r in table.items()},
               "final_model": str(fusion_dir),
               "submission": {k: submission.get(k) for k in ("submission", "num_clips", "num_filled_with_fallback",
                                                              "problems", "warnings")},
               "timings_s": timings}
    (output_dir / "recipe_results.json").write_text(json.dumps(summary, indent=2, default=str))
    print("\n" + format_recipe_table(recipe, table, timings, submission), flush=True)
    return summary


__all__ = ["check_supported", "format_recipe_table", "run_recipe", "training_options"]
