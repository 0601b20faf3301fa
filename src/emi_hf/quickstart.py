"""`emi-hf quickstart`: the main job on built-in data, end to end, in a few minutes on 2 CPU cores.

1. generate the synthetic audiovisual set (Hume-Vidmimic2 layout, see `emi_hf.data.synthetic`);
2. extract features with the processor and the frozen backbones (pretrained if available locally, else random,
   and it says so), with voice activity and the synthetic transcripts (labelled synthetic; `transcripts.csv`)
   through a text encoder built offline (a word-level tokenizer of the training transcripts and a random BERT: no
   download; `emi_hf.text.build_word_text_encoder`);
3. train the visual, audio and text models, then build the three-way fusion model from them and fit its
   per-emotion weights on validation;
4. print the validation table (per emotion: visual, audio, text, fused), write scatter plots and the checkpoints;
5. predict one clip end to end (raw video in) with the saved fusion checkpoint (random backbones allowed, as in a
   smoke test, and said: `emi-hf predict` would refuse them without --allow-random-backbones);
6. extract the synthetic test clips (laid out as the challenge distributes them: ``test_data/raw/``, no test CSV),
   write ``submission.csv`` with the fusion checkpoint and verify it (`emi_hf.submission`).

Each step is a function of its own (`generate_data`, `extract_features`, `train_models`, `fuse_models`,
`report_validation`, `predict_one_clip`, `write_test_submission`); `run_quickstart` runs them in order and writes
`quickstart_results.json`. The test clips come from their own random stream, so the train and validation clips, and
the validation table, are those of a set generated without them.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

from .modalities import MODALITY_NAMES

UNIMODAL = MODALITY_NAMES
# The text model's peak learning rate here: chosen on this validation set among 3e-4 (the training default) and
# 1e-3, each with attention and mean pooling (validation 0.263 / 0.309 at 3e-4, 0.367 / 0.325 at 1e-3); the README
# gives the table with the default too.
RUN_OPTIONS = {"text": {"lr": 1e-3}}
MODELS = (*UNIMODAL, "fusion")
# Extra metric blocks of the fusion run's results.json, shown as table columns (None when a validation half is
# too small to fit weights on).
FUSION_VARIANTS = (("fused_equal", "validation_equal_weights"), ("fused_crossfit", "validation_crossfit"))


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


@contextmanager
def _training_log_on_stderr():
    """While the models train: the training loop's progress lines ("[emi-hf train] epoch 3/30: ...") on stderr, as
    `emi-hf train` shows them; the logger is left as it was afterwards (run_quickstart may be called from Python)."""
    logger = logging.getLogger("emi_hf.training")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[emi-hf train] %(message)s"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def generate_data(data_dir: Path, num_train: int, num_valid: int, seed: int, num_test: int = 0) -> dict:
    """Step 1: the synthetic set in `data_dir` (challenge layout; kept when already there with these arguments);
    returns its train and validation records."""
    from .data.layout import load_hume_vidmimic2
    from .data.synthetic import generate_synthetic_dataset

    _banner(f"1/6 synthetic data: {num_train} train + {num_valid} validation + {num_test} test clips -> {data_dir}")
    mark = time.time()
    generate_synthetic_dataset(data_dir, num_train=num_train, num_valid=num_valid, num_test=num_test, seed=seed,
                               layout="challenge")  # fmt: skip
    print(f"ready in {time.time() - mark:.1f} s (kept when already generated with these arguments)")
    return load_hume_vidmimic2(data_dir, splits=("train", "validation"))


TEXT_ENCODER_DIR = "text_encoder"  # the quickstart's offline text encoder, beside data/ and features/


def synthetic_text_stage(data_dir: Path, records: dict, encoder_dir: Path):
    """The extraction's text stage for the synthetic set: its transcripts (`data_dir/transcripts.csv`, labelled
    synthetic), voice activity, and a text encoder built offline in `encoder_dir` from the training transcripts (kept
    when already there)."""
    from .data.text_features import TextStage
    from .text import TextEncoder, build_word_text_encoder, read_transcripts

    transcripts = data_dir / "transcripts.csv"
    if not (encoder_dir / "config.json").is_file():
        table = read_transcripts(transcripts)
        build_word_text_encoder([table.lookup(r.path).text for r in records["train"]], encoder_dir)
    return TextStage(encoder=TextEncoder(str(encoder_dir)), transcripts=transcripts)


def extract_features(records: dict, features_dir: Path, face_detector: str, fps: float,
                     text_stage=None) -> list[str]:
    """Step 2: processor + frozen backbones (and the text stage) -> cached features; returns the notes on which
    backbones ran."""
    from .data.extraction import run_extraction
    from .encoders.pretrained import build_audio_base, build_visual_base
    from .models.processing_emi import EmiProcessor

    _banner(f"2/6 feature extraction ({face_detector} faces at {fps:g} fps, AUs, wav2vec2, transcripts) -> "
            f"{features_dir}")
    processor = EmiProcessor(face_detector=face_detector, target_fps=fps)
    # seed=None: random fallbacks come from the generator run_quickstart seeded (single process; figures unchanged)
    visual_base, visual_note = build_visual_base("imagenet", au_names=processor.au_names, allow_random=True, seed=None)
    audio_base, audio_note = build_audio_base("facebook/wav2vec2-base", allow_random=True, seed=None)
    notes = [visual_note, audio_note]
    if text_stage is not None:
        notes.append(f"text encoder: {text_stage.encoder.model_name} (word-level tokenizer of the training "
                     "transcripts + RANDOM BERT weights, built offline; the transcripts are synthetic)")
    print("\n".join(notes))
    report = run_extraction(records, features_dir, processor, visual_base, audio_base, text_stage=text_stage)
    if report.get("failures"):
        print(f"{len(report['failures'])} clip(s) failed extraction; see {features_dir}/failures.rank*.jsonl")
    return notes


def _training_arguments(features_dir: Path, epochs: int, seed: int, batch_size: int, **run):
    from .training import EmiTrainingArguments

    return EmiTrainingArguments(features=str(features_dir), epochs=epochs, seed=seed, report_to="none",
                             batch_size=batch_size, **run)


def train_models(features_dir: Path, runs_dir: Path, epochs: int, seed: int, batch_size: int) -> None:
    """Step 3a: the visual, audio and text models, each saved (best validation epoch) in `runs_dir/<modality>`."""
    from .training import train

    _banner("3/6 training: visual, audio, text, then late fusion")
    for modality in UNIMODAL:
        train(_training_arguments(features_dir, epochs, seed, batch_size, modality=modality,
                                  output_dir=str(runs_dir / modality), **RUN_OPTIONS.get(modality, {})))


def fuse_models(features_dir: Path, runs_dir: Path, epochs: int, seed: int, batch_size: int) -> None:
    """Step 3b: the late fusion of the three models, its per-emotion weights fitted on validation (no training)."""
    from .training import train

    train(_training_arguments(features_dir, epochs, seed, batch_size, modality="fusion",
                              output_dir=str(runs_dir / "fusion"), visual_model=str(runs_dir / "visual"),
                              audio_model=str(runs_dir / "audio"), text_model=str(runs_dir / "text")))


def report_validation(features_dir: Path, runs_dir: Path) -> dict:
    """Step 4: the validation table (per emotion, one column per model and fusion variant) and scatter plots."""
    from .results import format_results_table, read_results
    from .training import evaluate_model, plot_scatter

    _banner("4/6 validation (mean over the six emotions of Pearson's r)")
    table = {}
    for modality in MODELS:
        results, predictions, labels = evaluate_model(runs_dir / modality, features_dir, "validation")
        table[modality] = results
        plot_scatter(predictions, labels, results.get("label_names"), runs_dir / modality / "scatter_validation.png")
    fusion_run = read_results(runs_dir / "fusion")
    for name, key in FUSION_VARIANTS:
        if fusion_run.get(key):
            table[name] = fusion_run[key]
    print(format_results_table(table))
    print("fusion: the checkpoint (weights fitted on this validation set, as in the paper); fused_equal: plain "
          "average; fused_crossfit: weights fitted on one half of the clips, scored on the other")
    single = {m: table[m]["mean_pearson"] for m in UNIMODAL}
    shown = ", ".join(f"{m} {value:.4f}" for m, value in single.items())
    crossfit = table.get("fused_crossfit", {}).get("mean_pearson")
    if crossfit is not None:
        verdict = "higher" if crossfit > max(single.values()) else "NOT higher"
        print(f"cross-fitted fused {crossfit:.4f} is {verdict} than every single modality ({shown})")
    return table


def predict_one_clip(fusion_dir: Path, clip: Path, transcripts: Path | None = None):
    """Step 5: the saved fusion checkpoint, raw video in (its transcript from `transcripts`); returns the clip's
    `ClipPrediction` and the check of its backbones (`emi_hf.provenance.BackboneCheck`: random ones are allowed here,
    and said, this being a smoke run)."""
    import warnings

    from .inference import TextSide, load_for_inference, predict_clips
    from .provenance import BackboneWarning, passed_check

    _banner("5/6 end-to-end prediction with the saved fusion checkpoint")
    mark = time.time()
    with warnings.catch_warnings():  # the notes are printed below instead
        warnings.simplefilter("ignore", BackboneWarning)
        model, processor = load_for_inference(fusion_dir, allow_random_backbones=True)
    check = passed_check(model)
    for note in check.notes:
        print(f"  warning: {note}")
    text_side = TextSide.for_model(model, transcripts=transcripts)
    load_s = time.time() - mark
    prediction = predict_clips(model, processor, [clip], text_side=text_side)[0]
    print(f"{clip}: load {load_s:.2f} s, preprocess {prediction.timing['preprocess_s']:.2f} s, "
          f"model {prediction.timing['compute_s']:.2f} s")
    if prediction.transcript is not None:
        print(f"  transcript (synthetic): {prediction.transcript}")
    for name, value in prediction.intensities.items():
        print(f"  {name:<15} {value:.3f}")
    return prediction, check


def write_test_submission(data_dir: Path, features_dir: Path, fusion_dir: Path, output: Path,
                          text_stage=None) -> dict:
    """Step 6: extract the test clips of `data_dir` (its test_data/raw/ folder) with the processor and backbones the
    train and validation features were made with, write `output` (submission.csv) with the fusion checkpoint, verify
    it; returns the submission report with ``problems`` (empty: valid) and, the synthetic labels being known,
    ``test_mean_pearson``."""
    from .data.extraction import run_extraction
    from .data.layout import load_hume_vidmimic2
    from .models.modeling_emi import EmiAudioModel, EmiVisualModel
    from .models.processing_emi import EmiProcessor
    from .submission import submission_from_features, verify_submission

    records = load_hume_vidmimic2(data_dir, splits=("train", "validation", "test"))
    _banner(f"6/6 submission: extract {len(records['test'])} test clips, write and verify {output}")
    processor = EmiProcessor.from_pretrained(features_dir / "processor")
    visual = EmiVisualModel.from_pretrained(features_dir / "base_visual")
    audio = EmiAudioModel.from_pretrained(features_dir / "base_audio")
    # train / validation clips are kept as they are
    run_extraction(records, features_dir, processor, visual, audio, text_stage=text_stage)
    report = submission_from_features(fusion_dir, features_dir, output, "test", data_dir=data_dir)
    report["problems"] = verify_submission(output, data_dir)
    report["test_mean_pearson"] = _synthetic_test_score(data_dir, output)
    print(f"{output}: {report['num_clips']} clips, {report['num_filled_with_fallback']} filled with the training "
          f"mean; verify-submission: {'valid' if not report['problems'] else report['problems']}")
    if report["test_mean_pearson"] is not None:
        print(f"mean Pearson on the synthetic test labels (hidden from the pipeline): "
              f"{report['test_mean_pearson']:.4f}")
    return report


def _synthetic_test_score(data_dir: Path, submission: Path) -> float | None:
    """Mean Pearson of a submission against the synthetic test labels (kept in synthetic_metadata.json)."""
    import csv

    import numpy as np

    from .data.synthetic.dataset import METADATA_FILE
    from .metrics import mean_pearson

    truth = {c["clip_id"]: c["labels"] for c in json.loads((data_dir / METADATA_FILE).read_text())["clips"]
             if c["split"] == "test"}  # fmt: skip
    with open(submission, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    if len(rows) < 2:
        return None
    predictions = np.array([[float(v) for v in row[1:]] for row in rows])
    return float(mean_pearson(predictions, np.array([truth[row[0]] for row in rows]))["mean_pearson"])


def run_quickstart(
    output_dir: str | Path = "quickstart",
    num_train: int = 160,
    num_valid: int = 80,
    epochs: int = 30,
    seed: int = 0,
    face_detector: str = "mediapipe",
    fps: float = 10.0,
    num_test: int = 20,
) -> dict:
    """The six steps in `output_dir` (data/, features/, runs/, submission.csv); returns the summary it writes to
    `quickstart_results.json` (validation table, backbones, checkpoints, the prediction, the submission, timings)."""
    import torch

    started = time.time()
    torch.manual_seed(seed)
    output_dir = Path(output_dir)
    data_dir, features_dir, runs_dir = output_dir / "data", output_dir / "features", output_dir / "runs"
    records = generate_data(data_dir, num_train, num_valid, seed, num_test)
    timings = {"generate_s": round(time.time() - started, 1)}
    mark = time.time()
    text_stage = synthetic_text_stage(data_dir, records, output_dir / TEXT_ENCODER_DIR)
    backbones = extract_features(records, features_dir, face_detector, fps, text_stage)
    timings["extract_s"] = round(time.time() - mark, 1)
    mark = time.time()
    batch_size = min(32, num_train)
    with _training_log_on_stderr():
        train_models(features_dir, runs_dir, epochs, seed, batch_size)
        fuse_models(features_dir, runs_dir, epochs, seed, batch_size)
    timings["train_s"] = round(time.time() - mark, 1)
    table = report_validation(features_dir, runs_dir)
    clip = records["validation"][0].path
    prediction, backbone_check = predict_one_clip(runs_dir / "fusion", clip, data_dir / "transcripts.csv")
    submission = None
    if num_test:
        mark = time.time()
        submission = write_test_submission(data_dir, features_dir, runs_dir / "fusion", output_dir / "submission.csv",
                                           text_stage)
        timings["submission_s"] = round(time.time() - mark, 1)
    timings["total_s"] = round(time.time() - started, 1)
    summary = {
        "validation": {m: {"mean_pearson": table[m]["mean_pearson"], "per_emotion": table[m]["per_emotion"]}
                       for m in table},
        "backbones": backbones,
        # fused_equal / fused_crossfit are scores of the fusion checkpoint with other weights, not folders
        "checkpoints": {m: str(runs_dir / m) for m in table if (runs_dir / m).is_dir()},
        "prediction": {"clip": str(clip), "intensities": prediction.intensities, "transcript": prediction.transcript,
                       "backbone_warnings": backbone_check.notes},
        "submission": None if submission is None else {
            k: submission[k] for k in ("submission", "num_clips", "num_filled_with_fallback", "problems",
                                       "test_mean_pearson")},  # fmt: skip
        "timings": timings,
    }
    (output_dir / "quickstart_results.json").write_text(json.dumps(summary, indent=2))
    allow = "EMI_HF_ALLOW_RANDOM_BACKBONES=1 " if backbone_check.allowed_random else ""  # the demo refuses random ones otherwise
    print(f"\nDone in {timings['total_s']:.0f} s. Checkpoints in {runs_dir}; summary in "
          f"{output_dir / 'quickstart_results.json'}; demo: {allow}EMI_HF_MODEL={runs_dir / 'fusion'} python "
          "demo/app.py")
    return summary
