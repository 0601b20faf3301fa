"""The causes for which transformers' common tests (ModelTesterMixin, ProcessorTesterMixin) failed on the emi-hf models
and processor, each checked here: `au_features` optional, the fusion output's hidden states / attentions, every
weight initialised by `_init_weights`, channels-first video arrays, int64 masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emi_hf import EmiAudioModel, EmiFusionConfig, EmiFusionModel, EmiProcessor, EmiTextModel, EmiVisualModel
from helpers import tiny_audio_config, tiny_fusion_config, tiny_text_config, tiny_visual_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _visual_inputs(batch=2, frames=7, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mask = (torch.arange(frames)[None] < torch.tensor([[frames], [frames - 3]])).long()[:batch]
    return {"visual_features": torch.randn(batch, frames, 512, generator=generator), "frame_mask": mask}


# -- au_features optional -----------------------------------------------------------------------------------------


def test_visual_model_runs_on_its_main_input_alone():
    torch.manual_seed(0)
    model = EmiVisualModel(tiny_visual_config()).eval()
    inputs = _visual_inputs()
    with torch.no_grad():
        out = model(**inputs)
        with_aus = model(**inputs, au_features=torch.rand(2, 7, model.config.num_aus))
    assert out.intensities.shape == (2, 6) and torch.isfinite(out.intensities).all()
    assert not torch.allclose(out.intensities, with_aus.intensities)  # missing AUs are not AUs of some value
    # the model's main input alone: what the common suite feeds (its SDPA-vs-eager check among them)
    eager = EmiVisualModel._from_config(model.config, attn_implementation="eager").eval()
    eager.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(eager(**inputs).intensities, out.intensities, atol=1e-5, rtol=1e-5)


def test_a_missing_au_channel_is_dropped_as_channel_dropout_drops_it(monkeypatch):
    torch.manual_seed(0)
    model = EmiVisualModel(tiny_visual_config(channel_dropout=0.5, dropout=0.0))
    visual = torch.randn(1, 5, 512)
    with torch.no_grad():
        model.eval()
        missing = model._combine_channels(visual, None)
        aus = torch.full((1, 5, model.config.num_aus), 3.0)
        model.train()  # channel dropout keeping the face channel (draw 0.9) and dropping the AUs (draw 0.1)
        monkeypatch.setattr(torch, "rand", lambda *shape, **kwargs: torch.tensor([[0.9, 0.1]]))
        dropped = model._combine_channels(visual, aus)
    torch.testing.assert_close(missing, dropped)


def test_fusion_without_au_features_scores_every_clip():
    torch.manual_seed(0)
    model = EmiFusionModel(tiny_fusion_config()).eval()
    inputs = _visual_inputs()
    inputs.update(input_values=torch.randn(2, 3200), attention_mask=torch.ones(2, 3200, dtype=torch.long))
    with torch.no_grad():
        out = model(**inputs)
    assert torch.isfinite(out.intensities).all() and out.visual_mask.all()


def test_wrong_number_of_aus_is_still_an_error():
    model = EmiVisualModel(tiny_visual_config())
    with pytest.raises(ValueError, match="AUs"):
        model(**_visual_inputs(), au_features=torch.rand(2, 7, model.config.num_aus + 1))


# -- the fusion output: hidden states and attentions of its parts -------------------------------------------------


def _fusion_inputs():
    inputs = _visual_inputs()
    generator = torch.Generator().manual_seed(1)
    inputs.update(au_features=torch.rand(2, 7, 13, generator=generator),
                  input_values=torch.randn(2, 3200, generator=generator), attention_mask=torch.ones(2, 3200, dtype=torch.long))
    return inputs


@pytest.mark.parametrize("fusion_type", ["late", "feature"])
def test_fusion_output_exposes_hidden_states_and_attentions(fusion_type):
    torch.manual_seed(0)
    config = tiny_fusion_config(fusion_type=fusion_type)
    model = EmiFusionModel._from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():
        plain = model(**_fusion_inputs())
        out = model(**_fusion_inputs(), output_hidden_states=True, output_attentions=True)
    assert plain.hidden_states is None and plain.attentions is None
    visual = config.visual_config
    layers = len(visual.tcn_dilations) + visual.num_hidden_layers
    assert len(out.hidden_states) == layers + 1 and out.hidden_states[0].shape == (2, 7, visual.hidden_size)
    assert len(out.attentions) == visual.num_hidden_layers
    assert out.attentions[0].shape == (2, visual.num_attention_heads, 7, 7)
    assert out.hidden_states is out.visual_hidden_states and out.attentions is out.visual_attentions
    assert out.last_hidden_state is out.visual_last_hidden_state
    assert out.audio_hidden_states is not None and len(out.audio_attentions) == config.audio_config.num_hidden_layers
    # the config's flags are honoured too, and the tuple form keeps the fields of earlier versions first
    model.config.output_hidden_states = model.config.output_attentions = True
    with torch.no_grad():
        from_config = model(**_fusion_inputs())
        as_tuple = model(**_fusion_inputs(), return_dict=False)
    assert len(from_config.hidden_states) == layers + 1 and len(from_config.attentions) == visual.num_hidden_layers
    torch.testing.assert_close(as_tuple[0], from_config.intensities)


def test_text_only_fusion_exposes_its_text_part():
    config = EmiFusionConfig(text_config=tiny_text_config())
    model = EmiFusionModel(config).eval()
    with torch.no_grad():
        out = model(input_ids=torch.randint(0, 60, (1, 5)), output_hidden_states=True)
    assert out.hidden_states is out.text_hidden_states and out.hidden_states is not None


# -- every weight initialised by _init_weights ----------------------------------------------------------------------


def _uninitialised_after_meta_init(model_class, config) -> list[str]:
    """Builds the model on the meta device, materialises it with NaN everywhere and runs transformers' weight
    initialisation: the names still NaN are the weights `_init_weights` (and the sub-models' own) never set."""
    with torch.device("meta"):
        model = model_class(config)
    model.to_empty(device="cpu")
    tensors = list(model.parameters()) + list(model.buffers())
    with torch.no_grad():
        for tensor in tensors:
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    for item in [*tensors, *model.modules()]:
        if hasattr(item, "_is_hf_initialized"):
            del item._is_hf_initialized
    model.initialize_weights()
    return [name for name, tensor in [*model.named_parameters(), *model.named_buffers()]
            if tensor.is_floating_point() and torch.isnan(tensor).any()]


@pytest.mark.parametrize("kind", ["visual", "audio", "audio_layers", "text", "late", "feature3"])
def test_init_weights_sets_every_weight_on_the_meta_device(kind):
    configs = {
        "visual": (EmiVisualModel, tiny_visual_config),
        "audio": (EmiAudioModel, tiny_audio_config),
        "audio_layers": (EmiAudioModel, lambda: tiny_audio_config(speech_layers=[0, 1])),
        "text": (EmiTextModel, tiny_text_config),
        "late": (EmiFusionModel, tiny_fusion_config),
        "feature3": (EmiFusionModel, lambda: EmiFusionConfig(
            visual_config=tiny_visual_config(), audio_config=tiny_audio_config(speech_layers=[0, 1]),
            text_config=tiny_text_config(), fusion_type="feature")),
    }
    model_class, make_config = configs[kind]
    assert _uninitialised_after_meta_init(model_class, make_config()) == []


# -- the processor: channels-first arrays, int64 masks ---------------------------------------------------------------


@pytest.fixture(scope="module")
def crop_processor():
    return EmiProcessor(face_detector=None, au_backend=None, use_cache=False)


def test_processor_takes_channels_first_video_arrays(crop_processor):
    frames = np.random.default_rng(0).integers(0, 255, (4, 64, 80, 3), dtype=np.uint8)
    first = np.ascontiguousarray(frames.transpose(0, 3, 1, 2))  # [T, 3, H, W]
    expected = crop_processor(videos=frames)["pixel_values"]
    for given in (first, torch.from_numpy(first), list(first), [first], first[None]):
        torch.testing.assert_close(crop_processor(videos=given)["pixel_values"], expected)
    clip = crop_processor.process_clip(first)
    assert clip.face_crops.shape == (4, 112, 112, 3)


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_processor_masks_are_int64(crop_processor, return_tensors):
    frames = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    for batch in (crop_processor(videos=[frames, frames[:2]], return_tensors=return_tensors),
                  crop_processor(audio=[np.zeros(800, np.float32), np.ones(400, np.float32)],
                                 return_tensors=return_tensors),
                  crop_processor(videos=frames, audio=np.zeros(1600, np.float32), return_tensors=return_tensors)):
        for name in ("frame_mask", "attention_mask"):
            dtype = batch[name].dtype
            assert dtype in (torch.int64, np.int64), (name, dtype)


def test_models_read_any_integer_or_bool_mask_the_same():
    torch.manual_seed(0)
    visual = EmiVisualModel(tiny_visual_config()).eval()
    audio = EmiAudioModel(tiny_audio_config()).eval()
    inputs = _visual_inputs()
    waveform = torch.randn(2, 3200)
    audio_mask = (torch.arange(3200)[None] < torch.tensor([[3200], [1600]])).long()
    with torch.no_grad():
        expected_visual = visual(**inputs).intensities
        expected_audio = audio(input_values=waveform, attention_mask=audio_mask).intensities
        for dtype in (torch.int32, torch.bool, torch.int8):
            torch.testing.assert_close(visual(visual_features=inputs["visual_features"],
                                              frame_mask=inputs["frame_mask"].to(dtype)).intensities, expected_visual)
            torch.testing.assert_close(audio(input_values=waveform, attention_mask=audio_mask.to(dtype)).intensities,
                                       expected_audio)
