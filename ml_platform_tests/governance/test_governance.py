"""Promotion, approval and rollback on a real MLflow registry and platform database."""

from __future__ import annotations

import multiprocessing
import shutil

import numpy as np
import pytest
import yaml
from dagster import AssetKey, build_sensor_context, materialize

from ml_platform.cli import main as cli
from ml_platform.governance import promotion as governance
from ml_platform.governance.audit import AuditTrail
from ml_platform.governance.promotion import GovernanceError
from ml_platform.governance.service import Governance
from ml_platform.settings import database_url, mlflow_artifact_root, mlflow_tracking_uri
from ml_platform.spec import SHIPPED_SPECS_DIR, Deployment, get_spec
from ml_platform.store import tags
from ml_platform.store.database import PlatformDatabase
from ml_platform.store.registry import MLflowTracking, current_aliases
from ml_platform_tests.conftest import BOTH_STORES, Platform

MODEL = "readmission_risk"

# Governance decisions (locks, the audit chain, concurrent promotions) on SQLite and on PostgreSQL.
pytestmark = BOTH_STORES


def resources(home):
    tracking = MLflowTracking(tracking_uri=mlflow_tracking_uri(home), artifact_root=mlflow_artifact_root(home))
    return tracking, PlatformDatabase(url=database_url(home))


def register_versions(home, n: int, gates: list[str]) -> list[str]:
    """``n`` registered versions of a tiny model, with their gate outcome recorded as an evaluation would."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    tracking, database = resources(home)
    governance = Governance(tracking, database)
    versions = []
    for i in range(n):
        model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
        with tracking.run(MODEL, run_name=f"v{i}", tags={}):
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                registered_model_name=MODEL,
                pip_requirements=["scikit-learn"],
                skops_trusted_types=["numpy.dtype"],
            )
        version = str(info.registered_model_version)
        verdict = {"gate": "quality_gates", "passed": gates[i] == "passed"}
        governance.record_verdicts(get_spec(MODEL), version, [verdict], actor="test")
        versions.append(version)
    return versions


def deploy(spec, version, tracking, database, actor) -> dict:
    """The deployment asset's decision, as a dict: what moved and why."""
    outcome = Governance(tracking, database).deploy(spec, version, actor=actor)
    return {"change": outcome.change, "message": outcome.message}


def with_policy(spec, **deployment):
    return spec.model_copy(update={"deployment": Deployment(**deployment)})


def champion(home):
    return resources(home)[0].alias_version(MODEL, "champion")


def test_a_passed_version_becomes_champion_once(home, readmission):
    [v1] = register_versions(home, 1, ["passed"])
    tracking, database = resources(home)
    first = deploy(readmission, v1, tracking, database, actor="test")
    assert first["change"]["alias"] == "champion" and first["change"]["previous"] is None
    again = deploy(readmission, v1, tracking, database, actor="test")
    assert again["change"] is None  # idempotent: nothing moves, nothing is audited twice
    # The gate verdict, then the intent before the alias moved and the completion after, with one correlation id.
    gate, started, promoted = AuditTrail(database.engine()).timeline(MODEL)
    assert (gate.event, started.event, promoted.event) == ("gate_passed", "promotion_started", "promoted")
    assert started.details["correlation_id"] == promoted.details["correlation_id"]
    assert champion(home) == v1


def test_a_failed_version_is_never_deployed(home, readmission):
    _, v2 = register_versions(home, 2, ["passed", "failed"])
    tracking, database = resources(home)
    with pytest.raises(GovernanceError, match="failed its gates"):
        deploy(readmission, v2, tracking, database, actor="test")
    assert champion(home) is None


def test_canary_and_shadow_release_as_challenger_beside_the_champion(home, readmission):
    v1, v2 = register_versions(home, 2, ["passed", "passed"])
    tracking, database = resources(home)
    canary = with_policy(readmission, policy="canary", canary_share=0.2)
    assert deploy(canary, v1, tracking, database, actor="test")["change"]["alias"] == "champion"  # first: no champion
    change = deploy(canary, v2, tracking, database, actor="test")["change"]
    assert change == {"alias": "challenger", "version": v2, "previous": None, "policy": "canary", "champion": v1}
    assert current_aliases(tracking.client(), MODEL) == {"champion": v1, "challenger": v2}
    # Promoting the challenger directly later leaves a single alias per version.
    deploy(readmission, v2, tracking, database, actor="test")
    assert current_aliases(tracking.client(), MODEL) == {"champion": v2}


def test_release_ends_a_canary_with_the_challenger_as_champion(home, readmission, capsys):
    v1, v2 = register_versions(home, 2, ["passed", "passed"])
    tracking, database = resources(home)
    canary = with_policy(readmission, policy="canary", canary_share=0.2)
    deploy(canary, v1, tracking, database, actor="test")
    deploy(canary, v2, tracking, database, actor="test")
    assert cli(["release", MODEL, "--by", "Dr. Okafor", "--reason", "a week of canary, no alerts"]) == 0
    assert current_aliases(tracking.client(), MODEL) == {"champion": v2}
    record = AuditTrail(database.engine()).timeline(MODEL)[-1]
    assert (record.event, record.version, record.actor) == ("promoted", v2, "Dr. Okafor")
    assert record.details["released_from"] == "challenger" and record.details["previous"] == v1
    assert governance.champion_history(AuditTrail(database.engine()), MODEL) == [v1, v2]  # rollback finds v1 again
    assert cli(["release", MODEL, "--by", "Dr. Okafor", "--reason", "again"]) == 2
    assert "has no challenger to release" in capsys.readouterr().err


@pytest.fixture
def approval_platform(home, instance, tmp_path, monkeypatch):
    """The shipped specs, with readmission_risk requiring human approval (for the CLI too)."""
    specs = tmp_path / "specs"
    shutil.copytree(SHIPPED_SPECS_DIR, specs)
    raw = yaml.safe_load((specs / f"{MODEL}.yaml").read_text())
    raw["deployment"] = {"policy": "direct", "approval": "required"}
    (specs / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("ML_PLATFORM_SPECS", str(specs))
    return Platform(home, instance, specs_dir=specs)


def run_approval_sensor(platform):
    sensor = platform.defs.get_sensor_def(f"{MODEL}_approvals")
    return sensor(build_sensor_context(instance=platform.instance))


def materialize_deployment(platform, run_config):
    return materialize(
        list(platform.defs.assets),
        selection=[AssetKey([MODEL, "deployment"])],
        instance=platform.instance,
        resources=platform.defs.resources,
        run_config=run_config,
    )


def test_approval_flow_pending_approve_then_the_sensor_deploys(approval_platform, home, capsys):
    spec = get_spec(MODEL)
    assert spec.deployment.approval == "required"
    [v1] = register_versions(home, 1, ["passed"])
    tracking, database = resources(home)
    waiting = deploy(spec, v1, tracking, database, actor="dagster run 1")
    assert waiting["change"] is None and "ml-platform approve readmission_risk 1" in waiting["message"]
    assert champion(home) is None
    assert cli(["pending"]) == 0
    assert "readmission_risk version 1: pending" in capsys.readouterr().out
    assert run_approval_sensor(approval_platform).skip_message == "no approved version waits for deployment"
    assert cli(["approve", MODEL, v1, "--by", "Dr. Ada Okafor", "--reason", "reviewed card"]) == 0
    requests = run_approval_sensor(approval_platform)
    [request] = requests
    assert request.run_config["ops"][f"{MODEL}__deployment"]["config"]["version"] == v1
    result = materialize_deployment(approval_platform, request.run_config)
    assert result.success
    assert champion(home) == v1
    assert governance.approved_awaiting_promotion(database.engine(), MODEL) == []
    events = [(r.event, r.actor) for r in AuditTrail(database.engine()).timeline(MODEL)]
    assert events == [
        ("gate_passed", "test"),
        ("approval_requested", "dagster run 1"),
        ("approved", "Dr. Ada Okafor"),
        ("promotion_started", f"dagster run {result.run_id}"),
        ("promoted", f"dagster run {result.run_id}"),
    ]
    assert tracking.client().get_model_version(MODEL, v1).tags[tags.APPROVAL] == "approved"


def test_reject_keeps_the_version_away_from_patients(approval_platform, home, capsys):
    spec = get_spec(MODEL)
    [v1] = register_versions(home, 1, ["passed"])
    tracking, database = resources(home)
    deploy(spec, v1, tracking, database, actor="test")
    assert cli(["reject", MODEL, v1, "--by", "Dr. Okafor", "--reason", "subgroup gap"]) == 0
    assert deploy(spec, v1, tracking, database, actor="test")["change"] is None
    assert champion(home) is None
    assert cli(["approve", MODEL, v1, "--by", "Someone", "--reason", "changed my mind"]) == 2
    assert "already rejected by Dr. Okafor" in capsys.readouterr().err


def test_approving_a_version_whose_gates_failed_is_refused(approval_platform, home, capsys):
    [v1] = register_versions(home, 1, ["failed"])
    assert cli(["approve", MODEL, v1, "--by", "Dr. Okafor", "--reason", "looks fine"]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "failed its gates" in err and "can never be deployed" in err
    assert champion(home) is None


def test_rollback_moves_the_champion_back_and_is_audited(home, readmission, capsys):
    v1, v2, v3 = register_versions(home, 3, ["passed", "passed", "failed"])
    tracking, database = resources(home)
    deploy(readmission, v1, tracking, database, actor="test")
    deploy(readmission, v2, tracking, database, actor="test")
    assert cli(["rollback", MODEL, "--to", v3, "--by", "Dr. Okafor", "--reason", "x"]) == 2
    assert "failed its gates" in capsys.readouterr().err
    assert cli(["rollback", MODEL, "--by", "Dr. Okafor", "--reason", "alert on ward 7"]) == 0
    assert champion(home) == v1
    [record] = [r for r in AuditTrail(database.engine()).timeline(MODEL) if r.event == "rolled_back"]
    assert record.details == {
        "from": v2,
        "to": v1,
        "reason": "alert on ward 7",
        "correlation_id": record.details["correlation_id"],  # the same as its intent's
    }
    assert record.actor == "Dr. Okafor"
    assert cli(["audit", MODEL]) == 0
    assert "rolled_back" in capsys.readouterr().out


def _promote_repeatedly(home: str, version: str, rounds: int) -> None:
    import os

    os.environ["ML_PLATFORM_HOME"] = home
    from pathlib import Path

    from ml_platform_tests.governance.test_governance import deploy as deploy_in_child

    tracking, database = resources(Path(home))
    spec = get_spec(MODEL)
    for _ in range(rounds):
        deploy_in_child(spec, version, tracking, database, actor=f"process {version}")


def test_concurrent_promotions_leave_exactly_one_champion_matching_the_audit(home):
    v1, v2 = register_versions(home, 2, ["passed", "passed"])
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_promote_repeatedly, args=(str(home), v, 6)) for v in (v1, v2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=240)
        assert w.exitcode == 0
    tracking, database = resources(home)
    aliases = current_aliases(tracking.client(), MODEL)
    promotions = [r for r in AuditTrail(database.engine()).timeline(MODEL) if r.event == "promoted"]
    assert list(aliases) == ["champion"]
    assert aliases["champion"] == promotions[-1].version  # the last recorded decision is what serves
    # Each promotion saw the champion the previous one left: the lock serialised them.
    for before, after in zip(promotions, promotions[1:], strict=False):
        assert after.details["previous"] == before.version
    assert AuditTrail(database.engine()).verify() == []


@pytest.mark.e2e
def test_a_biased_model_fails_the_fairness_gate_and_is_not_promoted(home, instance, tmp_path):
    """Under-recorded outcomes for one group: the candidate is gated out in the same run."""
    from ml_platform.data.landing import write_batch
    from ml_platform.data.raw import batch_key, sha256_of
    from ml_platform.data.synthetic import generate_readmission

    specs = tmp_path / "specs"
    shutil.copytree(SHIPPED_SPECS_DIR, specs)
    raw = yaml.safe_load((specs / f"{MODEL}.yaml").read_text())
    # The model sees race, so it can learn the recorded under-diagnosis of one group.
    raw["features"]["categorical"].append("race_ethnicity")
    raw["gates"]["fairness"]["max_difference"] = {"sensitivity": 0.2}
    (specs / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    platform = Platform(home, instance, specs_dir=specs)
    path = write_batch(generate_readmission(15_000, seed=1, bias=0.9), home / f"landing/{MODEL}", "batch_0001")
    key = batch_key(path.name, sha256_of(path))
    platform.register(MODEL, [key])
    assert platform.run_batch(MODEL, key).success
    result = platform.run_training(MODEL)
    assert not result.success  # the blocking fairness check failed the run
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["fairness"].passed
    assert "fairness.race_ethnicity.sensitivity failed" in checks["fairness"].description
    assert checks["quality_gates"].passed  # overall accuracy alone would not have caught it
    deployed = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "deployment"]
    assert deployed == []
    assert champion(home) is None
    tracking, database = resources(home)
    assert tracking.client().get_model_version(MODEL, "1").tags[tags.GATES] == "failed"
    with pytest.raises(governance.GovernanceError, match="failed its gates"):
        governance.promote(
            get_spec(MODEL, specs), tracking.client(), database.engine(), AuditTrail(database.engine()), "1", "test"
        )


def test_rollback_shows_on_the_deployment_asset_in_dagster(home, readmission, instance):
    v1, v2 = register_versions(home, 2, ["passed", "passed"])
    tracking, database = resources(home)
    deploy(readmission, v1, tracking, database, actor="test")
    deploy(readmission, v2, tracking, database, actor="test")
    assert cli(["rollback", MODEL, "--by", "Dr. Okafor", "--reason", "alert"]) == 0
    [event] = instance.fetch_materializations(AssetKey([MODEL, "deployment"]), limit=5).records
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert metadata["to"] == v1 and metadata["from"] == v2 and metadata["by"] == "Dr. Okafor"


def test_audit_verify_on_the_command_line_detects_tampering(home, readmission, capsys):
    import sqlalchemy as sa

    [v1] = register_versions(home, 1, ["passed"])
    tracking, database = resources(home)
    deploy(readmission, v1, tracking, database, actor="test")
    assert cli(["audit", "verify"]) == 0
    assert "audit trail intact: 3 records" in capsys.readouterr().out  # the verdict, the intent, the promotion
    with database.engine().begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET actor = 'someone else' WHERE id = 1"))
    assert cli(["audit", "verify"]) == 2
    out = capsys.readouterr()
    assert "record 1" in out.out and "problem" in out.err
