"""Materialisation metadata shared by every stage, in the shapes the Dagster UI renders."""

from __future__ import annotations

import math

import pandas as pd
from dagster import MetadataValue, TableColumn, TableSchema

from ml_platform.evaluation.plots import data_uri, markdown_images
from ml_platform.store.objects import storage_path


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


def run_actor(run_id: str) -> str:
    """The actor of a decision an automated Dagster run made: the run, so the UI can show it."""
    return f"dagster run {run_id}"


def plots_markdown(paths: dict[str, str]) -> MetadataValue:
    """PNG files as one Markdown entry with base64 data URIs: the Dagster UI renders the images
    inline, and they stay visible wherever the event log is read, with no file server. The paths
    may be on local disk or object storage."""
    images = {name: data_uri(storage_path(path).read_bytes()) for name, path in paths.items()}
    return MetadataValue.md(markdown_images(images))
