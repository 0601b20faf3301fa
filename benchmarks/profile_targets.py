"""Profiles behind the benchmark figures that miss their targets; writes text files to benchmarks/profiles/.

    python benchmarks/profile_targets.py                 # all (about 3 minutes on 2 CPU cores)
    python benchmarks/profile_targets.py --only audio    # any of: visual audio train predict imports memory

- visual_<detector>.txt: pyinstrument over the package's visual path on WolfgangLanger_Pexels.mp4 (main thread;
  the face backbone runs in the embedder thread, whose wait shows as `EmbeddingWorker.finish`).
- audio_wav2vec2_base_30s.txt: torch profiler operator table for one 30 s window of a wav2vec2-base-sized encoder.
- train_step_visual.txt: torch profiler operator table for 5 training steps of the default visual model
  (batch 32 x 150 frames), and the measured step time.
- predict_10s.txt: pyinstrument over `load_for_inference` + `predict_clips` on the 10 s clip, in-process.
- import_emi_hf.txt: `python -X importtime -c "import emi_hf"`, the 25 slowest cumulative imports.
- memory_stages.txt: peak and resident RSS after each stage of one clip's extraction, 1- and 5-minute clips.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "profiles"
sys.path.insert(0, str(HERE))


def _header(title: str) -> str:
    from run_benchmarks import device_name

    import torch

    return (f"# {title}\n# measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {device_name()}, "
            f"{torch.get_num_threads()} torch threads\n\n")


def profile_visual(media: Path, detector: str) -> None:
    from pyinstrument import Profiler

    from emi_hf import EmiProcessor
    from emi_hf.face_embedding import FaceEmbedder
    from emi_hf.pretrained import build_visual_base

    visual, _ = build_visual_base("random")
    visual.eval()
    processor = EmiProcessor(face_detector=detector, use_cache=False)
    embedder = FaceEmbedder(processor, visual)
    path = media / "WolfgangLanger_Pexels.mp4"
    processor.process_clip(path, face_embedder=embedder)  # warm-up
    profiler = Profiler(interval=0.002)
    began = time.perf_counter()
    profiler.start()
    processor.process_clip(path, face_embedder=embedder)
    profiler.stop()
    wall = time.perf_counter() - began
    text = profiler.output_text(unicode=False, color=False)
    (OUT / f"visual_{detector}.txt").write_text(
        _header(f"visual path, {detector}, WolfgangLanger_Pexels.mp4 (472 source frames): {wall:.2f} s "
                f"({472 / wall:.1f} source fps, under the profiler)") + text)


def profile_audio() -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from emi_hf import EmiAudioConfig, EmiAudioModel

    model = EmiAudioModel(EmiAudioConfig()).eval()
    waveform = torch.randn(1, 16000 * 30)
    with torch.inference_mode():
        model.embed_audio(waveform)  # warm-up (oneDNN primitives)
        began = time.perf_counter()
        model.embed_audio(waveform)
        wall = time.perf_counter() - began
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.embed_audio(waveform)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    flops = (
        "# Cost of wav2vec2-base per second of audio: transformer linears 85M params x 2 x 50 frames = 8.5 GFLOP;\n"
        "# conv feature encoder 4.9 GFLOP; positional conv 0.5 GFLOP; attention grows with the window.\n"
        f"# 30 s window: {wall:.2f} s = {30 / wall:.1f}x real time, i.e. about {14 * 30 / wall:.0f} GFLOP/s sustained.\n\n"
    )
    (OUT / "audio_wav2vec2_base_30s.txt").write_text(
        _header("speech encoder (wav2vec2-base size, random weights), one 30 s window, float32") + flops + table)


def profile_train() -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from emi_hf import EmiVisualConfig, EmiVisualModel

    torch.manual_seed(0)
    model = EmiVisualModel(EmiVisualConfig()).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch, frames = 32, 150
    inputs = dict(visual_features=torch.randn(batch, frames, 512), au_features=torch.rand(batch, frames, 13),
                  frame_mask=torch.ones(batch, frames, dtype=torch.long), labels=torch.rand(batch, 6))

    def step():
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(3):
        step()
    began = time.perf_counter()
    for _ in range(10):
        step()
    step_s = (time.perf_counter() - began) / 10
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)
    (OUT / "train_step_visual.txt").write_text(
        _header(f"visual model training step, batch {batch} x {frames} frames: {1000 * step_s:.0f} ms a step "
                f"= {8072 / batch * step_s:.1f} s for 8,072 clips (model only, no data loading)") + table)


def profile_predict(media: Path) -> None:
    from long_clip import build_long_clip, cut_clip
    from pyinstrument import Profiler

    from emi_hf import EmiAudioConfig, EmiFusionConfig, EmiFusionModel, EmiProcessor, EmiVisualConfig
    from emi_hf.inference import load_for_inference, predict_clips

    work = REPO / ".cache" / "benchmarks"
    work.mkdir(parents=True, exist_ok=True)
    long_clip = build_long_clip(media, work / "long_1min.mp4", min_duration_s=60)
    clip = cut_clip(long_clip, long_clip.with_name("clip_10s.mp4"), start=19.7, duration=10.0)
    with tempfile.TemporaryDirectory() as folder:
        EmiFusionModel(EmiFusionConfig(visual_config=EmiVisualConfig(), audio_config=EmiAudioConfig())
                       ).save_pretrained(folder)
        EmiProcessor(face_detector="mediapipe", use_cache=False).save_pretrained(folder)
        profiler = Profiler(interval=0.002)
        began = time.perf_counter()
        profiler.start()
        model, processor = load_for_inference(folder)
        loaded = time.perf_counter()
        predict_clips(model, processor, [str(clip)])
        profiler.stop()
        done = time.perf_counter()
    (OUT / "predict_10s.txt").write_text(
        _header(f"predict, 10 s clip, mediapipe, in-process after imports: load {loaded - began:.2f} s, "
                f"predict {done - loaded:.2f} s") + profiler.output_text(unicode=False, color=False))


MEMORY_SCRIPT = r"""
import sys, threading, time, psutil, torch
torch.set_num_threads(2)
process = psutil.Process(); peaks = {}; stage = ["imports"]; lines = []
def sample():
    while True:
        peaks[stage[0]] = max(peaks.get(stage[0], 0), process.memory_info().rss); time.sleep(0.003)
threading.Thread(target=sample, daemon=True).start()
def mark(name):
    time.sleep(0.02)
    lines.append(f"{stage[0]:>40}: peak {peaks.get(stage[0], 0) / 2**20:6.0f} MiB, "
                 f"after {process.memory_info().rss / 2**20:6.0f} MiB")
    stage[0] = name
from emi_hf import EmiProcessor
from emi_hf.data.extraction import embed_waveform
from emi_hf.face_embedding import FaceEmbedder
from emi_hf.pretrained import build_audio_base, build_visual_base
mark("build processor + both backbones")
processor = EmiProcessor(face_detector="mediapipe", use_cache=False)
visual, _ = build_visual_base("random"); audio, _ = build_audio_base("random")
visual.eval(); audio.eval()
mark("process_clip (decode, faces, AUs, ResNet18)")
clip = processor.process_clip(sys.argv[1], face_embedder=FaceEmbedder(processor, visual))
mark("speech encoder (30 s windows)")
frames, mask = embed_waveform(processor, audio, clip.waveform)
mark("end")
outputs = clip.face_embeddings.nbytes + clip.au_intensities.nbytes + clip.waveform.nbytes + frames.nbytes
print("\n".join(lines)); print(f"outputs held at the end: {outputs / 2**20:.0f} MiB "
      f"(face embeddings, AUs, waveform, speech frames) for {clip.num_frames} frames")
"""


def profile_memory() -> None:
    work = REPO / ".cache" / "benchmarks"
    parts = []
    for name in ("long_1min.mp4", "long_5min.mp4"):
        path = work / name
        if not path.exists():
            parts.append(f"{name}: not built yet (run benchmarks/run_benchmarks.py first)")
            continue
        out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(path)], capture_output=True, text=True)
        parts.append(f"## {name}\n{out.stdout.strip() or out.stderr[-500:]}")
    (OUT / "memory_stages.txt").write_text(
        _header("RSS per stage of one clip's extraction (sampled every 3 ms, fresh process per clip)")
        + "\n\n".join(parts) + "\n")


def profile_imports() -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import emi_hf"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    rows = []
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = line.split("|")
            try:
                rows.append((int(parts[1]), parts[2].rstrip()))
            except ValueError:
                continue
    rows.sort(reverse=True)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import emi_hf"], capture_output=True)
    wall = time.perf_counter() - began
    lines = [f"{cumulative / 1e6:8.3f} s  {name}" for cumulative, name in rows[:25]]
    (OUT / "import_emi_hf.txt").write_text(
        _header(f"`python -c 'import emi_hf'` wall time {wall:.2f} s (interpreter start included); "
                "slowest cumulative imports (python -X importtime)") + "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media-dir", default=str(REPO.parent / "shared" / "media"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+",
                        default=["visual", "audio", "train", "predict", "imports", "memory"])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    OUT.mkdir(exist_ok=True)
    media = Path(args.media_dir)
    if "visual" in args.only:
        for detector in ("mediapipe", "mtcnn"):
            profile_visual(media, detector)
    if "audio" in args.only:
        profile_audio()
    if "train" in args.only:
        profile_train()
    if "predict" in args.only:
        profile_predict(media)
    if "imports" in args.only:
        profile_imports()
    if "memory" in args.only:
        profile_memory()
    print(f"profiles written to {OUT}")


if __name__ == "__main__":
    main()
