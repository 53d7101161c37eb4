"""Retention of patient data in the platform database: purge the prediction log and outcomes before a date.

Monitoring needs the recent answers and their outcomes (drift windows, live performance,
labelled production rows for the next training set); older rows are patient data kept for
no purpose, which minimum-necessary rules (HIPAA, LGPD) say to delete. The purge deletes
them, and the loaded or rejected outcome files the caller names, and is itself an audit
record (``data_purged``) with counts per model, never values, written in the same
transaction as the deletion, so the trail says what was deleted, when and by whom, and
still verifies: the audit tables are not touched.

Not purged here: raw batch copies and the lake (the training data and its lineage, which
are immutable by design and governed with the source system), and quarantine entries
(pointers and keyed hashes, no values).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from ml_platform.governance.audit import AuditTrail
from ml_platform.store.tables import outcomes, predictions

PURGE_MODEL = "prediction_log"  # the model name of purge records: a purge spans every model


@dataclass(frozen=True)
class Purged:
    """What a purge deleted: rows per model of each table, and how many files."""

    before: datetime
    predictions: dict[str, int]
    outcomes: dict[str, int]
    files: int
    audit_record: int

    def summary(self) -> str:
        return (
            f"deleted {sum(self.predictions.values())} prediction(s), {sum(self.outcomes.values())} outcome(s) "
            f"and {self.files} outcome file(s) from before {self.before.isoformat()} (audit record {self.audit_record})"
        )


def parse_cutoff(text: str) -> datetime:
    """A ``--before`` value: a date (midnight UTC) or an ISO 8601 date-time (UTC if it names no zone)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--before {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time") from None
    if len(text) == 10:
        moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def retention_cutoff(days: int, now: datetime | None = None) -> datetime:
    """The moment before which rows are past a retention of ``days`` days."""
    return (now or datetime.now(UTC)) - timedelta(days=days)


def purge(
    engine: sa.Engine,
    audit: AuditTrail,
    before: datetime,
    *,
    actor: str,
    reason: str = "retention",
    files: list[Path] = (),
) -> Purged:
    """Delete prediction-log rows and outcomes older than ``before``, and ``files``; audit it in the same transaction.

    Outcomes go when they were received before the date, or when they resolve a prediction
    that goes (they could not be joined to anything any more). ``before`` in the future is
    refused: it would delete what monitoring is about to read.
    """
    before = before if before.tzinfo else before.replace(tzinfo=UTC)
    if before > datetime.now(UTC):
        raise ValueError(f"--before {before.isoformat()} is in the future; purge only what is past its retention")
    old_predictions = sa.select(predictions.c.id).where(predictions.c.created_at < before)
    old_outcomes = sa.or_(outcomes.c.received_at < before, outcomes.c.prediction_id.in_(old_predictions))
    with engine.begin() as conn:
        outcome_counts = _counts(conn, outcomes, old_outcomes)
        prediction_counts = _counts(conn, predictions, predictions.c.created_at < before)
        conn.execute(outcomes.delete().where(old_outcomes))
        conn.execute(predictions.delete().where(predictions.c.created_at < before))
        details = {
            "before": before.isoformat(),
            "reason": reason,
            "predictions": prediction_counts,
            "outcomes": outcome_counts,
            "outcome_files": len(files),
        }
        record = audit.record("data_purged", PURGE_MODEL, actor=actor, details=details, connection=conn)
    audit.checkpoint(appended=record.id)
    for path in files:
        Path(path).unlink(missing_ok=True)
    return Purged(before, prediction_counts, outcome_counts, len(files), record.id)


def _counts(conn: sa.Connection, table: sa.Table, where) -> dict[str, int]:
    """Rows matching ``where`` per model: what the audit record says was deleted."""
    query = sa.select(table.c.model, sa.func.count()).where(where).group_by(table.c.model).order_by(table.c.model)
    return {model: int(count) for model, count in conn.execute(query)}


def files_before(folders: list[Path], before: datetime) -> list[Path]:
    """Regular files in ``folders`` last modified before ``before``: set-aside copies of patient data."""
    cutoff = before.timestamp()
    found = []
    for folder in folders:
        if folder.is_dir():
            found += [p for p in sorted(folder.iterdir()) if p.is_file() and p.lstat().st_mtime < cutoff]
    return found
