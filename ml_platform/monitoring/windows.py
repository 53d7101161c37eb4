"""Monitoring windows: how one window of production answers drifted from training, and how well the
model did in it, with the verdicts the retrain triggers read.

* drift: per model input, the platform's Evidently-compatible drift test of the window against
  the serving version's training reference, the share of drifted inputs, and prediction drift;
* performance: metrics from the outcomes reported so far, overall and per sensitive group, and,
  until enough outcomes arrive (a readmission label takes a month), the performance *estimated*
  from the model's calibrated probabilities.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import pandas as pd

from ml_platform import metrics as catalogue
from ml_platform.evaluation.plots import drift_plot
from ml_platform.evaluation.report import REPORT_SAMPLE_ROWS, evidently_report
from ml_platform.monitoring.drift import detect_drift, summarise
from ml_platform.monitoring.estimation import estimate_performance
from ml_platform.spec import ModelSpec, Task
from ml_platform.store.lake import Lake
from ml_platform.store.objects import atomic_write, write_bytes
from ml_platform.store.registry import MLflowTracking
from ml_platform.training.pipeline import derived_features, model_inputs, score

# Metrics need enough members in a group to mean anything; smaller groups are counted only.
MIN_GROUP_ROWS = 30


def prediction_column(spec: ModelSpec) -> str:
    return "probability" if spec.task == Task.binary_classification else "value"


def drift_columns(spec: ModelSpec) -> tuple[list[str], list[str]]:
    """Numeric and categorical model inputs, as the drift tests treat them."""
    return [*spec.features.numeric, *spec.features.derived], list(spec.features.categorical)


def reference_sample(spec: ModelSpec, train: pd.DataFrame, model) -> pd.DataFrame:
    """The training reference kept with each version: model inputs and the model's predictions.

    Sampled to ``monitoring.drift.sample_rows``, the most rows a drift test uses per side.
    """
    rows = train.sample(min(len(train), spec.monitoring.drift.sample_rows), random_state=0)
    return (
        rows[spec.features.model_inputs]
        .assign(prediction=score(model, model_inputs(rows, spec)))
        .reset_index(drop=True)
    )


def derived_inputs(window: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """The model inputs (derived features included) of logged answers, as the training reference holds them."""
    return derived_features(spec).transform(window)


def window_drift(spec: ModelSpec, lake: Lake, window: pd.DataFrame, partition: str) -> dict:
    """The drift report of one window: per input and for the prediction, plus the window's verdict."""
    policy = spec.monitoring.drift
    if window.empty:
        return {"rows": 0, "drifted": False, "reason": "no traffic in the window: nothing to compare"}
    version = window["version"].mode().iloc[0]  # the version that answered most of the window
    reference_name = f"v{version}"
    if not lake.has_table(spec.name, "reference", reference_name):
        raise ValueError(f"no training reference for {spec.name} version {version}; retrain it to create one")
    reference = lake.read_table(spec.name, "reference", reference_name)
    current = derived_inputs(window, spec).assign(prediction=window[prediction_column(spec)].to_numpy())
    numeric, categorical = drift_columns(spec)
    result = detect_drift(reference, current, [*numeric, "prediction"], categorical, sample_rows=policy.sample_rows)
    by_column = {c.column: c for c in result.columns}
    inputs = summarise([c for c in result.columns if c.column != "prediction"], policy.share, policy.sample_rows)
    html = lake.reports_dir(spec.name) / f"drift_{partition}.html"
    # Evidently writes a local file; atomic_write publishes it in one piece (rename or single PUT).
    atomic_write(html, lambda local: evidently_report(spec, reference, current, local, with_outcomes=False))
    drifted = inputs.dataset_drift
    report = {
        "rows": len(window),
        "reference_version": version,
        "reference_rows": len(reference),
        "sample_rows": policy.sample_rows,
        "html_sample_rows": REPORT_SAMPLE_ROWS,
        "columns": inputs.to_dict()["columns"],
        "drifted_columns": inputs.drifted_columns,
        "share_drifted": inputs.share_drifted,
        "share_threshold": policy.share,
        "prediction": asdict(by_column["prediction"]),
        "drifted": drifted,
        "reason": (
            f"{len(inputs.drifted_columns)} of {len(inputs.columns)} inputs drifted ({inputs.share_drifted:.0%}, "
            f"threshold {policy.share:.0%}): {', '.join(inputs.drifted_columns) or 'none'}"
        ),
        "html": str(html),
    }
    png = drift_plot(report)
    if png:
        plot = html.with_suffix(".png")  # beside the Evidently HTML: drift scores against thresholds
        write_bytes(plot, png)
        report["plot"] = str(plot)
    return report


def window_performance(spec: ModelSpec, answers: pd.DataFrame, mlflow: MLflowTracking) -> dict:
    """Measured metrics where outcomes are known, the estimate from probabilities, and the verdict."""
    policy = spec.monitoring.performance
    labelled = answers.dropna(subset=["outcome"]) if len(answers) else answers
    report = {"rows": len(answers), "outcomes": len(labelled), "metric": spec.performance_metric}
    if answers.empty:
        return {**report, "degraded": False, "reason": "no traffic in the window"}
    predictions = answers[prediction_column(spec)].to_numpy(dtype=float)
    if spec.task == Task.binary_classification:
        report["estimated"] = estimate_performance(predictions, spec.threshold)
    if len(labelled) >= policy.min_outcomes and _has_both_classes(spec, labelled):
        scores = labelled[prediction_column(spec)].to_numpy(dtype=float)
        report["measured"] = catalogue.compute_metrics(spec, labelled["outcome"], scores)
        report["groups"] = _group_metrics(spec, labelled)
    version = answers["version"].mode().iloc[0]
    report["version"] = version
    report["evaluation"] = _evaluation_value(mlflow, spec, version, spec.performance_metric)
    return {**report, **_verdict(spec, report)}


def _has_both_classes(spec: ModelSpec, labelled: pd.DataFrame) -> bool:
    return spec.task != Task.binary_classification or labelled["outcome"].nunique() == 2


def _group_metrics(spec: ModelSpec, labelled: pd.DataFrame) -> dict:
    groups = {}
    for attribute in spec.sensitive_attributes:
        if attribute not in labelled:
            continue
        for value, rows in labelled.groupby(attribute):
            key = f"{attribute}={value}"
            if len(rows) < MIN_GROUP_ROWS or not _has_both_classes(spec, rows):
                groups[key] = {"rows": len(rows)}
                continue
            metrics = catalogue.compute_metrics(
                spec, rows["outcome"], rows[prediction_column(spec)].to_numpy(dtype=float)
            )
            groups[key] = {"rows": len(rows), **metrics}
    return groups


def _evaluation_value(mlflow: MLflowTracking, spec: ModelSpec, version: str, metric: str) -> float | None:
    """The metric the serving version scored on its test set at evaluation (its MLflow run)."""
    client = mlflow.client()
    run_id = client.get_model_version(spec.name, version).run_id
    return client.get_run(run_id).data.metrics.get(f"test_{metric}")


def _verdict(spec: ModelSpec, report: dict) -> dict:
    """Degraded or not, on the measured value when outcomes suffice, else on the estimate."""
    policy, metric = spec.monitoring.performance, spec.performance_metric
    basis = "measured" if "measured" in report else "estimated" if "estimated" in report else None
    value = report.get(basis, {}).get(metric) if basis else None
    if value is None or math.isnan(value):
        return {"basis": basis, "live": None, "degraded": False, "reason": f"no {metric} for the window yet"}
    reasons = []
    if policy.floor is not None and value < policy.floor:
        reasons.append(f"{basis} {metric} {value:.3f} is below the floor {policy.floor:g}")
    evaluation = report.get("evaluation")
    if policy.tolerance is not None and evaluation is not None and value < evaluation - policy.tolerance:
        reasons.append(
            f"{basis} {metric} {value:.3f} dropped more than {policy.tolerance:g} below its evaluation value "
            f"{evaluation:.3f}"
        )
    reason = "; ".join(reasons) or f"{basis} {metric} {value:.3f} within bounds"
    return {"basis": basis, "live": value, "degraded": bool(reasons), "reason": reason}
