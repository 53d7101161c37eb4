"""The Evidently HTML report of a candidate: training against test data, with its predictions.

Built apart from the evaluation because no gate reads it: it is for a person to look at, and
its per-column charts cost seconds whatever the data size, which the path from a landed batch
to a deployed model should not pay.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel

from ml_platform.evaluation.report import REPORT_SAMPLE_ROWS, evidently_report
from ml_platform.spec import ModelSpec
from ml_platform.store.lake import Lake
from ml_platform.store.objects import atomic_write
from ml_platform.store.registry import MLflowTracking, run_url
from ml_platform.training.pipeline import model_inputs, score, trusted_types
from ml_platform.training.registration import Candidate


class DriftReport(BaseModel):
    """Where the candidate's Evidently report is and what its drift summary says."""

    model_version: str
    drift: dict[str, float]
    html: str
    link: str  # the report among the candidate's MLflow run artifacts, in the MLflow UI


def write_drift_report(spec: ModelSpec, candidate: Candidate, lake: Lake, mlflow: MLflowTracking) -> DriftReport:
    """Save the Evidently report for ``candidate`` and log it on the candidate's MLflow run.

    Both sides are sampled (``REPORT_SAMPLE_ROWS``) before scoring: the sample depends only on
    the row count, so scoring the sample alone gives the rows the whole-table scoring gave.
    """
    table = lake.read_table(spec.name, "training_set", candidate.training_set_version)
    model = mlflow.load_model(spec.name, candidate.model_version, trusted_types(spec))
    sides = {}
    for split in ("train", "test"):
        rows = table[table["split"] == split]
        sample = rows.sample(min(len(rows), REPORT_SAMPLE_ROWS), random_state=0)
        sides[split] = sample.assign(prediction=score(model, model_inputs(sample, spec)))
    html = lake.reports_dir(spec.name) / f"evaluation_v{candidate.model_version}.html"
    drift = {}

    def made_and_logged(local: Path) -> None:
        # Evidently and MLflow's upload want a local file; atomic_write publishes it in one piece
        # (a rename on disk, one PUT on object storage).
        drift.update(evidently_report(spec, sides["train"], sides["test"], local))
        if local.name == html.name:
            mlflow.client().log_artifact(candidate.run_id, str(local), artifact_path="evaluation")
            return
        logged = local.with_name(html.name)  # the artifact keeps the report's name
        shutil.copyfile(local, logged)
        mlflow.client().log_artifact(candidate.run_id, str(logged), artifact_path="evaluation")
        logged.unlink()

    atomic_write(html, made_and_logged)
    link = run_url(candidate.experiment_id, candidate.run_id, f"evaluation/{html.name}")
    return DriftReport(model_version=candidate.model_version, drift=drift, html=str(html), link=link)
