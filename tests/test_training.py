"""Training on cached features: data pipeline, learning, artifacts, resume, early stopping, fusion, 1 vs 2 processes.

Tiny random features (`emi_hf.data.random_features.make_feature_dataset`: labels a learnable function of the features,
variable lengths, clips without a face and without audio) and tiny models; CPU only, offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, tiny_audio_config, tiny_visual_config, train_killed_after

from emi_hf import EmiAudioModel, EmiFusionModel, EmiVisualModel
from emi_hf.training import EmiTrainingArguments, build_parser, evaluate_model, plot_scatter, train
from emi_hf.data.random_features import make_feature_dataset
from emi_hf.data.store import load_feature_splits
from emi_hf.training.data import MODALITY_COLUMNS, ClipBatchDataset, EpochBatchSampler, FeatureTable
from emi_hf.training.evaluation import metric_block

TINY = ["--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--tcn-dilations", "1,2"]
TINY_KWARGS = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, tcn_dilations=[1, 2], batch_size=16,
                   lr=3e-3, report_to="none", max_frames=16, max_audio_frames=24)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; tiny models do not need more
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    from emi_hf.processing_emi import EmiProcessor

    folder = tmp_path_factory.mktemp("features")
    EmiProcessor(face_detector=None, au_backend=None).save_pretrained(folder / "_processor")
    torch.manual_seed(0)
    return make_feature_dataset(
        folder, num_train=96, num_valid=48, num_test=6, processor_dir=folder / "_processor",
        base_models={"visual": EmiVisualModel(tiny_visual_config()), "audio": EmiAudioModel(tiny_audio_config())},
    )


@pytest.fixture(scope="module")
def trained(features, tmp_path_factory) -> dict:
    """A visual and an audio run (6 epochs each), shared by the tests that only read them."""
    runs = tmp_path_factory.mktemp("runs")
    results = {}
    for modality in ("visual", "audio"):
        results[modality] = train(EmiTrainingArguments(
            features=str(features), modality=modality, output_dir=str(runs / modality), epochs=6, seed=1,
            **{**TINY_KWARGS, "report_to": "tensorboard" if modality == "visual" else "none"},
        ))
    return {"dir": runs, **results}


# ----------------------------------------------------------------------------------------------------------------------
# Arguments and data
# ----------------------------------------------------------------------------------------------------------------------


def test_parser_defaults_are_the_dataclass_defaults():
    parsed = EmiTrainingArguments.from_any(build_parser().parse_args(["--features", "f"]))
    assert parsed == EmiTrainingArguments(features="f")
    parsed = EmiTrainingArguments.from_any(build_parser().parse_args(
        ["--features", "f", "--modality", "audio", "--tcn-dilations", "1,2,4", "--resume", "--loss", "ccc"]))
    assert parsed.tcn_dilations == [1, 2, 4] and parsed.resume == "auto" and parsed.output_dir == "runs/audio"
    with pytest.raises(TypeError, match="Unknown"):
        EmiTrainingArguments.from_any({"features": "f", "learning_rate": 1e-3})


def test_feature_table_views_equal_the_dataset_rows(features):
    datasets, metadata, root = load_feature_splits(features)
    assert metadata["au_names"][0] == "AU01" and metadata["audio_feature_dim"] == 32 and root == features
    split = datasets["train"]
    table = FeatureTable(split, MODALITY_COLUMNS["fusion"])
    reference = split.with_format("numpy")
    for i in (0, 7, len(split) - 1):
        row = reference[i]
        for column in MODALITY_COLUMNS["fusion"]:
            np.testing.assert_array_equal(table[column][i], row[column])
        np.testing.assert_array_equal(table.labels[i], row["labels"])
    selected = FeatureTable(split.select([5, 2]), ["visual_features"])
    np.testing.assert_array_equal(selected["visual_features"][1], table["visual_features"][2])
    assert FeatureTable(datasets["test"], MODALITY_COLUMNS["audio"]).labels is not None  # NaN labels
    assert np.isnan(FeatureTable(datasets["test"], MODALITY_COLUMNS["audio"]).labels).all()


def test_batches_are_padded_masked_and_cropped_deterministically(features):
    datasets, _, _ = load_feature_splits(features)
    table = FeatureTable(datasets["train"], MODALITY_COLUMNS["fusion"])
    lengths = [len(v) for v in table["visual_features"]]
    train_clips = ClipBatchDataset(table, "fusion", 6, max_frames=8, max_audio_frames=10, random_crop=True, seed=3)
    batch = train_clips.__getitems__([0, 1, 2, 3])
    assert batch["visual_features"].shape[1] == min(8, max(lengths[:4])) and batch["frame_mask"].dtype == torch.int64
    assert batch["audio_features"].shape[2] == 32 and batch["labels"].shape == (4, 6)
    short = int(np.argmin(lengths))
    padded = train_clips.__getitems__([short, int(np.argmax(lengths))])
    assert padded["frame_mask"][0, lengths[short]:].sum() == 0  # padding is masked
    again = ClipBatchDataset(table, "fusion", 6, max_frames=8, max_audio_frames=10, random_crop=True, seed=3)
    torch.testing.assert_close(again.__getitems__([0, 1, 2, 3])["visual_features"], batch["visual_features"])
    train_clips.set_epoch(1)  # another window in another epoch, for some clip
    assert any(not torch.equal(train_clips.__getitems__([i])["visual_features"],
                               again.__getitems__([i])["visual_features"]) for i in range(20) if lengths[i] > 8)
    centre = ClipBatchDataset(table, "visual", 6, max_frames=4)
    longest = int(np.argmax(lengths))
    start = (lengths[longest] - 4 + 1) // 2
    np.testing.assert_array_equal(centre.__getitems__([longest])["visual_features"][0].numpy(),
                                  table["visual_features"][longest][start:start + 4])
    sampler = EpochBatchSampler(10, 4, shuffle=True, drop_last=True, seed=0)
    first = list(sampler)
    assert len(first) == 2 and all(len(b) == 4 for b in first) and list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert [len(b) for b in EpochBatchSampler(10, 4, shuffle=False, drop_last=False)] == [4, 4, 2]


def test_metric_excludes_and_counts_clips_without_the_modality():
    rng = np.random.default_rng(0)
    labels = rng.random((10, 6))
    predictions = labels + 0.01 * rng.random((10, 6))
    mask = np.ones(10, bool)
    mask[[2, 5]] = False
    predictions[[2, 5]] = np.nan
    labels[9] = np.nan  # unlabeled: not counted at all
    block = metric_block(predictions, mask, labels, [f"e{i}" for i in range(6)])
    assert block["num_clips"] == 7 and block["num_missing_modality"] == 2 and block["mean_pearson"] > 0.99


# ----------------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------------


def test_visual_training_learns_and_saves_a_complete_run(trained, features):
    from emi_hf.results import read_results

    results, folder = trained["visual"], trained["dir"] / "visual"
    assert results["validation"]["mean_pearson"] > 0.3, results["history"]
    assert results["validation"]["num_missing_modality"] > 0  # faceless clips are counted, not scored
    files = set(os.listdir(folder))
    assert {"model.safetensors", "config.json", "results.json", "processor_config.json"} <= files
    assert read_results(folder, results["label_names"])["modality"] == "visual"  # the Hub card code accepts it
    on_disk = json.loads((folder / "results.json").read_text())
    assert on_disk["training"]["best_epoch"] == results["training"]["best_epoch"]
    assert {"epochs_run", "seed", "wall_time_s", "lr", "hidden_size"} <= set(on_disk["training"])
    assert on_disk["dataset"] == "synthetic-features"
    assert list((folder / "tensorboard").rglob("events.out.tfevents.*"))
    # The saved best model kept the base model's backbone and evaluates to the recorded metric.
    model = EmiVisualModel.from_pretrained(folder)
    base = EmiVisualModel.from_pretrained(features / "base_visual")
    torch.testing.assert_close(model.backbone.conv1.weight, base.backbone.conv1.weight)
    evaluated, predictions, labels = evaluate_model(folder, features, "validation")
    assert evaluated["mean_pearson"] == pytest.approx(results["validation"]["mean_pearson"], abs=1e-6)
    assert predictions.shape == labels.shape == (48, 6)
    png = plot_scatter(predictions, labels, evaluated["label_names"], folder / "scatter.png")
    assert png.stat().st_size > 10_000


def test_late_fusion_fits_weights_and_beats_each_modality(trained, features, tmp_path):
    results = train(EmiTrainingArguments(
        features=str(features), modality="fusion", output_dir=str(tmp_path / "fusion"), report_to="none",
        visual_model=str(trained["dir"] / "visual"), audio_model=str(trained["dir"] / "audio"),
    ))
    fused = results["validation"]["mean_pearson"]
    visual, audio = (results["unimodal"][m]["mean_pearson"] for m in ("visual", "audio"))
    assert fused > max(visual, audio), (fused, visual, audio)
    assert visual == pytest.approx(trained["visual"]["validation"]["mean_pearson"], abs=1e-6)
    assert results["validation"]["num_missing_modality"] == 0  # a fused clip needs either modality
    crossfit = results["validation_crossfit"]
    assert len(crossfit["per_emotion"]) == 6 and crossfit["num_clips"] == results["validation"]["num_clips"]
    # The features carry emotions 0-1 in the face only and 4-5 in the voice only (random_features): weights fitted
    # on the other half of the clips must still beat each modality, on clips they were not fitted on (measured:
    # cross-fitted 0.803, visual 0.613, audio 0.584).
    assert crossfit["mean_pearson"] > max(visual, audio) + 0.05, (crossfit["mean_pearson"], visual, audio)
    model = EmiFusionModel.from_pretrained(tmp_path / "fusion")
    assert model.config.fusion_weights == list(results["fusion_weights"].values())
    evaluated, _, _ = evaluate_model(tmp_path / "fusion", features, "validation")
    assert evaluated["mean_pearson"] == pytest.approx(fused, abs=1e-6)
    assert set(evaluated) >= {"visual", "audio", "fusion", "fusion_weights"}


def two_modality_arrays(num_clips: int = 60, seed: int = 0) -> dict:
    """`predict(..., "fusion")`-shaped arrays where the face predicts emotions 0-2 (the voice is noise there) and the
    voice 3-5: per-emotion fusion weights fitted on any half must choose the right modality."""
    rng = np.random.default_rng(seed)
    labels = rng.random((num_clips, 6))
    signal = labels + 0.3 * rng.standard_normal((num_clips, 6))
    noise = rng.random((num_clips, 6))
    visual = np.concatenate([signal[:, :3], noise[:, 3:]], axis=1)
    audio = np.concatenate([noise[:, :3], signal[:, 3:]], axis=1)
    present = np.ones(num_clips, bool)
    return {"labels": labels, "mask": present, "visual_intensities": visual.astype(np.float32),
            "visual_mask": present, "audio_intensities": audio.astype(np.float32), "audio_mask": present}


def test_crossfitted_fusion_beats_each_modality_where_each_carries_other_emotions():
    from emi_hf.training.fusion import score_fusion

    names = [f"e{i}" for i in range(6)]
    arrays = two_modality_arrays()
    result = score_fusion(arrays, names, {"visual": [0.5] * 6, "audio": [0.5] * 6}, fitted=False)
    visual, audio = (result["unimodal"][m]["mean_pearson"] for m in ("visual", "audio"))
    crossfit = result["validation_crossfit"]["mean_pearson"]
    equal = result["validation_equal_weights"]["mean_pearson"]
    # measured: visual 0.360, audio 0.317, plain average 0.562, cross-fitted 0.684
    assert crossfit > equal + 0.05 and equal > max(visual, audio) + 0.1, (crossfit, equal, visual, audio)


def test_crossfitted_predictions_never_use_their_own_labels():
    """Each half's fused predictions come from weights fitted on the other half: changing the labels of one half
    leaves that half's cross-fitted predictions as they were (and changes the other half's)."""
    from emi_hf.training.fusion import crossfitted, fused, optimal_modality_weights

    arrays = two_modality_arrays()
    before = crossfitted(arrays)
    assert np.isfinite(before).all(), "every clip gets a cross-fitted prediction"
    even = np.arange(len(arrays["labels"])) % 2 == 0
    for fit, scored in ((~even, even), (even, ~even)):  # each half: the fusion with the other half's fitted weights
        weights = optimal_modality_weights({m: arrays[f"{m}_intensities"][fit] for m in ("visual", "audio")},
                                           arrays["labels"][fit])
        np.testing.assert_array_equal(before[scored], fused(arrays, weights)[scored])
    changed = dict(arrays, labels=arrays["labels"].copy())
    changed["labels"][even] = np.random.default_rng(1).random((int(even.sum()), 6))  # the even half's labels redrawn
    after = crossfitted(changed)
    np.testing.assert_array_equal(after[even], before[even])
    assert not np.array_equal(after[~even], before[~even], equal_nan=True)


def test_joint_fusion_trains_both_models(features, tmp_path):
    """Both temporal models learn (every one of their weights moves away from where the run started: the same run
    at learning rate 0), the frozen face backbone does not, and the saved model scores what results.json says."""
    from safetensors.torch import load_file

    common = dict(features=str(features), modality="fusion", fusion_mode="joint", epochs=2, seed=0, **TINY_KWARGS)
    results = train(EmiTrainingArguments(output_dir=str(tmp_path / "joint"), **common))
    assert results["training"]["epochs_run"] == 2 and results["fusion_mode"] == "joint"
    assert "validation_before_fitting_weights" in results and results["validation"]["mean_pearson"] is not None
    assert len(results["fusion_weights"]) == 6
    train(EmiTrainingArguments(output_dir=str(tmp_path / "start"), **{**common, "lr": 0.0, "epochs": 1}))
    trained, start = (load_file(tmp_path / name / "model.safetensors") for name in ("joint", "start"))
    assert trained.keys() == start.keys()
    for part in ("visual.encoder.", "visual.head.", "audio.encoder.", "audio.head.", "audio.audio_projection."):
        names = [k for k in trained if k.startswith(part)]
        unchanged = [k for k in names if torch.equal(trained[k], start[k])]
        assert names and not unchanged, (part, unchanged)
    assert all(torch.equal(trained[k], start[k]) for k in trained if k.startswith("visual.backbone."))
    evaluated, _, _ = evaluate_model(tmp_path / "joint", features, "validation")
    assert evaluated["mean_pearson"] == pytest.approx(results["validation"]["mean_pearson"], abs=1e-6)


def test_kill_and_resume_ends_with_the_same_weights(features, tmp_path):
    from safetensors.torch import load_file

    common = dict(features=str(features), modality="audio", epochs=4, seed=7, patience=0, dropout=0.1,
                  checkpoint_every_epoch=True, loss="ccc", **TINY_KWARGS)
    uninterrupted = train(EmiTrainingArguments(output_dir=str(tmp_path / "a"), **common))
    train_killed_after(train, EmiTrainingArguments(output_dir=str(tmp_path / "b"), **common), epochs=2)
    # epoch checkpoints; beside them the best epoch's trained weights (training.best_model), until the run ends
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").glob("epoch_*")) == ["epoch_1", "epoch_2"]
    resumed = train(EmiTrainingArguments(output_dir=str(tmp_path / "b"), resume="auto", **common))
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["epoch_3", "epoch_4"]  # last 2
    for name in ("checkpoints/epoch_4/model.safetensors", "model.safetensors"):
        a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "b" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert [h["validation_mean_pearson"] for h in resumed["history"]] == [
        h["validation_mean_pearson"] for h in uninterrupted["history"]]
    assert resumed["training"]["best_epoch"] == uninterrupted["training"]["best_epoch"]


def test_early_stopping_and_resume_without_checkpoints(features, tmp_path):
    # lr 0: the metric never improves after epoch 1, so patience 2 stops after epoch 3.
    results = train(EmiTrainingArguments(features=str(features), modality="visual", output_dir=str(tmp_path / "run"),
                                      epochs=10, patience=2, resume="auto", **{**TINY_KWARGS, "lr": 0.0}))
    assert results["training"]["epochs_run"] == 3 and results["training"]["stopped_early"]
    assert results["training"]["best_epoch"] == 1


def test_clear_errors(features, tmp_path):
    with pytest.raises(ValueError, match="batch-size"):
        train(EmiTrainingArguments(features=str(features), output_dir=str(tmp_path / "x"), **{**TINY_KWARGS,
                                                                                             "batch_size": 500}))
    with pytest.raises(ValueError, match="--visual-model"):
        train(EmiTrainingArguments(features=str(features), modality="fusion", output_dir=str(tmp_path / "y"),
                                report_to="none"))
    other_aus = tmp_path / "other_aus"
    EmiVisualModel(tiny_visual_config(au_names=["AU01", "AU02"])).save_pretrained(other_aus)
    with pytest.raises(ValueError, match="AUs"):
        train(EmiTrainingArguments(features=str(features), output_dir=str(tmp_path / "z"), base_model=str(other_aus),
                                **TINY_KWARGS))


@pytest.mark.parametrize("loss_type", ["mse", "ccc", "pearson"])
def test_the_loop_loss_is_the_models_loss(features, loss_type):
    """One loss: a training step's loss (`training_loss`, and what `train_one_epoch` reports) is the model's own
    `labels` loss for one process; it leaves out clips without the modality and unlabeled clips, and weights clips
    by the batch's `weights` (`--annotator-weights`)."""
    from accelerate import Accelerator
    from transformers import get_cosine_schedule_with_warmup

    from emi_hf.modeling_emi import regression_loss, weighted_regression_loss
    from emi_hf.training.data import model_inputs
    from emi_hf.training.evaluation import build_loader
    from emi_hf.training.loop import train_one_epoch, training_loss

    datasets, _, _ = load_feature_splits(features)
    loader = build_loader(datasets["train"], "audio", 6, 24, None, 24, clip_weights=np.linspace(0.5, 2.0, 96))
    batch = next(iter(loader))
    batch["labels"][1] = float("nan")  # an unlabeled clip
    assert not bool((batch["audio_mask"].sum(1) > 0).all()), "the features have clips without audio"
    model = EmiAudioModel(tiny_audio_config(loss_type=loss_type, dropout=0.0)).train()
    accelerator = Accelerator(cpu=True)
    unweighted = {k: v for k, v in batch.items() if k != "weights"}
    with torch.no_grad():
        output = model(**model_inputs(batch, "audio"), labels=batch["labels"])
        keep = output.modality_mask & torch.isfinite(batch["labels"]).all(1)
        assert torch.equal(training_loss(accelerator, model, unweighted, "audio"), output.loss)
        torch.testing.assert_close(output.loss, regression_loss(loss_type, output.intensities[keep],
                                                                batch["labels"][keep]))
        weighted = training_loss(accelerator, model, batch, "audio")
        torch.testing.assert_close(weighted, weighted_regression_loss(
            loss_type, output.intensities[keep], batch["labels"][keep], batch["weights"][keep]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    scheduler = get_cosine_schedule_with_warmup(optimizer, 0, 1)
    args = EmiTrainingArguments(features="f", modality="audio")
    reported = train_one_epoch(accelerator, model, [unweighted], optimizer, scheduler, args)
    assert reported == pytest.approx(float(output.loss), abs=1e-7)


def test_the_old_name_of_the_arguments_still_imports_with_a_warning():
    import transformers

    import emi_hf.training
    import emi_hf.training.arguments

    for module in (emi_hf.training, emi_hf.training.arguments):
        with pytest.warns(DeprecationWarning, match="EmiTrainingArguments"):
            old = module.TrainingArguments
        assert old is EmiTrainingArguments
    with pytest.warns(DeprecationWarning):
        from emi_hf.training import TrainingArguments  # noqa: F401
    assert "TrainingArguments" not in emi_hf.training.__all__  # a star import does not shadow transformers' class
    assert transformers.TrainingArguments is not EmiTrainingArguments
    with pytest.raises(AttributeError):
        emi_hf.training.NoSuchName  # noqa: B018


# ----------------------------------------------------------------------------------------------------------------------
# Processes: `accelerate launch --cpu --num_processes 1` vs `torchrun --nproc_per_node 2` (gloo)
# ----------------------------------------------------------------------------------------------------------------------


def _run(command: list[str], tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1",
               HF_HUB_OFFLINE="1", ACCELERATE_CONFIG_FILE=str(tmp_path / "no_accelerate_config.yaml"),
               HF_HOME=str(tmp_path / "hf_home"))
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def test_two_processes_give_the_same_metric_as_one(features, tmp_path):
    args = ["--features", str(features), "--modality", "visual", "--epochs", "2", "--batch-size", "16",
            "--eval-batch-size", "10", "--lr", "3e-3", *TINY, "--dropout", "0", "--channel-dropout", "0",
            "--max-frames", "16", "--report-to", "none", "--seed", "5", "--loss", "pearson"]
    bin_dir = Path(sys.executable).parent
    _run([str(bin_dir / "accelerate"), "launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "train.py", *args,
          "--output-dir", str(tmp_path / "one")], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py",
          "--cpu", *args, "--output-dir", str(tmp_path / "two")], tmp_path)
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert (one["training"]["num_processes"], two["training"]["num_processes"]) == (1, 2)
    assert one["validation"]["num_clips"] == two["validation"]["num_clips"] > 40  # padding duplicates dropped
    for a, b in zip(one["history"], two["history"]):
        assert b["validation_mean_pearson"] == pytest.approx(a["validation_mean_pearson"], abs=1e-5)
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)


def test_fusion_weight_ties_go_to_the_plain_average():
    """With the audio prediction constant for an emotion every visual weight above 0 scores the same r: 0.5 is kept."""
    import numpy as np

    from emi_hf.training.fusion import optimal_fusion_weights

    rng = np.random.default_rng(0)
    labels = rng.random((40, 2))
    visual = labels + 0.1 * rng.standard_normal((40, 2))
    audio = rng.random((40, 2))
    audio[:, 1] = 0.3
    weights = optimal_fusion_weights(visual, audio, labels)
    assert weights[1] == 0.5
    assert 0.0 < weights[0] <= 1.0
