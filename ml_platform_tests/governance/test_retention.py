"""`ml-platform purge`: patient data past retention is deleted, the purge is audited, the trail still verifies."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from ml_platform.cli import main as cli
from ml_platform.governance.audit import AuditTrail
from ml_platform.settings import database_url
from ml_platform.store.database import engine_for
from ml_platform.store.tables import outcomes, predictions

MODEL = "readmission_risk"
OLD = datetime(2020, 3, 1, tzinfo=UTC)
NEW = datetime.now(UTC) - timedelta(days=1)


@pytest.fixture
def engine(home):
    return engine_for(database_url(home))


def prediction(id_: str, at: datetime) -> dict:
    return {
        "id": id_,
        "created_at": at,
        "model": MODEL,
        "version": "1",
        "route": "champion",
        "shadow_of": None,
        "subject_hash": "s" * 64,
        "record_hash": f"{id_:r<64}",
        "inputs": {"age": 71},
        "outputs": {"probability": 0.4},
        "latency_ms": 1.0,
    }


def outcome(prediction_id: str, at: datetime) -> dict:
    return {"model": MODEL, "prediction_id": prediction_id, "record_hash": None, "outcome": 1.0, "received_at": at,
            "observed_at": None, "source": "api"}  # fmt: skip


@pytest.fixture
def logged(engine, home):
    """Two old and two new predictions, outcomes old and new (one new outcome of an old prediction), set-aside files."""
    trail = AuditTrail(engine)
    trail.record("model_trained", MODEL, actor="trainer", version="1", details={"run": 1})
    with engine.begin() as conn:
        conn.execute(predictions.insert(), [prediction(i, OLD) for i in ("old1", "old2")])
        conn.execute(predictions.insert(), [prediction(i, NEW) for i in ("new1", "new2")])
        conn.execute(outcomes.insert(), [outcome("old1", OLD), outcome("old2", NEW), outcome("new1", NEW)])
    folder = home / "outcomes" / MODEL
    for name, at in (("loaded/old.csv", OLD), ("rejected/old.csv.error.txt", OLD), ("loaded/new.csv", NEW)):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("prediction_id,outcome\n")
        os.utime(path, (at.timestamp(), at.timestamp()))
    return trail


def ids(engine, table) -> set:
    column = table.c.id if table is predictions else table.c.prediction_id
    with engine.connect() as conn:
        return set(conn.execute(sa.select(column)).scalars())


def test_purge_deletes_the_old_rows_keeps_the_new_and_the_trail_verifies(engine, home, logged, capsys):
    assert cli(["purge", "--before", "2021-01-01", "--by", "privacy officer"]) == 0
    assert "deleted 2 prediction(s), 2 outcome(s) and 2 outcome file(s)" in capsys.readouterr().out
    assert ids(engine, predictions) == {"new1", "new2"}
    assert ids(engine, outcomes) == {"new1"}  # old2's outcome went with its prediction
    remaining = sorted(p.relative_to(home).as_posix() for p in (home / "outcomes").rglob("*") if p.is_file())
    assert remaining == [f"outcomes/{MODEL}/loaded/new.csv"]

    record = logged.records()[-1]
    assert (record.event, record.actor) == ("data_purged", "privacy officer")
    assert record.details == {
        "before": "2021-01-01T00:00:00+00:00",
        "reason": "retention",
        "predictions": {MODEL: 2},
        "outcomes": {MODEL: 2},
        "outcome_files": 2,
    }
    assert cli(["audit", "verify"]) == 0, capsys.readouterr().out
    assert "audit trail intact: 2 records" in capsys.readouterr().out


def test_deleting_audit_records_instead_is_detected(engine, logged, capsys):
    """The control: the same rows gone by deleting the purge's audit record too fails verify."""
    assert cli(["purge", "--before", "2021-01-01", "--by", "privacy officer"]) == 0
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE event = 'data_purged'"))
    assert cli(["audit", "verify"]) == 2
    assert "problem" in capsys.readouterr().err


def test_the_retention_setting_sets_the_date(engine, logged, monkeypatch, capsys):
    assert cli(["purge", "--by", "cron"]) == 2
    assert "ML_PLATFORM_RETENTION_DAYS" in capsys.readouterr().err
    monkeypatch.setenv("ML_PLATFORM_RETENTION_DAYS", "30")
    assert cli(["purge", "--by", "cron"]) == 0
    assert ids(engine, predictions) == {"new1", "new2"}


def test_a_date_in_the_future_is_refused_and_nothing_is_deleted(engine, logged, capsys):
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    assert cli(["purge", "--before", tomorrow, "--by", "someone"]) == 2
    assert "in the future" in capsys.readouterr().err
    assert ids(engine, predictions) == {"old1", "old2", "new1", "new2"}
    assert [r.event for r in logged.records()] == ["model_trained"]
