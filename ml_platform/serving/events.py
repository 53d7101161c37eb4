"""Prediction and outcome events: one log line per answered record, per reported outcome.

The prediction log in the platform database is the record monitoring reads; these events
are the same answers as operations teams see them in Kibana (predictions per model and
version, latency percentiles, which client asked from which site), so they carry ECS field
names where ECS has one and an ``ml_platform`` object for the rest. They hold less than the
prediction log, since logs are copied to places with retention of their own: the record id
only as its keyed hash, no input values, no observed outcome value, the client by its
token's name (never the token). The prediction log, under the platform's retention, keeps
the inputs monitoring needs.

Building an event costs a few microseconds per record, so nothing is built unless the
logger would write it (INFO enabled); that check is made once per request.
"""

from __future__ import annotations

import logging
import time

from fastapi import Request

PREDICTIONS_LOGGER = "ml_platform.serving.predictions"
ANONYMOUS = "anonymous"  # the client when the endpoint runs without tokens (loopback only)

logger = logging.getLogger(PREDICTIONS_LOGGER)


def wanted() -> bool:
    """Whether events would be written: checked once per request, before any event is built."""
    return logger.isEnabledFor(logging.INFO)


def caller(request: Request | None, started: float) -> dict:
    """Who asked (the token's name, the address) and since when (the request's arrival), as events record it."""
    if request is None:
        return {"client": ANONYMOUS, "address": None, "started": started}
    address = request.client.host if request.client else None
    state = request.state
    return {
        "client": getattr(state, "client", ANONYMOUS),
        "address": address,
        "started": getattr(state, "received", started),
    }


def _client(name: str, address: str | None) -> dict:
    """ECS ``user.name`` is who authenticated (the token's name); ``client.address`` where the call came from."""
    fields = {"user": {"name": name}}
    if address:
        fields["client"] = {"address": address}
    return fields


def log_predictions(
    rows: list[dict], *, client: str, address: str | None, transformation_ms: float, started: float
) -> None:
    """One INFO event per answered record (rows of the prediction log, in the order answered).

    ``event.duration`` is the request's elapsed time in nanoseconds, from its arrival to the
    moment its answers were committed to the prediction log, the same for every record of it.
    """
    duration_ns = int((time.perf_counter() - started) * 1e9)
    who = _client(client, address)
    for row in rows:
        logger.info(
            "%s version %s (%s) answered prediction %s",
            row["model"], row["version"], row["route"], row["id"],
            extra={
                **who,
                "event": {"kind": "event", "action": "prediction", "duration": duration_ns},
                "ml_platform": {
                    "model": row["model"],
                    "version": row["version"],
                    "route": row["route"],
                    "prediction_id": row["id"],
                    "record_hash": row["record_hash"],
                    "prediction": row["outputs"],
                    "transformation_ms": round(transformation_ms, 3),
                    "latency_ms": round(row["latency_ms"], 3),
                },
            },
        )  # fmt: skip


def log_outcomes(rows: list[dict], *, client: str, address: str | None, started: float) -> None:
    """One INFO event per stored outcome, naming the prediction it resolves (by id, or by the keyed record hash).

    Not the outcome's value: what happened to a patient stays in the outcomes table.
    """
    duration_ns = int((time.perf_counter() - started) * 1e9)
    who = _client(client, address)
    for row in rows:
        reference = row["prediction_id"] or row["record_hash"]
        logger.info(
            "%s outcome reported for %s",
            row["model"], reference,
            extra={
                **who,
                "event": {"kind": "event", "action": "outcome", "duration": duration_ns},
                "ml_platform": {
                    "model": row["model"],
                    "prediction_id": row["prediction_id"],
                    "record_hash": row["record_hash"],
                    "source": row["source"],
                },
            },
        )  # fmt: skip
