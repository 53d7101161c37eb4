"""The audit trail: an append-only, hash-chained record of every decision about data and models.

Clinical models are regulated, so who decided what, when, about which model version must
be provable later. Each record carries the SHA-256 of its predecessor's hash plus its own
content, so editing, deleting or inserting a record breaks the chain at that point. A
one-row head (record count and last hash) is updated in the same transaction as each
append, so deleting the last records, which leaves an intact but shorter chain, is
detected too.

What this does not protect against: someone with write access who recomputes every hash
after theirs, head included. Anchoring the head hash outside the database (a signed or
write-once copy) closes that gap.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, select

from ml_platform.store.database import create_tables, engine_for, is_serialised
from ml_platform.store.tables import GENESIS_HASH, HEAD_ID, audit_head, audit_log

AUDIT_EVENTS: tuple[str, ...] = (
    "batch_ingested",
    "batch_rejected",
    "model_trained",
    "gate_passed",
    "gate_failed",
    "approval_requested",
    "approved",
    "rejected",
    "promoted",
    "rolled_back",
    "retrain_requested",
    "version_refused",
)


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the trail, as stored."""

    id: int
    at: datetime
    actor: str
    model: str
    version: str | None
    event: str
    details: dict
    prev_hash: str
    hash: str


class AuditTrail:
    """Append and read audit records, and check that nobody changed them.

    Append-only by design: there is no method to update or delete a record.
    """

    def __init__(self, engine_or_url: sqlalchemy.Engine | str):
        if isinstance(engine_or_url, sqlalchemy.Engine):
            if not is_serialised(engine_or_url):
                raise ValueError(
                    "engine_or_url: a SQLite engine must come from ml_platform.store.database.engine_for, "
                    "which makes appends from several processes take turns instead of forking the chain"
                )
            self._engine = engine_or_url
            create_tables(engine_or_url)
        else:
            self._engine = engine_for(str(engine_or_url))

    def record(
        self,
        event: str,
        model: str,
        *,
        actor: str,
        version: str | None = None,
        details: dict | None = None,
        connection: Connection | None = None,
    ) -> AuditRecord:
        """Append one record and return it as stored.

        Reading the head, inserting and moving the head happen in one transaction holding the
        write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: the head row locked FOR UPDATE), so
        appends from several processes line up one after the other. Pass ``connection`` to
        append inside the caller's transaction, so the record commits with the decision it
        describes (and on SQLite does not wait for the lock that transaction holds).
        """
        _check_event(event)
        _check_text("model", model)
        _check_text("actor", actor)
        if version is not None:
            _check_text("version", version)
        details_text = canonical_json(_check_details(details))
        with nullcontext(connection) if connection is not None else self._engine.begin() as conn:
            head = _locked_head(conn)
            last = conn.execute(select(audit_log.c.id, audit_log.c.at).order_by(audit_log.c.id.desc()).limit(1)).first()
            row = {
                "id": (last.id if last else 0) + 1,
                "at": _timestamp_after(last.at if last else None),
                "actor": actor,
                "model": model,
                "version": version,
                "event": event,
                "details": details_text,
                "prev_hash": head.last_hash,
            }
            row["hash"] = record_hash(row)
            conn.execute(audit_log.insert().values(**row))
            conn.execute(
                audit_head.update()
                .where(audit_head.c.id == HEAD_ID)
                .values(record_count=audit_head.c.record_count + 1, last_hash=row["hash"])
            )
        return _to_record(row)

    def timeline(self, model: str) -> list[AuditRecord]:
        """Every record about ``model``, oldest first."""
        return self._select(audit_log.c.model == model)

    def records(self) -> list[AuditRecord]:
        """Every record, oldest first."""
        return self._select()

    def _select(self, *where) -> list[AuditRecord]:
        with self._engine.begin() as conn:
            rows = conn.execute(select(audit_log).where(*where).order_by(audit_log.c.id)).mappings().all()
        return [_to_record(row) for row in rows]

    def verify(self) -> list[str]:
        """The problems found in the trail, one message each; an empty list when it is intact.

        Works on the raw stored values, so it reports a record whose text was damaged
        instead of failing to read it.
        """
        with self._engine.begin() as conn:  # one transaction: the log and the head seen at the same moment
            rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings().all()
            head = conn.execute(select(audit_head).where(audit_head.c.id == HEAD_ID)).first()
        return _chain_problems(rows) + _head_problems(head, rows)

    def format_timeline(self, model: str) -> str:
        """The model's records as a table for people: time, event, version, actor and a summary of the details."""
        records = self.timeline(model)
        if not records:
            return f"No audit records for model {model!r}."
        header = ("TIME (UTC)", "EVENT", "VERSION", "ACTOR", "DETAILS")
        rows = [
            (r.at.strftime("%Y-%m-%d %H:%M:%S"), r.event, r.version or "-", r.actor, summarise(r.details))
            for r in records
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
        lines = [
            "  ".join([*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
            for row in [header, *rows]
        ]
        return "\n".join([f"Audit trail of {model} ({len(records)} records)", *lines])


def canonical_json(value: Any) -> str:
    """One spelling per value (sorted keys, no spaces, ASCII), so equal content always hashes the same."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def record_hash(row: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the record's content, exactly as stored.

    The details go in as their stored text, not re-parsed, so any change to that text is
    caught, even one that leaves the JSON equivalent.
    """
    content = [row["id"], row["at"], row["actor"], row["model"], row["version"], row["event"], row["details"]]
    return hashlib.sha256((row["prev_hash"] + canonical_json(content)).encode("utf-8")).hexdigest()


def summarise(details: dict, limit: int = 100) -> str:
    """The details on one line (``key=value, ...``), cut at ``limit`` characters."""
    parts = [f"{key}={value if isinstance(value, str) else canonical_json(value)}" for key, value in details.items()]
    text = " ".join(", ".join(parts).split())  # newlines inside values would break the table
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_event(event: str) -> None:
    if event not in AUDIT_EVENTS:
        raise ValueError(f"event {event!r} is not an audit event; allowed: {', '.join(AUDIT_EVENTS)}")


def _check_text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def _check_details(details: dict | None) -> dict:
    """The details as they will be stored: a JSON object with string keys and finite numbers."""
    if details is None:
        return {}
    if not isinstance(details, dict):
        raise ValueError(f"details must be a dict, got {type(details).__name__}")
    try:
        # Round trip: the caller gets back what was stored (tuples become lists, numeric keys strings).
        return json.loads(canonical_json(details))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"details must be JSON-serialisable (strings, finite numbers, lists, dicts): {error}"
        ) from None


def _locked_head(conn: sqlalchemy.Connection) -> sqlalchemy.Row:
    """The head row, locked until the transaction ends (FOR UPDATE is a no-op on SQLite, whose BEGIN IMMEDIATE locks)."""
    head = conn.execute(select(audit_head).where(audit_head.c.id == HEAD_ID).with_for_update()).first()
    if head is None:
        raise RuntimeError(
            "the audit head is missing (it was deleted): refusing to append to a trail whose end can no longer be "
            "checked; run verify() and restore the database from a backup"
        )
    return head


def _timestamp_after(previous: str | None) -> str:
    """Now in UTC, but always after the previous record, so times increase even with equal clock readings."""
    now = datetime.now(UTC)
    try:
        if previous is not None:
            now = max(now, datetime.fromisoformat(previous) + timedelta(microseconds=1))
    except ValueError:
        pass  # a damaged timestamp is verify()'s to report; it must not stop the append
    return now.isoformat(timespec="microseconds")


def _to_record(row) -> AuditRecord:
    try:
        details = json.loads(row["details"])
    except ValueError:
        details = {"unreadable_details": row["details"]}  # damaged text: show it rather than hide the record
    return AuditRecord(
        id=row["id"],
        at=datetime.fromisoformat(row["at"]),
        actor=row["actor"],
        model=row["model"],
        version=row["version"],
        event=row["event"],
        details=details,
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def _chain_problems(rows) -> list[str]:
    """Edited records, gaps in the ids and breaks in the chain, in id order."""
    problems: list[str] = []
    previous = None
    for row in rows:
        problems += _link_problems(previous, row)
        if record_hash(row) != row["hash"]:
            problems.append(
                f"record {row['id']} was edited after it was written (its hash no longer matches its content)"
            )
        previous = row
    return problems


def _link_problems(previous, row) -> list[str]:
    """What is wrong between ``previous`` (None at the start) and ``row``."""
    problems = []
    expected_id = previous["id"] + 1 if previous else 1
    if row["id"] != expected_id:
        missing = str(expected_id) if row["id"] == expected_id + 1 else f"{expected_id} to {row['id'] - 1}"
        problems.append(
            f"record {missing} is missing: the ids jump from {expected_id - 1} to {row['id']} (records were deleted)"
        )
    expected_prev = previous["hash"] if previous else GENESIS_HASH
    if row["prev_hash"] != expected_prev:
        before = f"record {previous['id']}, the record before it" if previous else "the start of the trail"
        problems.append(
            f"the chain breaks at record {row['id']}: its prev_hash is not the hash of {before} "
            f"(a record was deleted or inserted there, or the previous record's hash was rewritten)"
        )
    return problems


def _head_problems(head, rows) -> list[str]:
    """Disagreements between the head and the log's end: the last records deleted, or records added behind record()."""
    if head is None:
        return ["the audit head is missing (it was deleted): deleting the last records can no longer be detected"]
    problems = []
    end = f"ending at record {rows[-1]['id']}" if rows else "empty"
    if head.record_count > len(rows):
        problems.append(
            f"the head counts {head.record_count} records but the log holds {len(rows)} ({end}): "
            f"{head.record_count - len(rows)} record(s) were deleted"
        )
    elif head.record_count < len(rows):
        problems.append(
            f"the head counts {head.record_count} records but the log holds {len(rows)} ({end}): "
            f"{len(rows) - head.record_count} record(s) were added without going through the audit trail"
        )
    last_hash = rows[-1]["hash"] if rows else GENESIS_HASH
    if head.last_hash != last_hash:
        last = f"record {rows[-1]['id']}, the last in the log" if rows else "the empty log"
        problems.append(f"the head's last hash does not match {last}: the last record written was deleted or replaced")
    return problems
