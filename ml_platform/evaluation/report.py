"""The evaluation report: the candidate (and the champion) on the same held-out rows, every gate's
verdict, intervals, calibration, groups and the model card, logged to MLflow. The Evidently HTML
report (``evidently_report``) is built by its own asset, off the path to deployment: no gate reads it."""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePath

import pandas as pd
from pydantic import BaseModel

from ml_platform import metrics as catalogue
from ml_platform.evaluation import bootstrap, gates, model_card, plots
from ml_platform.evaluation import calibration as calibration_gates
from ml_platform.evaluation import fairness as fairness_gates
from ml_platform.settings import code_version
from ml_platform.spec import Calibration, ModelSpec, Task
from ml_platform.store.lake import Lake
from ml_platform.store.objects import StoragePath, upload_folder
from ml_platform.store.registry import MLflowTracking, artifact_url, model_version_url, run_url
from ml_platform.store.tags import CHAMPION
from ml_platform.training.pipeline import model_inputs, score, trusted_types
from ml_platform.training.registration import Candidate

# Evidently's cost grows linearly with rows and it holds everything in memory; beyond a
# few thousand rows per side the HTML report shows nothing new, so both sides are sampled.
REPORT_SAMPLE_ROWS = 5_000
BOOTSTRAP_RESAMPLES = 200  # for the metric intervals of the model card


class EvaluationReport(BaseModel):
    """What evaluation found about one model version: the record every later stage reads."""

    model_version: str
    evaluated_at: str
    test_rows: int
    metrics: dict[str, float | None]
    metric_ci: dict
    champion_version: str | None
    champion_metrics: dict[str, float | None] | None
    calibration: dict | None
    fairness: dict
    gates: list[dict]
    training_data: dict
    lineage: dict
    model_card: dict = {}
    plots: dict[str, str] = {}  # plot name -> PNG file beside the model card
    links: dict[str, str] = {}  # MLflow UI deep links: the run, the model version, the card

    @property
    def passed(self) -> bool:
        return all(g["passed"] for g in self.gates)


def evidently_report(
    spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame, path: Path, with_outcomes: bool = True
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


def assess(
    spec: ModelSpec,
    y_true,
    scores,
    groups: pd.DataFrame,
    champion_metrics: dict | None,
    champion_version: str | None,
) -> dict:
    """Metrics with intervals, calibration, fairness and every gate's verdict for scored test rows.

    The one place the gates are applied: the ``evaluation_report`` asset and ``ml-platform ci``
    both call it, so a pull request sees exactly the verdicts the pipeline would reach.
    """
    metrics = catalogue.compute_metrics(spec, y_true, scores)
    calibration = None
    if spec.task == Task.binary_classification:
        calibration = calibration_gates.calibration_summary(
            y_true, scores, bins=(spec.gates.calibration or Calibration()).bins
        )
    fairness = fairness_gates.fairness_report(spec, groups, y_true, scores)
    verdicts = [
        *gates.absolute_gates(spec, metrics),
        *gates.champion_gates(spec, metrics, champion_metrics, champion_version),
        *(calibration_gates.calibration_gates(spec, calibration) if calibration else []),
        *fairness_gates.fairness_gates(spec, fairness),
    ]
    return {
        "metrics": metrics,
        "metric_ci": bootstrap.bootstrap_intervals(spec, y_true, scores, n=BOOTSTRAP_RESAMPLES),
        "calibration": calibration,
        "fairness": fairness,
        "gates": [v.as_metadata() for v in verdicts],
    }


def evaluate(
    spec: ModelSpec, candidate: Candidate, lake: Lake, mlflow: MLflowTracking, dagster_run_id: str
) -> EvaluationReport:
    """Score the candidate (and champion) on the test rows, run every gate, write the card; log to MLflow."""
    table = lake.read_table(spec.name, "training_set", candidate.training_set_version)
    test = table[table["split"] == "test"]
    y = test[spec.target].to_numpy()
    model = mlflow.load_model(spec.name, candidate.model_version, trusted_types(spec))
    predictions = score(model, model_inputs(test, spec))
    champion = mlflow.alias_version(spec.name, CHAMPION)
    champion_metrics = None
    if champion and champion != candidate.model_version:
        champion_model = mlflow.load_model(spec.name, champion, trusted_types(spec))
        champion_metrics = catalogue.compute_metrics(spec, y, score(champion_model, model_inputs(test, spec)))
    assessment = assess(spec, y, predictions, test[spec.sensitive_attributes], champion_metrics, champion)
    training_data = lake.read_json(spec.name, "training_set", f"{candidate.training_set_version}.summary")
    # The files are made in a local staging folder (Evidently, matplotlib and MLflow's artifact
    # upload all want local files), then published to the reports folder, which may be object storage.
    with tempfile.TemporaryDirectory(prefix="ml-platform-report-") as folder:
        staging = Path(folder)
        pngs = plots.evaluation_plots(
            spec, y, predictions, assessment["metrics"], assessment["calibration"], assessment["fairness"]
        )
        plot_files = plots.write_plots(pngs, staging, prefix=f"evaluation_v{candidate.model_version}_")
        report = {
            "model_version": candidate.model_version,
            "evaluated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "test_rows": len(test),
            **assessment,
            "champion_version": champion,
            "champion_metrics": champion_metrics,
            "training_data": training_data,
            "plots": {name: str(path) for name, path in plot_files.items()},
            "links": report_links(spec, candidate),
            "lineage": {
                "dagster_run_id (evaluation)": dagster_run_id,
                "dagster_run_id (training)": candidate.dagster_run_id,
                "mlflow_run_id": candidate.run_id,
                "model_uri": candidate.model_uri,
                "training_set_version (data version)": candidate.training_set_version,
                "dataset_digest": candidate.dataset_digest,
                "code_version": code_version(),
                "spec_hash": spec.spec_hash,
            },
        }
        report["model_card"] = write_model_card(
            spec, report, staging, lambda name: artifact_url(candidate.run_id, f"model_card/{name}")
        )
        report = published(report, upload_folder(staging, lake.reports_dir(spec.name)))
        log_evaluation(spec, candidate, report, mlflow, staging)
    return EvaluationReport.model_validate(report)


def published(report: dict, files: dict[str, StoragePath]) -> dict:
    """The report naming each of its files where it was published (``files``: name -> path), not where it was made."""

    def where(made: str) -> str:
        return str(files[PurePath(made).name])

    card = report["model_card"]
    return {
        **report,
        "plots": {name: where(path) for name, path in report["plots"].items()},
        "model_card": {**card, "html": where(card["html"]), "md": where(card["md"])},
    }


def report_links(spec: ModelSpec, candidate: Candidate) -> dict[str, str]:
    """Where a person opens the run, the version and the card: MLflow UI URLs,
    which work from any browser, where a local file path works only on the machine that wrote it."""
    run = run_url(candidate.experiment_id, candidate.run_id)
    card = f"model_card_v{candidate.model_version}.html"
    return {
        "mlflow_run": run,
        "mlflow_model_version": model_version_url(spec.name, candidate.model_version),
        "model_card": run_url(candidate.experiment_id, candidate.run_id, f"model_card/{card}"),
    }


def write_model_card(spec: ModelSpec, report: dict, folder, image_url: Callable[[str], str] | None = None) -> dict:
    """The card as HTML (plots embedded) and Markdown (plots linked beside it) in ``folder``.

    ``markdown`` is the registry's copy (the version description, the Dagster metadata): its
    images point to ``image_url(file name)``, the run's artifacts in the MLflow UI, since a
    relative file name means nothing on those pages.
    """
    content = model_card.blocks(spec, report)
    html_path = folder / f"model_card_v{report['model_version']}.html"
    md_path = html_path.with_suffix(".md")
    folder.mkdir(parents=True, exist_ok=True)
    md_path.write_text(model_card.to_markdown(content), encoding="utf-8")
    html_path.write_text(model_card.to_html(content), encoding="utf-8")
    return {"markdown": model_card.to_markdown(content, image_url), "html": str(html_path), "md": str(md_path)}


def log_evaluation(spec: ModelSpec, candidate: Candidate, report: dict, mlflow: MLflowTracking, staging: Path) -> None:
    """Test metrics, reports and the model card on the candidate's run; the card on its model version.

    The files are uploaded from ``staging``, the local folder they were made in: MLflow logs
    local files, wherever the report names them as published.
    """
    from mlflow.entities import Metric

    client, run_id = mlflow.client(), candidate.run_id

    def local(stored: str) -> str:
        return str(staging / PurePath(stored).name)

    # One batch: a log_metric call per metric is a store transaction each.
    now = int(time.time() * 1000)
    metrics = [Metric(f"test_{k}", v, now, 0) for k, v in report["metrics"].items() if not math.isnan(v)]
    client.log_batch(run_id, metrics=metrics)
    client.log_artifact(run_id, local(report["model_card"]["html"]), artifact_path="model_card")
    client.log_artifact(run_id, local(report["model_card"]["md"]), artifact_path="model_card")
    for path in report.get("plots", {}).values():
        # Beside the card, so the Markdown card's relative image links resolve in the artifact view too.
        client.log_artifact(run_id, local(path), artifact_path="model_card")
    client.log_text(run_id, json.dumps(report, indent=2, default=str), "evaluation/report.json")
    # MLflow renders a version's description as Markdown: the card is on the registry page itself.
    client.update_model_version(
        spec.name, candidate.model_version, description=registry_description(report["model_card"]["markdown"], report)
    )


# MLflow's SQL stores keep a version's description in VARCHAR(5000): PostgreSQL refuses longer
# text (SQLite does not check), so a longer card is cut at a section boundary.
DESCRIPTION_LIMIT = 5000


def registry_description(card: str, report: dict) -> str:
    """The card for the registry page, within MLflow's length limit, ending with a link to the whole card."""
    if len(card) <= DESCRIPTION_LIMIT:
        return card
    tail = f"\n\n*The card continues in the run's artifacts: [full model card]({report['links']['model_card']}).*"
    cut = card[: DESCRIPTION_LIMIT - len(tail)]
    section = cut.rfind("\n#")
    return (cut[:section] if section > 0 else cut) + tail
