"""Loading model specs from YAML files, with errors that name the file, the key and the fix.

The person reading these errors is editing YAML, not Python.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from ml_platform.settings import get_settings
from ml_platform.spec.model import ModelSpec

SHIPPED_SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"


class SpecError(ValueError):
    """A model spec that cannot be used, with the file, the key and the fix."""


def _format_validation_error(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid model spec"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against the spec reference in the README"
        elif item["type"] == "missing":
            message = "required key is missing"
        # Cross-key checks have no single location; their message starts with the key.
        lines.append(f"  {key}: {message}" if key else f"  {message}")
    return "\n".join(lines)


def load_spec(path: str | os.PathLike) -> ModelSpec:
    """Parse and validate one spec file; raise SpecError naming the file, key and fix."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot be read: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a model spec is a YAML mapping of keys (name, task, contract, ...)")
    raw.setdefault("name", path.stem)
    if raw["name"] != path.stem:
        raise SpecError(f"{path}: name '{raw['name']}' differs from the file name; name the file {raw['name']}.yaml")
    try:
        return ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_format_validation_error(path, exc)) from None


def specs_dir() -> Path:
    return get_settings().specs or SHIPPED_SPECS_DIR


def load_specs(directory: str | os.PathLike | None = None) -> list[ModelSpec]:
    """Every ``*.yaml`` spec in the folder, sorted by name."""
    directory = Path(directory) if directory else specs_dir()
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise SpecError(f"{directory}: no model specs (*.yaml) found; set ML_PLATFORM_SPECS to the folder holding them")
    return [load_spec(f) for f in files]


def get_spec(name: str, directory: str | os.PathLike | None = None) -> ModelSpec:
    """The spec of one model by name, with the known names in the error."""
    specs = {s.name: s for s in load_specs(directory)}
    if name not in specs:
        raise SpecError(f"unknown model '{name}'; known models: {', '.join(sorted(specs))}")
    return specs[name]
