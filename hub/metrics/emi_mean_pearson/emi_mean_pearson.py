"""`evaluate` module for the EMI challenge metric: mean Pearson r over the six emotion intensities.

Load it from a checkout (no network):

    import evaluate
    metric = evaluate.load("hub/metrics/emi_mean_pearson")
    metric.compute(predictions=[[...6 floats...], ...], references=[[...], ...])
    # {"mean_pearson": float, "per_emotion": {"Admiration": float, ...}}

This file is a thin wrapper: the maths lives in `emi_hf.metrics.mean_pearson`, so there is a single
implementation to test and to keep right. `evaluate` copies this script into its module cache before importing
it, which rules out relative imports; the wrapper therefore needs the `emi-hf` package installed
(`pip install emi-hf`, or `pip install -e .` in a checkout) and says so if it is not.
"""

import datasets
import evaluate

try:  # indented import: evaluate's dependency scanner only looks at top-level imports; we give our own message
    from emi_hf.metrics import EMOTION_NAMES, mean_pearson
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "The `emi_mean_pearson` metric wraps `emi_hf.metrics.mean_pearson` and needs the emi-hf package: "
        "`pip install emi-hf` (or `pip install -e .` in a checkout of the repository). "
        f"Import failed with: {error}"
    ) from error


_DESCRIPTION = """\
Emotional Mimicry Intensity (ABAW EMI challenge) metric. For each emotion (Admiration, Amusement, Determination,
Empathic Pain, Excitement, Joy) the Pearson correlation between predicted and annotated intensities over all clips is
computed; the score is the unweighted mean of the six correlations. A constant column (predictions or references all
equal) scores 0.0 instead of scipy's NaN: a constant predictor carries no linear information.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): predicted intensities, one row of `len(label_names)` values per clip.
    references (`list[list[float]]`): annotated intensities, same shape as `predictions`.
    label_names (`list[str]`, *optional*): names of the columns, in order. Defaults to the six EMI emotions.
Returns:
    mean_pearson (`float`): mean of the per-emotion Pearson correlations, in [-1, 1].
    per_emotion (`dict[str, float]`): Pearson r of each emotion.
Raises:
    ValueError: fewer than 2 clips, mismatched or wrong shapes, NaN or infinite values.
Examples:
    >>> import evaluate
    >>> metric = evaluate.load("hub/metrics/emi_mean_pearson")
    >>> result = metric.compute(predictions=[[0.1] * 6, [0.5] * 6, [0.9] * 6], references=[[0.0] * 6, [0.4] * 6, [1.0] * 6])
    >>> round(result["mean_pearson"], 4)
    0.9934
"""

_CITATION = """\
@inproceedings{kollias2024abaw,
  title     = {The 6th Affective Behavior Analysis in-the-wild (ABAW) Competition},
  author    = {Kollias, Dimitrios and Tzirakis, Panagiotis and Cowen, Alan and Zafeiriou, Stefanos and
               Kotsia, Irene and Baird, Alice and Gagne, Chris and Shao, Chunchang and Hu, Guanyu},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition Workshops},
  year      = {2024},
  eprint    = {2402.19344},
  archivePrefix = {arXiv}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EmiMeanPearson(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("float64")),
                }
            ),
            reference_urls=["https://affective-behavior-analysis-in-the-wild.github.io/6th/"],
        )

    def _compute(self, predictions, references, label_names=None):
        return mean_pearson(predictions, references, label_names=tuple(label_names or EMOTION_NAMES))
