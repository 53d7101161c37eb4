"""The new-data sensor on a real instance: each file content is registered exactly once."""

from __future__ import annotations

import json
import os

from dagster import build_sensor_context

from ml_platform.data.landing import write_batch
from ml_platform.data.raw import MAX_FILES_PER_SCAN as MAX_FILES_PER_TICK
from ml_platform.data.raw import scan
from ml_platform.data.synthetic import generate_readmission
from ml_platform.defs.sensors import TRIGGER_TAG


def tick_once(platform, cursor=None, model="readmission_risk"):
    """Evaluate the sensor once, applying its partition requests as the daemon would."""
    sensor = platform.defs.get_sensor_def(f"{model}_new_data")
    result = sensor(build_sensor_context(instance=platform.instance, cursor=cursor))
    for request in result.dynamic_partitions_requests or []:
        platform.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def tick(platform, cursor=None, model="readmission_risk"):
    """Two ticks, as the daemon runs them: the first sees new or changed files, the second registers them."""
    first = tick_once(platform, cursor, model)
    return tick_once(platform, first.cursor, model)


def test_new_file_gives_one_partition_and_one_run(platform, readmission):
    landing = readmission.landing_dir(platform.home)
    write_batch(generate_readmission(50, seed=1), landing, "batch_0001")
    result = tick(platform)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.partition_key.startswith("batch_0001.csv-")
    assert request.tags[TRIGGER_TAG] == "new_data"
    assert platform.instance.get_dynamic_partitions("readmission_risk_batches") == [request.partition_key]


def test_same_file_again_gives_nothing(platform, readmission):
    write_batch(generate_readmission(50, seed=1), readmission.landing_dir(platform.home), "batch_0001")
    first = tick(platform)
    again = tick(platform, cursor=first.cursor)
    assert again.run_requests == []
    # Even with a lost cursor the partition already exists, so nothing is requested twice.
    fresh = tick(platform, cursor=None)
    assert fresh.run_requests == []
    assert len(platform.instance.get_dynamic_partitions("readmission_risk_batches")) == 1


def test_changed_file_is_a_new_batch(platform, readmission):
    landing = readmission.landing_dir(platform.home)
    path = write_batch(generate_readmission(50, seed=1), landing, "batch_0001")
    first = tick(platform)
    generate_readmission(60, seed=2).to_csv(path, index=False)
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1_000_000))
    second = tick(platform, cursor=first.cursor)
    assert len(second.run_requests) == 1
    assert second.run_requests[0].partition_key != first.run_requests[0].partition_key
    assert len(platform.instance.get_dynamic_partitions("readmission_risk_batches")) == 2


def test_touched_but_unchanged_file_is_not_a_new_batch(platform, readmission):
    path = write_batch(generate_readmission(50, seed=1), readmission.landing_dir(platform.home), "batch_0001")
    first = tick(platform)
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 5_000_000))
    assert tick(platform, cursor=first.cursor).run_requests == []


def test_files_being_written_are_ignored(platform, readmission):
    landing = readmission.landing_dir(platform.home)
    landing.mkdir(parents=True)
    (landing / ".batch_0002.csv.tmp").write_text("encounter_id\n")
    result = tick(platform)
    assert result.run_requests == []
    assert "no new files" in result.skip_reason.skip_message


def test_a_tick_hashes_a_bounded_number_of_files(tmp_path):
    for i in range(MAX_FILES_PER_TICK + 5):
        (tmp_path / f"f{i:03d}.csv").write_text(f"x\n{i}\n")
    seen = scan(tmp_path, {})
    assert seen.found == [] and len(seen.waiting) == MAX_FILES_PER_TICK + 5  # none registered before it settles
    found, cursor, _, _ = scan(tmp_path, seen.cursor)
    assert len(found) == MAX_FILES_PER_TICK
    rest, _, _, _ = scan(tmp_path, cursor)
    assert len(rest) == 5
    assert json.loads(json.dumps(cursor)) == cursor  # the cursor survives serialisation
