"""Training on cached features with accelerate, evaluation and plots.

```bash
accelerate launch train.py --features features/ --modality visual --output-dir runs/visual
accelerate launch train.py --features features/ --modality audio  --output-dir runs/audio
accelerate launch train.py --features features/ --modality fusion --output-dir runs/fusion \
    --visual-model runs/visual --audio-model runs/audio
```

```python
from emi_hf.training import TrainingArguments, train, evaluate_model, plot_scatter

results = train(TrainingArguments(features="features/", modality="visual", output_dir="runs/visual"))
results, predictions, labels = evaluate_model("runs/visual", "features/", "validation")
plot_scatter(predictions, labels, results["label_names"], "runs/visual/scatter.png")
```
"""

from .arguments import TrainingArguments, build_parser, parse_args
from .evaluation import evaluate_model, plot_scatter, predict, score_predictions
from .loop import TrainingState, global_batch_loss, main, train

__all__ = [
    "TrainingArguments",
    "TrainingState",
    "build_parser",
    "evaluate_model",
    "global_batch_loss",
    "main",
    "parse_args",
    "plot_scatter",
    "predict",
    "score_predictions",
    "train",
]
