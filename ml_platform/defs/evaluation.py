"""Evaluation: the candidate on held-out test rows, against the champion, with gates.

The report holds task-appropriate metrics, the champion's metrics on the same rows when
there is a champion, and an Evidently report (HTML) comparing training and test data
and the candidate's predictions. The ``quality_gates`` check blocks anything downstream
when a metric misses the spec's thresholds.
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

    return [evaluation_report]


def _report_metadata(report: EvaluationReport) -> dict:
    return {
        "model_version": report.model_version,
        "test_rows": report.test_rows,
        **numbers(report.metrics, "test/"),
        **numbers(report.champion_metrics or {}, "champion/"),
        "champion_version": report.champion_version or "none",
        **numbers({k: v for k, v in (report.calibration or {}).items() if k in ("ece", "slope")}, "calibration/"),
        **numbers(report.drift, "evidently/"),
        "gates_passed": report.passed,
        # Links a person clicks (the MLflow UI), not paths on the machine that ran the step.
        **{name: MetadataValue.url(url) for name, url in report.links.items()},
        **({"plots": plots_markdown(report.plots)} if report.plots else {}),
        "model_card_markdown": MetadataValue.md(report.model_card["markdown"]),
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
