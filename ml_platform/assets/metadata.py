"""Materialisation metadata shared by every stage, in the shapes the Dagster UI renders."""

from __future__ import annotations

import math

import pandas as pd
from dagster import MetadataValue, TableColumn, TableSchema


def table_metadata(df: pd.DataFrame) -> dict:
    """Row count and column schema, under the keys the UI knows (``dagster/...``)."""
    schema = TableSchema(columns=[TableColumn(name=str(c), type=str(t)) for c, t in df.dtypes.items()])
    return {"dagster/row_count": len(df), "dagster/column_schema": schema}


def numbers(values: dict[str, float], prefix: str = "") -> dict:
    """Float metadata the UI plots over materialisations; a missing value stays visible as NaN text."""
    return {
        f"{prefix}{k}": MetadataValue.float(float(v))
        if v is not None and not math.isnan(v)
        else MetadataValue.text("n/a")
        for k, v in values.items()
    }


def content_hash(df: pd.DataFrame) -> str:
    """A short, order-sensitive hash of a table's values: its data version."""
    import hashlib

    row_hashes = pd.util.hash_pandas_object(df, index=False).to_numpy()
    digest = hashlib.sha256(row_hashes.tobytes())
    digest.update(",".join(map(str, df.columns)).encode())
    return digest.hexdigest()[:16]
