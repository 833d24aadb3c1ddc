"""Binary-classification metrics in NumPy, exact and dependency-free.

They are used on the eval split (model and baseline scores) and on the data's true click
probabilities, where :func:`bayes_optimal_auc` gives the ceiling no model can beat on that split.
"""

from __future__ import annotations

import numpy as np


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.shape[0]}) and scores ({s.shape[0]}) differ in length")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return y, s


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; tied scores count one half (Mann-Whitney U).

    Returns:
        The AUC, or NaN when only one class is present.
    """
    y, s = _check(labels, scores)
    positives = y.sum()
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_scores = s[order]
    ranks = np.empty(y.size, dtype=np.float64)
    # Average ranks over ties so equal scores contribute exactly one half.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    rank_sum = ranks[y == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def bayes_optimal_auc(labels: np.ndarray, true_probabilities: np.ndarray) -> float:
    """AUC of the Bayes-optimal scorer (the true click probability) on these rows.

    No model can rank these rows better in expectation, so this is the ceiling for the split.
    """
    return roc_auc(labels, true_probabilities)


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (step-wise, no interpolation)."""
    y, s = _check(labels, scores)
    positives = y.sum()
    if positives == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    # Evaluate only at the last index of each distinct score so ties form one threshold.
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    true_pos = np.cumsum(y_sorted)[last_of_tie]
    predicted = (np.arange(y.size) + 1)[last_of_tie]
    precision = true_pos / predicted
    recall_gain = np.diff(np.r_[0.0, true_pos]) / positives
    return float((precision * recall_gain).sum())


def log_loss(labels: np.ndarray, probabilities: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy, with probabilities clipped to [eps, 1 - eps]."""
    y, p = _check(labels, probabilities)
    p = np.clip(p, eps, 1 - eps)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def expected_calibration_error(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = 10
) -> float:
    """Weighted mean gap between predicted and observed click rate over equal-width bins."""
    y, p = _check(labels, probabilities)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    predicted = np.bincount(index, weights=p, minlength=bins)
    observed = np.bincount(index, weights=y, minlength=bins)
    filled = counts > 0
    gaps = np.abs(predicted[filled] - observed[filled]) / counts[filled]
    return float((gaps * counts[filled]).sum() / y.size)


def accuracy(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> float:
    """Share of rows whose thresholded prediction equals the label."""
    y, p = _check(labels, probabilities)
    return float(((p >= threshold) == (y == 1)).mean())
