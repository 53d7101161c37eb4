"""The reconciler: does the registry say what the audit trail says the platform decided?

Every alias move the platform makes is audited in the same transaction (a promotion, a
release, a rollback). So the aliases the trail implies are what the registry must hold; a
difference means someone moved an alias outside the platform (or a promotion crashed half
way), and people must look. The endpoint refuses unattested versions either way; this makes
the move itself visible.
"""

from __future__ import annotations

from ml_platform.store.registry import current_aliases
from ml_platform.store.tags import ALIASES, CHALLENGER, CHAMPION


def expected_aliases(audit, model: str) -> dict[str, str]:
    """The aliases the audit trail's promotions, releases and rollbacks leave, replayed in order."""
    expected: dict[str, str] = {}
    for record in audit.timeline(model):
        if record.event == "promoted":
            alias = record.details.get("alias")
            expected[alias] = record.version
            if alias == CHAMPION and expected.get(CHALLENGER) == record.version:
                expected.pop(CHALLENGER)  # a release, or a promotion of the challenger, clears it
        elif record.event == "rolled_back":
            expected[CHAMPION] = str(record.details.get("to"))
    return expected


def alias_drift(client, audit, model: str) -> list[str]:
    """One sentence per alias whose registry version differs from the audit trail's; empty when they agree."""
    registry = {alias: version for alias, version in current_aliases(client, model).items() if alias in ALIASES}
    expected = expected_aliases(audit, model)
    return [
        f"{model}: alias '{alias}' is {_says(registry.get(alias))} in the registry but "
        f"{_says(expected.get(alias))} by the audit trail; it was moved outside the platform"
        for alias in ALIASES
        if registry.get(alias) != expected.get(alias)
    ]


def _says(version: str | None) -> str:
    return f"version {version}" if version else "unset"
