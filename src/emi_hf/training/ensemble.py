"""`--seeds N`: N training runs (seeds `seed`, `seed + 1`, ...) saved as one seed ensemble (`EmiEnsembleModel`).

Member `k` is an ordinary run in `OUTPUT_DIR/seed_<seed + k>/` (best epoch on the evaluation split, its own
results.json). `OUTPUT_DIR` then holds the ensemble (the mean of the members' intensities), the members' processor,
and a results.json: the ensemble's scores on the evaluation split (`validation`, or `training_fit` when that split is
trained on), each member's, and the training settings shared by the members (with `seeds`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..errors import EmiUsageError
from ..models.modeling_ensemble_emi import EmiEnsembleModel
from ..results import json_ready, write_results
from .evaluation import predict_split, score_predictions
from .selection import place_scores, selection_record, with_selection_clips

logger = logging.getLogger("emi_hf.training")


def member_dirs(args) -> list[Path]:
    return [Path(args.output_dir) / f"seed_{args.seed + k}" for k in range(args.seeds)]


def train_seed_ensemble(args, train_one: Callable[..., dict], datasets: dict, metadata: dict) -> dict:
    """Trains the members with `train_one(member_args)` (the training loop's `train`), saves their ensemble to
    `args.output_dir` and its results.json (main process); returns the results."""
    from accelerate import PartialState

    if args.modality == "fusion" and args.fusion_mode == "late":
        raise EmiUsageError("--seeds N trains N models; late fusion trains none (its weights are fitted, the same for "
                            "every seed). Use --seeds for the visual and audio runs, or with --fusion-mode joint.")
    started = time.perf_counter()
    members = []
    for folder, k in zip(member_dirs(args), range(args.seeds)):
        members.append(train_one(replace(args, seeds=1, seed=args.seed + k, output_dir=str(folder))))
    state = PartialState()
    results = None
    if state.is_main_process:
        results = save_ensemble(args, members, datasets, metadata, time.perf_counter() - started)
    state.wait_for_everyone()
    return results if results is not None else {}


def save_ensemble(args, members: list[dict], datasets: dict, metadata: dict, wall_time_s: float) -> dict:
    """Builds, saves and scores the ensemble of the trained members (see the module docstring)."""
    folders = member_dirs(args)
    seeds = [args.seed + k for k in range(args.seeds)]
    model = EmiEnsembleModel.from_members(folders, seeds=seeds)
    output_dir = Path(args.output_dir)
    model.save_pretrained(output_dir)
    _copy_processor(folders[0], output_dir)
    label_names = list(metadata["label_names"])
    arrays = predict_split(model, datasets[args.eval_split], args.modality, args.eval_batch_size or args.batch_size,
                           device="cpu" if args.cpu else None)
    scores = score_predictions(arrays, label_names, args.modality)
    shared = members[0].get("training", {})
    results = {
        "modality": args.modality,
        "dataset": members[0].get("dataset"),
        "validation": {k: scores[k] for k in ("mean_pearson", "per_emotion", "num_clips", "num_missing_modality")},
        "training": {**{k: v for k, v in shared.items() if k not in ("seed", "best_epoch", "epochs_run",
                                                                      "stopped_early", "wall_time_s")},
                     "seeds": seeds, "ensemble_wall_time_s": round(wall_time_s, 2), **selection_record(args)},
        "label_names": label_names,
        "eval_split": args.eval_split,
        "members": [_member_record(folder, seed, result) for folder, seed, result in zip(folders, seeds, members)],
    }
    results = json_ready(with_selection_clips(place_scores(results, args), args, datasets))
    path = write_results(output_dir, results)
    shown = scores["mean_pearson"]
    logger.info(f"ensemble of {len(seeds)} seeds -> {output_dir} ({args.eval_split} mean Pearson "
                f"{'n/a' if shown is None else f'{shown:.4f}'}); results in {path}")
    return results


def _member_record(folder: Path, seed: int, result: dict) -> dict:
    block = result.get("validation") or result.get("training_fit") or {}
    training = result.get("training", {})
    return {"seed": seed, "output_dir": str(folder), "mean_pearson": block.get("mean_pearson"),
            "best_epoch": training.get("best_epoch"), "epochs_run": training.get("epochs_run")}


def _copy_processor(source: Path, output_dir: Path) -> None:
    """The member's processor, and its text encoder's tokenizer (`text_tokenizer/`) when it has a text part."""
    if (source / "processor_config.json").is_file():
        from ..models.processing_emi import EmiProcessor

        EmiProcessor.from_pretrained(source).save_pretrained(output_dir)
    from ..text.encoder import copy_text_tokenizer

    copy_text_tokenizer(source, output_dir)
