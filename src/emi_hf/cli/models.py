"""The commands that use a trained model: `train`, `cv` (their own argument parsers), `evaluate`, `predict`, `submit`,
`verify-submission`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import ExitCode
from .common import _add_allow_random_arg


def cmd_train(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:  # the help needs only the arguments (no torch, accelerate, models)
        from ..training.arguments import build_parser

        build_parser().parse_args(argv)
    from ..training import main as training_main

    return training_main(argv) or 0


def cmd_cv(argv: list[str]) -> int:
    from ..training.cv import main as cv_main

    return cv_main(argv)


def _add_cv_parser(sub) -> None:
    sub.add_parser("cv", help="seeded k-fold cross-validation over train + validation (see `emi-hf cv --help`)",
                   add_help=False)


def cmd_evaluate(args) -> int:
    from ..models.configuration_emi import EMOTION_NAMES
    from ..results import format_confidence_table, format_results_table, write_results
    from ..training import evaluate_model, plot_scatter

    results, predictions, labels = evaluate_model(args.model, args.features, args.split,
                                                  num_resamples=args.bootstrap_resamples,
                                                  bootstrap_seed=args.bootstrap_seed)
    print(format_results_table(results))
    if results.get("confidence_intervals"):
        print(format_confidence_table(results["confidence_intervals"]))
    if results.get("split_trained_on"):
        print(f"[emi-hf evaluate] warning: {args.model} was trained on {args.split!r} (--train-splits): these are "
              "training-set scores, not held-out ones")
    output = Path(args.output or Path(args.model) / f"evaluation_{args.split}")
    output.mkdir(parents=True, exist_ok=True)
    results_path = write_results(output, results)
    plot_scatter(predictions, labels, results.get("label_names", list(EMOTION_NAMES)), output / "scatter.png")
    print(f"[emi-hf evaluate] wrote {results_path} and {output / 'scatter.png'}")
    return 0


def _add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="per-emotion Pearson table, bootstrap confidence intervals, scatter plot")
    p.add_argument("--model", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--split", default="validation")
    p.add_argument("--output")
    p.add_argument("--bootstrap-resamples", type=int, default=1000,
                   help="bootstrap resamples of the clips for the 95%% confidence intervals (default 1000; 0: none)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resamples (default 0)")
    p.set_defaults(func=cmd_evaluate)


def cmd_predict(args) -> int:
    from ..inference import TextSide, load_for_inference, predict_clips

    model, processor = load_for_inference(args.model, processor=args.processor,
                                          allow_random_backbones=args.allow_random_backbones)
    text_side = TextSide.for_model(model, transcripts=args.transcripts, asr_model=args.asr_model,
                                   asr_backend=args.asr_backend, language=args.language)
    predictions = predict_clips(model, processor, args.videos, text_side=text_side)
    if args.output:
        from ..submission import write_prediction_table

        print(f"[emi-hf predict] wrote {write_prediction_table(args.output, predictions)}")
        return 0
    if args.json:
        print(json.dumps([prediction.to_dict() for prediction in predictions], indent=2))
        return 0
    for prediction in predictions:
        looked = [] if prediction.face_fraction is None else [f"face in {100 * prediction.face_fraction:.0f}% of frames"]
        looked += [] if prediction.audio_present is None else [f"audio: {'yes' if prediction.audio_present else 'no'}"]
        looked.append(f"{prediction.timing['compute_s']:.2f} s")
        print(f"{prediction.path}  ({', '.join(looked)})")
        if prediction.transcript is not None:
            print(f"  transcript: {prediction.transcript or '(none: no speech)'}")
        for name, value in prediction.intensities.items():
            bar = "#" * int(round(20 * value)) if value == value else "n/a"
            print(f"  {name:<15} {value:6.3f}  {bar}")
    return 0


def _add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="predict the six intensities of video clips")
    p.add_argument("videos", nargs="+")
    p.add_argument("--model", required=True, help="a model folder or Hub id")
    p.add_argument("--processor", help="processor folder (default: the model's own)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--output", help="write the table (the submission's columns) to a .csv or .json file")
    p.add_argument("--transcripts", help="a model with a text part: the clips' transcripts (Filename,text CSV, JSON "
                                         "or JSONL) instead of transcribing them")
    p.add_argument("--asr-model", help="a model with a text part: transcribe with this Whisper id or folder "
                                       "(default: the model's own ASR settings)")
    p.add_argument("--asr-backend", choices=("transformers", "faster-whisper"))
    p.add_argument("--language", help="transcription language (default: the model's, else detected)")
    _add_allow_random_arg(p)
    p.set_defaults(func=cmd_predict)


def cmd_submit(args) -> int:
    from ..data.failures import reasons_line
    from ..submission import check_submission, report_path, submission_from_features

    report = submission_from_features(args.model, args.features, args.output, args.split, data_dir=args.data_dir,
                                      test_dir=args.test_dir, device=args.device, allow_fill=args.allow_fill)
    print(f"[emi-hf submit] wrote {args.output}: {report['num_clips']} clips, {report['num_predicted']} predicted, "
          f"{report['num_filled_with_fallback']} filled with the training mean (listed in "
          f"{report_path(args.output)})")  # fmt: skip
    if report["num_filled_with_fallback"]:
        from collections import Counter

        reasons = Counter(entry["reason"] for entry in report["filled"])
        print(f"[emi-hf submit] warning: --allow-fill: {report['num_filled_with_fallback']} of {report['num_clips']} "
              f"rows hold the {report['fallback_source']}, not a prediction ({reasons_line(dict(reasons))})",
              file=sys.stderr)
    check = check_submission(args.output, args.data_dir, test_dir=args.test_dir)  # without --data-dir: no id list
    for line in check.problems:
        print(f"[emi-hf submit] {line}", file=sys.stderr)
    for line in check.warnings:
        print(f"[emi-hf submit] warning: {line}", file=sys.stderr)
    return ExitCode.INVALID if check.problems else ExitCode.OK


def _add_submit_parser(sub) -> None:
    p = sub.add_parser("submit", help="write the challenge submission.csv from a model and cached features",
                       epilog="exit codes: 0 written and valid; 2 not written (e.g. clips without a prediction and no "
                              "--allow-fill); 5 written but invalid (verify-submission's errors, e.g. every row the "
                              "same)")
    p.add_argument("--model", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--output", default="submission.csv")
    p.add_argument("--data-dir", help="the data folder: the test ids every row must cover (and it is verified); "
                                      "not needed for the fallback row when the model's run recorded its training mean")
    p.add_argument("--test-dir", help="the test videos' folder when there is no test_split.csv")
    p.add_argument("--allow-fill", action="store_true",
                   help="write the training-set label mean in the rows of clips without a prediction (failed "
                        "extraction, no usable input) instead of refusing; said on stderr and in the report")
    p.add_argument("--device", help="cpu | cuda | cuda:N")
    p.set_defaults(func=cmd_submit)


def cmd_verify_submission(args) -> int:
    from ..submission import check_submission

    check = check_submission(args.file, args.data_dir, test_dir=args.test_dir)
    for problem in check.problems:
        print(problem)
    for warning in check.warnings:
        print(f"warning: {warning}")
    counts = f"{len(check.problems)} problem(s)" if check.problems else "valid"
    if check.warnings:
        counts += f", {len(check.warnings)} warning(s)"
    print(f"[emi-hf verify-submission] {args.file}: {counts}")
    return ExitCode.INVALID if check.problems else ExitCode.OK


def _add_verify_submission_parser(sub) -> None:
    p = sub.add_parser("verify-submission", help="check a submission file (header, ids, ranges, NaN, constant rows)",
                       epilog="errors (exit code 5): header, field count, non-numbers, NaN, values outside [0, 1], "
                              "ids missing / extra / duplicated / malformed, no rows, every row the same. Warnings "
                              "(exit code 0): rows repeating another row's values, an emotion constant over the rows.")
    p.add_argument("file")
    p.add_argument("--data-dir", required=True, help="the data folder whose test ids the file must hold")
    p.add_argument("--test-dir", help="the test videos' folder when there is no test_split.csv")
    p.set_defaults(func=cmd_verify_submission)
