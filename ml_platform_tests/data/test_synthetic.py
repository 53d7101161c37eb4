"""Tests for the synthetic readmission generator: schema, realism and every knob.

Ranges and categories are restated here from the specification rather than
imported, so a drift between the generator and its contract is caught.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from ml_platform.data.synthetic import (
    BASELINE_COEFFICIENTS,
    DRIFTED_COEFFICIENTS,
    READMISSION_COLUMNS,
    generate_readmission,
    readmission_logit,
)

EXPECTED_COLUMNS = [
    "encounter_id", "patient_id", "admit_date", "age", "sex", "race_ethnicity",
    "payer", "admission_type", "length_of_stay", "prior_admissions_12m",
    "charlson_index", "n_chronic_conditions", "hba1c", "creatinine", "glucose",
    "systolic_bp", "heart_rate", "medication_count", "discharge_disposition",
    "readmitted_30d",
]  # fmt: skip
INT_RANGES = {
    "age": (18, 100),
    "length_of_stay": (1, 60),
    "prior_admissions_12m": (0, 30),
    "charlson_index": (0, 20),
    "n_chronic_conditions": (0, 15),
    "medication_count": (0, 60),
}
LAB_RANGES = {
    "hba1c": (3.5, 20),
    "creatinine": (0.2, 20),
    "glucose": (20, 1000),
    "systolic_bp": (50, 260),
    "heart_rate": (20, 250),
}
CATEGORIES = {
    "sex": {"F", "M"},
    "race_ethnicity": {"White", "Black", "Hispanic", "Asian", "Other"},
    "payer": {"Medicare", "Medicaid", "Private", "Self-pay"},
    "admission_type": {"Emergency", "Urgent", "Elective"},
    "discharge_disposition": {
        "Home", "Home health", "Skilled nursing facility", "Rehabilitation",
        "Left against medical advice",
    },
}  # fmt: skip
N = 20_000


@pytest.fixture(scope="module")
def baseline() -> pd.DataFrame:
    return generate_readmission(N, seed=11)


def defective_rows(df: pd.DataFrame) -> pd.Series:
    """Rows that break the stated contract: ranges, categories, types, target, unique id."""
    bad = pd.Series(False, index=df.index)
    for column, (low, high) in {**INT_RANGES, **LAB_RANGES}.items():
        values = pd.to_numeric(df[column], errors="coerce")
        not_numeric = values.isna() & df[column].notna()
        missing_not_allowed = values.isna() if column in INT_RANGES else False
        out_of_range = values.notna() & ~values.between(low, high)
        bad |= not_numeric | out_of_range | missing_not_allowed
    for column, allowed in CATEGORIES.items():
        bad |= ~df[column].isin(allowed)
    bad |= ~df["readmitted_30d"].isin([0, 1])
    bad |= df["encounter_id"].duplicated(keep="first")
    return bad


def positive_rate(**kwargs: float) -> float:
    return generate_readmission(N, seed=5, **kwargs)["readmitted_30d"].mean()


# --------------------------------------------------------------------------- #
# Reproducibility and schema
# --------------------------------------------------------------------------- #
def test_same_arguments_give_identical_frames() -> None:
    knobs = {
        "covariate_shift": 0.5, "concept_drift": 0.5, "label_shift": 0.3,
        "bias": 0.4, "missingness": 0.1, "corrupt_share": 0.1,
    }  # fmt: skip
    pd.testing.assert_frame_equal(generate_readmission(2_000, 3, **knobs), generate_readmission(2_000, 3, **knobs))


def test_different_seeds_give_different_values_and_disjoint_ids() -> None:
    a, b = generate_readmission(2_000, 1), generate_readmission(2_000, 2)
    assert set(a["encounter_id"]).isdisjoint(b["encounter_id"])
    assert (a["age"].to_numpy() != b["age"].to_numpy()).mean() > 0.9
    assert (a["glucose"].to_numpy() != b["glucose"].to_numpy()).mean() > 0.9


def test_columns_present_in_order(baseline: pd.DataFrame) -> None:
    assert list(baseline.columns) == EXPECTED_COLUMNS == READMISSION_COLUMNS
    assert len(baseline) == N


def test_values_valid_with_all_knobs_off(baseline: pd.DataFrame) -> None:
    assert not defective_rows(baseline).any()
    assert not baseline.isna().any().any()
    for column in INT_RANGES:
        assert pd.api.types.is_integer_dtype(baseline[column]), column
    assert baseline["encounter_id"].is_unique
    assert baseline["patient_id"].str.fullmatch(r"P\d+").all()
    dates = pd.to_datetime(baseline["admit_date"], format="%Y-%m-%d")
    assert dates.min() >= pd.Timestamp("2026-01-01")
    assert dates.max() < pd.Timestamp("2026-01-31")
    for column, allowed in CATEGORIES.items():
        assert set(baseline[column]) == allowed, column  # every category occurs


def test_date_window_follows_arguments() -> None:
    df = generate_readmission(3_000, 0, start_date="2025-12-20", days=3)
    assert set(df["admit_date"]) == {"2025-12-20", "2025-12-21", "2025-12-22"}


def test_base_rate_in_documented_range(baseline: pd.DataFrame) -> None:
    assert 0.12 <= baseline["readmitted_30d"].mean() <= 0.18


def test_covariates_are_correlated_sensibly(baseline: pd.DataFrame) -> None:
    corr = baseline[["age", "charlson_index", "medication_count", "creatinine"]].corr()
    assert corr.loc["age", "charlson_index"] > 0.2
    assert corr.loc["age", "medication_count"] > 0.1
    assert corr.loc["age", "creatinine"] > 0.2
    diabetic = baseline["hba1c"] >= 6.5
    assert baseline.loc[diabetic, "glucose"].mean() > baseline.loc[~diabetic, "glucose"].mean() + 40
    medicare = baseline["payer"].eq("Medicare").groupby(baseline["age"] >= 65).mean()
    assert medicare[True] > 0.7
    assert medicare[False] < 0.2


def test_repeat_encounters_of_a_patient_agree_on_demographics(baseline: pd.DataFrame) -> None:
    per_patient = baseline.groupby("patient_id")[["age", "sex", "race_ethnicity"]].nunique()
    assert (baseline["patient_id"].value_counts() > 1).sum() > 1_000
    assert (per_patient == 1).all().all()


def test_label_risk_is_learnable_not_noise(baseline: pd.DataFrame) -> None:
    risk = readmission_logit(baseline)
    assert 0.74 <= roc_auc_score(baseline["readmitted_30d"], risk) <= 0.82


def test_documented_coefficients_match_the_code() -> None:
    docs = Path(__file__).parents[2] / "docs" / "synthetic_data.md"
    table_row = re.compile(r"^\| `(\w+)` \| (-?[\d.]+) \| (-?[\d.]+) \|$", re.MULTILINE)
    rows = table_row.findall(docs.read_text())
    documented = {name: (float(base), float(drift)) for name, base, drift in rows}
    in_code = {name: (BASELINE_COEFFICIENTS[name], DRIFTED_COEFFICIENTS[name])
               for name in BASELINE_COEFFICIENTS}  # fmt: skip
    assert documented == in_code


def test_hundred_thousand_rows_are_fast() -> None:
    def seconds() -> float:
        started = time.perf_counter()
        generate_readmission(100_000, 0)
        return time.perf_counter() - started

    assert min(seconds(), seconds()) < 2.0  # best of two, to ride out a busy machine


# --------------------------------------------------------------------------- #
# Knobs
# --------------------------------------------------------------------------- #
def test_covariate_shift_moves_population_but_not_the_outcome_model() -> None:
    before = generate_readmission(N, seed=8)
    after = generate_readmission(N, seed=8, covariate_shift=1.0)
    # Documented: age +10 years before clipping at 100 (measured ~+9.7).
    assert 9.0 <= after["age"].mean() - before["age"].mean() <= 10.5
    # Documented: glucose +20 mg/dL directly, ~+24 with the extra diabetics.
    assert 20.0 <= after["glucose"].mean() - before["glucose"].mean() <= 28.0
    assert after["payer"].eq("Medicare").mean() > before["payer"].eq("Medicare").mean() + 0.2
    # Pure covariate shift: labels still follow the baseline logit.
    expected = 1 / (1 + np.exp(-readmission_logit(after)))
    assert after["readmitted_30d"].mean() == pytest.approx(expected.mean(), abs=0.01)


def test_label_shift_moves_the_base_rate() -> None:
    base = positive_rate()
    assert 0.22 <= positive_rate(label_shift=1.0) <= 0.30 and base < 0.18
    assert positive_rate(label_shift=-1.0) < base - 0.06


def _features(df: pd.DataFrame) -> pd.DataFrame:
    """Model inputs: everything but ids, date and target, categories as pandas categoricals."""
    dtypes = {name: pd.CategoricalDtype(sorted(allowed)) for name, allowed in CATEGORIES.items()}
    features = df.drop(columns=["encounter_id", "patient_id", "admit_date", "readmitted_30d"])
    return features.astype(dtypes)


def test_concept_drift_degrades_a_model_trained_before_it() -> None:
    train = generate_readmission(15_000, seed=21)
    model = HistGradientBoostingClassifier(max_iter=100, categorical_features="from_dtype", random_state=0)
    # One thread: on data this small OpenMP threads cost more than they save,
    # and they slow down badly when the machine is busy.
    with threadpool_limits(limits=1):
        model.fit(_features(train), train["readmitted_30d"])

    def auc(df: pd.DataFrame) -> float:
        return roc_auc_score(df["readmitted_30d"], model.predict_proba(_features(df))[:, 1])

    undrifted = generate_readmission(15_000, seed=22)
    drifted = generate_readmission(15_000, seed=22, concept_drift=1.0)
    assert 0.72 <= auc(undrifted) <= 0.82
    assert auc(drifted) < auc(undrifted) - 0.04
    # Drift changes who is readmitted, not how many.
    assert 0.12 <= drifted["readmitted_30d"].mean() <= 0.18


@pytest.mark.parametrize("group", ["race_ethnicity=Black", "sex=F"])
def test_bias_under_records_positives_only_in_the_group(group: str) -> None:
    column, value = group.split("=")
    clean = generate_readmission(N, seed=4, bias_group=group)
    biased = generate_readmission(N, seed=4, bias=0.5, bias_group=group)
    in_group = clean[column] == value
    group_rate = biased.loc[in_group, "readmitted_30d"].mean()
    assert 0.4 <= group_rate / clean.loc[in_group, "readmitted_30d"].mean() <= 0.6
    assert (biased["readmitted_30d"] <= clean["readmitted_30d"]).all()  # never invents positives
    assert biased.loc[~in_group, "readmitted_30d"].equals(clean.loc[~in_group, "readmitted_30d"])


def test_missingness_hides_that_share_of_each_lab() -> None:
    df = generate_readmission(N, seed=6, missingness=0.2)
    for column in LAB_RANGES:
        assert df[column].isna().mean() == pytest.approx(0.2, abs=0.015), column
    assert not df.drop(columns=list(LAB_RANGES)).isna().any().any()
    assert not defective_rows(df).any()  # missing labs are allowed by the contract


def test_missing_labs_do_not_break_the_logit(baseline: pd.DataFrame) -> None:
    rows = baseline.head(50).copy()
    rows[["hba1c", "creatinine", "glucose"]] = np.nan
    assert np.isfinite(readmission_logit(rows)).all()


def test_corrupt_share_gives_that_share_of_defective_rows() -> None:
    df = generate_readmission(N, seed=7, corrupt_share=0.1)
    # Exactly round(share * n) rows get exactly one defect each, and duplicate
    # ids copy clean rows, so the contract check finds every one of them.
    assert defective_rows(df).sum() == 2_000
    # Each defect kind occurs.
    assert df["readmitted_30d"].isna().any()
    assert df["encounter_id"].duplicated().any()
    assert (pd.to_numeric(df["age"], errors="coerce") > 100).any()
    assert not df["sex"].isin(CATEGORIES["sex"]).all()
    assert pd.to_numeric(df["glucose"], errors="coerce").isna().sum() > df["glucose"].isna().sum()


def test_corrupting_every_row_of_a_one_row_frame() -> None:
    assert defective_rows(generate_readmission(1, seed=0, corrupt_share=1.0)).all()


# --------------------------------------------------------------------------- #
# Argument validation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_rows": 0}, r"n_rows must be an integer \[1, 10000000\], got 0"),
        ({"n_rows": 2.5}, r"n_rows must be an integer .*got 2.5"),
        ({"seed": -1}, r"seed must be an integer >= 0, got -1"),
        ({"days": 0}, r"days must be an integer >= 1, got 0"),
        ({"start_date": "2026-13-01"}, r"start_date must be an ISO date .*'2026-13-01'"),
        ({"covariate_shift": -0.5}, r"covariate_shift .* \[0.0, 3.0\], got -0.5"),
        ({"concept_drift": 1.5}, r"concept_drift .* \[0.0, 1.0\], got 1.5"),
        ({"label_shift": float("nan")}, r"label_shift .* \[-5.0, 5.0\], got nan"),
        ({"bias": 2}, r"bias .* \[0.0, 1.0\], got 2"),
        ({"missingness": -0.1}, r"missingness .* \[0.0, 1.0\], got -0.1"),
        ({"corrupt_share": 1.01}, r"corrupt_share .* \[0.0, 1.0\], got 1.01"),
        ({"bias_group": "race_ethnicity"}, r"bias_group must look like 'column=value'"),
        ({"bias_group": "zodiac=Leo"}, r"bias_group column 'zodiac'"),
        ({"bias_group": "age=70"}, r"bias_group column 'age'"),
        ({"bias_group": "race_ethnicity=Martian"}, r"bias_group value 'Martian'.*'Black'"),
    ],
)
def test_invalid_arguments_are_named_in_the_error(kwargs: dict, message: str) -> None:
    arguments = {"n_rows": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_readmission(**arguments)
