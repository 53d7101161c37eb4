"""Quality gates: what a candidate must show on held-out rows before it may reach patients.

Every gate is a pure function of numbers (metrics, scores, labels, group membership) and
returns ``Verdict``s, so the semantics can be checked by hand and tested without Dagster
or MLflow. Evaluation computes the inputs, calls these functions and the governance
service records the verdicts; a failing verdict blocks promotion.

Gate families, each one blocking asset check:

- absolute (``quality_gates``): ``gates.min`` / ``gates.max`` bounds on test metrics (inclusive);
- champion (``champion_comparison``): the candidate may be worse than the current champion,
  scored on the same rows, by at most an absolute and/or relative margin (TFX Evaluator /
  MLflow ``validate_evaluation_results`` semantics);
- calibration (``calibration``): expected calibration error and calibration slope
  (``ml_platform.evaluation.calibration``);
- fairness (``fairness``): the largest between-group difference of a metric per sensitive
  attribute (``ml_platform.evaluation.fairness``).
"""

from __future__ import annotations

import math

from ml_platform import metrics as catalogue
from ml_platform.evaluation.verdicts import Verdict, at_most, fmt, fmt_pair, number
from ml_platform.spec import ModelSpec

# Each gate family is one blocking check, so the UI says which kind of gate stopped a model.
GATE_CHECKS = {
    "min": "quality_gates",
    "max": "quality_gates",
    "champion": "champion_comparison",
    "calibration": "calibration",
    "fairness": "fairness",
}
CHECK_DESCRIPTIONS = {
    "quality_gates": "The candidate meets the spec's absolute thresholds on the test split",
    "champion_comparison": "The candidate is not worse than the champion, on the same test rows, beyond the spec's "
    "margins",
    "calibration": "The candidate's predicted risks are calibrated within the spec's bounds",
    "fairness": "The candidate's performance differs between groups of each sensitive attribute by no more than "
    "the spec allows",
}


def gate_checks(spec: ModelSpec) -> list[str]:
    """The check names for the gate families the spec configures (absolute gates always)."""
    configured = {"quality_gates"}
    if spec.gates.champion:
        configured.add("champion_comparison")
    if spec.gates.calibration:
        configured.add("calibration")
    if spec.gates.fairness:
        configured.add("fairness")
    return [c for c in CHECK_DESCRIPTIONS if c in configured]


def check_of(verdict_gate: str) -> str:
    """The check a verdict belongs to, by its gate name (``min.roc_auc`` -> ``quality_gates``)."""
    return GATE_CHECKS[verdict_gate.split(".")[0]]


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
            value = number(metrics.get(metric))
            if math.isnan(value):
                passed = False
                reason = (
                    f"{metric} could not be computed on the test rows, so the {word} of {fmt(threshold)} is not met"
                )
            else:
                passed = at_most(threshold, value) if bound == "min" else at_most(value, threshold)
                shown, limit = fmt_pair(value, threshold)
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
        higher_is_better = catalogue.higher_is_better(metric, "champion")
        value = number(metrics.get(metric))
        gate = f"champion.{metric}"
        if champion_metrics is None:
            verdicts.append(Verdict(gate, True, value, None, None, "first model: no champion to compare against"))
            continue
        champion = number(champion_metrics.get(metric))
        who = f"the champion's (version {champion_version})" if champion_version else "the champion's"
        if math.isnan(value):
            reason = f"{metric} could not be computed for the candidate on the test rows, so it cannot be compared with {who} {fmt(champion)}"
            verdicts.append(Verdict(gate, False, value, None, champion, reason))
            continue
        if math.isnan(champion):
            reason = f"{metric} {fmt(value)}: {who} value could not be computed on the same rows, so there is nothing to compare against"
            verdicts.append(Verdict(gate, True, value, None, champion, reason))
            continue
        worse_by = champion - value if higher_is_better else value - champion
        margins = (margin.absolute, None if margin.relative is None else margin.relative * abs(champion))
        allowed_by = min(m for m in margins if m is not None)  # the spec guarantees at least one
        passed = at_most(worse_by, allowed_by)
        threshold = champion - allowed_by if higher_is_better else champion + allowed_by
        allowance = _allowance_text(margin.absolute, margin.relative, champion)
        shown, theirs = fmt_pair(value, champion)
        if worse_by <= 0:
            relation = "equal to" if worse_by == 0 else f"{fmt(-worse_by)} better than"
            reason = f"{metric} {shown} is {relation} {who} {theirs}"
        else:
            direction = "below" if higher_is_better else "above"
            verdict_text = "within" if passed else "outside"
            reason = f"{metric} {shown} is {fmt(worse_by)} {direction} {who} {theirs}, {verdict_text} the allowed margin ({allowance})"
        verdicts.append(Verdict(gate, passed, value, threshold, champion, reason))
    return verdicts


def _allowance_text(absolute: float | None, relative: float | None, champion: float) -> str:
    parts = []
    if absolute is not None:
        parts.append(f"{fmt(absolute)} absolute")
    if relative is not None:
        parts.append(f"{relative * 100:.1f}% relative = {fmt(relative * abs(champion))}")
    return "allowed: " + ", ".join(parts)
