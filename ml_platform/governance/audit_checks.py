"""Checking the audit trail: its MAC chain, its head, and the newest checkpoint outside the database.

Each check returns messages for people: what was found, where, and what to do. They work on
the raw stored rows, so a damaged record is reported instead of failing to be read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from ml_platform.governance.audit_anchor import Checkpoint, mac
from ml_platform.store.tables import GENESIS_HASH

KEYED, PLAIN, BROKEN = "keyed", "plain", "broken"

_RESTORE = (
    "restore the database from a backup at least as new as that checkpoint; if the loss is accepted, "
    "an operator re-anchors with `ml-platform audit seal --by NAME --reason TEXT`"
)


def canonical_json(value: Any) -> str:
    """One spelling per value (sorted keys, no spaces, ASCII), so equal content always hashes the same."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _content(row) -> str:
    """The chained text of a record: its predecessor's MAC and its own fields exactly as stored.

    The details go in as their stored text, not re-parsed, so any change to that text is
    caught, even one that leaves the JSON equivalent.
    """
    fields = [row["id"], row["at"], row["actor"], row["model"], row["version"], row["event"], row["details"]]
    return row["prev_hash"] + canonical_json(fields)


def record_mac(key: bytes, row) -> str:
    """HMAC-SHA256 under the audit key of the record's content and its predecessor's MAC."""
    return mac(key, "record", _content(row))


def record_hash(row) -> str:
    """The plain SHA-256 chain of trails written before keyed chaining; kept to recognise them."""
    return hashlib.sha256(_content(row).encode("utf-8")).hexdigest()


def seal_of(key: bytes, row) -> str:
    """How a stored record is sealed: by the key, by a plain hash only (legacy or forged), or not at all."""
    if hmac.compare_digest(str(row["hash"]), record_mac(key, row)):
        return KEYED
    return PLAIN if row["hash"] == record_hash(row) else BROKEN


def unkeyed_prefix(key: bytes, rows) -> int:
    """How many records at the start carry a plain hash: the part of a trail that predates keyed chaining."""
    count = 0
    for row in rows:
        if seal_of(key, row) != PLAIN:
            break
        count += 1
    return count


def chain_problems(key: bytes, rows, allowed_prefix: int | None) -> tuple[list[str], list[str]]:
    """Edited records, gaps, breaks and records not sealed with the key; plus notes on a legacy prefix.

    ``allowed_prefix`` is how many leading plain-hash records the newest checkpoint accepted
    (None without a checkpoint: then a trail of plain hashes only predates keyed chaining).
    """
    problems: list[str] = []
    seals = [seal_of(key, row) for row in rows]
    previous = None
    for row, seal in zip(rows, seals, strict=True):
        problems += _link_problems(previous, row)
        if seal == BROKEN:
            problems.append(
                f"record {row['id']} was edited after it was written (its MAC no longer matches its content)"
            )
        previous = row
    prefix = next((i for i, seal in enumerate(seals) if seal != PLAIN), len(seals))
    notes: list[str] = []
    if rows and prefix == len(rows) and allowed_prefix is None:
        problems.append(_legacy_message(len(rows)))
        return problems, notes
    accepted = prefix if allowed_prefix is None else min(prefix, allowed_prefix)
    forged = [row["id"] for row, seal in zip(rows[accepted:], seals[accepted:], strict=True) if seal == PLAIN]
    if forged:
        problems.append(
            f"{_ids(forged)} carry a plain hash instead of the audit key's MAC: they were written or rewritten "
            "by someone without the key (a rewrite of the trail); restore the database from a backup"
        )
    if accepted:
        notes.append(
            f"records 1 to {accepted} predate keyed chaining: a change to them made before record "
            f"{accepted + 1} was written cannot be ruled out; later changes are detected"
        )
    return problems, notes


def _legacy_message(count: int) -> str:
    return (
        f"the audit trail predates keyed chaining: its {count} records carry plain SHA-256 hashes, which anyone "
        "with database access can recompute, so an intact chain does not rule out a rewrite. Compare it with a "
        "backup, then seal it under the audit key with `ml-platform audit seal --by NAME --reason TEXT`; "
        "changes after that are detected"
    )


def _ids(ids: list[int]) -> str:
    if len(ids) == 1:
        return f"record {ids[0]}"
    if ids == list(range(ids[0], ids[-1] + 1)):
        return f"records {ids[0]} to {ids[-1]}"
    return "records " + ", ".join(map(str, ids))


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
            f"the chain breaks at record {row['id']}: its prev_hash is not the MAC of {before} "
            f"(a record was deleted or inserted there, or the previous record was rewritten)"
        )
    return problems


def head_problems(head, rows) -> list[str]:
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


def checkpoint_problems(checkpoint: Checkpoint | None, rows, folder) -> list[str]:
    """Disagreements between the database and the newest checkpoint: records cut off, rewritten or an old copy."""
    if checkpoint is None:
        if not rows:
            return []
        return [
            f"no checkpoint of the audit trail in {folder}, although it holds {len(rows)} records: the checkpoints "
            "were deleted or ML_PLATFORM_AUDIT_CHECKPOINTS points elsewhere, so deleting the newest records "
            "cannot be ruled out; point the setting at the checkpoints, or re-anchor with "
            "`ml-platform audit seal --by NAME --reason TEXT`"
        ]
    if checkpoint.record_count > len(rows):
        return [
            f"the database holds {len(rows)} audit records but {checkpoint.describe()} recorded "
            f"{checkpoint.record_count}: records {len(rows) + 1} to {checkpoint.record_count} were deleted, or an "
            f"older copy of the database was restored; {_RESTORE}"
        ]
    if checkpoint.record_count and rows[checkpoint.record_count - 1]["hash"] != checkpoint.last_mac:
        return [
            f"record {checkpoint.record_count} is not the one {checkpoint.describe()} recorded: the trail was "
            f"rewritten, or an older copy of the database was restored and written to since; {_RESTORE}"
        ]
    return []


def continues(checkpoint: Checkpoint | None, record_at_count) -> bool:
    """Whether the database still holds the record a checkpoint ends at, so a newer checkpoint may follow it.

    A new checkpoint that followed a cut or rewritten trail would hide the evidence, so none is written then.
    """
    if checkpoint is None or checkpoint.record_count == 0:
        return True
    return record_at_count is not None and record_at_count == checkpoint.last_mac
