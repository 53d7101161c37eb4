"""Sensors: decide *when* to materialise; the assets decide *what*.

The new-data sensor watches a model's landing folder. Its cursor remembers, per file
name, the size, modification time and batch key it last saw (``data.raw.scan``), so a
tick only hashes files that are new or have changed: the tick stays light (ticks time
out at 60 s) and a file is registered exactly once per content. A file is registered on
the tick after the one that first saw it unchanged (a copy in progress is not a batch);
links, folders, oversize and gzip files are refused by name in the skip reason and the log.

A tick that finds one new file requests one run that carries the batch all the way: its
batch stages, then training, evaluation (gates still blocking) and deployment. Freshness is
what that buys: a landed batch is served after one run's start-up, not after a batch run,
an automation tick and a training run. A tick that finds several files (a backfill, a
burst) requests a batch-stages run per file and leaves training to the automation sensor,
which waits for all of them and trains once.
"""

import json
from pathlib import Path

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    RunConfig,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ml_platform.data.raw import Scan, scan
from ml_platform.defs.deployment import reconcile_evaluation
from ml_platform.defs.ingestion import batches_partitions
from ml_platform.governance.service import Governance
from ml_platform.spec import ModelSpec

BATCH_ASSETS = ("raw_batches", "validated_records", "quarantine", "features")
# After a single new batch, the same run goes on through these (in this order of dependency).
CARRY_THROUGH = ("training_set", "candidate_model", "evaluation_report", "deployment", "evidently_report")
# The daemon's sensor loop runs at most every 5 s; ticking as often costs a folder listing.
TICK_SECONDS = 5
TRIGGER_TAG = "ml_platform/trigger"


def build_new_data_sensor(spec: ModelSpec, landing: Path):
    partitions = batches_partitions(spec)

    @sensor(
        name=f"{spec.name}_new_data",
        minimum_interval_seconds=TICK_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        asset_selection=keys(spec, BATCH_ASSETS + CARRY_THROUGH),
        description=f"Registers each new or changed file in {landing} as a {spec.name} batch partition and "
        "materialises it through validation and features; a file landed alone is carried on, in the same run, "
        "through training, evaluation and (gates passed) deployment.",
    )
    def new_data(context: SensorEvaluationContext):
        looked = scan(landing, json.loads(context.cursor) if context.cursor else {})
        cursor = looked.cursor
        known = set(context.instance.get_dynamic_partitions(partitions.name))
        new = [(key, path) for key, path in looked.found if key not in known]
        for entry in looked.rejected:
            context.log.warning(f"not taken: {entry.reason}")
        if not new:
            return SensorResult(skip_reason=SkipReason(skip_message(landing, looked)), cursor=json.dumps(cursor))
        selection = keys(spec, BATCH_ASSETS + (CARRY_THROUGH if len(new) == 1 else ()))
        return SensorResult(
            run_requests=[
                RunRequest(
                    partition_key=key,
                    run_key=key,
                    asset_selection=selection,
                    tags={TRIGGER_TAG: "new_data", "ml_platform/batch_file": path.name},
                )
                for key, path in new
            ],
            dynamic_partitions_requests=[partitions.build_add_request([key for key, _ in new])],
            cursor=json.dumps(cursor),
        )

    return new_data


def keys(spec: ModelSpec, assets: tuple[str, ...]) -> list[AssetKey]:
    return [AssetKey([spec.name, a]) for a in assets]


def skip_message(landing: Path, looked: Scan) -> str:
    """Why nothing ran: no new file, files still changing, and each refused file with its fix."""
    parts = [f"no new files in {landing}"]
    if looked.waiting:
        parts.append(f"waiting one more tick for {', '.join(looked.waiting)} to stop changing")
    parts += [f"not taken: {entry.reason}" for entry in looked.rejected]
    return "; ".join(parts)


def build_automation_sensor(spec: ModelSpec):
    """Runs the declarative automation (training after new features, and onward) for one model."""
    return AutomationConditionSensorDefinition(
        f"{spec.name}_automation",
        target=AssetSelection.groups(spec.name),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=TICK_SECONDS,
        description=f"Carries new {spec.name} features on to training and evaluation as their automation "
        "conditions say.",
    )


def build_approval_sensor(spec: ModelSpec, governance: Governance):
    """Carries a version a person approved on to deployment, with no further clicks."""
    deployment = AssetKey([spec.name, "deployment"])

    @sensor(
        name=f"{spec.name}_approvals",
        minimum_interval_seconds=15,
        default_status=DefaultSensorStatus.RUNNING,
        asset_selection=[deployment],
        description=f"Deploys each {spec.name} version approved with `ml-platform approve` (the spec requires "
        "approval before a version reaches patients).",
    )
    def approvals(context: SensorEvaluationContext):
        versions = governance.approved_awaiting_promotion(spec.name)
        if not versions:
            return SkipReason("no approved version waits for deployment")
        op_name = f"{spec.name}__deployment"
        return [
            RunRequest(
                run_key=f"approved-{spec.name}-{version}",
                run_config=RunConfig(ops={op_name: {"config": {"version": version}}}),
                tags={TRIGGER_TAG: "approval", "ml_platform/version": version},
            )
            for version in versions
        ]

    return approvals


def build_reconciler_sensor(spec: ModelSpec, governance: Governance):
    """Compares the registry aliases with the audit trail and reports the `registry_matches_audit` check.

    Reported only when the verdict changes (the cursor holds the last problems), so the
    check's history shows each move outside the platform once, and each repair.
    """

    @sensor(
        name=f"{spec.name}_registry_reconciler",
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Fails the registry_matches_audit check of {spec.name}/deployment when a registry alias "
        "was moved outside the platform (it differs from the audit trail's last promotion).",
    )
    def reconciler(context: SensorEvaluationContext):
        problems = governance.registry_drift(spec.name)
        state = json.dumps(problems)
        if context.cursor == state:
            return SkipReason("; ".join(problems) or "the registry aliases match the audit trail")
        return SensorResult(asset_events=[reconcile_evaluation(spec.name, problems)], cursor=state)

    return reconciler
