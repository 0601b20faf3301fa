"""EmiProcessor: one call from files to model inputs, serialisation, Auto-class resolution, AU compatibility."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from emi_hf.media import EmiFileNotFoundError, EmiInputError
from emi_hf.processing_emi import EmiBatch, EmiProcessor, EmiVideoProcessor, register_processor
from helpers import clean_site_prelude

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CONTRACT_METADATA = {"path", "fps", "timestamps", "num_frames", "face_fraction", "audio_present", "duration",
                     "face_boxes"}


@pytest.fixture(scope="module")
def processor():
    return EmiProcessor(face_detector="mediapipe", max_frames=15, use_cache=False)


@pytest.fixture(scope="module")
def mixed_batch(processor, media_dir) -> EmiBatch:
    # a video with audio, a video-only file, an audio-only file
    return processor(videos=[media_dir / "single_face.mp4", media_dir / "multi_face_5_frames.mp4",
                             media_dir / "debate_5s_16k.wav"], return_tensors="pt")


def test_batch_shapes_and_masks(mixed_batch):
    batch = mixed_batch
    assert set(batch.keys()) == {"pixel_values", "au_features", "frame_mask", "input_values", "attention_mask"}
    assert batch["pixel_values"].shape == (3, 15, 3, 112, 112) and batch["pixel_values"].dtype == torch.float32
    assert batch["au_features"].shape == (3, 15, 13) and batch["frame_mask"].dtype == torch.int64
    assert batch["frame_mask"].sum(1).tolist() == [15, 6, 0]  # 15 frames; 6; an audio-only file has none
    assert torch.isfinite(batch["pixel_values"]).all() and torch.isfinite(batch["au_features"]).all()
    assert batch["au_features"].min() >= 0 and batch["au_features"].max() <= 5
    assert (batch["pixel_values"][2] == 0).all() and (batch["au_features"][1, 6:] == 0).all()
    # ImageNet normalisation: real crops are roughly centred
    assert abs(batch["pixel_values"][0].mean().item()) < 1.0 and batch["pixel_values"][0].std().item() > 0.3
    lengths = batch["attention_mask"].sum(1).tolist()
    # max_frames=15 at 30 fps also limits the audio to 0.5 s (the audio-only clip too)
    assert lengths == [8000, 0, 8000]
    assert (batch["input_values"][1] == 0).all()
    wave = batch["input_values"][2]
    assert abs(wave.mean().item()) < 1e-3 and wave.std().item() == pytest.approx(1.0, abs=1e-2)


def test_metadata(mixed_batch, media_dir):
    meta = mixed_batch.metadata
    assert len(meta) == 3 and all(CONTRACT_METADATA <= set(m) for m in meta)
    assert meta[0]["path"] == str(media_dir / "single_face.mp4") and meta[0]["fps"] == 30.0
    assert meta[0]["face_fraction"] == 1.0 and meta[0]["audio_present"] is True
    assert meta[1]["audio_present"] is False and meta[2]["num_frames"] == 0 and meta[2]["face_fraction"] == 0.0
    for m in meta:
        assert len(m["timestamps"]) == m["num_frames"] == len(m["face_boxes"])
        assert np.all(np.diff(m["timestamps"]) >= 0)
    assert "metadata" not in mixed_batch  # an attribute, so that model(**batch) passes tensors only
    moved = mixed_batch.to("cpu")
    assert moved.metadata == meta and pickle.loads(pickle.dumps(mixed_batch)).metadata == meta


def test_no_audio_anywhere(processor, media_dir):
    batch = processor(videos=media_dir / "multi_face_5_frames.mp4", return_tensors="np")
    assert batch["input_values"].shape == (1, 16000) and not batch["attention_mask"].any()
    assert isinstance(batch["pixel_values"], np.ndarray)


def test_arrays_and_separate_audio(processor):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (10, 120, 160, 3), dtype=np.uint8)  # noise: no face
    waveform = rng.normal(size=44100).astype(np.float32)
    batch = processor(videos=frames, audio=waveform, sampling_rate=44100, video_fps=30)
    assert batch["frame_mask"].shape == (1, 10) and not batch["frame_mask"].any()
    # resampled 44.1 -> 16 kHz, and cut to the span of max_frames=15 at 30 fps
    assert batch["attention_mask"].sum().item() == 8000
    audio_only = EmiProcessor(face_detector="mediapipe", use_cache=False)(audio=[waveform[:16000], waveform[:8000]])
    assert audio_only["attention_mask"].sum(1).tolist() == [16000, 8000]
    assert audio_only["frame_mask"].shape == (2, 1) and not audio_only["frame_mask"].any()


def test_bad_inputs(processor, tmp_path):
    with pytest.raises(EmiFileNotFoundError):
        processor(videos=tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(EmiInputError, match="empty"):
        processor(videos=[tmp_path / "empty.mp4"])
    with pytest.raises(EmiInputError, match="nothing to process"):
        processor()
    with pytest.raises(ValueError, match="one audio per"):
        processor(videos=[np.zeros((2, 8, 8, 3), np.uint8)] * 2, audio=[np.zeros(10)])


def test_save_and_load_round_trip(tmp_path):
    from transformers import AutoProcessor

    import emi_hf  # noqa: F401  (registers the Auto classes)

    register_processor()  # idempotent; emi_hf's __init__ calls it
    processor = EmiProcessor(face_detector="mediapipe", au_names=["AU12", "AU06"], target_fps=25.0, detect_every=3,
                             subject="central", au_neutral_baseline=True, max_duration=4.0,
                             clip_cache_dir=tmp_path / "clips")
    processor.save_pretrained(tmp_path / "saved")
    # the processor's code travels with it (processing_emi.py and its bundle imports, configuration_emi's pipeline
    # task files included), named by auto_map
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == [
        "configuration_emi.py", "pipeline_emi.py", "pipeline_task_emi.py", "processing_emi.py",
        "processing_standalone_emi.py", "processor_config.json", "processor_kwargs.py"]
    saved = json.loads((tmp_path / "saved" / "processor_config.json").read_text())
    assert saved["auto_map"] == {"AutoProcessor": "processing_emi.EmiProcessor"}
    assert saved["video_processor"]["auto_map"]["AutoVideoProcessor"] == "processing_emi.EmiVideoProcessor"
    assert saved["processor_class"] == "EmiProcessor" and saved["au_names"] == ["AU12", "AU06"]
    assert saved["video_processor"]["video_processor_type"] == "EmiVideoProcessor"
    assert "clip_cache_dir" not in saved  # machine-specific, not saved
    for loader in (EmiProcessor.from_pretrained, AutoProcessor.from_pretrained):
        loaded = loader(tmp_path / "saved")
        assert type(loaded) is EmiProcessor and isinstance(loaded.video_processor, EmiVideoProcessor)
        without_map = {k: v for k, v in processor.to_dict().items() if k != "auto_map"}  # set by saving
        assert {k: v for k, v in loaded.to_dict().items() if k != "auto_map"} == without_map
        assert loaded.clip_settings() == processor.clip_settings()
    assert EmiProcessor.from_pretrained(tmp_path / "saved", detect_every=7).detect_every == 7
    assert callable(processor.push_to_hub)


def test_au_names_must_match_the_model(tmp_path):
    from emi_hf import EmiFusionConfig, EmiVisualConfig

    processor = EmiProcessor(face_detector="mediapipe", au_names=["AU12", "AU06"])
    processor.check_model_compatibility(EmiVisualConfig(au_names=["AU12", "AU06"]))
    with pytest.raises(ValueError, match="AU mismatch"):
        processor.check_model_compatibility(EmiVisualConfig(au_names=["AU06", "AU12"]))
    with pytest.raises(ValueError, match="AU mismatch"):
        processor.check_model_compatibility(EmiFusionConfig(visual_config={"au_names": ["AU01"]}))
    processor.save_pretrained(tmp_path)
    EmiVisualConfig(au_names=["AU01", "AU02"]).save_pretrained(tmp_path)  # a model saved beside it
    with pytest.raises(ValueError, match="AU mismatch"):
        EmiProcessor.from_pretrained(tmp_path)


def test_invalid_settings():
    with pytest.raises(ValueError, match="face_detector"):
        EmiProcessor(face_detector="dlib")
    with pytest.raises(ValueError, match="subject"):
        EmiProcessor(face_detector="mediapipe", subject="loudest")
    with pytest.raises(ValueError, match="cannot estimate"):
        EmiProcessor(face_detector="mediapipe", au_names=["AU99"])


def test_model_takes_the_processor_output(mixed_batch):
    from helpers import tiny_fusion_config

    from emi_hf import EmiFusionModel

    model = EmiFusionModel(tiny_fusion_config()).eval()
    with torch.inference_mode():
        output = model(**mixed_batch)
    assert output.intensities.shape == (3, 6) and torch.isfinite(output.intensities).all()


def test_process_clip_and_cache(media_dir, tmp_path):
    processor = EmiProcessor(face_detector="mediapipe", max_frames=8, clip_cache_dir=tmp_path)
    clip = processor.process_clip(media_dir / "single_face.mp4")
    assert clip.face_crops.shape == (8, 112, 112, 3) and clip.waveform.dtype == np.float32
    again = processor(videos=media_dir / "single_face.mp4")
    assert again.metadata[0]["cache_hit"] is True
    assert processor(videos=media_dir / "single_face.mp4", use_cache=False).metadata[0]["cache_hit"] is False


def _run_without_emi_hf(script: str, workdir) -> subprocess.CompletedProcess:
    """`script` in a fresh Python where emi_hf cannot be imported (see helpers.clean_site_prelude)."""
    prelude = clean_site_prelude() + """
try:
    import emi_hf
    raise SystemExit('emi_hf must not be importable here')
except ImportError:
    pass
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(workdir / "hf_home"), PYTHONNOUSERSITE="1")
    return subprocess.run([sys.executable, "-S", "-c", prelude + script], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)


def test_processor_travels_with_the_weights(tmp_path):
    """AutoProcessor.from_pretrained(folder, trust_remote_code=True) in a Python without emi_hf: face crops and
    waveforms give the inputs emi-hf gives, and the saved model scores them as it does with emi-hf."""
    from emi_hf import EmiFusionModel
    from helpers import tiny_fusion_config

    folder = tmp_path / "model"
    torch.manual_seed(0)
    model = EmiFusionModel(tiny_fusion_config()).eval()
    model.save_pretrained(folder)
    processor = EmiProcessor(face_detector=None, au_backend=None, use_cache=False, max_frames=20)
    processor.save_pretrained(folder)
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (24, 112, 112, 3), dtype=np.uint8)  # more than max_frames: cut as emi-hf cuts
    waveform = rng.normal(size=16000).astype(np.float32)
    inputs = {"videos": [crops, crops[:5].transpose(0, 3, 1, 2) / 255.0, crops[:3]],
              "audio": [waveform, waveform[:6000], np.zeros(800, np.float32)]}  # the last: digital silence
    np.savez(tmp_path / "inputs.npz", *inputs["videos"], *inputs["audio"])
    expected = processor(**inputs, return_tensors="pt")
    with torch.no_grad():
        expected_intensities = model(**expected).intensities
    script = f"""
import numpy as np, torch
from transformers import AutoModel, AutoProcessor
arrays = np.load({str(tmp_path / 'inputs.npz')!r})
arrays = [arrays[f'arr_{{i}}'] for i in range(6)]
processor = AutoProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
assert type(processor).__name__ == 'EmiProcessor' and 'emi_hf' not in type(processor).__module__
assert processor.max_frames == 20 and processor.face_detector is None
model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
batch = processor(videos=arrays[:3], audio=arrays[3:], return_tensors='pt')
with torch.no_grad():
    torch.save({{'batch': dict(batch), 'intensities': model(**batch).intensities}}, 'out.pt')
for call, needs in ((lambda: processor(videos='clip.mp4'), 'files'),
                    (lambda: processor(audio=arrays[3], sampling_rate=44100), 'Resampling')):
    try:
        call()
        raise SystemExit('no error for ' + needs)
    except ImportError as error:
        assert needs in str(error) and 'install emi-hf' in str(error) and 'pip install .' in str(error), error
processor.face_detector = 'mtcnn'
try:
    processor(videos=arrays[0])
    raise SystemExit('no error for face detection')
except ImportError as error:
    assert 'face_detector = None' in str(error), error
"""
    done = _run_without_emi_hf(script, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = torch.load(tmp_path / "out.pt")
    assert sorted(out["batch"]) == sorted(expected.keys())
    for name, value in expected.items():
        assert out["batch"][name].dtype == value.dtype, name
        torch.testing.assert_close(out["batch"][name], value, atol=0, rtol=0, msg=name)
    torch.testing.assert_close(out["intensities"], expected_intensities)


def test_standalone_processor_defaults_are_emi_hfs(tmp_path):
    """The remote copy's own setting defaults (used without emi-hf's media package) are ClipSettings'."""
    expected = EmiProcessor().to_dict()
    EmiProcessor().save_pretrained(tmp_path / "saved")
    script = f"""
import json, sys
sys.path.insert(0, {str(tmp_path / 'saved')!r})
import processing_emi_standalone_probe
"""
    (tmp_path / "saved" / "processing_emi_standalone_probe.py").write_text(
        "import importlib.util, json, sys, types\n"
        "from transformers.dynamic_module_utils import get_class_from_dynamic_module\n"
        f"cls = get_class_from_dynamic_module('processing_emi.EmiProcessor', {str(tmp_path / 'saved')!r})\n"
        f"json.dump(cls().to_dict(), open({str(tmp_path / 'defaults.json')!r}, 'w'))\n")
    done = _run_without_emi_hf(script, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    defaults = json.loads((tmp_path / "defaults.json").read_text())
    assert defaults == json.loads(json.dumps(expected))


def test_standalone_stand_ins_match_the_media_package():
    from emi_hf import processing_standalone_emi as standalone
    from emi_hf.media import decoding, pipeline
    from emi_hf.media.settings import ClipSettings

    assert standalone.MAX_AUDIO_CHANNELS == decoding.MAX_AUDIO_CHANNELS
    assert standalone.SILENCE_PEAK == pipeline.SILENCE_PEAK
    assert standalone.ClipSettings().to_dict() == ClipSettings().to_dict()
    assert standalone.ClipSettings.saved_fields() == ClipSettings.saved_fields()
