"""Safe artifacts: a registry writer's pickled model is refused, and its code never runs."""

from __future__ import annotations

import pathlib

import mlflow
import pytest

from ml_platform.governance.promotion import GovernanceError
from ml_platform.governance.service import Governance
from ml_platform.spec import get_spec
from ml_platform.store.artifacts import UnsafeArtifactError, artifact_digest
from ml_platform.store.registry import MLflowTracking
from ml_platform.training.pipeline import trusted_types

MODEL = "readmission_risk"


class Payload:
    """An object whose unpickling creates a marker file: what an attacker's "model" would run."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def pickled_version(home, tmp_path):
    """A version logged with cloudpickle by someone with registry access, its gates marked passed."""
    marker = tmp_path / "pwned"
    tracking = MLflowTracking.for_home(home)
    with tracking.run(MODEL, run_name="attacker", tags={}):
        info = mlflow.sklearn.log_model(
            Payload(marker),
            name="model",
            registered_model_name=MODEL,
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn"],
        )
    version = str(info.registered_model_version)
    Governance.for_home(home).record_verdicts(
        get_spec(MODEL), version, [{"gate": "quality_gates", "passed": True}], actor="test"
    )
    assert not marker.exists()
    return tracking, version, marker


def test_loading_a_pickled_version_is_refused_and_runs_nothing(pickled_version):
    tracking, version, marker = pickled_version
    with pytest.raises(UnsafeArtifactError, match="serialised as 'cloudpickle'; only 'skops'"):
        tracking.load_model(MODEL, version, trusted_types(get_spec(MODEL)))
    assert not marker.exists()
    # The control: MLflow's own loader, which the platform used before, follows the MLmodel
    # file and runs the payload. So the attack is real, and the refusal above is what stops it.
    mlflow.set_tracking_uri(tracking.tracking_uri)
    mlflow.sklearn.load_model(f"models:/{MODEL}/{version}")
    assert marker.exists()


def test_a_pickle_renamed_and_declared_skops_is_refused_and_runs_nothing(pickled_version):
    """The MLmodel file is the attacker's too: claiming skops for a pickle file does not get it loaded."""
    tracking, version, marker = pickled_version
    with tracking.download(MODEL, version) as folder:
        (folder / "model.pkl").rename(folder / "model.skops")
        mlmodel = (folder / "MLmodel").read_text()
        (folder / "MLmodel").write_text(
            mlmodel.replace("serialization_format: cloudpickle", "serialization_format: skops").replace(
                "pickled_model: model.pkl", "pickled_model: model.skops"
            )
        )
        from ml_platform.store.artifacts import load_skops

        with pytest.raises(UnsafeArtifactError, match="is not a skops file"):
            load_skops(folder, trusted_types(get_spec(MODEL)))
    assert not marker.exists()


def test_the_governance_service_never_attests_a_pickled_version(pickled_version, home):
    _, version, marker = pickled_version
    with pytest.raises(UnsafeArtifactError):
        Governance.for_home(home).attest(get_spec(MODEL), version)
    assert not marker.exists()


def test_the_artifact_digest_covers_every_file_and_changes_with_any_byte(pickled_version):
    tracking, version, _ = pickled_version
    with tracking.download(MODEL, version) as folder:
        before = artifact_digest(folder)
        assert artifact_digest(folder) == before  # stable
        (folder / "MLmodel").write_text((folder / "MLmodel").read_text() + "\n")
        assert artifact_digest(folder) != before


def test_attesting_an_unevaluated_version_is_refused(home):
    """No gate verdict in the audit trail, no attestation: setting the registry tag by hand is not enough."""
    from ml_platform_tests.serving.conftest import register_versions

    [version] = register_versions(home, seeds=[31], rows=400, attest=False, gates=None)
    client = MLflowTracking.for_home(home).client()
    client.set_model_version_tag(MODEL, version, "ml_platform.gates", "passed")
    with pytest.raises(GovernanceError, match="no gate verdict in the audit trail"):
        Governance.for_home(home).attest(get_spec(MODEL), version)
