"""The platform's real processes for end-to-end tests: `dagster dev`, the endpoint, the MLflow UI.

Each process runs in its own session on a loopback port, logs to a file, and is stopped with
its whole process group, so a failing test leaves nothing running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wait_for(predicate, timeout: float, what: str, every: float = 2.0):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200 within two seconds (a server that is not up yet is not an error)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def running(command: list[str], env: dict, log: Path, cwd: Path = REPO_ROOT) -> Iterator[subprocess.Popen]:
    """Run ``command`` for the duration of the block, then stop its process group (SIGTERM, then SIGKILL)."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def dagster_dev(port: int) -> list[str]:
    """`dagster dev` on the workspace file, as `make dev` runs it."""
    workspace = str(REPO_ROOT / "workspace.yaml")
    return [str(BIN / "dagster"), "dev", "-w", workspace, "--host", "127.0.0.1", "--port", str(port)]


def endpoint(port: int) -> list[str]:
    """`ml-platform serve` on loopback."""
    return [sys.executable, "-m", "ml_platform.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]


def mlflow_ui(home: Path, port: int) -> list[str]:
    """`mlflow ui` on the platform's tracking store, as `make mlflow` runs it."""
    store = f"sqlite:///{home / 'mlflow.db'}"
    return [str(BIN / "mlflow"), "ui", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", str(port)]
