"""Everything file-shaped on object storage: moto's real S3 server on loopback, the platform's real s3fs.

The lake, raw copies, outcome drops and audit checkpoints are written and read through
``ml_platform.store.objects``; these tests look at the bucket directly (boto3) to check
what a reader of the bucket would find, and tamper with it as someone with bucket access could.
"""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from ml_platform.data.raw import batch_key, ensure_raw_copy, sha256_of, verified_raw_copy
from ml_platform.errors import PlatformError
from ml_platform.governance.audit_anchor import Checkpoints, checkpoint_folder
from ml_platform.serving.outcomes import OutcomeReader, load_outcome_files, outcomes_dir
from ml_platform.settings import database_url, get_settings
from ml_platform.spec import get_spec
from ml_platform.store import predictions as prediction_log
from ml_platform.store.database import engine_for
from ml_platform.store.lake import Lake
from ml_platform.store.objects import atomic_write, is_local, storage_root
from ml_platform.store.tables import outcome_files, outcomes
from ml_platform_tests.conftest import Stores, use_home

MODEL = "readmission_risk"


@pytest.fixture
def s3_home(tmp_path, monkeypatch, s3_server):
    """A platform home whose storage URL is a fresh bucket on the moto server; databases on SQLite."""
    return use_home(tmp_path, monkeypatch, Stores("s3", objects=s3_server))


def bucket_and_prefix() -> tuple[str, str]:
    bucket, _, prefix = get_settings().storage_url.removeprefix("s3://").partition("/")
    return bucket, prefix


def keys(s3_server, under: str = "") -> list[str]:
    bucket, prefix = bucket_and_prefix()
    return [k.removeprefix(f"{prefix}/") for k in s3_server.keys(bucket, f"{prefix}/{under}")]


def test_the_lake_round_trips_tables_and_json_in_the_bucket(s3_home, s3_server):
    lake = Lake(home=str(s3_home))
    assert not is_local(lake.root) and str(lake.root).startswith("s3://")
    table = pd.DataFrame({"id": ["a", "b", "c"], "age": [71, 45, None], "when": pd.to_datetime(["2026-01-02"] * 3)})
    lake.write_table(table, MODEL, "features", "batch-1")
    lake.write_json({"version": "v1", "rows": 3}, MODEL, "training_set", "latest")

    pd.testing.assert_frame_equal(lake.read_table(MODEL, "features", "batch-1"), table)
    assert lake.read_json(MODEL, "training_set", "latest") == {"version": "v1", "rows": 3}
    assert lake.has_table(MODEL, "features", "batch-1") and not lake.has_table(MODEL, "features", "batch-2")
    assert sorted(keys(s3_server)) == [
        f"lake/{MODEL}/features/batch-1.parquet",
        f"lake/{MODEL}/training_set/latest.json",
    ]
    assert not (s3_home / "lake").exists()  # nothing on local disk


def test_a_failed_write_leaves_no_object_and_keeps_the_previous_version(s3_home, s3_server):
    lake = Lake(home=str(s3_home))
    lake.write_table(pd.DataFrame({"x": [1, 2]}), MODEL, "features", "kept")
    unconvertible = pd.DataFrame({"x": [1, "two", object()]})  # pyarrow refuses the mixed column
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises; the point is what is left
        lake.write_table(unconvertible, MODEL, "features", "kept")
    with pytest.raises(Exception):  # noqa: B017
        lake.write_table(unconvertible, MODEL, "features", "new")

    def half_then_fail(local):
        local.write_bytes(b"PAR1 half a table")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(lake.table_path(MODEL, "features", "half"), half_then_fail)
    assert keys(s3_server) == [f"lake/{MODEL}/features/kept.parquet"]
    assert lake.read_table(MODEL, "features", "kept")["x"].tolist() == [1, 2]


def landed(tmp_path, content: bytes = b"id,age\na,71\nb,45\n") -> tuple:
    landing = tmp_path / "landing"
    landing.mkdir(exist_ok=True)
    path = landing / "batch_0001.csv"
    path.write_bytes(content)
    return landing, batch_key(path.name, sha256_of(path))


def test_a_raw_copy_is_uploaded_once_and_verified_on_every_read(s3_home, s3_server, tmp_path):
    lake, spec = Lake(home=str(s3_home)), get_spec(MODEL)
    landing, key = landed(tmp_path)
    path, sha = ensure_raw_copy(lake, spec, key, landing)
    assert str(path).startswith("s3://") and keys(s3_server, "raw/") == [f"raw/{MODEL}/{key}/batch_0001.csv"]
    (landing / "batch_0001.csv").unlink()  # the landing file may go: the raw copy is the record
    assert ensure_raw_copy(lake, spec, key, landing) == (path, sha)
    with verified_raw_copy(lake, spec, key) as (local, verified):
        assert verified == sha and local.read_bytes() == b"id,age\na,71\nb,45\n" and local.name == "batch_0001.csv"


def test_a_raw_copy_changed_in_the_bucket_is_refused(s3_home, s3_server, tmp_path):
    lake, spec = Lake(home=str(s3_home)), get_spec(MODEL)
    landing, key = landed(tmp_path)
    ensure_raw_copy(lake, spec, key, landing)
    bucket, prefix = bucket_and_prefix()
    s3_server.client().put_object(
        Bucket=bucket, Key=f"{prefix}/raw/{MODEL}/{key}/batch_0001.csv", Body=b"id,age\na,17\n"
    )
    for read in (
        lambda: verified_raw_copy(lake, spec, key).__enter__(),
        lambda: ensure_raw_copy(lake, spec, key, landing),
    ):
        with pytest.raises(PlatformError, match=f"no longer matches batch {key}.*restore it from the landing source"):
            read()


def test_a_changed_landing_file_never_becomes_a_raw_copy(s3_home, s3_server, tmp_path):
    lake, spec = Lake(home=str(s3_home)), get_spec(MODEL)
    landing, key = landed(tmp_path)
    (landing / "batch_0001.csv").write_bytes(b"id,age\na,99\n")
    with pytest.raises(PlatformError, match="has changed since it was registered"):
        ensure_raw_copy(lake, spec, key, landing)
    assert keys(s3_server) == []


def test_outcome_drops_in_the_bucket_load_once_and_bad_files_are_set_aside(s3_home, s3_server):
    spec = get_spec(MODEL)
    engine = engine_for(database_url(s3_home))
    reader = OutcomeReader(spec, engine, prediction_log.IdHasher(prediction_log.id_hash_key(s3_home)))
    folder = outcomes_dir(storage_root(s3_home), MODEL)
    bucket, prefix = bucket_and_prefix()

    def drop(name: str, body: str) -> None:
        s3_server.client().put_object(Bucket=bucket, Key=f"{prefix}/outcomes/{MODEL}/{name}", Body=body.encode())

    good = "encounter_id,outcome\nE-1,1\nE-2,0\n"
    drop("week47.csv", good)
    drop("broken.csv", "encounter_id,outcome\nE-3,yes\n")
    assert load_outcome_files(reader, folder, {}) == ["week47.csv"]
    assert sorted(keys(s3_server, "outcomes/")) == [
        f"outcomes/{MODEL}/loaded/week47.csv",
        f"outcomes/{MODEL}/rejected/broken.csv",
        f"outcomes/{MODEL}/rejected/broken.csv.error.txt",
    ]
    error = (folder / "rejected" / "broken.csv.error.txt").read_text()
    assert error.startswith("broken.csv: 1 problem(s), nothing loaded") and "line 2" in error
    drop("week47-again.csv", good)  # the same content under another name: not loaded twice
    load_outcome_files(reader, folder, {})
    assert load_outcome_files(reader, folder, {}) == []  # nothing left to load
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outcomes)).scalar() == 2
        assert conn.execute(sa.select(outcome_files.c.name)).scalars().all() == ["week47.csv"]
    assert not (s3_home / "outcomes").exists()


def test_audit_checkpoints_in_the_bucket_are_never_replaced(s3_home, s3_server):
    folder = checkpoint_folder(s3_home)
    assert str(folder).endswith("/audit/checkpoints") and not is_local(folder)
    checkpoints = Checkpoints(folder, b"k" * 32)
    first = checkpoints.write(1, "mac-1", 0)
    checkpoints.write(1, "forged", 0)  # a second writer for the same count keeps the first file
    assert '"last_mac": "mac-1"' in first.read_text()
    checkpoints.write(2, "mac-2", 0)
    latest, problems = checkpoints.latest()
    assert (latest.record_count, latest.last_mac, problems) == (2, "mac-2", [])
    assert checkpoints.set_aside() == 2
    assert checkpoints.latest() == (None, [])
    assert len([k for k in keys(s3_server, "audit/checkpoints/superseded-") if k.endswith(".json")]) == 2
