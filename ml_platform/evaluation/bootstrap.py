"""Bootstrap intervals of the metrics, vectorised: every resample scored with a few matrix products."""

from __future__ import annotations

import math

import numpy as np

from ml_platform import metrics as catalogue
from ml_platform.evaluation.verdicts import json_safe
from ml_platform.spec import ModelSpec

# Bootstrap matrices are processed in chunks of at most this many cells (resamples x rows),
# bounding memory at ~32 MB per float matrix whatever the test-set size.
_BOOTSTRAP_CHUNK_CELLS = 4_000_000


def bootstrap_intervals(
    spec: ModelSpec, y_true, scores, n: int, confidence: float = 0.95, seed: int = 0
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of every overall metric, for the model card.

    ``n`` plain (unstratified) resamples of the test rows with replacement; each interval
    covers the central ``confidence`` share of the resampled values where the metric is
    defined. ``n == 0`` gives ``{}``.
    """
    if n <= 0:
        return {}
    y, s = np.asarray(y_true, dtype=float), np.asarray(scores, dtype=float)
    draws = bootstrap_metrics(spec, y, s, n, np.random.default_rng(seed))
    return json_safe({m: percentile_interval(v, confidence) for m, v in draws.items()})


def bootstrap_metrics(
    spec: ModelSpec, y: np.ndarray, s: np.ndarray, resamples: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Every metric of the task on ``resamples`` bootstrap resamples: {metric: (resamples,)}.

    A resample is represented by how often it draws each row (a weight matrix), so all
    resamples are scored with a few matrix products instead of one compute_metrics call
    each; ``weighted_metrics`` reproduces compute_metrics exactly for integer weights.
    """
    n = len(y)
    if n == 0:
        return {m: np.full(resamples, np.nan) for m in catalogue.names(spec.task)}
    # Metrics do not depend on row order; putting rows in descending score order once
    # spares the ranking metrics a column permutation of every weight matrix.
    order = np.argsort(-s, kind="stable")
    y, s = y[order], s[order]
    chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // n)
    parts = []
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        drawn = rng.integers(0, n, size=(b, n))
        offsets = (np.arange(b) * n)[:, None]
        drawn += offsets  # in place: the draws are not needed apart
        weights = np.bincount(drawn.ravel(), minlength=b * n).reshape(b, n).astype(float)
        parts.append(catalogue.weighted_metrics(spec, y, s, weights))
    return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}


def percentile_interval(values: np.ndarray, confidence: float) -> list[float]:
    defined = values[np.isfinite(values)]
    if len(defined) == 0:
        return [math.nan, math.nan]
    tail = (1 - confidence) / 2
    low, high = np.quantile(defined, [tail, 1 - tail])
    return [float(low), float(high)]
