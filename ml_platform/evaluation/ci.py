"""``ml-platform ci``: what a code or spec change does to each model, before it merges (CD4ML).

For every model: the data contract on a fixed, versioned reference sample, the candidate trained
on it, and the evaluation gates of the pipeline (``report.assess``) against the current champion:
scored on the same rows when the registry is reachable, else a committed baseline of metrics.
Nothing is registered where it could be deployed: the candidate is logged to a throwaway MLflow
store in a temporary folder, which is deleted with everything else the run wrote there.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ml_platform import metrics as catalogue
from ml_platform.data.breast_cancer import breast_cancer_frame
from ml_platform.data.contracts import apply_contract
from ml_platform.data.features import content_hash, feature_table
from ml_platform.data.landing import write_batch
from ml_platform.data.simulators import SEED_BATCHES, SEED_ROWS
from ml_platform.data.synthetic import generate_readmission
from ml_platform.evaluation import plots
from ml_platform.evaluation.report import assess
from ml_platform.evaluation.verdicts import Verdict, json_safe
from ml_platform.settings import code_version, mlflow_tracking_uri, platform_home
from ml_platform.spec import ModelSpec
from ml_platform.store.lake import Lake
from ml_platform.store.objects import uri
from ml_platform.store.registry import MLflowTracking
from ml_platform.store.tags import CHAMPION
from ml_platform.training.pipeline import model_inputs, score
from ml_platform.training.registration import register_candidate
from ml_platform.training.split import assign_split

# The reference sample is versioned by these constants and the generator's code: change one
# and the sample (its digest in every report and baseline) changes with it.
SAMPLE_SEED = 20_260_101
SAMPLE_START = "2026-01-01"
# Fast by default (a readmission model trains in seconds) yet about 3,200 test rows: enough for the
# fairness gate's 500-row minimum in the two largest race/ethnicity groups, as the spec intends.
SAMPLE_ROWS = 16_000
FULL_ROWS = SEED_ROWS * SEED_BATCHES["readmission"]  # what `ml-platform seed` lands
STEPS = ("reference sample", "data contract", "training", "evaluation", "plots")
CHAMPION_SOURCES = ("auto", "registry", "baseline")


@dataclass(frozen=True)
class CiOptions:
    """What to run: ``rows`` None means the full size; ``plots_dir`` is where the PNGs go."""

    baseline_dir: Path
    plots_dir: Path
    rows: int | None = SAMPLE_ROWS
    changed_only: bool = False
    champion_from: str = "auto"


def reference_sample(spec: ModelSpec, rows: int | None) -> pd.DataFrame:
    """The fixed sample a model is checked on: its simulator with a fixed seed (``rows`` None = full size)."""
    if spec.source.simulator == "readmission":
        return generate_readmission(rows or FULL_ROWS, seed=SAMPLE_SEED, start_date=SAMPLE_START, days=90)
    if spec.source.simulator == "breast_cancer":
        frame = breast_cancer_frame()  # 569 real samples: the full size is already small
        return frame if rows is None or rows >= len(frame) else frame.sample(rows, random_state=SAMPLE_SEED)
    raise ValueError(
        f"model '{spec.name}' has no simulator (source.simulator), so ml-platform ci has no reference sample for it"
    )


def run_ci(specs: list[ModelSpec], options: CiOptions, on_step: Callable[[str, str], None] | None = None) -> dict:
    """Check, train and gate every model in a throwaway MLflow store; the JSON-safe result of all."""
    step = on_step or (lambda model, name: None)
    with tempfile.TemporaryDirectory(prefix="ml-platform-ci-") as scratch:
        root = Path(scratch)
        tracking = MLflowTracking(
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=(root / "mlartifacts").as_uri()
        )
        lake = Lake(home=str(root), storage=str(root))  # throwaway, on local disk whatever the storage URL
        models = [_model(spec, options, tracking, lake, step) for spec in specs]
    return json_safe(
        {
            "passed": all(m["passed"] for m in models),
            "code_version": code_version(),
            "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "sample": {"rows": options.rows, "mode": "full" if options.rows is None else "sampled"},
            "models": models,
        }
    )


def _model(spec: ModelSpec, options: CiOptions, tracking: MLflowTracking, lake: Lake, step) -> dict:
    """One model's check: contract, training, gates, plots (or why it was skipped)."""
    started = time.monotonic()
    baseline = read_baseline(options.baseline_dir, spec.name)
    entry = {"model": spec.name, "spec_hash": spec.spec_hash, "baseline_spec_hash": (baseline or {}).get("spec_hash")}
    if options.changed_only and baseline and baseline.get("spec_hash") == spec.spec_hash:
        return {**entry, "skipped": "spec unchanged since the baseline", "passed": True}
    step(spec.name, STEPS[0])
    sample = reference_sample(spec, options.rows)
    entry["sample"] = {"rows": len(sample), "digest": content_hash(sample), "seed": SAMPLE_SEED}
    step(spec.name, STEPS[1])
    contract, valid = check_contract(spec, sample, Path(lake.home) / "landing")
    entry["contract"] = contract
    if not contract["verdict"]["passed"]:
        return {**entry, "gates": [contract["verdict"]], "passed": False, "seconds": time.monotonic() - started}
    table = training_table(spec, valid)
    version = content_hash(table)
    lake.write_table(table, spec.name, "training_set", version)
    step(spec.name, STEPS[2])
    candidate, pipeline = register_candidate(
        spec, table, version, uri(lake.table_path(spec.name, "training_set", version)), tracking, None
    )
    step(spec.name, STEPS[3])
    test = table[table["split"] == "test"]
    y, predictions = test[spec.target].to_numpy(), score(pipeline, model_inputs(test, spec))
    champion = champion_reference(spec, test, baseline, entry["sample"]["digest"], options.champion_from)
    assessment = assess(spec, y, predictions, test[spec.sensitive_attributes], champion["metrics"], champion["version"])
    step(spec.name, STEPS[4])
    pngs = plots.evaluation_plots(
        spec, y, predictions, assessment["metrics"], assessment["calibration"], assessment["fairness"]
    )
    files = plots.write_plots(pngs, options.plots_dir / spec.name)
    gates = [contract["verdict"], *assessment["gates"]]
    return {
        **entry,
        "rows": {s: int((table["split"] == s).sum()) for s in ("train", "validation", "test")},
        "training_set_version": version,
        "validation_metrics": candidate.validation_metrics,
        **assessment,
        "gates": gates,
        "champion": champion,
        "delta": deltas(assessment["metrics"], champion["metrics"]),
        "plots": {name: str(path) for name, path in files.items()},
        "passed": all(g["passed"] for g in gates),
        "seconds": time.monotonic() - started,
    }


def check_contract(spec: ModelSpec, sample: pd.DataFrame, folder: Path) -> tuple[dict, pd.DataFrame]:
    """The data contract on the sample, as a landed batch file goes through it; the valid rows.

    A sample the contract rejects as a whole fails CI: the spec would reject the data it is
    meant for. Quarantined rows are reported by rule; the clean sample should have none.
    """
    path = write_batch(sample, folder, f"{spec.name}_reference")
    result = apply_contract(path, spec, batch="ci_reference")
    quarantined = int(result.quarantine["row"].nunique()) if len(result.quarantine) else 0
    passed = result.passed and len(result.valid) > 0
    if passed:
        reason = (
            f"{len(result.valid)} of {result.rows_read} reference rows meet the contract ({quarantined} quarantined)"
        )
    else:
        reason = "the contract rejects the reference sample: " + ("; ".join(result.batch_problems) or "no valid rows")
    verdict = Verdict("contract.reference_sample", passed, float(len(result.valid)), None, None, reason)
    summary = {
        "rows_read": result.rows_read,
        "valid_rows": len(result.valid),
        "quarantined_rows": quarantined,
        "by_rule": result.counts_by_rule() if len(result.quarantine) else {},
        "problems": result.batch_problems,
        "verdict": verdict.as_metadata(),
    }
    return summary, result.valid


def training_table(spec: ModelSpec, valid: pd.DataFrame) -> pd.DataFrame:
    """Features of the valid rows, split exactly as the training_set asset splits them."""
    table = feature_table(valid, spec).assign(batch="ci_reference")
    table["split"] = assign_split(table, spec)
    return table


def champion_reference(spec: ModelSpec, test: pd.DataFrame, baseline: dict | None, digest: str, source: str) -> dict:
    """What the candidate is compared with: the registry's champion scored on the same test rows when
    the registry is reachable (``auto`` or ``registry``), else the committed baseline's metrics."""
    notes = []
    if source in ("auto", "registry"):
        found = registry_champion(spec, test)
        if found.get("metrics") is not None:
            return found
        notes.append(found["note"])
    if source in ("auto", "baseline") and baseline:
        note = f"baseline written {baseline.get('written_at', '?')} at code {baseline.get('code_version', '?')}"
        if baseline.get("sample", {}).get("digest") != digest:
            note += "; computed on another reference sample (other --rows?), so deltas are indicative only"
        return {"source": "baseline", "version": "baseline", "metrics": baseline["metrics"], "note": note}
    notes.append("no baseline committed for this model (ml-platform ci --write-baseline writes one)")
    return {"source": "none", "version": None, "metrics": None, "note": "; ".join(notes)}


def registry_champion(spec: ModelSpec, test: pd.DataFrame) -> dict:
    """The champion of the platform's registry on the CI test rows; read only, never written."""
    uri = mlflow_tracking_uri(platform_home())
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return {"note": f"no registry at {uri}"}  # opening it would create one: the registry is never written
    try:
        registry = MLflowTracking(tracking_uri=uri, artifact_root=str(platform_home()))
        version = registry.alias_version(spec.name, CHAMPION)
        if version is None:
            return {"note": f"the registry has no {CHAMPION} of {spec.name}"}
        model = registry.load_model(spec.name, version)
        metrics = catalogue.compute_metrics(spec, test[spec.target].to_numpy(), score(model, model_inputs(test, spec)))
    except Exception as exc:  # an unreachable or incompatible registry falls back to the baseline, visibly
        return {"note": f"registry champion unavailable ({type(exc).__name__}: {str(exc)[:200]})"}
    note = f"champion version {version} of {uri}, scored on the same test rows"
    return {"source": "registry", "version": version, "metrics": metrics, "note": note}


def deltas(metrics: dict, reference: dict | None) -> dict[str, float | None]:
    """Candidate minus champion (or baseline) per metric; None where either is unknown."""
    if not reference:
        return {}
    out = {}
    for name, value in metrics.items():
        other = reference.get(name)
        out[name] = None if value is None or other is None else float(value) - float(other)
    return json_safe(out)


def read_baseline(folder: Path, model: str) -> dict | None:
    path = folder / f"{model}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_baselines(result: dict, folder: Path) -> list[Path]:
    """Each trained model's metrics as its committed baseline (``<folder>/<model>.json``)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for m in result["models"]:
        if "metrics" not in m:
            continue
        baseline = {
            "model": m["model"],
            "spec_hash": m["spec_hash"],
            "code_version": result["code_version"],
            "written_at": result["generated_at"],
            "sample": m["sample"],
            "metrics": m["metrics"],
            "metric_ci": m["metric_ci"],
        }
        path = folder / f"{m['model']}.json"
        path.write_text(json.dumps(baseline, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def relative_to(path: str, folder: Path) -> str:
    """A path as a link from ``folder`` (the report's), so the report's links work wherever it is copied."""
    return os.path.relpath(path, folder)
