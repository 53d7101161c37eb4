"""Intent and completion records around every alias move, and settling the ones a crash left open.

Moving a registry alias and writing the audit record cannot be one transaction: the
registry is MLflow, the trail is the platform database. So the intent
(``promotion_started``, with a correlation id and the move it will make) is committed
before the alias moves, and the completion (``promoted`` or ``rolled_back``, same
correlation id) after. A process killed in between leaves an open intent; whoever meets
it next (the next promotion of that model, the reconciler, ``ml-platform audit verify``)
settles it from what the registry shows: the alias moved, so the completion is written
(marked as a repair); or it did not, so the promotion is recorded as abandoned.

An open intent also holds the model's promotion while its process lives: other promoters
wait for it, so a decision is never made on aliases another promotion is about to move.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from ml_platform.store.registry import current_aliases
from ml_platform.store.tables import audit_log
from ml_platform.store.tags import CHALLENGER, CHAMPION

INTENT, ABANDONED = "promotion_started", "promotion_abandoned"
COMPLETIONS = ("promoted", "rolled_back")
# An intent from another host whose process cannot be asked counts as interrupted after this long;
# a promotion (two registry calls and two commits) takes seconds.
STALE_AFTER = timedelta(minutes=10)
RECONCILER = "ml_platform_reconciler"


@dataclass(frozen=True)
class Move:
    """One alias move: where ``version`` goes, what else changes, and the completion record it earns."""

    model: str
    alias: str
    version: str
    completion: str
    change: dict
    clear_challenger: bool = False
    correlation_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def intent_details(self) -> dict:
        here = {"host": socket.gethostname(), "pid": os.getpid()}
        moves = {"alias": self.alias, "version": self.version, "clear_challenger": self.clear_challenger}
        return {
            "correlation_id": self.correlation_id,
            "completion": self.completion,
            "change": self.change,
            **moves,
            "holder": here,
        }

    def completion_details(self) -> dict:
        return {**self.change, "correlation_id": self.correlation_id}


def apply(client, move: Move) -> None:
    """Move the alias in the registry; idempotent, so a repair can finish what a crash left half done."""
    client.set_registered_model_alias(move.model, move.alias, move.version)
    if move.clear_challenger and current_aliases(client, move.model).get(CHALLENGER) == move.version:
        client.delete_registered_model_alias(move.model, CHALLENGER)


def open_intents(conn: sa.Connection, model: str) -> list[dict]:
    """The model's intents with no completion and no abandonment yet, oldest first, as stored rows."""
    rows = conn.execute(
        sa.select(audit_log.c.id, audit_log.c.at, audit_log.c.event, audit_log.c.details)
        .where(audit_log.c.model == model, audit_log.c.event.in_((INTENT, ABANDONED, *COMPLETIONS)))
        .order_by(audit_log.c.id)
    ).mappings()
    pending: dict[str, dict] = {}
    for row in rows:
        details = _details(row["details"])
        key = details.get("correlation_id")
        if key is None:
            continue  # a completion written before intents existed
        if row["event"] == INTENT:
            pending[key] = {**details, "id": row["id"], "at": row["at"]}
        else:
            pending.pop(key, None)
    return list(pending.values())


@dataclass
class Settled:
    """What settling found: sentences for people about each repair or abandonment, and intents still live."""

    reports: list[str] = field(default_factory=list)
    in_progress: list[str] = field(default_factory=list)


def settle(conn: sa.Connection, client, audit, model: str) -> Settled:
    """Close every open intent of ``model`` whose process is gone, from what the registry shows.

    Call it holding the model's promotion lock on ``conn``, so two reconcilers never both close one.
    """
    settled = Settled()
    for intent in open_intents(conn, model):
        if holder_alive(intent):
            holder = intent.get("holder", {})
            settled.in_progress.append(
                f"{model}: a promotion of version {intent['version']} to {intent['alias']} started at "
                f"{intent['at']} by process {holder.get('pid')} on {holder.get('host')} is still in progress"
            )
            continue
        settled.reports.append(_close(conn, client, audit, model, intent))
    return settled


def _close(conn: sa.Connection, client, audit, model: str, intent: dict) -> str:
    """Write the completion of an interrupted move if the alias moved (repair), else record it abandoned."""
    move = Move(
        model=model,
        alias=intent["alias"],
        version=intent["version"],
        completion=intent["completion"],
        change=intent["change"],
        clear_challenger=intent["clear_challenger"],
        correlation_id=intent["correlation_id"],
    )
    action = "rollback" if move.completion == "rolled_back" else "promotion"
    started = f"the {action} of {model} version {move.version} to {move.alias} (record {intent['id']})"
    if current_aliases(client, model).get(move.alias) == move.version:
        apply(client, move)  # a crash between the two registry calls left the challenger alias behind
        details = {**move.completion_details(), "repaired": True, "intent_record": intent["id"]}
        audit.record(move.completion, model, actor=RECONCILER, version=move.version, details=details, connection=conn)
        return f"repaired: {started} was interrupted after the alias moved; its completion is now recorded"
    details = {
        "correlation_id": move.correlation_id,
        "intent_record": intent["id"],
        "alias": move.alias,
        "reason": "the process stopped before the registry alias moved",
    }
    audit.record(ABANDONED, model, actor=RECONCILER, version=move.version, details=details, connection=conn)
    return f"abandoned: {started} was interrupted before the alias moved; the registry is unchanged"


def holder_alive(intent: dict) -> bool:
    """Whether the process that wrote an intent may still be moving the alias.

    On this host the process is asked directly; from another host it counts as alive until
    the intent is STALE_AFTER old.
    """
    holder = intent.get("holder", {})
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        started = datetime.fromisoformat(intent["at"])
    except (KeyError, TypeError, ValueError):
        return False
    return datetime.now(UTC) - started < STALE_AFTER


def expected_aliases(records) -> dict[str, str]:
    """The aliases a model should have, replaying its completed alias moves from the trail (oldest first)."""
    aliases: dict[str, str] = {}
    for record in records:
        if record.event == "promoted":
            alias, version = record.details.get("alias"), record.version
            aliases[alias] = version
            if alias == CHAMPION and aliases.get(CHALLENGER) == version:
                del aliases[CHALLENGER]
        elif record.event == "rolled_back":
            aliases[CHAMPION] = record.details.get("to", record.version)
    return aliases


def _details(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
