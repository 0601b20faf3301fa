"""Benchmark section "streaming_words" (opt-in): only the streaming section's rows with and without the words
(`bench_streaming.run_words`: hop latency p50 / p95 paced at real time for a visual + audio fusion and a three-way
fusion with a Whisper-tiny-sized and a Whisper-base-sized recognizer, the ASR lag, memory over a long input), with
their durations as options, e.g. ``--sections streaming_words --words-paced-s 60 --words-long-s 600``."""

from __future__ import annotations

from pathlib import Path

from bench_streaming import run_words


def add_arguments(parser) -> None:
    group = parser.add_argument_group("section streaming_words")
    group.add_argument("--words-paced-s", type=float, default=None,
                       help="seconds of input paced at real time per model (default 60; 20 with --quick)")
    group.add_argument("--words-long-s", type=float, default=None,
                       help="seconds of input of the memory run per model (default 600; 60 with --quick)")


def run(media: Path, work: Path, quick: bool, args=None) -> None:
    run_words(media, work, quick, paced_s=getattr(args, "words_paced_s", None),
              long_s=getattr(args, "words_long_s", None))
