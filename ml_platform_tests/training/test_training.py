"""Training set assembly and splitting: reproducible, stable as data grows, versioned by content."""

from __future__ import annotations

import pandas as pd
import pytest

from ml_platform.data.features import content_hash
from ml_platform.data.features import feature_table as engineer
from ml_platform.data.synthetic import generate_readmission
from ml_platform.errors import PlatformError
from ml_platform.store.lake import Lake
from ml_platform.training.pipeline import build_pipeline
from ml_platform.training.split import assign_split, union_batches


def feature_table(rows: int, seed: int, spec) -> pd.DataFrame:
    raw = generate_readmission(rows, seed=seed)
    raw["admit_date"] = pd.to_datetime(raw["admit_date"])
    return engineer(raw, spec)


def test_hash_split_is_reproducible_and_near_the_configured_shares(readmission):
    table = feature_table(20_000, 1, readmission)
    first, second = assign_split(table, readmission), assign_split(table.copy(), readmission)
    pd.testing.assert_series_equal(first, second)
    shares = first.value_counts(normalize=True)
    assert shares["test"] == pytest.approx(readmission.split.test, abs=0.015)
    assert shares["validation"] == pytest.approx(readmission.split.validation, abs=0.015)


def test_a_row_keeps_its_split_when_more_data_arrives(readmission):
    """New batches never move an old test row into training: no leakage across retrains."""
    old = feature_table(2_000, 1, readmission)
    grown = pd.concat([old, feature_table(3_000, 2, readmission)], ignore_index=True).sample(frac=1, random_state=0)
    before = assign_split(old, readmission).set_axis(old["encounter_id"])
    after = assign_split(grown, readmission).set_axis(grown["encounter_id"])
    pd.testing.assert_series_equal(before, after.loc[before.index])


def test_time_split_holds_out_the_latest_rows(readmission):
    spec = readmission.model_copy(update={"split": readmission.split.model_copy(update={"method": "time"})})
    table = feature_table(5_000, 1, spec)
    split = assign_split(table, spec)
    assert table.loc[split == "test", "admit_date"].min() >= table.loc[split == "train", "admit_date"].max()
    assert (split == "test").mean() == pytest.approx(spec.split.test, abs=0.001)


def test_content_hash_tracks_the_data(readmission):
    table = feature_table(500, 1, readmission)
    assert content_hash(table) == content_hash(table.copy())
    changed = table.copy()
    changed.loc[0, "age"] += 1
    assert content_hash(changed) != content_hash(table)


@pytest.fixture
def lake(home):
    return Lake(home=str(home))


def test_union_keeps_the_latest_record_per_id_and_skips_rejected_batches(lake, readmission):
    first = feature_table(100, 1, readmission)
    corrected = first.head(10).assign(age=99.0)
    lake.write_table(first, "readmission_risk", "features", "b1")
    lake.write_table(corrected, "readmission_risk", "features", "b2")
    # "b3" was registered but rejected: it has no features and must not stop training.
    table, used = union_batches(lake, readmission, ["b1", "b2", "b3"])
    assert used == ["b1", "b2"]
    assert len(table) == 100
    assert (table.set_index("encounter_id").loc[corrected["encounter_id"], "age"] == 99.0).all()


def test_window_uses_only_the_latest_batches(lake, readmission):
    spec = readmission.model_copy(update={"split": readmission.split.model_copy(update={"window": 1})})
    lake.write_table(feature_table(100, 1, spec), "readmission_risk", "features", "b1")
    lake.write_table(feature_table(50, 2, spec), "readmission_risk", "features", "b2")
    table, used = union_batches(lake, spec, ["b1", "b2"])
    assert used == ["b2"] and len(table) == 50


def test_no_valid_batch_says_what_to_do(lake, readmission):
    with pytest.raises(PlatformError, match="no batch has passed validation yet.*ml-platform simulate"):
        union_batches(lake, readmission, ["b1"])


def test_pipeline_learns_preprocessing_from_training_rows_only(readmission):
    table = feature_table(3_000, 1, readmission)
    inputs = table[readmission.features.model_inputs]
    pipeline = build_pipeline(readmission).fit(inputs, table["readmitted_30d"])
    unseen = inputs.head(5).assign(payer="Unknown payer", hba1c=float("nan"))
    probabilities = pipeline.predict_proba(unseen)[:, 1]  # unknown categories and gaps are handled
    assert ((probabilities > 0) & (probabilities < 1)).all()
