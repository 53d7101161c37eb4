"""Only attested versions are served: registry writers moving `champion` from outside are refused.

A real registry, a real `ml-platform serve` process and the real MLflow client playing the
attacker. Each attack must leave the endpoint answering with the attested version, say why
in /readyz, /v1/models/{model} and /metrics, write a `version_refused` audit record, and
fail the reconciler's `registry_matches_audit` check.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dagster import build_sensor_context

from ml_platform.defs.sensors import build_reconciler_sensor
from ml_platform.governance import attestation
from ml_platform.governance.audit import AuditTrail
from ml_platform.governance.service import Governance
from ml_platform.spec import get_spec
from ml_platform.store import tags
from ml_platform.store.registry import MLflowTracking
from ml_platform_tests.conftest import use_home
from ml_platform_tests.serving.conftest import MODEL, Endpoint, patient, register_versions, set_alias

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """Version 1 deployed by the governance service (attested); versions 2-4 never went through it."""
    root = tmp_path_factory.mktemp("attested")
    with pytest.MonkeyPatch.context() as monkeypatch:
        home = use_home(root, monkeypatch)
        [v1] = register_versions(home, seeds=[41], rows=1_000, attest=False)
        [failed] = register_versions(home, seeds=[42], rows=1_000, attest=False, gates=False)
        [unevaluated] = register_versions(home, seeds=[43], rows=1_000, attest=False, gates=None)
        [forged] = register_versions(home, seeds=[44], rows=1_000, attest=False)
        governance = Governance.for_home(home)
        assert governance.deploy(get_spec(MODEL), v1, actor="test").change["alias"] == "champion"
        assert governance.registry_drift(MODEL) == []
        server = Endpoint(home).start()
        yield home, server, {"failed": failed, "unevaluated": unevaluated, "forged": forged}
        server.stop()


def tag_of(home, version: str) -> str | None:
    return MLflowTracking.for_home(home).client().get_model_version(MODEL, version).tags.get(tags.ATTESTATION)


def copied_signature(home, versions) -> tuple[str, str]:
    """Version 1's valid attestation, copied as is onto another version."""
    return versions["forged"], tag_of(home, "1")


def edited_payload(home, versions) -> tuple[str, str]:
    """Version 1's attestation with the version changed to the forged one: the signature no longer matches."""
    document = json.loads(tag_of(home, "1"))
    document["payload"]["version"] = versions["forged"]
    return versions["forged"], json.dumps(document)


def attackers_key(home, versions) -> tuple[str, str]:
    """A well-formed statement for the forged version, signed with the attacker's own key."""
    with MLflowTracking.for_home(home).download(MODEL, versions["forged"]) as folder:
        from ml_platform.store.artifacts import artifact_digest

        digest = artifact_digest(folder)
    payload = attestation.statement(MODEL, versions["forged"], digest, "x", ["quality_gates"], {"status": "none"})
    return versions["forged"], attestation.sign(Ed25519PrivateKey.generate(), payload)


def no_tag(which: str):
    def attack(home, versions) -> tuple[str, None]:
        return versions[which], None

    return attack


ATTACKS = {
    "failed_gates": (no_tag("failed"), "unattested"),
    "never_evaluated": (no_tag("unevaluated"), "unattested"),
    "copied_signature": (copied_signature, "wrong_version"),
    "edited_payload": (edited_payload, "bad_signature"),
    "attackers_key": (attackers_key, "bad_signature"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_moving_champion_outside_the_platform_is_refused_and_visible(attacked, attack):
    home, server, versions = attacked
    forge, reason = ATTACKS[attack]
    version, tag_value = forge(home, versions)
    client = MLflowTracking.for_home(home).client()
    if tag_value is not None:
        client.set_model_version_tag(MODEL, version, tags.ATTESTATION, tag_value)
    set_alias(home, "champion", version)
    try:
        server.wait_until(lambda: _refused_for(server, version, reason), 60, f"refusing version {version}")
        described = _described(server)
        assert described["refused"][version] == reason
        assert described["load_error"].startswith(f"refused ({reason})")
        assert described["registry"]["champion"] == version
        # Still serving the attested version, to patients too.
        assert server.serving() == "1"
        [answer] = server.predict(patient(3)).json()["predictions"]
        assert answer["version"] == "1"
        # Not ready for this model, with the reason.
        ready = server.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["waiting"][MODEL]["refused"] == {version: reason}
        metrics = server.client.get("/metrics").text
        assert (
            f'ml_platform_refused_versions_total{{model="{MODEL}",reason="{reason}",version="{version}"}} ' in metrics
        )
        # The refusal is on the audit trail.
        refusals = [
            r for r in AuditTrail(f"sqlite:///{home / 'platform.db'}").timeline(MODEL) if r.event == "version_refused"
        ]
        assert any(r.version == version and r.details["reason"] == reason for r in refusals)
        # The reconciler sees the alias moved outside the platform and fails its check.
        [evaluation] = _reconcile(home).asset_events
        assert not evaluation.passed and f"the registry's champion is version {version}" in evaluation.description
    finally:
        set_alias(home, "champion", "1")
        if tag_value is not None:
            client.delete_model_version_tag(MODEL, version, tags.ATTESTATION)
    server.wait_until(lambda: server.client.get("/readyz").status_code == 200, 60, "ready again")
    assert _reconcile(home).asset_events[0].passed


def test_an_attested_version_is_served_and_its_check_passes(attacked):
    """The happy path: a version the governance service deploys is attested, verified and served."""
    home, server, versions = attacked
    governance = Governance.for_home(home)
    [v5] = register_versions(home, seeds=[45], rows=1_000, attest=False)
    governance.deploy(get_spec(MODEL), v5, actor="test")
    try:
        server.wait_until(lambda: server.serving() == v5, 60, f"serving version {v5}")
        assert server.client.get("/readyz").status_code == 200
        assert server.predict(patient(4)).json()["predictions"][0]["version"] == v5
        assert json.loads(tag_of(home, v5))["payload"]["gates_passed"] == ["quality_gates"]
        assert governance.registry_drift(MODEL) == []
    finally:
        governance.roll_back(get_spec(MODEL), "1", by="test", reason="restore the fixture's champion")
    server.wait_until(lambda: server.serving() == "1", 60, "serving version 1 again")


def _refused_for(server, version: str, reason: str) -> bool:
    described = _described(server)
    return described["refused"].get(version) == reason and described["load_error"] is not None


def _described(server) -> dict:
    return server.client.get(f"/v1/models/{MODEL}").json()


def _reconcile(home):
    """One tick of the reconciler sensor, with a fresh cursor, as the Dagster daemon runs it."""
    sensor = build_reconciler_sensor(get_spec(MODEL), Governance.for_home(home))
    return sensor(build_sensor_context())
