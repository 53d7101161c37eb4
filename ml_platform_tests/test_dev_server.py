"""User steps 1 and 2 with the real `dagster dev`: seeded data trains by itself, a new batch retrains.

Starts the webserver, daemon and code server on a temporary home and loopback port, and
waits (bounded) for the sensors and declarative automation to carry data through the graph.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from ml_platform.cli import main as cli
from ml_platform.demo import free_port
from ml_platform.spec import SHIPPED_SPECS_DIR
from ml_platform_tests.conftest import BOTH_STORES, Stores
from ml_platform_tests.stack import REPO_ROOT, dagster_dev, http_ok, running, wait_for

# The real webserver, daemon and sensors, on the embedded SQLite stores and on PostgreSQL with
# the production instance file.
pytestmark = [pytest.mark.e2e, BOTH_STORES]
MODEL = "breast_cancer_diagnosis"
REPORT = AssetKey([MODEL, "evaluation_report"])


def instance_settings(stores: Stores, dagster_home: Path, monkeypatch) -> None:
    """The shipped instance file of the store: the embedded one on SQLite, production's on PostgreSQL."""
    if stores.server is None:
        shutil.copy(REPO_ROOT / "deploy/dagster.local.yaml", dagster_home / "dagster.yaml")
        return
    shutil.copy(REPO_ROOT / "deploy/dagster.yaml", dagster_home / "dagster.yaml")
    server = stores.server
    for variable, value in {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(server.port),
        "DAGSTER_PG_DB": server.create_database("dagster"),
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "unused-with-trust-authentication",
    }.items():
        monkeypatch.setenv(variable, value)


@pytest.fixture
def dev_server(home, stores, tmp_path, monkeypatch):
    """`dagster dev` on the workspace, with only the breast-cancer spec to keep the test quick."""
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(SHIPPED_SPECS_DIR / f"{MODEL}.yaml", specs)
    monkeypatch.setenv("ML_PLATFORM_SPECS", str(specs))
    dagster_home = home / "dagster"
    dagster_home.mkdir()
    instance_settings(stores, dagster_home, monkeypatch)
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "ML_PLATFORM_SPECS": str(specs)}
    with running(dagster_dev(port), env, tmp_path / "dagster-dev.log"):
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/server_info"), 120, "the Dagster webserver")
        instance = DagsterInstance.from_config(str(dagster_home))
        yield instance, port


def report_versions(instance: DagsterInstance) -> list[str]:
    """Model versions evaluated so far, oldest first."""
    records = instance.fetch_materializations(REPORT, limit=20).records
    return sorted(str(r.asset_materialization.metadata["model_version"].value) for r in records)


def champion_alias(home) -> str | None:
    from ml_platform.settings import mlflow_artifact_root, mlflow_tracking_uri
    from ml_platform.store.registry import MLflowTracking

    tracking = MLflowTracking(tracking_uri=mlflow_tracking_uri(home), artifact_root=mlflow_artifact_root(home))
    return tracking.alias_version(MODEL, "champion")


def test_landed_data_trains_and_a_new_batch_retrains_without_a_click(dev_server, home):
    instance, port = dev_server
    assert cli(["seed"]) == 0
    # The sensor registers each landed file as a partition, and automation trains on them.
    wait_for(lambda: len(instance.get_dynamic_partitions(f"{MODEL}_batches")) == 3, 90, "3 registered batches")
    first = wait_for(lambda: report_versions(instance), 300, "the first evaluation report")
    assert cli(["simulate", MODEL, "--rows", "200"]) == 0
    wait_for(lambda: len(instance.get_dynamic_partitions(f"{MODEL}_batches")) == 4, 90, "the new batch")
    versions = wait_for(
        lambda: (v := report_versions(instance)) and v[-1] != first[-1] and v,
        300,
        "a retrained, evaluated model version",
    )
    assert int(versions[-1]) > int(first[-1])
    # Gates passed, so automation deployed it: the latest version is champion, no click needed.
    wait_for(lambda: champion_alias(home) == versions[-1], 180, f"version {versions[-1]} to become champion")
    # The UI's GraphQL API, which the webserver serves, sees the same lineage.
    query = b'{"query": "{ assetNodes { assetKey { path } } }"}'
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=query, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read().decode()
    assert '"evaluation_report"' in body and '"raw_batches"' in body
