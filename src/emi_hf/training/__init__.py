"""Training with accelerate (cached features, or raw clips end to end: one loop), evaluation and plots.

```bash
accelerate launch train.py --features features/ --modality visual --output-dir runs/visual
accelerate launch train.py --features features/ --modality audio  --output-dir runs/audio
accelerate launch train.py --features features/ --modality fusion --output-dir runs/fusion \
    --visual-model runs/visual --audio-model runs/audio
accelerate launch train.py --features features/ --raw-data DATA --modality audio --trainable-backbone-layers 2 \
    --output-dir runs/audio_end_to_end
```

```python
from emi_hf.training import EmiTrainingArguments, train, evaluate_model, plot_scatter

results = train(EmiTrainingArguments(features="features/", modality="visual", output_dir="runs/visual"))
results, predictions, labels = evaluate_model("runs/visual", "features/", "validation")
plot_scatter(predictions, labels, results["label_names"], "runs/visual/scatter.png")
```

`TrainingArguments` (the arguments' name before) still imports, with a DeprecationWarning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .arguments import EmiTrainingArguments, build_parser, parse_args
    from .evaluation import evaluate_model, plot_scatter, predict, score_predictions
    from .loop import TrainingState, main, train, training_loss

# Imported on first use (PEP 562): `emi-hf train --help` needs only the arguments, not torch or accelerate.
_LAZY = {
    **dict.fromkeys(("EmiTrainingArguments", "build_parser", "parse_args"), ".arguments"),
    **dict.fromkeys(("evaluate_model", "plot_scatter", "predict", "score_predictions"), ".evaluation"),
    **dict.fromkeys(("TrainingState", "main", "train", "training_loss"), ".loop"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        from .arguments import deprecated_name

        return deprecated_name(__name__, name)
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
