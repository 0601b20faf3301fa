"""Which clips a run trains on, and what its evaluation split is then worth (`--train-splits`).

The usual run trains on `train` and selects its epoch on `validation` (best mean Pearson, early stopping). The final
model of a challenge entry trains on `train validation` for the number of epochs the held-out run chose
(`--train-splits train validation --epochs N`). Its evaluation split is then trained on, so:

- nothing stops early (`patience` is ignored) and the model of the last epoch is the one saved;
- its scores on that split are training-set fits: results.json records them as `training_fit`, with `validation`
  None, `training.eval_split_held_out` false and `training.model_selection` saying how the model was chosen;
- fusion, whose weights would be fitted on the clips they are then used on, is refused, unless late fusion keeps
  the weights of a held-out fusion run (`--fusion-weights-from RUN`): the final fusion model of two final models.

Every run's results.json lists the clips of its evaluation split (`selection_clip_ids`): for a held-out split, the
clips the saved epoch was chosen on and late-fusion weights fitted on (`emi-hf cv` checks them against each round's
test fold).
"""

from __future__ import annotations

from ..errors import EmiUsageError

FINAL_EPOCH = "final epoch of --epochs (the evaluation split is trained on: no early stopping, no held-out score)"
BEST_EPOCH = "best epoch on the held-out evaluation split (mean Pearson)"


def held_out(args) -> bool:
    """True when the run's evaluation split is not one it trains on."""
    return args.eval_split not in args.train_splits


def training_splits(datasets, args, source) -> dict:
    """The run's splits: `train` is the concatenation of `args.train_splits`, the others as they are.

    Raises:
        ValueError: a named split is missing from the features in `source`, or late fusion on a trained-on split.
    """
    missing = [split for split in (*args.train_splits, args.eval_split) if split not in datasets]
    if missing:
        raise EmiUsageError(f"The features at {source} have no split(s) {missing} (they have {sorted(datasets)}).")
    kept_weights = args.fusion_mode == "late" and args.fusion_weights_from
    fits_weights = args.fusion_mode in ("late", "joint")  # a feature-level (trained) fusion has no weights to fit
    if args.modality == "fusion" and fits_weights and not held_out(args) and not kept_weights:
        raise EmiUsageError(f"Fusion fits its weights on --eval-split {args.eval_split!r}, which --train-splits "
                            f"{args.train_splits} trains on: fit them on a held-out split instead, or keep those of a "
                            "held-out fusion run (--fusion-weights-from RUN, late fusion).")
    splits = dict(datasets)
    parts = [datasets[split] for split in args.train_splits]
    if len(parts) > 1:
        from datasets import concatenate_datasets

        parts = [concatenate_datasets(parts)]
    splits["train"] = parts[0]
    return splits


def kept_fusion_weights(run_dir, label_names, modalities) -> dict[str, list[float]]:
    """The late weights (`modality_weights`) of the fusion model saved in `run_dir` (`--fusion-weights-from`),
    checked against the labels and modalities of the run that keeps them."""
    from ..models.configuration_emi import EmiFusionConfig

    config = EmiFusionConfig.from_pretrained(run_dir)
    if list(config.label_names) != list(label_names):
        raise EmiUsageError(f"--fusion-weights-from {run_dir}: its model regresses {list(config.label_names)}, these "
                            f"features {list(label_names)}.")
    if list(config.modalities) != list(modalities):
        raise EmiUsageError(f"--fusion-weights-from {run_dir}: its model fuses {config.modalities}, this run "
                            f"{list(modalities)}.")
    return {m: list(w) for m, w in config.modality_weights.items()}


def selection_record(args) -> dict:
    """The `training` entries of results.json that say how the saved model was chosen."""
    return {"eval_split_held_out": held_out(args), "model_selection": BEST_EPOCH if held_out(args) else FINAL_EPOCH}


def place_scores(results: dict, args) -> dict:
    """A trained-on evaluation split's scores move from `validation` to `training_fit` (see the module docstring)."""
    if not held_out(args):
        results["training_fit"], results["validation"] = results.get("validation"), None
    return results


def with_selection_clips(results: dict, args, datasets) -> dict:
    """`results` with `selection_clip_ids`: the clip ids of the evaluation split `args.eval_split` of `datasets`
    (cached features: its `clip_id` column, None without one; raw clips: the records' ids)."""
    split = datasets[args.eval_split]
    if hasattr(split, "column_names"):
        ids = split["clip_id"] if "clip_id" in split.column_names else None
    else:
        ids = [record.clip_id for record in split]
    results["selection_clip_ids"] = None if ids is None else [str(c) for c in ids]
    return results
