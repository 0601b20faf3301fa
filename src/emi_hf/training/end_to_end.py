"""End-to-end fine-tuning: the raw clips of a data folder as a dataset of the training loop, the backbone's last
blocks trained.

`train.py --features DIR --raw-data DATA --modality visual|audio --trainable-backbone-layers N` trains a visual or
audio model whose backbone's last N blocks (ResNet blocks, speech-encoder layers, and the norms / pooler after them;
`encoders_emi.unfreeze_last_blocks`) learn with the temporal part, from the clips of the Hume-Vidmimic2 folder DATA
rather than from the cached features. It is the same loop as training on cached features (`training.loop`): the
same warm-up then cosine schedule, resume from epoch checkpoints, early stopping, validation gathered from every
process, best model, checkpoints and results.json. Only the dataset differs:

- [`RawClipDataset`] decodes the clips of a split when a batch needs them. Visual: frames, face crops and AUs through
  the processor of the features folder (`media.images.process_clip_inputs`, as extraction runs it); audio: the
  waveform alone, decoded with the processor's audio settings (no frame, face or AU is computed). Nothing is written to disk, unless
  `--raw-clip-cache` (visual) keeps each processed clip in the clip cache (`emi_hf.media.cache`, under its size
  cap) so that later epochs skip decoding and face detection.
- Long clips are cut to windows by the rule of the cached features (`training.data`): in training a window at a
  random position drawn from (seed, epoch, clip), so that the crops are the same for any number of processes and
  after a resume; in evaluation the whole clip (the model scores long clips in windows of the trained length:
  `temporal_window`, set to the crop). `max_frames` counts video frames; `max_audio_frames` counts
  encoder frames, `max_audio_frames * inputs_to_logits_ratio` samples of the waveform (320 at 16 kHz for
  wav2vec2-base, HuBERT, WavLM and Whisper).
- A clip that cannot be decoded (`EmiInputError`) is reported once with its file and then counts as a clip without
  that modality: left out of the loss and of the metric, as a clip without a face is.

The features folder DIR still gives the base model (its backbone, AU names, speech encoder), the processor and the
label names. The backbone learns at `BACKBONE_LR_SCALE` times the learning rate (its own parameter groups, on the same
schedule). `--gradient-checkpointing` recomputes the backbone's and the temporal model's layers in the backward pass
where their library offers it (transformers, timm; torchvision models run without), `--mixed-precision bf16|fp16`
autocasts through accelerate (bf16 works on CPUs). With frozen backbones the cached features (`train.py` without
`--raw-data`) are the fast path.

Differences from the cached features that remain: the audio of a raw clip starts at the file's first sample (the
extraction aligns it to the first video frame, which for the usual files is the same instant); augmentation is a
plain hook (`RawClipDataset(transform=...)`, called on each training item), with no augmentation by default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data.layout import load_hume_vidmimic2
from ..models.encoders_emi import enable_backbone_checkpointing, enable_model_checkpointing
from ..errors import EmiUsageError
from ..media.errors import EmiInputError
from .data import CROP_STREAM, EpochBatchSampler, _window, make_loader

logger = logging.getLogger("emi_hf.training")

BACKBONE_LR_SCALE = 0.1
"""Learning rate of the fine-tuned backbone blocks, relative to `lr` (the temporal part's)."""

END_TO_END_MODALITIES = ("visual", "audio")
DEFAULT_SAMPLES_PER_AUDIO_FRAME = 320  # 50 Hz encoder frames at 16 kHz


def collate_raw(items: list[dict], processor, modality: str, num_labels: int) -> dict:
    """Model inputs of a batch of [`RawClipDataset`] items: `pixel_values` `[B, T, 3, S, S]`, `au_features`,
    `frame_mask` (visual) or `input_values` / `attention_mask` (audio; all-zero mask for a clip without audio), and
    `labels` (NaN for an unlabeled clip)."""
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


class RawClipDataset(torch.utils.data.Dataset):
    """
    The clips of a split (`ClipRecord`s of `data.layout.load_hume_vidmimic2`) decoded through `processor` when a
    batch needs them (module docstring). Like the cached features' `ClipBatchDataset`, `__getitems__` returns a whole
    batch (`collate_raw`'s model inputs and labels, `index` `[B]`, the clips' rows, and with `clip_weights` `weights`
    `[B]`), and `set_epoch` draws the epoch's windows. `transform(item) -> item` (training only) is the augmentation
    hook: an item holds `crops` uint8 `[T, S, S, 3]`, `au`, `mask` (visual) or `waveform` float32 (audio), and
    `labels`.
    """

    def __init__(self, records: Sequence, processor, modality: str, num_labels: int, max_frames: int | None = None,
                 max_audio_samples: int | None = None, random_crop: bool = False, seed: int = 0,
                 clip_weights: np.ndarray | None = None, transform: Callable[[dict], dict] | None = None):
        if modality not in END_TO_END_MODALITIES:
            raise ValueError(f"Raw clips feed a visual or an audio model, not {modality!r}.")
        self.records, self.processor, self.modality = list(records), processor, modality
        self.num_labels, self.max_frames, self.max_audio_samples = num_labels, max_frames, max_audio_samples
        self.random_crop, self.seed, self.transform = random_crop, seed, transform
        self.clip_weights = None if clip_weights is None else np.asarray(clip_weights, dtype=np.float32)
        self.unreadable: set[str] = set()
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        count = len(self.records)
        if self.random_crop:
            self._positions = np.random.default_rng([self.seed, CROP_STREAM, epoch]).random(count)
        else:
            self._positions = np.full(count, 0.5)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> dict:
        indices = [int(i) for i in indices]
        batch = collate_raw([self.item(i) for i in indices], self.processor, self.modality, self.num_labels)
        batch["index"] = torch.tensor(indices, dtype=torch.long)
        if self.clip_weights is not None:
            batch["weights"] = torch.from_numpy(self.clip_weights[indices])
        return batch

    def item(self, index: int) -> dict:
        """Clip `index`'s window of the epoch: `crops`, `au`, `mask` (visual) or `waveform` (audio), `labels`."""
        record, position = self.records[index], float(self._positions[index])
        item = {"labels": record.labels, "waveform": None}
        try:
            if self.modality == "visual":
                item.update(self._visual(record, position))
            else:
                item["waveform"] = self._waveform(record, position)
        except EmiInputError as error:
            if record.clip_id not in self.unreadable:
                logger.warning(f"clip {record.clip_id}: {error} It is trained and scored as a clip without "
                               f"{self.modality} input.")
            self.unreadable.add(record.clip_id)
            if self.modality == "visual":
                item.update(self._no_frames())
        if self.transform is not None and self.random_crop:
            item = self.transform(item)
        return item

    def _visual(self, record, position: float) -> dict:
        from ..media.images import clip_side_inputs, process_clip_inputs

        clip = process_clip_inputs(self.processor, record.path, keep_crops=True, **clip_side_inputs(record))
        start, stop = _window(clip.num_frames, self.max_frames if self.random_crop else None, position)
        return {"crops": clip.face_crops[start:stop], "au": clip.au_intensities[start:stop],
                "mask": clip.frame_mask[start:stop]}

    def _no_frames(self) -> dict:
        side, aus = self.processor.face_size, len(self.processor.au_names)
        return {"crops": np.zeros((0, side, side, 3), np.uint8), "au": np.zeros((0, aus), np.float32),
                "mask": np.zeros(0, np.int8)}

    def _waveform(self, record, position: float) -> np.ndarray | None:
        from ..media.decoding import decode_audio
        from ..media.pipeline import SILENCE_PEAK

        # The audio of the processor's pipeline (its rate, peak level, duration caps and silence rule), decoded
        # alone: an audio model needs no frame, face or AU.
        settings = self.processor.clip_settings()
        longest = settings.max_duration
        if settings.max_frames is not None and settings.target_fps:
            longest = min(longest or np.inf, settings.max_frames / settings.target_fps)
        waveform = None
        for source in (record.path, record.audio_path):  # the video's own track first, as extraction does
            if waveform is None and source is not None:
                waveform, _ = decode_audio(source, settings.sampling_rate, settings.audio_peak_db,
                                           max_duration=longest)
        if waveform is None or float(np.max(np.abs(waveform), initial=0.0)) < SILENCE_PEAK:
            return None
        start, stop = _window(len(waveform), self.max_audio_samples if self.random_crop else None, position)
        return waveform[start:stop]


def samples_per_audio_frame(config) -> int:
    """Waveform samples per speech-encoder frame of an audio model's config (`inputs_to_logits_ratio`, the product of
    the conv strides; Whisper and unknown encoders: 320, 50 Hz at 16 kHz)."""
    encoder = getattr(config, "speech_encoder_config", None)
    return int(getattr(encoder, "inputs_to_logits_ratio", None) or DEFAULT_SAMPLES_PER_AUDIO_FRAME)


@dataclass
class RawClipSource:
    """What the loop asks of a dataset of raw clips: loaders of a split's records and their labels."""

    processor: object
    modality: str
    num_labels: int
    max_frames: int | None
    max_audio_samples: int | None
    seed: int

    def loader(self, records, batch_size: int, training: bool, clip_weights=None) -> torch.utils.data.DataLoader:
        """Training: an order and windows drawn from (seed, epoch), full batches only; else the split's order, whole
        clips, a last partial batch (as `evaluation.build_loader` for cached features)."""
        dataset = RawClipDataset(records, self.processor, self.modality, self.num_labels, self.max_frames,
                                 self.max_audio_samples, random_crop=training, seed=self.seed,
                                 clip_weights=clip_weights)
        sampler = EpochBatchSampler(len(dataset), batch_size, shuffle=training, drop_last=training, seed=self.seed)
        return make_loader(dataset, sampler)

    def labels(self, records) -> np.ndarray:
        """`[N, num_labels]` float64 labels of `records` (NaN rows for unlabeled clips)."""
        rows = [np.full(self.num_labels, np.nan) if r.labels is None else r.labels for r in records]
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), self.num_labels)


def check_end_to_end_args(args, datasets=None) -> None:
    """Refuses what end-to-end training does not do, before anything is loaded."""
    if args.raw_data is None:
        return
    if args.modality not in END_TO_END_MODALITIES:
        raise ValueError("End-to-end training (--raw-data) trains one modality: train the visual and the audio model "
                         "this way, then fuse them with --modality fusion --fusion-mode late.")
    if args.seeds > 1 or datasets is not None:
        raise ValueError("--raw-data trains on the clips of the raw folder's splits: seed ensembles (--seeds) and "
                         "k-fold CV (`emi-hf cv`) run on cached features only.")


def raw_splits(args, label_names: list[str]) -> dict[str, list]:
    """The run's splits of raw clips: `train` is the records of `args.train_splits` in turn, the evaluation split as
    it is (its label columns read in the order of `label_names`)."""
    wanted = list(dict.fromkeys([*args.train_splits, args.eval_split]))
    records = load_hume_vidmimic2(args.raw_data, splits=wanted, label_names=label_names)
    splits = dict(records)
    splits["train"] = [record for split in args.train_splits for record in records[split]]
    return splits


def prepare_fine_tuning(model, args) -> list[torch.nn.Parameter]:
    """Unfreezes the backbone's last `args.trainable_backbone_layers` blocks (the rest frozen) and turns on gradient
    checkpointing when asked; returns the backbone parameters that train."""
    model.config.trainable_backbone_layers = int(args.trainable_backbone_layers)
    model._freeze()
    if args.gradient_checkpointing:
        enable_model_checkpointing(model)
        enable_backbone_checkpointing(model.backbone)
    return [p for p in model.backbone.parameters() if p.requires_grad]


def setup_end_to_end(args, metadata: dict, root, model) -> tuple[dict, RawClipSource, str]:
    """The raw splits, their source and a note (for the log and results.json) of an end-to-end run of `model`, whose
    last backbone blocks are made trainable here."""
    from ..models.processing_emi import EmiProcessor

    if not metadata.get("processor_path"):
        raise EmiUsageError(f"{args.features} has no processor folder: end-to-end training needs the features folder "
                            "of an `emi-hf extract` run (its processor and base models).")
    processor = EmiProcessor.from_pretrained(root / metadata["processor_path"])
    processor.use_cache = bool(args.raw_clip_cache) and args.modality == "visual"
    if args.modality == "visual":  # the window training shows; longer clips are scored in windows of it
        model.config.temporal_window = args.max_frames or None
    elif args.max_audio_frames:
        model.config.temporal_window = args.max_audio_frames
    label_names = list(metadata["label_names"])
    splits = raw_splits(args, label_names)
    trainable = prepare_fine_tuning(model, args)
    max_audio_samples = None
    if args.modality == "audio" and args.max_audio_frames:
        max_audio_samples = args.max_audio_frames * samples_per_audio_frame(model.config)
    source = RawClipSource(processor, args.modality, len(label_names), args.max_frames, max_audio_samples, args.seed)
    note = (f"end to end from the raw clips of {args.raw_data}: {sum(p.numel() for p in trainable)} backbone "
            f"parameters train (last {args.trainable_backbone_layers} block(s)), at {BACKBONE_LR_SCALE} x lr")
    return splits, source, note


def end_to_end_record(args) -> dict:
    """The `training` entries of results.json that only an end-to-end run has."""
    if args.raw_data is None:
        return {}
    return {"end_to_end": True, "backbone_learning_rate": args.lr * BACKBONE_LR_SCALE}


__all__ = ["BACKBONE_LR_SCALE", "RawClipDataset", "RawClipSource", "check_end_to_end_args", "collate_raw",
           "end_to_end_record", "prepare_fine_tuning", "raw_splits", "samples_per_audio_frame", "setup_end_to_end"]
