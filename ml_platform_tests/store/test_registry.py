"""The MLflow resource leaves the platform's configuration as the user set it."""

from __future__ import annotations

import os

from ml_platform.defs.resources import platform_resources
from ml_platform.settings import mlflow_tracking_uri


def test_using_one_home_does_not_redirect_another(tmp_path, monkeypatch):
    # MLflow writes MLFLOW_TRACKING_URI into the environment when a tracking URI is set; a
    # process that serves or inspects two homes (the demo, tests) must still reach each one.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first, second = tmp_path / "first", tmp_path / "second"
    platform_resources(first)["mlflow"].client()
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow_tracking_uri(second) == f"sqlite:///{second / 'mlflow.db'}"


def test_a_configured_tracking_uri_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow@db/mlflow")
    platform_resources(tmp_path)["mlflow"]._activate()
    assert os.environ["MLFLOW_TRACKING_URI"] == "postgresql://mlflow@db/mlflow"
