"""Calibration: how well predicted risks match observed rates, and its gates."""

from __future__ import annotations

import math

import numpy as np

from ml_platform.evaluation.verdicts import Verdict, at_most, fmt, fmt_pair, json_safe, number
from ml_platform.spec import ModelSpec


def calibration_summary(y_true, scores, bins: int = 10) -> dict:
    """How well predicted risks match observed rates, for a binary classifier.

    - ``ece``: expected calibration error over ``bins`` equal-width bins of [0, 1]
      (bin k holds k/bins <= p < (k+1)/bins; p = 1 falls in the last bin):
      sum over bins of n_bin / n * |observed rate - mean predicted risk|.
    - ``slope``, ``intercept``: logistic recalibration, y ~ a + b * logit(p), fitted by
      unpenalised maximum likelihood with p clipped to [1e-6, 1 - 1e-6]. A slope below 1
      means predictions are too extreme (overconfident), above 1 too moderate. NaN when
      the fit is undefined (one outcome class, or perfect separation).
    - ``bins``: the non-empty bins with their range, size, mean prediction and observed rate.
    """
    y, p = _binary_inputs(y_true, scores)
    n = len(y)
    if n == 0:
        return {"n": 0, "ece": None, "slope": None, "intercept": None, "bins": []}
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    predicted_sum = np.bincount(index, weights=p, minlength=bins)
    observed_sum = np.bincount(index, weights=y, minlength=bins)
    table, ece = [], 0.0
    for k in np.flatnonzero(counts):
        mean_predicted, observed_rate = predicted_sum[k] / counts[k], observed_sum[k] / counts[k]
        ece += counts[k] / n * abs(observed_rate - mean_predicted)
        table.append(
            {
                "low": k / bins,
                "high": (k + 1) / bins,
                "n": int(counts[k]),
                "mean_predicted": float(mean_predicted),
                "observed_rate": float(observed_rate),
            }
        )
    intercept, slope = _logistic_recalibration(y, p)
    return json_safe({"n": n, "ece": float(ece), "slope": slope, "intercept": intercept, "bins": table})


def _logistic_recalibration(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of y ~ a + b * logit(p) by Newton-Raphson (IRLS) with step halving.

    Written out rather than borrowed from scikit-learn, whose LogisticRegression is
    penalised by default and whose "no penalty" spelling changes between versions: the
    calibration slope must be the plain maximum-likelihood estimate.
    """
    if y.min() == y.max():
        return math.nan, math.nan
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    x = np.column_stack([np.ones_like(clipped), np.log(clipped / (1 - clipped))])
    beta = np.array([0.0, 1.0])  # the perfectly calibrated answer: a good start

    def log_likelihood(b: np.ndarray) -> float:
        eta = x @ b
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    current = log_likelihood(beta)
    for _ in range(100):
        mu = 1.0 / (1.0 + np.exp(-(x @ beta)))
        weight = mu * (1.0 - mu)
        hessian = x.T @ (x * weight[:, None])
        try:
            step = np.linalg.solve(hessian, x.T @ (y - mu))
        except np.linalg.LinAlgError:
            return math.nan, math.nan
        # The log-likelihood is concave, so halving the step always finds an ascent.
        for _ in range(30):
            candidate = beta + step
            value = log_likelihood(candidate)
            if value >= current - 1e-12:
                break
            step = step / 2
        beta, current = candidate, value
        if np.max(np.abs(step)) < 1e-10:
            break
    else:
        # No convergence in 100 Newton steps: the data are (quasi-)separated and the
        # maximum-likelihood slope does not exist.
        return math.nan, math.nan
    if not np.all(np.isfinite(beta)) or np.max(np.abs(beta)) > 1e6:
        return math.nan, math.nan
    return float(beta[0]), float(beta[1])


def calibration_gates(spec: ModelSpec, summary: dict) -> list[Verdict]:
    """``calibration.ece`` (ece <= max_ece) and ``calibration.slope`` (low <= slope <= high).

    Only the bounds the spec configures produce a verdict; a value that could not be
    computed fails.
    """
    calibration = spec.gates.calibration
    if calibration is None:
        return []
    verdicts = []
    if calibration.max_ece is not None:
        ece, limit = number(summary.get("ece")), calibration.max_ece
        if math.isnan(ece):
            passed, reason = False, "the expected calibration error could not be computed (no test rows)"
        else:
            passed = at_most(ece, limit)
            shown, bound = fmt_pair(ece, limit)
            reason = (
                f"expected calibration error {shown} {'is within' if passed else 'exceeds'} the maximum of {bound}: "
                f"predicted risks differ from observed rates by {ece * 100:.1f} percentage points on average"
            )
        verdicts.append(Verdict("calibration.ece", passed, ece, float(limit), None, reason))
    if calibration.slope is not None:
        slope = number(summary.get("slope"))
        low, high = (float(b) for b in calibration.slope)
        band = f"[{fmt(low)}, {fmt(high)}]"
        if math.isnan(slope):
            passed = False
            reason = f"the calibration slope could not be computed (one outcome class only, or perfectly separated scores), so it cannot be confirmed within {band}"
        else:
            passed = at_most(low, slope) and at_most(slope, high)
            if passed:
                reason = f"calibration slope {fmt(slope)} is within {band}"
            elif slope < low:
                reason = f"calibration slope {fmt(slope)} is below {band}: predicted risks are too extreme (overconfident), high risks overstated and low risks understated"
            else:
                reason = f"calibration slope {fmt(slope)} is above {band}: predicted risks are too moderate (underconfident), squeezed toward the average"
        verdicts.append(Verdict("calibration.slope", passed, slope, [low, high], None, reason))
    return verdicts


def _binary_inputs(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y_true, dtype=float), np.asarray(scores, dtype=float)
    if len(y) != len(p):
        raise ValueError(f"y_true ({len(y)}) and scores ({len(p)}) must have the same length")
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError("calibration needs outcomes coded 0/1")
    if len(p) and not (np.all(np.isfinite(p)) and p.min() >= 0 and p.max() <= 1):
        raise ValueError("calibration needs predicted probabilities within [0, 1]")
    return y, p
