"""Governance: who may reach patients, decided in one place.

A model version may become ``champion`` (or ``challenger``) only when its gates passed
and, where the spec requires it, a named person approved it. Aliases move under a
per-model lock in the platform database, so two promotions at once serialise and the
registry never ends with a half-applied decision. Every decision goes to the audit trail.

The registry (MLflow aliases and version tags) is the source of truth for what is
deployed; the platform database holds approvals and the audit trail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from ml_platform.errors import PlatformError
from ml_platform.governance import intents
from ml_platform.governance.intents import Move
from ml_platform.spec import ModelSpec
from ml_platform.store.database import insert_if_absent
from ml_platform.store.registry import current_aliases
from ml_platform.store.tables import approvals, promotion_locks
from ml_platform.store.tags import CHALLENGER, CHAMPION, GATE_FAILURES, GATES


class GovernanceError(PlatformError):
    """A decision the rules do not allow, with the reason in words."""


@dataclass(frozen=True)
class Approval:
    model: str
    version: str
    status: str
    requested_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None
    promoted: bool


def _now() -> datetime:
    return datetime.now(UTC)


# ----------------------------------------------------------------------------- approvals


def request_approval(engine: sa.Engine, model: str, version: str) -> bool:
    """Mark a gated version as waiting for approval; False if it already has an approval record."""
    with engine.begin() as conn:
        if conn.execute(sa.select(approvals.c.status).where(_key(model, version))).first():
            return False
        conn.execute(
            approvals.insert().values(
                model=model, version=version, status="pending", requested_at=_now(), promoted=False
            )
        )
    return True


def decide(engine: sa.Engine, model: str, version: str, approve: bool, by: str, reason: str) -> Approval:
    """Record a person's decision on a pending version."""
    if not by.strip() or not reason.strip():
        raise GovernanceError("a decision needs the name of who made it (--by) and a reason (--reason)")
    current = get_approval(engine, model, version)
    if current is None:
        raise GovernanceError(
            f"{model} version {version} is not waiting for approval; `ml-platform pending` lists what waits"
        )
    if current.status != "pending":
        raise GovernanceError(
            f"{model} version {version} was already {current.status} by {current.decided_by} "
            f"at {current.decided_at:%Y-%m-%d %H:%M} UTC ({current.reason})"
        )
    with engine.begin() as conn:
        conn.execute(
            approvals.update()
            .where(_key(model, version))
            .values(status="approved" if approve else "rejected", decided_at=_now(), decided_by=by, reason=reason)
        )
    return get_approval(engine, model, version)


def get_approval(engine: sa.Engine, model: str, version: str) -> Approval | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(approvals).where(_key(model, version))).mappings().first()
    return Approval(**row) if row else None


def list_approvals(engine: sa.Engine, status: str | None = None, model: str | None = None) -> list[Approval]:
    query = sa.select(approvals).order_by(approvals.c.requested_at)
    if status:
        query = query.where(approvals.c.status == status)
    if model:
        query = query.where(approvals.c.model == model)
    with engine.connect() as conn:
        return [Approval(**row) for row in conn.execute(query).mappings()]


def approved_awaiting_promotion(engine: sa.Engine, model: str) -> list[str]:
    """Approved versions not yet carried to promotion: what the approval sensor acts on."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(approvals.c.version)
            .where(approvals.c.model == model, approvals.c.status == "approved", approvals.c.promoted.is_(False))
            .order_by(approvals.c.decided_at)
        )
        return [r.version for r in rows]


def mark_promoted(engine: sa.Engine, model: str, version: str) -> None:
    with engine.begin() as conn:
        conn.execute(approvals.update().where(_key(model, version)).values(promoted=True))


def _key(model: str, version: str):
    return sa.and_(approvals.c.model == model, approvals.c.version == str(version))


# ----------------------------------------------------------------------------- promotion


@contextmanager
def promotion_lock(engine: sa.Engine, model: str, holder: str) -> Iterator[sa.Connection]:
    """Hold the model's promotion lock for the block; yield its connection.

    The model's lock row is created once (race-free), then updated: on PostgreSQL the
    UPDATE holds the row's lock until the block ends; on SQLite the platform engine begins
    every transaction IMMEDIATE, which takes the database write lock. Either way a second
    promoter waits here. Write the decision's audit record on the
    yielded connection, so records are in the order the decisions took effect (and, on
    SQLite, another connection would wait for this very lock).
    """
    with engine.begin() as conn:
        insert_if_absent(conn, promotion_locks, model=model, holder=holder, acquired_at=_now())
    with engine.begin() as conn:
        conn.execute(
            promotion_locks.update().where(promotion_locks.c.model == model).values(holder=holder, acquired_at=_now())
        )
        yield conn


def eligibility(spec: ModelSpec, client, engine: sa.Engine, version: str) -> str | None:
    """Why ``version`` may not be deployed, or None when it may."""
    return gate_problem(spec, client, version) or approval_problem(spec, engine, version)


def gate_problem(spec: ModelSpec, client, version: str) -> str | None:
    """Why the registry says ``version`` may never be deployed (missing, unevaluated, failed), or None."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_model_version(spec.name, str(version)).tags
    except MlflowException:
        return f"{spec.name} has no version {version} in the model registry"
    gates = tags.get(GATES)
    if gates is None:
        return f"{spec.name} version {version} has not been evaluated yet, so its gates are unknown"
    if gates != "passed":
        failures = tags.get(GATE_FAILURES, "see its evaluation report")
        return f"{spec.name} version {version} failed its gates ({failures}); it can never be deployed"
    return None


def approval_problem(spec: ModelSpec, engine: sa.Engine, version: str) -> str | None:
    """Why ``version`` still needs a person's approval, or None."""
    if spec.deployment.approval != "required":
        return None
    approval = get_approval(engine, spec.name, str(version))
    if approval is None or approval.status != "approved":
        state = approval.status if approval else "not requested"
        return f"{spec.name} requires approval and version {version} is {state}"
    return None


def promote(spec: ModelSpec, client, engine: sa.Engine, audit, version: str, holder: str) -> dict | None:
    """Move the alias the deployment policy names to ``version`` and audit it; None when it is already there.

    ``direct`` makes the version champion. ``canary`` and ``shadow`` make it challenger
    beside the current champion, except for a model's first version, which has no champion
    to run beside and becomes champion.
    """
    problem = eligibility(spec, client, engine, version)
    if problem:
        raise GovernanceError(problem)

    def plan(aliases: dict) -> Move | None:
        alias = CHAMPION if spec.deployment.policy == "direct" or CHAMPION not in aliases else CHALLENGER
        if aliases.get(alias) == str(version):
            return None
        change = {
            "alias": alias,
            "version": str(version),
            "previous": aliases.get(alias),
            "policy": spec.deployment.policy,
            "champion": str(version) if alias == CHAMPION else aliases.get(CHAMPION),
        }
        clear = alias == CHAMPION and aliases.get(CHALLENGER) == str(version)
        return Move(spec.name, alias, str(version), "promoted", change, clear_challenger=clear)

    return move_alias(client, engine, audit, spec.name, holder, plan)


PROMOTION_WAIT_SECONDS = 120.0


def move_alias(client, engine: sa.Engine, audit, model: str, holder: str, plan: Callable[[dict], Move | None]):
    """Plan a move on the current aliases under the lock, commit its intent, move, commit its completion.

    ``plan`` decides on the aliases as they are (None: nothing to move; GovernanceError: not
    allowed). An open intent of a live process holds the model: wait for it. One of a dead
    process is settled first, so every decision starts from a trail that agrees with the registry.
    """
    deadline = time.monotonic() + PROMOTION_WAIT_SECONDS
    while True:
        with promotion_lock(engine, model, holder) as conn:
            settled = intents.settle(conn, client, audit, model)
            move, refusal = None, None
            if not settled.in_progress:
                try:
                    move = plan(current_aliases(client, model))
                except GovernanceError as error:
                    refusal = error  # raised after the commit, so what settle wrote is kept
                if move is not None:
                    intent = audit.record(
                        intents.INTENT,
                        model,
                        actor=holder,
                        version=move.version,
                        details=move.intent_details(),
                        connection=conn,
                    )
        audit.checkpoint()
        if refusal is not None:
            raise refusal
        if not settled.in_progress:
            break
        if time.monotonic() > deadline:
            raise GovernanceError("; ".join(settled.in_progress) + f"; waited {PROMOTION_WAIT_SECONDS:.0f} s")
        time.sleep(0.2)
    if move is None:
        return None
    audit.checkpoint(appended=intent.id)
    intents.apply(client, move)
    with promotion_lock(engine, model, holder) as conn:
        audit.record(
            move.completion,
            model,
            actor=holder,
            version=move.version,
            details=move.completion_details(),
            connection=conn,
        )
    audit.checkpoint()
    return move.change


def champion_history(audit, model: str) -> list[str]:
    """The versions that were champion, in order, from the audit trail."""
    history = []
    for record in audit.timeline(model):
        if record.event == "promoted" and record.details.get("alias") == CHAMPION:
            history.append(record.version)
        elif record.event == "rolled_back":
            history.append(record.details["to"])
    return history


def rollback_target(spec: ModelSpec, client, engine: sa.Engine, history: list[str], to: str | None) -> str:
    """The version a rollback moves the champion to: ``to``, or the champion before the current one."""
    current = current_aliases(client, spec.name).get(CHAMPION)
    if current is None:
        raise GovernanceError(f"{spec.name} has no champion to roll back")
    if to is None:
        earlier = [v for v in reversed(history) if v != current]
        if not earlier:
            raise GovernanceError(f"{spec.name} has had no champion before version {current}; name one with --to")
        to = earlier[0]
    if str(to) == current:
        raise GovernanceError(f"version {to} is already the champion of {spec.name}")
    problem = eligibility(spec, client, engine, str(to))
    if problem:
        raise GovernanceError(f"cannot roll back to it: {problem}")
    return str(to)


def roll_back(spec: ModelSpec, client, engine: sa.Engine, audit, version: str, by: str, reason: str) -> dict:
    """Point ``champion`` back at ``version`` under the lock and audit it; return what changed."""

    def plan(aliases: dict) -> Move:
        details = {"from": aliases.get(CHAMPION), "to": str(version), "reason": reason}
        return Move(spec.name, CHAMPION, str(version), "rolled_back", details)

    change = move_alias(client, engine, audit, spec.name, by, plan)
    return {key: change[key] for key in ("from", "to", "reason")}


def complete_release(spec: ModelSpec, client, engine: sa.Engine, audit, by: str, reason: str) -> dict:
    """End a canary or shadow release: the challenger becomes champion, under the lock, audited.

    The challenger was gated (and approved) when it became challenger; it is checked again,
    so a version whose gate tag was changed since cannot slip through.
    """
    if not by.strip() or not reason.strip():
        raise GovernanceError("a release needs the name of who decided it (--by) and a reason (--reason)")

    def plan(aliases: dict) -> Move:
        version = aliases.get(CHALLENGER)
        if version is None:
            raise GovernanceError(f"{spec.name} has no challenger to release; the deployment policy moves one there")
        problem = eligibility(spec, client, engine, version)
        if problem:
            raise GovernanceError(f"cannot release it: {problem}")
        change = {
            "alias": CHAMPION,
            "version": version,
            "previous": aliases.get(CHAMPION),
            "policy": spec.deployment.policy,
            "champion": version,
            "released_from": CHALLENGER,
            "reason": reason,
        }
        return Move(spec.name, CHAMPION, version, "promoted", change, clear_challenger=True)

    return move_alias(client, engine, audit, spec.name, by, plan)
