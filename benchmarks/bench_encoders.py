"""Benchmark section "encoders": speed of the face backbones (face crops per second through
`EmiVisualModel.embed_faces`) and speech encoders (audio seconds per second through `EmiAudioModel.embed_audio`) that
`EmiVisualConfig.backbone` / `--speech-encoder` can name, at their own input sizes.

Random weights of the published architectures' sizes: they cost the same compute as trained ones. Face crops are
random pixels at the backbone's input size, in chunks of `backbone_chunk_size` (32); audio is a 10 s random
waveform (one encoder window). Inference mode, float32, on the benchmark's device (`table.bench_device`: the first GPU
when there is one, else the CPU with the threads run_benchmarks.py sets, 2 by default)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from table import bench_device, row

TEMPORAL = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, tcn_dilations=[1], num_hidden_layers=1)
AUDIO_SECONDS = 10.0


def _vit_b16_folder(work: Path) -> Path:
    """A ViT-B/16-sized transformers model (google/vit-base-patch16-224's shape: 768-d, 12 layers, 224 px), random
    weights, with its image processor."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = work / "encoders" / "vit_b16_random"
    if not (folder / "config.json").is_file():
        ViTModel(ViTConfig()).save_pretrained(folder)
        ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder)
    return folder


def _speech_configs() -> dict:
    from transformers import HubertConfig, Wav2Vec2Config, WavLMConfig

    large = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                 feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    return {
        "wav2vec2-base": Wav2Vec2Config(),  # facebook/wav2vec2-base's shape: 768-d, 12 layers
        "HuBERT-large-sized": HubertConfig(**large),  # facebook/hubert-large-ll60k's shape: 1024-d, 24 layers
        "WavLM-base-sized": WavLMConfig(),  # microsoft/wavlm-base's shape: 768-d, 12 layers
    }


def _time(function, minimum_s: float) -> tuple[float, float, int]:
    """(wall seconds per call, CPU seconds per call of this process, calls) of `function` after one warm-up call,
    repeated for at least `minimum_s`."""
    function()
    calls, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while calls == 0 or time.perf_counter() - started < minimum_s:
        function()
        calls += 1
    return (time.perf_counter() - started) / calls, (time.process_time() - cpu_started) / calls, calls


def _dedicated(amount: float, cpu_seconds: float) -> str:
    """What `amount` per call would be per second on the threads' own cores: CPU time / threads (an estimate; the
    measured figure is the wall-clock one, which other processes on the machine slow down)."""
    import torch

    if torch.cuda.is_available():
        return ""
    return f", {amount / (cpu_seconds / torch.get_num_threads()):.1f}/s from CPU time"


def _face_backbones(work: Path, quick: bool, device, device_label: str) -> None:
    import torch

    from emi_hf import EmiVisualModel

    specs = {"ResNet18 (resnet18, default)": "resnet18", "MobileNetV2 (torchvision:mobilenet_v2)":
             "torchvision:mobilenet_v2", "ViT-B/16-sized (transformers ViTModel)": str(_vit_b16_folder(work))}
    for label, spec in specs.items():
        model = EmiVisualModel.from_backbone(spec, weights="random", **TEMPORAL).eval().to(device)
        side = model.config.face_size
        crops = torch.randn(model.config.backbone_chunk_size, 3, side, side, device=device)
        with torch.inference_mode():
            seconds, cpu, calls = _time(lambda: model.embed_faces(crops), 2.0 if quick else 6.0)
        row("encoders", f"face backbone {label}", round(len(crops) / seconds, 1), "crops/s",
            note=f"{side} px, {model.config.visual_feature_dim}-d, batches of {len(crops)}, {calls} timed, "
                 f"{device_label}, {_load()}{_dedicated(len(crops), cpu)}")


def _speech_encoders(quick: bool, device, device_label: str) -> None:
    import torch

    from emi_hf import EmiAudioConfig, EmiAudioModel

    for label, encoder in _speech_configs().items():
        config = EmiAudioConfig(speech_encoder_config=encoder.to_dict(), audio_feature_dim=encoder.hidden_size,
                                **TEMPORAL)
        model = EmiAudioModel(config).eval().to(device)
        waveform = torch.randn(1, int(AUDIO_SECONDS * 16000), device=device)
        with torch.inference_mode():
            seconds, cpu, calls = _time(lambda: model.embed_audio(waveform), 2.0 if quick else 6.0)
        row("encoders", f"speech encoder {label}", round(AUDIO_SECONDS / seconds, 1), "audio s/s",
            note=f"{encoder.hidden_size}-d, {encoder.num_hidden_layers} layers, {AUDIO_SECONDS:.0f} s clip, "
                 f"{calls} timed, {device_label}, {_load()}{_dedicated(AUDIO_SECONDS, cpu)}")
        del model


def _load() -> str:
    """The machine's 1-minute load average (other processes share the cores the figures were measured on)."""
    return f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def run(media: Path, work: Path, quick: bool) -> None:
    import torch

    device = bench_device()
    label = f"{torch.get_num_threads()} CPU threads" if str(device) == "cpu" else str(device)
    _face_backbones(work, quick, device, label)
    _speech_encoders(quick, device, label)
