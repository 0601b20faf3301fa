"""emi_hf.metrics against scipy, edge-case conventions, input validation, and the `evaluate` wrapper module."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from emi_hf.configuration_emi import EMOTION_NAMES
from emi_hf.metrics import (
    concordance_correlation,
    mean_pearson,
    mean_squared_error,
    pearson_per_label,
    regression_report,
)


REPO_ROOT = Path(__file__).resolve().parents[1]
METRIC_MODULE = REPO_ROOT / "hub" / "metrics" / "emi_mean_pearson"


def _scipy_pearson(predictions, references):
    return np.array(
        [scipy.stats.pearsonr(predictions[:, j], references[:, j]).statistic for j in range(predictions.shape[1])]
    )


@pytest.mark.parametrize("num_samples", [2, 3, 7, 64, 1000])
@pytest.mark.parametrize("num_labels", [1, 3, 6])
def test_pearson_matches_scipy(num_samples, num_labels):
    rng = np.random.default_rng(1000 * num_samples + num_labels)
    references = rng.random((num_samples, num_labels))
    predictions = 0.5 * references + rng.normal(scale=0.3, size=(num_samples, num_labels))
    label_names = EMOTION_NAMES if num_labels == 6 else tuple(f"label_{i}" for i in range(num_labels))

    result = mean_pearson(predictions, references, label_names=label_names)
    expected = _scipy_pearson(predictions, references)

    assert list(result["per_emotion"]) == list(label_names)
    np.testing.assert_allclose(list(result["per_emotion"].values()), expected, atol=1e-6, rtol=0)
    assert result["mean_pearson"] == pytest.approx(expected.mean(), abs=1e-6)
    assert all(type(value) is float for value in result["per_emotion"].values())
    assert type(result["mean_pearson"]) is float


@pytest.mark.parametrize("offset, scale", [(1e6, 1.0), (0.0, 1e-9), (1e8, 1e-3), (-5.0, 1e4)])
def test_pearson_matches_scipy_badly_scaled(offset, scale):
    rng = np.random.default_rng(7)
    references = rng.random((200, 6))
    predictions = offset + scale * (references + rng.normal(scale=0.5, size=references.shape))
    np.testing.assert_allclose(
        pearson_per_label(predictions, references), _scipy_pearson(predictions, references), atol=1e-6, rtol=0
    )


def test_perfect_and_anti_correlation_are_exact_and_bounded():
    references = np.linspace(0, 1, 11)[:, None].repeat(6, axis=1)
    assert mean_pearson(3 * references + 1, references)["mean_pearson"] == pytest.approx(1.0, abs=1e-12)
    assert mean_pearson(-references, references)["mean_pearson"] == pytest.approx(-1.0, abs=1e-12)
    values = pearson_per_label(references * 0.1 + 1e-3, references)
    assert np.all(values <= 1.0) and np.all(values >= -1.0)


def test_dtypes_and_containers_give_float64_results():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    references = rng.random((20, 6))
    predictions = rng.random((20, 6))
    expected = mean_pearson(predictions, references)
    as_float32 = mean_pearson(predictions.astype(np.float32), references.astype(np.float32))
    as_lists = mean_pearson(predictions.tolist(), references.tolist())
    as_tensors = mean_pearson(torch.tensor(predictions, requires_grad=True), torch.tensor(references))
    assert as_lists == expected
    assert as_tensors == expected
    assert as_float32["mean_pearson"] == pytest.approx(expected["mean_pearson"], abs=1e-6)


def test_constant_column_scores_zero_without_warning():
    rng = np.random.default_rng(4)
    references = rng.random((16, 6))
    predictions = rng.random((16, 6))
    predictions[:, 1] = 0.1  # constant prediction (0.1 is not exactly representable: must still count as constant)
    references[:, 4] = 0.7  # constant reference
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = mean_pearson(predictions, references)
    assert result["per_emotion"]["Amusement"] == 0.0
    assert result["per_emotion"]["Excitement"] == 0.0
    others = [0, 2, 3, 5]
    expected = _scipy_pearson(predictions[:, others], references[:, others])
    np.testing.assert_allclose([result["per_emotion"][EMOTION_NAMES[j]] for j in others], expected, atol=1e-6)
    assert result["mean_pearson"] == pytest.approx(expected.sum() / 6, abs=1e-6)
    assert np.isfinite(result["mean_pearson"])


@pytest.mark.parametrize("num_samples", [0, 1])
def test_fewer_than_two_samples_raise(num_samples):
    values = np.zeros((num_samples, 6))
    with pytest.raises(ValueError, match="at least 2 samples"):
        mean_pearson(values, values)


def test_nan_and_inf_raise_with_the_label_name():
    references = np.random.default_rng(5).random((8, 6))
    with_nan = references.copy()
    with_nan[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"`references` contains 1 NaN.*Determination"):
        mean_pearson(references, with_nan)
    with_inf = references.copy()
    with_inf[0, 5] = np.inf
    with pytest.raises(ValueError, match=r"`predictions` contains.*Joy"):
        concordance_correlation(with_inf, references)


@pytest.mark.parametrize(
    "predictions_shape, references_shape, message",
    [
        ((8, 5), (8, 5), r"shape \[num_samples, 6\]"),
        ((8,), (8,), r"shape \[num_samples, 6\]"),
        ((8, 6, 1), (8, 6, 1), r"shape \[num_samples, 6\]"),
        ((8, 6), (9, 6), "same shape"),
    ],
)
def test_bad_shapes_raise(predictions_shape, references_shape, message):
    with pytest.raises(ValueError, match=message):
        mean_pearson(np.ones(predictions_shape), np.ones(references_shape))


def test_custom_label_names_change_the_expected_width():
    values = np.random.default_rng(6).random((5, 2))
    result = mean_pearson(values, values[::-1], label_names=["Joy", "Amusement"])
    assert list(result["per_emotion"]) == ["Joy", "Amusement"]
    with pytest.raises(ValueError, match="unique"):
        mean_pearson(values, values, label_names=["Joy", "Joy"])
    one_column = mean_pearson(values[:, 0], values[:, 0], label_names=["Joy"])
    assert one_column["mean_pearson"] == pytest.approx(1.0)


def test_concordance_correlation_and_mse():
    rng = np.random.default_rng(8)
    references = rng.random((100, 6))
    predictions = references + rng.normal(scale=0.2, size=references.shape)
    ccc = concordance_correlation(predictions, references)
    for j, name in enumerate(EMOTION_NAMES):
        p, r = predictions[:, j], references[:, j]
        expected = 2 * np.cov(p, r, ddof=0)[0, 1] / (p.var() + r.var() + (p.mean() - r.mean()) ** 2)
        assert ccc["per_emotion"][name] == pytest.approx(expected, abs=1e-12)
    assert ccc["mean_ccc"] == pytest.approx(np.mean(list(ccc["per_emotion"].values())))
    # CCC is 1 only for identity, while Pearson is blind to bias and scale.
    assert concordance_correlation(references, references)["mean_ccc"] == pytest.approx(1.0)
    assert concordance_correlation(0.5 * references + 0.3, references)["mean_ccc"] < 0.9
    constant = np.full((10, 6), 0.25)
    assert concordance_correlation(constant, constant)["mean_ccc"] == 0.0

    mse = mean_squared_error(predictions, references)
    np.testing.assert_allclose(list(mse["per_emotion"].values()), ((predictions - references) ** 2).mean(axis=0))
    assert mse["mean_mse"] == pytest.approx(((predictions - references) ** 2).mean())


def test_regression_report_layout():
    rng = np.random.default_rng(9)
    references = rng.random((12, 6))
    predictions = rng.random((12, 6))
    report = regression_report(predictions, references)
    assert report["num_samples"] == 12
    assert report["mean_pearson"] == mean_pearson(predictions, references)["mean_pearson"]
    assert set(report["per_emotion"]) == set(EMOTION_NAMES)
    assert set(report["per_emotion"]["Joy"]) == {"pearson", "ccc", "mse"}


def test_evaluate_module_loads_from_path_and_matches(tmp_path, monkeypatch):
    evaluate = pytest.importorskip("evaluate", reason="the `evaluate` package is not installed (extra: evaluate)")
    # evaluate copies the script into its module cache: keep that cache inside tmp_path.
    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", tmp_path / "modules")
    metric = evaluate.load(str(METRIC_MODULE), cache_dir=str(tmp_path / "metric_cache"))

    rng = np.random.default_rng(10)
    references = rng.random((30, 6))
    predictions = references + rng.normal(scale=0.3, size=references.shape)
    result = metric.compute(predictions=predictions.tolist(), references=references.tolist())
    expected = mean_pearson(predictions, references)
    assert result["mean_pearson"] == pytest.approx(expected["mean_pearson"], abs=1e-12)
    assert result["per_emotion"] == pytest.approx(expected["per_emotion"], abs=1e-12)

    # Accumulating batches gives the same number as one call over all clips.
    for start in range(0, 30, 8):
        metric.add_batch(predictions=predictions[start : start + 8].tolist(), references=references[start : start + 8].tolist())
    assert metric.compute()["mean_pearson"] == pytest.approx(expected["mean_pearson"], abs=1e-12)

    subset = metric.compute(
        predictions=predictions[:, :2].tolist(), references=references[:, :2].tolist(), label_names=["Admiration", "Joy"]
    )
    assert list(subset["per_emotion"]) == ["Admiration", "Joy"]


def test_metric_card_example_value():
    # The value quoted in the evaluate module's docstring and README.
    result = mean_pearson([[0.1] * 6, [0.5] * 6, [0.9] * 6], [[0.0] * 6, [0.4] * 6, [1.0] * 6])
    assert round(result["mean_pearson"], 4) == 0.9934


def _site_without(tmp_path, blocked) -> Path:
    """A folder of links to this interpreter's site-packages entries, minus those whose name starts with one of
    `blocked` (and every .pth file): with `python -S` and only this folder on sys.path, the blocked packages are
    really not importable."""
    import site

    farm = tmp_path / "site"
    farm.mkdir()
    for folder in (Path(p) for p in site.getsitepackages() if Path(p).is_dir()):
        for entry in folder.iterdir():
            name = entry.name.lower()
            if name.endswith(".pth") or name.startswith(blocked) or (farm / entry.name).exists():
                continue
            (farm / entry.name).symlink_to(entry)
    return farm


def test_evaluate_module_stands_alone_without_emi_hf_or_torch(tmp_path):
    pytest.importorskip("evaluate", reason="the `evaluate` package is not installed (extra: evaluate)")
    import json
    import subprocess
    import sys

    for name in ("app.py", "requirements.txt", "README.md"):
        assert (METRIC_MODULE / name).is_file(), name
    requirements = [line.split("#")[0].strip().lower() for line in
                    (METRIC_MODULE / "requirements.txt").read_text().splitlines()]
    assert any(line.startswith("evaluate") for line in requirements)
    assert not [line for line in requirements if line.startswith(("emi", "torch", "scipy"))]
    rng = np.random.default_rng(3)
    references = rng.random((25, 6))
    predictions = references + rng.normal(scale=0.4, size=references.shape)
    predictions[:, 2] = 0.5  # a constant column: 0.0 here, NaN in scipy
    (tmp_path / "inputs.json").write_text(json.dumps({"p": predictions.tolist(), "r": references.tolist()}))
    farm = _site_without(tmp_path, ("torch", "functorch", "torchgen", "torchvision", "torchaudio", "emi_hf",
                                    "emi-hf", "__editable__"))
    script = f"""
import sys, json
sys.path = [p for p in sys.path if 'site-packages' not in p and 'dist-packages' not in p] + [{str(farm)!r}]
for name in ('torch', 'emi_hf'):
    try:
        __import__(name)
        raise SystemExit(name + ' must not be importable here')
    except ImportError:
        pass
import evaluate
evaluate.config.HF_MODULES_CACHE = {str(tmp_path / 'modules')!r}
metric = evaluate.load({str(METRIC_MODULE)!r}, cache_dir={str(tmp_path / 'cache')!r})
data = json.load(open({str(tmp_path / 'inputs.json')!r}))
result = metric.compute(predictions=data['p'], references=data['r'])
assert 'torch' not in sys.modules and not any(m.startswith('emi_hf') for m in sys.modules), 'imported'
json.dump(result, open({str(tmp_path / 'out.json')!r}, 'w'))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), PYTHONNOUSERSITE="1")
    done = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    expected = mean_pearson(predictions, references)
    assert result["mean_pearson"] == pytest.approx(expected["mean_pearson"], abs=1e-12)
    assert result["per_emotion"] == pytest.approx(expected["per_emotion"], abs=1e-12)
    scipy_values = _scipy_pearson(np.delete(predictions, 2, axis=1), np.delete(references, 2, axis=1))
    values = [v for name, v in result["per_emotion"].items() if name != EMOTION_NAMES[2]]
    np.testing.assert_allclose(values, scipy_values, atol=1e-6, rtol=0)
    assert result["per_emotion"][EMOTION_NAMES[2]] == 0.0
