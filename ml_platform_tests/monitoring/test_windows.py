"""Monitoring assets on real data: the log of a served model, a known drift, outcomes, the retrain it leads to."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from dagster import AssetKey, build_sensor_context, materialize

from ml_platform.data.simulators import seed_landing, simulate
from ml_platform.data.synthetic import generate_readmission
from ml_platform.defs.resources import platform_resources
from ml_platform.defs.triggers import MONITORING_ASSETS, REASON_TAG
from ml_platform.evaluation.plots import PNG_SIGNATURE
from ml_platform.serving.models import outputs, records_frame
from ml_platform.spec import get_spec
from ml_platform.store import predictions as prediction_log
from ml_platform.training.pipeline import score, trusted_types
from ml_platform_tests.conftest import Platform, dagster_instance, spec_folder, stores_for, use_home
from ml_platform_tests.defs.test_pipeline import land_and_run_batches, materialization

pytestmark = pytest.mark.e2e

MODEL = "readmission_risk"
CALM, DRIFTED, LATER = "2026-11-20-08:00", "2026-11-20-09:00", "2026-11-20-10:00"
# Shift 2 moves age, glucose, creatinine, prior admissions and (through them) comorbidity
# and medications: see docs/synthetic_data.md.
SHIFTED_INPUTS = {"age", "glucose", "creatinine", "prior_admissions_12m", "charlson_index"}


def log_window(platform, partition: str, rows: int, seed: int, with_outcomes: bool = False, **knobs) -> list[dict]:
    """Answers of the serving champion to generated encounters, logged inside the window, as the endpoint logs them."""
    spec = get_spec(MODEL)
    resources = platform_resources(platform.home)
    version = resources["mlflow"].alias_version(MODEL, "champion")
    model = resources["mlflow"].load_model(MODEL, version, trusted_types(spec))
    frame = generate_readmission(rows, seed=seed, **knobs)
    frame["admit_date"] = frame["admit_date"].astype(str)
    truth = frame.pop(spec.target)
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    answers = outputs(spec, score(model, records_frame(spec, records)))
    start = datetime.strptime(partition, "%Y-%m-%d-%H:%M")
    hasher = prediction_log.IdHasher(prediction_log.id_hash_key(platform.home))
    rows_ = [
        prediction_log.prediction_row(
            spec, hasher, version, "champion", record, answer, 5.0, created_at=start + timedelta(seconds=i % 3000)
        )
        for i, (record, answer) in enumerate(zip(records, answers))
    ]
    engine = resources["database"].engine()
    prediction_log.write_predictions(engine, rows_)
    if with_outcomes:
        prediction_log.write_outcomes(
            engine,
            [
                {"model": MODEL, "prediction_id": row["id"], "record_hash": None, "outcome": float(y),
                 "observed_at": None, "received_at": prediction_log.now(), "source": "api"}
                for row, y in zip(rows_, truth)
            ],
        )  # fmt: skip
    return rows_


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def monitored(tmp_path_factory, request):
    """A trained readmission champion, then a calm window, a drifted one, and a drifted one with outcomes.

    Once with every store on SQLite, once on PostgreSQL.
    """
    root = tmp_path_factory.mktemp(f"monitoring-{request.param}")
    stores = stores_for(request.param, request)
    with pytest.MonkeyPatch.context() as monkeypatch:
        home = use_home(root, monkeypatch, stores)
        with dagster_instance(root, stores) as instance:
            # No cooldown: the drift that follows the first training may retrain at once.
            specs = spec_folder(root / "specs", MODEL, monitoring={"retrain": {"cooldown_minutes": 0}})
            monkeypatch.setenv("ML_PLATFORM_SPECS", str(specs))
            platform = Platform(home, instance, specs_dir=specs)
            spec = get_spec(MODEL)
            seed_landing(spec, home)
            simulate(spec, home, rows=4_000)  # enough test rows per group for the fairness gate's bounds
            land_and_run_batches(platform, spec)
            assert platform.run_training(MODEL).success
            log_window(platform, CALM, 1_500, seed=31)
            log_window(platform, DRIFTED, 1_500, seed=32, covariate_shift=2.0)
            log_window(platform, LATER, 1_500, seed=33, covariate_shift=2.0, with_outcomes=True)
            results = {window: run_monitoring(platform, window) for window in (CALM, DRIFTED, LATER)}
            yield platform, results


def run_monitoring(platform, window):
    return materialize(
        list(platform.defs.assets),
        selection=[AssetKey([MODEL, a]) for a in MONITORING_ASSETS],
        partition_key=window,
        instance=platform.instance,
        resources=platform.defs.resources,
    )


def test_production_inputs_hold_the_window_and_no_identifier(monitored):
    platform, results = monitored
    inputs = materialization(results[DRIFTED], MODEL, "production_inputs")
    assert inputs["dagster/row_count"] == 1_500 and inputs["versions"] == {"1": 1_500}
    table = platform_resources(platform.home)["lake"].read_table(MODEL, "production_inputs", DRIFTED)
    assert {"encounter_id", "patient_id"}.isdisjoint(table.columns) and table["record_hash"].str.len().eq(64).all()


def test_no_shift_no_drifted_inputs_and_a_known_shift_flagged(monitored):
    _, results = monitored
    calm = materialization(results[CALM], MODEL, "drift_report")
    assert calm["drifted"] is False and calm["drifted_columns"] == []
    shifted = materialization(results[DRIFTED], MODEL, "drift_report")
    assert shifted["drifted"] is True
    assert SHIFTED_INPUTS <= set(shifted["drifted_columns"]), shifted["drifted_columns"]
    assert {"sex", "admission_type"}.isdisjoint(shifted["drifted_columns"])  # untouched by the knob
    assert shifted["prediction_drifted"] is True  # older, sicker patients get higher risks
    assert shifted["score/age"] > 0.1 and shifted["reference_version"] == "1"
    assert str(shifted["report"]).endswith(f"drift_{DRIFTED}.html")
    # The drift scores against their thresholds, as an image the UI renders inline.
    png = base64.b64decode(str(shifted["plots"]).split("(data:image/png;base64,", 1)[1].split(")", 1)[0])
    assert png.startswith(PNG_SIGNATURE)
    assert png == Path(str(shifted["report"])).with_suffix(".png").read_bytes()


def test_live_performance_is_estimated_until_outcomes_arrive_then_measured(monitored):
    _, results = monitored
    estimated = materialization(results[CALM], MODEL, "live_performance")
    assert estimated["basis"] == "estimated" and estimated["outcomes"] == 0
    assert 0.6 < estimated["live/roc_auc"] < 0.9
    measured = materialization(results[LATER], MODEL, "live_performance")
    assert measured["basis"] == "measured" and measured["outcomes"] == 1_500
    assert measured["live/roc_auc"] == measured["measured/roc_auc"]
    # Covariate shift keeps the outcome model: the calibrated estimate stays near the measured value.
    assert abs(measured["estimated/roc_auc"] - measured["measured/roc_auc"]) < 0.05
    assert set(measured["groups"]) >= {"sex=F", "sex=M", "race_ethnicity=White"}
    assert measured["evaluation/roc_auc"] > 0.65


def test_sustained_drift_retrains_on_labelled_production_rows(monitored):
    platform, _ = monitored
    sensor = platform.defs.get_sensor_def(f"{MODEL}_drift")
    result = sensor(build_sensor_context(instance=platform.instance))
    [request] = result.run_requests
    assert f"({DRIFTED} .. {LATER})" in request.tags[REASON_TAG] and "age" in request.tags[REASON_TAG]
    retrain = materialize(
        list(platform.defs.assets),
        selection=[AssetKey([MODEL, "training_set"]), AssetKey([MODEL, "candidate_model"])],
        instance=platform.instance,
        resources=platform.defs.resources,
        tags=request.tags,
    )
    training = materialization(retrain, MODEL, "training_set")
    assert training["rows/production"] == 1_500 and training["outcomes_seen"] == 1_500
    candidate = materialization(retrain, MODEL, "candidate_model")
    assert candidate["model_version"] == "2"
    assert platform_resources(platform.home)["lake"].has_table(MODEL, "reference", "v2")
