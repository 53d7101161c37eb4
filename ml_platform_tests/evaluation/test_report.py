"""Metrics and gates, on hand-checked numbers."""

from __future__ import annotations

import math

import pytest

from ml_platform import metrics as catalogue
from ml_platform.metrics import compute_metrics


def test_binary_metrics_match_a_hand_worked_example(readmission):
    # threshold 0.25: predictions positive for scores 0.9, 0.3, 0.8 -> TP=2, FP=1, FN=1, TN=2
    y = [1, 1, 1, 0, 0, 0]
    scores = [0.9, 0.8, 0.1, 0.3, 0.2, 0.05]
    m = compute_metrics(readmission, y, scores)
    assert set(m) == set(catalogue.names(readmission.task))
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["ppv"] == pytest.approx(2 / 3)
    assert m["npv"] == pytest.approx(2 / 3)
    assert m["prevalence"] == pytest.approx(0.5)
    assert m["positive_rate"] == pytest.approx(0.5)
    # ranking: of 9 positive/negative pairs, only (0.1 vs 0.3) and (0.1 vs 0.2) are misordered
    assert m["roc_auc"] == pytest.approx(7 / 9)
    brier = sum((s - t) ** 2 for s, t in zip(scores, y, strict=True)) / 6
    assert m["brier"] == pytest.approx(brier)


def test_metrics_that_need_both_classes_are_nan_not_an_error(readmission):
    m = compute_metrics(readmission, [0, 0, 0], [0.1, 0.5, 0.2])
    assert math.isnan(m["roc_auc"]) and math.isnan(m["sensitivity"])
    assert m["specificity"] == pytest.approx(2 / 3)
