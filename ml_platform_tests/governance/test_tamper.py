"""Attacks on the audit trail by someone who can write the platform database but does not hold the audit key.

Each attack is direct SQL through SQLAlchemy on the audit tables, as such a person would
run it; ``ml-platform audit verify`` must detect it, exit 2 and say what it found.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3

import pytest
import sqlalchemy as sa

from ml_platform.cli import main as cli
from ml_platform.governance.audit import AuditTrail
from ml_platform.settings import database_url
from ml_platform.store.database import engine_for

MODEL = "readmission_risk"


@pytest.fixture
def engine(home):
    return engine_for(database_url(home))


@pytest.fixture
def trail(engine) -> AuditTrail:
    trail = AuditTrail(engine)
    for i in range(1, 6):
        trail.record("model_trained", MODEL, actor=f"user{i}", version=str(i), details={"run": i})
    return trail


def verify(capsys) -> tuple[int, str]:
    """``ml-platform audit verify``: its exit status and everything it printed."""
    status = cli(["audit", "verify"])
    out = capsys.readouterr()
    return status, out.out + out.err


def plain_hash(prev: str, row) -> str:
    """The unkeyed chain anyone can compute from the stored columns (what the trail used before keys)."""
    fields = [row.id, row.at, row.actor, row.model, row.version, row.event, row.details]
    text = prev + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def rewrite_without_key(engine, change=None) -> None:
    """Recompute every record's hash, prev_hash and the head after optionally changing records."""
    with engine.begin() as conn:
        if change:
            conn.execute(sa.text(change))
        rows = conn.execute(sa.text("SELECT * FROM audit_log ORDER BY id")).all()
        prev = "0" * 64
        for row in rows:
            new = plain_hash(prev, row)
            conn.execute(
                sa.text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE id = :i"),
                {"p": prev, "h": new, "i": row.id},
            )
            prev = new
        conn.execute(sa.text("UPDATE audit_head SET record_count = :n, last_hash = :h"), {"n": len(rows), "h": prev})


def test_an_intact_trail_passes(trail, capsys):
    assert trail.verify() == []
    status, out = verify(capsys)
    assert status == 0, out
    assert "audit trail intact: 5 records, MAC chain and latest checkpoint verified" in out


def test_deleting_the_newest_records_and_rewinding_the_head_is_detected(trail, engine, capsys):
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE id > 3"))
        last = conn.execute(sa.text("SELECT hash FROM audit_log WHERE id = 3")).scalar_one()
        conn.execute(sa.text("UPDATE audit_head SET record_count = 3, last_hash = :h"), {"h": last})
    status, out = verify(capsys)
    assert status == 2
    # The chain 1..3 and the head agree: only the checkpoint outside the database knows of 4 and 5.
    assert "the database holds 3 audit records but checkpoint head-000000000005.json" in out
    assert "records 4 to 5 were deleted, or an older copy of the database was restored" in out
    assert "restore the database from a backup" in out


def test_a_deletion_stays_detected_after_the_trail_grows_past_it(trail, engine, capsys):
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE id > 3"))
        last = conn.execute(sa.text("SELECT hash FROM audit_log WHERE id = 3")).scalar_one()
        conn.execute(sa.text("UPDATE audit_head SET record_count = 3, last_hash = :h"), {"h": last})
    for _ in range(4):  # the platform keeps appending; no checkpoint may cover the cut
        trail.record("gate_passed", MODEL, actor="dagster")
    status, out = verify(capsys)
    assert status == 2
    assert "record 5 is not the one checkpoint head-000000000005.json" in out


def test_a_full_rewrite_without_the_key_is_detected(trail, engine, capsys):
    rewrite_without_key(engine, "UPDATE audit_log SET actor = 'someone else' WHERE id = 2")
    status, out = verify(capsys)
    assert status == 2
    assert "records 1 to 5 carry a plain hash instead of the audit key's MAC" in out
    assert "record 5 is not the one checkpoint head-000000000005.json" in out
    assert "recorded: the trail was rewritten" in out


def test_a_rewrite_with_a_guessed_key_is_detected(trail, engine, capsys):
    import hmac

    with engine.begin() as conn:
        rows = conn.execute(sa.text("SELECT * FROM audit_log ORDER BY id")).all()
        prev = "0" * 64
        for row in rows:
            fields = [row.id, row.at, row.actor, row.model, row.version, row.event, row.details]
            text = "record\x1f" + prev + json.dumps(fields, sort_keys=True, separators=(",", ":"))
            new = hmac.new(b"guess" * 8, text.encode(), hashlib.sha256).hexdigest()
            conn.execute(
                sa.text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE id = :i"),
                {"p": prev, "h": new, "i": row.id},
            )
            prev = new
        conn.execute(sa.text("UPDATE audit_head SET last_hash = :h"), {"h": prev})
    status, out = verify(capsys)
    assert status == 2
    assert "record 1 was edited after it was written (its MAC no longer matches its content)" in out


def test_restoring_an_old_copy_of_the_database_is_detected(trail, engine, home, tmp_path, capsys):
    copy = tmp_path / "platform-backup.db"
    with sqlite3.connect(home / "platform.db") as source, sqlite3.connect(copy) as target:
        source.backup(target)  # a consistent copy of the 5 records, as a backup tool takes it
    source.close(), target.close()
    for _ in range(3):
        trail.record("gate_passed", MODEL, actor="dagster")
    engine.dispose()
    for suffix in ("-wal", "-shm"):
        (home / f"platform.db{suffix}").unlink(missing_ok=True)
    shutil.copyfile(copy, home / "platform.db")  # the old copy put back in place
    status, out = verify(capsys)
    assert status == 2
    assert "the database holds 5 audit records but checkpoint head-000000000008.json" in out
    assert "an older copy of the database was restored" in out


def test_an_altered_checkpoint_is_detected(trail, home, capsys):
    [newest] = sorted((home / "audit" / "checkpoints").glob("head-*.json"))[-1:]
    stored = json.loads(newest.read_text())
    newest.write_text(json.dumps({**stored, "record_count": 3}))
    status, out = verify(capsys)
    assert status == 2
    assert f"checkpoint {newest} was altered or written without the audit key" in out


def test_the_key_and_checkpoints_live_outside_the_database_owner_only(trail, home):
    key = home / "secrets" / "audit.key"
    assert len(key.read_text()) == 64 and key.stat().st_mode & 0o777 == 0o600
    assert (home / "secrets").stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in (home / "audit" / "checkpoints").glob("head-*.json"))[-1] == "head-000000000005.json"


def test_a_short_configured_key_is_refused(home, engine, monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_AUDIT_KEY", "short")
    with pytest.raises(ValueError, match="ML_PLATFORM_AUDIT_KEY holds 5 characters; the audit key needs at least 32"):
        AuditTrail(engine).record("approved", MODEL, actor="a")


def test_a_trail_from_before_keyed_chaining_is_reported_then_sealed(home, engine, capsys):
    """A trail written by an older version: plain SHA-256 chain, no checkpoint."""
    with engine.begin() as conn:
        for i in range(1, 4):
            conn.execute(
                sa.text("INSERT INTO audit_log VALUES (:i, :at, 'old', :m, NULL, 'approved', '{}', '', '')"),
                {"i": i, "at": f"2024-01-0{i}T00:00:00.000000+00:00", "m": MODEL},
            )
    rewrite_without_key(engine)
    status, out = verify(capsys)
    assert status == 2
    assert "the audit trail predates keyed chaining: its 3 records carry plain SHA-256 hashes" in out
    assert "ml-platform audit seal --by NAME --reason TEXT" in out
    assert cli(["audit", "seal", "--by", "Ops Lead", "--reason", "checked against the 2024 backup"]) == 0
    assert "audit trail sealed under the audit key at record 4 by Ops Lead" in capsys.readouterr().out
    AuditTrail(engine).record("approved", MODEL, actor="a")
    status, out = verify(capsys)
    assert status == 0, out
    assert "note: records 1 to 3 predate keyed chaining" in out
    # Sealed: rewriting the old records now breaks the keyed record that follows them.
    rewrite_without_key(engine, "UPDATE audit_log SET actor = 'someone else' WHERE id = 1")
    status, out = verify(capsys)
    assert status == 2 and "records 4 to 5 carry a plain hash instead of the audit key's MAC" in out
