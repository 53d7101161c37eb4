"""The definitions as users meet them: loaded from workspace.yaml, one graph per spec."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DefaultSensorStatus
from dagster._core.workspace.load import load_workspace_process_context_from_yaml_paths

from ml_platform.data.synthetic import generate_readmission
from ml_platform.defs import build_definitions
from ml_platform.spec import SHIPPED_SPECS_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = ("readmission_risk", "breast_cancer_diagnosis")
STAGES = (
    "raw_batches",
    "validated_records",
    "quarantine",
    "features",
    "training_set",
    "candidate_model",
    "evaluation_report",
    "evidently_report",
    "deployment",
    "production_inputs",
    "drift_report",
    "live_performance",
)
# The lineage of every model: asset -> the assets it is computed from.
LINEAGE = {
    "raw_batches": set(),
    "validated_records": {"raw_batches"},
    "quarantine": {"raw_batches"},
    "features": {"validated_records"},
    "training_set": {"features"},
    "candidate_model": {"training_set"},
    "evaluation_report": {"candidate_model"},
    "evidently_report": {"candidate_model"},  # for people, off the path to deployment
    "deployment": {"evaluation_report"},
    "production_inputs": {"deployment"},
    "drift_report": {"production_inputs"},
    "live_performance": {"production_inputs"},
}
# The blocking checks each shipped model configures, by asset.
CHECKS = {
    "readmission_risk": {
        "validated_records": {"batch_schema"},
        "evaluation_report": {"quality_gates", "champion_comparison", "calibration", "fairness"},
    },
    "breast_cancer_diagnosis": {
        "validated_records": {"batch_schema"},
        "evaluation_report": {"quality_gates", "champion_comparison", "calibration"},
    },
}


def test_workspace_loads_like_dagster_dev(instance):
    """Load workspace.yaml through a code server, as `dagster dev -w workspace.yaml` does."""
    with load_workspace_process_context_from_yaml_paths(instance, [str(REPO_ROOT / "workspace.yaml")]) as context:
        request = context.create_request_context()
        assert request.get_code_location_error("ml_platform") is None
        repository = next(iter(request.get_code_location("ml_platform").get_repositories().values()))
        assets = {node.asset_key for node in repository.get_asset_node_snaps()}
        checks = {(c.asset_key, c.name) for c in repository.get_asset_check_node_snaps()}
        sensors = {s.name: s for s in repository.get_sensors()}
        schedules = list(repository.get_schedules())
    assert assets == {AssetKey([m, s]) for m in MODELS for s in STAGES}
    blocking = {(AssetKey([m, a]), c) for m in MODELS for a, names in CHECKS[m].items() for c in names}
    deployment_checks = {
        (AssetKey([m, "deployment"]), c) for m in MODELS for c in ("serving_endpoint", "registry_matches_audit")
    }
    assert checks == blocking | deployment_checks
    kinds = ("new_data", "automation", "drift", "degradation", "new_outcomes", "registry_reconciler")
    assert set(sensors) == {f"{m}_{kind}" for m in MODELS for kind in kinds}
    assert {s.name for s in schedules} == {f"{m}_monitoring_schedule" for m in MODELS}
    # Sensors are on by default: new data flows without anyone clicking.
    assert all(s.default_status == DefaultSensorStatus.RUNNING for s in sensors.values())


@pytest.fixture(scope="module")
def graph():
    return build_definitions().resolve_asset_graph()


@pytest.mark.parametrize("model", MODELS)
def test_each_model_has_the_lifecycle_lineage(graph, model):
    for stage, parents in LINEAGE.items():
        node = graph.get(AssetKey([model, stage]))
        assert node.parent_keys == {AssetKey([model, p]) for p in parents}, stage
        assert node.group_name == model
        assert node.kinds, f"{stage} has no kinds"
        assert len(node.description or "") > 40, f"{stage} needs a description that reads well in the UI"


@pytest.mark.parametrize("model", MODELS)
def test_batch_stages_are_partitioned_by_batch_and_training_is_automated(graph, model):
    for stage in ("raw_batches", "validated_records", "quarantine", "features"):
        assert graph.get(AssetKey([model, stage])).partitions_def.name == f"{model}_batches"
    for stage in ("training_set", "candidate_model", "evaluation_report", "evidently_report", "deployment"):
        node = graph.get(AssetKey([model, stage]))
        assert node.partitions_def is None
        assert node.automation_condition is not None
    # Monitoring runs per window, on the monitoring schedule (hourly for the shipped specs).
    for stage in ("production_inputs", "drift_report", "live_performance"):
        node = graph.get(AssetKey([model, stage]))
        assert node.partitions_def.get_cron_schedule() == "0 * * * *"
        assert node.automation_condition is None


def test_blocking_checks_guard_features_and_promotion(graph):
    for model in MODELS:
        for asset, names in CHECKS[model].items():
            check_keys = graph.get(AssetKey([model, asset])).check_keys
            assert {k.name for k in check_keys} == names
            assert all(graph.get_check_spec(k).blocking for k in check_keys)
        # Deployment waits for every blocking gate of the evaluation to pass.
        condition = graph.get(AssetKey([model, "deployment"])).automation_condition
        assert "all_deps_blocking_checks_passed" in str(condition.get_label() or "") + repr(condition)


LENGTH_OF_STAY = {
    "name": "length_of_stay",
    "description": "Expected length of stay in days at admission, for bed management.",
    "task": "regression",
    "target": "length_of_stay",
    "source": {"landing": "landing/length_of_stay"},
    "estimator": {
        "class": "sklearn.linear_model.Ridge",
        "params": {"alpha": 1.0},
        "skops_trusted_types": ["numpy.dtype"],
    },
    "gates": {"max": {"mae": 10.0}},
}


def write_length_of_stay_spec(folder: Path) -> None:
    """A regression model on the readmission export, written as YAML only."""
    shutil.copytree(SHIPPED_SPECS_DIR, folder)
    readmission = yaml.safe_load((folder / "readmission_risk.yaml").read_text())
    columns = {k: v for k, v in readmission["contract"]["columns"].items()}
    spec = {
        **LENGTH_OF_STAY,
        "contract": {**readmission["contract"], "columns": columns},
        "features": {
            "numeric": ["age", "prior_admissions_12m", "charlson_index", "creatinine"],
            "categorical": ["admission_type", "payer"],
        },
    }
    (folder / "length_of_stay.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def test_adding_a_model_is_a_yaml_file(tmp_path):
    write_length_of_stay_spec(tmp_path / "specs")
    defs = build_definitions(specs_dir=tmp_path / "specs", home=tmp_path / "home")
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert {AssetKey(["length_of_stay", s]) for s in STAGES} <= keys
    assert defs.get_sensor_def("length_of_stay_new_data") is not None


@pytest.mark.e2e
def test_a_yaml_only_regression_model_trains_and_reports_regression_metrics(home, instance, tmp_path):
    from ml_platform.data.landing import write_batch
    from ml_platform_tests.conftest import Platform

    write_length_of_stay_spec(tmp_path / "specs")
    platform = Platform(home, instance, specs_dir=tmp_path / "specs")
    path = write_batch(generate_readmission(3000, seed=4), home / "landing/length_of_stay", "batch_0001")
    from ml_platform.data.raw import batch_key, sha256_of

    key = batch_key(path.name, sha256_of(path))
    platform.register("length_of_stay", [key])
    assert platform.run_batch("length_of_stay", key).success
    result = platform.run_training("length_of_stay")
    assert result.success
    report = next(
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == AssetKey(["length_of_stay", "evaluation_report"])
    ).materialization.metadata
    assert {"test/mae", "test/rmse", "test/r2"} <= set(report)
    assert 0 < report["test/mae"].value <= report["test/rmse"].value
