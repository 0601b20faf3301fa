"""Publishing to and fetching from the Hugging Face Hub: trained models (with a model card) and cached features.

Every function here makes network calls, explicitly, to `huggingface_hub.constants.ENDPOINT` (the `HF_ENDPOINT`
environment variable, https://huggingface.co by default). With `HF_HUB_OFFLINE=1` nothing is sent: pulls are
served from the local cache or fail with a message saying so, pushes fail immediately.

Models
    `push_model(run_dir, "org/emi-fusion")` uploads a folder written by `save_pretrained` (weights, `config.json`
    with `auto_map`, the `configuration_emi.py` / `modeling_emi.py` / `backbones_emi.py` / `temporal_emi.py` code
    files, the processor config, the run's `results.json`) and a generated model card (`README.md`).
    `pull_model("org/emi-fusion")` downloads a snapshot and returns its local folder, ready for
    `EmiFusionModel.from_pretrained(folder)`.

    The card is rendered from a Jinja2 template per model type (`emi_visual`, `emi_audio`, `emi_fusion`) with the
    numbers of the run's `results.json`, read and validated by `emi_hf.results.read_results` (the format is in
    `emi_hf.results`): validation mean and per-emotion Pearson r, dataset, hyperparameters, license, versions.

Features
    `push_features(dataset_dict_or_folder, "org/emi-features")` uploads a `datasets.DatasetDict` as Parquet shards in
    `push_to_hub`'s layout (`emi_hf.data.parquet`), so `load_dataset("org/emi-features")` and the dataset viewer read
    it, every column exact. `pull_features` opens it, and repos of earlier versions (the `save_to_disk` layout) too.

Templates
    The canonical model card templates are `hub/model_cards/emi-*.md` (what reviewers edit); the package ships
    identical copies in `emi_hf/hub_templates/` for an installed emi-hf; `tests/test_hub.py` fails if they drift
    (`cp hub/model_cards/*.md src/emi_hf/hub_templates/` after editing).

Errors
    Failures that a user can fix raise `EmiHubError` subclasses saying what to do: `MissingTokenError`,
    `MissingRepoError`, `MissingRevisionError`, `HubOfflineError`; the `huggingface_hub` exception is chained.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    EvalResult,
    HfApi,
    ModelCard,
    ModelCardData,
    constants,
    get_token,
    snapshot_download,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .models import bundle_files, code_files  # noqa: F401  (code_files: re-exported)
from .models.configuration_emi import EMOTION_NAMES
from .errors import EmiError, EmiUsageError
from .provenance import warn_unless_permissive
from .results import RESULTS_FILE, read_results
from .text.encoder import TEXT_TOKENIZER_DIR


if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict
    from huggingface_hub import CommitInfo


__all__ = ["EmiHubError", "HubOfflineError", "MissingRepoError", "MissingRevisionError", "MissingTokenError",
           "pull_features", "pull_model", "push_features", "push_model", "render_model_card"]

MODEL_TYPES = {
    # config.json model_type -> (template file, modality, model class)
    "emi_visual": ("emi-visual.md", "visual", "EmiVisualModel"),
    "emi_audio": ("emi-audio.md", "audio", "EmiAudioModel"),
    "emi_text": ("emi-text.md", "text", "EmiTextModel"),
    "emi_fusion": ("emi-fusion.md", "fusion", "EmiFusionModel"),
}
CARD_TAGS = ["emi-hf", "emotion-recognition", "audiovisual", "abaw"]
MODALITY_TAGS = {"visual": ["video", "face"], "audio": ["audio", "speech"], "text": ["text", "transcript"],
                 "fusion": ["video", "audio"]}
PIPELINE_TAGS = {"visual": "video-classification", "audio": "audio-classification", "text": "text-classification",
                 "fusion": "video-classification"}
METRIC_ID = "emi_mean_pearson"  # the evaluate module's id (hub/metrics/emi_mean_pearson)
# license `other` without license_name / license_link in results.json: the page the challenge data comes from
DEFAULT_LICENSE_NAME = "emi-training-data-terms"
DEFAULT_LICENSE_LINK = "https://affective-behavior-analysis-in-the-wild.github.io/6th/"
TASK_TYPE = "emotional-mimicry-intensity"
TASK_NAME = "Emotional Mimicry Intensity estimation"

# Files of a run folder that belong on the Hub: top level only (checkpoints, logs and optimizer states stay home).
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".py")
MODEL_FILE_EXCLUDES = ("trainer_state.json", "training_args.json", "optimizer.json")
CODE_FILES = tuple(bundle_files())
"""The remote-code files `save_pretrained` writes next to the weights: the listing of `emi_hf/models/`
(`emi_hf.models.bundle_files`); kept under this name for earlier callers."""


class EmiHubError(EmiError, RuntimeError):
    """A Hub operation failed for a reason the user can fix; the message says how."""


class MissingTokenError(EmiHubError, PermissionError):
    """No Hub token is available (or the Hub rejected it) for an operation that needs one."""


class MissingRepoError(EmiHubError, LookupError):
    """The repository does not exist (or is private and the token cannot see it)."""


class MissingRevisionError(EmiHubError, LookupError):
    """The repository exists but the branch, tag or commit does not."""


class HubOfflineError(EmiHubError, ConnectionError):
    """`HF_HUB_OFFLINE=1` (or no connection) and what was asked is not in the local cache."""


# ----------------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------------


def _repo_url(repo_id: str, repo_type: str) -> str:
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
    return f"{constants.ENDPOINT}/{prefix}{repo_id}"


def _require_online(action: str) -> None:
    if constants.is_offline_mode():
        raise HubOfflineError(
            f"Cannot {action}: HF_HUB_OFFLINE=1 is set, so no request is sent to {constants.ENDPOINT}. "
            "Unset it (or set HF_HUB_OFFLINE=0) in the environment of this process to use the Hub."
        )


def _require_token(token: str | None) -> str:
    token = token or get_token()
    if not token:
        raise MissingTokenError(
            f"Pushing to {constants.ENDPOINT} needs a Hugging Face access token with write permission: pass it as "
            "`token=` (CLI: `--token`), set the HF_TOKEN environment variable, or run `hf auth login` once. "
            "Tokens are created at https://huggingface.co/settings/tokens."
        )
    return token


def _existing_refs(api: HfApi, repo_id: str, repo_type: str, token: str | None) -> str:
    try:
        refs = api.list_repo_refs(repo_id, repo_type=repo_type, token=token)
    except Exception:  # only used to improve a message
        return ""
    branches = ", ".join(sorted(ref.name for ref in refs.branches)) or "none"
    tags = ", ".join(sorted(ref.name for ref in refs.tags)) or "none"
    return f" Existing branches: {branches}; tags: {tags}."


@contextmanager
def _explained_hub_errors(api: HfApi, repo_id: str, repo_type: str, revision: str | None, token: str | None,
                          pushing: bool):
    """Re-raises huggingface_hub errors as EmiHubError subclasses whose messages say what to do."""
    kind = "dataset" if repo_type == "dataset" else repo_type
    try:
        yield
    except RevisionNotFoundError as error:
        raise MissingRevisionError(
            f"Revision {revision!r} not found in {kind} repo {repo_id!r} on {constants.ENDPOINT}: pass an existing "
            f"branch, tag or full commit id.{_existing_refs(api, repo_id, repo_type, token)}"
        ) from error
    except RepositoryNotFoundError as error:
        creator = (
            f"`emi-hf push RUN_DIR --repo-id {repo_id}`" if repo_type == "model"
            else f"`emi_hf.hub.push_features(features, \"{repo_id}\")`"
        )
        raise MissingRepoError(
            f"{kind.capitalize()} repo {repo_id!r} not found on {constants.ENDPOINT} ({_repo_url(repo_id, repo_type)}): "
            f"check the id (namespace/name), or create and fill it with {creator}. If it is private, pass a token "
            "that can read it (`token=`, HF_TOKEN, or `hf auth login`)."
        ) from error
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as error:
        where = f"{kind} repo {repo_id!r}" + (f" at revision {revision!r}" if revision else "")
        if constants.is_offline_mode():
            raise HubOfflineError(
                f"HF_HUB_OFFLINE=1 is set and {where} is not in the local cache ({constants.HF_HUB_CACHE}). "
                "Unset HF_HUB_OFFLINE (or set it to 0) to download it, or pass the path of a local folder instead of "
                "a repo id."
            ) from error
        raise HubOfflineError(
            f"Could not reach {constants.ENDPOINT} for {where}, and it is not in the local cache "
            f"({constants.HF_HUB_CACHE}): check the network connection and HF_ENDPOINT. ({error.__class__.__name__})"
        ) from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 401:
            raise MissingTokenError(
                f"{constants.ENDPOINT} rejected the request for {kind} repo {repo_id!r} as unauthenticated (401): "
                "the token is missing, invalid or expired. Pass a valid token (`token=`, HF_TOKEN, or "
                "`hf auth login`)." + (" It needs write permission to push." if pushing else "")
            ) from error
        if status == 403:
            raise MissingTokenError(
                f"{constants.ENDPOINT} refused access to {kind} repo {repo_id!r} (403): the token has no "
                f"{'write' if pushing else 'read'} permission on it (fine-grained tokens must list the repo or its "
                "namespace)."
            ) from error
        raise


# ----------------------------------------------------------------------------------------------------------------------
# The model card
# ----------------------------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise EmiUsageError(f"{path} is not valid JSON: {error}") from error


def _label_names(config: Mapping[str, Any]) -> list[str]:
    if config.get("label_names"):
        return list(config["label_names"])
    visual = config.get("visual_config") or {}
    return list(visual.get("label_names") or EMOTION_NAMES)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for distribution, key in (("emi-hf", "emi_hf"), ("transformers", "transformers"), ("torch", "torch")):
        try:
            found[key] = version(distribution)
        except PackageNotFoundError:
            found[key] = "unknown"
    return found


def _template_text(filename: str) -> str:
    return resources.files("emi_hf").joinpath("hub_templates", filename).read_text(encoding="utf-8")


def _read_model_config(folder: Path) -> tuple[dict, str]:
    """(config.json of a saved emi model folder, its model_type); ValueError when it is not one."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise EmiUsageError(f"{folder} has no config.json: is it a folder written by `model.save_pretrained(...)`?")
    config = _read_json(config_path)
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise EmiUsageError(
            f"{config_path} has model_type {model_type!r}; emi-hf model cards exist for {sorted(MODEL_TYPES)}."
        )
    return config, model_type


def _card_data(results: dict, modality: str, model_name: str, label_names: list[str],
               config: Mapping[str, Any] | None = None) -> ModelCardData:
    """The card's YAML metadata: pipeline tag, base models (the encoders' Hub ids), tags, license (with
    `license_name` / `license_link` when `other`), the dataset's Hub id and the `model-index` of the validation
    numbers (rounded to 4 decimals; the mean under the evaluate module's id, `METRIC_ID`)."""
    from .encoders.setup import card_base_models, card_modalities

    dataset = results.get("dataset") or "the training data"
    repo = results.get("dataset_repo_id")
    validation, eval_results = results.get("validation"), None
    if validation is not None:
        common = dict(task_type=TASK_TYPE, task_name=TASK_NAME, dataset_name=dataset, dataset_split="validation",
                      dataset_type=repo or re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-"))
        eval_results = [EvalResult(metric_type=METRIC_ID, metric_name="Mean Pearson r",
                                   metric_value=round(float(validation["mean_pearson"]), 4), **common)] + [
            EvalResult(metric_type="pearsonr", metric_name=f"Pearson r ({name})", metric_config=name,
                       metric_value=round(float(validation["per_emotion"][name]), 4), **common)
            for name in label_names if name in validation.get("per_emotion", {})]
    from .provenance import card_licence

    license_id = card_licence(config or {}, results.get("license"))["license"]
    other = {"license_name": results.get("license_name") or DEFAULT_LICENSE_NAME,
             "license_link": results.get("license_link") or DEFAULT_LICENSE_LINK} if license_id == "other" else {}
    return ModelCardData(
        library_name="transformers", pipeline_tag=PIPELINE_TAGS[modality], license=license_id, **other,
        base_model=card_base_models(dict(config or {})) or None,
        tags=CARD_TAGS + (sorted({t for m in card_modalities(config or {}) for t in MODALITY_TAGS[m]})
                          if modality == "fusion" and config else MODALITY_TAGS[modality]),
        datasets=[repo] if repo else None, metrics=[METRIC_ID, "pearsonr"], model_name=model_name,
        eval_results=eval_results,
    )


def render_model_card(folder: str | os.PathLike, repo_id: str | None = None) -> ModelCard:
    """Renders the model card of a saved model folder from its `config.json` and `results.json`.

    Args:
        folder: a folder written by `save_pretrained` (must contain `config.json` with an emi model_type).
        repo_id: the repo the card is for (used in the loading snippet); defaults to the folder name.

    Returns:
        A `huggingface_hub.ModelCard`: YAML metadata (`library_name: transformers`, tags, license, `model-index` with
        the validation mean and per-emotion Pearson r) and a Markdown body. `str(card)` is the README.md text.

    Raises:
        ValueError: no `config.json`, unknown model_type, or a malformed `results.json`.
    """
    import jinja2

    from .encoders.setup import card_encoders, card_fusion
    from .provenance import card_licence, card_provenance

    folder = Path(folder)
    config, model_type = _read_model_config(folder)
    template_name, modality, model_class = MODEL_TYPES[model_type]
    label_names = _label_names(config)
    results = read_results(folder, label_names) or {}
    if results.get("modality") not in (None, modality):
        raise EmiUsageError(
            f"{folder}/{RESULTS_FILE} says modality {results['modality']!r} but config.json is a {model_type} model: "
            "is this the results file of another run?"
        )
    repo_id = repo_id or folder.resolve().name
    model_name = repo_id.split("/")[-1]
    validation = results.get("validation")
    context = {
        "card_data": _card_data(results, modality, model_name, label_names, config).to_yaml(),
        "repo_id": repo_id,
        "model_name": model_name,
        "model_class": model_class,
        "modality": modality,
        "config": config,
        "label_names": label_names,
        "dataset": results.get("dataset") or "the training data",
        "validation": validation,
        "num_clips": (validation or {}).get("num_clips"),
        "per_emotion": [(n, validation["per_emotion"][n]) for n in label_names if n in validation.get("per_emotion", {})]
        if validation
        else [],
        "training": results.get("training") or {},
        **card_fusion(config, label_names),
        "encoders": card_encoders(config),
        "backbone_weights": card_provenance(config),
        "licence": card_licence(config, results.get("license")),
        "has_remote_code": bool(config.get("auto_map")) and all((folder / name).is_file()
                                                                for name in code_files(config)),
        "versions": results.get("versions") or _versions(),
        "versions_at_upload": not results.get("versions"),
    }
    environment = jinja2.Environment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )
    text = environment.from_string(_template_text(template_name)).render(**context)
    return ModelCard(text)


# ----------------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------------


def _model_files(folder: Path) -> list[Path]:
    """The files of a run folder that go to the Hub: its top level, and a text model's `text_tokenizer/`."""
    files = sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.suffix in MODEL_FILE_SUFFIXES and path.name not in MODEL_FILE_EXCLUDES
    )
    tokenizer = folder / TEXT_TOKENIZER_DIR
    if tokenizer.is_dir():
        files += sorted(path for path in tokenizer.iterdir() if path.is_file())
    names = {path.name for path in files}
    if not any(name.endswith(".safetensors") for name in names):
        raise EmiUsageError(
            f"{folder} has no .safetensors weights: save the model with `model.save_pretrained(folder)` "
            "(safetensors is the default) before pushing."
        )
    return files


def push_model(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload emi-hf model",
    model_card: str | ModelCard | None = None,
) -> CommitInfo:
    """Publishes a trained model folder, with a generated model card, to a Hub model repo.

    Uploads the top-level `.safetensors`, `.json` (config, processor config, `results.json`) and `.py` (the
    `configuration_emi.py` / `modeling_emi.py` / `backbones_emi.py` / `temporal_emi.py` code that `auto_map` points
    to) files of `folder`, plus `README.md` rendered by :func:`render_model_card`. Sub-folders (checkpoints, logs) are
    not uploaded. The repo is created if it does not exist; so is the branch `revision` (from `main`).

    Args:
        folder: output of `model.save_pretrained(folder)` (and `processor.save_pretrained(folder)`).
        repo_id: `namespace/name`.
        token: write token; defaults to HF_TOKEN or the token saved by `hf auth login`.
        private: create the repo private (ignored if it already exists).
        revision: branch to commit to; created from `main` if missing. Default: `main`.
        commit_message: the commit's summary.
        model_card: README text or `ModelCard` to upload instead of the generated card.

    Returns:
        `huggingface_hub.CommitInfo` (`.oid` is the commit id, `.commit_url` its page).

    Raises:
        MissingTokenError: no token, or the Hub rejects it. HubOfflineError: HF_HUB_OFFLINE=1.
        ValueError: the folder is not a saved emi-hf model, or its results.json is malformed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EmiUsageError(f"Model folder {folder} does not exist.")
    files = _model_files(folder)
    card = model_card if model_card is not None else render_model_card(folder, repo_id)
    config = _read_json(folder / "config.json")
    warn_unless_permissive(folder, config, (read_results(folder, _label_names(config)) or {}).get("license"))
    missing_code = [name for name in code_files(config) if not (folder / name).is_file()]
    if not config.get("auto_map") or missing_code:
        warnings.warn(
            f"{folder} lacks {'auto_map in config.json' if not config.get('auto_map') else ''}"
            f"{' and ' if not config.get('auto_map') and missing_code else ''}{', '.join(missing_code)}: the pushed "
            "model will load with emi-hf installed, but not with `trust_remote_code=True` alone. Save it with "
            "emi_hf imported (which registers the classes for auto_map) to include the code.",
            stacklevel=2,
        )

    _require_online(f"push {folder} to {repo_id}")
    token = _require_token(token)
    api = HfApi(token=token)
    with _explained_hub_errors(api, repo_id, "model", revision, token, pushing=True):
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision is not None and revision != constants.DEFAULT_REVISION:
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        operations = [CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
                      for path in files]
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode("utf-8")))
        return api.create_commit(
            repo_id, operations, commit_message=commit_message, revision=revision, repo_type="model"
        )


def pull_model(
    repo_id: str,
    *,
    revision: str | None = None,
    local_dir: str | os.PathLike | None = None,
    token: str | None = None,
) -> Path:
    """Downloads a model repo (a snapshot of `revision`) and returns the local folder.

    Load it with the class of its model type, e.g. `EmiFusionModel.from_pretrained(pull_model("org/emi-fusion"))`.
    Files come from the Hugging Face cache when already there; with HF_HUB_OFFLINE=1, only from there.

    Args:
        repo_id: `namespace/name`.
        revision: branch, tag or commit id; default `main`.
        local_dir: copy the files into this folder instead of returning the cache's snapshot folder.
        token: read token, needed for private repos only.

    Raises:
        MissingRepoError, MissingRevisionError, HubOfflineError, MissingTokenError (messages say what to do).
    """
    api = HfApi(token=token)
    with _explained_hub_errors(api, repo_id, "model", revision, token, pushing=False):
        return Path(snapshot_download(repo_id, revision=revision, local_dir=local_dir, token=token))


# ----------------------------------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------------------------------


_FEATURES_CARD = """
# Cached emi-hf features

Per-clip features of `emi-hf extract` (face embeddings, AUs, speech frames, masks, labels) as Parquet: {splits}.

```python
from datasets import load_dataset
features = load_dataset("{repo_id}")          # or: emi_hf.hub.pull_features("{repo_id}")
```

The features derive from face and voice recordings: share them only under the licence and consent terms of the
source videos.
"""
_LEGACY_FEATURE_FILES = ("dataset_dict.json", "state.json", "dataset_info.json", ".arrow")


def _features_card(dataset, repo_id: str) -> str:
    import yaml

    from .data.parquet import card_metadata

    metadata = {"tags": ["emi-hf", "emotion-recognition", "abaw"], **card_metadata(dataset)}
    splits = ", ".join(getattr(dataset, "keys", lambda: ["train"])())
    return f"---\n{yaml.safe_dump(metadata, sort_keys=False)}---\n" + _FEATURES_CARD.format(repo_id=repo_id,
                                                                                            splits=splits)


def push_features(
    dataset_dict_path_or_obj: str | os.PathLike | DatasetDict | Dataset,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = True,
    revision: str | None = None,
    commit_message: str = "Upload emi-hf features",
) -> CommitInfo:
    """Uploads cached features as a dataset repo of Parquet shards that `load_dataset` and the dataset viewer read
    (module docstring); files of an earlier push that this one lacks (other shards, the old layout) are deleted.
    The repo is **private by default**: features of recordings inherit the videos' licence and consent terms.

    Args:
        dataset_dict_path_or_obj: a `datasets.DatasetDict` / `Dataset` (as split `train`), or the path of its
            `save_to_disk` folder.
        repo_id: `namespace/name` of the dataset repo.
        token, private, revision, commit_message: as in :func:`push_model`.

    Returns:
        `huggingface_hub.CommitInfo`.
    """
    from datasets import load_from_disk

    from .data.parquet import write_parquet_repo

    _require_online(f"push features to {repo_id}")
    token = _require_token(token)
    dataset = dataset_dict_path_or_obj
    if isinstance(dataset, (str, os.PathLike)):
        folder = Path(dataset)
        if not ((folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()):
            raise EmiUsageError(f"{folder} is not a folder written by `DatasetDict.save_to_disk` / "
                                "`Dataset.save_to_disk` (no dataset_dict.json or state.json).")
        dataset = load_from_disk(str(folder))
    with tempfile.TemporaryDirectory(prefix="emi-features-") as staging:
        files = write_parquet_repo(dataset, staging)
        api = HfApi(token=token)
        with _explained_hub_errors(api, repo_id, "dataset", revision, token, pushing=True):
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="dataset")
            if revision is not None and revision != constants.DEFAULT_REVISION:
                api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="dataset")
            new = {path.relative_to(staging).as_posix() for path in files}
            stale = [name for name in api.list_repo_files(repo_id, repo_type="dataset", revision=revision)
                     if name not in new and (name.startswith("data/") and name.endswith(".parquet")
                                             or name.endswith(_LEGACY_FEATURE_FILES))]
            operations = [CommitOperationDelete(path_in_repo=name) for name in stale]
            operations += [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(Path(staging) / name))
                           for name in sorted(new)]
            operations.append(CommitOperationAdd(path_in_repo="README.md",
                                                 path_or_fileobj=_features_card(dataset, repo_id).encode("utf-8")))
            return api.create_commit(
                repo_id, operations, commit_message=commit_message, revision=revision, repo_type="dataset"
            )


def pull_features(
    repo_id: str,
    revision: str | None = None,
    *,
    token: str | None = None,
    local_dir: str | os.PathLike | None = None,
) -> DatasetDict | Dataset:
    """Downloads a features dataset repo pushed by :func:`push_features` (Parquet, or the `save_to_disk` layout of
    earlier versions) and opens it.

    Raises:
        MissingRepoError, MissingRevisionError, HubOfflineError, MissingTokenError.
    """
    from datasets import load_from_disk

    from .data.parquet import is_parquet_repo, load_parquet_repo

    api = HfApi(token=token)
    with _explained_hub_errors(api, repo_id, "dataset", revision, token, pushing=False):
        folder = snapshot_download(repo_id, repo_type="dataset", revision=revision, local_dir=local_dir, token=token)
    return load_parquet_repo(folder) if is_parquet_repo(folder) else load_from_disk(folder)
