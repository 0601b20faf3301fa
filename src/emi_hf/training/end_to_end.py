"""End-to-end training from raw inputs: face crops or waveforms through the backbone, its last blocks fine-tuned.

`train.py --features DIR --raw-data DATA --modality visual|audio --trainable-backbone-layers N` trains a visual or
audio model whose backbone's last N blocks (and the norms / pooler after them; `encoders_emi.unfreeze_last_blocks`)
learn with the temporal part, from the clips of the Hume-Vidmimic2 folder DATA rather than from the cached
features: the features folder DIR still gives the base model (its backbone, AU names, speech encoder), the processor
and the label names. Each clip goes through the processor once (its clip cache keeps the decoded, aligned crops,
AUs and waveform for the next epochs), then every step runs the backbone with gradients. `--gradient-checkpointing`
recomputes the backbone's and the temporal model's layers in the backward pass where their library offers it
(transformers, timm; torchvision models run without), `--mixed-precision bf16|fp16` autocasts through accelerate.
With frozen backbones the cached features (`train.py` without `--raw-data`) are the fast path.

The backbone learns at `BACKBONE_LR_SCALE` times the learning rate. The best epoch (validation mean Pearson) is saved
with the processor and results.json, as a cached-features run saves it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.layout import load_hume_vidmimic2
from ..data.store import load_feature_splits
from ..encoders_emi import enable_backbone_checkpointing, enable_model_checkpointing
from ..results import write_results
from .evaluation import metric_block
from .models import build_model, model_summary

BACKBONE_LR_SCALE = 0.1
"""Learning rate of the fine-tuned backbone blocks, relative to `lr` (the temporal part's)."""


class RawClips(torch.utils.data.Dataset):
    """Clips of a split as processed by `processor` (face crops uint8, AUs, frame mask, waveform, labels); in
    training at most `max_frames` frames (a random window), otherwise whole (the model windows long clips)."""

    def __init__(self, records, processor, max_frames: int | None, training: bool, seed: int = 0):
        self.records, self.processor, self.max_frames, self.training = list(records), processor, max_frames, training
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        clip = self.processor.process_clip(str(record.path), keep_crops=True)
        start, stop = 0, clip.num_frames
        if self.training and self.max_frames and clip.num_frames > self.max_frames:
            start = int(self.rng.integers(0, clip.num_frames - self.max_frames + 1))
            stop = start + self.max_frames
        return {"crops": clip.face_crops[start:stop], "au": clip.au_intensities[start:stop],
                "mask": clip.frame_mask[start:stop], "waveform": clip.waveform, "labels": record.labels}


def collate_raw(items: list[dict], processor, modality: str, num_labels: int) -> dict:
    """Model inputs of a batch of `RawClips` items: `pixel_values` `[B, T, 3, S, S]`, `au_features`, `frame_mask`
    (visual) or `input_values` / `attention_mask` (audio; all-zero mask for a clip without audio), and `labels`."""
    labels = [item["labels"] if item["labels"] is not None else np.full(num_labels, np.nan) for item in items]
    batch = {"labels": torch.tensor(np.stack(labels), dtype=torch.float32)}
    if modality == "visual":
        frames = max(max(len(item["mask"]) for item in items), 1)
        side = processor.face_size
        batch["pixel_values"] = torch.zeros(len(items), frames, 3, side, side)
        batch["au_features"] = torch.zeros(len(items), frames, items[0]["au"].shape[-1])
        batch["frame_mask"] = torch.zeros(len(items), frames, dtype=torch.long)
        for i, item in enumerate(items):
            count = len(item["mask"])
            if count:
                pixels = processor.video_processor(videos=[item["crops"]], return_tensors="pt")["pixel_values"][0]
                batch["pixel_values"][i, :count] = pixels
                batch["au_features"][i, :count] = torch.as_tensor(item["au"], dtype=torch.float32)
                batch["frame_mask"][i, :count] = torch.as_tensor(item["mask"], dtype=torch.long)
        return batch
    silent = np.zeros(400, np.float32)
    waves = [item["waveform"] if item["waveform"] is not None and len(item["waveform"]) >= 400 else silent
             for item in items]
    audio = processor.feature_extractor(waves, sampling_rate=processor.sampling_rate, padding=True,
                                        return_attention_mask=True, return_tensors="pt")
    present = torch.tensor([wave is not silent for wave in waves])[:, None]
    batch.update(input_values=audio["input_values"], attention_mask=audio["attention_mask"] * present)
    return batch


def prepare_fine_tuning(model, args) -> list[torch.nn.Parameter]:
    """Unfreezes the backbone's last `args.trainable_backbone_layers` blocks and turns on gradient checkpointing
    when asked; returns the backbone parameters that train."""
    model.config.trainable_backbone_layers = int(args.trainable_backbone_layers)
    model._freeze()
    if args.gradient_checkpointing:
        enable_model_checkpointing(model)
        enable_backbone_checkpointing(model.backbone)
    return [p for p in model.backbone.parameters() if p.requires_grad]


def _loader(records, processor, args, modality, num_labels, training: bool):
    dataset = RawClips(records, processor, args.max_frames, training, seed=args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size if training else (args.eval_batch_size or args.batch_size),
        shuffle=training, generator=generator,
        collate_fn=lambda items: collate_raw(items, processor, modality, num_labels))


def _evaluate(model, loader, label_names) -> dict:
    model.eval()
    predictions, masks, labels = [], [], []
    with torch.inference_mode():
        for batch in loader:
            output = model(**{k: v for k, v in batch.items() if k != "labels"})
            predictions.append(output.intensities.float().cpu().numpy())
            masks.append(output.modality_mask.cpu().numpy())
            labels.append(batch["labels"].cpu().numpy())
    return metric_block(np.concatenate(predictions), np.concatenate(masks), np.concatenate(labels), label_names)


def _train_epoch(model, loader, optimizer, accelerator, args) -> float:
    model.train()
    losses = []
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if args.max_grad_norm and accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        losses.append(float(loss.detach()))
    return float(np.mean(losses)) if losses else float("nan")


def train_end_to_end(args) -> dict:
    """Trains `args.modality` (visual or audio) end to end from the raw clips of `args.raw_data` (module docstring);
    saves the best epoch to `args.output_dir`. Returns the results dict."""
    from accelerate import Accelerator

    from ..processing_emi import EmiProcessor

    if args.modality not in ("visual", "audio"):
        raise ValueError("End-to-end training (--raw-data) trains one modality: train the visual and the audio model "
                         "this way, then fuse them with --modality fusion --fusion-mode late.")
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    _, metadata, root = load_feature_splits(args.features)
    if not metadata.get("processor_path"):
        raise ValueError(f"{args.features} has no processor folder: end-to-end training needs the features folder "
                         "of an `emi-hf extract` run (its processor and base models).")
    processor = EmiProcessor.from_pretrained(root / metadata["processor_path"])
    model, note = build_model(args, metadata, root)
    if args.modality == "visual":  # the crop training shows it; audio trains on whole waveforms (windowed if long)
        model.config.temporal_window = args.max_frames or None
    backbone_parameters = prepare_fine_tuning(model, args)
    label_names = list(metadata["label_names"])
    records = load_hume_vidmimic2(args.raw_data, splits=(*args.train_splits, args.eval_split))
    train_records = [r for split in args.train_splits for r in records.get(split, [])]
    accelerator = Accelerator(cpu=args.cpu, mixed_precision=args.mixed_precision,
                              gradient_accumulation_steps=args.grad_accum)
    backbone_ids = {id(p) for p in backbone_parameters}
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids]
    groups = [{"params": head, "lr": args.lr}]
    if backbone_parameters:
        groups.append({"params": backbone_parameters, "lr": args.lr * BACKBONE_LR_SCALE})
    optimizer = torch.optim.AdamW(groups, weight_decay=args.weight_decay)
    train_loader = _loader(train_records, processor, args, args.modality, len(label_names), training=True)
    eval_loader = _loader(records.get(args.eval_split, []), processor, args, args.modality, len(label_names), False)
    model, optimizer, train_loader, eval_loader = accelerator.prepare(model, optimizer, train_loader, eval_loader)
    output_dir = Path(args.output_dir or f"runs/{args.modality}_end_to_end")
    best, history = None, []
    for epoch in range(args.epochs):
        loss = _train_epoch(model, train_loader, optimizer, accelerator, args)
        block = _evaluate(model, eval_loader, label_names)
        history.append({"epoch": epoch + 1, "train_loss": loss, "mean_pearson": block["mean_pearson"]})
        score = block["mean_pearson"] if block["mean_pearson"] is not None else float("-inf")
        if best is None or score > best[0]:
            best = (score, block)
            if accelerator.is_main_process:
                accelerator.unwrap_model(model).save_pretrained(output_dir)
                processor.save_pretrained(output_dir)
    unwrapped = accelerator.unwrap_model(model)
    results = {
        "modality": args.modality, "dataset": args.dataset_name or Path(args.raw_data).name,
        "validation": best[1] if best and best[1]["mean_pearson"] is not None else None,
        "label_names": label_names, "eval_split": args.eval_split, "history": history, "model_source": note,
        "training": {"end_to_end": True, "trainable_backbone_layers": int(args.trainable_backbone_layers),
                     "gradient_checkpointing": bool(args.gradient_checkpointing),
                     "mixed_precision": args.mixed_precision, "learning_rate": args.lr,
                     "backbone_learning_rate": args.lr * BACKBONE_LR_SCALE, "epochs": args.epochs,
                     "batch_size": args.batch_size, "max_frames": args.max_frames, **model_summary(unwrapped)},
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    if accelerator.is_main_process:
        write_results(output_dir, results)
    accelerator.end_training()
    return results


__all__ = ["BACKBONE_LR_SCALE", "RawClips", "collate_raw", "prepare_fine_tuning", "train_end_to_end"]
