"""Model selection a reviewer trusts: k-fold CV, seed ensembles, final retraining, bootstrap CIs, annotator weights.

Tiny random features (`make_feature_dataset`) and tiny models, a few epochs: the tests check the bookkeeping (which
clip is where, what is saved, what loads, what is recorded), not accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_audio_config, tiny_visual_config

from emi_hf import EmiAudioModel, EmiEnsembleModel, EmiVisualModel
from emi_hf.data.random_features import make_feature_dataset
from emi_hf.metrics import bootstrap_mean_pearson, mean_pearson
from emi_hf.modeling_emi import regression_loss
from emi_hf.results import read_results
from emi_hf.training import EmiTrainingArguments, evaluate_model, train
from emi_hf.training.cv import CVArguments, assign_folds, fold_splits, run_cv
from emi_hf.training.weighting import annotator_weights, infer_annotator_count, weighted_regression_loss

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, tcn_dilations=[1, 2], batch_size=16,
            lr=3e-3, report_to="none", max_frames=16, max_audio_frames=24, epochs=2)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return make_feature_dataset(
        tmp_path_factory.mktemp("features"), num_train=40, num_valid=20,
        base_models={"visual": EmiVisualModel(tiny_visual_config()), "audio": EmiAudioModel(tiny_audio_config())},
    )


# ----------------------------------------------------------------------------------------------------------------------
# Folds
# ----------------------------------------------------------------------------------------------------------------------


def test_folds_partition_the_clips_and_are_seeded():
    ids = [f"{i:05d}" for i in range(103)]
    folds = assign_folds(ids, 5, seed=3)
    assert sorted(np.bincount(folds).tolist()) == [20, 20, 21, 21, 21]  # sizes differ by at most one
    assert np.array_equal(folds, assign_folds(ids, 5, seed=3))
    assert not np.array_equal(folds, assign_folds(ids, 5, seed=4))
    with pytest.raises(ValueError, match="repeat"):
        assign_folds(ids + ["00001"], 5, seed=0)
    with pytest.raises(ValueError, match=">= 3"):
        assign_folds(ids, 2, seed=0)


def test_round_splits_never_share_a_clip(features):
    from datasets import concatenate_datasets

    from emi_hf.data.store import load_features

    data = load_features(features)
    pooled = concatenate_datasets([data["train"], data["validation"]])
    folds = assign_folds(pooled["clip_id"], 4, seed=0)
    tested = []
    for k in range(4):
        parts = {name: set(split["clip_id"]) for name, split in fold_splits(pooled, folds, k).items()}
        assert not parts["train"] & parts["validation"] and not parts["train"] & parts["test"]
        assert not parts["validation"] & parts["test"]
        assert len(parts["train"] | parts["validation"] | parts["test"]) == len(pooled)
        tested += sorted(parts["test"])
    assert sorted(tested) == sorted(pooled["clip_id"])  # every clip is tested exactly once


def assert_selection_never_meets_the_test_fold(results: dict, runs: set[str]) -> None:
    """Each round's runs recorded (results.json `selection_clip_ids`) the clips they chose their epoch and fitted
    their fusion weights on: exactly the round's inner validation fold, never a clip of its test fold."""
    assignment = results["assignment"]
    for fold in results["folds"]:
        test = set(fold["clip_ids"]["test"])
        assert test == {c for c, k in assignment.items() if k == fold["fold"]} and len(test) == fold["num_test"]
        inner = {c for c, k in assignment.items() if k == fold["inner_validation_fold"]}
        assert set(fold["clip_ids"]["selection"]) == runs
        for name, chosen_on in fold["clip_ids"]["selection"].items():
            assert not set(chosen_on) & test, (fold["fold"], name, sorted(set(chosen_on) & test)[:5])
            assert sorted(chosen_on) == sorted(inner), (fold["fold"], name)


def test_cv_is_reproducible_and_writes_its_table(features, tmp_path):
    runs = [run_cv(EmiTrainingArguments(features=str(features), modality="visual", output_dir=str(tmp_path / name),
                                     seed=5, **TINY), CVArguments(folds=3)) for name in ("a", "b")]
    first, second = runs
    assert [f["scores"] for f in first["folds"]] == [f["scores"] for f in second["folds"]]
    assert first["assignment"] == second["assignment"] and len(first["assignment"]) == 60
    assert sum(f["num_test"] for f in first["folds"]) == 60
    means = [f["scores"]["visual"]["mean_pearson"] for f in first["folds"]]
    assert first["summary"]["visual"]["mean_pearson"] == pytest.approx(np.mean(means))
    assert first["summary"]["visual"]["mean_pearson_std"] == pytest.approx(np.std(means, ddof=1))
    saved = json.loads((tmp_path / "a" / "cv_results.json").read_text())
    assert saved["summary"] == first["summary"]
    # The round's run chose its epoch on the inner validation fold, not on the test fold: the clip ids it recorded.
    assert_selection_never_meets_the_test_fold(first, {"visual"})
    run = read_results(tmp_path / "a" / "fold_0" / "visual")
    history = [h["validation_mean_pearson"] for h in run["history"]]
    assert first["folds"][0]["best_epochs"]["visual"] == 1 + int(np.argmax(history))
    chosen_on = run["validation"]
    assert chosen_on["num_clips"] + chosen_on["num_missing_modality"] == first["folds"][0]["num_inner_validation"]


def test_fusion_cv_fits_weights_inside_each_round(features, tmp_path):
    results = run_cv(EmiTrainingArguments(features=str(features), modality="fusion", output_dir=str(tmp_path), seed=1,
                                       **TINY), CVArguments(folds=3))
    fold = results["folds"][0]
    assert set(fold["scores"]) == {"visual", "audio", "fusion"}
    fusion_run = read_results(tmp_path / "fold_0" / "fusion")
    # Weights fitted on the inner validation fold (the clip ids each run recorded), scored on the test fold.
    assert_selection_never_meets_the_test_fold(results, {"visual", "audio", "fusion"})
    assert fusion_run["fusion_weights_fitted"] and fusion_run["validation"]["num_clips"] <= fold["num_inner_validation"]
    assert fold["scores"]["fusion"]["num_clips"] <= fold["num_test"]


# ----------------------------------------------------------------------------------------------------------------------
# Seeds, final retraining
# ----------------------------------------------------------------------------------------------------------------------


def test_seed_ensemble_saves_loads_and_averages(features, tmp_path):
    from transformers import AutoModel
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    results = train(EmiTrainingArguments(features=str(features), output_dir=str(tmp_path), seed=7, seeds=2, **TINY))
    assert [m["seed"] for m in results["members"]] == [7, 8] and results["training"]["seeds"] == [7, 8]
    ensemble = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(ensemble, EmiEnsembleModel) and len(ensemble.members) == 2
    members = [EmiVisualModel.from_pretrained(tmp_path / f"seed_{s}").eval() for s in (7, 8)]
    inputs = dict(visual_features=torch.randn(3, 9, 512), au_features=torch.rand(3, 9, members[0].config.num_aus),
                  frame_mask=torch.ones(3, 9, dtype=torch.long))
    with torch.no_grad():
        expected = torch.stack([m(**inputs).intensities for m in members]).mean(0)
        output = ensemble(**inputs).intensities
        torch.testing.assert_close(output, expected)
        ensemble.save_pretrained(tmp_path / "again")
        assert torch.equal(EmiEnsembleModel.from_pretrained(tmp_path / "again").eval()(**inputs).intensities, output)
        # The code copied next to the weights builds the same model (what trust_remote_code loads).
        remote_class = get_class_from_dynamic_module("modeling_ensemble_emi.EmiEnsembleModel", str(tmp_path))
        assert not remote_class.__module__.startswith("emi_hf")
        assert torch.equal(remote_class.from_pretrained(tmp_path).eval()(**inputs).intensities, output)
    evaluated, _, _ = evaluate_model(tmp_path, features, "validation", num_resamples=50)
    assert evaluated["mean_pearson"] == pytest.approx(results["validation"]["mean_pearson"], abs=1e-5)


def test_final_retraining_on_train_and_validation(features, tmp_path):
    results = train(EmiTrainingArguments(features=str(features), output_dir=str(tmp_path), seed=2, patience=1,
                                      train_splits=["train", "validation"], annotator_weights=True,
                                      **{**TINY, "epochs": 3}))
    training = results["training"]
    assert training["epochs_run"] == 3 and training["best_epoch"] == 3 and not training["stopped_early"]
    assert training["eval_split_held_out"] is False and "no early stopping" in training["model_selection"]
    assert results["validation"] is None and results["training_fit"]["num_clips"] > 0
    assert training["annotator_weighting"]["clips"] == 60  # both splits were trained on
    assert read_results(tmp_path)["training_fit"] == results["training_fit"]
    assert evaluate_model(tmp_path, features, "validation", num_resamples=0)[0]["split_trained_on"] is True
    with pytest.raises(ValueError, match="held-out"):
        train(EmiTrainingArguments(features=str(features), modality="fusion", output_dir=str(tmp_path / "f"),
                                visual_model=str(tmp_path), audio_model=str(tmp_path),
                                train_splits=["train", "validation"], **TINY))


def test_final_fusion_keeps_the_held_out_weights(features, tmp_path):
    from emi_hf import EmiFusionModel

    for splits, name in ((["train"], "held_out"), (["train", "validation"], "final")):
        for modality in ("visual", "audio"):
            train(EmiTrainingArguments(features=str(features), modality=modality, train_splits=splits,
                                    output_dir=str(tmp_path / name / modality), **TINY))
    held_out = train(EmiTrainingArguments(features=str(features), modality="fusion", output_dir=str(tmp_path / "fusion"),
                                       visual_model=str(tmp_path / "held_out" / "visual"),
                                       audio_model=str(tmp_path / "held_out" / "audio"), **TINY))
    final = train(EmiTrainingArguments(features=str(features), modality="fusion",
                                    output_dir=str(tmp_path / "final_fusion"),
                                    visual_model=str(tmp_path / "final" / "visual"),
                                    audio_model=str(tmp_path / "final" / "audio"), train_splits=["train", "validation"],
                                    fusion_weights_from=str(tmp_path / "fusion"), **TINY))
    assert final["fusion_weights"] == held_out["fusion_weights"] and final["fusion_weights_fitted"] is False
    assert final["validation"] is None and final["training"]["eval_split_held_out"] is False
    saved = EmiFusionModel.from_pretrained(tmp_path / "final_fusion").config.fusion_weights
    assert saved == pytest.approx(list(held_out["fusion_weights"].values()))


# ----------------------------------------------------------------------------------------------------------------------
# Bootstrap, annotator counts
# ----------------------------------------------------------------------------------------------------------------------


def test_bootstrap_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    labels = rng.random((57, 6))
    predictions = labels + rng.normal(scale=0.8, size=labels.shape)
    predictions[:, 5] = np.round(predictions[:, 5])  # few distinct values: some resamples see ties
    result = bootstrap_mean_pearson(predictions, labels, num_resamples=300, seed=4)
    draws = np.random.default_rng(4)
    reference = []
    for _ in range(300):
        rows = draws.integers(0, 57, size=57)
        reference.append(mean_pearson(predictions[rows], labels[rows]))
    means = np.array([r["mean_pearson"] for r in reference])
    assert result["mean_pearson"]["estimate"] == pytest.approx(mean_pearson(predictions, labels)["mean_pearson"])
    assert [result["mean_pearson"]["low"], result["mean_pearson"]["high"]] == pytest.approx(
        np.quantile(means, [0.025, 0.975]), abs=1e-9)
    joy = np.array([r["per_emotion"]["Joy"] for r in reference])
    assert result["per_emotion"]["Joy"]["high"] == pytest.approx(np.quantile(joy, 0.975), abs=1e-9)
    assert result["mean_pearson"]["std"] == pytest.approx(means.std(ddof=1), abs=1e-9)
    assert bootstrap_mean_pearson(predictions, labels, num_resamples=300, seed=4) == result
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_mean_pearson(np.full((5, 6), np.nan), labels[:5])


def test_evaluate_reports_confidence_intervals(features, tmp_path):
    train(EmiTrainingArguments(features=str(features), output_dir=str(tmp_path), **TINY))
    results, predictions, labels = evaluate_model(tmp_path, features, "validation", num_resamples=200)
    intervals = results["confidence_intervals"]
    keep = np.isfinite(predictions).all(1)
    direct = bootstrap_mean_pearson(predictions[keep], labels[keep], num_resamples=200, seed=0)
    assert intervals == direct and intervals["num_clips"] == results["num_clips"]
    assert results["split_trained_on"] is False
    block = intervals["mean_pearson"]
    assert block["low"] <= block["estimate"] <= block["high"]
    assert evaluate_model(tmp_path, features, "validation", num_resamples=0)[0]["confidence_intervals"] is None


def test_annotator_count_inference():
    assert infer_annotator_count([0.333, 0.667, 0, 0, 0, 0]) == 3
    assert infer_annotator_count([0.5, 0.5, 0, 1, 0, 0]) == 2
    assert infer_annotator_count([0.25, 0.75, 0, 0, 0.5, 0]) == 4
    assert infer_annotator_count([0.333, 0.5, 0.25, 0, 0, 0]) == 12  # the smallest n explaining all six
    assert infer_annotator_count([0, 0, 0, 0, 0, 0]) == 1
    assert infer_annotator_count([0.1234, 0.5, 0, 0, 0, 0]) is None  # no n <= 30 explains 0.1234
    assert infer_annotator_count([float("nan")] * 6) is None
    weights, summary = annotator_weights(np.array([[0.5] * 6, [0.25] * 6, [0.1234] * 6]))
    # Counts 2, 4 and (not inferred) the median 3, divided by their mean 3.
    np.testing.assert_allclose(weights, [2 / 3, 4 / 3, 1.0], rtol=1e-6)
    assert summary["clips_with_inferred_count"] == 2 and summary["median_inferred_count"] == 3


@pytest.mark.parametrize("loss_type", ["mse", "ccc", "pearson"])
def test_weighted_loss_is_the_loss_of_repeated_clips(loss_type):
    torch.manual_seed(0)
    predictions, labels = torch.rand(8, 6, requires_grad=True), torch.rand(8, 6)
    counts = torch.tensor([1, 2, 3, 1, 1, 2, 1, 4])
    repeated = torch.repeat_interleave(torch.arange(8), counts)
    weighted = weighted_regression_loss(loss_type, predictions, labels, counts.float())
    torch.testing.assert_close(weighted, regression_loss(loss_type, predictions[repeated], labels[repeated]))
    torch.testing.assert_close(weighted_regression_loss(loss_type, predictions, labels, torch.ones(8)),
                               regression_loss(loss_type, predictions, labels))
    weighted.backward()
    assert predictions.grad is not None and torch.isfinite(predictions.grad).all()


def test_cli_cv_and_evaluate_print_their_tables(features, tmp_path, capsys):
    from emi_hf.cli import main

    flags = ["--features", str(features), "--report-to", "none", "--epochs", "1", "--batch-size", "16",
             "--hidden-size", "32", "--num-hidden-layers", "1", "--num-attention-heads", "2", "--tcn-dilations", "1,2",
             "--max-frames", "16"]
    assert main(["cv", *flags, "--folds", "3", "--output-dir", str(tmp_path / "cv")]) == 0
    printed = capsys.readouterr().out
    assert "mean Pearson" in printed and "+-" in printed and (tmp_path / "cv" / "cv_results.json").is_file()
    assert main(["train", *flags, "--output-dir", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "run"), "--features", str(features),
                 "--bootstrap-resamples", "100"]) == 0
    printed = capsys.readouterr().out
    assert "95% CI low" in printed and "100 bootstrap resamples" in printed
    saved = read_results(tmp_path / "run" / "evaluation_validation")
    assert saved["confidence_intervals"]["num_resamples"] == 100
