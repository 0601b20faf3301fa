"""emi_hf.hub against a local Hub-compatible server (tests/fakes/hub_server.py) on 127.0.0.1: push/pull of a model with its
card, push/pull of features, and the error messages.

huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE when it is imported, and this pytest process runs offline
(conftest sets HF_HUB_OFFLINE=1). So everything that talks to the server runs in a child process
(`python tests/test_hub.py SCENARIO ...`, the functions at the bottom of this file) whose environment points
HF_ENDPOINT at the server, with HF_HOME in a temporary folder and Xet disabled. Each scenario prints one JSON line
that the test checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakes.hub_server import HubServer  # noqa: E402


REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_emi_test_write_token"
USER = "tester"


# ----------------------------------------------------------------------------------------------------------------------
# Harness
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubServer(tmp_path_factory.mktemp("hub_server"), tokens={TOKEN: USER}) as server:
        yield server


def start_scenario(scenario: str, server: HubServer, hf_home: Path, *args: str, offline: bool = False,
                   token: bool = True, pythonpath_blocker: Path | None = None) -> subprocess.Popen:
    """Starts `python tests/test_hub.py SCENARIO ARGS...` with the Hub environment pointing at `server`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "HUGGING_FACE_", "TRANSFORMERS_OFFLINE"))
        and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        HF_ENDPOINT=server.url,
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1" if offline else "0",
        HF_HUB_DISABLE_XET="1",  # the server only speaks regular (inline) uploads and downloads
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
        OMP_NUM_THREADS="1",
    )
    if token:
        env["HF_TOKEN"] = TOKEN
    if pythonpath_blocker is not None:
        # An `emi_hf` module that refuses to import, first on the path: proves the scenario does not need the package.
        (pythonpath_blocker / "emi_hf").mkdir(parents=True, exist_ok=True)
        (pythonpath_blocker / "emi_hf" / "__init__.py").write_text("raise ImportError('emi_hf is hidden here')\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath_blocker), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, __file__, scenario, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish_scenario(process: subprocess.Popen) -> dict:
    """Waits for a scenario and returns the JSON it printed last."""
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    assert process.returncode == 0, f"scenario {process.args[2]} failed:\n{stdout}\n{stderr}"
    return json.loads(stdout.strip().splitlines()[-1])


def run_scenario(*args, **kwargs) -> dict:
    return finish_scenario(start_scenario(*args, **kwargs))


def front_matter(readme: str) -> dict:
    import yaml

    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


# ----------------------------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------------------------


def test_push_pull_fusion_model_and_card(hub, tmp_path):
    result = run_scenario("model", hub, tmp_path / "hf_home", str(tmp_path))

    # The right files, and only those (the code: the whole bundle, `emi_hf/models/`'s listing).
    assert sorted(result["files"]) == [
        ".gitattributes", "README.md", "backbones_emi.py", "config.json", "configuration_emi.py", "encoders_emi.py",
        "model.safetensors", "modeling_base_emi.py", "modeling_emi.py", "modeling_ensemble_emi.py",
        "modeling_fusion_emi.py", "pipeline_emi.py", "pipeline_task_emi.py", "processing_emi.py",
        "processing_standalone_emi.py", "processor_config.json", "processor_kwargs.py", "results.json",
        "temporal_emi.py",
    ]  # pipeline_*: the transformers.pipeline() task for users without emi-hf
    assert result["same_outputs_pulled"] and result["same_outputs_from_repo_id"] and result["same_outputs_revision"]

    # Revisions: two commits on main (creation + upload), a branch v2 with its own commit.
    repo = hub.store.repos[("model", f"{USER}/emi-fusion")]
    assert set(repo.branches) == {"main", "v2"}
    assert repo.branches["main"] == result["commit"] and repo.branches["v2"] == result["branch_commit"]
    assert result["commit"] != result["branch_commit"]
    assert repo.commits[result["branch_commit"]].parent == result["commit"]
    assert all(len(oid) == 40 and int(oid, 16) >= 0 for oid in repo.commits)
    assert repo.commits[repo.branches["main"]].message == "Upload emi-hf model"

    # The card: metadata parses and carries the run's numbers.
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    readme = result["readme"]
    metadata = front_matter(readme)
    assert metadata["library_name"] == "transformers"
    assert {"emi-hf", "emotion-recognition", "audiovisual", "abaw"} <= set(metadata["tags"])
    assert metadata["datasets"] == ["tester/emi-features"]
    metrics = {m["name"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert metrics.pop("Mean Pearson r") == round(results["validation"]["mean_pearson"], 4)
    assert metrics == {f"Pearson r ({name})": round(value, 4)
                       for name, value in results["validation"]["per_emotion"].items()}
    assert metadata["model-index"][0]["results"][0]["dataset"]["split"] == "validation"
    for text in (
        "not a diagnosis", "consented", "Hume-Vidmimic2", 'EmiFusionModel.from_pretrained("tester/emi-fusion")',
        "trust_remote_code=True", "| learning_rate | 0.0003 |", f"{results['validation']['mean_pearson']:.4f}",
    ):
        assert text in readme, text
    # huggingface_hub parses it back into EvalResults.
    assert result["eval_results"] == 1 + len(results["validation"]["per_emotion"])

    # Two more child processes, in parallel, both offline (HF_HUB_OFFLINE=1) on the same cache:
    # - without emi-hf importable, the pushed code files are enough (trust_remote_code);
    # - the pulled model is served from the cache, anything else fails with a clear message.
    remote_process = start_scenario("remote_code", hub, tmp_path / "hf_home", str(tmp_path), result["pulled_path"],
                                    offline=True, pythonpath_blocker=tmp_path / "no_emi_hf")
    offline = run_scenario("offline", hub, tmp_path / "hf_home", str(tmp_path), offline=True)
    remote = finish_scenario(remote_process)
    assert remote == {"emi_hf_imported": False, "class_module": remote["class_module"], "same_outputs": True}
    assert remote["class_module"].startswith("transformers_modules.")

    assert offline["cached_pull"] == result["pulled_path"]
    assert offline["uncached"][0] == "HubOfflineError"
    assert "HF_HUB_OFFLINE=1" in offline["uncached"][1] and f"{USER}/never-pushed" in offline["uncached"][1]
    assert offline["push"][0] == "HubOfflineError" and "HF_HUB_OFFLINE" in offline["push"][1]


@pytest.fixture(scope="module")
def errors_and_features(hub, tmp_path_factory):
    """One child process (no HF_TOKEN in its environment) for the error cases and the features round trip."""
    workdir = tmp_path_factory.mktemp("errors_and_features")
    return run_scenario("errors_and_features", hub, workdir / "hf_home", str(workdir), token=False)


def test_error_messages(hub, errors_and_features):
    result = errors_and_features["errors"]

    kind, message = result["push_without_token"]
    assert kind == "MissingTokenError"
    assert "--token" in message and "HF_TOKEN" in message and "hf auth login" in message

    kind, message = result["push_with_bad_token"]
    assert kind == "MissingTokenError" and "401" in message

    kind, message = result["missing_repo"]
    assert kind == "MissingRepoError"
    assert f"{USER}/does-not-exist" in message and hub.url in message and "emi-hf push" in message

    kind, message = result["missing_dataset_repo"]
    assert kind == "MissingRepoError" and "Dataset repo" in message and "push_features" in message

    kind, message = result["wrong_revision"]
    assert kind == "MissingRevisionError"
    assert "'nope'" in message and "Existing branches: main, release" in message

    kind, message = result["private_without_token"]
    assert kind == "MissingRepoError" and "private" in message
    assert result["private_features_without_token"][0] == "MissingRepoError"

    assert not [path for _, path in hub.requests if "xet" in path.lower() or "/info/lfs" in path]


def test_features_round_trip(hub, errors_and_features):
    result = errors_and_features["features"]
    assert result["from_object"] == result["expected"]
    assert result["from_folder"] == result["expected"]
    assert result["from_legacy"] == result["expected"]
    # Parquet in push_to_hub's layout, the old layout's files gone: load_dataset and the dataset viewer read it
    assert [f for f in result["files"] if f != ".gitattributes"] == [
        "README.md", "data/test-00000-of-00001.parquet", "data/train-00000-of-00001.parquet"]
    repo = hub.store.repos[("dataset", f"{USER}/emi-features")]
    assert repo.private, "features repos are private by default"
    tree = repo.commits[repo.branches["main"]].tree
    assert "data/train-00000-of-00001.parquet" in tree and "README.md" in tree and "dataset_dict.json" not in tree


def test_packaged_templates_match_hub_folder():
    packaged = REPO_ROOT / "src" / "emi_hf" / "hub_templates"
    canonical = REPO_ROOT / "hub" / "model_cards"
    names = sorted(path.name for path in canonical.glob("*.md"))
    assert names == ["emi-audio.md", "emi-fusion.md", "emi-text.md", "emi-visual.md"]
    for name in names:
        assert (packaged / name).read_bytes() == (canonical / name).read_bytes(), (
            f"src/emi_hf/hub_templates/{name} differs from hub/model_cards/{name}: "
            "run `cp hub/model_cards/*.md src/emi_hf/hub_templates/`"
        )


def _config_folder(tmp_path: Path, config, results: dict | None) -> Path:
    folder = tmp_path / config.model_type
    config.save_pretrained(folder)
    if results is not None:
        (folder / "results.json").write_text(json.dumps(results))
    return folder


def _results(config_modality: str, **overrides) -> dict:
    from emi_hf import EMOTION_NAMES

    per_emotion = {name: 0.1 * (i + 1) for i, name in enumerate(EMOTION_NAMES)}
    results = {
        "modality": config_modality,
        "dataset": "Hume-Vidmimic2",
        "validation": {"mean_pearson": sum(per_emotion.values()) / 6, "per_emotion": per_emotion},
        "training": {"learning_rate": 0.001, "epochs": 2},
    }
    results.update(overrides)
    return results


def test_render_model_card_for_each_model_type(tmp_path):
    from helpers import tiny_audio_config, tiny_fusion_config, tiny_visual_config
    from huggingface_hub import ModelCard

    from emi_hf.hub import render_model_card

    for config, modality, heading in (
        (tiny_visual_config(), "visual", "from faces"),
        (tiny_audio_config(), "audio", "from the voice"),
        (tiny_fusion_config(), "fusion", "audiovisual"),
    ):
        folder = _config_folder(tmp_path, config, _results(modality))
        card = render_model_card(folder, f"org/emi-{modality}")
        text = str(card)
        assert heading in text and "not a diagnosis" in text and "{{" not in text
        reparsed = ModelCard(text)
        assert reparsed.data.library_name == "transformers"
        assert reparsed.data.eval_results[0].metric_value == pytest.approx(0.35)
        assert f"Emi{modality.capitalize()}Model.from_pretrained(\"org/emi-{modality}\")" in text

    # Without results.json: a card without model-index that says so.
    folder = _config_folder(tmp_path / "bare", tiny_visual_config(), None)
    text = str(render_model_card(folder, "org/bare"))
    assert "model-index" not in front_matter(text)
    assert "No validation results were recorded" in text


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"modality": "audio"}, "modality 'audio'"),
        ({"modality": "smell"}, "'modality' must be"),
        ({"validation": {"mean_pearson": 0.9, "per_emotion": {"Joy": 0.1}}}, "not the mean"),
        ({"validation": {"mean_pearson": 0.1, "per_emotion": {"Joy": 0.1}}}, "do not match the model's labels"),
        ({"validation": {"per_emotion": {}}}, "'validation' must be"),
        ({"training": [1, 2]}, "'training' must be"),
    ],
)
def test_malformed_results_json_is_reported(tmp_path, overrides, message):
    from helpers import tiny_visual_config

    from emi_hf.hub import render_model_card

    folder = _config_folder(tmp_path, tiny_visual_config(), _results("visual", **overrides))
    with pytest.raises(ValueError, match=message):
        render_model_card(folder)


def test_push_model_checks_the_folder_before_any_request(tmp_path):
    from helpers import tiny_visual_config

    from emi_hf.hub import push_model

    folder = _config_folder(tmp_path, tiny_visual_config(), None)
    with pytest.raises(ValueError, match="no .safetensors weights"):
        push_model(folder, "org/x", token="unused")
    with pytest.raises(ValueError, match="does not exist"):
        push_model(tmp_path / "missing", "org/x", token="unused")


def test_server_speaks_the_hub_protocol(hub):
    """Raw HTTP checks of what huggingface_hub relies on (headers, status codes), without the client."""

    def request(method, path, body=None, token=None, headers=None):
        request = urllib.request.Request(hub.url + path, data=body, method=method, headers=headers or {})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    status, _, _ = request("POST", "/api/repos/create", json.dumps({"name": "raw"}).encode())
    assert status == 401
    status, _, body = request("POST", "/api/repos/create", json.dumps({"name": "raw"}).encode(), TOKEN)
    assert status == 200 and json.loads(body)["url"] == f"{hub.url}/{USER}/raw"
    assert request("POST", "/api/repos/create", json.dumps({"name": "raw"}).encode(), TOKEN)[0] == 409

    commit = b"\n".join(json.dumps(line).encode() for line in (
        {"key": "header", "value": {"summary": "add", "description": ""}},
        {"key": "file", "value": {"path": "dir/a.txt", "content": "aGVsbG8=", "encoding": "base64"}},
    ))
    assert request("POST", f"/api/models/{USER}/raw/commit/main", commit)[0] == 401
    status, _, body = request("POST", f"/api/models/{USER}/raw/commit/main", commit, TOKEN)
    assert status == 200
    commit_oid = json.loads(body)["commitOid"]

    status, headers, body = request("HEAD", f"/{USER}/raw/resolve/main/dir/a.txt")
    assert status == 200 and body == b""
    assert headers["X-Repo-Commit"] == commit_oid
    assert headers["ETag"] == '"b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"'  # git hash-object of "hello"
    assert headers["Content-Length"] == "5"
    status, headers, body = request("GET", f"/{USER}/raw/resolve/{commit_oid}/dir/a.txt", headers={"Range": "bytes=1-"})
    assert status == 206 and body == b"ello"

    for path, code in (
        (f"/{USER}/nope/resolve/main/a.txt", "RepoNotFound"),
        (f"/{USER}/raw/resolve/nope/dir/a.txt", "RevisionNotFound"),
        (f"/{USER}/raw/resolve/main/missing.txt", "EntryNotFound"),
        (f"/api/models/{USER}/raw/revision/nope", "RevisionNotFound"),
    ):
        status, headers, _ = request("GET", path)
        assert (status, headers.get("X-Error-Code")) == (404 if code != "RepoNotFound" else 401, code), path

    status, _, body = request("GET", f"/api/models/{USER}/raw/tree/main?recursive=false")
    assert [(e["type"], e["path"]) for e in json.loads(body)] == [("file", ".gitattributes"), ("directory", "dir")]
    status, _, body = request("GET", f"/api/models/{USER}/raw/tree/main/dir?recursive=true")
    assert [(e["type"], e["path"], e["size"]) for e in json.loads(body)] == [("file", "dir/a.txt", 5)]
    status, _, body = request("GET", f"/api/models/{USER}/raw")
    assert json.loads(body)["sha"] == commit_oid


# ----------------------------------------------------------------------------------------------------------------------
# Scenarios (run in a child process: `python tests/test_hub.py SCENARIO WORKDIR`)
# ----------------------------------------------------------------------------------------------------------------------


def _error(function, *args, **kwargs) -> list:
    try:
        function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - the scenario reports the class and message
        return [type(error).__name__, str(error)]
    return ["no error", ""]


def scenario_model(workdir: str) -> dict:
    import numpy as np
    import torch
    from helpers import tiny_fusion_config
    from huggingface_hub import ModelCard

    from emi_hf import EmiFusionModel
    from emi_hf.hub import pull_model, push_model
    from emi_hf.metrics import mean_pearson

    torch.set_num_threads(1)
    torch.manual_seed(0)
    workdir = Path(workdir)
    run = workdir / "run"
    model = EmiFusionModel(tiny_fusion_config()).eval()
    model.save_pretrained(run)
    rng = np.random.default_rng(0)
    references = rng.random((40, 6))
    validation = mean_pearson(references + rng.normal(scale=0.3, size=references.shape), references)
    validation["num_clips"] = 40
    (run / "results.json").write_text(json.dumps({
        "modality": "fusion", "dataset": "Hume-Vidmimic2", "dataset_repo_id": "tester/emi-features",
        "validation": validation, "training": {"learning_rate": 3e-4, "epochs": 2, "batch_size": 8},
    }))
    (run / "processor_config.json").write_text(json.dumps({"processor_class": "EmiProcessor"}))
    (run / "checkpoint-1").mkdir()  # training leftovers must not be pushed
    (run / "checkpoint-1" / "model.safetensors").write_bytes(b"x")
    (run / "optimizer.pt").write_bytes(b"x")

    commit = push_model(run, f"{USER}/emi-fusion")
    results_v1 = (run / "results.json").read_text()
    (run / "results.json").write_text(results_v1.replace('"epochs": 2', '"epochs": 3'))
    branch_commit = push_model(run, f"{USER}/emi-fusion", revision="v2", commit_message="Longer training on v2")
    (run / "results.json").write_text(results_v1)
    pulled = pull_model(f"{USER}/emi-fusion")
    pulled_revision = pull_model(f"{USER}/emi-fusion", revision=commit.oid, local_dir=workdir / "pulled")

    batch = {
        "visual_features": torch.randn(2, 5, 512),
        "au_features": torch.rand(2, 5, 13) * 5,
        "frame_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
        "audio_features": torch.randn(2, 7, 32),
        "audio_mask": torch.tensor([[1] * 7, [1] * 4 + [0] * 3]),
    }

    def same_outputs(other) -> bool:
        with torch.no_grad():
            expected, actual = model(**batch), other.eval()(**batch)
        return bool(torch.equal(expected.intensities, actual.intensities))

    with torch.no_grad():
        torch.save({"batch": batch, "intensities": model(**batch).intensities}, workdir / "reference_outputs.pt")
    readme = (pulled / "README.md").read_text(encoding="utf-8")
    return {
        "commit": commit.oid,
        "branch_commit": branch_commit.oid,
        "pulled_path": str(pulled),
        "files": sorted(path.name for path in pulled.iterdir()),
        "readme": readme,
        "eval_results": len(ModelCard(readme).data.eval_results),
        "same_outputs_pulled": same_outputs(EmiFusionModel.from_pretrained(pulled)),
        "same_outputs_revision": same_outputs(EmiFusionModel.from_pretrained(pulled_revision)),
        # transformers' own Hub code path (hf_hub_download of config.json, model.safetensors, ...).
        "same_outputs_from_repo_id": same_outputs(EmiFusionModel.from_pretrained(f"{USER}/emi-fusion")),
    }


def scenario_offline(workdir: str) -> dict:
    from emi_hf.hub import pull_model, push_model

    return {
        "cached_pull": str(pull_model(f"{USER}/emi-fusion")),
        "uncached": _error(pull_model, f"{USER}/never-pushed"),
        "push": _error(push_model, Path(workdir) / "run", f"{USER}/emi-fusion", token=TOKEN),
    }


def scenario_remote_code(workdir: str, pulled: str) -> dict:
    """A user without emi-hf: transformers runs the configuration_emi.py / modeling_emi.py pushed with the weights."""
    import torch
    from transformers import AutoModel

    torch.set_num_threads(1)
    model = AutoModel.from_pretrained(pulled, trust_remote_code=True).eval()
    reference = torch.load(Path(workdir) / "reference_outputs.pt")
    with torch.no_grad():
        intensities = model(**reference["batch"]).intensities
    return {
        "emi_hf_imported": any(name == "emi_hf" or name.startswith("emi_hf.") for name in sys.modules),
        "class_module": type(model).__module__,
        "same_outputs": bool(torch.equal(intensities, reference["intensities"])),
    }


def scenario_errors(workdir: str) -> dict:
    from huggingface_hub import HfApi

    from emi_hf.hub import pull_features, pull_model, push_model

    from helpers import tiny_visual_config

    run = Path(workdir) / "tiny"
    tiny_visual_config().save_pretrained(run)
    (run / "model.safetensors").write_bytes(b"not really weights")  # never read: every push here fails first
    api = HfApi(token=TOKEN)
    api.create_repo(f"{USER}/errors")
    api.create_branch(f"{USER}/errors", branch="release")
    api.create_repo(f"{USER}/secret", private=True)
    api.create_repo(f"{USER}/secret-features", private=True, repo_type="dataset")
    return {
        "push_without_token": _error(push_model, run, f"{USER}/errors"),
        "push_with_bad_token": _error(push_model, run, f"{USER}/errors", token="hf_not_a_valid_token"),
        "missing_repo": _error(pull_model, f"{USER}/does-not-exist"),
        "missing_dataset_repo": _error(pull_features, f"{USER}/does-not-exist"),
        "wrong_revision": _error(pull_model, f"{USER}/errors", revision="nope", token=TOKEN),
        "private_without_token": _error(pull_model, f"{USER}/secret"),
        "private_features_without_token": _error(pull_features, f"{USER}/secret-features"),
    }


def scenario_features(workdir: str) -> dict:
    import math

    import datasets
    import numpy as np

    from emi_hf.hub import pull_features, push_features

    rng = np.random.default_rng(0)

    def split(num_clips: int, labeled: bool) -> datasets.Dataset:
        rows = []
        for index in range(num_clips):
            frames, audio_frames = 3 + index, 5 + 2 * index
            rows.append({
                "clip_id": f"{index:05d}",
                "visual_features": rng.standard_normal((frames, 8)).astype(np.float32),
                "au_features": rng.random((frames, 13)).astype(np.float32),
                "frame_mask": np.ones(frames, dtype=np.int8),
                "frame_timestamps": np.arange(frames, dtype=np.float32) / 6,
                "audio_features": rng.standard_normal((audio_frames, 4)).astype(np.float32),
                "audio_mask": np.ones(audio_frames, dtype=np.int8),
                "labels": rng.random(6).astype(np.float32) if labeled else np.full(6, np.nan, dtype=np.float32),
                "face_fraction": 1.0,
                "audio_present": bool(index % 2),
            })
        return datasets.Dataset.from_list(rows)

    features = datasets.DatasetDict({"train": split(3, True), "test": split(2, False)})

    def summary(dataset_dict) -> dict:
        def plain(value):
            if isinstance(value, float) and math.isnan(value):
                return "nan"
            if isinstance(value, list):
                return [plain(item) for item in value]
            return value

        return {
            name: {"features": str(split.features), "rows": [plain(row) for row in split.with_format(None)]}
            for name, split in dataset_dict.items()
        }

    from huggingface_hub import HfApi

    api = HfApi(token=TOKEN)
    push_features(features, f"{USER}/emi-features", token=TOKEN)
    from_object = pull_features(f"{USER}/emi-features", token=TOKEN)
    folder = Path(workdir) / "saved"
    features.save_to_disk(str(folder))
    # a repo in the save_to_disk layout, as earlier versions pushed it: still pulled; pushed over, it is replaced
    api.create_repo(f"{USER}/emi-features-2", repo_type="dataset")
    api.upload_folder(repo_id=f"{USER}/emi-features-2", folder_path=str(folder), repo_type="dataset")
    from_legacy = pull_features(f"{USER}/emi-features-2", token=TOKEN)
    commit = push_features(folder, f"{USER}/emi-features-2", private=False, token=TOKEN)
    from_folder = pull_features(f"{USER}/emi-features-2", revision=commit.oid)  # public: no token needed
    return {
        "expected": summary(features),
        "from_object": summary(from_object),
        "from_folder": summary(from_folder),
        "from_legacy": summary(from_legacy),
        "files": sorted(api.list_repo_files(f"{USER}/emi-features-2", repo_type="dataset")),
    }


def scenario_errors_and_features(workdir: str) -> dict:
    return {"errors": scenario_errors(workdir), "features": scenario_features(workdir)}


if __name__ == "__main__":
    name, *arguments = sys.argv[1:]
    print(json.dumps(globals()[f"scenario_{name}"](*arguments)), flush=True)
