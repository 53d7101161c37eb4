"""Where the platform keeps its state, and the URLs of what it talks to.

Everything lives under one platform home (``.ml_platform/`` in the working directory,
or ``ML_PLATFORM_HOME``), so a demo is deleted by deleting one folder. Each URL can be
pointed elsewhere by its environment variable for a production deployment.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

HOME_ENV = "ML_PLATFORM_HOME"
DEFAULT_HOME = ".ml_platform"


def platform_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).resolve()


def mlflow_tracking_uri(home: Path | None = None) -> str:
    """MLflow's tracking and registry store: SQLite under the home unless configured."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(home or platform_home()) / 'mlflow.db'}"


def mlflow_artifact_root(home: Path | None = None) -> str:
    return os.environ.get("ML_PLATFORM_ARTIFACT_ROOT") or ((home or platform_home()) / "mlartifacts").as_uri()


def dagster_home(home: Path | None = None) -> Path:
    """The Dagster instance folder: DAGSTER_HOME, else ``dagster/`` under the platform home (as `make dev`)."""
    return Path(os.environ.get("DAGSTER_HOME") or (home or platform_home()) / "dagster")


def mlflow_ui_url() -> str:
    """Where users open the MLflow UI (`make mlflow`); materialisations link there."""
    return os.environ.get("ML_PLATFORM_MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")


def database_url(home: Path | None = None) -> str:
    """The platform database (audit trail, prediction log, outcomes)."""
    return os.environ.get("ML_PLATFORM_DATABASE_URL") or f"sqlite:///{(home or platform_home()) / 'platform.db'}"


def endpoint_url() -> str | None:
    """The running `ml-platform serve` the deployment verifies (`make dev` sets it); None: not verified."""
    return os.environ.get("ML_PLATFORM_ENDPOINT_URL") or None


def endpoint_token() -> str | None:
    """A bearer token for that endpoint, when it requires one."""
    return os.environ.get("ML_PLATFORM_ENDPOINT_TOKEN") or None


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5, check=True
    ).stdout.strip()


@functools.cache
def code_version() -> str:
    """The code that trained a model: the git commit when run from a checkout, else the package version."""
    if os.environ.get("ML_PLATFORM_CODE_VERSION"):
        return os.environ["ML_PLATFORM_CODE_VERSION"]
    try:
        sha = _git("rev-parse", "--short=12", "HEAD")
        return f"{sha}-dirty" if _git("status", "--porcelain", "--untracked-files=no") else sha
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("ml-platform")
        except PackageNotFoundError:
            return "unknown"
