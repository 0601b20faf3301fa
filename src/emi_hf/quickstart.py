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
    table = {}
    for modality in ("visual", "audio", "fusion"):
        results, predictions, labels = evaluate_model(runs_dir / modality, features_dir, "validation")
        table[modality] = results
        plot_scatter(predictions, labels, results.get("label_names"), runs_dir / modality / "scatter_validation.png")
    fusion_run = json.loads((runs_dir / "fusion" / "results.json").read_text())
    for name, key in (("fused_equal", "validation_equal_weights"), ("fused_crossfit", "validation_crossfit")):
        if fusion_run.get(key):  # None when a validation half is too small to fit weights on
            table[name] = fusion_run[key]
    print(format_results_table(table))
    print("fusion: the checkpoint (weights fitted on this validation set, as in the paper); fused_equal: plain "
          "average; fused_crossfit: weights fitted on one half of the clips, scored on the other")
    fused = [table[m]["mean_pearson"] for m in ("fusion", "fused_equal", "fused_crossfit") if m in table]
    visual, audio = table["visual"]["mean_pearson"], table["audio"]["mean_pearson"]
    verdict = "higher" if min(fused) > max(visual, audio) else "NOT higher"
    print(f"fused {' / '.join(f'{x:.4f}' for x in fused)} is {verdict} than visual {visual:.4f} and audio {audio:.4f}")

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
