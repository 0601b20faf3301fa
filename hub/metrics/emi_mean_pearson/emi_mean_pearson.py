"""`evaluate` module for the EMI challenge metric: mean Pearson r over the six emotion intensities.

Load it from a checkout, or from its Space (no emi-hf needed):

    import evaluate
    metric = evaluate.load("hub/metrics/emi_mean_pearson")
    metric.compute(predictions=[[...6 floats...], ...], references=[[...], ...])
    # {"mean_pearson": float, "per_emotion": {"Admiration": float, ...}}

The module stands alone: NumPy (and `evaluate` / `datasets`, which load it) only, no emi-hf and no torch.
`evaluate` copies this script into its module cache before importing it, so it cannot import its neighbours; the
maths below is the same as `emi_hf.metrics.mean_pearson` (the package's tests compare the two, and both against
`scipy.stats.pearsonr`).
"""

import datasets
import evaluate
import numpy as np

EMOTION_NAMES = ("Admiration", "Amusement", "Determination", "Empathic Pain", "Excitement", "Joy")


def _matrix(values, argument, label_names):
    """`values` as a float64 `[num_clips, len(label_names)]` array; ValueError for other shapes, NaN or inf."""
    try:
        matrix = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{argument}` must be a numeric array of shape [num_clips, {len(label_names)}]: {error}")
    if matrix.ndim == 1 and len(label_names) == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[1] != len(label_names):
        raise ValueError(f"`{argument}` must have shape [num_clips, {len(label_names)}] (one column per label: "
                         f"{list(label_names)}), got shape {list(matrix.shape)}.")
    if not np.isfinite(matrix).all():
        rows, columns = np.nonzero(~np.isfinite(matrix))
        raise ValueError(f"`{argument}` contains {len(rows)} NaN or infinite value(s) (first at row {int(rows[0])}; "
                         f"labels {sorted({label_names[c] for c in columns})}). Drop unlabeled clips first.")
    return matrix


def mean_pearson(predictions, references, label_names=EMOTION_NAMES):
    """Pearson r per column (0.0 for a constant column) and their unweighted mean, in float64."""
    label_names = tuple(label_names)
    if not label_names or len(set(label_names)) != len(label_names):
        raise ValueError(f"`label_names` must name at least one label, each once; got {list(label_names)}.")
    predictions = _matrix(predictions, "predictions", label_names)
    references = _matrix(references, "references", label_names)
    if predictions.shape != references.shape:
        raise ValueError(f"`predictions` and `references` must have the same shape, got {list(predictions.shape)} "
                         f"and {list(references.shape)}.")
    if predictions.shape[0] < 2:
        raise ValueError(f"Correlation metrics need at least 2 clips, got {predictions.shape[0]}.")
    units = []
    for matrix in (predictions, references):  # centre, scale to unit norm (after max-abs scaling), as scipy does
        deviations = matrix - matrix.mean(axis=0)
        scale = np.abs(deviations).max(axis=0)
        scale[scale == 0] = 1.0
        deviations = deviations / scale
        norms = np.linalg.norm(deviations, axis=0)
        norms[norms == 0] = 1.0
        units.append(deviations / norms)
    correlation = np.clip(np.einsum("ij,ij->j", units[0], units[1]), -1.0, 1.0)
    constant = np.all(predictions == predictions[0], axis=0) | np.all(references == references[0], axis=0)
    correlation[constant] = 0.0
    return {"mean_pearson": float(np.mean(correlation)),
            "per_emotion": {name: float(value) for name, value in zip(label_names, correlation)}}


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
