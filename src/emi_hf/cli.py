"""`emi-hf` command line: extract, import-features, train, cv, evaluate, submit, verify-submission, predict, stream,
transcribe, push, pull, synth, quickstart, cache (thin: parse, call, render).

Errors (every command, `emi_hf.errors`): a known error (bad input, option, data folder, missing file, Hub) is one line
``emi-hf: error: ...`` and exit code 2; anything else keeps its traceback (exit code 1). The exit codes are listed in
``emi-hf --help``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from pathlib import Path

from .configuration_emi import EMOTION_NAMES
from .errors import ExitCode, exit_code_table, extraction_exit_code, is_known_error, loading


def _fail(error: BaseException) -> None:
    """A known error: one line on stderr (its traceback too with EMI_HF_TRACEBACK=1), exit code 2."""
    if os.environ.get("EMI_HF_TRACEBACK", "").lower() not in ("", "0", "false", "no"):
        traceback.print_exception(error)
    print(f"emi-hf: error: {error}", file=sys.stderr)
    raise SystemExit(ExitCode.USAGE) from None


def _add_processor_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("preprocessing")
    group.add_argument("--processor", help="a saved EmiProcessor folder (overrides the options below)")
    group.add_argument("--face-detector", default="mtcnn", help="mtcnn (default, the paper's), mediapipe, or none")
    group.add_argument("--au-backend", default="mediapipe",
                       help="mediapipe (default, face-mesh geometry), blendshapes (MediaPipe's trained model), openface, ...")
    group.add_argument("--mediapipe-backend", default="auto", choices=("auto", "solutions", "tasks"),
                       help="MediaPipe graphs: the legacy ones where installed (auto), or the Tasks API")
    group.add_argument("--face-landmarker-model", help="MediaPipe's face_landmarker.task for the Tasks API (default: "
                                                       "$EMI_HF_FACE_LANDMARKER, the cache, or one download)")
    group.add_argument("--fps", "--face-fps", dest="fps", type=float, default=30.0,
                       help="face frames per second, sampled evenly in time (default 30; e.g. 5 as the ABAW8 winner)")
    group.add_argument("--face-alignment", default="arcface", choices=("arcface", "ffhq"),
                       help="arcface (default: 5 points onto the ArcFace template) or ffhq (the FFHQ quad from eyes "
                            "and mouth, a looser crop); the crop size is the face backbone's input size")


def _make_processor(args):
    from .processing_emi import EmiProcessor

    if args.face_landmarker_model:  # also for --processor and the worker processes of a sharded extraction
        import os

        os.environ["EMI_HF_FACE_LANDMARKER"] = args.face_landmarker_model
    if args.processor:
        with loading(args.processor, "processor"):
            return EmiProcessor.from_pretrained(args.processor)
    detector = None if str(args.face_detector).lower() == "none" else args.face_detector
    return EmiProcessor(face_detector=detector, au_backend=args.au_backend, target_fps=args.fps,
                        face_alignment=args.face_alignment,
                        mediapipe_backend=args.mediapipe_backend, face_landmarker_model=args.face_landmarker_model)


def cmd_extract(args) -> int:
    from .data.extraction import run_extraction
    from .data.layout import load_generic, load_hume_vidmimic2
    from .data.sharding import process_device
    from .devices import default_device
    from .encoder_setup import processor_for_face_backbone
    from .pretrained import build_audio_base, build_visual_base

    if args.labels_csv:
        records = load_generic(args.data_dir, args.labels_csv)
    else:
        records = load_hume_vidmimic2(args.data_dir, splits=tuple(args.splits) if args.splits else None,
                                      test_dir=args.test_dir)  # default: train, validation, test when there is one
    processor = _make_processor(args)
    visual, visual_note = build_visual_base(args.visual_backbone, au_names=processor.au_names,
                                            allow_random=args.allow_random_backbones, visual_weights=args.visual_weights)
    processor = processor_for_face_backbone(processor, visual.config, fixed=bool(args.processor))
    audio, audio_note = build_audio_base(args.speech_encoder, allow_random=args.allow_random_backbones,
                                         speech_layers=args.speech_layers, max_audio_s=args.max_audio_s,
                                         cache_dtype=args.audio_cache_dtype)
    device = process_device(default_device(args.device))  # one GPU per process on a multi-GPU machine
    for model in (visual, audio):
        model.config.backbone_precision = args.backbone_precision
        model.to(device)
    print(f"[emi-hf extract] {visual_note}\n[emi-hf extract] {audio_note}\n"
          f"[emi-hf extract] backbones on {device}, {args.backbone_precision}")
    report = run_extraction(records, args.output, processor, visual, audio, progress=not args.no_progress,
                            face_source=args.face_source, face_image_fps=args.face_image_fps,
                            threads=args.threads, timeout_s=args.peer_timeout, text_stage=_text_stage(args, device))
    if not report:  # another process of a sharded run: the main process reports (and its exit code counts)
        return ExitCode.OK
    print(json.dumps(report["splits"], indent=2))
    return _failures_summary("extract", report, f"{args.output}/failures.rank*.jsonl")


def _failures_summary(command: str, report: dict, where: str) -> int:
    """The exit code of an extraction / import report, and on stderr how many clips failed, per reason."""
    from .data.failures import reason_counts

    code = extraction_exit_code(report["splits"])
    failed = sum(counts["requested"] - counts["extracted"] for counts in report["splits"].values())
    if code != ExitCode.OK:
        requested = sum(counts["requested"] for counts in report["splits"].values())
        reasons = report.get("failure_reasons") or reason_counts(report["failures"])
        lines = [f"[emi-hf {command}] {failed} of {requested} clip(s) failed "
                 f"({'none' if code == ExitCode.ALL_FAILED else 'the others'} extracted; exit code {int(code)}); "
                 f"by reason:"]
        lines += [f"  {count:>6}  {reason}" for reason, count in reasons.items()]
        lines.append(f"[emi-hf {command}] each clip and its error: {where}")
        print("\n".join(lines), file=sys.stderr)
    return code


def _text_stage(args, device):
    """The extraction's text stage from the text options (None when none is given)."""
    from .data.text_features import TextStage

    stage = TextStage.from_options(args.text_encoder, args.asr_model, args.asr_backend, args.transcripts,
                                   args.language, args.vad, args.mask_non_speech_audio, str(device),
                                   text_pooling=args.text_pooling, max_text_tokens=args.text_max_tokens)
    if stage is not None:
        print(f"[emi-hf extract] text: encoder {args.text_encoder or 'none'}, transcripts "
              f"{args.transcripts or 'none'}, ASR {args.asr_model or 'none'}, voice activity "
              f"{'on' if args.vad else 'off'}{', non-speech audio frames masked' if args.mask_non_speech_audio else ''}")
    return stage


def cmd_train(argv: list[str]) -> int:
    from .training import main as training_main

    return training_main(argv) or 0


def cmd_cv(argv: list[str]) -> int:
    from .training.cv import main as cv_main

    return cv_main(argv)


def _add_cv_parser(sub) -> None:
    sub.add_parser("cv", help="seeded k-fold cross-validation over train + validation (see `emi-hf cv --help`)",
                   add_help=False)


def cmd_evaluate(args) -> int:
    from .results import format_confidence_table, format_results_table, write_results
    from .training import evaluate_model, plot_scatter

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
    from .inference import TextSide, load_for_inference, predict_clips

    model, processor = load_for_inference(args.model, processor=args.processor,
                                          allow_random_backbones=args.allow_random_backbones)
    text_side = TextSide.for_model(model, transcripts=args.transcripts, asr_model=args.asr_model,
                                   asr_backend=args.asr_backend, language=args.language)
    predictions = predict_clips(model, processor, args.videos, text_side=text_side)
    if args.output:
        from .submission import write_prediction_table

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
        args.output, num_train=args.num_train, num_valid=args.num_valid, num_test=args.num_test, seed=args.seed,
        layout=args.layout,
    )
    print(f"[emi-hf synth] wrote {path}")
    return 0


def cmd_quickstart(args) -> int:
    from .quickstart import run_quickstart

    run_quickstart(args.output_dir, num_train=args.num_train, num_valid=args.num_valid, epochs=args.epochs,
                   seed=args.seed, face_detector=args.face_detector, num_test=args.num_test)
    return 0


def cmd_stream(args) -> int:
    from .inference import load_for_inference
    from .streaming import EmiStreamer, camera_events, file_events, run_stream

    model, processor = load_for_inference(args.model, processor=args.processor,
                                          allow_random_backbones=args.allow_random_backbones)
    events = file_events(args.video) if args.video else camera_events(args.camera)
    streamer = EmiStreamer(model, processor, window_s=args.window, hop_s=args.hop)
    for update in run_stream(streamer, events, realtime=args.realtime, live=args.camera is not None):
        print(json.dumps(update.to_dict()) if args.json else update.line(), flush=True)
    return 0


def _add_stream_parser(sub) -> None:
    p = sub.add_parser("stream", help="live estimation from a video file or a camera, one line per hop")
    p.add_argument("--model", required=True, help="a model folder or Hub id")
    p.add_argument("--processor", help="processor folder (default: the model's own)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="a video file played through the streamer")
    source.add_argument("--camera", type=int, help="a local camera index (OpenCV; video only, no microphone)")
    p.add_argument("--realtime", action="store_true",
                   help="with --video: pace the file at real time (frames are dropped when compute falls behind)")
    p.add_argument("--window", type=float, default=4.0, help="seconds each update covers (default 4)")
    p.add_argument("--hop", type=float, default=0.5, help="seconds between updates (default 0.5)")
    p.add_argument("--json", action="store_true", help="one JSON object per update")
    _add_allow_random_arg(p)
    p.set_defaults(func=cmd_stream)


def _add_allow_random_arg(p) -> None:
    p.add_argument("--allow-random-backbones", action="store_true",
                   help="score raw inputs even with a model whose backbones are random or absent (features-only): "
                        "smoke tests only, the numbers mean nothing (refused otherwise; see emi_hf.provenance)")


def cmd_cache(args) -> int:
    from .media.cache import ClipCache, format_size
    from .text.cache import TranscriptCache

    clips, transcripts = ClipCache(args.dir), TranscriptCache(args.transcripts_dir)
    if args.action == "clear":
        count, freed = clips.clear()
        print(f"[emi-hf cache] removed {count} clip entries ({format_size(freed)}) from {clips.folder}")
        if args.transcripts:
            count, freed = transcripts.clear()
            print(f"[emi-hf cache] removed {count} transcripts ({format_size(freed)}) from {transcripts.folder}")
        return 0
    info = clips.info()
    count, size = transcripts.usage()
    print(f"clip cache   {info['folder']}\n  entries    {info['entries']}\n  size       {format_size(info['bytes'])} "
          f"of {format_size(info['max_size'])} (cap: EMI_HF_CACHE_MAX_SIZE; least recently used entries go first)\n"
          f"transcripts  {transcripts.folder}\n  entries    {count}\n  size       {format_size(size)} (no cap)")
    return 0


def _add_cache_parser(sub) -> None:
    p = sub.add_parser("cache", help="the clip cache (and transcript cache): where, how big, empty it")
    p.add_argument("action", choices=("info", "clear"))
    p.add_argument("--dir", help="the clip cache folder (default: $EMI_HF_CACHE, $HF_HOME/emi_hf/clips, "
                                 "$XDG_CACHE_HOME/emi_hf/clips or ~/.cache/emi_hf/clips)")
    p.add_argument("--transcripts-dir", help="the transcript cache folder (default: beside the clip cache)")
    p.add_argument("--transcripts", action="store_true", help="clear: the transcript cache too")
    p.set_defaults(func=cmd_cache)


def cmd_import_features(args) -> int:
    from .data.organiser import import_organiser_features

    report = import_organiser_features(args.data_dir, args.output, args.visual, args.audio, args.splits,
                                       test_dir=args.test_dir, visual_fps=args.visual_fps)  # fmt: skip
    print(json.dumps(report["splits"], indent=2))
    print(f"[emi-hf import-features] wrote {args.output} in {report['wall_time_s']:.1f} s; no backbone made these "
          "features, so train on them with --no-base-model (features-only models: they score cached features, and "
          "predict refuses raw video with them)")
    return _failures_summary("import-features", report, f"{args.output}/failures.rank0.jsonl")


def _add_import_features_parser(sub) -> None:
    p = sub.add_parser("import-features", help="the organisers' vit/ and wav2vec2/ pickles -> a features folder",
                       epilog=_EXTRACTION_CODES)
    p.add_argument("--data-dir", required=True, help="the Hume-Vidmimic2 folder (split CSVs, test folder)")
    p.add_argument("--visual", help="folder of per-clip visual pickles (e.g. DATA/vit)")
    p.add_argument("--audio", help="folder of per-clip audio pickles (e.g. DATA/wav2vec2)")
    p.add_argument("--output", required=True)
    p.add_argument("--splits", nargs="+", help="default: train, validation, and test when there is one")
    p.add_argument("--test-dir", help="the test videos' folder when there is no test_split.csv")
    p.add_argument("--visual-fps", type=float, default=1.0,
                   help="rows per second of the visual pickles, for the frame times (unknown; default 1 = row units)")
    p.set_defaults(func=cmd_import_features)


def cmd_submit(args) -> int:
    from .data.failures import reasons_line
    from .submission import check_submission, report_path, submission_from_features

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
    from .submission import check_submission

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


def cmd_transcribe(args) -> int:
    from transformers.utils import logging as transformers_logging

    from .text import Transcriber

    transformers_logging.set_verbosity_error()
    transcriber = Transcriber(args.asr_backend, args.asr_model, language=args.language, vad=args.vad,
                              device=args.device or "cpu", max_new_tokens=args.max_new_tokens,
                              beam_size=args.beam_size, transcripts=args.transcripts, use_cache=not args.no_cache)
    for path in args.files:
        transcript = transcriber.transcribe(path)
        if args.json:
            print(json.dumps(transcript.to_dict(), ensure_ascii=False), flush=True)
            continue
        speech = "" if transcript.speech is None else f", speech {sum(e - s for s, e in transcript.speech):.1f} s"
        print(f"{path}  (language {transcript.language or '?'}, {len(transcript.segments)} segment(s){speech}, "
              f"{transcript.source})\n  {transcript.text or '(no speech)'}", flush=True)
    return 0


def _add_transcribe_parser(sub) -> None:
    p = sub.add_parser("transcribe", help="transcribe video or audio files (Whisper; silero-vad first)")
    p.add_argument("files", nargs="+", help="videos or audio files (wav, mp3, flac, m4a, ...)")
    p.add_argument("--asr-backend", default="transformers", choices=("transformers", "faster-whisper"))
    p.add_argument("--asr-model", help="Whisper Hub id or folder (default openai/whisper-large-v3-turbo); for "
                                       "faster-whisper a CTranslate2 name or folder (default large-v3-turbo)")
    p.add_argument("--language", help="language code, e.g. en (default: detected per file)")
    p.add_argument("--vad", action=argparse.BooleanOptionalAction, default=True,
                   help="silero-vad first; files without speech get an empty transcript (default on)")
    p.add_argument("--transcripts", help="a Filename,text CSV, JSON / JSONL file or JSON folder to use instead")
    p.add_argument("--max-new-tokens", type=int, help="cap on decoded tokens per 30 s window")
    p.add_argument("--beam-size", type=int, help="beam width (default 1 transformers, 5 faster-whisper)")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the transcript cache")
    p.add_argument("--json", action="store_true", help="one JSON object per file, one per line")
    p.set_defaults(func=cmd_transcribe)


def _add_challenge_data_args(p) -> None:
    """`emi-hf extract`'s options for the data as the challenge distributes it (emi_hf.data.layout)."""
    p.add_argument("--splits", nargs="+", help="default: train, validation, and test when test_split.csv or a "
                   "test_data/ (test/) folder exists")
    p.add_argument("--test-dir", help="the test videos' folder when there is no test_split.csv (default: "
                   "DATA/test_data or DATA/test); ids from the file names")
    p.add_argument("--face-source", default="detect", choices=("detect", "images"),
                   help="images: use DATA/face_images/<id>/<n>.jpg (pre-cropped faces) instead of face detection "
                        "where a clip has them (clips without a video always use them)")
    p.add_argument("--face-image-fps", type=float, default=30.0,
                   help="frame rate of the face-image numbering (frame n at n/rate s; default 30)")


_EXTRACTION_CODES = ("exit codes: 0 every clip extracted; 3 some clips failed (the others extracted and merged; the "
                     "failures are counted per reason on stderr and in the report); 4 every clip failed; 2 a known "
                     "error stopped the run (one line); 1 an unexpected error (traceback). Under torchrun only the "
                     "main process's code counts.")


def _add_extract_parser(sub) -> None:
    p = sub.add_parser("extract", help="cached, resumable, sharded feature extraction", epilog=_EXTRACTION_CODES)
    p.add_argument("--data-dir", required=True, help="a Hume-Vidmimic2 folder (videos + *_split.csv)")
    p.add_argument("--labels-csv", help="generic layout: one CSV of labels for the videos in --data-dir")
    _add_challenge_data_args(p)
    p.add_argument("--output", required=True)
    p.add_argument("--visual-backbone", default="imagenet",
                   help="imagenet | /path/resnet18.pth | random (ResNet18), or a backbone: torchvision:NAME | "
                        "timm:NAME | a transformers vision model id or folder")
    p.add_argument("--visual-weights", help="the backbone's weights: a .pth / .safetensors file, or random "
                                            "(default: its published weights)")
    p.add_argument("--speech-encoder", default="facebook/wav2vec2-base",
                   help="Hub id | folder of a transformers audio encoder (wav2vec2, HuBERT, WavLM, data2vec-audio, "
                        "Whisper) | random")
    p.add_argument("--speech-layers", type=lambda text: [int(i) for i in text.split(",")],
                   help="hidden layers to keep, e.g. 6,12 (default: the last); several: a learned weighted sum")
    p.add_argument("--max-audio-s", type=float, help="crop audio to its first N seconds (default: no crop)")
    p.add_argument("--audio-cache-dtype", default="float32", choices=("float32", "float16"),
                   help="dtype of the cached speech frames (float16 halves the disk)")
    p.add_argument("--allow-random-backbones", action="store_true",
                   help="fall back to random backbones when pretrained weights are unavailable (smoke tests only; "
                        "recorded as random, so models trained on these features score raw inputs only with "
                        "predict --allow-random-backbones)")
    p.add_argument("--backbone-precision", default="float32", choices=("float32", "bfloat16"),
                   help="bfloat16: about 2x faster backbones on CPUs with AVX512-BF16/AMX and recent GPUs; "
                        "features differ from float32 ones by 0.5-1.5%% relative (recorded with the features)")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda when available, else cpu; under torchrun "
                                    "each process takes GPU LOCAL_RANK %% GPUs)")
    p.add_argument("--threads", type=int, help="torch/OpenMP threads per process (default: cores / processes here)")
    p.add_argument("--peer-timeout", type=float, default=600.0,
                   help="seconds without a sign of life from another extraction process before the main process "
                        "stops waiting and says what to rerun (default 600)")
    p.add_argument("--no-progress", action="store_true")
    _add_text_args(p)
    _add_processor_args(p)
    p.set_defaults(func=cmd_extract)


def _add_text_args(p) -> None:
    group = p.add_argument_group("text (transcripts, voice activity, text features)")
    group.add_argument("--text-encoder", help="transformers text encoder id or folder (AutoModel + AutoTokenizer: "
                                              "thenlper/gte-base, BERT, RoBERTa, multilingual E5): cache text_features")
    group.add_argument("--text-pooling", default="tokens", choices=("tokens", "cls", "mean"),
                       help="text features: every token's state (default), the [CLS] state, or their mean")
    group.add_argument("--text-max-tokens", "--max-text-tokens", type=int, default=None,
                       help="truncate transcripts to this many tokens (default: the encoder's limit, at most 512)")
    group.add_argument("--transcripts", help="transcripts to use: a Filename,text CSV, JSON / JSONL file or JSON folder")
    group.add_argument("--asr-model", help="transcribe clips (those --transcripts lacks) with this Whisper id or "
                                           "folder (faster-whisper: a CTranslate2 name or folder)")
    group.add_argument("--asr-backend", default="transformers", choices=("transformers", "faster-whisper"))
    group.add_argument("--language", help="transcription language, e.g. en (default: detected per clip)")
    group.add_argument("--vad", action=argparse.BooleanOptionalAction, default=True,
                       help="silero-vad speech segments per clip, stored with the features; ASR skips clips "
                            "without speech (default on)")
    group.add_argument("--mask-non-speech-audio", action="store_true",
                       help="mask the audio frames outside speech segments (the audio model hears speech only)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emi-hf", description=__doc__, epilog=exit_code_table(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    _add_extract_parser(sub)

    sub.add_parser("train", help="train a model on cached features (see `emi-hf train --help`)", add_help=False)

    _add_evaluate_parser(sub)
    _add_cv_parser(sub)

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
    p.add_argument("--layout", default="csv", choices=("csv", "challenge"),
                   help="challenge: test clips in test_data/raw/ without a test_split.csv, as distributed")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("quickstart", help="the main job: synthetic data -> extract -> train x3 -> evaluate -> predict "
                       "-> submission.csv")
    p.add_argument("--output-dir", default="quickstart")
    p.add_argument("--num-train", type=int, default=160)
    p.add_argument("--num-valid", type=int, default=80)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--face-detector", default="mediapipe")
    p.add_argument("--num-test", type=int, default=20, help="synthetic test clips (test_data/raw/) for the submission")
    p.set_defaults(func=cmd_quickstart)
    _add_stream_parser(sub)
    _add_import_features_parser(sub)
    _add_submit_parser(sub)
    _add_verify_submission_parser(sub)
    _add_transcribe_parser(sub)
    _add_cache_parser(sub)
    from .cli_recipe import add_recipe_parser

    add_recipe_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit code (`emi_hf.errors.ExitCode`). A known error (`emi_hf.errors.
    is_known_error`) raises SystemExit(2) after one line on stderr, as argparse does; any other exception propagates
    with its traceback."""
    from .media.logs import quiet_third_party_logs

    quiet_third_party_logs()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with _backbone_warnings_on_stderr():
            if argv and argv[0] == "train":
                return int(cmd_train(argv[1:]))
            if argv and argv[0] == "cv":
                return int(cmd_cv(argv[1:]))
            args = build_parser().parse_args(argv)
            return int(args.func(args))
    except Exception as error:
        if not is_known_error(error):
            raise
        _fail(error)
    return ExitCode.UNEXPECTED


@contextlib.contextmanager
def _backbone_warnings_on_stderr():
    """While a command runs: `BackboneWarning`s (random backbones allowed, backbones of unknown origin) as
    `emi-hf: warning: ...` lines on stderr; other warnings as Python shows them."""
    import warnings

    from .provenance import BackboneWarning

    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, *args, **kwargs):
            if issubclass(category, BackboneWarning):
                print(f"emi-hf: warning: {message}", file=sys.stderr, flush=True)
            else:
                shown(message, category, *args, **kwargs)

        warnings.simplefilter("always", BackboneWarning)  # each model warns once (it remembers its check)
        warnings.showwarning = show
        yield


if __name__ == "__main__":
    raise SystemExit(main())
