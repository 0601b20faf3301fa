"""`emi-hf extract` (cached, resumable, sharded feature extraction) and `emi-hf import-features` (the organisers' pickles)."""

from __future__ import annotations

import json

from ..errors import ExitCode
from .common import (
    _EXTRACTION_CODES,
    _add_challenge_data_args,
    _add_processor_args,
    _add_text_args,
    _failures_summary,
    _make_processor,
    _text_stage,
)


def cmd_extract(args) -> int:
    from ..data.extraction import run_extraction
    from ..data.layout import load_generic, load_hume_vidmimic2
    from ..data.sharding import process_device
    from ..devices import default_device
    from ..encoders.setup import processor_for_face_backbone
    from ..encoders.pretrained import build_audio_base, build_visual_base

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


def cmd_import_features(args) -> int:
    from ..data.organiser import import_organiser_features

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
