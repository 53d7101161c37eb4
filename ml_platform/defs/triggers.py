"""Retrain triggers and monitoring schedules: when a model is retrained without anyone clicking.

Every trigger requests the same thing, a run of the model's ``retrain`` job (training set
and candidate); declarative automation carries the candidate on through evaluation, its
blocking gates, approval where required, and deployment, so a failed gate stops it there.

* ``<model>_drift``: the latest ``consecutive`` monitoring windows all drifted;
* ``<model>_degradation``: the latest window's live performance (measured, else
  estimated) is below the floor or dropped beyond the tolerance;
* ``<model>_new_outcomes``: enough outcomes arrived since the last training set to be
  worth learning from (they join the training set as labelled production rows);
* ``<model>_retrain_schedule``: a periodic retrain, when the spec gives a cron;
* ``<model>_monitoring_schedule``: materialises the monitoring assets for each window
  that just closed.

Sensors read verdicts the assets already wrote into materialisation metadata (and, for
outcomes, one count query), so a tick stays well under a second. Each request is tagged
with its trigger and reason and written to the audit trail; a cooldown after any retrain
stops one episode of drift from retraining again and again.
"""

import time

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    build_schedule_from_partitioned_job,
    define_asset_job,
    schedule,
    sensor,
)

from ml_platform.defs.monitoring import monitoring_partitions
from ml_platform.defs.sensors import TRIGGER_TAG
from ml_platform.governance.service import Governance
from ml_platform.spec import ModelSpec
from ml_platform.store.predictions import count_outcomes

REASON_TAG = "ml_platform/reason"
MONITORING_ASSETS = ("production_inputs", "drift_report", "live_performance")
TICK_SECONDS = 30


def retrain_job(spec: ModelSpec):
    return define_asset_job(
        f"{spec.name}_retrain",
        selection=AssetSelection.assets(
            AssetKey([spec.name, "training_set"]), AssetKey([spec.name, "candidate_model"])
        ),
        description=f"Rebuild the {spec.name} training set (landed batches and labelled production rows) and train "
        "a candidate; automation evaluates, gates and deploys it.",
    )


def monitoring_job(spec: ModelSpec):
    return define_asset_job(
        f"{spec.name}_monitoring",
        selection=AssetSelection.assets(*(AssetKey([spec.name, a]) for a in MONITORING_ASSETS)),
        partitions_def=monitoring_partitions(spec),
        description=f"Production inputs, drift and live performance of one {spec.name} monitoring window.",
    )


def request_retrain(spec: ModelSpec, governance: Governance, trigger: str, reason: str, run_key: str) -> RunRequest:
    """A retrain run request, tagged with why, and the same why in the audit trail."""
    governance.retrain_requested(spec, trigger, reason, run_key)
    return RunRequest(run_key=run_key, tags={TRIGGER_TAG: trigger, REASON_TAG: reason[:500]})


def cooldown(context: SensorEvaluationContext, spec: ModelSpec) -> str | None:
    """Why a retrain must wait (the last one was too recent), or None."""
    minutes = spec.monitoring.retrain.cooldown_minutes
    candidate = context.instance.get_latest_materialization_event(AssetKey([spec.name, "candidate_model"]))
    times = [candidate.timestamp] if candidate else []
    runs = context.instance.get_run_records(RunsFilter(job_name=f"{spec.name}_retrain"), limit=1)
    times += [run.create_timestamp.timestamp() for run in runs]
    if not times:
        return None
    elapsed = (time.time() - max(times)) / 60
    if elapsed >= minutes:
        return None
    return f"cooldown: the last retrain was {elapsed:.0f} min ago; triggers wait {minutes:g} min"


def latest_by_partition(context: SensorEvaluationContext, key: AssetKey, limit: int) -> dict:
    """The newest materialisation of each recently materialised partition of ``key``."""
    latest = {}
    for record in context.instance.fetch_materializations(key, limit=limit).records:  # newest first
        latest.setdefault(record.partition_key, record)
    return latest


def metadata_value(record, name: str):
    """A metadata value of a materialisation record (or event log entry); None when absent."""
    entry = record.asset_materialization.metadata.get(name)
    return entry.value if entry is not None else None


def sustained_drift(spec: ModelSpec, latest: dict) -> tuple[str | None, str]:
    """(the newest window, why) when the last ``consecutive`` windows all drifted; (None, why not) otherwise."""
    partitions = monitoring_partitions(spec)
    needed = spec.monitoring.drift.consecutive
    windows = sorted(latest, key=lambda k: partitions.time_window_for_partition_key(k).start)[-needed:]
    if len(windows) < needed:
        return None, f"{len(windows)} window(s) reported; sustained drift needs {needed} in a row"
    for earlier, later in zip(windows, windows[1:]):
        if (
            partitions.time_window_for_partition_key(earlier).end
            != partitions.time_window_for_partition_key(later).start
        ):
            return None, f"windows {earlier} and {later} are not consecutive"
    calm = [w for w in windows if not metadata_value(latest[w], "drifted")]
    if calm:
        return None, f"window {calm[-1]} did not drift; {needed} drifted windows in a row are needed"
    return windows[-1], (
        f"input drift in {needed} consecutive windows ({windows[0]} .. {windows[-1]}); latest: "
        f"{metadata_value(latest[windows[-1]], 'reason')}"
    )


def trigger_sensor(spec: ModelSpec, trigger: str, job, description: str):
    """The decorator of a retrain trigger: running by default, targeting the retrain job."""
    return sensor(
        name=f"{spec.name}_{trigger}",
        job=job,
        minimum_interval_seconds=TICK_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description=description,
    )


def build_drift_sensor(spec: ModelSpec, governance: Governance, job):
    key = AssetKey([spec.name, "drift_report"])

    @trigger_sensor(
        spec,
        "drift",
        job,
        f"Retrains {spec.name} when {spec.monitoring.drift.consecutive} consecutive drift reports "
        f"drifted (at least {spec.monitoring.drift.share:.0%} of inputs), after a cooldown of "
        f"{spec.monitoring.retrain.cooldown_minutes:g} min.",
    )
    def drift(context: SensorEvaluationContext):
        newest, why = sustained_drift(
            spec, latest_by_partition(context, key, limit=8 * spec.monitoring.drift.consecutive)
        )
        return fire_once(context, spec, governance, "drift", f"drift-{newest}" if newest else None, why)

    return drift


def build_degradation_sensor(spec: ModelSpec, governance: Governance, job):
    key = AssetKey([spec.name, "live_performance"])

    @trigger_sensor(
        spec,
        "degradation",
        job,
        f"Retrains {spec.name} when live {spec.performance_metric} (measured from outcomes, else estimated) "
        "falls below the spec's floor or drops beyond its tolerance.",
    )
    def degradation(context: SensorEvaluationContext):
        records = context.instance.fetch_materializations(key, limit=1).records
        if not records:
            return SkipReason("no live performance reported yet")
        record = records[0]
        why = metadata_value(record, "reason") or "no verdict"
        run_key = (
            f"degradation-{record.partition_key}-{record.storage_id}" if metadata_value(record, "degraded") else None
        )
        return fire_once(context, spec, governance, "degradation", run_key, f"window {record.partition_key}: {why}")

    return degradation


def build_new_outcomes_sensor(spec: ModelSpec, governance: Governance, job):
    needed = spec.monitoring.retrain.min_new_labelled_rows
    training = AssetKey([spec.name, "training_set"])

    @trigger_sensor(
        spec,
        "new_outcomes",
        job,
        f"Retrains {spec.name} once {needed} outcomes arrived since the last training set (they become "
        "labelled training rows).",
    )
    def new_outcomes(context: SensorEvaluationContext):
        event = context.instance.get_latest_materialization_event(training)
        seen = int(metadata_value(event, "outcomes_seen") or 0) if event else 0
        new = count_outcomes(governance.engine, spec.name) - seen
        run_key = f"outcomes-{seen + new}" if new >= needed else None
        why = f"{new} new outcome(s) since the last training set (retrain from {needed})"
        return fire_once(context, spec, governance, "new_outcomes", run_key, why)

    return new_outcomes


def fire_once(context, spec: ModelSpec, governance: Governance, trigger: str, run_key: str | None, why: str):
    """Request a retrain for ``run_key`` unless there is none, it was already requested, or a cooldown holds."""
    if run_key is None:
        return SkipReason(why)
    if context.cursor == run_key:
        return SkipReason(f"already requested: {why}")
    waiting = cooldown(context, spec)
    if waiting:
        return SkipReason(f"{why}; {waiting}")
    return SensorResult(run_requests=[request_retrain(spec, governance, trigger, why, run_key)], cursor=run_key)


def build_schedules(spec: ModelSpec, governance: Governance, job) -> list:
    schedules = [
        build_schedule_from_partitioned_job(
            monitoring_job(spec),
            name=f"{spec.name}_monitoring_schedule",
            default_status=DefaultScheduleStatus.RUNNING,
            tags={TRIGGER_TAG: "schedule"},
        )
    ]
    cron = spec.monitoring.retrain.cron
    if cron:

        @schedule(
            name=f"{spec.name}_retrain_schedule",
            cron_schedule=cron,
            job=job,
            execution_timezone="UTC",
            default_status=DefaultScheduleStatus.RUNNING,
            description=f"Retrains {spec.name} on its schedule ({cron}), whatever the monitors say.",
        )
        def periodic(context: ScheduleEvaluationContext):
            when = context.scheduled_execution_time
            reason = f"periodic retrain ({cron}) for {when:%Y-%m-%d %H:%M} UTC"
            return request_retrain(spec, governance, "schedule", reason, f"schedule-{when:%Y%m%d%H%M}")

        schedules.append(periodic)
    return schedules
