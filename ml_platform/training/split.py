"""The training set: every usable batch's features (plus labelled production rows), split reproducibly."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_platform.data.features import feature_table
from ml_platform.errors import PlatformError
from ml_platform.spec import ModelSpec, Task
from ml_platform.store import predictions as prediction_log
from ml_platform.store.lake import Lake


def assign_split(table: pd.DataFrame, spec: ModelSpec) -> pd.Series:
    """train / validation / test per row, reproducibly (see ``Split``)."""
    split = spec.split
    if split.method == "hash":
        salted = table[spec.id_column].astype(str) + f"#{split.seed}"
        position = pd.util.hash_pandas_object(salted, index=False).to_numpy() / np.float64(2**64)
    else:
        # The newest rows get the lowest positions, so they are held out, like a prospective test.
        newest_first = table.sort_values([spec.contract.event_time_column, spec.id_column], ascending=False).index
        position = pd.Series(np.arange(len(table)) / len(table), index=newest_first).reindex(table.index).to_numpy()
    labels = np.where(
        position < split.test, "test", np.where(position < split.test + split.validation, "validation", "train")
    )
    return pd.Series(labels, index=table.index, name="split")


def union_batches(lake: Lake, spec: ModelSpec, batch_keys: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The feature tables of every usable batch (in landing order), latest row per id."""
    usable = [k for k in batch_keys if lake.has_table(spec.name, "features", k)]
    if spec.split.window:
        usable = usable[-spec.split.window :]
    if not usable:
        raise PlatformError(
            f"{spec.name}: no batch has passed validation yet; land data in the landing folder "
            "(or run `ml-platform simulate`) and let the new-data sensor register it"
        )
    frames = [lake.read_table(spec.name, "features", k).assign(batch=k) for k in usable]
    table = pd.concat(frames, ignore_index=True)
    # A corrected record re-landed later replaces the earlier one with the same id.
    table = table.drop_duplicates(spec.id_column, keep="last")
    return table.sort_values(spec.id_column).reset_index(drop=True), usable


def describe_training_set(spec: ModelSpec, table: pd.DataFrame, version: str, batches: list[str]) -> dict:
    """What a reviewer needs to know about the data a model learnt from."""
    counts = table["split"].value_counts()
    summary = {
        "version": version,
        "batches": batches,
        "rows": {s: int(counts.get(s, 0)) for s in ("train", "validation", "test")},
        "outcome_rate": float(table[spec.target].mean()) if spec.task == Task.binary_classification else None,
        "event_time_range": None,
    }
    if spec.contract.event_time_column:
        times = table[spec.contract.event_time_column]
        summary["event_time_range"] = f"{times.min():%Y-%m-%d} .. {times.max():%Y-%m-%d}"
    return summary


def labelled_production(spec: ModelSpec, engine) -> pd.DataFrame:
    """Answers of the endpoint whose outcome was reported, as feature rows the training set can use.

    The record id is its keyed hash, since the raw id was never stored; the latest answer per
    record counts, so a retried request is one row.
    """
    answers = prediction_log.with_outcomes(
        prediction_log.read_predictions(engine, spec.name, labelled_only=True),
        prediction_log.read_outcomes(engine, spec.name),
    )
    answers = answers.dropna(subset=["outcome"]).drop_duplicates("record_hash", keep="last")
    if answers.empty:
        return pd.DataFrame()
    records = answers.assign(**{spec.id_column: answers["record_hash"], spec.target: answers["outcome"]})
    if spec.contract.event_time_column:
        time_column = spec.contract.event_time_column
        records[time_column] = pd.to_datetime(records[time_column])
    return feature_table(records, spec).assign(batch="production")
