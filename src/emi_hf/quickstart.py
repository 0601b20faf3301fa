"""`emi-hf quickstart`: the main job on built-in data, end to end, in a few minutes on 2 CPU cores.

1. generate the synthetic audiovisual set (Hume-Vidmimic2 layout, see `emi_hf.data.synthetic`);
2. extract features with the processor and the frozen backbones (pretrained if available locally, else random,
   and it says so);
3. train the visual and the audio model, then build the fusion model from them and fit its weights on validation;
4. print the validation table (per emotion: visual, audio, fused), write scatter plots and the three checkpoints;
5. predict one clip end to end (raw video in) with the saved fusion checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def fusion_reference_scores(visual, audio, labels, label_names) -> dict[str, dict]:
    """
    Fused scores that do not reuse the validation labels to set the weights they are scored with:
    `fused_equal` (the paper's plain average) and `fused_crossfit` (per-emotion weights fitted on one half of the
    clips and applied to the other, both ways). Inputs `[clips, 6]` predictions (NaN = modality missing).
    """
    import numpy as np
    import torch

    from .metrics import mean_pearson
    from .modeling_emi import EmiFusionModel, fuse_intensities

    visual, audio, labels = (np.asarray(x, np.float64) for x in (visual, audio, labels))

    def fuse(rows, weights):
        v, a = torch.as_tensor(visual[rows]), torch.as_tensor(audio[rows])
        return fuse_intensities(v, a, ~v.isnan().any(1), ~a.isnan().any(1), torch.as_tensor(weights)).numpy()

    rows = np.arange(len(labels))
    equal = fuse(rows, [0.5] * labels.shape[1])
    crossfit = np.full_like(equal, np.nan)
    folds = (rows % 2 == 0, rows % 2 == 1)
    for fit, apply in (folds, folds[::-1]):
        weights = EmiFusionModel.optimal_fusion_weights(visual[fit], audio[fit], labels[fit])
        crossfit[apply] = fuse(rows[apply], weights)
    scores = {}
    for name, predictions in (("fused_equal", equal), ("fused_crossfit", crossfit)):
        keep = ~np.isnan(predictions).any(1)
        scores[name] = mean_pearson(predictions[keep], labels[keep], label_names)
    return scores


def run_quickstart(
    output_dir: str | Path = "quickstart",
    num_train: int = 160,
    num_valid: int = 80,
    epochs: int = 30,
    seed: int = 0,
    face_detector: str = "mediapipe",
    fps: float = 10.0,
) -> dict:
    import torch

    from .cli import format_results_table
    from .data.features import run_extraction
    from .data.layout import load_hume_vidmimic2
    from .data.synthetic import generate_synthetic_dataset
    from .inference import load_for_inference, predict_clips
    from .pretrained import build_audio_base, build_visual_base
    from .processing_emi import EmiProcessor
    from .training import evaluate_model, main as train_main, plot_scatter

    started = time.time()
    torch.manual_seed(seed)
    output_dir = Path(output_dir)
    data_dir, features_dir, runs_dir = output_dir / "data", output_dir / "features", output_dir / "runs"

    _banner(f"1/5 synthetic data: {num_train} train + {num_valid} validation clips -> {data_dir}")
    if not (data_dir / "valid_split.csv").exists():
        generate_synthetic_dataset(data_dir, num_train=num_train, num_valid=num_valid, seed=seed)
    else:
        print("already generated (delete the folder to regenerate)")
    records = load_hume_vidmimic2(data_dir, splits=("train", "validation"))
    timings = {"generate_s": round(time.time() - started, 1)}

    _banner(f"2/5 feature extraction ({face_detector} faces at {fps:g} fps, AUs, wav2vec2) -> {features_dir}")
    processor = EmiProcessor(face_detector=face_detector, target_fps=fps)
    visual_base, visual_note = build_visual_base("imagenet", au_names=processor.au_names, allow_random=True)
    audio_base, audio_note = build_audio_base("facebook/wav2vec2-base", allow_random=True)
    print(f"{visual_note}\n{audio_note}")
    mark = time.time()
    report = run_extraction(records, features_dir, processor, visual_base, audio_base)
    timings["extract_s"] = round(time.time() - mark, 1)
    if report.get("failures"):
        print(f"{len(report['failures'])} clip(s) failed extraction; see {features_dir}/failures.rank*.jsonl")

    _banner("3/5 training: visual, audio, then late fusion")
    common = ["--features", str(features_dir), "--epochs", str(epochs), "--seed", str(seed), "--report-to", "none",
              "--batch-size", str(min(32, num_train))]
    mark = time.time()
    for modality in ("visual", "audio"):
        train_main([*common, "--modality", modality, "--output-dir", str(runs_dir / modality)])
    train_main([*common, "--modality", "fusion", "--output-dir", str(runs_dir / "fusion"),
                "--visual-model", str(runs_dir / "visual"), "--audio-model", str(runs_dir / "audio")])
    timings["train_s"] = round(time.time() - mark, 1)

    _banner("4/5 validation (mean over the six emotions of Pearson's r)")
    table, predictions = {}, {}
    for modality in ("visual", "audio", "fusion"):
        results, predictions[modality], labels = evaluate_model(runs_dir / modality, features_dir, "validation")
        table[modality] = results
        plot_scatter(predictions[modality], labels, results.get("label_names"),
                     runs_dir / modality / "scatter_validation.png")
    table.update(fusion_reference_scores(predictions["visual"], predictions["audio"], labels,
                                         table["fusion"]["label_names"]))
    print(format_results_table(table))
    print("fusion: the checkpoint (weights fitted on this validation set, as in the paper); fused_equal: plain "
          "average; fused_crossfit: weights fitted on one half of the clips, scored on the other")
    fused, honest, visual, audio = (
        table[m]["mean_pearson"] for m in ("fusion", "fused_crossfit", "visual", "audio")
    )
    verdict = "higher" if min(fused, honest) > max(visual, audio) else "NOT higher"
    print(f"fused {fused:.4f} (cross-fitted {honest:.4f}) is {verdict} than visual {visual:.4f} and audio {audio:.4f}")

    _banner("5/5 end-to-end prediction with the saved fusion checkpoint")
    clip = records["validation"][0].path
    mark = time.time()
    model, loaded_processor = load_for_inference(runs_dir / "fusion")
    load_s = time.time() - mark
    prediction = predict_clips(model, loaded_processor, [clip])[0]
    print(f"{clip}: load {load_s:.2f} s, preprocess {prediction['timing']['preprocess_s']:.2f} s, "
          f"model {prediction['timing']['compute_s']:.2f} s")
    for name, value in prediction["intensities"].items():
        print(f"  {name:<15} {value:.3f}")

    timings["total_s"] = round(time.time() - started, 1)
    summary = {
        "validation": {m: {"mean_pearson": table[m]["mean_pearson"], "per_emotion": table[m]["per_emotion"]}
                       for m in table},
        "backbones": [visual_note, audio_note],
        "checkpoints": {m: str(runs_dir / m) for m in table},
        "prediction": {"clip": str(clip), "intensities": prediction["intensities"]},
        "timings": timings,
    }
    (output_dir / "quickstart_results.json").write_text(json.dumps(summary, indent=2))
    print(f"\nDone in {timings['total_s']:.0f} s. Checkpoints in {runs_dir}; summary in "
          f"{output_dir / 'quickstart_results.json'}; demo: EMI_HF_MODEL={runs_dir / 'fusion'} python demo/app.py")
    return summary
