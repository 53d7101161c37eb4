"""The audit trail: an append-only record of every decision about data and models, chained with a keyed MAC.

Clinical models are regulated, so who decided what, when, about which model version must
be provable later, also against someone who can write the platform database. Each record
carries an HMAC-SHA256, under a key kept outside the database, of its content and its
predecessor's MAC: editing, deleting, inserting or rewriting records breaks the chain, and
without the key nobody can compute a chain that verifies. A one-row head (record count
and last MAC) moves in the same transaction as each append, and after each append the head
is also written, MAC'd, to a checkpoint file outside the database (``audit_anchor``), so
cutting off the newest records or restoring an older copy of the database shows too.

What this does not protect against: someone who holds the key (and can write the
checkpoints) as well as the database; the few milliseconds between an append's commit and
its checkpoint, or a writer that died in between until the next append or verify; and
records changed before a trail written by older versions was sealed under the key.
"""

from __future__ import annotations

import functools
import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, select

from ml_platform.governance import audit_checks as checks
from ml_platform.governance.audit_anchor import Checkpoints, audit_key, checkpoint_folder
from ml_platform.governance.audit_checks import canonical_json
from ml_platform.settings import platform_home
from ml_platform.store.database import create_tables, engine_for, is_serialised
from ml_platform.store.tables import HEAD_ID, audit_head, audit_log

logger = logging.getLogger("ml_platform.governance.audit")

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
    "promotion_started",  # the intent, written before an alias moves; "promoted"/"rolled_back" complete it
    "promotion_abandoned",  # an intent whose alias never moved (the process died first)
    "audit_sealed",  # an operator re-anchored the trail under the key
    "version_refused",
    "data_purged",  # prediction-log rows and outcomes past retention deleted (counts, never values)
)

SEAL_MODEL = "audit_trail"  # the model name of records about the trail itself


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


@dataclass(frozen=True)
class Verification:
    """What a check of the trail found: problems (it fails), notes (it passes, with a caveat), its size."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    record_count: int = 0


class AuditTrail:
    """Append and read audit records, and check that nobody changed them.

    Append-only by design: there is no method to update or delete a record.
    """

    def __init__(self, engine_or_url: sqlalchemy.Engine | str, *, home: Path | None = None):
        """``home`` locates the default key and checkpoints (default: the platform home); reading needs neither."""
        self._home = home
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

    @functools.cached_property
    def _key(self) -> bytes:
        # Resolved on first append or check: reading the timeline needs no key.
        return audit_key(self._home or platform_home())

    @functools.cached_property
    def checkpoints(self) -> Checkpoints:
        """The signed checkpoints of the head, outside the database."""
        return Checkpoints(checkpoint_folder(self._home or platform_home()), self._key)

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
        describes (and on SQLite does not wait for the lock that transaction holds); the
        caller then calls ``checkpoint()`` after its commit. Without ``connection`` the
        checkpoint is written here, right after the commit.
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
            row["hash"] = checks.record_mac(self._key, row)
            conn.execute(audit_log.insert().values(**row))
            conn.execute(
                audit_head.update()
                .where(audit_head.c.id == HEAD_ID)
                .values(record_count=audit_head.c.record_count + 1, last_hash=row["hash"])
            )
        _log(row)
        if connection is None:
            self.checkpoint(appended=row["id"])
        return _to_record(row)

    def checkpoint(self, *, appended: int | None = None) -> str | None:
        """Write the committed head to a new checkpoint; None, or why none was written.

        ``appended`` is the id of the record the caller just wrote. Refused when the
        database no longer holds the record the newest checkpoint ends at (records were cut
        off, rewritten or an old copy restored): a newer checkpoint would hide that. The
        first checkpoint is written only by the writer of record 1, so a trail whose
        checkpoints vanished (or that predates them) is not silently re-anchored: ``verify()``
        reports it and ``seal()`` is the operator's explicit way on.
        """
        return self._checkpoint(first=appended == 1)

    def _checkpoint(self, *, first: bool) -> str | None:
        latest, _ = self.checkpoints.latest()
        with self._engine.begin() as conn:
            head = conn.execute(select(audit_head).where(audit_head.c.id == HEAD_ID)).first()
            at_count = None
            if latest is not None and latest.record_count:
                at_count = conn.execute(
                    select(audit_log.c.hash).where(audit_log.c.id == latest.record_count)
                ).scalar_one_or_none()
            prefix = latest.unkeyed_prefix if latest is not None else self._unkeyed_prefix(conn)
        if head is None or not checks.continues(latest, at_count) or (latest is None and not first):
            return "no checkpoint written: the trail does not continue the newest one; run `ml-platform audit verify`"
        if latest is not None and head.record_count <= latest.record_count:
            return None  # nothing new since (or another process already wrote a newer one)
        self.checkpoints.write(head.record_count, head.last_hash, prefix)
        return None

    def _unkeyed_prefix(self, conn: Connection) -> int:
        """Leading plain-hash records, read in pages until the first keyed one (at once on a new trail)."""
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings()
        return checks.unkeyed_prefix(self._key, rows)

    def seal(self, *, by: str, reason: str) -> AuditRecord:
        """Re-anchor the trail under the key: an operator's explicit, audited decision.

        For a trail written before keyed chaining, after checkpoints were lost, or after an
        accepted restore: the checkpoints there are moved aside (kept as evidence), the
        decision is appended, and a fresh checkpoint accepts the trail as it now stands.
        """
        _check_text("by", by)
        _check_text("reason", reason)
        found = self.check().problems
        moved = self.checkpoints.set_aside()
        details = {"reason": reason, "problems_found": len(found), "checkpoints_set_aside": moved}
        with self._engine.begin() as conn:
            record = self.record("audit_sealed", SEAL_MODEL, actor=by, details=details, connection=conn)
        self._checkpoint(first=True)
        return record

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
        """The problems found in the trail, one message each; an empty list when it is intact."""
        return self.check().problems

    def check(self) -> Verification:
        """The chain, the head and the newest checkpoint checked; an intact trail is checkpointed again.

        Works on the raw stored values, so it reports a record whose text was damaged
        instead of failing to read it.
        """
        latest, problems = self.checkpoints.latest()
        with self._engine.begin() as conn:  # one transaction: the log and the head seen at the same moment
            rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings().all()
            head = conn.execute(select(audit_head).where(audit_head.c.id == HEAD_ID)).first()
        allowed = latest.unkeyed_prefix if latest is not None else None
        chain, notes = checks.chain_problems(self._key, rows, allowed)
        problems += chain + checks.head_problems(head, rows)
        problems += checks.checkpoint_problems(latest, rows, self.checkpoints.folder)
        if not problems:
            self._checkpoint(first=False)  # covers appends whose writer died before checkpointing
        return Verification(problems=problems, notes=notes, record_count=len(rows))

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


def _log(row: dict[str, Any]) -> None:
    """The decision as a log line too, so operations see it beside the runs (details stay in the trail).

    Written once the append is done; with a caller's ``connection`` it commits with the caller's transaction.
    """
    logger.info(
        "audit %s: %s %s by %s", row["id"], row["event"], row["model"], row["actor"],
        extra={
            "event": {"action": row["event"], "sequence": row["id"]},
            "user": {"name": row["actor"]},
            "ml_platform": {"model": row["model"], "version": row["version"]},
        },
    )  # fmt: skip


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
