"""Dagster's own run events as ECS JSON: a formatter for the instance's ``python_logs`` handlers.

A run's events (step started, materialisation, ``context.log`` messages) reach the console
through Dagster's default coloured text logger, whatever the platform's settings; a job's
own console logger would apply only to runs whose run config names it. The instance,
though, hands every run event to the handlers of ``python_logs.dagster_handler_config`` in
its dagster.yaml (README, "Logs"); with this formatter there, they are written as ECS JSON
beside the platform's lines, with the run, job, step and event type as a small ``dagster``
object instead of Dagster's whole event objects.
"""

from __future__ import annotations

import logging

import ecs_logging

from ml_platform.logs import EXCLUDED_FIELDS, ecs_extra
from ml_platform.settings import get_settings

# Attributes Dagster attaches to its log records: whole event objects, too big and too internal for a line.
DAGSTER_RECORD_ATTRIBUTES = ("dagster_meta", "dagster_event", "dagster_event_batch_metadata")


class DagsterEcsFormatter(ecs_logging.StdlibFormatter):
    """ecs-logging's formatter with the platform's fields, and Dagster's record metadata summarised."""

    def __init__(self, **options) -> None:
        options.setdefault("extra", ecs_extra(get_settings()))
        options.setdefault("exclude_fields", [*EXCLUDED_FIELDS, *DAGSTER_RECORD_ATTRIBUTES])
        super().__init__(**options)

    def format_to_ecs(self, record: logging.LogRecord) -> dict:
        result = super().format_to_ecs(record)
        meta = getattr(record, "dagster_meta", None) or {}
        event = getattr(record, "dagster_event", None)
        summary = {
            "run_id": meta.get("run_id"),
            "job_name": meta.get("job_name"),
            "step_key": meta.get("step_key"),
            "event_type": event.event_type_value if event is not None else None,
        }
        result["dagster"] = {k: v for k, v in summary.items() if v is not None}
        return result
