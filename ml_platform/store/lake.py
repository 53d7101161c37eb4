"""The data lake: Parquet tables and immutable raw copies under the storage root.

Paths are ``<root>/lake/<model>/<stage>/<name>.parquet``, where the root is the storage URL
(``ML_PLATFORM_STORAGE_URL``: a local folder, ``s3://...``, ``gs://...``), else the platform
home. Every write is atomic (``store.objects.atomic_write``: a rename on local disk, a
single PUT on object storage), so a reader never sees half a table and a failed step never
leaves a corrupt one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict

from ml_platform.store.objects import StoragePath, atomic_write, is_local, make_folder, storage_path, storage_root


class Lake(BaseModel):
    """Tables and raw batch copies for every model, under one root folder."""

    model_config = ConfigDict(frozen=True)

    home: str
    # The storage root; None: the settings' storage URL (else the home), read when asked for.
    storage: str | None = None

    @property
    def root(self) -> StoragePath:
        return storage_path(self.storage) if self.storage else storage_root(Path(self.home))

    def table_path(self, model: str, stage: str, name: str) -> StoragePath:
        return self.root / "lake" / model / stage / f"{name}.parquet"

    def write_table(self, df: pd.DataFrame, model: str, stage: str, name: str) -> StoragePath:
        return atomic_write(self.table_path(model, stage, name), lambda p: df.to_parquet(p, index=False))

    def read_table(self, model: str, stage: str, name: str) -> pd.DataFrame:
        path = self.table_path(model, stage, name)
        if is_local(path):
            return pd.read_parquet(path)
        return pd.read_parquet(io.BytesIO(path.read_bytes()))  # one GET, not a request per column chunk

    def has_table(self, model: str, stage: str, name: str) -> bool:
        return self.table_path(model, stage, name).exists()

    def json_path(self, model: str, stage: str, name: str) -> StoragePath:
        return self.table_path(model, stage, name).with_suffix(".json")

    def write_json(self, data: dict, model: str, stage: str, name: str) -> StoragePath:
        path = self.json_path(model, stage, name)
        return atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, default=str)))

    def read_json(self, model: str, stage: str, name: str) -> dict:
        return json.loads(self.json_path(model, stage, name).read_text())

    def raw_dir(self, model: str, batch: str) -> StoragePath:
        """Where a batch's immutable raw copy lives."""
        return self.root / "raw" / model / batch

    def reports_dir(self, model: str) -> StoragePath:
        """A model's report folder, owner-only on local disk: reports show samples of the inputs."""
        folder = self.root / "reports" / model
        make_folder(folder)
        return folder
