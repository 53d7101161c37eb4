"""A real registry with trained versions, and a real `ml-platform serve` process on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from ml_platform.data.features import feature_table as engineer
from ml_platform.data.synthetic import generate_readmission
from ml_platform.defs.resources import platform_resources
from ml_platform.demo import free_port
from ml_platform.governance.service import Governance
from ml_platform.settings import database_url
from ml_platform.spec import get_spec
from ml_platform.store.database import engine_for
from ml_platform.store.tables import metadata
from ml_platform.training.registration import register_candidate
from ml_platform.training.split import assign_split
from ml_platform_tests.conftest import spec_folder, stores_for, use_home

MODEL = "readmission_risk"
TOKEN = "test-token-7f3a"
# Every scope, nameless (the client logs as the token's fingerprint): what most tests need.
ALL_SCOPES = f":predict+outcomes+admin:{TOKEN}"


def register_versions(
    home: Path, seeds: list[int], rows: int = 3_000, attest: bool = True, gates: bool | None = True
) -> list[str]:
    """Versions of the readmission model trained on generator data, whose gates passed, attested.

    Trained directly (not through Dagster) because these tests are about serving what the
    registry holds; the pipeline tests cover how versions get there. The verdict and the
    attestation go through the governance service, as after a real evaluation; ``gates``
    None leaves a version unevaluated.
    """
    spec = get_spec(MODEL)
    mlflow = platform_resources(home)["mlflow"]
    governance = Governance.for_home(home)
    versions = []
    for seed in seeds:
        table = engineer(generate_readmission(rows, seed=seed), spec)
        table["split"] = assign_split(table, spec)
        candidate, _ = register_candidate(spec, table, f"seed{seed}", "file:///generated", mlflow, "test-run")
        version = candidate.model_version
        if gates is not None:
            governance.record_verdicts(spec, version, [{"gate": "quality_gates", "passed": gates}], actor="test")
        if attest:
            governance.attest(spec, version)
        versions.append(version)
    return versions


def set_alias(home: Path, alias: str, version: str | None) -> None:
    client = platform_resources(home)["mlflow"].client()
    if version is None:
        client.delete_registered_model_alias(MODEL, alias)
    else:
        client.set_registered_model_alias(MODEL, alias, version)


def specs_with(folder: Path, **deployment) -> Path:
    """A specs folder holding the readmission spec with its deployment section changed."""
    return spec_folder(folder, MODEL, deployment=deployment)


class Endpoint:
    """`ml-platform serve` in its own process, as a user runs it."""

    def __init__(self, home: Path, specs_dir: Path | None = None, tokens: str = ALL_SCOPES, workers: int = 1, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "ML_PLATFORM_HOME": str(home),
            "ML_PLATFORM_API_TOKENS": tokens,
            "ML_PLATFORM_SERVE_POLL_SECONDS": "0.5",
            **({"ML_PLATFORM_SPECS": str(specs_dir)} if specs_dir else {}),
            **env,
        }
        self.env.pop("DAGSTER_HOME", None)
        self.workers = workers
        self.process: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    def start(self, ready_within: float = 90) -> Endpoint:
        command = [sys.executable, "-m", "ml_platform.cli", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--workers", str(self.workers)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.wait_until(lambda: self.client.get("/readyz").status_code == 200, ready_within, "ready")
        return self

    def wait_until(self, condition, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the endpoint exited ({self.process.returncode}): {self.process.stdout.read()}")
            try:
                if condition():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the endpoint was not {what} within {seconds} s")

    def serving(self, alias: str = "champion") -> str | None:
        described = self.client.get(f"/v1/models/{MODEL}").json()
        return (described.get(alias) or {}).get("version")

    def predict(self, records, **params) -> httpx.Response:
        return self.client.post(f"/v1/models/{MODEL}/predict", json=records, params=params)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)  # the whole group: uvicorn's workers too
            self.process.wait(timeout=30)
        self.client.close()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def registry(tmp_path_factory, request) -> Path:
    """A platform home whose registry holds three readmission versions; version 1 is champion.

    Shared by the serving tests: each sets the aliases it relies on. Once with every store
    on SQLite, once on PostgreSQL (the settings stay in the environment while the tests run,
    so the endpoint processes they start use the same stores).
    """
    root = tmp_path_factory.mktemp(f"serving-{request.param}")
    with pytest.MonkeyPatch.context() as monkeypatch:
        home = use_home(root, monkeypatch, stores_for(request.param, request))
        versions = register_versions(home, seeds=[11, 12, 13])
        assert versions == ["1", "2", "3"]
        set_alias(home, "champion", "1")
        yield home


def platform_rows(home: Path, sql: str, **params) -> list[dict]:
    """Rows of the platform database (SQLite or PostgreSQL), read directly as an auditor would."""
    statement = sa.text(sql)
    for name, value in params.items():
        if isinstance(value, list | tuple):
            statement = statement.bindparams(sa.bindparam(name, expanding=True))
    with engine_for(database_url(home)).connect() as conn:
        return [dict(row) for row in conn.execute(statement, params).mappings()]


def database_dump(home: Path) -> str:
    """Every value of every platform table, as text: what someone with the database would see."""
    with engine_for(database_url(home)).connect() as conn:
        return "\n".join(repr(tuple(row)) for table in metadata.sorted_tables for row in conn.execute(table.select()))


def patient(index: int, seed: int = 5) -> dict:
    """A valid request record: a generated encounter without its outcome."""
    record = _records(seed)[index % len(_records(seed))]
    return {**record, "encounter_id": f"{record['encounter_id']}-{index}", "patient_id": f"P{index:06d}"}


_cache: dict[int, list[dict]] = {}


def _records(seed: int) -> list[dict]:
    if seed not in _cache:
        frame = generate_readmission(500, seed=seed).drop(columns=["readmitted_30d"])
        frame["admit_date"] = frame["admit_date"].astype(str)
        _cache[seed] = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return _cache[seed]
