"""Fairness: per-group metrics for each sensitive attribute, the largest between-group
differences with bootstrap intervals, and the fairness gates."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd

from ml_platform import metrics as catalogue
from ml_platform.evaluation.bootstrap import bootstrap_metrics, percentile_interval
from ml_platform.evaluation.verdicts import Verdict, at_most, fmt, fmt_pair, json_safe, number
from ml_platform.spec import ModelSpec

MISSING_GROUP = "(missing)"

# Defaults used when a spec has no fairness gate: every model still gets a per-group table
# (the model card needs one), but without bootstrap resampling.
DEFAULT_MIN_GROUP_SIZE = 30
DEFAULT_SMALL_GROUPS = "exclude"
DEFAULT_CONFIDENCE = 0.95


def fairness_report(spec: ModelSpec, groups: pd.DataFrame, y_true, scores, seed: int = 0) -> dict:
    """Per-group metrics for each sensitive attribute, the largest between-group differences,
    and bootstrap confidence intervals; JSON-safe.

    Per-group point estimates are ``compute_metrics`` on each group's rows, in their original
    order (what fairlearn's ``MetricFrame`` over ``compute_metrics`` gives, without its
    per-call overhead), plus the group size ``n``; groups in sorted label order. Missing attribute values form their own group, ``"(missing)"``: patients whose
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
    return json_safe(report)


def _group_labels(column: pd.Series) -> pd.Series:
    """Group labels as strings, with missing values as their own named group."""
    values = column.reset_index(drop=True).astype(object)
    return values.map(str).where(values.notna(), MISSING_GROUP).rename(column.name)


def group_rows(labels: pd.Series) -> dict[str, np.ndarray]:
    """Each group's row positions, ascending, with groups in sorted label order (as a groupby
    lists them): one sort of the labels instead of one comparison over all rows per group."""
    codes, uniques = pd.factorize(labels, sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    return {str(u): order[bounds[i] : bounds[i + 1]] for i, u in enumerate(uniques)}


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
    names = list(catalogue.names(spec.task))
    rows = group_rows(labels)
    table = []
    for group, index in rows.items():
        n = len(index)
        values = catalogue.compute_metrics(spec, y[index], s[index])
        table.append(
            {
                "group": group,
                "n": n,
                "small": n < min_group_size,
                "counted": rule == "include" or n >= min_group_size,
                "metrics": {m: number(values[m]) for m in names},
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
        draws = {}  # group -> {metric: (resamples,) array}
        for g in table:
            rng = np.random.default_rng([seed, zlib.crc32(f"{attribute}={g['group']}".encode())])
            index = rows[g["group"]]
            draws[g["group"]] = bootstrap_metrics(spec, y[index], s[index], resamples, rng)
            g["ci"] = {m: percentile_interval(draws[g["group"]][m], confidence) for m in names}
        if len(counted) >= 2:
            for m in names:
                stacked = np.vstack([draws[g["group"]][m] for g in counted])
                # A resample where any counted group's value is undefined has no difference.
                spread = np.max(stacked, axis=0) - np.min(stacked, axis=0)
                difference_ci[m] = percentile_interval(spread, confidence)
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
        catalogue.higher_is_better(metric, "fairness")
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
    value = number(entry["difference"].get(metric))
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
    passed = at_most(value, limit)
    metrics = {g["group"]: g["metrics"][metric] for g in entry["groups"]}
    ends = entry["difference_groups"][metric]
    shown, bound = fmt_pair(value, limit)
    reason = (
        f"{metric} differs by {shown} between {attribute} groups "
        f"(highest {ends['highest']} {fmt(metrics[ends['highest']])}, lowest {ends['lowest']} {fmt(metrics[ends['lowest']])}"
    )
    ci = entry["difference_ci"].get(metric)
    if ci and ci[0] is not None and ci[1] is not None:
        reason += f"; {entry['confidence'] * 100:.0f}% interval {fmt(ci[0])} to {fmt(ci[1])}"
    reason += f"), {'within' if passed else 'more than'} the allowed {bound}"
    return Verdict(gate, passed, value, limit, None, reason)
