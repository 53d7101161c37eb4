"""The first run of a fresh platform: the seeded data alone trains every shipped model through its gates.

This is what `make dev` does before anyone lands a file: the seed, the batch runs the new-data
sensor requests, and one training run per model. A red first run (a gate failing on the
platform's own seeded data) is the first thing a new user sees, so every gate check must
pass and every model must become champion.
"""

from __future__ import annotations

import pytest

from ml_platform.data.simulators import seed_landing
from ml_platform.evaluation.gates import gate_checks
from ml_platform.spec import get_spec, load_specs
from ml_platform_tests.conftest import Platform, dagster_instance, use_home
from ml_platform_tests.defs.test_pipeline import land_and_run_batches, materialization

pytestmark = pytest.mark.e2e
# The gate families each shipped spec configures (breast cancer records no sensitive attribute).
GATE_CHECKS = {
    "readmission_risk": {"quality_gates", "champion_comparison", "calibration", "fairness"},
    "breast_cancer_diagnosis": {"quality_gates", "champion_comparison", "calibration"},
}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """Seed every shipped model with a simulator, run its batches, then train it once."""
    root = tmp_path_factory.mktemp("first_run")
    with pytest.MonkeyPatch.context() as monkeypatch:
        home = use_home(root, monkeypatch)
        with dagster_instance(root) as instance:
            platform = Platform(home, instance)
            specs = [s for s in load_specs() if s.source.simulator]
            for spec in specs:
                assert seed_landing(spec, home), f"nothing seeded for {spec.name}"
            batch_runs = {spec.name: land_and_run_batches(platform, spec) for spec in specs}
            training_runs = {spec.name: platform.run_training(spec.name) for spec in specs}
            yield batch_runs, training_runs


def test_every_shipped_model_is_seeded():
    assert {s.name for s in load_specs() if s.source.simulator} == {"readmission_risk", "breast_cancer_diagnosis"}


def test_every_seeded_batch_run_succeeds(first_run):
    batch_runs, _ = first_run
    for model, runs in batch_runs.items():
        assert runs and all(r.success for r in runs.values()), model


@pytest.mark.parametrize("model", ["readmission_risk", "breast_cancer_diagnosis"])
def test_the_seeded_data_passes_every_gate_and_the_model_becomes_champion(first_run, model):
    _, training_runs = first_run
    result = training_runs[model]
    assert result.success, f"the first training run of {model} failed"
    expected = set(gate_checks(get_spec(model)))
    assert expected == GATE_CHECKS[model]
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert expected <= set(checks)
    failed = {n: c.description for n, c in checks.items() if n in expected and not c.passed}
    assert not failed, failed
    report = materialization(result, model, "evaluation_report")
    deployment = materialization(result, model, "deployment")
    assert deployment["alias"] == "champion" and deployment["version"] == report["model_version"]


def test_the_fairness_gate_compares_enough_readmission_groups(first_run):
    """The gate must judge real groups: a difference exists only when two groups are large enough."""
    _, training_runs = first_run
    checks = {c.check_name: c for c in training_runs["readmission_risk"].get_asset_check_evaluations()}
    metadata = {k: v.value for k, v in checks["fairness"].metadata.items()}
    for attribute in ("sex", "race_ethnicity"):
        for metric, limit in (("sensitivity", 0.25), ("roc_auc", 0.2)):
            assert metadata[f"fairness.{attribute}.{metric}/verdict"] == "pass"
            assert 0 <= metadata[f"fairness.{attribute}.{metric}/value"] <= limit
            assert metadata[f"fairness.{attribute}.{metric}/threshold"] == limit
