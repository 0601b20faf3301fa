"""The feature store: the one owner of a features folder's format (schema, ``emi_features.json``, loading).

A features folder (written by `emi-hf extract`, see `emi_hf.data.extraction`, or by
`emi_hf.data.random_features.make_feature_dataset`)::

    DIR/dataset/              datasets.DatasetDict (save_to_disk), one row per clip, columns in `feature_schema`
    DIR/emi_features.json     what the features are (below); paths in it are relative to DIR
    DIR/processor/, DIR/base_visual/, DIR/base_audio/   optional: the processor and base models that made them
    DIR/base_text/                                      optional: the base text model (with a text encoder)

``emi_features.json``:

=====================  ==========================================================================================
``format_version``     ``FORMAT_VERSION`` (1)
``au_names``           names of the ``au_features`` columns, in order
``label_names``        names of the ``labels`` entries, in order (default: the six emotions)
``visual_feature_dim`` width of ``visual_features`` (``VISUAL_FEATURE_DIM``: ResNet18 face embeddings)
``audio_feature_dim``  width of ``audio_features`` (the speech encoder's hidden size)
``dataset_path``       the DatasetDict folder (``DATASET_DIR``)
``splits``             per split: clip counts (``extracted``, and for an extraction ``requested``, ``failed``)
optional               ``fps``, ``processor_path``, ``visual_base_model``, ``audio_base_model``, ``dataset``;
                       with the text stage (`emi_hf.data.text_features`): ``text`` (what made the transcripts,
                       voice activity and text features), ``text_feature_dim``, ``text_base_model``;
                       ``encoders``: what made the features (``emi_hf.encoder_setup.encoder_record``: backbone
                       specs, weights fingerprints, dims, speech layers, audio crop, cache dtype)
=====================  ==========================================================================================

A folder saved with ``DatasetDict.save_to_disk`` alone also loads: [`load_feature_splits`] completes the metadata
from the dataset's schema ([`complete_metadata`]).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..models.configuration_emi import DEFAULT_AU_NAMES, EMOTION_NAMES
from ..errors import EmiNotFoundError, EmiUsageError

FEATURES_METADATA = "emi_features.json"
DATASET_DIR = "dataset"
FORMAT_VERSION = 1
VISUAL_FEATURE_DIM = 512  # the schema's face-embedding width (ResNet18)


def feature_schema(num_aus: int, audio_dim: int, num_labels: int, visual_dim: int = VISUAL_FEATURE_DIM,
                   audio_dtype: str = "float32", text: bool = False, text_dim: int | None = None):
    """The `datasets.Features` of one clip row: sequences `[T, visual_dim]` (`VISUAL_FEATURE_DIM` for ResNet18 face
    embeddings; the organisers' ViT features are 384 wide), `[T, num_aus]` (`num_aus` may be 0), `[Ta, audio_dim]`
    (`audio_dtype` float32, or float16 to halve the disk), masks. With `text`, the text stage's columns
    (`transcript`, `speech_segments`, `audio_speech_mask`; with `text_dim`, `text_features` `[T_t, text_dim]` and
    `text_mask`; see `emi_hf.data.text_features`)."""
    from datasets import Array2D, Features, Sequence, Value

    if int(visual_dim) <= 0 or int(audio_dim) <= 0 or int(num_aus) < 0:
        raise EmiUsageError(f"feature widths must be positive (visual {visual_dim}, audio {audio_dim}, AUs {num_aus}).")

    columns = {}
    if text:
        columns.update(transcript=Value("string"), speech_segments=Array2D(shape=(None, 2), dtype="float32"),
                       audio_speech_mask=Sequence(Value("int8")))
    if text and text_dim:
        columns.update(text_features=Array2D(shape=(None, int(text_dim)), dtype="float32"),
                       text_mask=Sequence(Value("int8")))
    return Features(
        {
            "clip_id": Value("string"),
            "visual_features": Array2D(shape=(None, int(visual_dim)), dtype="float32"),
            "au_features": Array2D(shape=(None, num_aus), dtype="float32"),
            "frame_mask": Sequence(Value("int8")),
            "frame_timestamps": Sequence(Value("float32")),
            "audio_features": Array2D(shape=(None, audio_dim), dtype=audio_dtype),
            "audio_mask": Sequence(Value("int8")),
            "labels": Sequence(Value("float32"), length=num_labels),
            "face_fraction": Value("float32"),
            "audio_present": Value("bool"),
            **columns,
        }
    )


def default_au_names(num_aus: int) -> list[str]:
    """The package's AU names when there are as many, else ``AU00``, ``AU01``, ..."""
    return list(DEFAULT_AU_NAMES) if num_aus == len(DEFAULT_AU_NAMES) else [f"AU{i:02d}" for i in range(num_aus)]


def write_features_metadata(
    folder: str | os.PathLike,
    *,
    au_names,
    label_names,
    visual_feature_dim: int,
    audio_feature_dim: int,
    splits: dict,
    **optional,
) -> Path:
    """Write ``folder/emi_features.json`` (table in the module docstring); ``optional`` keys follow the required
    ones in the order given, then ``dataset_path`` and ``splits``. Returns the file's path."""
    metadata = {
        "format_version": FORMAT_VERSION,
        "au_names": list(au_names),
        "label_names": list(label_names),
        "visual_feature_dim": visual_feature_dim,
        "audio_feature_dim": audio_feature_dim,
        **optional,
        "dataset_path": DATASET_DIR,
        "splits": splits,
    }
    path = Path(folder) / FEATURES_METADATA
    path.write_text(json.dumps(metadata, indent=2))
    return path


def load_features_metadata(features_dir: str | os.PathLike) -> dict:
    """The parsed ``emi_features.json`` of ``features_dir``; ``{}`` when there is none."""
    path = Path(features_dir) / FEATURES_METADATA
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise EmiUsageError(f"{path} is not valid JSON ({error}). Re-run `emi-hf extract` into that folder, or "
                            f"restore the file.") from None  # fmt: skip


def load_features(features_dir: str | os.PathLike):
    """The merged DatasetDict of a features folder (or of a folder saved with `save_to_disk` itself)."""
    from datasets import load_from_disk

    features_dir = Path(features_dir)
    dataset_dir = features_dir / DATASET_DIR if (features_dir / DATASET_DIR).is_dir() else features_dir
    if not dataset_dir.is_dir():
        raise EmiNotFoundError(
            f"No features at {features_dir}: run `emi-hf extract --data-dir DATA --output {features_dir}` first."
        )
    return load_from_disk(str(dataset_dir))


def load_feature_splits(features_dir: str | os.PathLike):
    """(DatasetDict, metadata dict, folder the metadata paths are relative to).

    `features_dir` is an extraction folder (`emi_features.json` + `dataset/`) or a folder saved with
    `DatasetDict.save_to_disk`; the metadata is read from `emi_features.json` in it (or in its parent, when the
    dataset folder itself is given) and completed from the dataset's schema where absent.
    """
    features_dir = Path(features_dir)
    datasets = load_features(features_dir)
    root = features_dir
    metadata = {}
    for candidate in (features_dir, features_dir.parent):
        if (candidate / FEATURES_METADATA).is_file():
            metadata = load_features_metadata(candidate)
            root = candidate
            break
    return datasets, complete_metadata(metadata, datasets), root


def complete_metadata(metadata: dict, datasets) -> dict:
    """Fills `au_names`, `label_names`, `visual_feature_dim`, `audio_feature_dim` from the schema when missing."""
    metadata = dict(metadata)
    split = next(iter(datasets.values()))
    features = split.features
    if "au_features" in features:
        num_aus = features["au_features"].shape[1]
        if "au_names" not in metadata:
            metadata["au_names"] = default_au_names(num_aus)
        elif len(metadata["au_names"]) != num_aus:
            raise EmiUsageError(f"emi_features.json names {len(metadata['au_names'])} AUs but au_features have "
                                f"{num_aus}.")
    if "visual_features" in features:
        metadata.setdefault("visual_feature_dim", features["visual_features"].shape[1])
    if "audio_features" in features:
        metadata.setdefault("audio_feature_dim", features["audio_features"].shape[1])
    if "text_features" in features:
        metadata.setdefault("text_feature_dim", features["text_features"].shape[1])
    if "label_names" not in metadata:
        num_labels = getattr(features.get("labels"), "length", len(EMOTION_NAMES))
        default = num_labels in (-1, None, len(EMOTION_NAMES))
        metadata["label_names"] = list(EMOTION_NAMES) if default else [f"label_{i}" for i in range(num_labels)]
    return metadata
