"""The other commands: `push`, `pull` (the Hub), `synth`, `quickstart`, `cache`, `transcribe`."""

from __future__ import annotations

import argparse
import json


def cmd_push(args) -> int:
    from ..hub import push_model

    url = push_model(args.folder, args.repo_id, token=args.token, private=args.private, revision=args.revision)
    print(f"[emi-hf push] {url}")
    return 0


def cmd_pull(args) -> int:
    from ..hub import pull_model

    print(pull_model(args.repo_id, revision=args.revision, local_dir=args.local_dir, token=args.token))
    return 0


def cmd_synth(args) -> int:
    from ..data.synthetic import generate_synthetic_dataset

    path = generate_synthetic_dataset(
        args.output, num_train=args.num_train, num_valid=args.num_valid, num_test=args.num_test, seed=args.seed,
        layout=args.layout,
    )
    print(f"[emi-hf synth] wrote {path}")
    return 0


def cmd_quickstart(args) -> int:
    from ..quickstart import run_quickstart

    run_quickstart(args.output_dir, num_train=args.num_train, num_valid=args.num_valid, epochs=args.epochs,
                   seed=args.seed, face_detector=args.face_detector, num_test=args.num_test)
    return 0


def _add_hub_parsers(sub) -> None:
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


def _add_synth_parsers(sub) -> None:
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


def cmd_cache(args) -> int:
    from ..media.cache import ClipCache, format_size
    from ..text.cache import TranscriptCache

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


def cmd_transcribe(args) -> int:
    from transformers.utils import logging as transformers_logging

    from ..text import Transcriber

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
