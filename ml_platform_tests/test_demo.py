"""The closed loop with the real daemon: `dagster dev` and `ml-platform serve` on a temporary home.

The demo plays the hospital: calm traffic first (no retrain may follow), then a drifted
population with outcomes; the drift sensor must retrain, the gates decide, and the
endpoint must serve the new version, with no manual step. About ten minutes.
"""

from __future__ import annotations

import pytest

from ml_platform.defs.resources import platform_resources
from ml_platform.demo import MODEL, run_demo
from ml_platform.governance.audit import AuditTrail

pytestmark = pytest.mark.e2e


def test_drift_in_production_retrains_and_the_endpoint_serves_the_new_version(home, capsys):
    story = run_demo(home / "demo")
    # Calm traffic: the windows were reported, did not drift, and nothing retrained.
    assert len(story.calm_windows) == 2 and story.retrains_while_calm == 0
    # Then the drift sensor asked for a retrain, saying why.
    assert story.trigger["ml_platform/trigger"] == "drift"
    assert "input drift in 2 consecutive windows" in story.trigger["ml_platform/reason"]
    assert len(story.drifted_windows) >= 2
    # A new candidate was trained and gated; it passed, so it serves patients now.
    assert int(story.new_version) > int(story.first_version)
    assert story.gates == "passed", "the retrained model learns the new population; it should pass its gates"
    assert story.served_version == story.new_version
    # The deployment asked the endpoint, and the UI shows it serves what was promoted.
    passed, description = story.endpoint_check
    assert passed and f"serves {MODEL} version {story.new_version} as champion" in description
    # Sensor ticks, timed by the instance, stay light.
    assert {f"{MODEL}_drift", f"{MODEL}_degradation"} <= set(story.ticks)
    # The audit trail tells the same story, in order, and is intact.
    audit = AuditTrail(platform_resources(home / "demo")["database"].engine(), home=home / "demo")  # its key
    events = [(r.event, r.version) for r in audit.timeline(MODEL)]
    requested = events.index(("retrain_requested", None))
    assert ("model_trained", story.new_version) in events[requested:]
    assert ("promoted", story.new_version) in events[requested:]
    assert audit.verify() == []
    assert "Summary" in capsys.readouterr().out
