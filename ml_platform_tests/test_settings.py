"""One typed settings object for every variable, documented in the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_platform.settings import Settings, SettingsError, get_settings, variable_name

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table():
    for field in Settings.model_fields:
        assert f"| `{variable_name(field)}` |" in README, f"{variable_name(field)} is missing from the README"


def test_a_bad_value_names_its_variable(monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_SERVE_POLL_SECONDS", "soon")
    with pytest.raises(SettingsError, match="ML_PLATFORM_SERVE_POLL_SECONDS"):
        get_settings()
    monkeypatch.setenv("ML_PLATFORM_SERVE_POLL_SECONDS", "-1")
    with pytest.raises(SettingsError, match="ML_PLATFORM_SERVE_POLL_SECONDS: Input should be greater than 0"):
        get_settings()


def test_empty_variables_mean_the_default_and_mlflow_keeps_its_own_name(monkeypatch, tmp_path):
    monkeypatch.setenv("ML_PLATFORM_DATABASE_URL", "")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    settings = get_settings()
    assert settings.database_url is None
    assert settings.mlflow_tracking_uri == "sqlite:///elsewhere.db"


def test_settings_follow_every_change_of_the_environment(monkeypatch):
    """Kept per value of the variables read, so a step asking many times builds them once."""
    monkeypatch.setenv("ML_PLATFORM_MLFLOW_UI_URL", "http://one:5000")
    first = get_settings()
    assert get_settings() is first
    monkeypatch.setenv("ML_PLATFORM_MLFLOW_UI_URL", "http://two:5000")
    assert get_settings().mlflow_ui_url == "http://two:5000"
    monkeypatch.setenv("dagster_home", "/elsewhere")  # names match in any case, the other names too
    assert get_settings().dagster_home == Path("/elsewhere")
    monkeypatch.delenv("dagster_home")
    monkeypatch.setenv("ML_PLATFORM_MLFLOW_UI_URL", "http://one:5000")
    assert get_settings().mlflow_ui_url == "http://one:5000"
