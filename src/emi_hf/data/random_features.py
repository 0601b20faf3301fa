"""Random cached features with learnable labels, in the schema `emi-hf extract` writes (tests and benchmarks).

`make_feature_dataset(folder, ...)` writes `folder/dataset` (a `DatasetDict` saved with `save_to_disk`) and
`folder/emi_features.json`, the layout of an extraction folder, without running any backbone. Per clip, labels
`y ~ U(0, 1)^6` and, per frame, with a slowly varying per-clip gain `g(t)`:

    visual_features[t] = g(t) * (y - 0.5) @ M_visual + noise      (face embeddings: Admiration..Empathic Pain)
    au_features[t]     = clip(2.5 + 2 * (y - 0.5) @ M_au + noise, 0, 5)
    audio_features[t]  = g(t) * (y - 0.5) @ M_audio + noise       (voice: Determination..Joy)

so that a model can learn each modality's emotions, and fusion is better than either. Some clips have no face in
any frame (`frame_mask` all 0) and some no audio (`audio_mask` all 0, `audio_present` False); clip lengths vary.

**Data-set-shaped clip files.** `write_clip_files(folder, counts, lengths=ClipLengths(), ...)` writes the same rows
as the per-clip files of an extraction folder (`folder/clips/<split>/<clip_id>.npz`, `emi_hf.data.extraction`), with
each clip's sequence lengths following from a duration drawn from `lengths`: `round(seconds * fps)` video frames,
`wav2vec2_frames(seconds)` audio frames (a 16 kHz speech encoder with a 320-sample hop, about 50 Hz) and
`text_tokens(seconds)` text tokens. `HUME_VIDMIMIC2_CLIPS` holds the Hume-Vidmimic2 split sizes and
`ClipLengths` the clip-length distribution assumed for it (see its docstring: an assumption, not a measurement).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.configuration_emi import DEFAULT_AU_NAMES, EMOTION_NAMES
from .store import DATASET_DIR, VISUAL_FEATURE_DIM, default_au_names, feature_schema, write_features_metadata

VISUAL_EMOTIONS = (0, 1, 2, 3)  # emotions the visual stream carries (indices into EMOTION_NAMES)
AUDIO_EMOTIONS = (2, 3, 4, 5)
TEXT_EMOTIONS = (0, 1, 4, 5)
TEXT_STREAM = 7  # the text columns' own random stream, so that the other columns do not change with text_dim


def _mappings(seed: int, num_aus: int, visual_dim: int, audio_dim: int):
    rng = np.random.default_rng([seed, 0])
    num_labels = len(EMOTION_NAMES)
    visual = rng.normal(size=(num_labels, visual_dim)).astype(np.float32)
    visual[[i for i in range(num_labels) if i not in VISUAL_EMOTIONS]] = 0
    audio = rng.normal(size=(num_labels, audio_dim)).astype(np.float32)
    audio[[i for i in range(num_labels) if i not in AUDIO_EMOTIONS]] = 0
    aus = rng.normal(size=(num_labels, num_aus)).astype(np.float32) / np.sqrt(num_labels)
    aus[[i for i in range(num_labels) if i not in VISUAL_EMOTIONS]] = 0
    return visual, aus, audio


def _text_mapping(seed: int, text_dim: int) -> np.ndarray:
    text = np.random.default_rng([seed, TEXT_STREAM]).normal(size=(len(EMOTION_NAMES), text_dim)).astype(np.float32)
    text[[i for i in range(len(EMOTION_NAMES)) if i not in TEXT_EMOTIONS]] = 0
    return text


def random_text_columns(index: int, split_seed: int, labels: np.ndarray, text_map: np.ndarray, noise: float,
                        no_text: bool, tokens: int | None = None) -> dict:
    """The text columns of a random clip (`text_features` carry TEXT_EMOTIONS; an empty transcript when `no_text`);
    `tokens` text tokens (default: 3 to 12, drawn)."""
    rng = np.random.default_rng([split_seed, index, TEXT_STREAM])
    drawn = int(rng.integers(3, 13))
    tokens = drawn if tokens is None else int(tokens)
    features = (labels - 0.5) @ text_map + noise * rng.standard_normal((tokens, text_map.shape[1]), dtype=np.float32)
    mask = np.ones(tokens, np.int8)
    if no_text:
        features, mask = np.zeros((1, text_map.shape[1]), np.float32), np.zeros(1, np.int8)
    return {"transcript": "" if no_text else f"random clip {index}", "speech_segments": np.zeros((0, 2), np.float32),
            "text_features": features.astype(np.float32), "text_mask": mask}


def random_clip_row(
    index: int, split_seed: int, mappings, frames: tuple[int, int], audio_frames: tuple[int, int],
    no_face: bool, no_audio: bool, noise: float, fps: float = 30.0, lengths: tuple[int, int] | None = None,
) -> dict:
    """One row of the features schema (see the module docstring). `lengths` (video frames, audio frames) replaces
    the lengths drawn from the `frames` / `audio_frames` ranges (the other columns stay the same draws)."""
    visual_map, au_map, audio_map = mappings
    rng = np.random.default_rng([split_seed, index])
    labels = rng.random(len(EMOTION_NAMES)).astype(np.float32)
    centred = labels - 0.5
    num_frames = int(rng.integers(frames[0], frames[1] + 1))
    num_audio = int(rng.integers(audio_frames[0], audio_frames[1] + 1))
    if lengths is not None:
        num_frames, num_audio = int(lengths[0]), int(lengths[1])

    def gain(n):
        return (0.6 + 0.4 * np.sin(np.linspace(0, np.pi, n) + rng.random()))[:, None].astype(np.float32)

    visual = gain(num_frames) * (centred @ visual_map)[None] + noise * rng.standard_normal(
        (num_frames, visual_map.shape[1]), dtype=np.float32
    )
    aus = np.clip(2.5 + 2 * (centred @ au_map)[None] + 0.3 * noise * rng.standard_normal(
        (num_frames, au_map.shape[1]), dtype=np.float32), 0, 5)
    frame_mask = np.ones(num_frames, np.int8)
    if num_frames > 4:
        frame_mask[rng.random(num_frames) < 0.1] = 0  # a few frames without a face
    if no_face:
        frame_mask[:] = 0
        visual[:] = 0
        aus[:] = 0
    audio = gain(num_audio) * (centred @ audio_map)[None] + noise * rng.standard_normal(
        (num_audio, audio_map.shape[1]), dtype=np.float32
    )
    audio_mask = np.ones(num_audio, np.int8)
    if no_audio:
        audio[:] = 0
        audio_mask[:] = 0
    return {
        "clip_id": f"{split_seed % 1000:03d}{index:05d}",
        "visual_features": visual.astype(np.float32),
        "au_features": aus.astype(np.float32),
        "frame_mask": frame_mask,
        "frame_timestamps": (np.arange(num_frames) / fps).astype(np.float32),
        "audio_features": audio.astype(np.float32),
        "audio_mask": audio_mask,
        "labels": labels,
        "face_fraction": float(frame_mask.mean()) if num_frames else 0.0,
        "audio_present": not no_audio,
    }


def _split_rows(count, split_seed, mappings, frames, audio_frames, no_face_fraction, no_audio_fraction, noise,
                unlabeled=False, text_map=None, no_text_fraction=0.0, sizes=None):
    """The rows of one split; `sizes(index)` -> (video frames, audio frames, text tokens) replaces the drawn
    lengths."""
    rng = np.random.default_rng([split_seed, 1])
    for index in range(count):
        no_face = rng.random() < no_face_fraction
        no_audio = (not no_face) and rng.random() < no_audio_fraction  # keep at least one modality
        size = None if sizes is None else sizes(index)
        row = random_clip_row(index, split_seed, mappings, frames, audio_frames, no_face, no_audio, noise,
                              lengths=None if size is None else size[:2])
        if text_map is not None:
            no_text = np.random.default_rng([split_seed, index, TEXT_STREAM, 1]).random() < no_text_fraction
            row.update(random_text_columns(index, split_seed, row["labels"], text_map, noise, no_text,
                                           tokens=None if size is None else size[2]))
            row["audio_speech_mask"] = row["audio_mask"].copy()
        if unlabeled:
            row["labels"] = np.full(len(EMOTION_NAMES), np.nan, np.float32)
        yield row


def make_feature_dataset(
    output_dir: str | Path,
    num_train: int = 64,
    num_valid: int = 32,
    num_test: int = 0,
    frames: tuple[int, int] = (6, 20),
    audio_frames: tuple[int, int] = (8, 30),
    num_aus: int = len(DEFAULT_AU_NAMES),
    audio_dim: int = 32,
    no_face_fraction: float = 0.1,
    no_audio_fraction: float = 0.1,
    noise: float = 1.0,
    seed: int = 0,
    processor_dir: str | Path | None = None,
    base_models: dict | None = None,
    text_dim: int = 0,
    no_text_fraction: float = 0.1,
) -> Path:
    """
    Writes a features folder (`dataset/` + `emi_features.json`) of random clips whose labels the models can learn;
    returns `output_dir`. `frames` / `audio_frames` are (min, max) sequence lengths; `processor_dir` is copied to
    `output_dir/processor` and named in the metadata; `base_models` `{"visual": model, "audio": model}` are saved as
    `base_visual` / `base_audio` (the folders training takes the backbones from), as `emi-hf extract` does (and
    `"text"`: `base_text`). `text_dim` > 0 adds the text columns (`text_features` `[T_t, text_dim]` carrying
    `TEXT_EMOTIONS`, an empty transcript in `no_text_fraction` of the clips); the other columns are the same with or
    without them.
    """
    from datasets import Dataset, DatasetDict

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    schema = feature_schema(num_aus, audio_dim, len(EMOTION_NAMES), text=bool(text_dim), text_dim=text_dim or None)
    mappings = _mappings(seed, num_aus, VISUAL_FEATURE_DIM, audio_dim)
    text = {"text_map": _text_mapping(seed, text_dim), "no_text_fraction": no_text_fraction} if text_dim else {}
    splits = {}
    cache = output_dir / ".cache"
    for name, count, offset in (("train", num_train, 1), ("validation", num_valid, 2), ("test", num_test, 3)):
        if count:
            kwargs = dict(count=count, split_seed=seed * 10 + offset, mappings=mappings, frames=frames,
                          audio_frames=audio_frames, no_face_fraction=no_face_fraction,
                          no_audio_fraction=no_audio_fraction, noise=noise, unlabeled=name == "test", **text)
            splits[name] = Dataset.from_generator(_split_rows, gen_kwargs=kwargs, features=schema,
                                                  cache_dir=str(cache))
    dataset_dir = output_dir / DATASET_DIR
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    DatasetDict(splits).save_to_disk(str(dataset_dir))
    shutil.rmtree(cache, ignore_errors=True)
    paths = {}
    if processor_dir is not None:
        shutil.copytree(processor_dir, output_dir / "processor", dirs_exist_ok=True)
        paths["processor_path"] = "processor"
    for modality, model in (base_models or {}).items():
        model.save_pretrained(output_dir / f"base_{modality}")
        paths[f"{modality}_base_model"] = f"base_{modality}"
    write_features_metadata(
        output_dir,
        au_names=default_au_names(num_aus),
        label_names=EMOTION_NAMES,
        visual_feature_dim=VISUAL_FEATURE_DIM,
        audio_feature_dim=audio_dim,
        splits={name: {"extracted": len(split)} for name, split in splits.items()},
        dataset="synthetic-features",
        **paths,
        **({"text_feature_dim": text_dim} if text_dim else {}),
    )
    return output_dir


# ----------------------------------------------------------------------------------------------------------------------
# Clip files shaped like a real data set
# ----------------------------------------------------------------------------------------------------------------------

HUME_VIDMIMIC2_CLIPS = {"train": 8072, "validation": 4588, "test": 4600}  # test: "about 4,600" (approximate)
HUME_VIDMIMIC2_FIRST_IDS = {"train": 0, "validation": 8072, "test": 12660}  # ids run on across the splits
SPEECH_SAMPLING_RATE = 16000
SPEECH_HOP, SPEECH_WINDOW = 320, 400  # wav2vec2's feature encoder: samples per frame, receptive field
TOKENS_PER_SECOND = 3.25  # 2.5 spoken words/s x 1.3 word-piece tokens per word (an assumption)
LENGTH_STREAM = 11  # the clip durations' own random stream


@dataclass(frozen=True)
class ClipLengths:
    """
    Clip durations in seconds: with probability `1 - tail_fraction` a log-normal body (median `median_s`, log
    standard deviation `sigma`), else a log-uniform tail on [`tail_min_s`, `max_s`]; every duration clipped to
    [`min_s`, `max_s`].

    The default is an assumption shaped to what is published about Hume-Vidmimic2, not a measurement of it (its
    clip lengths are not published here, and the data set was not available): its organisers describe "more than
    15,000 videos totalling over 25 hours" (the ABAW competition papers), which over the 17,260 clips of
    `HUME_VIDMIMIC2_CLIPS` is a mean of at least 5.2 s; the clips are short webcam recordings of a person mimicking
    a seed video, some far longer (a tail to 2 minutes). With the defaults (1,000,000 seeded draws): mean 6.0 s
    (28.8 hours over 17,260 clips), median 4.6 s, 90th percentile 9.0 s, 99th 42 s, longest 120 s; 2.8% of the
    clips last over 15 s and 0.7% over a minute (about 480 and 115 clips at full scale).
    """

    median_s: float = 4.5
    sigma: float = 0.5
    tail_fraction: float = 0.02
    tail_min_s: float = 15.0
    min_s: float = 1.0
    max_s: float = 120.0

    def __post_init__(self):
        if not 0 < self.min_s <= self.median_s <= self.max_s or not self.min_s <= self.tail_min_s <= self.max_s:
            raise ValueError(f"ClipLengths needs 0 < min_s <= median_s <= max_s and min_s <= tail_min_s <= max_s: "
                             f"{self}.")
        if self.sigma < 0 or not 0 <= self.tail_fraction <= 1:
            raise ValueError(f"ClipLengths needs sigma >= 0 and 0 <= tail_fraction <= 1: {self}.")

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """`size` durations (float64 seconds) drawn from `rng`."""
        body = self.median_s * np.exp(self.sigma * rng.standard_normal(size))
        tail = np.exp(rng.uniform(np.log(self.tail_min_s), np.log(self.max_s), size))
        seconds = np.where(rng.random(size) < self.tail_fraction, tail, body)
        return np.clip(seconds, self.min_s, self.max_s)

    def mean_s(self, draws: int = 1_000_000, seed: int = 0) -> float:
        """The distribution's mean duration, estimated from `draws` seeded draws."""
        return float(self.sample(np.random.default_rng(seed), draws).mean())

    def clip_seconds(self, seed: int, stream: int, index: int) -> float:
        """Clip `index`'s duration: its own draw, the same whatever the number of clips."""
        return float(self.sample(np.random.default_rng([seed, LENGTH_STREAM, stream, index]), 1)[0])


def wav2vec2_frames(seconds: float) -> int:
    """Speech-encoder frames of `seconds` of 16 kHz audio (wav2vec2 / HuBERT / WavLM: 400-sample window, 320 hop)."""
    samples = int(round(seconds * SPEECH_SAMPLING_RATE))
    return max(1, (samples - SPEECH_WINDOW) // SPEECH_HOP + 1)


def text_tokens(seconds: float, max_tokens: int = 512) -> int:
    """Text tokens of a transcript of `seconds` of speech: `TOKENS_PER_SECOND`, plus [CLS] and [SEP], at most
    `max_tokens` (the encoder's limit)."""
    return int(min(max_tokens, 2 + round(TOKENS_PER_SECOND * seconds)))


def write_clip_files(
    output_dir: str | os.PathLike,
    counts: dict[str, int],
    lengths: ClipLengths = ClipLengths(),
    *,
    first_ids: dict[str, int] | None = None,
    fps: float = 30.0,
    num_aus: int = len(DEFAULT_AU_NAMES),
    audio_dim: int = 768,
    text_dim: int = 768,
    no_face_fraction: float = 0.05,
    no_audio_fraction: float = 0.05,
    no_text_fraction: float = 0.1,
    noise: float = 1.0,
    seed: int = 0,
) -> list[dict]:
    """
    Writes random clips as an extraction's per-clip files, `output_dir/clips/<split>/<clip_id>.npz` (the rows of
    `random_clip_row`, text columns when `text_dim` > 0), `counts[split]` clips per split (test clips unlabeled),
    with sequence lengths from each clip's duration (module docstring). Clip ids are 5-digit numbers counted from
    `first_ids[split]` (default: on from the previous split's, in the order of `counts`). A clip's columns depend on
    its split, index and `seed` only, so a smaller `counts` writes the first clips of a larger one.

    Returns one record per clip: `split`, `clip_id`, `seconds`, `frames`, `audio_frames`, `text_tokens`, `labels`
    (list, None for test), `transcript` (None without text) and `array_bytes` (the bytes of its arrays).
    """
    from .extraction import ClipFeatures

    output_dir = Path(output_dir)
    mappings = _mappings(seed, num_aus, VISUAL_FEATURE_DIM, audio_dim)
    text = {"text_map": _text_mapping(seed, text_dim), "no_text_fraction": no_text_fraction} if text_dim else {}
    offsets = {"train": 1, "validation": 2, "test": 3}
    records, next_id = [], 0
    for position, (split, count) in enumerate(counts.items()):
        first = next_id if first_ids is None or split not in first_ids else int(first_ids[split])
        next_id = first + count
        stream = offsets.get(split, 4 + position)
        split_dir = output_dir / "clips" / split
        split_dir.mkdir(parents=True, exist_ok=True)
        seconds = [lengths.clip_seconds(seed, stream, i) for i in range(count)]

        def sizes(index, seconds=seconds):
            duration = seconds[index]
            return max(1, int(round(duration * fps))), wav2vec2_frames(duration), text_tokens(duration)

        rows = _split_rows(count, seed * 10 + stream, mappings, (1, 1), (1, 1), no_face_fraction, no_audio_fraction,
                           noise, unlabeled=split == "test", sizes=sizes, **text)
        for index, row in enumerate(rows):
            row["clip_id"] = f"{first + index:05d}"
            row["frame_timestamps"] = (np.arange(len(row["frame_mask"])) / fps).astype(np.float32)
            ClipFeatures(**row).save(split_dir / f"{row['clip_id']}.npz")
            records.append({
                "split": split, "clip_id": row["clip_id"], "seconds": seconds[index],
                "frames": len(row["frame_mask"]), "audio_frames": len(row["audio_mask"]),
                "text_tokens": int(row["text_mask"].sum()) if text_dim else 0,
                "labels": None if split == "test" else row["labels"].tolist(),
                "transcript": str(row["transcript"]) if text_dim else None,
                "array_bytes": sum(np.asarray(v).nbytes for v in row.values() if isinstance(v, np.ndarray)),
            })
    return records
