"""Tests for the Wisconsin breast-cancer frame and its landed batches."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from ml_platform.data.breast_cancer import breast_cancer_batches, breast_cancer_frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return breast_cancer_frame()


def test_whole_data_set_with_malignant_as_positive_class(frame: pd.DataFrame) -> None:
    assert frame.shape == (569, 32)
    assert frame["malignant"].sum() == 212
    # sklearn codes 1 = benign, so malignant must be its complement row by row.
    assert (frame["malignant"] == 1 - load_breast_cancer().target).all()


def test_columns_are_snake_case_with_id_first_and_target_last(frame: pd.DataFrame) -> None:
    assert frame.columns[0] == "sample_id" and frame.columns[-1] == "malignant"
    assert all(pd.Series(frame.columns).str.fullmatch(r"[a-z]+(_[a-z]+)*"))
    for name in ("mean_radius", "radius_error", "worst_concave_points"):
        assert name in frame.columns
    measurements = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    assert (frame.iloc[:, 1:-1].to_numpy() == measurements.to_numpy()).all()


def test_sample_ids_are_unique_and_formatted(frame: pd.DataFrame) -> None:
    assert frame["sample_id"].is_unique
    assert frame["sample_id"].iloc[0] == "WDBC-0001"
    assert frame["sample_id"].iloc[-1] == "WDBC-0569"


@pytest.mark.parametrize("n_batches", [1, 3, 7])
def test_batches_are_contiguous_and_cover_each_row_once(frame: pd.DataFrame, n_batches: int) -> None:
    batches = breast_cancer_batches(n_batches)
    assert len(batches) == n_batches
    sizes = [len(batch) for batch in batches]
    assert max(sizes) - min(sizes) <= 1
    pd.testing.assert_frame_equal(pd.concat(batches, ignore_index=True), frame)


def test_batches_are_deterministic() -> None:
    for first, second in zip(breast_cancer_batches(4), breast_cancer_batches(4), strict=True):
        pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize("n_batches", [0, 570, 2.0])
def test_invalid_batch_count_is_rejected(n_batches: object) -> None:
    message = rf"n_batches must be an integer within \[1, 569\], got {n_batches}"
    with pytest.raises(ValueError, match=message):
        breast_cancer_batches(n_batches)
