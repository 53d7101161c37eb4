"""Monitoring: what the endpoint saw, how it drifted from training, and how well the model did.

Three assets per model, partitioned by monitoring window (``monitoring.window``, a cron):

* ``production_inputs``: the answers the endpoint returned in the window, from the
  prediction log (identifiers only as keyed hashes);
* ``drift_report``: per model input, Evidently's default drift test of the window against
  the champion's training reference, the share of drifted inputs, and prediction drift;
* ``live_performance``: metrics from the outcomes reported so far, overall and per
  sensitive group, and, until enough outcomes arrive (a readmission label takes a month),
  the performance *estimated* from the model's calibrated probabilities.

Each asset puts its numbers in metadata, so the UI plots them over windows, and decides its
own verdict (drifted, degraded); the trigger sensors only read those verdicts.
"""

import math
from dataclasses import asdict
from datetime import datetime

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionsDefinition,
    asset,
)

from ml_platform.assets.evaluation import REPORT_SAMPLE_ROWS, compute_metrics, evidently_report, score
from ml_platform.assets.features import engineer, model_frame
from ml_platform.assets.metadata import numbers, table_metadata
from ml_platform.monitoring.drift import detect_drift, summarise
from ml_platform.resources import Lake, MLflowTracking, PlatformDatabase
from ml_platform.serving import log as prediction_log
from ml_platform.specs import ModelSpec, Task

# Metrics need enough members in a group to mean anything; smaller groups are counted only.
MIN_GROUP_ROWS = 30


def monitoring_partitions(spec: ModelSpec) -> TimeWindowPartitionsDefinition:
    return TimeWindowPartitionsDefinition(
        cron_schedule=spec.monitoring.window,
        start=datetime.fromisoformat(spec.monitoring.start),
        fmt="%Y-%m-%d-%H:%M",
        timezone="UTC",
    )


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
    inputs = rows[spec.features.model_inputs]
    return inputs.assign(prediction=score(model, inputs)).reset_index(drop=True)


def labelled_production(spec: ModelSpec, engine) -> pd.DataFrame:
    """Answers of the endpoint whose outcome was reported, as feature rows the training set can use.

    The record id is its keyed hash, since the raw id was never stored; the latest answer per
    record counts, so a retried request is one row.
    """
    answers = prediction_log.with_outcomes(
        prediction_log.read_predictions(engine, spec.name, labelled_only=True),
        prediction_log.read_outcomes(engine, spec.name),
    )
    answers = answers.dropna(subset=["outcome"]).drop_duplicates("record_hash", keep="last")
    if answers.empty:
        return pd.DataFrame()
    records = answers.assign(**{spec.id_column: answers["record_hash"], spec.target: answers["outcome"]})
    if spec.contract.event_time_column:
        time_column = spec.contract.event_time_column
        records[time_column] = pd.to_datetime(records[time_column])
    return engineer(records, spec).assign(batch="production")


def build(spec: ModelSpec) -> list:
    name = spec.name
    partitions = monitoring_partitions(spec)
    inputs_key, drift_key, performance_key = (
        AssetKey([name, a]) for a in ("production_inputs", "drift_report", "live_performance")
    )
    common = {"group_name": name, "partitions_def": partitions}

    @asset(
        key=inputs_key,
        deps=[AssetKey([name, "deployment"])],
        kinds={"sqlite", "parquet"},
        description=f"What the {name} endpoint answered in each monitoring window ({spec.monitoring.window}), "
        "from the prediction log: inputs, outputs, version and route; identifiers as keyed hashes.",
        **common,
    )
    def production_inputs(context: AssetExecutionContext, lake: Lake, database: PlatformDatabase) -> MaterializeResult:
        window = context.partition_time_window
        answers = prediction_log.read_predictions(database.engine(), name, window.start, window.end)
        lake.write_table(answers.drop(columns=["created_at"]), name, "production_inputs", context.partition_key)
        return MaterializeResult(
            metadata={
                **table_metadata(answers),
                "window": f"{window.start:%Y-%m-%d %H:%M} .. {window.end:%Y-%m-%d %H:%M} UTC",
                "versions": MetadataValue.json(answers["version"].value_counts().to_dict() if len(answers) else {}),
                "routes": MetadataValue.json(answers["route"].value_counts().to_dict() if len(answers) else {}),
            }
        )

    @asset(
        key=drift_key,
        deps=[inputs_key],
        kinds={"evidently"},
        description=f"Drift of each {name} input in the window against the serving version's training reference "
        f"(Evidently's default tests, at most {spec.monitoring.drift.sample_rows:,} rows a side); the window "
        f"drifts when at least {spec.monitoring.drift.share:.0%} of the inputs do.",
        **common,
    )
    def drift_report(context: AssetExecutionContext, lake: Lake) -> MaterializeResult:
        window = lake.read_table(name, "production_inputs", context.partition_key)
        report = window_drift(spec, lake, window, context.partition_key)
        lake.write_json(report, name, "drift_report", context.partition_key)
        return MaterializeResult(metadata=drift_metadata(report))

    @asset(
        key=performance_key,
        deps=[inputs_key],
        kinds={"scikit-learn"},
        description=f"{name} performance in the window: measured from reported outcomes (overall and per "
        "sensitive group) and, until outcomes arrive, estimated from the model's calibrated probabilities "
        "(marked as an estimate).",
        **common,
    )
    def live_performance(
        context: AssetExecutionContext, lake: Lake, mlflow: MLflowTracking, database: PlatformDatabase
    ) -> MaterializeResult:
        window = lake.read_table(name, "production_inputs", context.partition_key)
        observed = prediction_log.read_outcomes(database.engine(), name)
        report = window_performance(spec, prediction_log.with_outcomes(window, observed), mlflow)
        lake.write_json(report, name, "live_performance", context.partition_key)
        return MaterializeResult(metadata=performance_metadata(report))

    return [production_inputs, drift_report, live_performance]


# ----------------------------------------------------------------------------- drift


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
    current = model_frame(window, spec).assign(prediction=window[prediction_column(spec)].to_numpy())
    numeric, categorical = drift_columns(spec)
    result = detect_drift(reference, current, [*numeric, "prediction"], categorical, sample_rows=policy.sample_rows)
    by_column = {c.column: c for c in result.columns}
    inputs = summarise([c for c in result.columns if c.column != "prediction"], policy.share, policy.sample_rows)
    html = lake.reports_dir(spec.name) / f"drift_{partition}.html"
    evidently_report(spec, reference, current, html, with_outcomes=False)
    drifted = inputs.dataset_drift
    return {
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


def drift_metadata(report: dict) -> dict:
    metadata = {"rows": report["rows"], "drifted": report["drifted"], "reason": report["reason"]}
    if not report["rows"]:
        return metadata
    columns = report["columns"]
    table = "| input | test | score | threshold | drifted |\n|---|---|---|---|---|\n" + "\n".join(
        f"| {c['column']} | {c['method']} | {c['score']:.4g} | {c['threshold']:g} | {'yes' if c['drifted'] else ''} |"
        for c in columns
    )
    return {
        **metadata,
        "share_drifted": MetadataValue.float(report["share_drifted"]),
        "drifted_columns": MetadataValue.json(report["drifted_columns"]),
        "reference_version": report["reference_version"],
        "sample_rows": report["sample_rows"],
        "prediction_drift_score": MetadataValue.float(float(report["prediction"]["score"])),
        "prediction_drifted": bool(report["prediction"]["drifted"]),
        "columns": MetadataValue.md(table),
        **numbers({c["column"]: c["score"] for c in columns}, "score/"),
        "report": MetadataValue.path(report["html"]),
    }


# ----------------------------------------------------------------------------- performance


def window_performance(spec: ModelSpec, answers: pd.DataFrame, mlflow: MLflowTracking) -> dict:
    """Measured metrics where outcomes are known, the estimate from probabilities, and the verdict."""
    policy = spec.monitoring.performance
    labelled = answers.dropna(subset=["outcome"]) if len(answers) else answers
    report = {"rows": len(answers), "outcomes": len(labelled), "metric": spec.performance_metric}
    if answers.empty:
        return {**report, "degraded": False, "reason": "no traffic in the window"}
    predictions = answers[prediction_column(spec)].to_numpy(dtype=float)
    if spec.task == Task.binary_classification:
        from ml_platform.monitoring.estimation import estimate_performance

        report["estimated"] = estimate_performance(predictions, spec.threshold)
    if len(labelled) >= policy.min_outcomes and _has_both_classes(spec, labelled):
        scores = labelled[prediction_column(spec)].to_numpy(dtype=float)
        report["measured"] = compute_metrics(spec, labelled["outcome"], scores)
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
            metrics = compute_metrics(spec, rows["outcome"], rows[prediction_column(spec)].to_numpy(dtype=float))
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


def performance_metadata(report: dict) -> dict:
    metadata = {
        "rows": report["rows"],
        "outcomes": report["outcomes"],
        "degraded": report["degraded"],
        "reason": report["reason"],
    }
    if report.get("basis"):
        metadata["basis"] = report["basis"]  # "estimated" marks a value computed without outcomes
        metadata[f"live/{report['metric']}"] = MetadataValue.float(float(report["live"]))
    if report.get("evaluation") is not None:
        metadata[f"evaluation/{report['metric']}"] = MetadataValue.float(float(report["evaluation"]))
    metadata.update(numbers(report.get("measured", {}), "measured/"))
    metadata.update(numbers(report.get("estimated", {}), "estimated/"))
    if report.get("groups"):
        metadata["groups"] = MetadataValue.json(report["groups"])
    return metadata
