"""Shared fixtures: a temporary platform home, a real Dagster instance, landing helpers."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, instance_for_test, materialize
from pytest import StashKey

from ml_platform.defs import build_definitions
from ml_platform.defs.sensors import BATCH_ASSETS
from ml_platform.spec import SHIPPED_SPECS_DIR, get_spec

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


def use_home(root: Path, monkeypatch) -> Path:
    """Make ``root/home`` the platform home, with every URL defaulting to a store under it."""
    home = root / "home"
    home.mkdir()
    monkeypatch.setenv("ML_PLATFORM_HOME", str(home))
    # `make test` exports the demo's homes; a test must never touch them.
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    for var in ("MLFLOW_TRACKING_URI", "ML_PLATFORM_DATABASE_URL", "ML_PLATFORM_ARTIFACT_ROOT", "ML_PLATFORM_SPECS"):
        monkeypatch.delenv(var, raising=False)
    return home


@contextmanager
def dagster_instance(root: Path):
    """A real (SQLite-backed) Dagster instance in ``root/dagster``."""
    (root / "dagster").mkdir()
    with instance_for_test(temp_dir=str(root / "dagster")) as instance:
        yield instance


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    return use_home(tmp_path, monkeypatch)


@pytest.fixture
def instance(tmp_path: Path):
    with dagster_instance(tmp_path) as instance:
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
