"""The audit trail on real SQLite files: round trips, tamper detection, validation and concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy

from ml_platform.governance.audit import AUDIT_EVENTS, AuditTrail
from ml_platform.settings import database_url
from ml_platform.store.database import PlatformDatabase, engine_for
from ml_platform.store.tables import GENESIS_HASH


@pytest.fixture
def db_path(tmp_path: Path, home: Path) -> Path:
    # The platform home (from the ``home`` fixture) holds the audit key and the checkpoints.
    return tmp_path / "platform.db"


@pytest.fixture
def trail(db_path: Path) -> AuditTrail:
    return AuditTrail(f"sqlite:///{db_path}")


def tamper(db_path: Path, sql: str, *params) -> None:
    """Change the database behind the platform's back, as someone with file access could."""
    with sqlite3.connect(db_path) as conn:
        assert conn.execute(sql, params).rowcount == 1
    conn.close()


def fill(trail: AuditTrail, n: int = 5, model: str = "readmission_risk") -> None:
    for i in range(1, n + 1):
        trail.record("model_trained", model, actor=f"user{i}", version=str(i), details={"auc": 0.8, "run": i})


# Round trip


def test_record_returns_what_timeline_reads_back(trail):
    written = [
        trail.record(
            "batch_ingested", "readmission_risk", actor="sensor", details={"batch": "b1", "sha256": "ab" * 32}
        ),
        trail.record("model_trained", "readmission_risk", actor="dagster", version="3", details={"auc": 0.81}),
        trail.record("approved", "readmission_risk", actor="dr.smith", version="3"),
    ]
    read = trail.timeline("readmission_risk")
    assert read == written
    assert [(r.event, r.actor, r.version) for r in read] == [
        ("batch_ingested", "sensor", None),
        ("model_trained", "dagster", "3"),
        ("approved", "dr.smith", "3"),
    ]
    assert read[0].details == {"batch": "b1", "sha256": "ab" * 32}
    assert read[2].details == {}
    assert [r.id for r in read] == [1, 2, 3]
    # The chain: the first record starts from zeros, each next one from its predecessor's hash.
    assert read[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in read[1:]] == [r.hash for r in read[:-1]]
    assert len({r.hash for r in read}) == 3


def test_details_are_stored_as_canonical_json(trail, db_path):
    trail.record("gate_passed", "m", actor="a", details={"b": [1, 2], "a": {"y": 1, "x": 2}})
    with sqlite3.connect(db_path) as conn:
        (stored,) = conn.execute("SELECT details FROM audit_log").fetchone()
    conn.close()
    assert stored == '{"a":{"x":2,"y":1},"b":[1,2]}'


def test_timeline_holds_only_the_models_records(trail):
    trail.record("model_trained", "readmission_risk", actor="a", version="1")
    trail.record("model_trained", "breast_cancer_diagnosis", actor="b", version="7")
    trail.record("promoted", "readmission_risk", actor="c", version="1")
    assert [r.event for r in trail.timeline("readmission_risk")] == ["model_trained", "promoted"]
    assert [(r.model, r.version) for r in trail.timeline("breast_cancer_diagnosis")] == [
        ("breast_cancer_diagnosis", "7")
    ]
    assert trail.timeline("unknown") == []
    assert [r.id for r in trail.records()] == [1, 2, 3]


def test_times_are_utc_and_strictly_increasing(trail):
    before = datetime.now(UTC)
    for _ in range(30):  # faster than the clock ticks on some systems: times must still increase
        trail.record("gate_passed", "m", actor="a")
    times = [r.at for r in trail.records()]
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert all(earlier < later for earlier, later in zip(times, times[1:], strict=False))
    assert before <= times[0] and times[-1] <= datetime.now(UTC) + timedelta(seconds=1)


# Tamper detection


def test_verify_passes_an_intact_trail(trail):
    assert trail.verify() == []
    fill(trail, 5)
    assert trail.verify() == []


def test_edited_details_are_detected_with_the_record_id(trail, db_path):
    fill(trail, 5)
    tamper(db_path, "UPDATE audit_log SET details = ? WHERE id = 3", '{"auc":0.99,"run":3}')
    problems = trail.verify()
    assert problems == ["record 3 was edited after it was written (its MAC no longer matches its content)"]


def test_a_changed_actor_is_detected(trail, db_path):
    fill(trail, 4)
    tamper(db_path, "UPDATE audit_log SET actor = 'someone_else' WHERE id = 2")
    problems = trail.verify()
    assert len(problems) == 1 and "record 2 was edited" in problems[0]


def test_an_edit_that_recomputes_the_hash_breaks_the_chain_after_it(trail, db_path):
    fill(trail, 4)
    tamper(db_path, "UPDATE audit_log SET hash = ? WHERE id = 2", "f" * 64)
    problems = trail.verify()
    assert any("record 2 was edited" in p for p in problems)
    assert any("chain breaks at record 3" in p for p in problems)


def test_a_deleted_middle_record_is_detected(trail, db_path):
    fill(trail, 5)
    tamper(db_path, "DELETE FROM audit_log WHERE id = 3")
    problems = trail.verify()
    assert any("record 3 is missing" in p for p in problems)
    assert any("chain breaks at record 4" in p and "record 2" in p for p in problems)
    assert not any("was edited" in p for p in problems)  # nothing was edited


def test_a_deleted_last_record_is_detected_through_the_head(trail, db_path):
    fill(trail, 5)
    tamper(db_path, "DELETE FROM audit_log WHERE id = 5")
    problems = trail.verify()
    # The remaining chain 1..4 is intact: only the head knows a fifth record existed.
    assert problems and all("head" in p for p in problems)
    assert any("counts 5 records but the log holds 4" in p and "deleted" in p for p in problems)


def test_a_deleted_last_record_stays_detected_after_further_appends(trail, db_path):
    fill(trail, 3)
    tamper(db_path, "DELETE FROM audit_log WHERE id = 3")
    trail.record("promoted", "readmission_risk", actor="ops", version="2")
    assert any("chain breaks at record 3" in p for p in trail.verify())


def test_a_deleted_head_is_reported_and_appends_are_refused(trail, db_path):
    fill(trail, 2)
    tamper(db_path, "DELETE FROM audit_head")
    assert any("head is missing" in p for p in trail.verify())
    with pytest.raises(RuntimeError, match="head is missing"):
        trail.record("approved", "readmission_risk", actor="a")


# Validation and the append-only surface


def test_unknown_event_is_refused_naming_the_allowed_ones(trail):
    with pytest.raises(ValueError, match="'deployed' is not an audit event") as error:
        trail.record("deployed", "m", actor="a")
    assert all(name in str(error.value) for name in AUDIT_EVENTS)
    assert trail.records() == []


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"actor": ""}, "actor"),
        ({"actor": "   "}, "actor"),
        ({"actor": "a", "model": ""}, "model"),
        ({"actor": "a", "version": ""}, "version"),
        ({"actor": "a", "details": {"x": object()}}, "details"),
        ({"actor": "a", "details": {"auc": float("nan")}}, "details"),
        ({"actor": "a", "details": ["not", "a", "dict"]}, "details"),
    ],
)
def test_invalid_arguments_are_refused_naming_the_argument(trail, kwargs, argument):
    kwargs = {"model": "m", **kwargs}
    with pytest.raises(ValueError, match=f"^{argument} "):
        trail.record("approved", **kwargs)
    assert trail.records() == []


def test_the_trail_offers_no_way_to_change_or_delete_records():
    public = {name for name in dir(AuditTrail) if not name.startswith("_")}
    assert public == {
        "record",
        "timeline",
        "records",
        "verify",
        "check",
        "checkpoint",
        "checkpoints",
        "seal",
        "format_timeline",
    }


# The database


def test_platform_database_shares_one_engine_and_creates_the_sqlite_folder(tmp_path):
    url = f"sqlite:///{tmp_path / 'new' / 'home' / 'platform.db'}"
    database = PlatformDatabase(url=url)
    assert database.engine() is engine_for(url)
    AuditTrail(database.engine()).record("approved", "m", actor="a")
    assert (tmp_path / "new" / "home" / "platform.db").exists()
    assert len(AuditTrail(PlatformDatabase(url=url).engine()).records()) == 1


def test_the_default_database_lives_in_the_platform_home(home):
    AuditTrail(PlatformDatabase(url=database_url(home)).engine()).record("approved", "m", actor="a")
    with sqlite3.connect(home / "platform.db") as conn:
        assert conn.execute("SELECT event FROM audit_log").fetchall() == [("approved",)]
    conn.close()


def test_sqlite_transactions_take_the_write_lock_at_begin(db_path):
    engine = engine_for(f"sqlite:///{db_path}")
    other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        with engine.begin():  # no statement yet: a deferred BEGIN would hold no lock here
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # released at commit
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_a_sqlite_engine_not_from_engine_for_is_refused(db_path):
    with pytest.raises(ValueError, match="engine_for"):
        AuditTrail(sqlalchemy.create_engine(f"sqlite:///{db_path}"))


# Concurrency

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from ml_platform.governance.audit import AuditTrail

    url, actor, ready, go, count = sys.argv[1:]
    trail = AuditTrail(url)
    Path(ready).touch()
    while not Path(go).exists():  # start appending together with the other writers
        time.sleep(0.002)
    for i in range(int(count)):
        trail.record("gate_passed", "readmission_risk", actor=actor, version=str(i), details={"i": i})
    """
)


def test_writers_in_separate_processes_never_fork_the_chain(tmp_path, db_path):
    # Without the write lock at BEGIN, writers fail with "database is locked" or append after the same head.
    writers, count = 3, 50
    url, go = f"sqlite:///{db_path}", tmp_path / "go"
    ready = [tmp_path / f"ready{n}" for n in range(writers)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, f"writer{n}", str(ready[n]), str(go), str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    try:
        wait_until_ready(procs, ready)
        go.touch()
        errors = [p.communicate(timeout=60)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * writers, "\n".join(errors)

    trail = AuditTrail(url)
    records = trail.records()
    assert len(records) == writers * count
    assert [r.id for r in records] == list(range(1, writers * count + 1))
    for n in range(writers):  # each writer's records all arrived, in its own order
        assert [r.version for r in records if r.actor == f"writer{n}"] == [str(i) for i in range(count)]
    assert trail.verify() == []


def wait_until_ready(procs: list[subprocess.Popen], ready: list[Path], timeout: float = 60) -> None:
    """Wait until every writer has imported and opened the database, so they start appending together."""
    deadline = time.monotonic() + timeout
    while not all(r.exists() for r in ready):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            return  # a writer died or hangs: the return codes and errors tell which
        time.sleep(0.01)


# Display


def test_format_timeline_lists_the_models_events_in_order(trail):
    trail.record("batch_ingested", "readmission_risk", actor="sensor", details={"batch": "batch_0001"})
    trail.record("model_trained", "readmission_risk", actor="dagster", version="4", details={"auc": 0.83})
    trail.record("model_trained", "breast_cancer_diagnosis", actor="dagster", version="9")
    trail.record("approved", "readmission_risk", actor="dr.jones", version="4", details={"note": "line one\nline two"})
    lines = trail.format_timeline("readmission_risk").splitlines()
    assert lines[0] == "Audit trail of readmission_risk (3 records)"
    assert lines[1].split() == ["TIME", "(UTC)", "EVENT", "VERSION", "ACTOR", "DETAILS"]
    rows = [line.split() for line in lines[2:]]
    assert [row[2:5] for row in rows] == [
        ["batch_ingested", "-", "sensor"],
        ["model_trained", "4", "dagster"],
        ["approved", "4", "dr.jones"],
    ]
    assert rows[0][5:] == ["batch=batch_0001"]
    assert rows[1][5:] == ["auc=0.83"]
    assert rows[2][5:] == ["note=line", "one", "line", "two"]  # kept on one line
    assert rows[0][0] == trail.records()[0].at.strftime("%Y-%m-%d")
    assert "9" not in [row[3] for row in rows]  # the other model's version is not shown
    assert "No audit records" in trail.format_timeline("unknown")
