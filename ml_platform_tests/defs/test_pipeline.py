"""The whole graph of both shipped models, materialised on real MLflow (SQLite) and a real instance."""

from __future__ import annotations

import stat

import pandas as pd
import pytest
from dagster import AssetKey, materialize

from ml_platform.data.landing import write_batch
from ml_platform.data.raw import batch_key, sha256_of
from ml_platform.data.simulators import seed_landing
from ml_platform.data.synthetic import generate_readmission
from ml_platform.governance.audit import AuditTrail
from ml_platform.settings import get_settings, mlflow_tracking_uri
from ml_platform.spec import get_spec
from ml_platform.store.lake import Lake
from ml_platform.store.objects import is_local
from ml_platform_tests.conftest import Platform, dagster_instance, stores_for, use_home

pytestmark = pytest.mark.e2e


def land_and_run_batches(platform, spec) -> dict[str, object]:
    """Register every landed file as a batch and run it, as the new-data sensor would."""
    landing = spec.landing_dir(platform.home)
    keys = {batch_key(p.name, sha256_of(p)): p for p in sorted(landing.iterdir())}
    platform.register(spec.name, list(keys))
    return {key: platform.run_batch(spec.name, key) for key in keys}


def materialization(result, model, asset):
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey([model, asset])]
    assert events, f"{model}/{asset} was not materialised"
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


@pytest.fixture(scope="module", params=["sqlite", "postgres", "s3"])
def platform(tmp_path_factory, request):
    """One platform home per store for the module: the graph is trained once and inspected by each test.

    Once with every store (Dagster instance, MLflow, platform database) on SQLite, once on PostgreSQL,
    once with SQLite databases and everything file-shaped (lake, raw copies, reports, audit
    checkpoints, MLflow artifacts) in a bucket of an S3-compatible server.
    """
    root = tmp_path_factory.mktemp(f"pipeline-{request.param}")
    stores = stores_for(request.param, request)
    with pytest.MonkeyPatch.context() as monkeypatch:
        home = use_home(root, monkeypatch, stores)
        with dagster_instance(root, stores) as instance:
            yield Platform(home, instance)


@pytest.fixture(scope="module")
def trained(platform):
    """Both models seeded; readmission also gets a corrupt batch and a file that is not a table."""
    readmission, breast_cancer = get_spec("readmission_risk"), get_spec("breast_cancer_diagnosis")
    for spec in (readmission, breast_cancer):
        seed_landing(spec, platform.home)
    landing = readmission.landing_dir(platform.home)
    write_batch(generate_readmission(1000, seed=9, corrupt_share=0.1), landing, "batch_0003")
    (landing / "export_notes.xlsx").write_bytes(b"PK\x03\x04 not a table")
    batch_runs = {spec.name: land_and_run_batches(platform, spec) for spec in (readmission, breast_cancer)}
    training_runs = {spec.name: platform.run_training(spec.name) for spec in (readmission, breast_cancer)}
    return batch_runs, training_runs


def test_every_good_batch_flows_to_features_and_a_bad_file_is_stopped(platform, trained):
    batch_runs, _ = trained
    runs = batch_runs["readmission_risk"]
    bad = [k for k in runs if k.startswith("export_notes.xlsx")]
    assert len(bad) == 1 and not runs[bad[0]].success
    check = runs[bad[0]].get_asset_check_evaluations()[0]
    assert not check.passed
    assert "export_notes.xlsx" in check.description and "'.xlsx' is not a supported format" in check.description
    lake = Lake(home=str(platform.home))
    assert not lake.has_table("readmission_risk", "features", bad[0])
    # The raw copy of even a rejected file is kept, byte for byte and read-only.
    raw = lake.raw_dir("readmission_risk", bad[0]) / "export_notes.xlsx"
    assert raw.read_bytes() == b"PK\x03\x04 not a table"
    if is_local(raw):  # object storage has no file modes: its immutability is the digest check on every read
        assert not raw.stat().st_mode & stat.S_IWUSR
    good = [k for k in runs if not k.startswith("export_notes")]
    assert all(runs[k].success for k in good)
    assert all(lake.has_table("readmission_risk", "features", k) for k in good)


def test_corrupt_rows_are_quarantined_with_rule_and_pointer(platform, trained):
    batch_runs, _ = trained
    key = next(k for k in batch_runs["readmission_risk"] if k.startswith("batch_0003"))
    quarantine = Lake(home=str(platform.home)).read_table("readmission_risk", "quarantine", key)
    assert 60 <= quarantine["row"].nunique() <= 140  # 10% of 1,000 rows, give or take sampling
    assert {"min", "max", "allowed", "type", "not_null", "unique"} & set(quarantine["rule"]) >= {"type", "unique"}
    assert quarantine["message"].str.startswith("batch_0003.csv: row ").all()
    assert quarantine["line"].notna().all() and quarantine["record_hash"].notna().all()
    assert "record" not in quarantine and "value" not in quarantine
    metadata = materialization(batch_runs["readmission_risk"][key], "readmission_risk", "quarantine")
    by_rule = {k.split("/", 1)[1]: v for k, v in metadata.items() if k.startswith("quarantined_by_rule/")}
    assert by_rule == quarantine["rule"].value_counts().to_dict()
    validated = materialization(batch_runs["readmission_risk"][key], "readmission_risk", "validated_records")
    assert validated["dagster/row_count"] + quarantine["row"].nunique() == 1000
    raw = materialization(batch_runs["readmission_risk"][key], "readmission_risk", "raw_batches")
    assert raw["dagster/row_count"] == 1000
    assert raw["sha256"].startswith(key.rsplit("-", 1)[1])


def test_training_uses_only_valid_batches_and_registers_a_tagged_version(platform, trained, readmission):
    _, training_runs = trained
    result = training_runs["readmission_risk"]
    assert result.success
    training = materialization(result, "readmission_risk", "training_set")
    assert training["batches"] == 3  # two seeded batches and the corrupt one's valid rows; not the .xlsx
    assert training["dagster/row_count"] > 10_000 - 150
    candidate = materialization(result, "readmission_risk", "candidate_model")
    assert candidate["mlflow_model_version"].endswith(f"/models/readmission_risk/versions/{candidate['model_version']}")
    report = materialization(result, "readmission_risk", "evaluation_report")
    assert 0.6 < report["test/roc_auc"] < 0.95
    assert 0.0 < report["test/brier"] < 0.2

    from mlflow import MlflowClient

    client = MlflowClient(
        tracking_uri=mlflow_tracking_uri(platform.home), registry_uri=mlflow_tracking_uri(platform.home)
    )
    version = client.get_model_version("readmission_risk", candidate["model_version"])
    assert version.tags["ml_platform.data_version"] == training["version"]
    assert version.tags["ml_platform.spec_hash"] == readmission.spec_hash
    assert version.tags["dagster.run_id"] == result.run_id
    assert version.tags["ml_platform.code_version"]
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["estimator.class"] == readmission.estimator.class_path
    assert run.data.metrics["test_roc_auc"] == pytest.approx(report["test/roc_auc"])
    assert "validation_roc_auc" in run.data.metrics
    assert run.inputs.dataset_inputs[0].dataset.digest == version.tags["ml_platform.dataset_digest"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/report.json" in artifacts


def test_both_models_pass_their_gates_and_become_champion(platform, trained):
    _, training_runs = trained
    for model, result in training_runs.items():
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        endpoint = checks.pop("serving_endpoint")
        assert checks and all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items()}
        # No endpoint runs beside this graph: the deployment says nobody verified it, as a warning.
        assert not endpoint.passed and endpoint.severity.value == "WARN"
        assert "no serving endpoint configured" in endpoint.description
        report = materialization(result, model, "evaluation_report")
        assert report["champion_version"] == "none"  # the first version has nobody to beat
        deployment = materialization(result, model, "deployment")
        assert deployment["alias"] == "champion" and deployment["version"] == report["model_version"]


def test_every_decision_is_in_the_audit_trail(platform, trained):
    from ml_platform.settings import database_url
    from ml_platform.store.database import PlatformDatabase

    audit = AuditTrail(PlatformDatabase(url=database_url(platform.home)).engine())
    events = [r.event for r in audit.timeline("readmission_risk")]
    assert events.count("batch_ingested") == 3 and events.count("batch_rejected") == 1
    assert events.index("model_trained") < events.index("gate_passed") < events.index("promoted")
    assert "gate_failed" not in events
    rejected = next(r for r in audit.timeline("readmission_risk") if r.event == "batch_rejected")
    assert rejected.details["file"] == "export_notes.xlsx" and len(rejected.details["sha256"]) == 64
    assert audit.verify() == []


def test_the_model_card_is_written_and_on_the_registry(platform, trained, readmission):
    _, training_runs = trained
    report = materialization(training_runs["readmission_risk"], "readmission_risk", "evaluation_report")
    card = report["model_card_markdown"]
    for section in (
        "## Intended use",
        "## Out-of-scope use",
        "## Training data",
        "## Metrics on the held-out",
        "## Calibration",
        "## Performance by race_ethnicity",
        "## Gates",
        "## Caveats",
        "## Lineage",
    ):
        assert section in card, section
    assert readmission.intended_use.split()[0] in card
    assert "fairness.race_ethnicity.sensitivity" in card and "champion.roc_auc" in card
    from mlflow import MlflowClient

    from ml_platform.evaluation.report import registry_description

    uri = mlflow_tracking_uri(platform.home)
    version = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version(
        "readmission_risk", report["model_version"]
    )
    # The registry page shows the card, cut at a section with a link to the whole card when
    # it is longer than MLflow's SQL stores hold (PostgreSQL enforces 5,000 characters).
    assert version.description == registry_description(card, {"links": {"model_card": report["model_card"]}})
    assert version.description.startswith(card[:2000])
    assert version.tags["ml_platform.gates"] == "passed"


def test_the_evaluation_shows_plots_and_links_people_can_click(platform, trained):
    _, training_runs = trained
    report = materialization(training_runs["readmission_risk"], "readmission_risk", "evaluation_report")
    candidate = materialization(training_runs["readmission_risk"], "readmission_risk", "candidate_model")
    plots = str(report["plots"])
    for title in ("ROC curve", "Calibration (reliability) curve", "Performance by race_ethnicity"):
        assert f"![{title}](data:image/png;base64," in plots
    version = report["model_version"]
    assert report["mlflow_run"] == candidate["mlflow_run"] and report["mlflow_run"].startswith("http")
    assert report["mlflow_model_version"].endswith(f"/#/models/readmission_risk/versions/{version}")
    assert report["model_card"] == f"{report['mlflow_run']}/artifacts/model_card/model_card_v{version}.html"
    # The card links its plots, which sit beside it among the run's artifacts.
    assert f"get-artifact?path=model_card/evaluation_v{version}_calibration.png" in str(report["model_card_markdown"])
    from mlflow import MlflowClient

    uri = mlflow_tracking_uri(platform.home)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = client.get_model_version("readmission_risk", version).run_id
    artifacts = {a.path for a in client.list_artifacts(run_id, "model_card")}
    assert f"model_card/evaluation_v{version}_roc.png" in artifacts
    html = (Lake(home=str(platform.home)).reports_dir("readmission_risk") / f"model_card_v{version}.html").read_text()
    assert html.count("<img src='data:image/png;base64,") == 5


def test_the_evidently_report_is_its_own_asset_logged_on_the_candidate_run(platform, trained):
    """Off the path to deployment (no gate reads it), yet linked from the candidate's MLflow run."""
    _, training_runs = trained
    candidate = materialization(training_runs["readmission_risk"], "readmission_risk", "candidate_model")
    assert not [
        e
        for e in training_runs["readmission_risk"].get_asset_materialization_events()
        if e.asset_key == AssetKey(["readmission_risk", "evidently_report"])
    ]
    key = AssetKey(["readmission_risk", "evidently_report"])
    result = materialize(
        list(platform.defs.assets), selection=[key], instance=platform.instance, resources=platform.defs.resources
    )
    report = materialization(result, "readmission_risk", "evidently_report")
    version = candidate["model_version"]
    assert report["model_version"] == version and report["evidently/drifted_share"] >= 0.0
    assert report["evidently_report"] == f"{candidate['mlflow_run']}/artifacts/evaluation/evaluation_v{version}.html"
    from mlflow import MlflowClient

    uri = mlflow_tracking_uri(platform.home)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = client.get_model_version("readmission_risk", version).run_id
    assert f"evaluation/evaluation_v{version}.html" in {a.path for a in client.list_artifacts(run_id, "evaluation")}


def test_the_registered_model_scores_raw_feature_rows(platform, trained, breast_cancer):
    _, training_runs = trained
    candidate = materialization(training_runs["breast_cancer_diagnosis"], "breast_cancer_diagnosis", "candidate_model")
    from ml_platform.settings import mlflow_artifact_root
    from ml_platform.store.registry import MLflowTracking

    tracking = MLflowTracking(
        tracking_uri=mlflow_tracking_uri(platform.home), artifact_root=mlflow_artifact_root(platform.home)
    )
    from ml_platform.training.pipeline import trusted_types

    spec = get_spec("breast_cancer_diagnosis")
    model = tracking.load_model("breast_cancer_diagnosis", candidate["model_version"], trusted_types(spec))
    table = Lake(home=str(platform.home)).read_table(
        "breast_cancer_diagnosis", "training_set", candidate["training_set_version"]
    )
    test = table[table["split"] == "test"]
    predicted = model.predict(test[breast_cancer.pipeline_inputs])
    assert (pd.Series(predicted, index=test.index) == test["malignant"]).mean() > 0.9


def test_a_registered_model_scores_a_raw_contract_record_with_mlflow_alone(platform, trained, readmission):
    """The derived features are inside the model: mlflow.pyfunc scores records as the contract defines them."""
    import mlflow

    from ml_platform.serving.models import records_frame
    from ml_platform.spec.expressions import derive

    _, training_runs = trained
    version = materialization(training_runs["readmission_risk"], "readmission_risk", "candidate_model")["model_version"]
    mlflow.set_tracking_uri(mlflow_tracking_uri(platform.home))
    model = mlflow.pyfunc.load_model(f"models:/readmission_risk/{version}")
    # Contract records as a client posts them; the endpoint turns them into exactly this frame.
    records = generate_readmission(200, seed=21).to_dict("records")
    inputs = records_frame(readmission, records)
    assert list(inputs.columns) == readmission.pipeline_inputs
    assert not set(readmission.features.derived) & set(inputs.columns)  # no derived feature goes in
    via_pyfunc = pd.Series(model.predict(inputs)).to_numpy()

    # The fitted pipeline's later steps, given the derived features computed by hand, agree:
    # the model derived exactly what the spec says.
    pipeline = mlflow.sklearn.load_model(f"models:/readmission_risk/{version}")
    by_hand = derive(inputs, readmission.features.derived)[readmission.features.model_inputs]
    assert (pipeline[1:].predict(by_hand) == via_pyfunc).all()
    assert via_pyfunc.min() == 0 and via_pyfunc.max() == 1  # both outcomes predicted: a real model, not a constant
    single = records_frame(readmission, records[:1])
    assert model.predict(single)[0] == via_pyfunc[0]


def test_with_object_storage_every_file_is_in_the_bucket_and_none_on_local_disk(platform, trained, request):
    """Tables, raw copies, reports, checkpoints and MLflow artifacts are objects; the home keeps only local state."""
    storage = get_settings().storage_url
    if not storage or not storage.startswith("s3://"):
        pytest.skip("this home keeps its files on local disk")
    bucket, _, prefix = storage.removeprefix("s3://").partition("/")
    keys = [k.removeprefix(f"{prefix}/") for k in request.getfixturevalue("s3_server").keys(bucket, prefix)]
    _, training_runs = trained
    version = materialization(training_runs["readmission_risk"], "readmission_risk", "evaluation_report")[
        "model_version"
    ]
    expected = [
        "lake/readmission_risk/training_set/latest.json",
        "lake/readmission_risk/candidate_model/latest.json",
        f"lake/readmission_risk/reference/v{version}.parquet",
        f"reports/readmission_risk/model_card_v{version}.html",
        f"reports/readmission_risk/evaluation_v{version}_roc.png",
    ]
    assert set(expected) <= set(keys), sorted(set(expected) - set(keys))
    for prefixes in ("lake/readmission_risk/features/", "raw/readmission_risk/", "lake/breast_cancer_diagnosis/"):
        assert any(k.startswith(prefixes) for k in keys), prefixes
    assert any(k.startswith("audit/checkpoints/head-") for k in keys)
    assert any(k.startswith("mlartifacts/readmission_risk/") and k.endswith("MLmodel") for k in keys)
    for folder in ("lake", "raw", "reports", "audit/checkpoints", "mlartifacts", "outcomes"):
        assert not (platform.home / folder).exists(), folder
    report = Lake(home=str(platform.home)).read_json("readmission_risk", "evaluation_report", "latest")
    assert report["model_card"]["html"] == f"{storage}/reports/readmission_risk/model_card_v{version}.html"
