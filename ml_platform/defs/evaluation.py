"""Evaluation: the candidate on held-out test rows, against the champion, with gates.

The report holds task-appropriate metrics, the champion's metrics on the same rows when
there is a champion, calibration, groups, plots and the model card. The ``quality_gates``
check blocks anything downstream when a metric misses the spec's thresholds.

The Evidently report (HTML) comparing training and test data and the candidate's
predictions is its own asset, ``evidently_report``: no gate reads it, so it hangs off
``candidate_model`` beside the evaluation instead of sitting on the path to deployment.
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    asset,
)

from ml_platform.defs.metadata import numbers, plots_markdown, run_actor
from ml_platform.evaluation.drift_report import DriftReport, write_drift_report
from ml_platform.evaluation.gates import CHECK_DESCRIPTIONS, check_of, gate_checks
from ml_platform.evaluation.report import EvaluationReport, evaluate
from ml_platform.governance.service import Governance
from ml_platform.spec import ModelSpec
from ml_platform.store.database import PlatformDatabase
from ml_platform.store.lake import Lake
from ml_platform.store.registry import MLflowTracking
from ml_platform.training.registration import Candidate


def build(spec: ModelSpec) -> list:
    name = spec.name
    report_key = AssetKey([name, "evaluation_report"])

    @asset(
        key=report_key,
        deps=[AssetKey([name, "candidate_model"])],
        group_name=name,
        kinds={"scikit-learn", "mlflow"},
        automation_condition=AutomationCondition.eager(),
        check_specs=[
            AssetCheckSpec(check, asset=report_key, blocking=True, description=f"{CHECK_DESCRIPTIONS[check]}.")
            for check in gate_checks(spec)
        ],
        description=f"The {name} candidate on held-out test rows: metrics with intervals, the champion on the same "
        "rows, calibration, performance by sensitive group, every gate's verdict, plots and a model card; logged to MLflow.",
    )
    def evaluation_report(
        context: AssetExecutionContext,
        lake: ResourceParam[Lake],
        mlflow: ResourceParam[MLflowTracking],
        database: ResourceParam[PlatformDatabase],
    ):
        candidate = Candidate.model_validate(lake.read_json(name, "candidate_model", "latest"))
        report = evaluate(spec, candidate, lake, mlflow, dagster_run_id=context.run_id)
        saved = report.model_dump(mode="json")
        lake.write_json(saved, name, "evaluation_report", f"v{candidate.model_version}")
        lake.write_json(saved, name, "evaluation_report", "latest")
        Governance(mlflow, database).record_verdicts(
            spec, report.model_version, report.gates, actor=run_actor(context.run_id)
        )
        yield MaterializeResult(metadata=_report_metadata(report))
        for check in gate_checks(spec):
            verdicts = [g for g in report.gates if check_of(g["gate"]) == check]
            failed = [g for g in verdicts if not g["passed"]]
            yield AssetCheckResult(
                check_name=check,
                passed=not failed,
                severity=AssetCheckSeverity.ERROR,
                description="; ".join(f"{g['gate']} failed: {g['reason']}" for g in failed)
                or "; ".join(g["reason"] for g in verdicts)
                or "no gate of this kind is configured",
                metadata={"model_version": candidate.model_version, **_verdict_metadata(verdicts)},
            )

    return [evaluation_report, build_evidently_report(spec)]


def build_evidently_report(spec: ModelSpec):
    """The Evidently HTML of each candidate, for people: off the path to deployment, so a
    deployment never waits for it, and after ``candidate_model``, so failed candidates get one too."""
    name = spec.name

    @asset(
        key=AssetKey([name, "evidently_report"]),
        deps=[AssetKey([name, "candidate_model"])],
        group_name=name,
        kinds={"evidently", "mlflow"},
        automation_condition=AutomationCondition.eager(),
        # In a run that also evaluates and deploys (a batch carried through), run last.
        op_tags={"dagster/priority": "-1"},
        description=f"Evidently's data-drift and quality report (HTML) of the latest {name} candidate: training "
        "against test data with the candidate's predictions; logged on the candidate's MLflow run. No gate reads it.",
    )
    def evidently_report(lake: ResourceParam[Lake], mlflow: ResourceParam[MLflowTracking]):
        candidate = Candidate.model_validate(lake.read_json(name, "candidate_model", "latest"))
        return MaterializeResult(metadata=_drift_metadata(write_drift_report(spec, candidate, lake, mlflow)))

    return evidently_report


def _report_metadata(report: EvaluationReport) -> dict:
    return {
        "model_version": report.model_version,
        "test_rows": report.test_rows,
        **numbers(report.metrics, "test/"),
        **numbers(report.champion_metrics or {}, "champion/"),
        "champion_version": report.champion_version or "none",
        **numbers({k: v for k, v in (report.calibration or {}).items() if k in ("ece", "slope")}, "calibration/"),
        "gates_passed": report.passed,
        # Links a person clicks (the MLflow UI), not paths on the machine that ran the step.
        **{name: MetadataValue.url(url) for name, url in report.links.items()},
        **({"plots": plots_markdown(report.plots)} if report.plots else {}),
        "model_card_markdown": MetadataValue.md(report.model_card["markdown"]),
    }


def _drift_metadata(report: DriftReport) -> dict:
    return {
        "model_version": report.model_version,
        **numbers(report.drift, "evidently/"),
        "evidently_report": MetadataValue.url(report.link),
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
