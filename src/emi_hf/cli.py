"""`emi-hf` command line: extract, train, evaluate, predict, push, pull, synth, quickstart."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .configuration_emi import EMOTION_NAMES


def _fail(message: str) -> None:
    print(f"emi-hf: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _add_processor_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("preprocessing")
    group.add_argument("--processor", help="a saved EmiProcessor folder (overrides the options below)")
    group.add_argument("--face-detector", default="mtcnn", help="mtcnn (default, the paper's), mediapipe, or none")
    group.add_argument("--au-backend", default="mediapipe", help="mediapipe (default), openface, ...")
    group.add_argument("--fps", type=float, default=30.0, help="target frame rate (default 30)")


def _make_processor(args):
    from .processing_emi import EmiProcessor

    if args.processor:
        return EmiProcessor.from_pretrained(args.processor)
    detector = None if str(args.face_detector).lower() == "none" else args.face_detector
    return EmiProcessor(face_detector=detector, au_backend=args.au_backend, target_fps=args.fps)


def cmd_extract(args) -> int:
    from .data.extraction import run_extraction
    from .data.layout import load_generic, load_hume_vidmimic2
    from .devices import default_device
    from .pretrained import build_audio_base, build_visual_base

    if args.labels_csv:
        records = load_generic(args.data_dir, args.labels_csv)
    else:
        splits = args.splits or ["train", "validation"] + (
            ["test"] if (Path(args.data_dir) / "test_split.csv").exists() else []
        )
        records = load_hume_vidmimic2(args.data_dir, splits=tuple(splits))
    processor = _make_processor(args)
    visual, visual_note = build_visual_base(args.visual_backbone, au_names=processor.au_names,
                                            allow_random=args.allow_random_backbones)
    audio, audio_note = build_audio_base(args.speech_encoder, allow_random=args.allow_random_backbones)
    device = default_device(args.device)
    for model in (visual, audio):
        model.config.backbone_precision = args.backbone_precision
        model.to(device)
    print(f"[emi-hf extract] {visual_note}\n[emi-hf extract] {audio_note}\n"
          f"[emi-hf extract] backbones on {device}, {args.backbone_precision}")
    report = run_extraction(records, args.output, processor, visual, audio, progress=not args.no_progress)
    if report:
        print(json.dumps(report["splits"], indent=2))
        if report["failures"]:
            print(f"[emi-hf extract] {len(report['failures'])} clip(s) failed: see {args.output}/failures.rank*.jsonl")
    return 0


def cmd_train(argv: list[str]) -> int:
    from .training import main as training_main

    return training_main(argv) or 0


def cmd_evaluate(args) -> int:
    from .results import format_results_table, write_results
    from .training import evaluate_model, plot_scatter

    results, predictions, labels = evaluate_model(args.model, args.features, args.split)
    print(format_results_table(results))
    output = Path(args.output or Path(args.model) / f"evaluation_{args.split}")
    output.mkdir(parents=True, exist_ok=True)
    results_path = write_results(output, results)
    plot_scatter(predictions, labels, results.get("label_names", list(EMOTION_NAMES)), output / "scatter.png")
    print(f"[emi-hf evaluate] wrote {results_path} and {output / 'scatter.png'}")
    return 0


def cmd_predict(args) -> int:
    from .inference import load_for_inference, predict_clips

    model, processor = load_for_inference(args.model, processor=args.processor)
    predictions = predict_clips(model, processor, args.videos)
    if args.json:
        print(json.dumps([prediction.to_dict() for prediction in predictions], indent=2))
        return 0
    for prediction in predictions:
        print(f"{prediction.path}  (face in {100 * prediction.face_fraction:.0f}% of frames, "
              f"audio: {'yes' if prediction.audio_present else 'no'}, {prediction.timing['compute_s']:.2f} s)")
        for name, value in prediction.intensities.items():
            bar = "#" * int(round(20 * value)) if value == value else "n/a"
            print(f"  {name:<15} {value:6.3f}  {bar}")
    return 0


def cmd_push(args) -> int:
    from .hub import push_model

    url = push_model(args.folder, args.repo_id, token=args.token, private=args.private, revision=args.revision)
    print(f"[emi-hf push] {url}")
    return 0


def cmd_pull(args) -> int:
    from .hub import pull_model

    print(pull_model(args.repo_id, revision=args.revision, local_dir=args.local_dir, token=args.token))
    return 0


def cmd_synth(args) -> int:
    from .data.synthetic import generate_synthetic_dataset

    path = generate_synthetic_dataset(
        args.output, num_train=args.num_train, num_valid=args.num_valid, num_test=args.num_test, seed=args.seed
    )
    print(f"[emi-hf synth] wrote {path}")
    return 0


def cmd_quickstart(args) -> int:
    from .quickstart import run_quickstart

    run_quickstart(args.output_dir, num_train=args.num_train, num_valid=args.num_valid, epochs=args.epochs,
                   seed=args.seed, face_detector=args.face_detector)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emi-hf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="cached, resumable, sharded feature extraction")
    p.add_argument("--data-dir", required=True, help="a Hume-Vidmimic2 folder (videos + *_split.csv)")
    p.add_argument("--labels-csv", help="generic layout: one CSV of labels for the videos in --data-dir")
    p.add_argument("--splits", nargs="+", help="default: train, validation, and test when test_split.csv exists")
    p.add_argument("--output", required=True)
    p.add_argument("--visual-backbone", default="imagenet", help="imagenet | /path/resnet18.pth | random")
    p.add_argument("--speech-encoder", default="facebook/wav2vec2-base", help="Hub id | folder | random")
    p.add_argument("--allow-random-backbones", action="store_true",
                   help="fall back to random backbones when pretrained weights are unavailable (smoke tests only)")
    p.add_argument("--backbone-precision", default="float32", choices=("float32", "bfloat16"),
                   help="bfloat16: about 2x faster backbones on CPUs with AVX512-BF16/AMX and recent GPUs; "
                        "features differ from float32 ones by 0.5-1.5%% relative (recorded with the features)")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda when available, else cpu)")
    p.add_argument("--no-progress", action="store_true")
    _add_processor_args(p)
    p.set_defaults(func=cmd_extract)

    sub.add_parser("train", help="train a model on cached features (see `emi-hf train --help`)", add_help=False)

    p = sub.add_parser("evaluate", help="per-emotion Pearson table and scatter plot")
    p.add_argument("--model", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--split", default="validation")
    p.add_argument("--output")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict the six intensities of video clips")
    p.add_argument("videos", nargs="+")
    p.add_argument("--model", required=True, help="a model folder or Hub id")
    p.add_argument("--processor", help="processor folder (default: the model's own)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("push", help="publish a trained model folder with a model card")
    p.add_argument("folder")
    p.add_argument("--repo-id", required=True)
    p.add_argument("--token")
    p.add_argument("--revision")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("pull", help="download a model by id and revision")
    p.add_argument("repo_id")
    p.add_argument("--revision")
    p.add_argument("--local-dir")
    p.add_argument("--token")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("synth", help="generate the synthetic audiovisual set (Hume-Vidmimic2 layout)")
    p.add_argument("output")
    p.add_argument("--num-train", type=int, default=160)
    p.add_argument("--num-valid", type=int, default=80)
    p.add_argument("--num-test", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("quickstart", help="the main job: synthetic data -> extract -> train x3 -> evaluate -> predict")
    p.add_argument("--output-dir", default="quickstart")
    p.add_argument("--num-train", type=int, default=160)
    p.add_argument("--num-valid", type=int, default=80)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--face-detector", default="mediapipe")
    p.set_defaults(func=cmd_quickstart)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .media.logs import quiet_third_party_logs

    quiet_third_party_logs()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return cmd_train(argv[1:])
    args = build_parser().parse_args(argv)
    from .hub import EmiHubError

    try:
        return args.func(args)
    except (EmiHubError, FileNotFoundError, ValueError, OSError) as error:
        _fail(str(error))
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
