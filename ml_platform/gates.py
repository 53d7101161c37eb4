"""Quality gates: what a candidate must show on held-out rows before it may reach patients.

Every gate is a pure function of numbers (metrics, scores, labels, group membership) and
returns ``Verdict``s, so the semantics can be checked by hand and tested without Dagster
or MLflow. The evaluation asset computes the inputs, calls these functions and records
the verdicts; a failing verdict blocks promotion.

Gates:

- absolute: ``gates.min`` / ``gates.max`` bounds on test-set metrics (inclusive);
- champion: the candidate may be worse than the current champion, scored on the same
  rows, by at most an absolute and/or relative margin (TFX Evaluator / MLflow
  ``validate_evaluation_results`` semantics);
- calibration: expected calibration error and the logistic calibration slope;
- fairness: the largest difference of a metric between groups of each sensitive
  attribute, computed per group with fairlearn's ``MetricFrame``, with bootstrap
  confidence intervals and explicit handling of groups too small to judge.

Reasons are written for a clinician-facing reviewer: one sentence, with the numbers.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.specs import METRICS, ModelSpec, Task

# Direction of each metric, for comparisons that need "better" and "worse". prevalence and
# positive_rate describe the data and the threshold rather than the model's quality, so
# they have no direction and cannot be used where one is needed.
HIGHER_IS_BETTER: dict[str, bool] = {
    "roc_auc": True,
    "average_precision": True,
    "sensitivity": True,
    "specificity": True,
    "ppv": True,
    "npv": True,
    "accuracy": True,
    "r2": True,
    "brier": False,
    "mae": False,
    "rmse": False,
}
UNRANKED_METRICS = ("prevalence", "positive_rate")

MISSING_GROUP = "(missing)"

# Defaults used when a spec has no fairness gate: every model still gets a per-group table
# (the model card needs one), but without bootstrap resampling.
DEFAULT_MIN_GROUP_SIZE = 30
DEFAULT_SMALL_GROUPS = "exclude"
DEFAULT_CONFIDENCE = 0.95

# Bounds are inclusive, and many compared numbers are differences of floats (0.80 - 0.76
# is 0.04000000000000004), so a boundary value must not fail on rounding noise.
_REL_TOL, _ABS_TOL = 1e-9, 1e-12

# Bootstrap matrices are processed in chunks of at most this many cells (resamples x rows),
# bounding memory at ~32 MB per float matrix whatever the test-set size.
_BOOTSTRAP_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class Verdict:
    """The outcome of one gate, with the numbers behind it and a reason a reviewer can read."""

    gate: str
    passed: bool
    value: float | None
    threshold: float | list[float] | None
    champion: float | None
    reason: str

    def as_metadata(self) -> dict:
        """A JSON-safe dict (NaN and infinities become None), for Dagster metadata and MLflow."""
        return _json_safe(asdict(self))


# --------------------------------------------------------------------------- #
# Absolute gates
# --------------------------------------------------------------------------- #
def absolute_gates(spec: ModelSpec, metrics: dict[str, float]) -> list[Verdict]:
    """``min.<metric>`` (value >= bound) and ``max.<metric>`` (value <= bound), both inclusive.

    A metric that could not be computed (NaN, or absent) fails: an unmeasured model must
    not pass by default.
    """
    verdicts = []
    for bound, gates in (("min", spec.gates.min), ("max", spec.gates.max)):
        word = "minimum" if bound == "min" else "maximum"
        for metric, threshold in gates.items():
            value = _number(metrics.get(metric))
            if math.isnan(value):
                passed = False
                reason = (
                    f"{metric} could not be computed on the test rows, so the {word} of {_fmt(threshold)} is not met"
                )
            else:
                passed = _at_most(threshold, value) if bound == "min" else _at_most(value, threshold)
                shown, limit = _fmt_pair(value, threshold)
                if passed:
                    reason = f"{metric} {shown} meets the {word} of {limit}"
                else:
                    reason = f"{metric} {shown} is {'below the minimum' if bound == 'min' else 'above the maximum'} of {limit}"
            verdicts.append(Verdict(f"{bound}.{metric}", passed, value, float(threshold), None, reason))
    return verdicts


# --------------------------------------------------------------------------- #
# Champion gates
# --------------------------------------------------------------------------- #
def champion_gates(
    spec: ModelSpec,
    metrics: dict[str, float],
    champion_metrics: dict[str, float] | None,
    champion_version: str | None = None,
) -> list[Verdict]:
    """Compare the candidate with the champion, both scored on the same test rows.

    "Worse by" is champion - candidate for higher-is-better metrics and candidate -
    champion for lower-is-better ones. The candidate fails if it is worse by more than
    ``absolute`` or by more than ``relative * |champion|`` (whichever margins are set), so
    with both set the tighter one decides. Better or equal always passes.

    Without a champion (the first model) every champion gate passes. A candidate value
    that cannot be computed fails. A champion value that cannot be computed leaves
    nothing to compare against, so the gate passes and says so.

    ``Verdict.threshold`` is the worst candidate value that would still pass.
    """
    verdicts = []
    for metric, margin in spec.gates.champion.items():
        higher_is_better = _direction(metric, "champion")
        value = _number(metrics.get(metric))
        gate = f"champion.{metric}"
        if champion_metrics is None:
            verdicts.append(Verdict(gate, True, value, None, None, "first model: no champion to compare against"))
            continue
        champion = _number(champion_metrics.get(metric))
        who = f"the champion's (version {champion_version})" if champion_version else "the champion's"
        if math.isnan(value):
            reason = f"{metric} could not be computed for the candidate on the test rows, so it cannot be compared with {who} {_fmt(champion)}"
            verdicts.append(Verdict(gate, False, value, None, champion, reason))
            continue
        if math.isnan(champion):
            reason = f"{metric} {_fmt(value)}: {who} value could not be computed on the same rows, so there is nothing to compare against"
            verdicts.append(Verdict(gate, True, value, None, champion, reason))
            continue
        worse_by = champion - value if higher_is_better else value - champion
        margins = (margin.absolute, None if margin.relative is None else margin.relative * abs(champion))
        allowed_by = min(m for m in margins if m is not None)  # the spec guarantees at least one
        passed = _at_most(worse_by, allowed_by)
        threshold = champion - allowed_by if higher_is_better else champion + allowed_by
        allowance = _allowance_text(margin.absolute, margin.relative, champion)
        shown, theirs = _fmt_pair(value, champion)
        if worse_by <= 0:
            relation = "equal to" if worse_by == 0 else f"{_fmt(-worse_by)} better than"
            reason = f"{metric} {shown} is {relation} {who} {theirs}"
        else:
            direction = "below" if higher_is_better else "above"
            verdict_text = "within" if passed else "outside"
            reason = f"{metric} {shown} is {_fmt(worse_by)} {direction} {who} {theirs}, {verdict_text} the allowed margin ({allowance})"
        verdicts.append(Verdict(gate, passed, value, threshold, champion, reason))
    return verdicts


def _allowance_text(absolute: float | None, relative: float | None, champion: float) -> str:
    parts = []
    if absolute is not None:
        parts.append(f"{_fmt(absolute)} absolute")
    if relative is not None:
        parts.append(f"{relative * 100:.1f}% relative = {_fmt(relative * abs(champion))}")
    return "allowed: " + ", ".join(parts)


# --------------------------------------------------------------------------- #
# Calibration
# --------------------------------------------------------------------------- #
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
    return _json_safe({"n": n, "ece": float(ece), "slope": slope, "intercept": intercept, "bins": table})


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
        ece, limit = _number(summary.get("ece")), calibration.max_ece
        if math.isnan(ece):
            passed, reason = False, "the expected calibration error could not be computed (no test rows)"
        else:
            passed = _at_most(ece, limit)
            shown, bound = _fmt_pair(ece, limit)
            reason = (
                f"expected calibration error {shown} {'is within' if passed else 'exceeds'} the maximum of {bound}: "
                f"predicted risks differ from observed rates by {ece * 100:.1f} percentage points on average"
            )
        verdicts.append(Verdict("calibration.ece", passed, ece, float(limit), None, reason))
    if calibration.slope is not None:
        slope = _number(summary.get("slope"))
        low, high = (float(b) for b in calibration.slope)
        band = f"[{_fmt(low)}, {_fmt(high)}]"
        if math.isnan(slope):
            passed = False
            reason = f"the calibration slope could not be computed (one outcome class only, or perfectly separated scores), so it cannot be confirmed within {band}"
        else:
            passed = _at_most(low, slope) and _at_most(slope, high)
            if passed:
                reason = f"calibration slope {_fmt(slope)} is within {band}"
            elif slope < low:
                reason = f"calibration slope {_fmt(slope)} is below {band}: predicted risks are too extreme (overconfident), high risks overstated and low risks understated"
            else:
                reason = f"calibration slope {_fmt(slope)} is above {band}: predicted risks are too moderate (underconfident), squeezed toward the average"
        verdicts.append(Verdict("calibration.slope", passed, slope, [low, high], None, reason))
    return verdicts


# --------------------------------------------------------------------------- #
# Fairness
# --------------------------------------------------------------------------- #
def fairness_report(spec: ModelSpec, groups: pd.DataFrame, y_true, scores, seed: int = 0) -> dict:
    """Per-group metrics for each sensitive attribute, the largest between-group differences,
    and bootstrap confidence intervals; JSON-safe.

    Per-group point estimates come from fairlearn's ``MetricFrame`` over ``compute_metrics``
    (one call per group, returning every metric of the task at once), plus the group size
    ``n``. Missing attribute values form their own group, ``"(missing)"``: patients whose
    attribute is unrecorded are a group the model can fail, not rows to drop.

    Groups with fewer than ``min_group_size`` rows are marked ``small``. Which groups count
    toward the difference follows ``small_groups``: "exclude" and "fail" leave small groups
    out (``fairness_gates`` fails on "fail"), "include" keeps them. ``difference[metric]`` is
    the highest minus the lowest value over counted groups (fairlearn's "between_groups"
    difference); it is NaN when fewer than two groups count or the metric is undefined in a
    counted group (e.g. sensitivity in a group without positives), which
    ``undefined[metric]`` names.

    Bootstrap: resampling is stratified within group, i.e. each group's rows are resampled
    with replacement to the group's own size, ``bootstrap`` times. Group sizes are a fixed
    property of the test set, and stratifying keeps every group (small ones too) in every
    resample. Each group's metric interval and each difference interval (the difference
    recomputed in every resample over the same counted groups) is the percentile interval
    at ``confidence``, over the resamples where the value is defined. Each group's
    resamples are seeded by ``seed``, the attribute and the group label, so results are
    reproducible and do not change when other groups change. A difference's interval is
    that of the resampled highest-minus-lowest, which runs high when the true differences
    are small (the spread of noisy values exceeds the spread of the true ones): read it as
    the plausible size of the gap, not as a significance test.

    Returns ``{attribute: {"groups": [{"group", "n", "small", "counted", "metrics", "ci"}],
    "difference", "difference_groups" ({metric: {"highest", "lowest"}}), "difference_ci",
    "undefined", "small_groups", "excluded_small_groups" ([{"group", "n"}]),
    "min_group_size", "small_groups_rule", "bootstrap", "bootstrap_method", "confidence"}}``.

    Without a fairness gate in the spec the defaults are min_group_size 30, "exclude" and
    no bootstrap, so every model still gets its per-group table.
    """
    fairness = spec.gates.fairness
    min_group_size = fairness.min_group_size if fairness else DEFAULT_MIN_GROUP_SIZE
    rule = fairness.small_groups if fairness else DEFAULT_SMALL_GROUPS
    resamples = fairness.bootstrap if fairness else 0
    confidence = fairness.confidence if fairness else DEFAULT_CONFIDENCE

    y = np.asarray(y_true, dtype=float)
    s = np.asarray(scores, dtype=float)
    if len(y) != len(s) or len(groups) != len(y):
        raise ValueError(f"y_true ({len(y)}), scores ({len(s)}) and groups ({len(groups)}) must have the same length")
    report = {}
    for attribute in spec.sensitive_attributes:
        if attribute not in groups.columns:
            raise ValueError(
                f"sensitive attribute '{attribute}' is not a column of the group table "
                f"(columns: {', '.join(map(str, groups.columns))})"
            )
        labels = _group_labels(groups[attribute])
        report[attribute] = _attribute_report(
            spec, attribute, labels, y, s, min_group_size, rule, resamples, confidence, seed
        )
    return _json_safe(report)


def _group_labels(column: pd.Series) -> pd.Series:
    """Group labels as strings, with missing values as their own named group."""
    values = column.reset_index(drop=True).astype(object)
    return values.map(str).where(values.notna(), MISSING_GROUP).rename(column.name)


def _attribute_report(
    spec: ModelSpec,
    attribute: str,
    labels: pd.Series,
    y: np.ndarray,
    s: np.ndarray,
    min_group_size: int,
    rule: str,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict:
    from fairlearn.metrics import MetricFrame, count

    # Imported here: the evaluation module imports this one at load time.
    from ml_platform.assets.evaluation import compute_metrics

    names = list(METRICS[spec.task])
    # One metric returning every task metric at once: MetricFrame would otherwise call
    # compute_metrics once per metric per group (~1.5 s per attribute at 20k rows).
    frame = MetricFrame(
        metrics={"task": lambda yt, yp: compute_metrics(spec, yt, yp), "n": count},
        y_true=y,
        y_pred=s,
        sensitive_features=labels,
    )
    by_group = frame.by_group
    table = []
    for group, row in by_group.iterrows():
        n = int(row["n"])
        table.append(
            {
                "group": str(group),
                "n": n,
                "small": n < min_group_size,
                "counted": rule == "include" or n >= min_group_size,
                "metrics": {m: _number(row["task"][m]) for m in names},
                "ci": {},
            }
        )
    table.sort(key=lambda g: g["group"] == MISSING_GROUP)  # named groups first, in MetricFrame's order
    small = [{"group": g["group"], "n": g["n"]} for g in table if g["small"]]
    excluded = [] if rule == "include" else small
    counted = [g for g in table if g["counted"]]

    difference, difference_groups, undefined = {}, {}, {}
    for m in names:
        values = {g["group"]: g["metrics"][m] for g in counted}
        missing_values = [group for group, v in values.items() if math.isnan(v)]
        if missing_values:
            undefined[m] = missing_values
        if len(values) < 2 or missing_values:
            difference[m] = math.nan
            continue
        highest, lowest = max(values, key=values.get), min(values, key=values.get)
        difference[m] = values[highest] - values[lowest]
        difference_groups[m] = {"highest": highest, "lowest": lowest}

    difference_ci = {}
    if resamples > 0:
        label_array = labels.to_numpy()
        draws = {}  # group -> {metric: (resamples,) array}
        for g in table:
            rng = np.random.default_rng([seed, zlib.crc32(f"{attribute}={g['group']}".encode())])
            index = np.flatnonzero(label_array == g["group"])
            draws[g["group"]] = _bootstrap_metrics(spec, y[index], s[index], resamples, rng)
            g["ci"] = {m: _percentile_interval(draws[g["group"]][m], confidence) for m in names}
        if len(counted) >= 2:
            for m in names:
                stacked = np.vstack([draws[g["group"]][m] for g in counted])
                # A resample where any counted group's value is undefined has no difference.
                spread = np.max(stacked, axis=0) - np.min(stacked, axis=0)
                difference_ci[m] = _percentile_interval(spread, confidence)
        else:
            difference_ci = {m: [math.nan, math.nan] for m in names}

    return {
        "groups": table,
        "difference": difference,
        "difference_groups": difference_groups,
        "difference_ci": difference_ci,
        "undefined": undefined,
        "small_groups": small,
        "excluded_small_groups": excluded,
        "min_group_size": min_group_size,
        "small_groups_rule": rule,
        "bootstrap": resamples,
        "bootstrap_method": "stratified within group" if resamples else "none",
        "confidence": confidence,
    }


def fairness_gates(spec: ModelSpec, report: dict) -> list[Verdict]:
    """One verdict per sensitive attribute and metric of ``max_difference``: difference <= max.

    Small groups: with "fail" an extra failing verdict ``fairness.<attr>.small_groups``
    names them; with "exclude" an extra passing verdict names the excluded groups and
    their sizes, so leaving them out is visible in the record; "include" adds nothing.
    A difference that could not be computed (fewer than two groups large enough, or a
    metric undefined in a group) fails, with the reason. Without a fairness gate, no
    verdicts.
    """
    fairness = spec.gates.fairness
    if fairness is None:
        return []
    for metric in fairness.max_difference:
        _direction(metric, "fairness")
    verdicts = []
    for attribute in spec.sensitive_attributes:
        if attribute not in report:
            raise ValueError(f"the fairness report has no entry for sensitive attribute '{attribute}'")
        entry = report[attribute]
        min_size = entry["min_group_size"]
        for metric, limit in fairness.max_difference.items():
            verdicts.append(_difference_verdict(attribute, metric, float(limit), entry, min_size))
        small = entry["small_groups"]
        named = ", ".join(f"{g['group']} (n={g['n']})" for g in small)
        if small and fairness.small_groups == "fail":
            reason = (
                f"{attribute} groups {named} have fewer than {min_size} test rows, too few to judge the model's "
                "fairness for them; the spec requires every group to be large enough"
            )
            verdicts.append(Verdict(f"fairness.{attribute}.small_groups", False, None, float(min_size), None, reason))
        elif small and fairness.small_groups == "exclude":
            reason = (
                f"{attribute} groups {named} have fewer than {min_size} test rows and are left out of the "
                "between-group differences (their metrics are reported per group)"
            )
            verdicts.append(Verdict(f"fairness.{attribute}.small_groups", True, None, float(min_size), None, reason))
    return verdicts


def _difference_verdict(attribute: str, metric: str, limit: float, entry: dict, min_size: int) -> Verdict:
    gate = f"fairness.{attribute}.{metric}"
    value = _number(entry["difference"].get(metric))
    if math.isnan(value):
        counted = [g["group"] for g in entry["groups"] if g["counted"]]
        if len(counted) < 2:
            why = (
                f"fewer than two {attribute} groups have at least {min_size} test rows "
                f"({', '.join(counted) or 'none'}), so there is no difference to assess"
            )
        else:
            why = (
                f"{metric} could not be computed for {attribute} group(s) "
                f"{', '.join(entry['undefined'].get(metric, []))} (e.g. no patients with the outcome)"
            )
        return Verdict(
            gate, False, value, limit, None, f"the {metric} difference between {attribute} groups is unknown: {why}"
        )
    passed = _at_most(value, limit)
    metrics = {g["group"]: g["metrics"][metric] for g in entry["groups"]}
    ends = entry["difference_groups"][metric]
    shown, bound = _fmt_pair(value, limit)
    reason = (
        f"{metric} differs by {shown} between {attribute} groups "
        f"(highest {ends['highest']} {_fmt(metrics[ends['highest']])}, lowest {ends['lowest']} {_fmt(metrics[ends['lowest']])}"
    )
    ci = entry["difference_ci"].get(metric)
    if ci and ci[0] is not None and ci[1] is not None:
        reason += f"; {entry['confidence'] * 100:.0f}% interval {_fmt(ci[0])} to {_fmt(ci[1])}"
    reason += f"), {'within' if passed else 'more than'} the allowed {bound}"
    return Verdict(gate, passed, value, limit, None, reason)


# --------------------------------------------------------------------------- #
# Bootstrap
# --------------------------------------------------------------------------- #
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
    draws = _bootstrap_metrics(spec, y, s, n, np.random.default_rng(seed))
    return _json_safe({m: _percentile_interval(v, confidence) for m, v in draws.items()})


def _bootstrap_metrics(
    spec: ModelSpec, y: np.ndarray, s: np.ndarray, resamples: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Every metric of the task on ``resamples`` bootstrap resamples: {metric: (resamples,)}.

    A resample is represented by how often it draws each row (a weight matrix), so all
    resamples are scored with a few matrix products instead of one compute_metrics call
    each; ``weighted_metrics`` reproduces compute_metrics exactly for integer weights.
    """
    n = len(y)
    if n == 0:
        return {m: np.full(resamples, np.nan) for m in METRICS[spec.task]}
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
        weights = np.bincount((drawn + offsets).ravel(), minlength=b * n).reshape(b, n).astype(float)
        parts.append(weighted_metrics(spec, y, s, weights))
    return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}


def weighted_metrics(spec: ModelSpec, y_true, scores, weights: np.ndarray) -> dict[str, np.ndarray]:
    """compute_metrics for many row weightings at once: ``weights`` is (k, n), one row per weighting.

    With integer weights (how often a bootstrap resample draws each row) the result equals
    compute_metrics on the resampled rows, including NaN where a metric is undefined.
    ROC AUC is the Mann-Whitney statistic with ties counted half (what scikit-learn's
    trapezoidal ROC area equals); average precision is scikit-learn's step-wise sum of
    precision times recall increments over distinct score thresholds.
    """
    y, s = np.asarray(y_true, dtype=float), np.asarray(scores, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    total = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if spec.task == Task.regression:
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
        tp = w @ (predicted & positive)
        fp = w @ (predicted & ~positive)
        fn = w @ (~predicted & positive)
        tn = w @ (~predicted & ~positive)
        pos, neg = tp + fn, fp + tn
        auc, ap = _ranking_metrics(y, s, w, pos, neg)

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
    """Weighted ROC AUC and average precision from one pass over the scores in descending order."""
    if len(s) > 1 and np.any(s[1:] > s[:-1]):
        order = np.argsort(-s, kind="stable")
        y, s, w = y[order], s[order], w[:, order]
    # Rows with equal scores share a threshold; aggregate their weights per distinct score.
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos_at = np.add.reduceat(w * (y == 1), starts, axis=1)
    neg_at = np.add.reduceat(w, starts, axis=1) - pos_at
    tp_cum, fp_cum = np.cumsum(pos_at, axis=1), np.cumsum(neg_at, axis=1)
    # Negatives scored strictly lower than each distinct score, plus half the tied ones.
    below = neg[:, None] - fp_cum + 0.5 * neg_at
    auc = np.where((pos > 0) & (neg > 0), np.sum(pos_at * below, axis=1) / (pos * neg), np.nan)
    flagged = tp_cum + fp_cum
    precision = np.divide(tp_cum, flagged, out=np.zeros_like(tp_cum), where=flagged > 0)
    ap = np.where(pos > 0, np.sum(pos_at * precision, axis=1) / pos, np.nan)
    return auc, ap


def _percentile_interval(values: np.ndarray, confidence: float) -> list[float]:
    defined = values[np.isfinite(values)]
    if len(defined) == 0:
        return [math.nan, math.nan]
    tail = (1 - confidence) / 2
    low, high = np.quantile(defined, [tail, 1 - tail])
    return [float(low), float(high)]


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def _direction(metric: str, gate: str) -> bool:
    if metric in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[metric]
    if metric in UNRANKED_METRICS:
        raise ValueError(
            f"{gate} gate on '{metric}': {metric} has no better or worse direction "
            f"(it describes the patients and the threshold, not model quality); use a ranked metric"
        )
    raise ValueError(f"{gate} gate on '{metric}': unknown metric; known: {', '.join(HIGHER_IS_BETTER)}")


def _binary_inputs(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y_true, dtype=float), np.asarray(scores, dtype=float)
    if len(y) != len(p):
        raise ValueError(f"y_true ({len(y)}) and scores ({len(p)}) must have the same length")
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError("calibration needs outcomes coded 0/1")
    if len(p) and not (np.all(np.isfinite(p)) and p.min() >= 0 and p.max() <= 1):
        raise ValueError("calibration needs predicted probabilities within [0, 1]")
    return y, p


def _at_most(value: float, bound: float) -> bool:
    """value <= bound, forgiving float rounding noise at the boundary."""
    return value <= bound or math.isclose(value, bound, rel_tol=_REL_TOL, abs_tol=_ABS_TOL)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _fmt_pair(value: float, bound: float) -> tuple[str, str]:
    """Format two numbers with enough digits that different numbers never look equal."""
    for digits in range(3, 10):
        a, b = _fmt(value, digits), _fmt(bound, digits)
        if a != b or value == bound:
            return a, b
    return repr(value), repr(bound)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
