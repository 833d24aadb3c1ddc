"""Metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skewless.evaluation import metrics


def test_roc_auc_counts_pairs_and_half_ties():
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.5, 0.5])
    # Positive/negative pairs: 3 x 3 = 9. Wins: 0.35 beats 0.1 (1); 0.8 beats all 3;
    # 0.5 beats 0.1 and 0.4 and ties 0.5 (2.5). Total 6.5 / 9.
    assert metrics.roc_auc(labels, scores) == pytest.approx(6.5 / 9)


def test_roc_auc_single_class_is_nan():
    assert math.isnan(metrics.roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_bayes_optimal_auc_is_auc_of_true_probabilities():
    labels = np.array([1, 0, 1, 0])
    truth = np.array([0.9, 0.2, 0.4, 0.6])
    assert metrics.bayes_optimal_auc(labels, truth) == pytest.approx(0.75)


def test_average_precision_hand_example():
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    # Precision at each positive: 1/1 and 2/3; mean over positives.
    assert metrics.average_precision(labels, scores) == pytest.approx((1 + 2 / 3) / 2)


def test_log_loss_ece_accuracy():
    labels = np.array([1, 0])
    probabilities = np.array([0.8, 0.4])
    assert metrics.log_loss(labels, probabilities) == pytest.approx(
        -(math.log(0.8) + math.log(0.6)) / 2
    )
    # Bins 8 and 4 each hold one row: gaps |0.8-1| and |0.4-0|, weighted equally.
    assert metrics.expected_calibration_error(labels, probabilities) == pytest.approx(0.3)
    assert metrics.accuracy(labels, probabilities) == 1.0


def test_metrics_reject_bad_labels_and_lengths():
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        metrics.roc_auc(np.array([2, 0]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="differ in length"):
        metrics.log_loss(np.array([1]), np.array([0.1, 0.2]))
