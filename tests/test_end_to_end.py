"""The main job in miniature: synthetic videos -> processor -> extract -> train x3 -> evaluate -> predict (CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import tiny_audio_config, tiny_visual_config

from emi_hf import EmiAudioModel, EmiProcessor, EmiVisualModel
from emi_hf.cli import main as cli
from emi_hf.data.extraction import run_extraction
from emi_hf.data.layout import load_hume_vidmimic2
from emi_hf.data.store import load_features
from emi_hf.data.synthetic import generate_synthetic_dataset

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

    video = root / "data" / "videos" / f"{load_hume_vidmimic2(root / 'data')['validation'][0].clip_id}.mp4"
    assert cli(["predict", str(video), "--model", str(runs / "fusion"), "--json"]) == 0
    prediction = json.loads(capsys.readouterr().out)[0]
    assert set(prediction["intensities"]) == {"Admiration", "Amusement", "Determination", "Empathic Pain",
                                              "Excitement", "Joy"}
    assert all(0.0 <= v <= 1.0 for v in prediction["intensities"].values())
    assert prediction["audio_present"] and prediction["face_fraction"] > 0.5


def test_predict_with_a_mismatched_processor_is_an_error(workspace, tmp_path):
    root, _ = workspace
    processor = EmiProcessor(face_detector="mediapipe", au_names=["AU01", "AU12"])
    processor.save_pretrained(tmp_path / "processor")
    with pytest.raises(SystemExit):
        cli(["predict", str(next((root / "data" / "videos").glob("*.mp4"))), "--model",
             str(root / "features" / "base_visual"), "--processor", str(tmp_path / "processor")])
