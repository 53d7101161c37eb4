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


def test_a_long_model_card_fits_the_registry_and_links_the_whole_card():
    """MLflow's SQL stores hold 5,000 characters of description (PostgreSQL enforces it)."""
    from ml_platform.evaluation.report import DESCRIPTION_LIMIT, registry_description

    report = {"links": {"model_card": "http://mlflow/#/runs/1/artifacts/model_card/card.html"}}
    short = "# Model card\n\nshort"
    assert registry_description(short, report) == short
    card = "# Model card\n" + "".join(f"\n## Section {i}\n" + "x" * 400 for i in range(30))
    described = registry_description(card, report)
    assert len(described) <= DESCRIPTION_LIMIT < len(card)
    assert described.startswith("# Model card") and report["links"]["model_card"] in described
    assert "\n## Section 10\n" in described and "x" * 401 not in described
