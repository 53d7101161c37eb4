"""Monitoring assets: what the endpoint saw, how it drifted from training, and how well the model did.

Three assets per model, partitioned by monitoring window (``monitoring.window``, a cron):
``production_inputs`` (the answers of the window, from the prediction log), ``drift_report``
and ``live_performance`` (``monitoring.windows``). Each puts its numbers in metadata, so the
UI plots them over windows, and its verdict (drifted, degraded); the trigger sensors only
read those verdicts.
"""

from datetime import datetime

from dagster import (
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    TimeWindowPartitionsDefinition,
    asset,
)

from ml_platform.defs.metadata import numbers, plots_markdown, table_metadata
from ml_platform.monitoring.windows import window_drift, window_performance
from ml_platform.spec import ModelSpec
from ml_platform.store import predictions as prediction_log
from ml_platform.store.database import PlatformDatabase
from ml_platform.store.lake import Lake
from ml_platform.store.registry import MLflowTracking


def monitoring_partitions(spec: ModelSpec) -> TimeWindowPartitionsDefinition:
    return TimeWindowPartitionsDefinition(
        cron_schedule=spec.monitoring.window,
        start=datetime.fromisoformat(spec.monitoring.start),
        fmt="%Y-%m-%d-%H:%M",
        timezone="UTC",
    )


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
    def production_inputs(
        context: AssetExecutionContext, lake: ResourceParam[Lake], database: ResourceParam[PlatformDatabase]
    ) -> MaterializeResult:
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
    def drift_report(context: AssetExecutionContext, lake: ResourceParam[Lake]) -> MaterializeResult:
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
        context: AssetExecutionContext,
        lake: ResourceParam[Lake],
        mlflow: ResourceParam[MLflowTracking],
        database: ResourceParam[PlatformDatabase],
    ) -> MaterializeResult:
        window = lake.read_table(name, "production_inputs", context.partition_key)
        observed = prediction_log.read_outcomes(database.engine(), name)
        report = window_performance(spec, prediction_log.with_outcomes(window, observed), mlflow)
        lake.write_json(report, name, "live_performance", context.partition_key)
        return MaterializeResult(metadata=performance_metadata(report))

    return [production_inputs, drift_report, live_performance]


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
        **({"plots": plots_markdown({"drift": report["plot"]})} if report.get("plot") else {}),
        # The window's Evidently HTML is not an MLflow artifact: no URL exists, the path is the link.
        "report": MetadataValue.path(report["html"]),
    }


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
