"""Feature extraction: run the processor and the frozen backbones once per clip, into the feature store.

Layout of an extraction folder (`emi-hf extract --output DIR`):

    DIR/clips/<split>/<clip_id>.npz   one file per finished clip, written atomically (resume unit); removed once
                                      the clip is in the merged, verified dataset (`emi_hf.data.merge`)
    DIR/failures.jsonl                clips that failed, with the reason (they do not stop the run)
    DIR/processor/                    the EmiProcessor used (processor_config.json)
    DIR/base_text/                    with a text encoder: the EmiTextModel holding it, and its text_tokenizer/
    DIR/base_visual/, DIR/base_audio/ EmiVisualModel / EmiAudioModel whose frozen backbones made the features;
                                      training starts from them, so trained checkpoints carry the same backbones
    DIR/dataset/                      the merged datasets.DatasetDict (load_from_disk), one row per clip
    DIR/emi_features.json             what the features are: AU names, widths, label names, paths above
                                      (format owned by `emi_hf.data.store`)
    DIR/extraction_report.json        counts, failures, wall time, clips/s

Resuming: a re-run skips clips whose .npz exists or that are in the merged dataset, so after a kill at any point it
finishes the rest, and since each clip's result depends only on the clip and the settings, and the merge is in
sorted clip order, the dataset equals an uninterrupted run's. After the merge the folder holds one copy of the
features (the dataset); a later run that lists another split adds it and keeps the splits already there.
Sharding (`emi_hf.data.sharding`): under `torchrun` / `accelerate launch` (CPU or GPU, one or many machines) the
main process splits the clips still to do once, each process extracts its share (logged in
DIR/shards/), and the main process merges once every process is done; a run missing a process keeps what was written
and a rerun of the same command finishes the rest.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..encoders.setup import backbone_fingerprint, encoder_record
from ..errors import EmiUsageError
from ..encoders.face_embedding import FaceEmbedder, clip_face_embeddings
from ..media.images import DEFAULT_FACE_IMAGE_FPS, clip_side_inputs, process_clip_inputs
from .failures import failure_reason, reason_counts
from .sharding import (
    DEFAULT_TIMEOUT_S,
    ShardProgress,
    TerminationGuard,
    check_same_folder,
    clip_video_seconds,
    configure_threads,
    file_size,
    join_processes,
    new_plan,
    run_figures,
    wait_for_shards,
)
from .merge import merge_into_dataset, merged_clip_ids, recover_interrupted_merge
from .store import feature_schema, load_features_metadata, write_features_metadata

SPLIT_NAMES = {"train": "train", "valid": "validation", "validation": "validation", "test": "test"}


@dataclass
class ClipFeatures:
    """One clip's cached features (numpy); see the module docstring for the column meanings."""

    clip_id: str
    visual_features: np.ndarray  # [T, 512] float32
    au_features: np.ndarray  # [T, n_au] float32
    frame_mask: np.ndarray  # [T] int8
    frame_timestamps: np.ndarray  # [T] float32
    audio_features: np.ndarray  # [Ta, D] float32
    audio_mask: np.ndarray  # [Ta] int8
    labels: np.ndarray  # [6] float32, NaN when unlabeled
    face_fraction: float
    audio_present: bool
    # the text stage's columns (`emi_hf.data.text_features`), when it ran; files without them load with None
    transcript: str | None = None
    speech_segments: np.ndarray | None = None  # [n, 2] float32 seconds
    audio_speech_mask: np.ndarray | None = None  # [Ta] int8
    text_features: np.ndarray | None = None  # [T_t, D] float32
    text_mask: np.ndarray | None = None  # [T_t] int8

    def columns(self) -> dict:
        """The row of the merged dataset (the fields that are set)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **{k: np.asarray(v) for k, v in self.columns().items()})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ClipFeatures:
        with np.load(path, allow_pickle=False) as data:
            values = {k: data[k] for k in data.files}
        values["clip_id"] = str(values["clip_id"])
        values["face_fraction"] = float(values["face_fraction"])
        values["audio_present"] = bool(values["audio_present"])
        if "transcript" in values:
            values["transcript"] = str(values["transcript"])
        return cls(**values)


def embed_waveform(processor, audio_model, waveform: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Speech-encoder frames `[Ta, D]` and mask `[Ta]` of a 16 kHz waveform; one masked frame when there is none."""
    import torch

    from ..models.backbones_emi import MIN_WAVEFORM_SAMPLES

    config = audio_model.config
    dtype = np.float16 if getattr(config, "cache_dtype", "float32") == "float16" else np.float32
    if waveform is None or len(waveform) < MIN_WAVEFORM_SAMPLES:
        width = getattr(config, "num_speech_layers", 1) * config.audio_feature_dim
        return np.zeros((1, width), dtype), np.zeros(1, np.int8)
    inputs = processor.feature_extractor(
        waveform, sampling_rate=processor.sampling_rate, return_attention_mask=True, return_tensors="pt"
    )
    with torch.inference_mode():
        device = next(audio_model.parameters()).device
        audio, mask = audio_model.embed_audio(inputs["input_values"].to(device), inputs["attention_mask"].to(device))
    return audio[0].float().cpu().numpy().astype(dtype), mask[0].cpu().numpy().astype(np.int8)


def extract_clip_features(processor, visual_model, audio_model, path, clip_id: str, labels, text_stage=None,
                          **side_inputs) -> ClipFeatures:
    """
    Processor + frozen backbones on one clip (see `emi_hf.face_embedding`, `embed_waveform`; long audio is encoded in
    windows by the audio model), and with a `text_stage` (`emi_hf.data.text_features.TextStage`) voice activity,
    the transcript and its token embeddings. A modality with no frame at all is stored as one masked frame, so
    batches never hold empty sequences.
    """
    embedder = FaceEmbedder(processor, visual_model)
    clip = process_clip_inputs(processor, path, face_embedder=embedder, keep_crops=False, **side_inputs)
    audio, audio_mask = embed_waveform(processor, audio_model, clip.waveform)
    text = {}
    if text_stage is not None:
        text = text_stage.clip_fields(path, clip_id, clip.waveform, audio_mask)
        audio_mask = text_stage.masked_audio(audio_mask, text)
    if clip.num_frames:
        visual = clip_face_embeddings(processor, visual_model, clip)
        au, mask, timestamps = clip.au_intensities.astype(np.float32), clip.frame_mask.astype(np.int8), clip.timestamps
    else:
        visual = np.zeros((1, visual_model.config.visual_feature_dim), np.float32)
        au, mask, timestamps = np.zeros((1, visual_model.config.num_aus), np.float32), np.zeros(1, np.int8), [0.0]
    labels = np.full(len(visual_model.config.label_names), np.nan, np.float32) if labels is None else labels
    return ClipFeatures(
        clip_id=clip_id,
        visual_features=visual,
        au_features=au,
        frame_mask=mask,
        frame_timestamps=np.asarray(timestamps, np.float32),
        audio_features=audio,
        audio_mask=audio_mask,
        labels=np.asarray(labels, dtype=np.float32),
        face_fraction=float(clip.face_fraction),
        audio_present=bool(audio_mask.any()),
        **text,
    )


def run_extraction(
    records: dict[str, list],
    output_dir: str | os.PathLike,
    processor,
    visual_model,
    audio_model,
    *,
    progress: bool = True,
    max_failures_shown: int = 20,
    clip_fn: Callable | None = None,
    face_source: str = "detect",
    face_image_fps: float = DEFAULT_FACE_IMAGE_FPS,
    threads: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    text_stage=None,
) -> dict:
    """
    Extracts every clip of `records` ({split: [ClipRecord(clip_id, path, labels, split)]}) into `output_dir`,
    resumably and sharded over processes, then merges into a DatasetDict. Returns the extraction report.
    `clip_fn` replaces `extract_clip_features` (tests use it to simulate a kill). A record's `audio_path` / `face_dir`
    (`audio/`, `face_images/` of the data folder) reach it as keyword arguments (`emi_hf.media.images`);
    `face_source="images"` uses face images instead of detection, their numbering at `face_image_fps`.
    Sharding (`emi_hf.data.sharding`): `threads` per process (default: cores / processes on the machine, when there
    are several); `timeout_s` without a sign of life from another process ends the wait with `ShardsIncomplete`.
    `text_stage` (`emi_hf.data.text_features.TextStage`): adds voice activity, transcripts and text features.
    """
    output_dir = Path(output_dir)
    started = time.time()
    processes = join_processes(timeout_s)
    try:
        if threads is not None or processes.world > 1:
            configure_threads(threads, processes.local_world)
        plan, mine = _plan_run(output_dir, records, processor, visual_model, audio_model, processes, text_stage)

        def extract(record):
            side_inputs = clip_side_inputs(record, face_source, face_image_fps)
            if text_stage is not None:
                side_inputs["text_stage"] = text_stage
            return (clip_fn or extract_clip_features)(processor, visual_model, audio_model, record.path,
                                                      record.clip_id, record.labels, **side_inputs)

        _extract_shard(mine, extract, output_dir, processes, plan, progress, max_failures_shown)
        if not processes.is_main:
            return {}
        shards = wait_for_shards(output_dir, plan, timeout_s)
        report = merge_features(output_dir, records, processor, visual_model, audio_model, text_stage)
        report.update(run_figures(shards, time.time() - started, sum(len(shard) for shard in plan["shards"])))
        report["failure_reasons"] = reason_counts(report["failures"])
        (output_dir / "extraction_report.json").write_text(json.dumps(report, indent=2))
        return report
    finally:
        processes.close()


def _plan_run(output_dir: Path, records: dict, processor, visual_model, audio_model, processes,
              text_stage=None) -> tuple[dict, list]:
    """
    The main process prepares the folder and splits the clips still to do (`sharding.new_plan`); every process
    receives the plan and checks it sees the same folder and has the same backbone weights. Returns (plan, this
    process's [(record, target)]).
    """
    visual_model.eval()
    audio_model.eval()
    plan = None
    if processes.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        _check_same_backbones(output_dir, visual_model, audio_model, text_stage)
        processor.save_pretrained(output_dir / "processor")
        visual_model.save_pretrained(output_dir / "base_visual")
        audio_model.save_pretrained(output_dir / "base_audio")
        if text_stage is not None and text_stage.encoder is not None:
            text_stage.save_base(output_dir / "base_text", visual_model.config.label_names)
        recover_interrupted_merge(output_dir)
        merged = merged_clip_ids(output_dir)  # clips of an earlier merge: their files are gone, they are done
        pending = []
        for split, clips in records.items():
            name = SPLIT_NAMES.get(split, split)
            split_dir = output_dir / "clips" / name
            split_dir.mkdir(parents=True, exist_ok=True)
            pending += [(split, i) for i, record in enumerate(clips) if record.clip_id not in merged.get(name, ())
                        and not (split_dir / f"{record.clip_id}.npz").exists()]
        plan = new_plan(output_dir, [records[s][i].clip_id for s, i in pending],
                        [file_size(records[s][i].path) for s, i in pending], processes.world)
        plan["pending"] = pending
        if processes.world > 1:
            plan["backbones"] = [backbone_fingerprint(visual_model), backbone_fingerprint(audio_model)]
    plan = processes.broadcast(plan, "the start of the extraction")
    mine = []
    for s, i in (plan["pending"][index] for index in plan["indexes"][processes.rank]):
        record = records[s][i] if s in records and i < len(records[s]) else None
        if record is None or record.clip_id != plan["shards"][processes.rank][len(mine)]:
            raise EmiUsageError(f"process {processes.rank} was given another clip list than process 0: start every "
                                "process with the same --data-dir, --splits and --labels-csv.")
        mine.append((record, output_dir / "clips" / SPLIT_NAMES.get(s, s) / f"{record.clip_id}.npz"))
    if not processes.is_main:
        check_same_folder(output_dir, plan, processes.rank)
        if plan["backbones"] != [backbone_fingerprint(visual_model), backbone_fingerprint(audio_model)]:
            raise EmiUsageError(
                f"process {processes.rank} has other backbone weights than process 0, so their features would mix: "
                "load the same pretrained weights in every process (random backbones are the same in every process "
                "only when built with a seed, as `emi-hf extract` does; see emi_hf.pretrained)."
            )
    return plan, mine


def _extract_shard(mine: list, extract: Callable, output_dir: Path, processes, plan: dict, progress: bool,
                   max_failures_shown: int) -> None:
    """This process's clips; each finished clip is saved and logged together (see `sharding.ShardProgress`)."""
    import torch
    from tqdm.auto import tqdm

    shard = ShardProgress(output_dir, processes, plan["run_id"], len(mine), torch.get_num_threads())
    failures = []
    desc = f"extract[{processes.rank}/{processes.world}]"
    bar = tqdm(mine, desc=desc, unit="clip", disable=not progress, dynamic_ncols=True)
    try:
        with TerminationGuard() as guard:
            for record, target in bar:
                began = time.time()
                try:
                    features = extract(record)
                    seconds = clip_video_seconds(record.path)
                    with guard.held():
                        features.save(target)
                        shard.clip_done(record.clip_id, time.time() - began, seconds)
                except Exception as error:  # a bad clip is reported, never stops the run
                    failures.append(
                        {"clip_id": record.clip_id, "path": str(record.path), "split": record.split,
                         "error": f"{type(error).__name__}: {error}", "reason": failure_reason(error, record.path),
                         "trace": traceback.format_exc(limit=3)}
                    )
                    shard.clip_failed()
                    if len(failures) <= max_failures_shown:
                        bar.write(f"[emi-hf extract] {record.path}: {type(error).__name__}: {error} (skipped; see "
                                  "failures.jsonl)")
    except BaseException:
        shard.abandon()
        raise
    finally:
        if failures:
            with open(output_dir / f"failures.rank{processes.rank}.jsonl", "a") as handle:
                for failure in failures:
                    handle.write(json.dumps(failure) + "\n")
    shard.finish()


def _check_same_backbones(output_dir: Path, visual_model, audio_model, text_stage=None) -> None:
    """A resumed extraction must use the backbones (and text settings) that made the clips already there, or
    features would mix."""
    path = output_dir / "backbones.json"
    current = {"visual": backbone_fingerprint(visual_model), "audio": backbone_fingerprint(audio_model)}
    if text_stage is not None:  # absent without one, so folders of earlier versions keep resuming
        current["text"] = {**text_stage.record(), "text_encoder_weights": text_stage.encoder_fingerprint()}
    seeds = {name: getattr(model, "random_backbone_seed", None) for name, model in
             (("visual", visual_model), ("audio", audio_model))}
    if any(seed is not None for seed in seeds.values()):  # random backbones (emi_hf.pretrained): their seed
        current["random_backbone_seed"] = seeds
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != current:
            raise EmiUsageError(
                f"{output_dir} holds features made with other backbone weights or text settings ({path}: "
                f"{sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))} differ); "
                "resuming would mix features. Use another --output folder, or delete this one to start again."
            )
    else:
        path.write_text(json.dumps(current, indent=2))


def collect_failures(output_dir: Path) -> list[dict]:
    """The failure records of a feature folder (`failures.rank*.jsonl` of every rank), one per clip."""
    failures = {}
    for path in sorted(output_dir.glob("failures.rank*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                failures[entry["clip_id"]] = entry
    return list(failures.values())


def _text_metadata(text_stage) -> dict:
    """The text keys of `emi_features.json` (none without a text stage)."""
    if text_stage is None:
        return {}
    metadata = {"text": text_stage.record()}
    if text_stage.encoder is not None:
        metadata.update(text_feature_dim=text_stage.text_feature_dim, text_base_model="base_text")
    return metadata


def _generate_rows(files: list[str], columns: tuple[str, ...]) -> Iterable[dict]:
    for file in files:
        row = ClipFeatures.load(Path(file)).columns()
        if sorted(row) != sorted(columns):
            raise EmiUsageError(
                f"{file} holds the columns {sorted(row)} but this extraction writes {sorted(columns)} (a clip made "
                "with other text settings?): delete it, or the folder's clips/, and rerun to extract it again."
            )
        yield row


def _row_to_file(path: Path, row: dict) -> None:
    """A dataset row back to its per-clip file (`emi_hf.data.merge`: rows a run no longer lists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ClipFeatures(**{k: (str(v) if k in ("clip_id", "transcript") else v) for k, v in row.items()}).save(path)


def merge_features(output_dir: Path, records: dict[str, list], processor, visual_model, audio_model,
                   text_stage=None) -> dict:
    """Merges the per-clip files into `output_dir/dataset` (sorted by clip id; `emi_hf.data.merge`: verified, then
    the per-clip files removed) and writes the metadata file."""
    visual_config, audio_config = visual_model.config, audio_model.config
    audio_width = getattr(audio_config, "num_speech_layers", 1) * audio_config.audio_feature_dim
    features = feature_schema(visual_config.num_aus, audio_width, len(visual_config.label_names),
                              visual_config.visual_feature_dim, getattr(audio_config, "cache_dtype", "float32"),
                              text=text_stage is not None,
                              text_dim=None if text_stage is None else text_stage.text_feature_dim)
    recover_interrupted_merge(output_dir)
    done = {path.stem for path in (output_dir / "clips").glob("*/*.npz")}
    done |= set().union(*merged_clip_ids(output_dir).values())
    failures = [f for f in collect_failures(output_dir) if f["clip_id"] not in done]  # a retry may have succeeded
    failed = {f["clip_id"] for f in failures}
    wanted = {SPLIT_NAMES.get(split, split): [r.clip_id for r in clips] for split, clips in records.items()}
    columns = tuple(features)
    rows = merge_into_dataset(output_dir, wanted, lambda split, clip_id: output_dir / "clips" / split /
                              f"{clip_id}.npz", lambda path: next(iter(_generate_rows([str(path)], columns))),
                              _row_to_file, features)
    counts = {}
    for split, clips in records.items():
        name = SPLIT_NAMES.get(split, split)
        counts[name] = {"requested": len(clips), "extracted": rows.get(name, 0),
                        "failed": sum(r.clip_id in failed for r in clips)}
    earlier = load_features_metadata(output_dir).get("splits", {})  # splits this run does not list: kept as they are
    counts.update({name: earlier.get(name, {"extracted": n}) for name, n in rows.items() if name not in counts})
    write_features_metadata(
        output_dir,
        au_names=visual_config.au_names,
        label_names=visual_config.label_names,
        visual_feature_dim=visual_config.visual_feature_dim,
        audio_feature_dim=audio_width,
        splits=counts,
        fps=getattr(processor, "target_fps", None),
        encoders=encoder_record(visual_model, audio_model),
        processor_path="processor",
        visual_base_model="base_visual",
        audio_base_model="base_audio",
        **_text_metadata(text_stage),
    )
    return {"splits": counts, "failures": failures}
