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

from .arguments import EmiTrainingArguments, build_parser, deprecated_name, parse_args
from .evaluation import evaluate_model, plot_scatter, predict, score_predictions
from .loop import TrainingState, main, train, training_loss

__all__ = [
    "EmiTrainingArguments",
    "TrainingState",
    "build_parser",
    "evaluate_model",
    "main",
    "parse_args",
    "plot_scatter",
    "predict",
    "score_predictions",
    "train",
    "training_loss",
]


def __getattr__(name: str):
    return deprecated_name(__name__, name)
