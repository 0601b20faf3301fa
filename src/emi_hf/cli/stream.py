"""`emi-hf stream`: live estimation from a video file or a camera, one line (or JSON object) per hop. Imports nothing
heavy until the command runs."""

from __future__ import annotations

import json

__all__ = ["add_stream_parser", "cmd_stream"]


def cmd_stream(args) -> int:
    from ..inference import load_for_inference
    from ..streaming import EmiStreamer, camera_events, file_events, run_stream

    model, processor = load_for_inference(args.model, processor=args.processor,
                                          allow_random_backbones=args.allow_random_backbones)
    events = file_events(args.video) if args.video else camera_events(args.camera)
    streamer = EmiStreamer(model, processor, window_s=args.window, hop_s=args.hop)
    for update in run_stream(streamer, events, realtime=args.realtime, live=args.camera is not None):
        print(json.dumps(update.to_dict()) if args.json else update.line(), flush=True)
    return 0


def add_stream_parser(sub, add_allow_random_arg) -> None:
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
    add_allow_random_arg(p)
    p.set_defaults(func=cmd_stream)
