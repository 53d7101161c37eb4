"""Evaluation: the candidate on held-out test rows, against the champion, with gates.

The report holds task-appropriate metrics, the champion's metrics on the same rows when
there is a champion, and an Evidently report (HTML) comparing training and test data
and the candidate's predictions. The ``quality_gates`` check blocks anything downstream
when a metric misses the spec's thresholds.
"""

import json
import math

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

from ml_platform.assets.metadata import numbers
from ml_platform.resources import Lake, MLflowTracking
from ml_platform.specs import ModelSpec, Task

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


def gate_verdicts(spec: ModelSpec, metrics: dict[str, float]) -> list[dict]:
    """One verdict per gate in the spec; a metric that cannot be computed fails its gate."""
    verdicts = []
    for bound, gates in (("min", spec.gates.min), ("max", spec.gates.max)):
        for metric, threshold in gates.items():
            value = metrics.get(metric, math.nan)
            passed = not math.isnan(value) and (value >= threshold if bound == "min" else value <= threshold)
            relation = ">=" if bound == "min" else "<="
            verdicts.append(
                {
                    "gate": f"{bound}.{metric}",
                    "metric": metric,
                    "value": value,
                    "threshold": threshold,
                    "passed": passed,
                    "reason": f"{metric} = {value:.4f}, required {relation} {threshold}",
                }
            )
    return verdicts


def evidently_report(spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame, path) -> dict:
    """Save Evidently's data-drift and task-quality report as HTML; return the drift summary."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Regression, Report
    from evidently.presets import ClassificationPreset, DataDriftPreset, RegressionPreset

    numeric = [*spec.features.numeric, *spec.features.derived, "prediction"]
    categorical = list(spec.features.categorical)
    if spec.task == Task.binary_classification:
        task = {
            "classification": [BinaryClassification(target=spec.target, prediction_probas="prediction", pos_label=1)]
        }
        categorical.append(spec.target)
        quality = ClassificationPreset()
    else:
        task = {"regression": [Regression(target=spec.target, prediction="prediction")]}
        numeric.append(spec.target)
        quality = RegressionPreset()
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical, **task)
    columns = [*numeric, *categorical]

    def dataset(df: pd.DataFrame):
        sample = df.sample(min(len(df), REPORT_SAMPLE_ROWS), random_state=0)[columns]
        return Dataset.from_pandas(sample, data_definition=definition)

    snapshot = Report([DataDriftPreset(), quality]).run(
        current_data=dataset(current), reference_data=dataset(reference)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    drift = next(m["value"] for m in snapshot.dict()["metrics"] if m["metric_name"].startswith("DriftedColumnsCount"))
    return {"drifted_columns": float(drift["count"]), "drifted_share": float(drift["share"])}


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
            AssetCheckSpec(
                "quality_gates",
                asset=report_key,
                blocking=True,
                description=f"The candidate meets the spec's thresholds on the test split: {_gates_text(spec)}.",
            )
        ],
        description=f"The {name} candidate on held-out test rows: metrics, the champion's metrics on the same "
        "rows, and an Evidently report; logged to the candidate's MLflow run.",
    )
    def evaluation_report(context: AssetExecutionContext, lake: Lake, mlflow: MLflowTracking):
        candidate = lake.read_json(name, "candidate_model", "latest")
        report = evaluate(spec, candidate, lake, mlflow)
        lake.write_json(report, name, "evaluation_report", f"v{candidate['model_version']}")
        lake.write_json(report, name, "evaluation_report", "latest")
        yield MaterializeResult(
            metadata={
                "model_version": candidate["model_version"],
                "test_rows": report["test_rows"],
                **numbers(report["metrics"], "test/"),
                **numbers(report["champion_metrics"] or {}, "champion/"),
                "champion_version": report["champion_version"] or "none",
                **numbers(report["drift"], "evidently/"),
                "evidently_report": MetadataValue.path(report["html"]),
                "gates": MetadataValue.md(_gate_table(report["gates"])),
            }
        )
        failed = [g for g in report["gates"] if not g["passed"]]
        yield AssetCheckResult(
            check_name="quality_gates",
            passed=not failed,
            severity=AssetCheckSeverity.ERROR,
            description="; ".join(f"failed {g['gate']}: {g['reason']}" for g in failed) or "all gates passed",
            metadata={"model_version": candidate["model_version"], "verdicts": MetadataValue.json(report["gates"])},
        )

    return [evaluation_report]


def evaluate(spec: ModelSpec, candidate: dict, lake: Lake, mlflow: MLflowTracking) -> dict:
    """Score candidate (and champion) on the test rows; log the results to the candidate's run."""
    table = lake.read_table(spec.name, "training_set", candidate["training_set_version"])
    test, train = table[table["split"] == "test"], table[table["split"] == "train"]
    model = mlflow.load_model(spec.name, candidate["model_version"])
    predictions = score(model, model_inputs(test, spec))
    metrics = compute_metrics(spec, test[spec.target], predictions)
    champion = mlflow.alias_version(spec.name, "champion")
    champion_metrics = None
    if champion and champion != candidate["model_version"]:
        champion_model = mlflow.load_model(spec.name, champion)
        champion_metrics = compute_metrics(spec, test[spec.target], score(champion_model, model_inputs(test, spec)))
    html = lake.reports_dir(spec.name) / f"evaluation_v{candidate['model_version']}.html"
    reference = train.sample(min(len(train), REPORT_SAMPLE_ROWS), random_state=0)
    drift = evidently_report(
        spec,
        reference.assign(prediction=score(model, model_inputs(reference, spec))),
        test.assign(prediction=predictions),
        html,
    )
    report = {
        "model_version": candidate["model_version"],
        "test_rows": len(test),
        "metrics": metrics,
        "champion_version": champion,
        "champion_metrics": champion_metrics,
        "drift": drift,
        "gates": gate_verdicts(spec, metrics),
        "html": str(html),
    }
    client = mlflow.client()
    for key, value in metrics.items():
        if not math.isnan(value):
            client.log_metric(candidate["run_id"], f"test_{key}", value)
    client.log_artifact(candidate["run_id"], str(html), artifact_path="evaluation")
    client.log_text(candidate["run_id"], json.dumps(report, indent=2, default=str), "evaluation/report.json")
    return report


def _gates_text(spec: ModelSpec) -> str:
    gates = [f"{m} >= {t}" for m, t in spec.gates.min.items()] + [f"{m} <= {t}" for m, t in spec.gates.max.items()]
    return ", ".join(gates) or "none configured"


def _gate_table(verdicts: list[dict]) -> str:
    if not verdicts:
        return "No gates configured in the spec."
    rows = [
        f"| {v['gate']} | {v['value']:.4f} | {v['threshold']} | {'pass' if v['passed'] else 'FAIL'} |" for v in verdicts
    ]
    return "\n".join(["| gate | value | threshold | verdict |", "|---|---|---|---|", *rows])
