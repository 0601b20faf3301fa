"""emi-hf speed and memory benchmarks: prints a table and writes it to benchmarks/results.md.

    python benchmarks/run_benchmarks.py            # everything (about 15 minutes on 2 CPU cores)
    python benchmarks/run_benchmarks.py --quick    # skips the 5-minute clip and the reference loop's long runs

Sections (all on `--threads` CPU threads, default 2; on a CUDA machine the models run on the GPU by themselves):

- visual: the package's visual path (decode, detect, align, crop, AU, ResNet18 in batches in a background thread,
  BatchNorm folded) against a plain reference
  loop contained here (decode every frame, MTCNN on every full frame, ResNet18 on one crop at a time, as typical
  challenge scripts do), on WolfgangLanger_Pexels.mp4 and on a >= 5-minute clip made by concatenating the shared
  media; frames per second of the source video, x real time, and the fraction of frames with a face.
- audio: decode + resample + normalise + a wav2vec2-base-sized encoder (random weights; same cost), x real time.
- train: one epoch of the visual model on cached features of Hume-Vidmimic2's size (8,072 clips, 150 frames).
- predict: `emi-hf predict` path on a 10 s clip with base-sized backbones: model load and compute separately.
- memory: peak RSS of feature extraction on the 1-minute and the 5-minute clip, each in a fresh process.

Opt-in (named in `--sections` only): disk, the set-up commands' disk use on a clean clone (bench_disk.py);
scale, a Hume-scale dry run of merge, train, cv, evaluate and submit on random features (bench_scale.py,
`--scale-fraction`, default 5% of Hume-Vidmimic2), whose rows are appended to the earlier ones (before / after).

Random backbone weights cost exactly what pretrained ones do; the figures are speed, not accuracy.
"""

from __future__ import annotations

import argparse
import importlib
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

from long_clip import build_long_clip, cut_clip  # noqa: E402
from table import ROWS, bench_device, device_name, row, write_results  # noqa: E402

CORE_SECTIONS = ["visual", "audio", "train", "predict", "memory"]
# Further sections, one module each beside this file, with `run(media: Path, work: Path, quick: bool)` recording rows
# through `table.row`.
SECTION_MODULES: dict[str, str] = {}
SECTION_MODULES["text"] = "bench_text"  # transcription (both ASR backends) and text encoding
SECTION_MODULES["extract_scaling"] = "bench_extract_scaling"  # emi-hf extract with 1 and 2 processes (torchrun)
SECTION_MODULES["encoders"] = "bench_encoders"  # face backbones (crops/s) and speech encoders (audio s/s)
SECTION_MODULES["streaming"] = "bench_streaming"  # EmiStreamer: per-hop compute, latency, real-time factor, memory
SECTION_MODULES["disk"] = "bench_disk"  # the set-up commands' disk use on a clean clone (opt-in, about 10 minutes)
SECTION_MODULES["scale"] = "bench_scale"  # Hume-scale dry run: disk, memory, time of merge/train/cv/evaluate/submit
SECTION_MODULES["streaming_words"] = "bench_streaming_words"  # the streaming rows with / without the words only
SECTION_MODULES["startup"] = "bench_startup"  # fresh processes: emi-hf --help, import emi_hf, emi-hf predict of 10 s
OPT_IN_SECTIONS = ["disk", "scale", "streaming_words"]  # run only when named in --sections
APPEND_SECTIONS = ["scale"]  # their earlier rows are kept and the new ones appended (each row says its commit)
OPTION_SECTIONS = ["scale", "streaming_words", "startup"]  # modules with add_arguments(parser) and run(..., args=)
MEDIA_FREE_SECTIONS = ["disk", "scale"]  # sections that need no shared media

def source_frames(path: Path) -> tuple[int, float]:
    from emi_hf.media.decoding import probe_media

    info = probe_media(path)
    return int(info.num_frames), float(info.duration)


# ----------------------------------------------------------------------------------------------------------------------


def package_visual(path: Path, detector: str, visual_model) -> dict:
    """The path `emi-hf extract` and `predict` take: ResNet18 in a background thread on each chunk's new crops."""
    from emi_hf import EmiProcessor
    from emi_hf.face_embedding import FaceEmbedder, clip_face_embeddings

    processor = EmiProcessor(face_detector=detector, use_cache=False)
    began = time.perf_counter()
    clip = processor.process_clip(str(path), face_embedder=FaceEmbedder(processor, visual_model))
    clip_face_embeddings(processor, visual_model, clip)
    wall = time.perf_counter() - began
    return {"wall_s": wall, "face_fraction": clip.face_fraction, "frames_out": clip.num_frames}


def reference_visual(path: Path, max_frames: int | None = None) -> dict:
    """Decode every frame, MTCNN on each full frame, align, ResNet18 on one crop at a time."""
    import av
    import torch
    from facenet_pytorch import MTCNN

    from emi_hf.media.alignment import align_face
    from emi_hf.backbones_emi import build_resnet18_trunk

    device = bench_device()
    mtcnn = MTCNN(keep_all=True, device=device)
    resnet = build_resnet18_trunk().eval().to(device)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device)[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225], device=device)[:, None, None]
    frames = with_face = 0
    began = time.perf_counter()
    with av.open(str(path)) as container, torch.inference_mode():
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="rgb24")
            boxes, probs, points = mtcnn.detect(image, landmarks=True)
            frames += 1
            if boxes is not None and len(boxes):
                largest = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
                crop = align_face(image, points[largest], 112)
                x = (torch.from_numpy(crop).to(device).permute(2, 0, 1).float() / 255 - mean) / std
                resnet(x[None])
                with_face += 1
            if max_frames and frames >= max_frames:
                break
    wall = time.perf_counter() - began
    return {"wall_s": wall, "frames": frames, "face_fraction": with_face / max(frames, 1)}


def bench_visual(media: Path, long_clip: Path | None, quick: bool) -> None:
    from emi_hf.pretrained import build_visual_base

    visual_model, _ = build_visual_base("random")
    visual_model.eval().to(bench_device())
    wolf = media / "WolfgangLanger_Pexels.mp4"
    n_src, duration = source_frames(wolf)
    source_fps = n_src / duration
    reference = reference_visual(wolf)
    ref_fps = reference["frames"] / reference["wall_s"]
    row("visual", "reference loop (MTCNN every frame, ResNet18 per crop), WolfgangLanger", round(ref_fps, 1),
        "source fps", note=f"{ref_fps / source_fps:.2f}x real time, faces in {100 * reference['face_fraction']:.1f}%")
    for detector, realtime_target in (("mediapipe", 2.0), ("mtcnn", 1.0)):
        package_visual(wolf, detector, visual_model)  # warm-up: model loading, first-call allocations
        result = package_visual(wolf, detector, visual_model)
        fps = n_src / result["wall_s"]
        x_rt = fps / source_fps
        speedup = fps / ref_fps
        face_gap = abs(result["face_fraction"] - reference["face_fraction"]) * 100
        row("visual", f"package path, {detector}, WolfgangLanger (19.7 s)", round(fps, 1), "source fps",
            target=f">= {realtime_target * source_fps:.0f} fps", passed=x_rt >= realtime_target,
            note=f"{x_rt:.2f}x real time")
        row("visual", f"speed-up over the reference loop, {detector}", round(speedup, 2), "x", target=">= 5x",
            passed=speedup >= 5)
        row("visual", f"faces found, {detector} vs reference", round(100 * result["face_fraction"], 1), "% of frames",
            target=f"within 2 points of {100 * reference['face_fraction']:.1f}%", passed=face_gap <= 2.0)
    if long_clip is not None:
        n_long, long_duration = source_frames(long_clip)
        for detector in ("mediapipe",) if quick else ("mediapipe", "mtcnn"):
            result = package_visual(long_clip, detector, visual_model)
            fps = n_long / result["wall_s"]
            row("visual", f"package path, {detector}, long clip ({long_duration / 60:.1f} min)", round(fps, 1),
                "source fps", note=f"{long_duration / result['wall_s']:.2f}x real time, "
                                   f"faces in {100 * result['face_fraction']:.1f}%")
        if not quick:
            reference = reference_visual(long_clip, max_frames=1500)
            row("visual", "reference loop, first 1500 frames of the long clip",
                round(reference["frames"] / reference["wall_s"], 1), "source fps",
                note=f"faces in {100 * reference['face_fraction']:.1f}% (full run would take "
                     f"{n_long / (reference['frames'] / reference['wall_s']) / 60:.0f} min)")


def bench_audio(media: Path, long_clip: Path | None) -> None:
    import torch

    from emi_hf import EmiAudioConfig, EmiAudioModel, EmiProcessor
    from emi_hf.data.extraction import embed_waveform
    from emi_hf.media.decoding import decode_audio

    model = EmiAudioModel(EmiAudioConfig()).eval().to(bench_device())
    processor = EmiProcessor()
    inputs = [media / "debate_5s.mp4"] + ([long_clip] if long_clip is not None else [])
    warm = np.random.default_rng(0).normal(size=16000 * 30).astype(np.float32)  # a full 30 s window
    for precision in ("float32", "bfloat16"):
        model.config.backbone_precision = precision
        label = "" if precision == "float32" else ", opt-in bfloat16 (backbone_precision)"
        with torch.inference_mode():
            embed_waveform(processor, model, warm)  # warm-up: oneDNN primitives for the window shapes
            embed_waveform(processor, model, warm[: 16000 * 5])
            for path in inputs:
                began = time.perf_counter()
                waveform, _ = decode_audio(path, sampling_rate=16000, peak_db=-3.0)
                embed_waveform(processor, model, waveform)
                wall = time.perf_counter() - began
                seconds = len(waveform) / 16000
                row("audio", f"decode + wav2vec2-base-sized encoder{label}, {path.name} ({seconds:.0f} s)",
                    round(seconds / wall, 1), "x real time", target=">= 10x", passed=seconds / wall >= 10)


def bench_train(quick: bool) -> None:
    from emi_hf.training.benchmark import time_visual_epoch

    for precision in ("no", "bf16"):
        result = time_visual_epoch(num_clips=2000 if quick else 8072, frames=150, mixed_precision=precision)
        label = "" if precision == "no" else ", opt-in bf16 autocast (--mixed-precision bf16)"
        row("train", f"one epoch, visual model{label}, {result['num_clips']} clips x {result['frames']} frames",
            round(result["epoch_s"], 1), "s", target="< 60 s" if not quick else None,
            passed=(result["epoch_s"] < 60) if not quick else None,
            note=f"batch {result['batch_size']}, {result['clips_per_s']:.0f} clips/s")


def bench_predict(media: Path, long_clip: Path) -> None:
    """Base-sized fusion checkpoint (random weights) saved with a processor; load + predict a 10 s clip."""
    import torch

    from emi_hf import EmiAudioConfig, EmiFusionConfig, EmiFusionModel, EmiProcessor, EmiVisualConfig

    clip = cut_clip(long_clip, long_clip.with_name("clip_10s.mp4"), start=19.7, duration=10.0)
    with tempfile.TemporaryDirectory() as folder:
        model = EmiFusionModel(EmiFusionConfig(visual_config=EmiVisualConfig(), audio_config=EmiAudioConfig()))
        model.save_pretrained(folder)
        for detector in ("mediapipe", "mtcnn"):
            EmiProcessor(face_detector=detector, use_cache=False).save_pretrained(folder)
            script = (
                "import time, json, torch; torch.set_num_threads(%d)\n"
                "t0 = time.perf_counter()\n"
                "from emi_hf.inference import load_for_inference, predict_clips\n"
                "model, processor = load_for_inference(%r)\n"
                "t1 = time.perf_counter()\n"
                "result = predict_clips(model, processor, [%r])[0]\n"
                "t2 = time.perf_counter()\n"
                "print('RESULT', json.dumps({'load_s': t1 - t0, 'compute_s': t2 - t1, 'timing': result.timing}))\n"
            ) % (torch.get_num_threads(), folder, str(clip))
            began = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=os.environ)
            wall = time.perf_counter() - began
            line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")]
            if not line:
                row("predict", f"10 s clip, {detector}", "error", "", note=out.stderr[-300:])
                continue
            result = json.loads(line[0][7:])
            row("predict", f"10 s clip end to end, {detector} (process wall time)", round(wall, 2), "s",
                target="< 5 s", passed=wall < 5.0,
                note=f"import+load {result['load_s']:.2f} s, preprocess {result['timing']['preprocess_s']:.2f} s, "
                     f"model {result['timing']['compute_s']:.2f} s")


def bench_memory(media: Path, short_clip: Path, long_clip: Path) -> None:
    """Peak RSS of one clip's feature extraction (processor + both backbones), each in a fresh process."""
    peaks = {}
    for name, path in (("1-minute", short_clip), ("5-minute", long_clip)):
        script = (
            "import resource, torch; torch.set_num_threads(2)\n"
            "from emi_hf import EmiProcessor\n"
            "from emi_hf.data.extraction import extract_clip_features\n"
            "from emi_hf.pretrained import build_audio_base, build_visual_base\n"
            "processor = EmiProcessor(face_detector='mediapipe', use_cache=False)\n"
            "visual, _ = build_visual_base('random'); audio, _ = build_audio_base('random')\n"
            "features = extract_clip_features(processor, visual.eval(), audio.eval(), %r, '00000', None)\n"
            # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's peak.
            "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print('RESULT', int(peak) / 1024, features.visual_features.shape[0])\n"
        ) % str(path)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")]
        if not line:
            row("memory", f"extraction peak RSS, {name} clip", "error", "", note=out.stderr[-300:])
            continue
        peak_mb, frames = float(line[0].split()[1]), int(line[0].split()[2])
        _, duration = source_frames(path)
        peaks[name] = peak_mb
        row("memory", f"extraction peak RSS, {name} clip ({duration:.0f} s, {frames} frames)", round(peak_mb),
            "MiB", target="< 2048 MiB", passed=peak_mb < 2048)
    if len(peaks) == 2:
        growth = peaks["5-minute"] - peaks["1-minute"]
        row("memory", "growth from the 1-minute to the 5-minute clip", round(growth), "MiB",
            target="no growth with length (< 5% of the 1-minute peak)", passed=growth < 0.05 * peaks["1-minute"])


def write_table(path: Path, machine: str, threads: int, seconds: float, sections: list[str]) -> None:
    """Writes the table (`table.write_results`); rows of sections not run this time are kept from the previous
    results file, each with its own date and machine, unless a row of this run replaces them (same section and
    label: e.g. the streaming section's rows with the words, measured again by the section streaming_words)."""
    previous = path.with_suffix(".json")
    if previous.exists():
        remeasured = {(r["section"], r["what"]) for r in ROWS if r["section"] not in APPEND_SECTIONS}
        kept = [r for r in json.loads(previous.read_text())["rows"]
                if (r["section"] not in sections or r["section"] in APPEND_SECTIONS)
                and (r["section"], r["what"]) not in remeasured]
        ROWS[:0] = kept
    latest = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine, "threads": threads,
              "sections": list(sections), "wall_min": round(seconds / 60, 1)}
    print("\n" + write_results(path, ROWS, latest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media-dir", default=str(REPO.parent / "shared" / "media"))
    parser.add_argument("--work-dir", default=str(REPO / ".cache" / "benchmarks"))
    parser.add_argument("--output", default=str(HERE / "results.md"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sections", nargs="+", default=CORE_SECTIONS + [name for name in SECTION_MODULES if name not in OPT_IN_SECTIONS],
                        help="sections to run; the rows of the others are kept from the previous results file")
    parser.add_argument("--quick", action="store_true")
    for section in OPTION_SECTIONS:
        importlib.import_module(SECTION_MODULES[section]).add_arguments(parser)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    media = Path(args.media_dir)
    needs_media = [s for s in args.sections if s not in MEDIA_FREE_SECTIONS]
    if needs_media and not media.is_dir():
        raise SystemExit(f"media folder {media} not found: pass --media-dir (the shared/media folder)")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    began = time.time()
    short_clip = long_clip = None
    if any(s in args.sections for s in CORE_SECTIONS):
        short_clip = build_long_clip(media, work / "long_1min.mp4", min_duration_s=60)
        long_clip = None if args.quick else build_long_clip(media, work / "long_5min.mp4", min_duration_s=300)
    machine = device_name()
    print(f"machine: {machine}; threads: {args.threads}")
    if "visual" in args.sections:
        bench_visual(media, long_clip, args.quick)
    if "audio" in args.sections:
        bench_audio(media, long_clip or short_clip)
    if "train" in args.sections:
        bench_train(args.quick)
    if "predict" in args.sections:
        bench_predict(media, short_clip)
    if "memory" in args.sections and long_clip is not None:
        bench_memory(media, short_clip, long_clip)
    for section, module_name in SECTION_MODULES.items():
        if section in args.sections:
            options = {"args": args} if section in OPTION_SECTIONS else {}
            importlib.import_module(module_name).run(media=media, work=work, quick=args.quick, **options)
    write_table(Path(args.output), machine, args.threads, time.time() - began, args.sections)


if __name__ == "__main__":
    main()
