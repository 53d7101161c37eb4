"""detect_drift: Evidently's default verdicts, sampling that is seeded and safe near the threshold, clear errors."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ml_platform.data.synthetic import generate_readmission, readmission_logit
from ml_platform.monitoring.drift import (
    DEFAULT_SAMPLE_ROWS,
    DriftResult,
    detect_drift,
    evidently_drift,
    wasserstein_sorted,
)

NUMERIC = [
    "age", "length_of_stay", "prior_admissions_12m", "charlson_index", "n_chronic_conditions", "hba1c",
    "creatinine", "glucose", "systolic_bp", "heart_rate", "medication_count", "prediction",
]  # fmt: skip
CATEGORICAL = ["sex", "race_ethnicity", "payer", "admission_type", "discharge_disposition", "readmitted_30d"]
# What covariate_shift moves directly (docs/synthetic_data.md): age, glucose, creatinine, prior admissions, payer.
SHIFTED = {"age", "glucose", "creatinine", "prior_admissions_12m", "payer"}
# Drawn from age, comorbidity or the outcome, so moved by an older, sicker population (a shift of 2 moves each
# by >= 0.035 past the 0.1 threshold at 5k rows): comorbidity and medication counts, HbA1c (diabetes rises
# with age), systolic BP (+0.25 mmHg a year), length of stay (Charlson), disposition, readmission and the score.
KNOCK_ON = {
    "charlson_index", "n_chronic_conditions", "medication_count", "hba1c", "systolic_bp", "length_of_stay",
    "discharge_disposition", "readmitted_30d", "prediction",
}  # fmt: skip
# Drawn independently of age and of the shift: must never drift.
UNTOUCHED = {"sex", "race_ethnicity", "admission_type", "heart_rate"}


def window(rows: int, seed: int, **knobs) -> pd.DataFrame:
    """A readmission batch with the champion's score column, as the monitoring asset sees it."""
    frame = generate_readmission(rows, seed=seed, **knobs)
    frame["prediction"] = 1.0 / (1.0 + np.exp(-readmission_logit(frame)))
    return frame


def evidently(reference: pd.DataFrame, current: pd.DataFrame, numeric=NUMERIC, categorical=CATEGORICAL):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evidently_drift(reference, current, numeric, categorical)


def assert_same_verdicts(ours: DriftResult, theirs: DriftResult) -> None:
    """Per column: the same test, score (to rounding), threshold, verdict and rows; the same dataset verdict."""
    assert [c.column for c in ours.columns] == [c.column for c in theirs.columns]
    for a, b in zip(ours.columns, theirs.columns, strict=True):
        assert (a.method, a.threshold, a.drifted, a.reference_rows, a.current_rows) == (
            b.method,
            b.threshold,
            b.drifted,
            b.reference_rows,
            b.current_rows,
        ), a.column
        assert a.score == pytest.approx(b.score, rel=1e-9, abs=1e-12), a.column
    assert (ours.share_drifted, ours.dataset_drift) == (theirs.share_drifted, theirs.dataset_drift)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return window(5_000, seed=1, missingness=0.1)


# --------------------------------------------------------------------------- #
# Verdicts
# --------------------------------------------------------------------------- #
def test_no_shift_flags_no_column(reference):
    result = detect_drift(reference, window(5_000, seed=2, missingness=0.1), NUMERIC, CATEGORICAL)

    assert result.drifted_columns == []
    assert (result.share_drifted, result.dataset_drift) == (0.0, False)
    assert {c.column: c.method for c in result.columns} == {
        **dict.fromkeys(NUMERIC, "wasserstein"),
        **dict.fromkeys(CATEGORICAL, "jensenshannon"),
    }
    assert all(c.threshold == 0.1 and 0 <= c.score < 0.1 for c in result.columns)


def test_covariate_shift_flags_the_columns_it_moves_and_their_knock_ons(reference):
    result = detect_drift(reference, window(5_000, seed=2, missingness=0.1, covariate_shift=2.0), NUMERIC, CATEGORICAL)

    assert set(result.drifted_columns) == SHIFTED | KNOCK_ON
    assert not UNTOUCHED & set(result.drifted_columns)
    assert result.share_drifted == pytest.approx(14 / 18)
    assert result.dataset_drift is True


def test_same_verdicts_scores_and_rows_as_evidently_on_a_moderate_frame(reference):
    current = window(5_000, seed=2, missingness=0.1, covariate_shift=0.5)
    current["icu_stay"] = (np.arange(5_000) % 7 == 0).astype(int)  # numeric with 2 values: Jensen-Shannon
    ref = reference.assign(icu_stay=(np.arange(5_000) % 9 == 0).astype(int))
    numeric = [*NUMERIC, "icu_stay"]

    ours = detect_drift(ref, current, numeric, CATEGORICAL)
    theirs = evidently(ref, current, numeric)

    assert_same_verdicts(ours, theirs)
    assert 0 < len(ours.drifted_columns) < len(ours.columns)  # a mix, so verdicts in both directions are checked
    assert next(c for c in ours.columns if c.column == "icu_stay").method == "jensenshannon"
    assert next(c for c in ours.columns if c.column == "hba1c").reference_rows < 5_000  # missing labs dropped


def test_small_reference_uses_evidently_p_value_tests():
    """<= 1000 reference rows: KS for numeric, chi-square above 2 values, z-test for 2; thresholds 0.05."""
    reference = window(600, seed=3).assign(oxygen=lambda d: np.arange(len(d)) % 4, icu=lambda d: np.arange(len(d)) % 2)
    current = window(900, seed=4, covariate_shift=1.0).assign(oxygen=lambda d: np.arange(len(d)) % 3, icu=0)
    current.loc[:50, "admission_type"] = "Transfer"  # a value the reference never saw: chi-square p = 0
    numeric = [*NUMERIC, "oxygen", "icu"]

    ours = detect_drift(reference, current, numeric, CATEGORICAL)

    methods = {c.column: c.method for c in ours.columns}
    assert methods == {
        **dict.fromkeys(NUMERIC, "ks"),
        "oxygen": "chisquare",
        "icu": "z",
        **dict.fromkeys(["race_ethnicity", "payer", "admission_type", "discharge_disposition"], "chisquare"),
        **dict.fromkeys(["sex", "readmitted_30d"], "z"),
    }
    assert all(c.threshold == 0.05 for c in ours.columns)
    by_column = {c.column: c for c in ours.columns}
    assert by_column["age"].drifted and by_column["age"].score < 0.05
    assert (by_column["admission_type"].score, by_column["admission_type"].drifted) == (0.0, True)
    assert_same_verdicts(ours, evidently(reference, current, numeric))


def test_missing_values_are_dropped_per_column(reference):
    current = window(5_000, seed=2, missingness=0.3)
    current["age"] = current["age"].astype(float)
    current.loc[:99, "age"] = np.inf  # +-inf counts as missing, as in Evidently
    current.loc[100:199, "payer"] = None

    result = detect_drift(reference, current, NUMERIC, CATEGORICAL, sample_rows=None)

    rows = {c.column: (c.reference_rows, c.current_rows) for c in result.columns}
    assert rows["glucose"] == (reference["glucose"].notna().sum(), current["glucose"].notna().sum())
    assert rows["glucose"][1] < 4_000  # ~30% of the labs are missing
    assert rows["age"] == (5_000, 4_900)
    assert rows["payer"] == (5_000, 4_900)
    assert np.isfinite([c.score for c in result.columns]).all()


# --------------------------------------------------------------------------- #
# Sampling
# --------------------------------------------------------------------------- #
def test_sampling_is_reproducible_and_leaves_the_frames_alone():
    reference, current = window(30_000, seed=5), window(30_000, seed=6, covariate_shift=0.3)
    before = reference.copy()

    first = detect_drift(reference, current, NUMERIC, CATEGORICAL, sample_rows=4_000, seed=7)
    again = detect_drift(reference, current, NUMERIC, CATEGORICAL, sample_rows=4_000, seed=7)
    other = detect_drift(reference, current, NUMERIC, CATEGORICAL, sample_rows=4_000, seed=8)

    assert first == again
    assert first.sample_rows == 4_000
    sampled = [c for c in first.columns if c.method == "wasserstein" and c.reference_rows == 4_000]
    assert sampled  # clear-cut columns were computed on the sample ...
    assert [c.score for c in sampled] != [c.score for c in other.columns if c.column in {s.column for s in sampled}]
    pd.testing.assert_frame_equal(reference, before)  # ... whose sorting never touches the caller's frame


def test_sampled_verdicts_match_all_rows():
    reference, current = window(40_000, seed=9), window(40_000, seed=10, covariate_shift=0.4)

    sampled = detect_drift(reference, current, NUMERIC, CATEGORICAL, sample_rows=5_000)
    exact = detect_drift(reference, current, NUMERIC, CATEGORICAL, sample_rows=None)

    assert [c.drifted for c in sampled.columns] == [c.drifted for c in exact.columns]
    assert exact.sample_rows is None and all(c.reference_rows > 5_000 for c in exact.columns)
    for s, e in zip(sampled.columns, exact.columns, strict=True):
        if s.method == "jensenshannon":  # counts always use all rows: Evidently's score exactly
            assert (s.score, s.reference_rows) == (e.score, e.reference_rows)


def test_a_sampled_distance_near_the_threshold_is_recomputed_on_all_rows():
    """A pure location shift of 0.1 standard deviations has a normed Wasserstein distance of ~0.1."""
    rng = np.random.default_rng(11)
    reference = pd.DataFrame({"borderline": rng.normal(0.0, 1.0, 50_000), "clear": rng.normal(0.0, 1.0, 50_000)})
    current = pd.DataFrame({"borderline": rng.normal(0.1, 1.0, 50_000), "clear": rng.normal(1.0, 1.0, 50_000)})

    result = detect_drift(reference, current, ["borderline", "clear"], [], sample_rows=5_000)
    exact = detect_drift(reference, current, ["borderline", "clear"], [], sample_rows=None)

    borderline, clear = result.columns
    assert abs(borderline.score - 0.1) < 0.01
    assert (borderline.reference_rows, borderline.current_rows) == (50_000, 50_000)
    assert (borderline.score, borderline.drifted) == (exact.columns[0].score, exact.columns[0].drifted)
    assert (clear.reference_rows, clear.current_rows, clear.drifted) == (5_000, 5_000, True)


def test_default_sample_bound_leaves_moderate_frames_unsampled(reference):
    current = window(5_000, seed=2)

    result = detect_drift(reference, current, NUMERIC, CATEGORICAL)

    assert result.sample_rows == DEFAULT_SAMPLE_ROWS >= 5_000
    assert result.columns == detect_drift(reference, current, NUMERIC, CATEGORICAL, sample_rows=None).columns


def test_wasserstein_of_sorted_samples_equals_scipy():
    rng = np.random.default_rng(12)
    for n, m in [(1, 1), (1, 7), (50, 50), (313, 1_000), (2_000, 1_999)]:
        u = np.sort(rng.integers(0, 6, n).astype(float))  # ties
        v = np.sort(rng.normal(2.0, 3.0, m))
        assert wasserstein_sorted(u, v) == pytest.approx(stats.wasserstein_distance(u, v), rel=1e-12, abs=1e-12)
        assert wasserstein_sorted(v, u) == pytest.approx(stats.wasserstein_distance(v, u), rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------- #
# Errors and output
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("side", ["reference", "current"])
def test_a_missing_column_is_named_with_its_frame(reference, side):
    frames = {"reference": reference, "current": reference.copy()}
    frames[side] = frames[side].drop(columns="glucose")

    with pytest.raises(ValueError, match=rf"'glucose' is missing from the {side} frame"):
        detect_drift(frames["reference"], frames["current"], NUMERIC, CATEGORICAL)


@pytest.mark.parametrize(("column", "empty"), [("creatinine", np.nan), ("payer", None)])
def test_a_column_empty_once_missing_values_are_dropped_is_named_with_its_frame(reference, column, empty):
    current = reference.assign(**{column: empty})

    with pytest.raises(ValueError, match=rf"'{column}' has no values in the current frame"):
        detect_drift(reference, current, NUMERIC, CATEGORICAL)


def test_non_numeric_values_in_a_numeric_column_are_named(reference):
    current = reference.assign(age=reference["age"].astype(str))

    with pytest.raises(ValueError, match=r"numeric column 'age' in the current frame holds non-numeric values"):
        detect_drift(reference, current, NUMERIC, CATEGORICAL)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"numeric": ["age"], "categorical": ["age"]}, "named more than once"),
        ({"numeric": [], "categorical": []}, "no columns to check"),
        ({"sample_rows": 0}, "sample_rows must be a positive integer"),
        ({"drift_share": 0.0}, r"drift_share must be within \(0, 1\]"),
    ],
)
def test_invalid_arguments_are_rejected(reference, kwargs, message):
    arguments = {"numeric": NUMERIC, "categorical": CATEGORICAL, **kwargs}
    with pytest.raises(ValueError, match=message):
        detect_drift(reference, reference, **arguments)


def test_result_is_json_serialisable(reference):
    current = window(5_000, seed=2, missingness=0.1, covariate_shift=2.0)
    result = detect_drift(reference, current, NUMERIC, CATEGORICAL, drift_share=0.9)

    data = json.loads(json.dumps(result.to_dict()))

    assert data["drifted_columns"] == result.drifted_columns
    assert data["dataset_drift"] is False  # 14 of 18 columns drift: below a 0.9 share
    assert data["drift_share"] == 0.9
    assert data["columns"][0] == {
        "column": "age",
        "kind": "numeric",
        "method": "wasserstein",
        "score": result.columns[0].score,
        "threshold": 0.1,
        "drifted": True,
        "reference_rows": 5_000,
        "current_rows": 5_000,
    }
