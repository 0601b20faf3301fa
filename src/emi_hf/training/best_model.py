"""The best model of a run on disk, without rewriting its frozen backbones at every improvement.

A run's model holds frozen backbones (ResNet18, wav2vec2, a text encoder: most of its bytes) that training never
changes. [`BestModelWriter`] writes the complete model (`save_pretrained`) at the run's first improvement only; at
each later one it writes the parts that can change (every parameter that trains, and every buffer) to
``OUTPUT_DIR/checkpoints/best_trainable.safetensors`` (a temporary file, then renamed). At the end of the run
[`BestModelWriter.finish`] puts those parts into the model and writes the complete best model once more with
`save_pretrained`: the same files as a `save_pretrained` at the best epoch (loadable with `from_pretrained`, and
with `trust_remote_code` where emi_hf is not installed). So the frozen backbones are written at most twice per run,
however many epochs improve.

Until the run ends, ``OUTPUT_DIR`` holds the complete model of the run's first improvement; a run that is killed
finishes the assembly when it is resumed (`--resume`), since the file of the best parts stays in ``checkpoints/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import EmiUsageError

BEST_TRAINABLE_FILE = "best_trainable.safetensors"
CHECKPOINTS_DIR = "checkpoints"


def frozen_parameter_names(model: torch.nn.Module) -> set[str]:
    """Names (state-dict keys) of the parameters that do not train (`requires_grad` False)."""
    return {name for name, parameter in model.named_parameters() if not parameter.requires_grad}


def changing_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state-dict entries training can change: trainable parameters and all buffers (contiguous, on CPU)."""
    frozen = frozen_parameter_names(model)
    return {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()
            if name not in frozen}


class BestModelWriter:
    """Writes a run's best model to `output_dir` (see the module doc): call `save` on the main process at every
    improvement, and `finish` on every process once at the end. With an `accelerator`, its epoch checkpoints leave
    out the frozen weights too (`checkpoints_without_frozen_weights`)."""

    def __init__(self, output_dir: str | os.PathLike, accelerator=None):
        self.output_dir = Path(output_dir)
        self.accelerator = accelerator
        if accelerator is not None:
            checkpoints_without_frozen_weights(accelerator)
        self.trainable_file = self.output_dir / CHECKPOINTS_DIR / BEST_TRAINABLE_FILE
        self.complete_saved = False  # the complete model was written by this run (frozen parts included)
        self.complete_writes = 0  # save_pretrained calls (tests count them)

    def save(self, model: torch.nn.Module) -> None:
        """The model of a new best epoch: complete the first time, else its changing parts only."""
        from safetensors.torch import save_file

        if not self.complete_saved:
            self._save_complete(model)
            self.trainable_file.unlink(missing_ok=True)
            return
        self.trainable_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.trainable_file.with_name(self.trainable_file.name + ".tmp")
        save_file(changing_state(model), str(partial))
        os.replace(partial, self.trainable_file)

    def finish(self, model: torch.nn.Module) -> bool:
        """Puts the best changing parts (if a later epoch than the complete model's improved) into `model` and writes
        the complete best model (main process; the others wait for it); returns whether it wrote. `model` must hold
        the run's frozen weights (it is the model that trained, or one built from the same base)."""
        if self.accelerator is None:
            return self._finish(model)
        self.accelerator.wait_for_everyone()
        wrote = self._finish(model) if self.accelerator.is_main_process else False
        self.accelerator.wait_for_everyone()
        return wrote

    def _finish(self, model: torch.nn.Module) -> bool:
        from safetensors.torch import load_file

        if not self.trainable_file.is_file():
            return False
        best = load_file(str(self.trainable_file))
        missing, unexpected = model.load_state_dict(best, strict=False)
        if unexpected or set(missing) != frozen_parameter_names(model):
            raise RuntimeError(f"{self.trainable_file} does not match the model (missing {sorted(missing)[:5]}, "
                               f"unexpected {sorted(unexpected)[:5]}): it comes from another run; delete it, or "
                               "resume the run that wrote it.")
        self._save_complete(model)
        self.trainable_file.unlink()
        return True

    def _save_complete(self, model: torch.nn.Module) -> None:
        model.save_pretrained(self.output_dir)
        self.complete_saved = True
        self.complete_writes += 1


def checkpoints_without_frozen_weights(accelerator) -> None:
    """Epoch checkpoints (`save_state`) leave out the frozen parameters (the run rebuilds them from its base model
    before it resumes); `load_state(..., strict=False)` then loads one after checking that it holds every other
    weight of the model. Checkpoints written with every weight (earlier versions) load as before."""

    def drop_frozen(models, weights, output_dir) -> None:
        for model, state in zip(models, weights):
            for name in frozen_parameter_names(model):
                state.pop(name, None)

    def check_complete(models, input_dir) -> None:
        from safetensors import safe_open

        for i, model in enumerate(models):
            path = Path(input_dir) / ("model.safetensors" if i == 0 else f"model_{i}.safetensors")
            if not path.is_file():
                continue
            with safe_open(str(path), framework="pt") as handle:
                saved = set(handle.keys())
            missing = set(model.state_dict()) - frozen_parameter_names(model) - saved
            if missing:
                raise EmiUsageError(f"{path} lacks weights this model trains ({sorted(missing)[:5]}): it is a "
                                 "checkpoint of another model; resume from this run's checkpoints/.")

    accelerator.register_save_state_pre_hook(drop_frozen)
    accelerator.register_load_state_pre_hook(check_complete)
