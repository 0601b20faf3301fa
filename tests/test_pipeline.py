"""`transformers.pipeline("emotion-mimicry-intensity", ...)` (issue 22): registered by `import emi_hf`, carried by every
saved checkpoint (`custom_pipelines` + `pipeline_emi.py`) for a Python without emi-hf, the numbers of `predict_clips`,
batching, per-modality values, the timeline and a transcript."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings

import pytest
import torch

from helpers import clean_site_prelude, save_tiny_checkpoint, save_tiny_three_way_checkpoint

TASK = "emotion-mimicry-intensity"
CLIPS = ("single_face.mp4", "no_face.mp4")


def _pipeline(folder, **kwargs):
    from transformers import pipeline

    import emi_hf  # noqa: F401  (registers the task)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random backbones: said once per model
        return pipeline(TASK, model=str(folder), device="cpu", **kwargs)


def _features(frames: int, samples: int, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"visual_features": torch.randn(frames, 512, generator=generator),
            "au_features": torch.rand(frames, 13, generator=generator),
            "input_values": torch.randn(samples, generator=generator)}


def _close(a, b, tol=1e-6):
    """Equal within `tol`, NaN = NaN and None = None (dicts, lists, floats)."""
    if isinstance(a, dict):
        assert set(a) == set(b)
        for key in a:
            _close(a[key], b[key], tol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _close(x, y, tol)
    elif a is None or b is None or isinstance(a, (str, bool)):
        assert a == b
    else:
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol, (a, b)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("pipe") / "ckpt")


def test_saved_checkpoint_carries_the_pipeline(checkpoint):
    from emi_hf.hub import code_files

    config = json.loads((checkpoint / "config.json").read_text())
    assert config["custom_pipelines"] == {TASK: {"impl": "pipeline_emi.EmiIntensityPipeline", "pt": ["AutoModel"],
                                                 "type": "multimodal"}}
    assert all("custom_pipelines" not in config[key] for key in ("visual_config", "audio_config"))
    for name in ("pipeline_emi.py", "pipeline_task_emi.py"):
        assert (checkpoint / name).is_file()
        assert name in code_files(config)
    # a checkpoint written before (no custom_pipelines) needs no pipeline file
    del config["custom_pipelines"]
    assert "pipeline_emi.py" not in code_files(config)


def test_pipeline_on_a_clip_gives_predicts_numbers(checkpoint, media_dir):
    """`pipeline(TASK, model=FOLDER)` (no trust_remote_code: `import emi_hf` registered the task) == predict_clips,
    one clip, and a batch of two with batch_size=2 == predict_clips(batch_size=2)."""
    from emi_hf.inference import load_for_inference, predict_clips
    from emi_hf.pipeline_emi import EmiIntensityPipeline

    scorer = _pipeline(checkpoint, allow_random_backbones=True)
    assert type(scorer) is EmiIntensityPipeline
    clips = [str(media_dir / name) for name in CLIPS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, processor = load_for_inference(checkpoint, device="cpu", allow_random_backbones=True)
    (expected,) = predict_clips(model, processor, clips[:1])
    plain = scorer(clips[0])
    assert list(plain) == list(expected.label_names)
    assert all(0.0 <= v <= 1.0 for v in plain.values())
    _close(plain, expected.intensities)
    full = scorer(clips[0], per_modality=True, timeline=True)
    _close(full["per_modality"], expected.modality_intensities)
    assert full["modality_mask"] == expected.modality_mask
    _close(full["timeline"], {"timestamps": expected.timestamps, "visual": expected.frame_intensities,
                              "audio": expected.audio_frame_intensities})

    batch = predict_clips(model, processor, clips, batch_size=2)
    outputs = scorer(clips, batch_size=2, per_modality=True)
    for output, prediction in zip(outputs, batch):
        _close(output["per_modality"], prediction.modality_intensities)
    assert outputs[1]["modality_mask"] == {"visual": False, "audio": batch[1].modality_mask["audio"]}


def test_features_batching_and_options(checkpoint):
    """Feature dicts of different lengths: batched (padded, masked) == each alone == the model's own forward. (Audio
    of different lengths: the visual values only; the speech encoder's group norm sees the padding, as in
    `predict_clips` with batch_size > 1.)"""
    from transformers import AutoModel

    scorer = _pipeline(checkpoint)
    clips = [_features(9, 6400, 1), _features(5, 6400, 2), {**_features(4, 6400, 3), "frame_mask": torch.zeros(4)}]
    alone = [scorer(clip, per_modality=True, timeline=True) for clip in clips]
    batched = scorer(clips, batch_size=3, per_modality=True, timeline=True)
    for one, many in zip(alone, batched):
        _close(one, many, 1e-5)
    uneven = [_features(9, 6400, 1), _features(5, 3200, 2)]
    for one, many in zip(uneven, scorer(uneven, batch_size=2, per_modality=True)):
        _close(scorer(one, per_modality=True)["per_modality"]["visual"], many["per_modality"]["visual"], 1e-5)
    model = AutoModel.from_pretrained(checkpoint).eval()
    with torch.inference_mode():
        output = model(**{k: v[None] for k, v in clips[0].items()})
    _close(alone[0]["per_modality"]["visual"], dict(zip(alone[0], output.visual_intensities[0].tolist())))
    _close({k: alone[0][k] for k in list(alone[0])[:6]}, dict(zip(alone[0], output.intensities[0].tolist())))
    assert len(alone[0]["timeline"]["visual"]) == 9 and len(alone[1]["timeline"]["visual"]) == 5
    assert alone[2]["modality_mask"] == {"visual": False, "audio": True}
    assert all(math.isnan(v) for v in alone[2]["per_modality"]["visual"].values())
    with pytest.raises(ValueError, match="Unknown feature input"):
        scorer({"faces": torch.zeros(3, 512)})
    with pytest.raises(ValueError, match="visual_features: one clip"):
        scorer({"visual_features": torch.zeros(2, 3, 512), "au_features": torch.zeros(2, 3, 13)})


def test_transcript_of_a_text_model(tmp_path, media_dir):
    """transcript= is tokenised as emi-hf's TextSide does; the text part then has input (and none without)."""
    from transformers import AutoModel

    from emi_hf.inference import TextSide

    folder = save_tiny_three_way_checkpoint(tmp_path / "three")
    scorer = _pipeline(folder)
    clip = _features(6, 3200, 3)
    text = "what a wonderful surprise"
    result = scorer(clip, transcript=text, per_modality=True)
    model = AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        output = model(**{k: v[None] for k, v in clip.items()}, **TextSide(model).inputs([text], "cpu"))
    _close(result["per_modality"]["text"], dict(zip(result, output.text_intensities[0].tolist())))
    assert result["modality_mask"]["text"] and result["transcript"] == text
    assert scorer({**clip, "transcript": ""}, per_modality=True)["modality_mask"]["text"] is False
    video = str(media_dir / CLIPS[0])
    with pytest.raises(ValueError, match=r"single_face.mp4: this model has a text part.*transcript='...'"):
        scorer(video, allow_random_backbones=True)
    # a clip with transcript= == predict_clips reading the same transcript from a Filename,text CSV
    from emi_hf.inference import load_for_inference, predict_clips

    (tmp_path / "transcripts.csv").write_text(f"Filename,text\n{CLIPS[0]},{text}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, processor = load_for_inference(folder, device="cpu", allow_random_backbones=True)
    side = TextSide(model, transcripts=tmp_path / "transcripts.csv")
    (expected,) = predict_clips(model, processor, [video], text_side=side)
    found = scorer({"video": video, "transcript": text}, per_modality=True, allow_random_backbones=True)
    _close(found["per_modality"], expected.modality_intensities)
    assert found["transcript"] == expected.transcript == text
    with pytest.raises(ValueError, match="no text part"):
        _pipeline(save_tiny_checkpoint(tmp_path / "two"))(clip, transcript=text)


def _clip_features(checkpoint, path) -> dict:
    """The features emi-hf extracts from a real clip (one clip, batch axis of 1), as the model takes them."""
    from emi_hf.face_embedding import FaceEmbedder
    from emi_hf.inference import load_for_inference, model_stages

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, processor = load_for_inference(checkpoint, device="cpu", allow_random_backbones=True)
    stages = model_stages(model)
    clip = processor.process_clip(str(path), face_embedder=FaceEmbedder.for_model(processor, model), stages=stages)
    batch = processor.collate([clip], return_tensors="pt", stages=stages).for_model(model)
    return {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}


def test_pipeline_without_emi_hf(checkpoint, tmp_path, media_dir):
    """In a Python where emi_hf cannot be imported, `pipeline(TASK, model=FOLDER, trust_remote_code=True)` loads the
    checkpoint's own pipeline file: the features of a real clip score as the clip does here (with emi-hf), a batch
    of feature dicts as here, and a video path fails naming `pip install emi-hf`."""
    clip = media_dir / CLIPS[0]
    clips = [_clip_features(checkpoint, clip), _features(9, 6400, 1), _features(5, 3200, 2)]
    torch.save(clips, tmp_path / "inputs.pt")
    scorer = _pipeline(checkpoint, allow_random_backbones=True)
    expected = scorer(clips, batch_size=1, per_modality=True)
    _close(expected[0]["per_modality"], scorer(str(clip), per_modality=True)["per_modality"])
    script = f"""
import json, sys, torch
try:
    import emi_hf
    raise SystemExit('emi_hf must not be importable here')
except ImportError:
    pass
from transformers import pipeline
scorer = pipeline({TASK!r}, model={str(checkpoint)!r}, trust_remote_code=True, device='cpu')
assert type(scorer).__name__ == 'EmiIntensityPipeline' and 'emi_hf' not in type(scorer).__module__
out = scorer(torch.load({str(tmp_path / 'inputs.pt')!r}), batch_size=1, per_modality=True)
try:
    scorer({str(tmp_path / 'clip.mp4')!r})
    error = None
except ImportError as caught:
    error = str(caught)
print(json.dumps({{'out': out, 'error': error}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), PYTHONNOUSERSITE="1")
    done = subprocess.run([sys.executable, "-S", "-c", clean_site_prelude() + script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    _close(found["out"], expected, 1e-6)
    assert "clip.mp4" in found["error"] and "pip install emi-hf" in found["error"]


def test_task_registered_when_transformers_pipelines_came_first(checkpoint):
    """`from transformers import pipeline` before `import emi_hf`: the task is registered all the same."""
    code = ("from transformers import pipeline\nimport emi_hf\n"
            f"p = pipeline({TASK!r}, model={str(checkpoint)!r}, device='cpu')\nprint(type(p).__module__)")
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env = {**os.environ, "PYTHONPATH": src, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "emi_hf.models.pipeline_emi"
