"""Epoch time of the training loop on Hume-Vidmimic2-sized synthetic features (used by benchmarks/run_benchmarks.py).

    python -m emi_hf.training.benchmark --modality visual --num-clips 8072 --frames 150 --threads 2

Writes random features of the given size (`make_feature_dataset`, constant lengths) to a temporary folder, then
times one epoch of the real loop (`train`, default model size, batch 32, fp32) and, separately, one pass of the
data pipeline alone (batches assembled, no model), so the two costs can be told apart.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def time_epoch(
    modality: str = "visual",
    num_clips: int = 8072,
    frames: int = 150,
    audio_frames: int = 250,
    batch_size: int = 32,
    num_valid: int = 64,
    threads: int | None = None,
    mixed_precision: str = "no",
    workdir: str | Path | None = None,
    **training_overrides,
) -> dict:
    """
    Times one training epoch over `num_clips` synthetic clips of `frames` video frames (512-d embeddings + 13 AUs)
    and `audio_frames` 768-d audio frames. For `modality="visual"` the audio columns are written 1 frame long (they
    are not read) to keep the folder small. Returns `{"epoch_s", "data_s", "eval_s", "clips_per_s", ...}`.
    """
    import torch

    from ..data.random_features import make_feature_dataset
    from ..data.store import load_feature_splits
    from .arguments import DEFAULT_MAX_AUDIO_FRAMES, DEFAULT_MAX_FRAMES, EmiTrainingArguments
    from .evaluation import build_loader
    from .loop import train

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        folder = Path(folder)
        audio_length = audio_frames if modality != "visual" else 1
        began = time.perf_counter()
        make_feature_dataset(folder / "features", num_train=num_clips, num_valid=num_valid, frames=(frames, frames),
                             audio_frames=(audio_length, audio_length), audio_dim=768, no_face_fraction=0.0,
                             no_audio_fraction=0.0)
        generate_s = time.perf_counter() - began

        datasets, metadata, _ = load_feature_splits(folder / "features")
        began = time.perf_counter()
        loader = build_loader(datasets["train"], modality, len(metadata["label_names"]), batch_size,
                              DEFAULT_MAX_FRAMES, DEFAULT_MAX_AUDIO_FRAMES, shuffle_seed=0)
        num_batches = sum(1 for _ in loader)
        data_s = time.perf_counter() - began

        results = train(EmiTrainingArguments(
            features=str(folder / "features"), modality=modality, output_dir=str(folder / "run"), epochs=1,
            batch_size=batch_size, report_to="none", patience=0, mixed_precision=mixed_precision,
            no_base_model=True,  # random features: no backbone made them
            **training_overrides,
        ))
    epoch = results["history"][0]
    return {
        "modality": modality,
        "num_clips": num_clips,
        "frames": frames if modality != "audio" else None,
        "audio_frames": audio_frames if modality != "visual" else None,
        "batch_size": batch_size,
        "num_batches": num_batches,
        "threads": torch.get_num_threads(),
        "mixed_precision": mixed_precision,
        "epoch_s": epoch["train_s"],
        "clips_per_s": num_batches * batch_size / epoch["train_s"],
        "data_s": round(data_s, 3),
        "eval_s": epoch["eval_s"],
        "generate_s": round(generate_s, 1),
        "trainable_parameters": results["training"]["trainable_parameters"],
    }


def time_visual_epoch(num_clips: int = 8072, frames: int = 150, **kwargs) -> dict:
    """One epoch of the visual model (the figure benchmarks/run_benchmarks.py reports)."""
    return time_epoch("visual", num_clips=num_clips, frames=frames, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", default="visual", choices=("visual", "audio", "fusion"))
    parser.add_argument("--num-clips", type=int, default=8072)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--audio-frames", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))
    parser.add_argument("--workdir", help="where to write the temporary features (default: the system temp dir)")
    args = parser.parse_args(argv)
    result = time_epoch(args.modality, args.num_clips, args.frames, args.audio_frames, args.batch_size,
                        threads=args.threads, mixed_precision=args.mixed_precision, workdir=args.workdir)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
