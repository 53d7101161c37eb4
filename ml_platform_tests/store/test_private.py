"""Files and folders under the platform home are owner-only: no permission bit for group or others.

Each test starts from a home that does not exist yet, under a permissive umask (022, the
usual default), so what it checks is the platform's own doing, not the test runner's umask.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ml_platform.data.landing import write_batch
from ml_platform.data.raw import batch_key, sha256_of
from ml_platform.data.synthetic import generate_readmission
from ml_platform.spec import get_spec
from ml_platform.store.database import engine_for
from ml_platform_tests.conftest import Platform, dagster_instance

MODEL = "readmission_risk"


@pytest.fixture
def permissive_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "platform" / "home"
    monkeypatch.setenv("ML_PLATFORM_HOME", str(home))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    for var in ("MLFLOW_TRACKING_URI", "ML_PLATFORM_DATABASE_URL", "ML_PLATFORM_ARTIFACT_ROOT", "ML_PLATFORM_SPECS"):
        monkeypatch.delenv(var, raising=False)
    return home


def shared(home: Path, skip: Path | None = None) -> list[str]:
    """Every path under ``home`` (and the home) with a group or other permission bit, as `ls -l` would show."""
    paths = [home, *(p for p in home.rglob("*") if skip is None or not p.is_relative_to(skip))]
    return [f"{stat.filemode(p.lstat().st_mode)} {p}" for p in paths if p.lstat().st_mode & 0o077]


def test_a_batch_run_creates_everything_owner_only(tmp_path, fresh_home, permissive_umask):
    with dagster_instance(tmp_path) as instance:
        platform = Platform(fresh_home, instance)  # loading the definitions creates the home
        landing = get_spec(MODEL).landing_dir(fresh_home)
        path = write_batch(generate_readmission(30, seed=2), landing, "batch_0001")
        key = batch_key(path.name, sha256_of(path))
        os.umask(0o022)  # whatever the process says, the platform's own files stay private
        platform.register(MODEL, [key])
        assert platform.run_batch(MODEL, key).success
    created = {p.relative_to(fresh_home).parts[0] for p in fresh_home.rglob("*")}
    assert {"lake", "raw", "secrets", "audit", "platform.db", "platform.db-wal"} <= created
    # The landing folder is written by the exporting system, with the modes it chooses.
    assert shared(fresh_home, skip=fresh_home / "landing") == []
    assert stat.S_IMODE((fresh_home / "platform.db").stat().st_mode) == 0o600


def test_the_command_line_creates_everything_owner_only(fresh_home, permissive_umask):
    for args in (["seed", "--model", MODEL], ["purge", "--before", "2020-01-01", "--by", "test"]):
        result = subprocess.run([sys.executable, "-m", "ml_platform.cli", *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert (fresh_home / "platform.db").exists() and any((fresh_home / "landing").rglob("*.csv"))
    assert shared(fresh_home) == []


def test_a_world_readable_database_from_before_is_tightened(tmp_path, permissive_umask):
    path = tmp_path / "old" / "platform.db"
    path.parent.mkdir()
    sqlite3.connect(path).close()
    assert path.stat().st_mode & 0o044  # as an older platform left it
    engine_for(f"sqlite:///{path}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
