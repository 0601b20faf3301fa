"""The main job in miniature: synthetic videos -> processor -> extract -> train x3 -> evaluate -> predict (CLI); and
end-to-end training from the raw clips through the same training loop (1 and 2 processes, resume, audio fine-tuning)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, TINY_WAV2VEC2, tiny_audio_config, tiny_visual_config, train_killed_after

from emi_hf import EmiAudioModel, EmiProcessor, EmiVisualModel
from emi_hf.cli import main as cli
from emi_hf.data.extraction import run_extraction
from emi_hf.data.layout import load_hume_vidmimic2
from emi_hf.data.store import load_features
from emi_hf.data.synthetic import generate_synthetic_dataset
from emi_hf.training import evaluate_model

TINY_FLAGS = ["--hidden-size", "32", "--num-heads", "2", "--num-layers", "1", "--tcn-dilations", "1,2",
              "--batch-size", "4", "--epochs", "2", "--report-to", "none", "--seed", "0"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    generate_synthetic_dataset(root / "data", num_train=8, num_valid=4, duration=1.0, fps=10, size=160, seed=3)
    records = load_hume_vidmimic2(root / "data", splits=("train", "validation"))
    processor = EmiProcessor(face_detector="mediapipe", target_fps=5, use_cache=False)
    report = run_extraction(records, root / "features", processor, EmiVisualModel(tiny_visual_config()).eval(),
                            EmiAudioModel(tiny_audio_config()).eval(), progress=False)
    return root, report


def test_extract_train_evaluate_predict(workspace, capsys):
    root, report = workspace
    assert report["splits"]["train"] == {"requested": 8, "extracted": 8, "failed": 0}
    features = load_features(root / "features")
    rows = features["train"].with_format("numpy")
    assert np.mean([row["frame_mask"].mean() for row in rows]) > 0.8, "the drawn faces must be found"
    assert all(row["audio_present"] for row in rows)

    runs = root / "runs"
    for modality in ("visual", "audio"):
        assert cli(["train", "--features", str(root / "features"), "--modality", modality,
                    "--output-dir", str(runs / modality), *TINY_FLAGS]) == 0
    assert cli(["train", "--features", str(root / "features"), "--modality", "fusion", "--output-dir",
                str(runs / "fusion"), "--visual-model", str(runs / "visual"), "--audio-model", str(runs / "audio"),
                "--report-to", "none"]) == 0
    results = json.loads((runs / "fusion" / "results.json").read_text())
    assert results["modality"] == "fusion" and len(results["validation"]["per_emotion"]) == 6

    assert cli(["evaluate", "--model", str(runs / "fusion"), "--features", str(root / "features")]) == 0
    assert (runs / "fusion" / "evaluation_validation" / "scatter.png").stat().st_size > 10_000
    assert "mean Pearson" in capsys.readouterr().out

    clip_id = load_hume_vidmimic2(root / "data")["validation"][0].clip_id
    video = root / "data" / "videos" / f"{clip_id}.mp4"
    assert cli(["predict", str(video), "--model", str(runs / "fusion"), "--json"]) == 0
    prediction = json.loads(capsys.readouterr().out)[0]
    names = ["Admiration", "Amusement", "Determination", "Empathic Pain", "Excitement", "Joy"]
    assert list(prediction["intensities"]) == names
    assert prediction["audio_present"] and prediction["face_fraction"] > 0.5
    # The raw video scores as its cached features do (`evaluate`: same processor, same backbones) ...
    _, evaluated, _ = evaluate_model(runs / "fusion", root / "features", "validation")
    row = list(features["validation"]["clip_id"]).index(clip_id)
    np.testing.assert_allclose(list(prediction["intensities"].values()), evaluated[row], atol=1e-6)  # measured: 0
    # ... and the fused intensities are the checkpoint's per-emotion weighting of the visual and audio ones.
    weights = json.loads((runs / "fusion" / "config.json").read_text())["fusion_weights"]
    fused = [w * prediction["visual"][n] + (1 - w) * prediction["audio"][n] for w, n in zip(weights, names)]
    np.testing.assert_allclose(list(prediction["intensities"].values()), fused, atol=1e-6)


def test_predict_with_a_mismatched_processor_is_an_error(workspace, tmp_path):
    root, _ = workspace
    processor = EmiProcessor(face_detector="mediapipe", au_names=["AU01", "AU12"])
    processor.save_pretrained(tmp_path / "processor")
    with pytest.raises(SystemExit):
        cli(["predict", str(next((root / "data" / "videos").glob("*.mp4"))), "--model",
             str(root / "features" / "base_visual"), "--processor", str(tmp_path / "processor")])


# ----------------------------------------------------------------------------------------------------------------------
# End to end from raw clips: the training loop of cached features, on another dataset
# ----------------------------------------------------------------------------------------------------------------------

TWO_LAYER_SPEECH = dict(TINY_WAV2VEC2, num_hidden_layers=2)
RAW_FLAGS = ["--hidden-size", "32", "--num-heads", "2", "--num-layers", "1", "--tcn-dilations", "1,2",
             "--batch-size", "4", "--report-to", "none"]
RAW_KWARGS = dict(hidden_size=32, num_attention_heads=2, num_hidden_layers=1, tcn_dilations=[1, 2], batch_size=4,
                  report_to="none", lr=3e-3)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; tiny models do not need more
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def raw_set(tmp_path_factory):
    """Raw clips (8 train, 8 validation, 1 s) and a features folder naming a processor (MediaPipe, 5 fps, clip cache
    on as by default) and base models: a random ResNet18 and a 2-layer wav2vec2."""
    from emi_hf.data.random_features import make_feature_dataset

    root = tmp_path_factory.mktemp("raw")
    generate_synthetic_dataset(root / "data", num_train=8, num_valid=8, duration=1.0, fps=10, size=160, seed=3)
    EmiProcessor(face_detector="mediapipe", target_fps=5).save_pretrained(root / "processor")
    torch.manual_seed(0)
    audio = EmiAudioModel(tiny_audio_config(speech_encoder_config=dict(TWO_LAYER_SPEECH)))
    make_feature_dataset(root / "features", num_train=8, num_valid=8, processor_dir=root / "processor",
                         base_models={"visual": EmiVisualModel(tiny_visual_config()), "audio": audio})
    return root


def _subprocess_env(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1", HF_HUB_OFFLINE="1",
               ACCELERATE_CONFIG_FILE=str(root / "no_accelerate_config.yaml"), HF_HOME=str(root / "hf_home"),
               EMI_HF_CACHE=str(root / "clip_cache"))
    return env


def _checkpoint_scores(run: Path, raw_set: Path, epochs: int, eval_batch_size: int) -> np.ndarray:
    """`[epochs, 3]`: mean Pearson of each epoch's checkpoint on all validation clips, on the clips of process 0's
    share (the first half of each evaluation batch under accelerate's split_batches) and on process 1's, scored in
    this one process in the batches each process ran (half an evaluation batch: a batch of waveforms is padded to
    its longest clip, which a group-norm wav2vec2 sees), on one thread as each process had."""
    from emi_hf.data.store import load_features_metadata

    names = load_features_metadata(raw_set / "features")["label_names"]
    records = load_hume_vidmimic2(raw_set / "data", splits=["validation"], label_names=names)["validation"]
    processor = EmiProcessor.from_pretrained(raw_set / "features" / "processor")
    first_half = np.arange(len(records)) % eval_batch_size < eval_batch_size // 2
    scores = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each process ran: other thread counts sum in other orders (1e-5 in the metric)
    try:
        for epoch in range(1, epochs + 1):
            scores.append(_epoch_scores(run, epoch, processor, records, names, eval_batch_size // 2, first_half))
    finally:
        torch.set_num_threads(threads)
    return np.array(scores)


def _epoch_scores(run, epoch, processor, records, names, batch_size, first_half) -> list:
    from safetensors.torch import load_file

    from emi_hf.training.end_to_end import RawClipSource
    from emi_hf.training.evaluation import metric_block, predict

    model = EmiAudioModel.from_pretrained(run)  # the frozen weights: an epoch checkpoint leaves them out
    missing, unexpected = model.load_state_dict(
        load_file(run / "checkpoints" / f"epoch_{epoch}" / "model.safetensors"), strict=False)
    trained = [k for k in missing if not k.startswith("backbone.") or k.startswith("backbone.encoder.layers.1.")]
    assert not unexpected and not trained, (unexpected, trained[:5])  # only the frozen backbone blocks left out
    source = RawClipSource(processor, "audio", len(names), None, 1024 * 20, seed=0)
    arrays = predict(model.eval(), source.loader(records, batch_size, training=False), "audio")
    return [metric_block(arrays["intensities"][rows], arrays["mask"][rows], arrays["labels"][rows], names)["mean_pearson"]
            for rows in (slice(None), first_half, ~first_half)]


def test_two_process_end_to_end_run_chooses_its_epoch_on_all_of_validation(raw_set, tmp_path):
    run = tmp_path / "two"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO_ROOT / "train.py"), "--cpu", "--features", str(raw_set / "features"), "--raw-data",
               str(raw_set / "data"), "--modality", "audio", "--trainable-backbone-layers", "1", *RAW_FLAGS,
               "--epochs", "4", "--seed", "0", "--lr", "3e-3", "--dropout", "0", "--patience", "0",
               "--checkpoint-every-epoch", "--keep-checkpoints", "4", "--output-dir", str(run)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=_subprocess_env(tmp_path), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    results = json.loads((run / "results.json").read_text())
    assert results["validation"]["num_clips"] == 8  # every validation clip, each once
    assert results["training"]["num_processes"] == 2 and results["training"]["end_to_end"]

    scores = _checkpoint_scores(run, raw_set, epochs=4, eval_batch_size=4)
    best_on_all, best_on_share_0 = int(scores[:, 0].argmax()) + 1, int(scores[:, 1].argmax()) + 1
    # the seed makes process 0's share of validation prefer another epoch than all of it does: a run that chose on
    # one process's share would keep the wrong one
    assert best_on_share_0 != best_on_all, scores
    recorded = [h["validation_mean_pearson"] for h in results["history"]]
    np.testing.assert_allclose(recorded, scores[:, 0], atol=1e-5)
    assert results["training"]["best_epoch"] == best_on_all
    assert results["validation"]["mean_pearson"] == pytest.approx(scores[best_on_all - 1, 0], abs=1e-5)
    saved = EmiAudioModel.from_pretrained(run).state_dict()
    from safetensors.torch import load_file

    kept = load_file(run / "checkpoints" / f"epoch_{best_on_all}" / "model.safetensors")
    assert all(torch.equal(saved[name], kept[name]) for name in kept)  # the best epoch's weights were saved


@pytest.mark.usefixtures("one_thread")
def test_end_to_end_training_honours_warmup_patience_and_resume(raw_set, tmp_path):
    from safetensors.torch import load_file

    from emi_hf.training import EmiTrainingArguments, train

    common = dict(features=str(raw_set / "features"), raw_data=str(raw_set / "data"), modality="audio",
                  trainable_backbone_layers=1, epochs=4, warmup_ratio=0.5, seed=1, patience=0, dropout=0.1,
                  checkpoint_every_epoch=True, **RAW_KWARGS)
    uninterrupted = train(EmiTrainingArguments(output_dir=str(tmp_path / "a"), **common))
    # 8 clips in batches of 4: 2 steps an epoch, 8 in all, the first 4 of linear warm-up, then the cosine decay
    assert [h["learning_rate"] for h in uninterrupted["history"]] == pytest.approx([1.5e-3, 3e-3, 1.5e-3, 0.0])
    train_killed_after(train, EmiTrainingArguments(output_dir=str(tmp_path / "b"), **common), epochs=2)
    resumed = train(EmiTrainingArguments(output_dir=str(tmp_path / "b"), resume="auto", **common))
    for name in ("checkpoints/epoch_4/model.safetensors", "model.safetensors"):
        a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "b" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    for key in ("train_loss", "validation_mean_pearson", "learning_rate"):
        assert [h[key] for h in resumed["history"]] == [h[key] for h in uninterrupted["history"]], key
    assert resumed["training"]["best_epoch"] == uninterrupted["training"]["best_epoch"]
    tuned = load_file(tmp_path / "a" / "model.safetensors")
    base = EmiAudioModel.from_pretrained(raw_set / "features" / "base_audio").state_dict()
    assert not torch.equal(tuned["backbone.encoder.layers.1.attention.k_proj.weight"],
                           base["backbone.encoder.layers.1.attention.k_proj.weight"])

    # lr 0: the metric never improves after epoch 1, so patience 2 stops after epoch 3
    stopped = train(EmiTrainingArguments(output_dir=str(tmp_path / "c"), **{**common, "lr": 0.0, "epochs": 10,
                                                                             "patience": 2}))
    assert stopped["training"]["epochs_run"] == 3 and stopped["training"]["stopped_early"]
    assert stopped["training"]["best_epoch"] == 1


def test_audio_end_to_end_fine_tunes_the_last_encoder_layer_only(raw_set, tmp_path):
    """Freeze all but the last encoder layer, bf16 autocast, gradient checkpointing: the last layer learns, the
    frozen layers and the conv feature encoder do not."""
    # its own process: accelerate keeps one mixed-precision setting per process, and this run uses bf16
    command = [sys.executable, "-m", "emi_hf.cli", "train", "--features", str(raw_set / "features"), "--modality",
               "audio", "--raw-data", str(raw_set / "data"), "--trainable-backbone-layers", "1",
               "--gradient-checkpointing", "--mixed-precision", "bf16", "--output-dir", str(tmp_path / "run"),
               "--epochs", "2", "--seed", "0", "--lr", "3e-3", *RAW_FLAGS]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=_subprocess_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    base = EmiAudioModel.from_pretrained(raw_set / "features" / "base_audio").backbone.state_dict()
    tuned = EmiAudioModel.from_pretrained(tmp_path / "run").backbone.state_dict()
    changed = {name for name, value in tuned.items() if not torch.equal(value, base[name])}
    assert changed and all(name.startswith("encoder.layers.1.") for name in changed), sorted(changed)
    assert any(name.startswith("encoder.layers.0.") for name in base)  # a frozen layer, unchanged
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    training = results["training"]
    assert training["end_to_end"] and training["trainable_backbone_layers"] == 1
    assert training["gradient_checkpointing"] and training["mixed_precision"] == "bf16"
    assert results["validation"]["num_clips"] == 8 and len(results["history"]) == 2
    # an audio model needs no face crops: none were decoded into the clip cache (the processor has it on)
    assert not list((tmp_path / "clip_cache").glob("**/*.npz"))


def test_fine_tuning_options_reach_the_speech_encoder():
    from emi_hf.training import EmiTrainingArguments
    from emi_hf.training.end_to_end import prepare_fine_tuning

    model = EmiAudioModel(tiny_audio_config(speech_encoder_config=dict(TWO_LAYER_SPEECH)))
    args = EmiTrainingArguments(features="f", modality="audio", trainable_backbone_layers=1,
                                gradient_checkpointing=True)
    trainable = prepare_fine_tuning(model, args)
    names = {name for name, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable and names and all(name.startswith("encoder.layers.1.") for name in names)
    encoder = model.backbone.encoder
    assert all(layer.gradient_checkpointing for layer in encoder.layers)  # the speech encoder's layers
    assert model.encoder.layers[0].gradient_checkpointing  # and the temporal model's
    model.train()
    assert model.backbone.encoder.layers[1].training and not model.backbone.encoder.layers[0].training


def test_raw_clip_windows_follow_the_rule_of_the_cached_features(raw_set):
    from emi_hf.training.end_to_end import RawClipDataset

    processor = EmiProcessor.from_pretrained(raw_set / "features" / "processor")
    records = load_hume_vidmimic2(raw_set / "data", splits=["train"])["train"][:3]

    def windows(epoch, training, seed=0):
        dataset = RawClipDataset(records, processor, "audio", 6, max_audio_samples=4000, random_crop=training,
                                 seed=seed)
        dataset.set_epoch(epoch)
        return [dataset.item(i)["waveform"] for i in range(len(records))]

    full = processor.process_clip(None, audio=str(records[0].path)).waveform
    assert len(full) > 4000 and all(len(w) == 4000 for w in windows(0, True))
    for a, b in zip(windows(1, True), windows(1, True)):  # a function of (seed, epoch, clip)
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(windows(1, True), windows(2, True)))
    # evaluation: the whole clip (the model scores a long one in windows of its trained length)
    np.testing.assert_array_equal(windows(5, False)[0], full)
    batch = RawClipDataset(records, processor, "audio", 6, max_audio_samples=4000, random_crop=True).__getitems__([2, 0])
    assert batch["index"].tolist() == [2, 0] and batch["input_values"].shape == (2, 4000)
    assert torch.equal(batch["labels"][1], torch.as_tensor(records[0].labels, dtype=torch.float32))


@pytest.mark.usefixtures("one_thread")
def test_end_to_end_writes_no_clip_cache_unless_asked(raw_set, tmp_path, monkeypatch):
    from emi_hf.training import EmiTrainingArguments, train

    cache = tmp_path / "clip_cache"
    monkeypatch.setenv("EMI_HF_CACHE", str(cache))
    common = dict(features=str(raw_set / "features"), raw_data=str(raw_set / "data"), modality="visual",
                  trainable_backbone_layers=1, epochs=1, seed=0, **RAW_KWARGS)
    results = train(EmiTrainingArguments(output_dir=str(tmp_path / "plain"), **common))
    assert results["validation"]["num_clips"] == 8
    assert not list(cache.glob("**/*.npz")), "the processor's cache setting must not make training fill the disk"
    train(EmiTrainingArguments(output_dir=str(tmp_path / "cached"), raw_clip_cache=True, **common))
    assert len(list(cache.glob("**/*.npz"))) == 16  # one entry per clip, train and validation
