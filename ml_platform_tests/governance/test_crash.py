"""kill -9 of a promotion between its intent and its completion; the reconciler settles it after restart.

A real child process promotes through the governance service against the real MLflow
registry and platform database, and stops (the test replaces the registry call in the child
only) just after, or just before, the alias moves; the test then kills it with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from ml_platform.cli import main as cli
from ml_platform.governance.audit import AuditTrail
from ml_platform.governance.reconcile import reconcile
from ml_platform.spec import get_spec
from ml_platform.store.registry import current_aliases
from ml_platform_tests.governance.test_governance import MODEL, deploy, register_versions, resources

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mlflow import MlflowClient
    from ml_platform.governance.service import Governance
    from ml_platform.settings import platform_home
    from ml_platform.spec import get_spec

    version, stopped, when = sys.argv[1:]
    move = MlflowClient.set_registered_model_alias

    def move_then_stop(self, *args, **kwargs):
        if when == "after":
            move(self, *args, **kwargs)
        Path(stopped).touch()
        time.sleep(600)  # killed here

    MlflowClient.set_registered_model_alias = move_then_stop
    Governance.for_home(platform_home()).deploy(get_spec("readmission_risk"), version, actor="doomed process")
    """
)


def promote_and_kill(tmp_path, version: str, when: str) -> None:
    """Start a promotion in a child process, SIGKILL it at the stop point, and reap it."""
    stopped = tmp_path / f"stopped-{when}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, version, str(stopped), when], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not stopped.exists():
        assert child.poll() is None, child.communicate()[1].decode()
        assert time.monotonic() < deadline, "the child never reached the alias move"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL


def alias_moves(database) -> list:
    """The model's records about alias moves (the gate verdicts recorded before them left out)."""
    return [r for r in AuditTrail(database.engine()).timeline(MODEL) if not r.event.startswith("gate_")]


def events(database) -> list[tuple[str, str]]:
    return [(r.event, r.actor) for r in alias_moves(database)]


def test_a_promotion_killed_after_the_alias_moved_is_repaired(home, tmp_path, capsys):
    [v1] = register_versions(home, 1, ["passed"])
    promote_and_kill(tmp_path, v1, "after")
    tracking, database = resources(home)
    assert current_aliases(tracking.client(), MODEL) == {"champion": v1}  # moved, but the trail never said so
    assert events(database) == [("promotion_started", "doomed process")]
    [intent] = alias_moves(database)

    status = cli(["audit", "verify"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"reconciled: repaired: the promotion of {MODEL} version {v1} to champion (record {intent.id})" in out
    assert "interrupted after the alias moved; its completion is now recorded" in out
    assert events(database) == [("promotion_started", "doomed process"), ("promoted", "ml_platform_reconciler")]
    started, promoted = alias_moves(database)
    assert promoted.details["correlation_id"] == started.details["correlation_id"]
    assert promoted.details["repaired"] is True

    # Trail and registry must agree: an alias moved behind the platform's back fails verify.
    [v2] = register_versions(home, 1, ["passed"])
    tracking.client().set_registered_model_alias(MODEL, "champion", v2)
    assert cli(["audit", "verify"]) == 2
    assert (
        f"{MODEL}: the registry's champion is version {v2} but the audit trail's last completed moves give it "
        f"version {v1}" in capsys.readouterr().out
    )


def test_a_promotion_killed_before_the_alias_moved_is_abandoned_by_the_next_deployment(home, tmp_path, readmission):
    v1, v2 = register_versions(home, 2, ["passed", "passed"])
    promote_and_kill(tmp_path, v1, "before")
    tracking, database = resources(home)
    assert current_aliases(tracking.client(), MODEL) == {}
    # The next deployment settles the interrupted one first, then promotes.
    assert deploy(readmission, v2, tracking, database, actor="next run")["change"]["version"] == v2
    assert events(database) == [
        ("promotion_started", "doomed process"),
        ("promotion_abandoned", "ml_platform_reconciler"),
        ("promotion_started", "next run"),
        ("promoted", "next run"),
    ]
    abandoned = alias_moves(database)[1]
    assert abandoned.details["reason"] == "the process stopped before the registry alias moved"
    assert cli(["audit", "verify"]) == 0


def test_the_reconciler_reports_nothing_when_nothing_was_interrupted(home, readmission):
    [v1] = register_versions(home, 1, ["passed"])
    tracking, database = resources(home)
    deploy(get_spec(MODEL), v1, tracking, database, actor="test")
    settled = reconcile(tracking.client(), database.engine(), AuditTrail(database.engine()))
    assert (settled.reports, settled.in_progress) == ([], [])
