"""The vectorised bootstrap and fairness intervals against a straightforward reference: the same
resamples, materialised row by row and scored with ``compute_metrics`` one at a time."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
import pytest

from ml_platform import metrics as catalogue
from ml_platform.evaluation import bootstrap
from ml_platform.evaluation import fairness as group_fairness
from ml_platform.metrics import compute_metrics
from ml_platform.spec import Fairness, Gates, Task

TOLERANCE = 1e-12


def reference_draws(spec, y, s, resamples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """bootstrap_metrics the slow way. Its resamples index the rows in descending score order and,
    below its chunk size (true for these small inputs), come from one draw matrix."""
    order = np.argsort(-np.asarray(s, dtype=float), kind="stable")
    y, s = np.asarray(y, dtype=float)[order], np.asarray(s, dtype=float)[order]
    if len(y) == 0:
        return {m: np.full(resamples, np.nan) for m in catalogue.names(spec.task)}
    drawn = rng.integers(0, len(y), size=(resamples, len(y)))
    values = [compute_metrics(spec, y[rows], s[rows]) for rows in drawn]
    return {m: np.array([v[m] for v in values]) for m in catalogue.names(spec.task)}


def reference_fairness_intervals(spec, labels: pd.Series, y, s, seed: int) -> tuple[dict, dict]:
    """({group: {metric: interval}}, {metric: difference interval}) of one attribute, one group at a time."""
    fairness = spec.gates.fairness
    y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
    labels = labels.astype(object).map(str).where(labels.notna(), group_fairness.MISSING_GROUP)
    draws, counted = {}, []
    for group in sorted(labels.unique()):
        rows = np.flatnonzero(labels == group)
        rng = np.random.default_rng([seed, zlib.crc32(f"{labels.name}={group}".encode())])
        draws[group] = reference_draws(spec, y[rows], s[rows], fairness.bootstrap, rng)
        if fairness.small_groups == "include" or len(rows) >= fairness.min_group_size:
            counted.append(group)
    ci = {g: {m: bootstrap.percentile_interval(v, fairness.confidence) for m, v in d.items()} for g, d in draws.items()}
    difference_ci = {}
    for m in catalogue.names(spec.task):
        spread = []
        for k in range(fairness.bootstrap):
            values = [draws[g][m][k] for g in counted]
            # A resample where a counted group's value is undefined has no difference.
            spread.append(math.nan if any(map(math.isnan, values)) else max(values) - min(values))
        difference_ci[m] = bootstrap.percentile_interval(np.array(spread), fairness.confidence)
    return ci, difference_ci


def assert_close(actual, expected):
    """Equal within TOLERANCE, NaN (or None, its JSON form) where the reference is NaN."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    defined = ~np.isnan(expected)
    assert np.abs(actual[defined] - expected[defined]).max(initial=0) <= TOLERANCE


def scored_rows(n: int, tied: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    if tied:  # rounded: most scores are shared with other rows, some across the threshold's sides
        scores = np.round(scores, 1)
    return (rng.random(n) < scores).astype(int), scores


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("n", [1, 2, 7, 400])
def test_bootstrap_metrics_equal_compute_metrics_on_each_resample(readmission, n, tied):
    y, s = scored_rows(n, tied, seed=n)
    fast = bootstrap.bootstrap_metrics(readmission, y.astype(float), s, 50, np.random.default_rng(3))
    slow = reference_draws(readmission, y, s, 50, np.random.default_rng(3))
    for metric in catalogue.names(Task.binary_classification):
        assert_close(fast[metric], slow[metric])


def test_bootstrap_metrics_of_one_class_and_of_no_rows(readmission):
    for y in (np.zeros(30), np.ones(30)):
        s = np.linspace(0, 1, 30)
        fast = bootstrap.bootstrap_metrics(readmission, y, s, 20, np.random.default_rng(0))
        slow = reference_draws(readmission, y, s, 20, np.random.default_rng(0))
        for metric in fast:
            assert_close(fast[metric], slow[metric])
    empty = bootstrap.bootstrap_metrics(readmission, np.array([]), np.array([]), 5, np.random.default_rng(0))
    assert all(np.isnan(v).all() and len(v) == 5 for v in empty.values())


def test_weighted_metrics_with_unsorted_scores_and_fractional_weights(readmission):
    """Callers outside the bootstrap pass rows in any order, and any non-negative weights."""
    y, s = scored_rows(300, tied=True, seed=5)
    weights = np.random.default_rng(6).integers(0, 4, size=(4, 300)).astype(float)
    batch = catalogue.weighted_metrics(readmission, y, s, weights)
    for k, row in enumerate(weights):
        repeated = np.repeat(np.arange(300), row.astype(int))
        expected = compute_metrics(readmission, y[repeated], s[repeated])
        for metric in expected:
            assert_close(batch[metric][k], expected[metric])
    # Halving every weight changes no metric: each is a ratio of weighted counts.
    halved = catalogue.weighted_metrics(readmission, y, s, weights / 2)
    for metric in batch:
        assert_close(halved[metric], batch[metric])


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("rule", ["exclude", "include"])
def test_fairness_intervals_equal_the_reference(readmission, tied, rule):
    y, s = scored_rows(900, tied, seed=11)
    rng = np.random.default_rng(12)
    # Groups of every size: large, middling, a handful of rows, one row and the missing group.
    cohort = rng.choice(["A", "B", "C"], 900, p=[0.7, 0.25, 0.05]).astype(object)
    cohort[:6] = "D"
    cohort[6] = "E"
    cohort[7:10] = None
    spec = readmission.model_copy(
        update={
            "sensitive_attributes": ["cohort"],
            "gates": Gates(
                fairness=Fairness(
                    max_difference={"sensitivity": 0.2},
                    bootstrap=40,
                    confidence=0.9,
                    min_group_size=40,
                    small_groups=rule,
                )
            ),
        }
    )
    groups = pd.DataFrame({"cohort": cohort})
    entry = group_fairness.fairness_report(spec, groups, y, s, seed=5)["cohort"]
    ci, difference_ci = reference_fairness_intervals(spec, groups["cohort"], y, s, seed=5)
    assert {g["group"] for g in entry["groups"]} == set(ci)
    for g in entry["groups"]:
        assert set(g["ci"]) == set(ci[g["group"]])
        for metric, interval in g["ci"].items():
            assert_close(_floats(interval), ci[g["group"]][metric])
    for metric, interval in entry["difference_ci"].items():
        assert_close(_floats(interval), difference_ci[metric])


def _floats(interval: list) -> list[float]:
    return [math.nan if v is None else v for v in interval]
