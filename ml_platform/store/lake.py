"""The data lake: Parquet tables and immutable raw copies under the platform home.

Paths are ``<home>/lake/<model>/<stage>/<name>.parquet``. Writes go to a temporary file
and are renamed into place, so a reader never sees half a table and a failed step never
leaves a corrupt one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict

from ml_platform.store.private import private_dir


def atomic_write(path: Path, write) -> Path:
    """Call ``write(tmp_path)`` then move the result to ``path`` in one rename (folders owner-only, file mode 600)."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class Lake(BaseModel):
    """Tables and raw batch copies for every model, under one root folder."""

    model_config = ConfigDict(frozen=True)

    home: str

    @property
    def root(self) -> Path:
        return Path(self.home)

    def table_path(self, model: str, stage: str, name: str) -> Path:
        return self.root / "lake" / model / stage / f"{name}.parquet"

    def write_table(self, df: pd.DataFrame, model: str, stage: str, name: str) -> Path:
        return atomic_write(self.table_path(model, stage, name), lambda p: df.to_parquet(p, index=False))

    def read_table(self, model: str, stage: str, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.table_path(model, stage, name))

    def has_table(self, model: str, stage: str, name: str) -> bool:
        return self.table_path(model, stage, name).exists()

    def json_path(self, model: str, stage: str, name: str) -> Path:
        return self.table_path(model, stage, name).with_suffix(".json")

    def write_json(self, data: dict, model: str, stage: str, name: str) -> Path:
        path = self.json_path(model, stage, name)
        return atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, default=str)))

    def read_json(self, model: str, stage: str, name: str) -> dict:
        return json.loads(self.json_path(model, stage, name).read_text())

    def raw_dir(self, model: str, batch: str) -> Path:
        """Where a batch's immutable raw copy lives."""
        return self.root / "raw" / model / batch

    def reports_dir(self, model: str) -> Path:
        """A model's report folder, created owner-only: reports show samples of the inputs."""
        return private_dir(self.root / "reports" / model)
