"""The Dagster definitions: one asset graph, sensor set and group per model spec."""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions

from ml_platform import assets, automation
from ml_platform.resources import platform_resources
from ml_platform.settings import platform_home
from ml_platform.specs import load_specs


def build_definitions(specs_dir: str | Path | None = None, home: str | Path | None = None) -> Definitions:
    """Definitions for every spec in ``specs_dir``, keeping state under ``home``."""
    home = Path(home).resolve() if home else platform_home()
    specs = load_specs(specs_dir)
    model_defs = [Definitions(assets=assets.build(spec, home)) for spec in specs]
    model_defs += [automation.build(spec, home) for spec in specs]
    return Definitions.merge(*model_defs, Definitions(resources=platform_resources(home)))


defs = build_definitions()
