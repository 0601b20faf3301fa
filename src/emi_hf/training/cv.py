"""Seeded k-fold cross-validation over train + validation (`emi-hf cv`).

The clips of the `--cv-splits` (default `train validation`) are pooled and dealt into `--folds` K folds: a
permutation drawn from `np.random.default_rng([cv_seed, FOLD_STREAM])` (`cv_seed` defaults to `--seed`), clip `i` of
the permutation in fold `i % K`, so the folds differ by at most one clip and never share one. Round k:

- **test**: fold k, scored once, by a model that never saw it;
- **inner validation**: fold (k + 1) mod K, on which the round's run chooses its epoch (best mean Pearson, early
  stopping) and, for fusion, fits its weights;
- **train**: the other K - 2 folds.

So no clip's score comes from a choice made on that clip. For `--modality fusion` a round trains a visual and an
audio model and fuses them (late fusion by default, `--fusion-mode joint` trains the fusion model), all on the
round's train / inner validation; the unimodal scores of the test fold are reported too. Every training option of
`emi-hf train` applies to each round (`--seeds N` gives each round a seed ensemble).

`OUTPUT_DIR/cv_results.json`: per-fold scores (`folds[k]`: clip counts, the metric blocks of the test fold and the
epoch each run chose on its inner validation fold, `best_epochs`, a guide to `--epochs` for the final model; the
clip ids of the test fold and, as each run recorded them, those it chose its epoch and fitted its fusion weights on,
`clip_ids`: `{"test": [...], "selection": {run: [...]}}`), the
mean and standard deviation (ddof=1, over the K folds) of the mean Pearson and of each emotion, the fold of every
clip (`assignment`), the settings. `OUTPUT_DIR/fold_k/` holds the round's run folders.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..models.configuration_emi import FUSION_MODALITIES
from ..data.store import load_feature_splits
from ..errors import EmiUsageError
from ..results import json_ready, trained_settings
from .arguments import EmiTrainingArguments
from .evaluation import predict_split, score_predictions

logger = logging.getLogger("emi_hf.training")

CV_RESULTS_FILE = "cv_results.json"
FOLD_STREAM = 13  # numpy SeedSequence entropy [cv_seed, FOLD_STREAM]: the fold assignment


@dataclass
class CVArguments:
    """The `emi-hf cv` options beside the training ones."""

    folds: int = field(default=5, metadata={"help": "number of folds K (>= 3: a test and an inner validation fold "
                                                    "per round, and at least one to train on)"})
    cv_splits: list[str] = field(default_factory=lambda: ["train", "validation"], metadata={
        "help": "splits pooled into the folds"})
    cv_seed: int | None = field(default=None, metadata={"help": "seed of the fold assignment (default --seed)"})


def assign_folds(clip_ids, num_folds: int, seed: int) -> np.ndarray:
    """`[N]` fold index of each clip (see the module docstring); the clip ids must be unique.

    Raises:
        ValueError: fewer than 3 folds, more folds than clips, or a clip id repeated.
    """
    clip_ids = list(clip_ids)
    if num_folds < 3:
        raise EmiUsageError(f"--folds must be >= 3 (a test fold, an inner validation fold and one to train on), got "
                            f"{num_folds}.")
    if len(clip_ids) < num_folds:
        raise EmiUsageError(f"{len(clip_ids)} clips cannot fill {num_folds} folds.")
    if len(set(clip_ids)) != len(clip_ids):
        repeated = sorted({c for c in clip_ids if clip_ids.count(c) > 1})[:5]
        raise EmiUsageError(f"Clip ids repeat across the pooled splits (e.g. {repeated}): a clip would be in two "
                            "folds.")
    order = np.random.default_rng([seed, FOLD_STREAM]).permutation(len(clip_ids))
    folds = np.empty(len(clip_ids), dtype=np.int64)
    folds[order] = np.arange(len(clip_ids)) % num_folds
    return folds


def fold_splits(pooled, folds: np.ndarray, k: int) -> dict:
    """Round `k`'s `{"train", "validation", "test"}` Datasets (validation = the inner validation fold)."""
    num_folds = int(folds.max()) + 1
    inner = (k + 1) % num_folds
    return {
        "train": pooled.select(np.flatnonzero((folds != k) & (folds != inner))),
        "validation": pooled.select(np.flatnonzero(folds == inner)),
        "test": pooled.select(np.flatnonzero(folds == k)),
    }


def _pool(datasets, splits, source) -> object:
    from datasets import concatenate_datasets

    missing = [s for s in splits if s not in datasets]
    if missing:
        raise EmiUsageError(f"The features at {source} have no split(s) {missing} (they have {sorted(datasets)}).")
    return concatenate_datasets([datasets[s] for s in splits]) if len(splits) > 1 else datasets[splits[0]]


def _train_round(args: EmiTrainingArguments, splits: dict, folder: Path) -> dict[str, Path]:
    """Trains round's model(s) into `folder`; returns {"visual"|"audio"|"text"|"fusion": run folder} of what to
    score (late fusion: of visual, audio, and text when the features have it)."""
    from .loop import train

    base = replace(args, eval_split="validation", train_splits=["train"])
    if args.modality != "fusion":
        train(replace(base, output_dir=str(folder / args.modality)), datasets=splits)
        return {args.modality: folder / args.modality}
    runs = {}
    if args.fusion_mode == "late":
        modalities = [m for m in FUSION_MODALITIES if m != "text" or "text_features" in splits["train"].column_names]
        for modality in modalities:
            runs[modality] = folder / modality
            train(replace(base, modality=modality, output_dir=str(runs[modality])), datasets=splits)
        fusion = replace(base, seeds=1, **{f"{m}_model": str(runs[m]) for m in modalities})
    else:
        fusion = base
    train(replace(fusion, output_dir=str(folder / "fusion")), datasets=splits)
    return {**runs, "fusion": folder / "fusion"}


def _score(run_dir: Path, test, args: EmiTrainingArguments, label_names) -> dict:
    from transformers import AutoModel

    import emi_hf  # noqa: F401  (registers the Auto classes)

    from .evaluation import model_modality

    model = AutoModel.from_pretrained(run_dir)
    modality = model_modality(model.config)
    arrays = predict_split(model, test, modality, args.eval_batch_size or args.batch_size,
                           device="cpu" if args.cpu else None)
    scores = score_predictions(arrays, label_names, modality)
    return {k: scores[k] for k in ("mean_pearson", "per_emotion", "num_clips", "num_missing_modality")}


def _selection_clip_ids(run_dir: Path) -> list[str] | None:
    """The clips the run in `run_dir` chose its epoch (and fitted fusion weights) on, from its results.json."""
    from ..results import RESULTS_FILE

    return json.loads((Path(run_dir) / RESULTS_FILE).read_text()).get("selection_clip_ids")


def summarise(folds: list[dict], label_names) -> dict:
    """Mean and standard deviation (ddof=1) over the folds of each model's mean Pearson and per-emotion r."""
    summary = {}
    for name in folds[0]["scores"]:
        blocks = [fold["scores"][name] for fold in folds]
        if any(block["mean_pearson"] is None for block in blocks):
            summary[name] = None
            continue
        means = np.array([block["mean_pearson"] for block in blocks])
        per_emotion = {e: np.array([block["per_emotion"][e] for block in blocks]) for e in label_names}
        summary[name] = {
            "mean_pearson": float(means.mean()),
            "mean_pearson_std": float(means.std(ddof=1)),
            "per_emotion": {e: float(v.mean()) for e, v in per_emotion.items()},
            "per_emotion_std": {e: float(v.std(ddof=1)) for e, v in per_emotion.items()},
        }
    return summary


def run_cv(args: EmiTrainingArguments, cv: CVArguments) -> dict:
    """K rounds of training and scoring (module docstring); writes and returns cv_results.json's content."""
    started = time.perf_counter()
    datasets, metadata, _ = load_feature_splits(args.features)
    pooled = _pool(datasets, list(cv.cv_splits), args.features)
    clip_ids = list(pooled["clip_id"])
    cv_seed = args.seed if cv.cv_seed is None else cv.cv_seed
    folds = assign_folds(clip_ids, cv.folds, cv_seed)
    label_names = list(metadata["label_names"])
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for k in range(cv.folds):
        round_started = time.perf_counter()
        splits = fold_splits(pooled, folds, k)  # index views: FeatureTable reads through them, nothing is copied
        runs = _train_round(args, splits, output_dir / f"fold_{k}")
        scores = {name: _score(run, splits["test"], args, label_names) for name, run in runs.items()}
        records.append({
            "fold": k, "inner_validation_fold": (k + 1) % cv.folds,
            "num_train": len(splits["train"]), "num_inner_validation": len(splits["validation"]),
            "num_test": len(splits["test"]), "scores": scores,
            "best_epochs": {name: trained_settings(run).get("best_epoch") for name, run in runs.items()},
            "clip_ids": {"test": list(splits["test"]["clip_id"]),
                         "selection": {name: _selection_clip_ids(run) for name, run in runs.items()}},
            "wall_time_s": round(time.perf_counter() - round_started, 2),
        })
        shown = scores[args.modality]["mean_pearson"]
        logger.info(f"fold {k + 1}/{cv.folds}: test mean Pearson {'n/a' if shown is None else f'{shown:.4f}'}")
    results = json_ready({
        "modality": args.modality,
        "folds": records,
        "summary": summarise(records, label_names),
        "label_names": label_names,
        "settings": {"num_folds": cv.folds, "cv_splits": list(cv.cv_splits), "cv_seed": cv_seed,
                     "fold_stream": FOLD_STREAM, "num_clips": len(clip_ids), **args.hyperparameters()},
        "assignment": dict(zip(clip_ids, folds.tolist())),
        "wall_time_s": round(time.perf_counter() - started, 2),
    })
    (output_dir / CV_RESULTS_FILE).write_text(json.dumps(results, indent=2))
    return results


def format_cv_table(results: dict) -> str:
    """Per-fold test mean Pearson of each model, then the mean +- standard deviation per emotion."""
    names = list(results["folds"][0]["scores"])
    lines = [f"{'fold':<15}" + "".join(f"{n:>20}" for n in names)]
    for fold in results["folds"]:
        cells = [fold["scores"][n]["mean_pearson"] for n in names]
        lines.append(f"{fold['fold']:<15}" + "".join(f"{'n/a' if c is None else f'{c:.4f}':>20}" for c in cells))
    summary = results["summary"]
    for emotion in [*results["label_names"], None]:
        cells = []
        for n in names:
            block = summary[n]
            if block is None:
                cells.append("n/a")
            elif emotion is None:
                cells.append(f"{block['mean_pearson']:.4f} +- {block['mean_pearson_std']:.4f}")
            else:
                cells.append(f"{block['per_emotion'][emotion]:.4f} +- {block['per_emotion_std'][emotion]:.4f}")
        lines.append(f"{emotion or 'mean Pearson':<15}" + "".join(f"{c:>20}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `emi-hf cv`: the training flags plus `CVArguments`."""
    from ..media.logs import progress_bars_hidden
    from .arguments import build_parser
    from .loop import show_training_log

    parser = build_parser(CVArguments, description="Seeded k-fold cross-validation over train + validation "
                          "(emi_hf.training.cv); every `emi-hf train` flag applies to each round.")
    args, cv = parser.parse_args_into_dataclasses(argv)
    if args.output_dir == f"runs/{args.modality}":  # the training default: give CV its own folder
        args.output_dir = f"runs/cv_{args.modality}"
    show_training_log("[emi-hf cv]")
    with progress_bars_hidden():  # one per fold split and model load
        results = run_cv(args, cv)
    print(format_cv_table(results))
    print(f"[emi-hf cv] wrote {Path(args.output_dir) / CV_RESULTS_FILE} ({results['wall_time_s']:.1f} s)")
    return 0
