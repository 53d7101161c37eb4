"""A batch landed alone is carried in one run from its raw copy to a deployed, gated model.

The new-data sensor asks for the whole path when a tick finds one new file, and for the
batch stages only when it finds several (the automation sensor then trains once on all of
them). Run on a real instance and real MLflow, as the daemon would run the request.
"""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterRunStatus, build_sensor_context, evaluate_automation_conditions, materialize

from ml_platform.data.breast_cancer import breast_cancer_frame
from ml_platform.data.landing import write_batch
from ml_platform.data.synthetic import generate_readmission
from ml_platform.defs.sensors import BATCH_ASSETS, CARRY_THROUGH
from ml_platform.spec import get_spec
from ml_platform.store.registry import current_aliases

MODEL = "breast_cancer_diagnosis"


def requests_after_landing(platform, model: str) -> list:
    """The run requests of the new-data sensor's two ticks (see and settle, then register)."""
    sensor = platform.defs.get_sensor_def(f"{model}_new_data")
    first = sensor(build_sensor_context(instance=platform.instance))
    result = sensor(build_sensor_context(instance=platform.instance, cursor=first.cursor))
    for request in result.dynamic_partitions_requests or []:
        platform.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result.run_requests


def selected(request) -> set[str]:
    return {key.path[-1] for key in request.asset_selection}


def test_a_file_landed_alone_is_requested_through_deployment(platform, readmission):
    write_batch(generate_readmission(50, seed=1), readmission.landing_dir(platform.home), "batch_0001")
    (request,) = requests_after_landing(platform, readmission.name)
    assert selected(request) == set(BATCH_ASSETS + CARRY_THROUGH)


def test_files_landed_together_get_batch_runs_and_leave_training_to_automation(platform, readmission):
    for n in (1, 2):
        write_batch(generate_readmission(50, seed=n), readmission.landing_dir(platform.home), f"batch_000{n}")
    requests = requests_after_landing(platform, readmission.name)
    assert len(requests) == 2
    assert all(selected(r) == set(BATCH_ASSETS) for r in requests)


@pytest.mark.e2e
def test_one_run_carries_a_landed_batch_to_a_served_champion_and_leaves_automation_nothing_to_do(platform):
    spec = get_spec(MODEL)
    automation = evaluate_automation_conditions(platform.defs, platform.instance)  # the daemon's first tick
    write_batch(breast_cancer_frame(), spec.landing_dir(platform.home), "batch_0001")
    (request,) = requests_after_landing(platform, MODEL)

    result = materialize(
        list(platform.defs.assets),
        selection=request.asset_selection,
        partition_key=request.partition_key,
        instance=platform.instance,
        resources=platform.defs.resources,
        tags=request.tags,
    )

    materialised = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialised >= set(BATCH_ASSETS + CARRY_THROUGH) - {"quarantine"}
    tracking = platform.defs.resources["mlflow"]
    assert current_aliases(tracking.client(), MODEL) == {"champion": "1"}
    run = platform.instance.get_run_by_id(result.run_id)
    assert run.status == DagsterRunStatus.SUCCESS
    # The automation sensor sees the run's training as done: nothing is requested again.
    again = evaluate_automation_conditions(platform.defs, platform.instance, cursor=automation.cursor)
    assert {a: again.get_num_requested(AssetKey([MODEL, a])) for a in CARRY_THROUGH} == dict.fromkeys(CARRY_THROUGH, 0)

    # Whereas new features from a batch-stages run (a burst) are the automation's to train on.
    write_batch(breast_cancer_frame().head(100), spec.landing_dir(platform.home), "batch_0002")
    (later,) = requests_after_landing(platform, MODEL)
    assert platform.run_batch(MODEL, later.partition_key).success
    burst = evaluate_automation_conditions(platform.defs, platform.instance, cursor=again.cursor)
    assert burst.get_num_requested(AssetKey([MODEL, "training_set"])) == 1
