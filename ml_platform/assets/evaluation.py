"""Evaluation: the candidate on held-out test rows, against the champion, with gates.

The report holds task-appropriate metrics, the champion's metrics on the same rows when
there is a champion, and an Evidently report (HTML) comparing training and test data
and the candidate's predictions. The ``quality_gates`` check blocks anything downstream
when a metric misses the spec's thresholds.
"""

import json
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from ml_platform import gates, governance, model_card
from ml_platform.assets.metadata import numbers
from ml_platform.audit import run_actor
from ml_platform.resources import Lake, MLflowTracking, PlatformDatabase
from ml_platform.settings import code_version
from ml_platform.specs import Calibration, ModelSpec, Task

# Evidently's cost grows linearly with rows and it holds everything in memory; beyond a
# few thousand rows per side the HTML report shows nothing new, so both sides are sampled.
REPORT_SAMPLE_ROWS = 5_000


def model_inputs(table: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    return table[spec.features.model_inputs]


def score(model, inputs: pd.DataFrame) -> np.ndarray:
    """P(positive) for classifiers, the predicted value for regressors."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(inputs)[:, 1]
    return np.asarray(model.predict(inputs), dtype=float)


def compute_metrics(spec: ModelSpec, y_true, scores) -> dict[str, float]:
    """The metrics of ``specs.METRICS`` for the spec's task. Undefined values are NaN."""
    from sklearn import metrics

    y_true, scores = np.asarray(y_true, dtype=float), np.asarray(scores, dtype=float)
    if spec.task == Task.regression:
        return {
            "mae": metrics.mean_absolute_error(y_true, scores),
            "rmse": math.sqrt(metrics.mean_squared_error(y_true, scores)),
            "r2": metrics.r2_score(y_true, scores) if len(y_true) > 1 else math.nan,
        }
    predicted = scores >= spec.threshold
    positives, negatives = y_true == 1, y_true == 0
    both_classes = positives.any() and negatives.any()

    def ratio(numerator, denominator) -> float:
        return float(numerator) / float(denominator) if denominator else math.nan

    return {
        "roc_auc": metrics.roc_auc_score(y_true, scores) if both_classes else math.nan,
        "average_precision": metrics.average_precision_score(y_true, scores) if positives.any() else math.nan,
        "brier": metrics.brier_score_loss(y_true, scores),
        "sensitivity": ratio((predicted & positives).sum(), positives.sum()),
        "specificity": ratio((~predicted & negatives).sum(), negatives.sum()),
        "ppv": ratio((predicted & positives).sum(), predicted.sum()),
        "npv": ratio((~predicted & negatives).sum(), (~predicted).sum()),
        "accuracy": float((predicted == positives).mean()),
        "prevalence": float(positives.mean()),
        "positive_rate": float(predicted.mean()),
    }


def evidently_report(
    spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame, path, with_outcomes: bool = True
) -> dict:
    """Save Evidently's data-drift (and, with outcomes, task-quality) report as HTML; return the drift summary."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Regression, Report
    from evidently.presets import ClassificationPreset, DataDriftPreset, RegressionPreset

    numeric = [*spec.features.numeric, *spec.features.derived, "prediction"]
    categorical = list(spec.features.categorical)
    task, presets = {}, [DataDriftPreset()]  # without outcomes (production windows): inputs and predictions only
    if with_outcomes and spec.task == Task.binary_classification:
        task = {
            "classification": [BinaryClassification(target=spec.target, prediction_probas="prediction", pos_label=1)]
        }
        categorical.append(spec.target)
        presets.append(ClassificationPreset())
    elif with_outcomes:
        task = {"regression": [Regression(target=spec.target, prediction="prediction")]}
        numeric.append(spec.target)
        presets.append(RegressionPreset())
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical, **task)
    columns = [*numeric, *categorical]

    def dataset(df: pd.DataFrame):
        sample = df.sample(min(len(df), REPORT_SAMPLE_ROWS), random_state=0)[columns]
        return Dataset.from_pandas(sample, data_definition=definition)

    snapshot = Report(presets).run(current_data=dataset(current), reference_data=dataset(reference))
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    drift = next(m["value"] for m in snapshot.dict()["metrics"] if m["metric_name"].startswith("DriftedColumnsCount"))
    return {"drifted_columns": float(drift["count"]), "drifted_share": float(drift["share"])}


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
BOOTSTRAP_RESAMPLES = 200  # for the metric intervals of the model card


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


def build(spec: ModelSpec) -> list:
    name = spec.name
    report_key = AssetKey([name, "evaluation_report"])

    @asset(
        key=report_key,
        deps=[AssetKey([name, "candidate_model"])],
        group_name=name,
        kinds={"scikit-learn", "mlflow", "evidently"},
        automation_condition=AutomationCondition.eager(),
        check_specs=[
            AssetCheckSpec(check, asset=report_key, blocking=True, description=f"{CHECK_DESCRIPTIONS[check]}.")
            for check in gate_checks(spec)
        ],
        description=f"The {name} candidate on held-out test rows: metrics with intervals, the champion on the same "
        "rows, calibration, performance by sensitive group, every gate's verdict, a model card and an Evidently "
        "report; logged to MLflow.",
    )
    def evaluation_report(
        context: AssetExecutionContext, lake: Lake, mlflow: MLflowTracking, database: PlatformDatabase
    ):
        candidate = lake.read_json(name, "candidate_model", "latest")
        report = evaluate(spec, candidate, lake, mlflow, dagster_run_id=context.run_id)
        lake.write_json(report, name, "evaluation_report", f"v{candidate['model_version']}")
        lake.write_json(report, name, "evaluation_report", "latest")
        record_verdicts(spec, report, mlflow, database, actor=run_actor(context.run_id))
        yield MaterializeResult(metadata=_report_metadata(report))
        for check in gate_checks(spec):
            verdicts = [g for g in report["gates"] if GATE_CHECKS[g["gate"].split(".")[0]] == check]
            failed = [g for g in verdicts if not g["passed"]]
            yield AssetCheckResult(
                check_name=check,
                passed=not failed,
                severity=AssetCheckSeverity.ERROR,
                description="; ".join(f"{g['gate']} failed: {g['reason']}" for g in failed)
                or "; ".join(g["reason"] for g in verdicts)
                or "no gate of this kind is configured",
                metadata={"model_version": candidate["model_version"], **_verdict_metadata(verdicts)},
            )

    return [evaluation_report]


def _report_metadata(report: dict) -> dict:
    return {
        "model_version": report["model_version"],
        "test_rows": report["test_rows"],
        **numbers(report["metrics"], "test/"),
        **numbers(report["champion_metrics"] or {}, "champion/"),
        "champion_version": report["champion_version"] or "none",
        **numbers({k: v for k, v in (report["calibration"] or {}).items() if k in ("ece", "slope")}, "calibration/"),
        **numbers(report["drift"], "evidently/"),
        "gates_passed": all(g["passed"] for g in report["gates"]),
        "evidently_report": MetadataValue.path(report["html"]),
        "model_card": MetadataValue.path(report["model_card"]["html"]),
        "model_card_markdown": MetadataValue.md(report["model_card"]["markdown"]),
    }


def _verdict_metadata(verdicts: list[dict]) -> dict:
    """Per gate: the value, the threshold, the champion's value and the verdict, as the UI shows them."""
    metadata = {}
    for g in verdicts:
        metadata[f"{g['gate']}/verdict"] = "pass" if g["passed"] else "FAIL"
        for field in ("value", "threshold", "champion"):
            if isinstance(g.get(field), int | float):
                metadata[f"{g['gate']}/{field}"] = MetadataValue.float(float(g[field]))
    metadata["verdicts"] = MetadataValue.json(verdicts)
    return metadata


def record_verdicts(
    spec: ModelSpec, report: dict, mlflow: MLflowTracking, database: PlatformDatabase, actor: str
) -> None:
    """Tag the model version with its gate outcome and write each verdict to the audit trail."""
    version = report["model_version"]
    failed = [g["gate"] for g in report["gates"] if not g["passed"]]
    client = mlflow.client()
    client.set_model_version_tag(spec.name, version, governance.GATES_TAG, "failed" if failed else "passed")
    if failed:
        client.set_model_version_tag(spec.name, version, "ml_platform.gate_failures", ", ".join(failed))
    audit = database.audit()
    for g in report["gates"]:
        audit.record(
            "gate_passed" if g["passed"] else "gate_failed",
            spec.name,
            actor=actor,
            version=version,
            details={k: g.get(k) for k in ("gate", "value", "threshold", "champion", "reason")},
        )


def evaluate(spec: ModelSpec, candidate: dict, lake: Lake, mlflow: MLflowTracking, dagster_run_id: str) -> dict:
    """Score the candidate (and champion) on the test rows, run every gate, write the card; log to MLflow."""
    table = lake.read_table(spec.name, "training_set", candidate["training_set_version"])
    test, train = table[table["split"] == "test"], table[table["split"] == "train"]
    y = test[spec.target].to_numpy()
    model = mlflow.load_model(spec.name, candidate["model_version"])
    predictions = score(model, model_inputs(test, spec))
    metrics = compute_metrics(spec, y, predictions)
    champion = mlflow.alias_version(spec.name, "champion")
    champion_metrics = None
    if champion and champion != candidate["model_version"]:
        champion_model = mlflow.load_model(spec.name, champion)
        champion_metrics = compute_metrics(spec, y, score(champion_model, model_inputs(test, spec)))
    calibration = None
    if spec.task == Task.binary_classification:
        calibration = gates.calibration_summary(y, predictions, bins=(spec.gates.calibration or Calibration()).bins)
    fairness = gates.fairness_report(spec, test[spec.sensitive_attributes], y, predictions)
    verdicts = [
        *gates.absolute_gates(spec, metrics),
        *gates.champion_gates(spec, metrics, champion_metrics, champion),
        *(gates.calibration_gates(spec, calibration) if calibration else []),
        *gates.fairness_gates(spec, fairness),
    ]
    reports = lake.reports_dir(spec.name)
    html = reports / f"evaluation_v{candidate['model_version']}.html"
    reference = train.sample(min(len(train), REPORT_SAMPLE_ROWS), random_state=0)
    drift = evidently_report(
        spec,
        reference.assign(prediction=score(model, model_inputs(reference, spec))),
        test.assign(prediction=predictions),
        html,
    )
    training_data = lake.read_json(spec.name, "training_set", f"{candidate['training_set_version']}.summary")
    report = {
        "model_version": candidate["model_version"],
        "evaluated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "test_rows": len(test),
        "metrics": metrics,
        "metric_ci": gates.bootstrap_intervals(spec, y, predictions, n=BOOTSTRAP_RESAMPLES),
        "champion_version": champion,
        "champion_metrics": champion_metrics,
        "calibration": calibration,
        "fairness": fairness,
        "gates": [v.as_metadata() for v in verdicts],
        "drift": drift,
        "html": str(html),
        "training_data": training_data,
        "lineage": {
            "dagster_run_id (evaluation)": dagster_run_id,
            "dagster_run_id (training)": candidate.get("dagster_run_id"),
            "mlflow_run_id": candidate["run_id"],
            "model_uri": candidate["model_uri"],
            "training_set_version (data version)": candidate["training_set_version"],
            "dataset_digest": candidate.get("dataset_digest"),
            "code_version": code_version(),
            "spec_hash": spec.spec_hash,
        },
    }
    report["model_card"] = write_model_card(spec, report, reports)
    log_evaluation(spec, candidate, report, mlflow)
    return report


def write_model_card(spec: ModelSpec, report: dict, folder) -> dict:
    content = model_card.blocks(spec, report)
    markdown = model_card.to_markdown(content)
    html_path = folder / f"model_card_v{report['model_version']}.html"
    md_path = html_path.with_suffix(".md")
    folder.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown, encoding="utf-8")
    html_path.write_text(model_card.to_html(content), encoding="utf-8")
    return {"markdown": markdown, "html": str(html_path), "md": str(md_path)}


def log_evaluation(spec: ModelSpec, candidate: dict, report: dict, mlflow: MLflowTracking) -> None:
    """Test metrics, reports and the model card on the candidate's run; the card on its model version."""
    client, run_id = mlflow.client(), candidate["run_id"]
    for key, value in report["metrics"].items():
        if not math.isnan(value):
            client.log_metric(run_id, f"test_{key}", value)
    client.log_artifact(run_id, report["html"], artifact_path="evaluation")
    client.log_artifact(run_id, report["model_card"]["html"], artifact_path="model_card")
    client.log_artifact(run_id, report["model_card"]["md"], artifact_path="model_card")
    client.log_text(run_id, json.dumps(report, indent=2, default=str), "evaluation/report.json")
    # MLflow renders a version's description as Markdown: the card is on the registry page itself.
    client.update_model_version(spec.name, candidate["model_version"], description=report["model_card"]["markdown"])
