"""What several commands share: the preprocessing, text and challenge-data options, the processor they build, the
extraction exit-code summary. Imports nothing heavy at module level."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import ExitCode, extraction_exit_code, loading


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
    from ..models.processing_emi import EmiProcessor

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


def _failures_summary(command: str, report: dict, where: str) -> int:
    """The exit code of an extraction / import report, and on stderr how many clips failed, per reason."""
    from ..data.failures import reason_counts

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
    from ..data.text_features import TextStage

    stage = TextStage.from_options(args.text_encoder, args.asr_model, args.asr_backend, args.transcripts,
                                   args.language, args.vad, args.mask_non_speech_audio, str(device),
                                   text_pooling=args.text_pooling, max_text_tokens=args.text_max_tokens)
    if stage is not None:
        print(f"[emi-hf extract] text: encoder {args.text_encoder or 'none'}, transcripts "
              f"{args.transcripts or 'none'}, ASR {args.asr_model or 'none'}, voice activity "
              f"{'on' if args.vad else 'off'}{', non-speech audio frames masked' if args.mask_non_speech_audio else ''}")
    return stage


def _add_allow_random_arg(p) -> None:
    p.add_argument("--allow-random-backbones", action="store_true",
                   help="score raw inputs even with a model whose backbones are random or absent (features-only): "
                        "smoke tests only, the numbers mean nothing (refused otherwise; see emi_hf.provenance)")


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
