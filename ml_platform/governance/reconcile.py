"""The reconciler: settle interrupted alias moves, and check that the trail and the registry agree.

Called at the start of every promotion (for its model), by ``ml-platform audit verify``, and
by anything that wants a report (a sensor). The registry is what is served; the trail is what
was decided. They must name the same champion and challenger: a difference means a move the
trail never saw (an alias moved outside the platform) or a decision whose move was undone.
"""

from __future__ import annotations

import sqlalchemy as sa

from ml_platform.governance import intents
from ml_platform.governance.promotion import promotion_lock
from ml_platform.store.registry import current_aliases
from ml_platform.store.tables import audit_log
from ml_platform.store.tags import CHALLENGER, CHAMPION


def reconcile(client, engine: sa.Engine, audit, models: list[str] | None = None) -> intents.Settled:
    """Settle every open intent whose process is gone, in ``models`` (default: every model with one).

    Each model is settled under its promotion lock, so this may run beside promotions and
    other reconcilers. Returns the repairs and abandonments made, and the moves still in progress.
    """
    settled = intents.Settled()
    for model in models if models is not None else models_with_open_intents(engine):
        with engine.connect() as conn:
            if not intents.open_intents(conn, model):
                continue  # the common case: nothing to lock for
        with promotion_lock(engine, model, intents.RECONCILER) as conn:
            found = intents.settle(conn, client, audit, model)
        settled.reports += found.reports
        settled.in_progress += found.in_progress
    audit.checkpoint()
    return settled


def models_with_open_intents(engine: sa.Engine) -> list[str]:
    """Models that have ever had an intent: the candidates for settling."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.model).where(audit_log.c.event == intents.INTENT).distinct())
        return sorted(row.model for row in rows)


def models_with_alias_moves(engine: sa.Engine) -> list[str]:
    """Models whose aliases the trail has moved."""
    events = (intents.INTENT, *intents.COMPLETIONS)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.model).where(audit_log.c.event.in_(events)).distinct())
        return sorted(row.model for row in rows)


def disagreements(client, audit, models: list[str]) -> list[str]:
    """For each model, where the registry's champion and challenger differ from the trail's completed moves."""
    problems = []
    for model in models:
        expected = intents.expected_aliases(audit.timeline(model))
        actual = current_aliases(client, model)
        for alias in (CHAMPION, CHALLENGER):
            if expected.get(alias) != actual.get(alias):
                problems.append(_disagreement(model, alias, expected.get(alias), actual.get(alias)))
    return problems


def _disagreement(model: str, alias: str, expected: str | None, actual: str | None) -> str:
    said = f"version {expected}" if expected else "no version"
    shows = f"version {actual}" if actual else "no version"
    return (
        f"{model}: the registry's {alias} is {shows} but the audit trail's last completed moves give it {said}: "
        "the alias was moved (or removed) outside the platform, or a recorded move was undone; move it back with "
        "`ml-platform rollback` (or find who moved it in the registry's history)"
    )


def alias_drift(client, audit, model: str) -> list[str]:
    """One sentence per alias of ``model`` whose registry version differs from the trail's; empty when they agree."""
    return disagreements(client, audit, [model])
