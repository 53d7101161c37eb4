"""Every table of the platform database, in one place.

The audit trail and its head, approvals and the promotion lock (governance), the
prediction log, outcomes and loaded outcome files (serving and monitoring). The modules
that read and write them import them from here, so every engine creates every table.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

GENESIS_HASH = "0" * 64
HEAD_ID = 1

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "at", sa.String(40), nullable=False
    ),  # ISO 8601 in UTC, stored as text: the hash covers these exact characters
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("model", sa.String, nullable=False, index=True),
    sa.Column("version", sa.String, nullable=True),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # canonical JSON
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("record_count", sa.Integer, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
    sa.CheckConstraint(f"id = {HEAD_ID}", name="audit_head_single_row"),
)


@sa.event.listens_for(audit_head, "after_create")
def _start_head(target: sa.Table, connection: sa.Connection, **kw: Any) -> None:
    """Write the head of the empty trail in the transaction that creates its table, so it always exists."""
    connection.execute(audit_head.insert().values(id=HEAD_ID, record_count=0, last_hash=GENESIS_HASH))


approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("version", sa.String(50), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("decided_by", sa.String(200)),
    sa.Column("reason", sa.Text),
    sa.Column("promoted", sa.Boolean, nullable=False, default=False),
)

promotion_locks = sa.Table(
    "promotion_locks",
    metadata,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
)


predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.String(50), nullable=False),
    # champion or canary (the answer returned), or shadow (logged only, never returned)
    sa.Column("route", sa.String(20), nullable=False),
    sa.Column("shadow_of", sa.String(32), nullable=True),
    sa.Column("subject_hash", sa.String(64), nullable=False),
    sa.Column("record_hash", sa.String(64), nullable=False, index=True),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("outputs", sa.JSON, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Index("ix_predictions_model_created_at", "model", "created_at"),
)

outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False, index=True),
    sa.Column("prediction_id", sa.String(32), nullable=True, index=True),
    sa.Column("record_hash", sa.String(64), nullable=True, index=True),
    sa.Column("outcome", sa.Float, nullable=False),
    sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(300), nullable=False),  # "api" or the landed file's name
)

# Outcome files already loaded, by content hash: a file is loaded once, whoever sees it first.
outcome_files = sa.Table(
    "outcome_files",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
)
