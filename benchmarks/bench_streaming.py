"""Benchmark section "streaming": `emi_hf.streaming.EmiStreamer` at window 4 s / hop 0.5 s with base-sized random
backbones (ResNet18 faces, wav2vec2-base speech; random weights cost what trained ones do) and MediaPipe faces at the
processor's default 30 fps, on 2 threads, float32 and bfloat16 backbones.

The input is a real clip with a face and speech (single_face.mp4, 2.4 s) looped to 10 minutes (1 with --quick;
each loop boundary is a scene cut, so the detector runs there as on a camera after a cut). Each precision runs in a
fresh process: first as fast as it goes (no frame dropped): per-hop compute, sustained real-time factor (media
seconds per wall second), peak memory and memory growth; then 30 s of it profiled (pyinstrument, in the worker
thread; the top of the profile goes in the note, the whole profile in the work folder); then paced at real time for
60 s (20 s with --quick), as a camera: end-to-end latency p50 / p95 (arrival of the input that completes a hop ->
the update) and dropped frames.

With and without the words (`run_words`): a visual + audio fusion against a three-way fusion (a BERT-base-sized text
encoder, the shape of thenlper/gte-base) with a Whisper-tiny-sized and a Whisper-base-sized random Whisper
(transformers backend, language given, DECODE_TOKENS tokens per call: random weights cost what trained ones do, but
decide nothing about how many tokens real speech gives), float32, on debate_5s.mp4 looped (a close-up speaker; one
utterance of about 1.1 s per 5 s loop). Each in a fresh process: paced at real time for 60 s (20 s with --quick): hop
latency p50 / p95, and the ASR lag p50 / p95 (arrival of the audio at the end of an utterance -> the first update
that shows its final words); then 10 minutes of input (1 with --quick) as fast as it goes: the process's memory
every 20 s of input. The target: with the words, the hop latency p95 within 10% of the same run's no-text p95."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from table import load_note, row

CLIP = "single_face.mp4"
SPEECH_CLIP = "debate_5s.mp4"
WINDOW_S, HOP_S = 4.0, 0.5
DECODE_TOKENS = 24  # per ASR call: an utterance of about 8 s at conversational speed (2-3 tokens/s)

SCRIPT = r"""
import json, sys, time, numpy as np, torch
torch.set_num_threads(2)
from emi_hf import EmiAudioConfig, EmiFusionConfig, EmiFusionModel, EmiProcessor, EmiVisualConfig
from emi_hf.streaming import EmiStreamer, file_events, run_stream
clip, precision, long_s, paced_s, profile_path = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
torch.manual_seed(0)
model = EmiFusionModel(EmiFusionConfig(visual_config=EmiVisualConfig(backbone_precision=precision),
                                       audio_config=EmiAudioConfig(backbone_precision=precision))).eval()
processor = EmiProcessor(face_detector="mediapipe", use_cache=False)

def status(key):
    return int([l for l in open("/proc/self/status") if l.startswith(key)][0].split()[1]) / 1024

def events(seconds):
    loops = int(np.ceil(seconds / 2.4)) + 1
    for event in file_events(clip, loops=loops):
        if event[-1] >= seconds:
            return
        yield event

streamer = EmiStreamer(model, processor, window_s=%(window)r, hop_s=%(hop)r)
rss, compute, began = [], [], time.perf_counter()
for update in run_stream(streamer, events(long_s)):
    compute.append(update.compute_s)
    if len(compute) %% 40 == 0:  # every 20 s of media
        rss.append(status("VmRSS"))
fast_wall = time.perf_counter() - began

import pyinstrument  # a separate, shorter run: the profiler's own samples grow with the time profiled
profiler = pyinstrument.Profiler()
run = EmiStreamer._run
def profiled(self):
    profiler.start()
    try:
        run(self)
    finally:
        profiler.stop()
EmiStreamer._run = profiled
list(run_stream(EmiStreamer(model, processor, window_s=%(window)r, hop_s=%(hop)r), events(min(long_s, 30.0))))
EmiStreamer._run = run
open(profile_path, "w").write(profiler.output_text(unicode=False, show_all=False))
streamer = EmiStreamer(model, processor, window_s=%(window)r, hop_s=%(hop)r)
paced = list(run_stream(streamer, events(paced_s), realtime=True))
latency = [u.latency_s for u in paced[2:]]  # the first hops also open the MediaPipe graphs
print("RESULT", json.dumps({
    "media_s": long_s, "fast_wall_s": fast_wall, "hops": len(compute),
    "compute_p50": float(np.percentile(compute, 50)), "compute_p95": float(np.percentile(compute, 95)),
    "rss_mb": rss, "peak_mb": status("VmHWM"),
    "latency_p50": float(np.percentile(latency, 50)), "latency_p95": float(np.percentile(latency, 95)),
    "paced_hops": len(paced), "dropped": paced[-1].dropped_total if paced else 0}))
""" % {"window": WINDOW_S, "hop": HOP_S}


def _top_of_profile(path: Path, lines: int = 14) -> str:
    text = path.read_text().splitlines()
    body = [line for line in text if "|" in line or "`-" in line][:lines]
    return " / ".join(" ".join(line.replace("|", "").replace("`-", "").split()) for line in body)


def run(media: Path, work: Path, quick: bool) -> None:
    long_s = 60.0 if quick else 600.0
    paced_s = 20.0 if quick else 60.0
    work.mkdir(parents=True, exist_ok=True)
    for precision in ("float32", "bfloat16"):
        profile = work / f"streaming_profile_{precision}.txt"
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(media / CLIP), precision, str(long_s), str(paced_s),
                              str(profile)], capture_output=True, text=True, env=os.environ)
        line = [item for item in out.stdout.splitlines() if item.startswith("RESULT")]
        label = f"{precision} backbones, MediaPipe, window {WINDOW_S:g} s / hop {HOP_S:g} s"
        if not line:
            row("streaming", f"{label}", "error", "", note=out.stderr[-400:])
            continue
        r = json.loads(line[0][7:])
        shared = load_note()  # right after the run: other jobs on the machine move these figures
        rtf = r["media_s"] / r["fast_wall_s"]
        row("streaming", f"per-hop compute p50 / p95, {label}", f"{r['compute_p50']:.3f} / {r['compute_p95']:.3f}",
            "s", note=f"{r['hops']} hops; {shared}")
        row("streaming", f"sustained real-time factor, {label}", round(rtf, 2), "x real time", target=">= 1",
            passed=rtf >= 1.0, note=f"{r['media_s']:.0f} s of input in {r['fast_wall_s']:.0f} s; {shared}")
        row("streaming", f"latency p50 / p95 paced at real time, {label}",
            f"{r['latency_p50']:.3f} / {r['latency_p95']:.3f}", "s", target=f"p95 < {HOP_S:g} s",
            passed=r["latency_p95"] < HOP_S,
            note=f"{paced_s:.0f} s paced, {r['paced_hops']} hops, {r['dropped']} frames dropped; {shared}; "
                 f"profile of 30 s as fast as it goes ({profile}): {_top_of_profile(profile)}")
        growth = (r["rss_mb"][-1] - r["rss_mb"][0]) if len(r["rss_mb"]) > 1 else 0.0
        row("streaming", f"peak memory over {r['media_s'] / 60:.0f} min of input, {label}", round(r["peak_mb"]),
            "MiB", target="flat", passed=len(r["rss_mb"]) < 2 or growth < 0.05 * r["rss_mb"][0],
            note=f"RSS every 20 s of input (MiB): {[round(x) for x in r['rss_mb']]}")
    run_words(media, work, quick)


WORDS_SCRIPT = r"""
import json, sys, time, numpy as np, torch
torch.set_num_threads(2)
from pathlib import Path
from emi_hf import EmiAudioConfig, EmiFusionConfig, EmiFusionModel, EmiProcessor, EmiTextConfig, EmiVisualConfig
from emi_hf.inference import TextSide
from emi_hf.streaming import EmiStreamer, file_events, run_stream
from emi_hf.text import build_word_tokenizer
clip, work, whisper, paced_s, long_s = sys.argv[1], Path(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
torch.manual_seed(0)
configs = dict(visual_config=EmiVisualConfig(), audio_config=EmiAudioConfig())
if whisper != "none":
    configs["text_config"] = EmiTextConfig()
model = EmiFusionModel(EmiFusionConfig(**configs)).eval()
processor = EmiProcessor(face_detector="mediapipe", use_cache=False)
text_side = None
if whisper != "none":  # the tokenizer a checkpoint keeps in text_tokenizer/
    build_word_tokenizer(["i think the point you are making is fair", "people deserve to hear it"],
                         work / "words_model" / "text_tokenizer")
    model.name_or_path = model.config._name_or_path = str(work / "words_model")
    text_side = TextSide(model, asr_model=whisper, asr_backend="transformers", language="en", use_cache=False)

def status(key):
    return int([l for l in open("/proc/self/status") if l.startswith(key)][0].split()[1]) / 1024

def events(seconds):
    for event in file_events(clip, loops=int(np.ceil(seconds / 5.0)) + 1):
        if event[-1] >= seconds:
            return
        yield event

def streamer():
    return EmiStreamer(model, processor, window_s=%(window)r, hop_s=%(hop)r, text_side=text_side)

paced = list(run_stream(streamer(), events(paced_s), realtime=True))
hops = [u for u in paced if not u.end_of_stream]
latency = [u.latency_s for u in hops[2:]]  # the first hops also open the MediaPipe graphs
lags = [u.transcript.asr_lag_s for u in paced if u.transcript is not None and u.transcript.asr_lag_s is not None]
said = [u for u in hops if u.transcript is not None and u.transcript.text]
rss, began, count = [], time.perf_counter(), 0
for update in run_stream(streamer(), events(long_s)):
    count += 1
    if count %% 40 == 0:  # every 20 s of media
        rss.append(status("VmRSS"))
print("RESULT", json.dumps({
    "latency_p50": float(np.percentile(latency, 50)), "latency_p95": float(np.percentile(latency, 95)),
    "paced_hops": len(hops), "dropped": hops[-1].dropped_total if hops else 0,
    "lag_p50": float(np.percentile(lags, 50)) if lags else None, "lag_p95": float(np.percentile(lags, 95)) if lags else None,
    "utterances": len(lags), "hops_with_words": len(said),
    "asr_dropped": paced[-1].transcript.dropped if paced and paced[-1].transcript else 0,
    "long_s": long_s, "fast_wall_s": time.perf_counter() - began, "rss_mb": rss, "peak_mb": status("VmHWM")}))
""" % {"window": WINDOW_S, "hop": HOP_S}


def _whisper(work: Path, size: str) -> Path:
    from emi_hf.text.random_whisper import WHISPER_BASE_DIMS, WHISPER_TINY_DIMS, build_random_whisper

    folder = work / f"whisper_{size}_random_{DECODE_TOKENS}"
    if not (folder / "model.safetensors").is_file():
        dims = {"tiny": WHISPER_TINY_DIMS, "base": WHISPER_BASE_DIMS}[size]
        build_random_whisper(folder, dims=dims, max_new_tokens=DECODE_TOKENS, suppress_eot=True)
    return folder


def run_words(media: Path, work: Path, quick: bool, paced_s: float | None = None, long_s: float | None = None) -> None:
    """The rows with and without the words (module doc)."""
    paced_s = paced_s or (20.0 if quick else 60.0)
    long_s = long_s or (60.0 if quick else 600.0)
    work.mkdir(parents=True, exist_ok=True)
    baseline = None
    for size in ("none", "tiny", "base"):
        whisper = "none" if size == "none" else str(_whisper(work, size))
        out = subprocess.run([sys.executable, "-c", WORDS_SCRIPT, str(media / SPEECH_CLIP), str(work), whisper,
                              str(paced_s), str(long_s)], capture_output=True, text=True, env=os.environ)
        line = [item for item in out.stdout.splitlines() if item.startswith("RESULT")]
        label = ("visual + audio fusion, no text" if size == "none" else
                 f"three-way fusion, Whisper-{size} size (transformers, {DECODE_TOKENS} tokens per call)")
        label += f", MediaPipe, window {WINDOW_S:g} s / hop {HOP_S:g} s, float32"
        if not line:
            row("streaming", f"with the words: {label}", "error", "", note=out.stderr[-400:])
            continue
        r = json.loads(line[0][7:])
        shared = load_note()  # right after the run: other jobs on the machine move these figures
        p95 = r["latency_p95"]
        if size == "none":
            baseline = p95
        target = "p95 <= 1.1 x no text" if size != "none" and baseline else None
        row("streaming", f"hop latency p50 / p95 paced at real time, {label}", f"{r['latency_p50']:.3f} / {p95:.3f}",
            "s", target=target, passed=(p95 <= 1.1 * baseline) if target else None,
            note=f"{paced_s:.0f} s of {SPEECH_CLIP} looped, {r['paced_hops']} hops, {r['dropped']} frames dropped; "
                 + (f"{r['hops_with_words']} hops with words; " if size != "none" else "") + shared)
        if size != "none":
            lag = "none measured" if r["lag_p50"] is None else f"{r['lag_p50']:.3f} / {r['lag_p95']:.3f}"
            row("streaming", f"ASR lag p50 / p95 paced at real time, {label}", lag, "s",
                note=f"end of an utterance (arrival of its last audio) -> the first update with its final words; "
                     f"{r['utterances']} utterances, {r['asr_dropped']} dropped untranscribed; {shared}")
        growth = (r["rss_mb"][-1] - r["rss_mb"][0]) if len(r["rss_mb"]) > 1 else 0.0
        row("streaming", f"memory over {r['long_s'] / 60:.0f} min of input, {label}", round(r["peak_mb"]), "MiB",
            target="flat", passed=len(r["rss_mb"]) < 2 or growth < 0.05 * r["rss_mb"][0],
            note=f"peak; RSS every 20 s of input (MiB): {[round(x) for x in r['rss_mb']]}; as fast as it goes "
                 f"({r['long_s']:.0f} s of input in {r['fast_wall_s']:.0f} s); {shared}")
