"""The logistic-regression baseline: its design matrix, exactly, and that the fit learns."""

from __future__ import annotations

import math

import numpy as np

from skewless.contract.spec import load_spec_text
from skewless.evaluation.metrics import roc_auc
from skewless.model import baseline
from skewless.model.baseline import design_matrix, fit_baseline
from skewless.model.transform import id_space

SPEC = load_spec_text(
    """
features:
  c: {kind: categorical}
  t: {kind: tags, max_tags: 3}
  x: {kind: numeric}
  y: {kind: label}
"""
)


def vocabulary_size(_: str) -> int:
    return 3


def test_each_output_becomes_its_columns():
    features = {
        "x": np.array([0.5, -1.0], np.float32),
        "c": np.array([1, 2], np.int32),
        "t": np.array([[1, 2, 0], [2, 2, 0]], np.int32),  # 0 is padding
    }
    width_c, width_t = (id_space(SPEC, name, vocabulary_size) for name in ("c", "t"))
    matrix = design_matrix(features, SPEC, vocabulary_size).toarray()

    expected = np.zeros((2, width_c + 2 * width_t + 2))
    expected[0, 1] = expected[1, 2] = 1  # c, one-hot
    counts, means, length = width_c, width_c + width_t, width_c + 2 * width_t
    expected[0, counts + 1] = expected[0, counts + 2] = 1  # t: how often each id occurs
    expected[1, counts + 2] = 2
    expected[0, means + 1] = expected[0, means + 2] = 0.5  # ... over the sequence's length
    expected[1, means + 2] = 1
    expected[:, length] = math.log(3)  # log1p(length)
    expected[:, length + 1] = [0.5, -1.0]  # x, as it is
    np.testing.assert_allclose(matrix, expected)


def _rows(seed: int, noise: float) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """400 rows whose label is ``c == 2``, flipped for a ``noise`` share; x is noise."""
    rng = np.random.default_rng(seed)
    category = rng.integers(1, 4, 400).astype(np.int32)
    features = {
        "c": category,
        "t": np.zeros((400, 3), np.int32),
        "x": rng.normal(size=400).astype(np.float32),
    }
    labels = ((category == 2) ^ (rng.random(400) < noise)).astype(np.float32)
    return features, labels, (category == 2).astype(np.float32)


def test_the_fit_ranks_by_what_decides_the_label():
    features, labels, _ = _rows(seed=0, noise=0.0)  # only c decides
    scores = fit_baseline((features, labels), SPEC, vocabulary_size, l2=1e-4)(features)
    assert roc_auc(labels, scores) == 1.0


def test_past_max_rows_it_fits_on_a_sample(monkeypatch):
    features, labels, truth = _rows(seed=1, noise=0.2)
    whole = fit_baseline((features, labels), SPEC, vocabulary_size, l2=1e-3)(features)
    monkeypatch.setattr(baseline, "MAX_ROWS", 100)
    sampled = fit_baseline((features, labels), SPEC, vocabulary_size, l2=1e-3)(features)
    assert not np.allclose(sampled, whole)  # fitted on other rows...
    assert roc_auc(truth, sampled) == 1.0  # ... and still ranks by what decides the label
