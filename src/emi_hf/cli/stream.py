"""`emi-hf stream`: live estimation from a video file, or a camera and a microphone, one line (or JSON object) per hop;
a model with a text part hears the words as they are said (`--asr-model`) or reads a file's (`--transcripts`).
Imports nothing heavy until the command runs."""

from __future__ import annotations

import json
import sys

from ..errors import EmiUsageError

__all__ = ["add_stream_parser", "cmd_stream"]


def cmd_stream(args) -> int:
    from ..inference import load_for_inference
    from ..streaming import EmiStreamer, file_events, live_events, run_stream

    live = args.camera is not None or args.microphone is not None
    if args.video is None and not live:
        raise EmiUsageError("emi-hf stream needs an input: --video FILE, --camera N and/or --microphone [DEVICE]")
    if args.video is not None and live:
        raise EmiUsageError("--video plays a file (its own audio included): it does not go with --camera or "
                            "--microphone")
    if args.microphone is not None:  # the device first: a missing one fails before the model loads
        from ..streaming.microphone import input_device

        input_device(None if args.microphone == "default" else args.microphone)
    model, processor = load_for_inference(args.model, processor=args.processor,
                                          allow_random_backbones=args.allow_random_backbones)
    text_side, transcript = _stream_words(args, model)
    events = file_events(args.video) if args.video else live_events(
        args.camera, args.microphone, use_microphone=args.microphone is not None)
    streamer = EmiStreamer(model, processor, window_s=args.window, hop_s=args.hop, text_side=text_side,
                           transcript=transcript, partial_every_s=args.partial_every or None,
                           max_pending_audio_s=2.0 if live else None)
    for update in run_stream(streamer, events, realtime=args.realtime, live=live):
        print(json.dumps(update.to_dict()) if args.json else update.line(), flush=True)
    return 0


def _stream_words(args, model):
    """(TextSide, known transcript) of `emi-hf stream` for a model with a text part; (None, None) without one."""
    from ..inference import TextSide

    text_side = TextSide.for_model(model, transcripts=args.transcripts, asr_model=args.asr_model,
                                   asr_backend=args.asr_backend, language=args.language, use_cache=False)
    if text_side is None:
        return None, None
    if args.camera is not None and args.microphone is None:
        print("emi-hf stream: warning: --camera without --microphone: no audio, so the model's audio and text "
              "parts are absent (add --microphone)", file=sys.stderr)
        text_side.transcriber = None  # nothing to transcribe: no recognizer is loaded
        return text_side, None
    known = None
    if text_side.table is not None:
        if args.video is None:
            raise EmiUsageError("--transcripts holds the words of files: it goes with --video (live words come "
                                "from --asr-model)")
        known = text_side.table.lookup(args.video)
        if known is None and text_side.transcriber is None:
            raise EmiUsageError(f"{args.video}: no transcript for it in {args.transcripts}, and no speech "
                                "recognizer: add a row for it, or pass --asr-model ID to transcribe it as it plays.")
    elif text_side.transcriber is None:
        raise EmiUsageError(f"{args.model} has a text part and its training transcripts were read from a file, so "
                            "it names no speech recognizer: pass --asr-model (a Whisper id or folder; "
                            "--asr-backend faster-whisper for a CTranslate2 one) to hear the words as they are said"
                            + (", or --transcripts FILE with the video's words" if args.video else ""))
    return text_side, known


def add_stream_parser(sub, add_allow_random_arg) -> None:
    """The `stream` subcommand (`add_allow_random_arg`: cli's --allow-random-backbones option)."""
    p = sub.add_parser("stream", help="live estimation from a video file, a camera and a microphone, one line per hop")
    p.add_argument("--model", required=True, help="a model folder or Hub id")
    p.add_argument("--processor", help="processor folder (default: the model's own)")
    p.add_argument("--video", help="a video file played through the streamer")
    p.add_argument("--camera", type=int, help="a local camera index (OpenCV)")
    p.add_argument("--microphone", nargs="?", const="default", metavar="DEVICE",
                   help="record a microphone (sounddevice / PortAudio: pip install 'emi-hf[live]'; on Linux also "
                        "the libportaudio2 package): the default input, or DEVICE (an index or part of its name, "
                        "as python -m sounddevice lists them); with --camera, or alone")
    p.add_argument("--realtime", action="store_true",
                   help="with --video: pace the file at real time (frames are dropped when compute falls behind)")
    p.add_argument("--window", type=float, default=4.0, help="seconds each update covers (default 4)")
    p.add_argument("--hop", type=float, default=0.5, help="seconds between updates (default 0.5)")
    p.add_argument("--json", action="store_true", help="one JSON object per update")
    words = p.add_argument_group("a model with a text part (the words, transcribed as they are said)")
    words.add_argument("--asr-model", help="Whisper id or folder (default: the one the model's training transcripts "
                                           "came from)")
    words.add_argument("--asr-backend", choices=("transformers", "faster-whisper"))
    words.add_argument("--language", help="transcription language, e.g. en (default: the model's, else detected)")
    words.add_argument("--transcripts", help="with --video: the video's known words (Filename,text CSV; JSON with "
                                             "timed segments), used instead of ASR")
    words.add_argument("--partial-every", type=float, default=2.0,
                       help="seconds between transcriptions of an utterance still going on (default 2; 0: only "
                            "when it ends)")
    add_allow_random_arg(p)
    p.set_defaults(func=cmd_stream)
