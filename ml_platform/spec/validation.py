"""Cross-key checks of a model spec: what pydantic's per-field types cannot say.

Every column the spec names must exist in the contract, metrics must be known for the task,
crons must parse, derived expressions must be in the expression language and compute, and the
estimator must be an allowed one for the task.
Each check raises ``ValueError`` with a message that starts with the key, so the loader can
name the file, the key and the fix.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd
from croniter import croniter

from ml_platform import metrics
from ml_platform.spec.expressions import derive, parse
from ml_platform.spec.vocabulary import ColumnType, Task

if TYPE_CHECKING:
    from ml_platform.spec.model import ModelSpec


def is_valid_cron(expression: str) -> bool:
    """Five-field cron, as Dagster schedules accept it (no seconds field, no 30th of February)."""
    if not croniter.is_valid(expression):
        return False
    fields, *_ = croniter.expand(expression)
    if len(fields) != 5:
        return False
    return not (fields[3] == [2] and len(fields[2]) == 1 and fields[2][0] in (30, 31))


def check_references(spec: ModelSpec) -> None:
    """Every column the spec names must be in the contract, and be of a usable kind."""
    columns = spec.contract.columns
    named = {
        "target": [spec.target],
        "contract.id_column": [spec.contract.id_column],
        "contract.event_time_column": [spec.contract.event_time_column] if spec.contract.event_time_column else [],
        "features.numeric": spec.features.numeric,
        "features.categorical": spec.features.categorical,
        "sensitive_attributes": spec.sensitive_attributes,
        "deployment.route_by": [spec.deployment.route_by] if spec.deployment.route_by else [],
    }
    for key, names in named.items():
        for name in names:
            if name not in columns:
                raise ValueError(f"{key} names '{name}', which is not a column of contract.columns")
    for name in spec.features.numeric:
        if not columns[name].type.is_numeric and columns[name].type != ColumnType.boolean:
            raise ValueError(f"features.numeric lists '{name}', but its contract type is {columns[name].type.value}")
    inputs = spec.features.model_inputs
    if spec.target in inputs:
        raise ValueError(f"target '{spec.target}' is also listed as a feature: that leaks the label")
    if not inputs:
        raise ValueError("features lists no model inputs: add numeric, categorical or derived features")
    if spec.split.method == "time" and not spec.contract.event_time_column:
        raise ValueError("split.method 'time' needs contract.event_time_column")
    if spec.task == Task.binary_classification and set(columns[spec.target].allowed or []) != {0, 1}:
        raise ValueError(f"a binary_classification target needs 'allowed: [0, 1]' in contract.columns.{spec.target}")
    if spec.task == Task.regression and not columns[spec.target].type.is_numeric:
        raise ValueError(
            f"a regression target must be integer or float, '{spec.target}' is {columns[spec.target].type.value}"
        )
    _check_gates(spec)
    _check_monitoring(spec)
    _check_derived(spec)
    _check_estimator(spec)


def _check_gates(spec: ModelSpec) -> None:
    gates = spec.gates
    named = {"min": gates.min, "max": gates.max, "champion": gates.champion}
    if gates.fairness:
        named["fairness.max_difference"] = gates.fairness.max_difference
    for key, gated in named.items():
        for metric in gated:
            if metric not in metrics.names(spec.task):
                raise ValueError(
                    f"gates.{key} names unknown metric '{metric}'; for {spec.task.value} use one "
                    f"of {', '.join(metrics.names(spec.task))}"
                )
    if gates.calibration and spec.task != Task.binary_classification:
        raise ValueError("gates.calibration applies to binary_classification only")
    if gates.fairness and not spec.sensitive_attributes:
        raise ValueError("gates.fairness needs sensitive_attributes to compare groups of")


def _check_monitoring(spec: ModelSpec) -> None:
    monitoring = spec.monitoring
    for key, cron in {
        "monitoring.window": monitoring.window,
        "monitoring.retrain.cron": monitoring.retrain.cron,
    }.items():
        if cron is not None and not is_valid_cron(cron):
            raise ValueError(f"{key} '{cron}' is not a cron expression; e.g. '0 * * * *' is hourly")
    try:
        datetime.fromisoformat(monitoring.start)
    except ValueError:
        raise ValueError(f"monitoring.start '{monitoring.start}' is not an ISO date such as 2026-01-01") from None
    metric = monitoring.performance.metric
    if metric is not None and metric not in metrics.monitored(spec.task):
        raise ValueError(
            f"monitoring.performance.metric '{metric}' cannot be monitored against a floor; for "
            f"{spec.task.value} use one where higher is better: {', '.join(metrics.monitored(spec.task))}"
        )


def _check_derived(spec: ModelSpec) -> None:
    """Parse each derived expression against the language's allow-list and the contract's
    columns, then evaluate them on one typical row, so a typo fails at load time."""
    known = set(spec.contract.columns)
    for name, expression in spec.features.derived.items():
        key = f"features.derived.{name}"
        try:
            parsed = parse(expression)
        except ValueError as exc:
            raise ValueError(f"{key} = {expression!r}: {exc}") from None
        if spec.target in parsed.columns:
            raise ValueError(f"{key} uses the target '{spec.target}': that leaks the label")
        unknown = sorted(parsed.columns - known)
        if unknown:
            raise ValueError(
                f"{key} = {expression!r}: name '{unknown[0]}' is not defined: use a column of "
                "contract.columns or an earlier derived feature"
            )
        known.add(name)
    typical = {
        ColumnType.date: pd.Timestamp("2026-01-01"),
        ColumnType.datetime: pd.Timestamp("2026-01-01"),
        ColumnType.boolean: True,
        ColumnType.integer: 1,
        ColumnType.float: 1.0,
    }
    example = {
        name: [typical.get(col.type, str((col.allowed or ["x"])[0]))] for name, col in spec.contract.columns.items()
    }
    try:
        derive(pd.DataFrame(example), spec.features.derived)
    except Exception as exc:  # noqa: BLE001 - any failure here is a spec error to report
        raise ValueError(f"features.derived: {exc}") from None


def _check_estimator(spec: ModelSpec) -> None:
    """The estimator class must be an allowed one of the task's kind, its parameters plain data
    of that class; each is checked before anything is imported or instantiated."""
    spec.estimator.build(spec.task)
