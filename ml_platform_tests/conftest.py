"""Shared fixtures: a temporary platform home, a real Dagster instance, landing helpers."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, instance_for_test, materialize
from pytest import StashKey

from ml_platform.defs import build_definitions
from ml_platform.defs.sensors import BATCH_ASSETS
from ml_platform.spec import SHIPPED_SPECS_DIR, get_spec
from ml_platform_tests.objectstore import MotoServer, aws_variables
from ml_platform_tests.postgres import PostgresServer

# Each test's phase reports ("setup", "call", "teardown"), so a fixture can tell whether the test failed.
PHASE_REPORTS = StashKey[dict]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (the browser test saves screenshots of failures)."""
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


def spec_folder(folder: Path, model: str, **sections: dict) -> Path:
    """A specs folder holding one shipped spec with some sections changed (merged key by key)."""
    folder.mkdir(exist_ok=True)
    raw = yaml.safe_load((SHIPPED_SPECS_DIR / f"{model}.yaml").read_text())
    for name, changes in sections.items():
        raw[name] = _merged(raw.get(name, {}), changes)
    (folder / f"{model}.yaml").write_text(yaml.safe_dump(raw))
    return folder


def _merged(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


@dataclass(frozen=True)
class Stores:
    """Where a test home keeps its state: SQLite files under the home, or a PostgreSQL server; files
    under the home, or on an S3-compatible server.

    On PostgreSQL each home gets databases of its own for the platform database, MLflow's
    backend store and the Dagster instance, as a production deployment has. With object
    storage ("s3": SQLite databases) each home gets a bucket of its own for the lake, raw
    copies, reports, outcome drops, audit checkpoints and MLflow artifacts.
    """

    kind: str = "sqlite"
    server: PostgresServer | None = None
    objects: MotoServer | None = None

    def environment(self) -> dict[str, str]:
        """The settings that point the platform's stores at this kind (nothing for the defaults)."""
        if self.objects is not None:
            bucket = self.objects.create_bucket()
            return {**self.objects.environment(), "ML_PLATFORM_STORAGE_URL": f"s3://{bucket}/platform"}
        if self.server is None:
            return {}
        return {
            "ML_PLATFORM_DATABASE_URL": self.server.url(self.server.create_database("platform")),
            "MLFLOW_TRACKING_URI": self.server.url(self.server.create_database("mlflow")),
        }

    def instance_overrides(self) -> dict | None:
        if self.server is None:
            return None
        url = self.server.url(self.server.create_database("dagster"))
        return {"storage": {"postgres": {"postgres_url": url}}}


SQLITE = Stores()


def use_home(root: Path, monkeypatch, stores: Stores = SQLITE) -> Path:
    """Make ``root/home`` the platform home, with every URL defaulting to a store under it (or on PostgreSQL)."""
    home = root / "home"
    home.mkdir()
    monkeypatch.setenv("ML_PLATFORM_HOME", str(home))
    # `make test` exports the demo's homes; a test must never touch them.
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    for var in (
        "MLFLOW_TRACKING_URI",
        "ML_PLATFORM_DATABASE_URL",
        "ML_PLATFORM_ARTIFACT_ROOT",
        "ML_PLATFORM_SPECS",
        "ML_PLATFORM_STORAGE_URL",
        "ML_PLATFORM_AUDIT_CHECKPOINTS",
        *aws_variables(),  # never a developer's real credentials or endpoint
    ):
        monkeypatch.delenv(var, raising=False)
    for var, value in stores.environment().items():
        monkeypatch.setenv(var, value)
    return home


@contextmanager
def dagster_instance(root: Path, stores: Stores = SQLITE):
    """A real Dagster instance in ``root/dagster``, its storage on SQLite or PostgreSQL."""
    (root / "dagster").mkdir()
    with instance_for_test(temp_dir=str(root / "dagster"), overrides=stores.instance_overrides()) as instance:
        yield instance


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the whole run, started on first use."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """One throwaway S3-compatible server (moto) for the whole run, started on first use."""
    server = MotoServer().start()
    yield server
    server.stop()


def stores_for(kind: str, request) -> Stores:
    if kind == "postgres":
        return Stores("postgres", request.getfixturevalue("postgres_server"))
    if kind == "s3":
        return Stores("s3", objects=request.getfixturevalue("s3_server"))
    return SQLITE


@pytest.fixture
def stores(request) -> Stores:
    """SQLite by default; a module marked ``BOTH_STORES`` runs each test on SQLite and on PostgreSQL."""
    return stores_for(getattr(request, "param", "sqlite"), request)


# Mark a test module with this to run its tests against both stores.
BOTH_STORES = pytest.mark.parametrize("stores", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def home(tmp_path: Path, monkeypatch, stores: Stores) -> Path:
    return use_home(tmp_path, monkeypatch, stores)


@pytest.fixture
def instance(tmp_path: Path, stores: Stores):
    with dagster_instance(tmp_path, stores) as instance:
        yield instance


@pytest.fixture
def readmission():
    return get_spec("readmission_risk")


@pytest.fixture
def breast_cancer():
    return get_spec("breast_cancer_diagnosis")


class Platform:
    """The definitions of a home, with helpers to run batches and training as the sensors would."""

    def __init__(self, home: Path, instance: DagsterInstance, specs_dir: Path | None = None):
        self.home, self.instance = home, instance
        self.defs = build_definitions(specs_dir=specs_dir, home=home)

    def register(self, model: str, keys: list[str]) -> None:
        self.instance.add_dynamic_partitions(f"{model}_batches", keys)

    def run_batch(self, model: str, key: str):
        selection = [AssetKey([model, a]) for a in BATCH_ASSETS]
        return materialize(
            list(self.defs.assets),
            selection=selection,
            partition_key=key,
            instance=self.instance,
            resources=self.defs.resources,
            raise_on_error=False,
        )

    def run_training(self, model: str):
        selection = [
            AssetKey([model, a]) for a in ("training_set", "candidate_model", "evaluation_report", "deployment")
        ]
        return materialize(
            list(self.defs.assets),
            selection=selection,
            instance=self.instance,
            resources=self.defs.resources,
            raise_on_error=False,
        )


@pytest.fixture
def platform(home: Path, instance: DagsterInstance) -> Platform:
    return Platform(home, instance)
