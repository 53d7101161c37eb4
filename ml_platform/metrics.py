"""The metric catalogue: every metric's name, task, direction, whether it is monitored, and its implementation.

One place for this knowledge: spec validation (which metrics a gate may name), evaluation,
the gates, the bootstrap and monitoring all read it here. Each metric has one reference
implementation (``compute``, on plain arrays, scikit-learn where it has the metric);
``weighted_metrics`` is the vectorised path the bootstrap and the performance estimate use,
tested equal to the reference implementations.

Functions take the model's spec as any object with a ``task`` and a decision ``threshold``,
so this module depends on nothing else in the platform.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sklearn import metrics as sk

BINARY, REGRESSION = "binary_classification", "regression"


class Scored(Protocol):
    """What a metric needs to know of a model: its task and its decision threshold on P(positive)."""

    task: str
    threshold: float


@dataclass(frozen=True)
class Metric:
    """One metric of the catalogue.

    ``higher_is_better`` is None for metrics that describe the patients and the threshold
    rather than model quality (prevalence, positive rate): they have no better or worse, so
    no champion or fairness comparison can use them. ``monitored`` metrics are the ones a
    live-performance floor and tolerance make sense for.
    """

    name: str
    task: str
    higher_is_better: bool | None
    monitored: bool
    compute: Callable[[np.ndarray, np.ndarray, np.ndarray], float]  # (y_true, scores, predicted) -> value
    description: str


def _ratio(numerator, denominator) -> float:
    return float(numerator) / float(denominator) if denominator else math.nan


def _both_classes(y: np.ndarray) -> bool:
    return bool((y == 1).any() and (y == 0).any())


CATALOGUE: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("roc_auc", BINARY, True, True,
               lambda y, s, p: sk.roc_auc_score(y, s) if _both_classes(y) else math.nan,
               "area under the ROC curve: how well risks rank patients with the outcome above those without"),
        Metric("average_precision", BINARY, True, True,
               lambda y, s, p: sk.average_precision_score(y, s) if (y == 1).any() else math.nan,
               "area under the precision-recall curve"),
        Metric("brier", BINARY, False, False, lambda y, s, p: sk.brier_score_loss(y, s),
               "mean squared difference between predicted risk and outcome"),
        Metric("sensitivity", BINARY, True, True, lambda y, s, p: _ratio((p & (y == 1)).sum(), (y == 1).sum()),
               "share of patients with the outcome who are flagged"),
        Metric("specificity", BINARY, True, True, lambda y, s, p: _ratio((~p & (y == 0)).sum(), (y == 0).sum()),
               "share of patients without the outcome who are not flagged"),
        Metric("ppv", BINARY, True, True, lambda y, s, p: _ratio((p & (y == 1)).sum(), p.sum()),
               "positive predictive value: share of flagged patients with the outcome"),
        Metric("npv", BINARY, True, True, lambda y, s, p: _ratio((~p & (y == 0)).sum(), (~p).sum()),
               "negative predictive value: share of unflagged patients without the outcome"),
        Metric("accuracy", BINARY, True, True, lambda y, s, p: float((p == (y == 1)).mean()),
               "share of patients classified correctly at the threshold"),
        Metric("prevalence", BINARY, None, False, lambda y, s, p: float((y == 1).mean()),
               "share of patients with the outcome"),
        Metric("positive_rate", BINARY, None, False, lambda y, s, p: float(p.mean()),
               "share of patients flagged at the threshold"),
        Metric("mae", REGRESSION, False, False, lambda y, s, p: sk.mean_absolute_error(y, s), "mean absolute error"),
        Metric("rmse", REGRESSION, False, False, lambda y, s, p: math.sqrt(sk.mean_squared_error(y, s)),
               "root mean squared error"),
        Metric("r2", REGRESSION, True, True, lambda y, s, p: sk.r2_score(y, s) if len(y) > 1 else math.nan,
               "coefficient of determination"),
    )
}  # fmt: skip


def names(task: str) -> tuple[str, ...]:
    """The metrics of a task, in catalogue order."""
    return tuple(m.name for m in CATALOGUE.values() if m.task == task)


def monitored(task: str) -> tuple[str, ...]:
    """The metrics of a task that live performance can be held to (higher is better)."""
    return tuple(m.name for m in CATALOGUE.values() if m.task == task and m.monitored)


def higher_is_better(name: str, use: str) -> bool:
    """The metric's direction, for a comparison (``use`` names it in the error) that needs one."""
    metric = CATALOGUE.get(name)
    if metric is None:
        raise ValueError(f"{use} gate on '{name}': unknown metric; known: {', '.join(CATALOGUE)}")
    if metric.higher_is_better is None:
        raise ValueError(
            f"{use} gate on '{name}': {name} has no better or worse direction "
            f"(it describes the patients and the threshold, not model quality); use a ranked metric"
        )
    return metric.higher_is_better


def compute_metrics(spec: Scored, y_true, scores) -> dict[str, float]:
    """Every metric of the spec's task on these outcomes and scores. Undefined values are NaN."""
    y, s = np.asarray(y_true, dtype=float), np.asarray(scores, dtype=float)
    predicted = s >= spec.threshold
    return {name: float(CATALOGUE[name].compute(y, s, predicted)) for name in names(spec.task)}


def weighted_metrics(
    spec: Scored, y_true, scores, weights: np.ndarray, *, ranking: bool = True
) -> dict[str, np.ndarray]:
    """compute_metrics for many row weightings at once: ``weights`` is (k, n), one row per weighting.

    With integer weights (how often a bootstrap resample draws each row) the result equals
    compute_metrics on the resampled rows, including NaN where a metric is undefined.
    ROC AUC is the Mann-Whitney statistic with ties counted half (what scikit-learn's
    trapezoidal ROC area equals); average precision is scikit-learn's step-wise sum of
    precision times recall increments over distinct score thresholds. ``ranking=False`` leaves
    those two out (NaN) and skips their sort, for callers that only need the threshold metrics.
    """
    y, s = np.asarray(y_true, dtype=float), np.asarray(scores, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    total = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if spec.task == REGRESSION:
            error = s - y
            mean_y = (w @ y) / total
            ss_res = w @ error**2
            ss_tot = np.sum(w * (y[None, :] - mean_y[:, None]) ** 2, axis=1)
            # scikit-learn's r2_score convention for a constant target: 1 if perfect, else 0.
            r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
            return {
                "mae": (w @ np.abs(error)) / total,
                "rmse": np.sqrt(ss_res / total),
                "r2": np.where(total > 1, r2, np.nan),
            }
        positive = y == 1
        predicted = s >= spec.threshold
        cells = [predicted & positive, predicted & ~positive, ~predicted & positive, ~predicted & ~positive]
        if len(w) > 1:
            # Many weightings (the bootstrap): the four counts in one pass over the weights. Integer
            # weights add up to exact integers in any order, so this equals four separate products.
            tp, fp, fn, tn = (w @ np.column_stack(cells).astype(float)).T
        else:  # one weighting of many rows (the performance estimate): a product per count is faster
            tp, fp, fn, tn = (w @ cell for cell in cells)
        pos, neg = tp + fn, fp + tn
        auc, ap = _ranking_metrics(y, s, w, pos, neg) if ranking else (np.full(len(w), np.nan),) * 2

        def ratio(numerator, denominator):
            return np.where(denominator > 0, numerator / denominator, np.nan)

        return {
            "roc_auc": auc,
            "average_precision": ap,
            "brier": (w @ (y - s) ** 2) / total,
            "sensitivity": ratio(tp, pos),
            "specificity": ratio(tn, neg),
            "ppv": ratio(tp, tp + fp),
            "npv": ratio(tn, tn + fn),
            "accuracy": (tp + tn) / total,
            "prevalence": pos / total,
            "positive_rate": (tp + fp) / total,
        }


def _ranking_metrics(y, s, w, pos, neg) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ROC AUC and average precision from cumulative weights over the scores in descending order.

    Both are sums over the positive rows, so after one cumulative sum of all weights (and one
    of the positives' weights, a small share of the columns) each weighting costs a few
    gathers at the positives' columns instead of a pass over every column per term. Rows with
    equal scores share a threshold: a positive's tie group (first row to one past its last)
    decides which rows count as scored above it.
    """
    if len(s) > 1 and np.any(s[1:] > s[:-1]):
        order = np.argsort(-s, kind="stable")
        y, s, w = y[order], s[order], w[:, order]
    positive = y == 1
    rows = np.flatnonzero(positive)
    tie_first = np.searchsorted(-s, -s[rows], side="left")
    tie_end = np.searchsorted(-s, -s[rows], side="right")
    positives_before = np.r_[0, np.cumsum(positive)]  # positive rows among the first j rows
    w_pos = w[:, rows]
    all_cum, pos_cum = _cumulative(w), _cumulative(w_pos)
    # Weights scored strictly above each positive's score (gt) and at or above it (ge).
    all_gt, all_ge = all_cum[:, tie_first], all_cum[:, tie_end]
    pos_gt, pos_ge = pos_cum[:, positives_before[tie_first]], pos_cum[:, positives_before[tie_end]]
    # Negatives scored strictly lower than the positive, plus half the tied ones (Mann-Whitney).
    below = neg[:, None] - 0.5 * ((all_gt - pos_gt) + (all_ge - pos_ge))
    auc = np.where((pos > 0) & (neg > 0), np.sum(w_pos * below, axis=1) / (pos * neg), np.nan)
    # Precision at the positive's threshold: every row scored at or above it is flagged.
    precision = np.divide(pos_ge, all_ge, out=np.zeros_like(pos_ge), where=all_ge > 0)
    ap = np.where(pos > 0, np.sum(w_pos * precision, axis=1) / pos, np.nan)
    return auc, ap


def _cumulative(w: np.ndarray) -> np.ndarray:
    """Running sums along each row with a leading zero: column j is the weight of the first j columns."""
    out = np.zeros((w.shape[0], w.shape[1] + 1))
    np.cumsum(w, axis=1, out=out[:, 1:])
    return out
