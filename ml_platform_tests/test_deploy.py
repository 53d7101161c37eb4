"""The shipped Dagster instance files are valid instance configuration."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from dagster._core.instance.config import dagster_instance_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.mark.parametrize("name", ["dagster.yaml", "dagster.local.yaml"])
def test_instance_config_validates(tmp_path, name):
    shutil.copy(DEPLOY / name, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["telemetry"] == {"enabled": False}
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 1
    assert config["concurrency"]["pools"]["default_limit"] == 1  # one promotion at a time


def test_production_storage_is_postgres(tmp_path):
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert "postgres_db" in config["storage"]["postgres"]


REPO = DEPLOY.parent


def compose() -> dict:
    import yaml

    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_roles_share_one_image_and_start_valid_commands():
    from ml_platform.cli import _parser

    services = compose()["services"]
    roles = {name: s for name, s in services.items() if name != "db"}
    assert {s["build"]["dockerfile"] for s in roles.values()} == {"deploy/Dockerfile"}
    assert "ml_platform.defs" in services["webserver"]["command"]
    assert "ml_platform.defs" in services["daemon"]["command"]
    serve = services["endpoint"]["command"]
    assert serve[0] == "ml-platform"
    args = _parser().parse_args(serve[1:])  # the command line the endpoint starts with is valid
    assert args.host == "0.0.0.0" and args.workers >= 1


def test_the_endpoint_beyond_loopback_is_configured_with_tokens():
    from ml_platform.serving.config import TOKENS_ENV, check_binding

    endpoint = compose()["services"]["endpoint"]
    assert TOKENS_ENV in endpoint["environment"]
    check_binding("0.0.0.0", ("a-token",))  # what the replica does at start; it would refuse without tokens


def test_every_variable_compose_sets_is_one_the_platform_reads():
    import re

    from ml_platform.settings import Settings, variable_name

    settings = {variable_name(field) for field in Settings.model_fields}
    instance = set(re.findall(r"env: (\w+)", (DEPLOY / "dagster.yaml").read_text()))
    environment = compose()["x-platform"]["environment"] | compose()["services"]["endpoint"]["environment"]
    for name in environment:
        if name != "<<":
            assert name in settings | instance, f"{name} is read nowhere"


def test_the_image_copies_what_exists_and_serves_by_default():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M):
        for path in source.split():
            assert (REPO / path).exists(), path
    assert 'CMD ["ml-platform", "serve", "--host", "0.0.0.0"' in dockerfile


def test_the_image_installs_the_extras_production_needs():
    """PostgreSQL for every store and object storage for the files: the extras exist and the image installs them."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installs = re.search(r"pip install [^\n]*'\.\[([a-z0-9,]+)\]'", (DEPLOY / "Dockerfile").read_text())
    assert installs, "the Dockerfile installs the package with its extras"
    wanted = set(installs.group(1).split(","))
    assert wanted == {"postgres", "s3"} and wanted <= set(extras)
    assert any(d.startswith("dagster-postgres") for d in extras["postgres"])
    assert any(d.startswith("s3fs") for d in extras["s3"])
