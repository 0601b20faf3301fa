"""Named recipes (`emi-hf recipe list / show / run`): the shipped files, their keys, and every recipe run end to
end OFFLINE on a small synthetic challenge-layout set with its encoders pointed (`--set`) at tiny random models of the
same families, written here (ViT, wav2vec2, a BERT-like text encoder with its tokenizer, Whisper), ending with a
verified submission."""

from __future__ import annotations

import csv
import json
import time

import pytest
import torch
from helpers import TINY_WAV2VEC2

from emi_hf.cli import main as cli
from emi_hf.data.synthetic import generate_synthetic_dataset
from emi_hf.errors import EmiUsageError
from emi_hf.recipes import RECIPE_KEYS, STABLE_KEYS, load_recipe, recipe_names

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHIPPED = ("abaw6-yu", "abaw8-hallmen", "abaw10-taemi")
TINY = ["hidden_size=16", "num_attention_heads=2", "num_hidden_layers=1", "intermediate_size=32",
        "tcn_dilations=[1]", "lstm_hidden=8", "cross_attention_dim=16", "epochs=1", "batch_size=8", "face_fps=5", "seed=0", "device=cpu"]


def test_the_three_recipes_ship_and_name_their_sources():
    assert set(SHIPPED) <= set(recipe_names())
    published = {name: load_recipe(name) for name in SHIPPED}
    assert (published["abaw6-yu"]["published_score"], published["abaw6-yu"]["published_split"]) == (0.3288, "validation")
    assert (published["abaw8-hallmen"]["published_score"], published["abaw8-hallmen"]["published_split"]) == (0.706, "test")
    assert (published["abaw10-taemi"]["published_score"], published["abaw10-taemi"]["published_split"]) == (0.708, "test")
    assert "2504.11460" in published["abaw8-hallmen"]["source"] and "2603.14976" in published["abaw10-taemi"]["source"]
    taemi = published["abaw10-taemi"]
    assert (taemi["face_alignment"], taemi["face_fps"], taemi["audio_max_seconds"], taemi["final_fit"]) == (
        "ffhq", 5.0, 12.0, "train+validation")
    assert all(recipe["downloads"] for recipe in published.values())
    assert set(STABLE_KEYS) <= set(RECIPE_KEYS)


def test_recipe_list_prints_each_recipe_with_its_source_and_score(capsys):
    assert cli(["recipe", "list"]) == 0
    listed = capsys.readouterr().out
    blocks, name = {}, None
    for line in listed.splitlines():
        if line and not line[0].isspace():
            name = line.strip()
        elif name:
            blocks[name] = blocks.get(name, "") + line + "\n"
    for name in SHIPPED:
        recipe = load_recipe(name)
        block = blocks[name]
        assert f"published  {recipe['published_score']:.4f} {recipe['published_split']}" in block, block
        assert "source" in block and "downloads" in block and "GPU hours" in block


def test_unknown_keys_and_bad_values_are_errors_listing_the_valid_keys(tmp_path, capsys):
    with pytest.raises(EmiUsageError, match="valid keys are: .*face_backbone.*batch_size"):
        load_recipe("abaw6-yu", ["face_backbone_typo=x"])
    own = tmp_path / "mine.yaml"
    own.write_text("parts: [visual]\nface_backbone: imagenet\nepoch: 3\n")
    with pytest.raises(EmiUsageError, match=r"mine.yaml: unknown recipe key\(s\) \['epoch'\].*epochs"):
        load_recipe(own)
    with pytest.raises(EmiUsageError, match="epochs must be a int"):
        load_recipe("abaw6-yu", ["epochs=many"])
    with pytest.raises(EmiUsageError, match="no recipe named"):
        load_recipe("abaw99")
    # --set reaches every key, the stable names included; the CLI says which keys were set
    for key in STABLE_KEYS:
        value = {"face_fps": 5, "epochs": 3, "batch_size": 8, "asr_backend": "faster-whisper"}.get(key, "/some/folder")
        assert load_recipe("abaw10-taemi", [f"{key}={value}"])[key] == value
    assert cli(["recipe", "show", "abaw10-taemi", "--set", "epochs=3"]) == 0
    shown = capsys.readouterr().out
    assert "epochs: 3  # --set" in shown and "face_alignment: ffhq" in shown
    assert all(f"{key}:" in shown for key in RECIPE_KEYS)
    with pytest.raises(SystemExit) as stopped:
        cli(["recipe", "show", "abaw10-taemi", "--set", "nonsense=1"])
    assert stopped.value.code == 2 and "valid keys are" in capsys.readouterr().err
    own.write_text("parts: [visual]\nepochs: 3\n")
    assert load_recipe(own)["name"] == "mine" and load_recipe(own)["face_backbone"] == "imagenet"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Tiny random encoders of the recipes' families, saved as folders: a ViT with its image processor, a wav2vec2,
    a BERT-like text encoder with its (word-level) tokenizer, a Whisper with its tokenizer."""
    from test_speech_head import write_emotion_model
    from transformers import ViTConfig, ViTImageProcessor, ViTModel, Wav2Vec2Config, Wav2Vec2Model

    from emi_hf.text import build_word_text_encoder
    from emi_hf.text.random_whisper import build_random_whisper

    root = tmp_path_factory.mktemp("tiny_models")
    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8)).eval().save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(
        root / "vit")
    Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC2)).eval().save_pretrained(root / "wav2vec2")
    write_emotion_model(root / "wav2vec2_adv")  # audEERING's layout: wav2vec2 + arousal / dominance / valence head
    build_word_text_encoder(["she smiles and laughs", "he is calm and sad", "what a surprise"], root / "bert",
                            hidden_size=16, num_attention_heads=2)
    build_random_whisper(root / "whisper", max_new_tokens=3)
    return root


@pytest.fixture(scope="module")
def challenge_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe_data")
    generate_synthetic_dataset(root, num_train=8, num_valid=6, num_test=3, duration=1.0, fps=10, size=160, seed=3,
                               layout="challenge")
    return root


def _supported_overrides(recipe: str) -> list[str]:
    """`--set` for the choices of a recipe that this emi-hf lacks (the cross-attention fusion, the LSTM block and the
    [CLS] text features come with the `fusion` branch): none once they are there."""
    import dataclasses
    import inspect

    from emi_hf.text import TextEncoder
    from emi_hf.training.arguments import FUSION_MODES, EmiTrainingArguments

    values, overrides = load_recipe(recipe), []
    if values["fusion_mode"] not in FUSION_MODES:
        overrides.append("fusion_mode=feature")
    if values["temporal_block"] and "temporal_block" not in {f.name for f in dataclasses.fields(EmiTrainingArguments)}:
        overrides.append("temporal_block=null")
    if values["text_pooling"] and "pooling" not in inspect.signature(TextEncoder).parameters:
        overrides.append("text_pooling=null")
    return overrides


def _encoders(recipe: str, models, data) -> list[str]:
    if recipe == "abaw6-yu":  # ResNet18 (random weights: no download) and wav2vec2
        return ["face_weights=random", f"speech_encoder={models / 'wav2vec2'}"]
    return [f"face_backbone={models / 'vit'}", f"speech_encoder={models / 'wav2vec2_adv'}",
            f"text_encoder={models / 'bert'}", f"asr_model={models / 'whisper'}", "asr_backend=transformers",
            "asr_beam_size=null"]


@pytest.mark.parametrize("recipe", SHIPPED)
def test_recipe_runs_end_to_end_offline_to_a_verified_submission(recipe, tiny_models, challenge_set, tmp_path,
                                                                 capsys, monkeypatch):
    from emi_hf.submission import verify_submission

    monkeypatch.setenv("EMI_HF_CACHE", str(tmp_path / "clip_cache"))
    out = tmp_path / "out"
    sets = [*TINY, *_encoders(recipe, tiny_models, challenge_set), *_supported_overrides(recipe)]
    started = time.perf_counter()
    code = cli(["recipe", "run", recipe, "--data-dir", str(challenge_set), "--output-dir", str(out),
                *[word for pair in sets for word in ("--set", pair)]])
    wall = time.perf_counter() - started
    printed = capsys.readouterr().out
    assert code == 0
    assert verify_submission(out / "submission.csv", challenge_set) == []
    with open(out / "submission.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 1 + 3 and all(0.0 <= float(v) <= 1.0 for row in rows[1:] for v in row[1:])
    summary = json.loads((out / "recipe_results.json").read_text())
    recipe_values = load_recipe(recipe)
    expected = {*recipe_values["parts"], "fusion"}
    assert expected <= set(summary["validation"])
    if recipe_values["fusion_mode"] == "late":
        assert "fusion (cross-fitted)" in summary["validation"]  # its weights are fitted on validation
    assert f"recipe {recipe}: validation" in printed and "submission:" in printed and "valid" in printed
    if recipe_values["final_fit"] == "train+validation":
        assert summary["final_model"].endswith("final/fusion")
        final = json.loads((out / "final" / "fusion" / "results.json").read_text())
        assert final["training"]["train_splits"] == ["train", "validation"]
    processor = json.loads((out / "features" / "processor" / "processor_config.json").read_text())
    assert (processor["face_alignment"], processor["target_fps"]) == (recipe_values["face_alignment"], 5.0)
    features = json.loads((out / "features" / "emi_features.json").read_text())
    head = 3 if "audeering" in recipe_values["speech_encoder"] else 0  # hidden states + A/D/V head outputs
    assert features["audio_feature_dim"] == TINY_WAV2VEC2["hidden_size"] + head
    fusion_config = json.loads((out / "runs" / "fusion" / "config.json").read_text())
    if recipe_values["fusion_mode"] != "late":  # the recipe's fusion and temporal block are what was trained
        assert fusion_config["fusion_type"] == recipe_values["fusion_mode"]
    if recipe_values["temporal_block"]:
        assert fusion_config["visual_config"]["temporal_block"] == recipe_values["temporal_block"]
    ran = (out / "recipe.yaml").read_text()
    assert "epochs: 1" in ran
    print(f"\n[recipe {recipe}] synthetic set (8 train, 6 validation, 3 test, 1 s clips): wall {wall:.1f} s; "
          f"timings {summary['timings_s']}; validation {json.dumps({k: round(v['mean_pearson'], 4) for k, v in summary['validation'].items()})}")
