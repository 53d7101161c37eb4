"""Every setting of the platform, in one typed object read from the environment.

Everything lives under one platform home (``.ml_platform/`` in the working directory, or
``ML_PLATFORM_HOME``), so a demo is deleted by deleting one folder. Each store and URL
defaults to a place under the home and can be pointed elsewhere by its variable for a
production deployment; the README lists every variable.

Settings are read when asked for, not once per process: a test, the demo or the CLI may
change the environment between two calls. Building the object costs about a millisecond and
one training run asks for it dozens of times (every lake path does), so it is kept per value
of the variables it reads: a changed variable gives a new object, an unchanged one the same.
"""

from __future__ import annotations

import functools
import os
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, PositiveFloat, PositiveInt, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "ML_PLATFORM_"


class SettingsError(ValueError):
    """An environment variable the platform cannot use, named with the fix."""


class Settings(BaseSettings):
    """The platform's configuration: ``ML_PLATFORM_<FIELD>`` environment variables, plus MLflow's and Dagster's own."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    home: Path = Field(Path(".ml_platform"), description="the platform home: lake, raw copies, reports, state")
    storage_url: str | None = Field(
        None,
        description="where the lake, raw copies, reports, outcome drops and audit checkpoints live: a folder or "
        "an fsspec URL such as s3://bucket/prefix or gs://bucket/prefix (default: the platform home)",
    )
    specs: Path | None = Field(None, description="folder of model specs (default: the shipped specs)")
    database_url: str | None = Field(None, description="platform database, any SQLAlchemy URL (default: SQLite)")
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "ML_PLATFORM_MLFLOW_TRACKING_URI"),
        description="MLflow tracking and registry store (default: SQLite under the home)",
    )
    artifact_root: str | None = Field(None, description="where new MLflow experiments keep artifacts")
    dagster_home: Path | None = Field(
        None, validation_alias=AliasChoices("DAGSTER_HOME"), description="the Dagster instance folder"
    )
    mlflow_ui_url: str = Field("http://127.0.0.1:5000", description="where people open the MLflow UI (links)")
    endpoint_url: str | None = Field(None, description="the running endpoint the deployment verifies")
    endpoint_token: SecretStr | None = Field(None, description="a bearer token for that endpoint")
    code_version: str | None = Field(None, description="the code version recorded with models (default: git)")
    api_tokens: SecretStr = Field(
        SecretStr(""),
        description="the endpoint's bearer tokens, comma-separated, each `token`, `name:token` or "
        "`name:scope+scope:token` (scopes `predict`, `outcomes`, `admin`; none given: `predict` only)",
    )
    api_token_file: Path | None = Field(None, description="a file of bearer tokens, one per line")
    serve_poll_seconds: PositiveFloat = Field(2.0, description="how often the endpoint reads the registry aliases")
    serve_max_body_bytes: PositiveInt = Field(1_048_576, description="largest request body the endpoint reads")
    serve_max_records: PositiveInt = Field(1_000, description="most records in one request")
    serve_host: str | None = Field(
        None, description="the address the endpoint binds (set by `ml-platform serve --host`; unset: not loopback)"
    )
    max_file_bytes: PositiveInt = Field(
        1_073_741_824, description="largest file taken from a landing or outcomes folder (bytes)"
    )
    estimator_modules: str = Field(
        "", description="module prefixes estimators may come from besides sklearn, comma-separated"
    )
    id_hash_key: SecretStr | None = Field(None, description="key of the identifier hashes (default: created once)")
    retention_days: PositiveInt | None = Field(
        None, description="days the prediction log and outcomes are kept: `ml-platform purge` deletes older ones"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="`json`: log lines in the Elastic Common Schema (ecs-logging); `text`: plain lines"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = Field(
        None, description="least severe level logged (default: INFO with json, WARNING with text)"
    )
    site: str | None = Field(None, description="the site or region a process runs in, on every JSON log line")

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object, info) -> object:
        """`JSON` and `info` mean what `json` and `INFO` mean: a log setting is not worth a start-up failure."""
        if not isinstance(value, str):
            return value
        return value.lower() if info.field_name == "log_format" else value.upper()

    audit_key: SecretStr | None = Field(None, description="key of the audit trail's MAC chain (default: created once)")
    audit_key_file: Path | None = Field(None, description="a file holding that key, e.g. a mounted secret")
    audit_checkpoints: str | None = Field(
        None,
        description="folder or fsspec URL of the audit trail's signed checkpoints "
        "(default: audit/checkpoints under the storage URL)",
    )
    attestation_key: Path | None = Field(
        None, description="PEM Ed25519 private key that signs attestations (default: created once under the home)"
    )
    attestation_public_key: Path | None = Field(
        None, description="PEM public key the endpoint verifies attestations with (default: from the private key)"
    )

    @property
    def resolved_home(self) -> Path:
        return self.home.resolve()


def get_settings() -> Settings:
    """The settings as the environment says now; a bad value is a ``SettingsError`` naming its variable."""
    return _settings_for(_read_variables())


# Variables Settings reads besides the ML_PLATFORM_ ones: its fields' other names (e.g. MLFLOW_TRACKING_URI).
_OTHER_VARIABLES = frozenset(
    name.upper()
    for field in Settings.model_fields.values()
    if isinstance(field.validation_alias, AliasChoices)
    for name in field.validation_alias.choices
    if isinstance(name, str) and not name.upper().startswith(PREFIX)
)


def _read_variables() -> tuple[tuple[str, str], ...]:
    """The environment variables Settings reads, as they are now (names match in any case, as in pydantic-settings)."""
    return tuple(
        sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(PREFIX) or k.upper() in _OTHER_VARIABLES)
    )


@functools.lru_cache(maxsize=16)
def _settings_for(variables: tuple[tuple[str, str], ...]) -> Settings:
    """Settings for these variable values (the cache key; Settings reads them from the environment)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [f"{variable_name(str(e['loc'][0]))}: {e['msg']}" for e in exc.errors()]
        raise SettingsError("invalid setting(s): " + "; ".join(problems)) from None


def variable_name(field: str) -> str:
    """The environment variable of a settings field."""
    info = Settings.model_fields[field]
    if isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[0])
    return f"{PREFIX}{field.upper()}"


def platform_home() -> Path:
    return get_settings().resolved_home


def mlflow_tracking_uri(home: Path | None = None) -> str:
    """MLflow's tracking and registry store: SQLite under the home unless configured."""
    return get_settings().mlflow_tracking_uri or f"sqlite:///{(home or platform_home()) / 'mlflow.db'}"


def storage_url(home: Path | None = None) -> str:
    """The root of everything file-shaped: the storage URL setting, else the platform home on local disk."""
    return get_settings().storage_url or str(home or platform_home())


def is_remote_url(url: str) -> bool:
    """True for an object-storage URL (``s3://``, ``gs://``, ...); False for a folder or ``file://`` URL."""
    scheme, separator, _ = url.partition("://")
    return bool(separator) and scheme not in ("file", "local")


def mlflow_artifact_root(home: Path | None = None) -> str:
    """Where new experiments keep artifacts: the setting, else beside the lake (object storage or the home)."""
    configured = get_settings().artifact_root
    if configured:
        return configured
    root = storage_url(home)
    if is_remote_url(root):
        return f"{root.rstrip('/')}/mlartifacts"
    return ((home or platform_home()) / "mlartifacts").as_uri()


def dagster_home(home: Path | None = None) -> Path:
    """The Dagster instance folder: DAGSTER_HOME, else ``dagster/`` under the platform home (as `make dev`)."""
    return get_settings().dagster_home or (home or platform_home()) / "dagster"


def mlflow_ui_url() -> str:
    """Where users open the MLflow UI (`make mlflow`); materialisations link there."""
    return get_settings().mlflow_ui_url.rstrip("/")


def database_url(home: Path | None = None) -> str:
    """The platform database (audit trail, approvals, prediction log, outcomes)."""
    return get_settings().database_url or f"sqlite:///{(home or platform_home()) / 'platform.db'}"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5, check=True
    ).stdout.strip()


@functools.cache
def code_version() -> str:
    """The code that trained a model: the setting, else the git commit of a checkout, else the package version."""
    configured = get_settings().code_version
    if configured:
        return configured
    try:
        sha = _git("rev-parse", "--short=12", "HEAD")
        return f"{sha}-dirty" if _git("status", "--porcelain", "--untracked-files=no") else sha
    except (OSError, subprocess.SubprocessError):
        try:
            return version("ml-platform")
        except PackageNotFoundError:
            return "unknown"
