"""The GPU check: one prepared script for a machine with a CUDA GPU, under 8 minutes (`--budget-s`, default 450 s).

    python benchmarks/gpu_check.py                      # on the GPU machine; writes $OUT/gpu_check.md (or benchmarks/)
    python benchmarks/gpu_check.py --device cpu --tiny  # a self-check of this script on a CPU (the suite runs it)

1. CUDA paths (section `cuda`): the device, its capability and bf16 support; the fusion model's forward on the
   device against the CPU (float32, and bf16 autocast), on the same random weights and inputs; `predict_clips` of a
   real clip end to end (faces, AUs, face backbone, speech encoder, temporal models) on the device against the same
   call in a process that sees no GPU (`CUDA_VISIBLE_DEVICES=""`), for both face detectors; one training step on
   the device (the loss is finite, every trainable weight moves, the frozen backbone does not).
2. Timings, each a section of `run_benchmarks.py` run on the device (its models go to the first GPU by themselves):
   `visual` (extraction: decode, detect, align, ResNet18; quick), `audio` (speech encoder), `train` (one epoch on
   2,000 synthetic clips, fp32 and bf16), and `streaming` here (EmiStreamer with the model on the device: per-hop
   compute, real-time factor, latency paced at real time).

Each step runs only while the budget lasts; a step left out gets a row saying so. Rows are written with the date and
the machine (run_benchmarks' table). Random backbone weights: speed and agreement, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from table import ROWS, device_name, row  # noqa: E402

CLIP = "single_face.mp4"  # a face and speech, 2.4 s
STEPS = ["forward", "predict", "train_step", "visual", "audio", "train", "streaming"]

PREDICT_SCRIPT = r"""
import json, sys, time, torch
from emi_hf.inference import load_for_inference, predict_clips
began = time.perf_counter()
model, processor = load_for_inference(sys.argv[1], allow_random_backbones=True)
loaded = time.perf_counter()
result = predict_clips(model, processor, [sys.argv[2]], use_cache=False, allow_random_backbones=True)[0]
print("RESULT", json.dumps({"device": str(next(model.parameters()).device), "load_s": loaded - began,
                            "compute_s": time.perf_counter() - loaded,
                            "intensities": result.modality_intensities, "face_fraction": result.face_fraction}))
"""


def _configs(tiny: bool):
    from emi_hf import EmiAudioConfig, EmiFusionConfig, EmiVisualConfig

    if not tiny:
        return EmiFusionConfig(visual_config=EmiVisualConfig(), audio_config=EmiAudioConfig())
    temporal = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, tcn_dilations=[1, 2],
                    num_hidden_layers=1)
    speech = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, conv_dim=[16, 16],
                  conv_stride=[5, 4], conv_kernel=[10, 4], num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    return EmiFusionConfig(visual_config=EmiVisualConfig(**temporal),
                           audio_config=EmiAudioConfig(**temporal, speech_encoder_config=speech, audio_feature_dim=32))


def _model(tiny: bool):
    import torch

    from emi_hf import EmiFusionModel

    torch.manual_seed(0)
    return EmiFusionModel(_configs(tiny)).eval()


def _inputs(model, batch: int = 2, frames: int = 90, audio_frames: int = 150) -> dict:
    import torch

    generator = torch.Generator().manual_seed(1)
    visual, audio = model.config.visual_config, model.config.audio_config
    inputs = {
        "visual_features": torch.randn(batch, frames, visual.visual_feature_dim, generator=generator),
        "au_features": torch.rand(batch, frames, visual.num_aus, generator=generator),
        "frame_mask": torch.ones(batch, frames, dtype=torch.bool),
        "audio_features": torch.randn(batch, audio_frames, audio.audio_feature_dim * audio.num_speech_layers, generator=generator),
        "audio_mask": torch.ones(batch, audio_frames, dtype=torch.bool),
    }
    inputs["frame_mask"][1, frames // 2:] = False  # a shorter clip in the batch: padding on the device too
    inputs["audio_mask"][1, audio_frames // 2:] = False
    return inputs


def check_forward(device: str, tiny: bool) -> None:
    """The fusion model on `device` against the CPU: same weights, same inputs."""
    import torch

    model = _model(tiny)
    inputs = _inputs(model)
    with torch.inference_mode():
        reference = model(**inputs).intensities.float()
        on_device = model.to(device)
        moved = {k: v.to(device) for k, v in inputs.items()}
        fp32 = on_device(**moved).intensities.float().cpu()
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
            bf16 = on_device(**moved).intensities.float().cpu()
    for label, values, tolerance in (("float32", fp32, 1e-4), ("bf16 autocast", bf16, 5e-2)):
        gap = float((values - reference).abs().max())
        row("cuda", f"fusion forward on {device} vs CPU, {label}: max abs fused intensity difference", f"{gap:.2e}", "",
            target=f"<= {tolerance:g}", passed=bool(np.isfinite(gap) and gap <= tolerance))


def check_predict(device: str, media: Path, work: Path, tiny: bool) -> None:
    """predict_clips end to end on the device against a process that sees no GPU, for both face detectors."""
    from emi_hf import EmiProcessor

    folder = work / "gpu_check_model"
    _model(tiny).save_pretrained(folder)
    clip = media / CLIP
    for detector in ("mediapipe", "mtcnn"):
        EmiProcessor(face_detector=detector, use_cache=False).save_pretrained(folder)
        results = {}
        for where, visible in (("device", None), ("cpu", "")):
            env = dict(os.environ)
            if visible is not None or device == "cpu":
                env["CUDA_VISIBLE_DEVICES"] = ""
            out = subprocess.run([sys.executable, "-c", PREDICT_SCRIPT, str(folder), str(clip)], env=env,
                                 capture_output=True, text=True)
            line = [item for item in out.stdout.splitlines() if item.startswith("RESULT ")]
            if not line:
                row("cuda", f"predict_clips, {detector}, {where}", "error", "", passed=False,
                    note=out.stderr.strip()[-400:])
                return
            results[where] = json.loads(line[0][7:])
        fused = [np.array(list(r["intensities"]["fused"].values())) for r in (results["device"], results["cpu"])]
        gap = float(np.abs(fused[0] - fused[1]).max())
        on = results["device"]
        row("cuda", f"predict_clips of {CLIP} ({detector}) on {on['device']} vs CPU: max abs fused difference",
            f"{gap:.2e}", "", target="<= 1e-2", passed=bool(gap <= 1e-2),
            note=f"faces in {on['face_fraction']:.2f} (CPU {results['cpu']['face_fraction']:.2f}) of frames; on the "
                 f"device: load {on['load_s']:.1f} s, compute {on['compute_s']:.2f} s; CPU compute "
                 f"{results['cpu']['compute_s']:.2f} s")


def check_train_step(device: str, tiny: bool) -> None:
    """One optimiser step on the device with bf16 autocast: finite loss, trainable weights move, frozen ones don't."""
    import torch

    model = _model(tiny).train().to(device)
    inputs = {k: v.to(device) for k, v in _inputs(model).items()}
    inputs["labels"] = torch.rand(2, 6, device=device)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
        loss = model(**inputs).loss
    loss.backward()
    optimizer.step()
    moved = frozen_moved = 0
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        if p.requires_grad:
            moved += changed
        else:
            frozen_moved += changed
    loss = loss.detach()
    row("cuda", f"one bf16-autocast training step on {device}", f"{float(loss):.4f}", "loss",
        target="finite; every trainable weight moves; frozen ones do not",
        passed=bool(torch.isfinite(loss).item() and moved == len(trainable) and frozen_moved == 0),
        note=f"{moved}/{len(trainable)} trainable tensors moved, {frozen_moved} frozen tensors moved")


def time_streaming(device: str, media: Path, tiny: bool, seconds: float, paced_s: float) -> None:
    """EmiStreamer (window 4 s, hop 0.5 s) with the model on the device, over a looped real clip."""
    from emi_hf import EmiProcessor
    from emi_hf.streaming import EmiStreamer, file_events, run_stream

    model = _model(tiny).to(device)
    processor = EmiProcessor(face_detector="mediapipe", use_cache=False)

    def events(limit):
        for event in file_events(str(media / CLIP), loops=int(np.ceil(limit / 2.4)) + 1):
            if event[-1] >= limit:
                return
            yield event

    began = time.perf_counter()
    compute = [u.compute_s for u in run_stream(EmiStreamer(model, processor, window_s=4.0, hop_s=0.5), events(seconds))]
    wall = time.perf_counter() - began
    paced = list(run_stream(EmiStreamer(model, processor, window_s=4.0, hop_s=0.5), events(paced_s), realtime=True))
    latency = [u.latency_s for u in paced[2:]] or [float("nan")]
    row("streaming", f"per-hop compute p50 / p95 on {device}, window 4 s / hop 0.5 s",
        f"{np.percentile(compute, 50):.3f} / {np.percentile(compute, 95):.3f}", "s", note=f"{len(compute)} hops")
    row("streaming", f"sustained real-time factor on {device}", round(seconds / wall, 2), "x real time",
        target=">= 1", passed=seconds / wall >= 1)
    row("streaming", f"latency p95 paced at real time on {device}", f"{np.percentile(latency, 95):.3f}", "s",
        target="< 0.5 s", passed=float(np.percentile(latency, 95)) < 0.5,
        note=f"{paced_s:.0f} s paced, {len(paced)} hops, {paced[-1].dropped_total if paced else 0} frames dropped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="the device under test (cpu: a self-check of the script)")
    parser.add_argument("--media-dir", default=str(REPO.parent / "shared" / "media"))
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else HERE
    parser.add_argument("--output", default=str(out_dir / "gpu_check.md"))
    parser.add_argument("--budget-s", type=float, default=450.0, help="steps start only while this lasts")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=STEPS)
    parser.add_argument("--tiny", action="store_true", help="tiny models and short runs (the suite's self-check)")
    args = parser.parse_args(argv)

    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); run it on the GPU "
              "machine, or pass --device cpu --tiny for a self-check of the script", file=sys.stderr)
        return 2
    media, began = Path(args.media_dir), time.perf_counter()
    if not (media / CLIP).exists():
        print(f"gpu_check: {media / CLIP} not found: pass --media-dir (the shared/media folder)", file=sys.stderr)
        return 2
    machine = device_name()
    print(f"machine: {machine}; torch {torch.__version__}; CUDA {torch.version.cuda}")
    if torch.cuda.is_available():
        row("cuda", "device", torch.cuda.get_device_name(0), "", note=(
            f"capability {torch.cuda.get_device_capability(0)}, bf16 supported: {torch.cuda.is_bf16_supported()}, "
            f"memory {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB, torch {torch.__version__}"))
    import run_benchmarks

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        steps = {
            "forward": lambda: check_forward(args.device, args.tiny),
            "predict": lambda: check_predict(args.device, media, work, args.tiny),
            "train_step": lambda: check_train_step(args.device, args.tiny),
            "visual": lambda: run_benchmarks.bench_visual(media, None, quick=True),
            "audio": lambda: run_benchmarks.bench_audio(media, None),
            "train": lambda: run_benchmarks.bench_train(quick=True),
            "streaming": lambda: time_streaming(args.device, media, args.tiny, *((8.0, 4.0) if args.tiny
                                                                                  else (60.0, 20.0))),
        }
        for name in args.steps:
            elapsed = time.perf_counter() - began
            if elapsed > args.budget_s:
                row("budget", f"step {name}", "not run", "", note=f"{elapsed:.0f} s used of {args.budget_s:.0f} s")
                continue
            try:
                steps[name]()
            except Exception as error:  # a failing step is a row, the others still run
                row("error", f"step {name}", "error", "", passed=False, note=f"{type(error).__name__}: {error}"[:400])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    run_benchmarks.write_table(Path(args.output), machine, torch.get_num_threads(), time.perf_counter() - began,
                               sorted({r["section"] for r in ROWS}))
    failed = [r for r in ROWS if r["passed"] is False]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
