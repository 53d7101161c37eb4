"""Tests for atomic, immutable batch landing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.data import landing
from ml_platform.data.landing import next_batch_name, write_batch


@pytest.fixture
def df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "value": [1.5, np.nan, -2.25],
            "count": [1, 2, 3],
        },
        index=[10, 20, 30],  # a non-default index that must not be written
    )


@pytest.mark.parametrize(("fmt", "read"), [("csv", pd.read_csv), ("parquet", pd.read_parquet)])
def test_round_trip_without_index(tmp_path: Path, df: pd.DataFrame, fmt: str, read) -> None:
    path = write_batch(df, tmp_path, "batch_0001", fmt=fmt)
    assert path == tmp_path / f"batch_0001.{fmt}"
    pd.testing.assert_frame_equal(read(path), df.reset_index(drop=True))


def test_creates_missing_folders(tmp_path: Path, df: pd.DataFrame) -> None:
    path = write_batch(df, tmp_path / "landing" / "readmission", "batch_0001")
    assert path.is_file()


def test_writes_a_hidden_temp_file_then_renames_it(
    tmp_path: Path, df: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def recording_replace(src, dst):
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(landing.os, "replace", recording_replace)
    path = write_batch(df, tmp_path, "batch_0001")
    [(source, target)] = renames
    assert source.parent == tmp_path and source.name.startswith(".")
    assert target == path
    assert [p.name for p in tmp_path.iterdir()] == ["batch_0001.csv"]  # nothing left behind


def test_failed_write_leaves_no_file(tmp_path: Path, df: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_halfway(frame: pd.DataFrame, handle, fmt: str) -> None:
        handle.write(b"id,val")
        raise OSError("disk full")

    monkeypatch.setattr(landing, "_serialise", fail_halfway)
    with pytest.raises(OSError, match="disk full"):
        write_batch(df, tmp_path, "batch_0001")
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_landed_data(tmp_path: Path, df: pd.DataFrame) -> None:
    path = write_batch(df, tmp_path, "batch_0001")
    original = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"batch_0001\.csv already exists.*immutable"):
        write_batch(df.head(1), tmp_path, "batch_0001")
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["batch_0001.csv"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "xlsx"}, r"fmt must be one of \['csv', 'parquet'\], got 'xlsx'"),
        ({"name": ".hidden"}, r"name must be a plain file name.*'.hidden'"),
        ({"name": "sub/batch"}, r"name must be a plain file name.*'sub/batch'"),
        ({"name": ""}, r"name must be a plain file name"),
    ],
)
def test_invalid_arguments(tmp_path: Path, df: pd.DataFrame, kwargs: dict, message: str) -> None:
    arguments = {"name": "batch_0001", **kwargs}
    with pytest.raises(ValueError, match=message):
        write_batch(df, tmp_path, **arguments)
    assert list(tmp_path.iterdir()) == []


def test_next_batch_name_for_missing_or_empty_folder(tmp_path: Path) -> None:
    assert next_batch_name(tmp_path / "missing") == "batch_0001"
    assert next_batch_name(tmp_path) == "batch_0001"


def test_next_batch_name_is_one_above_the_highest_of_any_extension(tmp_path: Path, df: pd.DataFrame) -> None:
    write_batch(df, tmp_path, "batch_0001")
    assert next_batch_name(tmp_path) == "batch_0002"
    write_batch(df, tmp_path, "batch_0007", fmt="parquet")
    for ignored in ("other_0099.csv", ".batch_0050.tmp", "batch_abc.csv", "batch_0040x"):
        (tmp_path / ignored).write_text("")
    assert next_batch_name(tmp_path) == "batch_0008"
    assert next_batch_name(tmp_path, prefix="other") == "other_0100"
