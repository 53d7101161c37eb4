"""Seeded synthetic encounter-level hospital data for a 30-day readmission model.

The generator stands in for an EHR extract: one row per inpatient encounter,
with demographics, utilisation, labs, vitals and the discharge disposition,
plus the outcome ``readmitted_30d``.  The outcome is drawn from a documented,
non-linear logistic model (see ``docs/synthetic_data.md``) so that model
quality, drift and fairness can be measured against a known truth.

Knobs inject the failure modes a continuous-training platform must detect:
covariate shift, concept drift, label shift, under-recorded outcomes in a
subgroup, missing labs and corrupt rows.  All knobs default to 0 (no effect).

Every random variable has its own child stream of
``numpy.random.default_rng(seed)``, so changing one knob does not reshuffle
the others: the same seed describes the same patients with and without drift,
which makes the effect of a knob a paired, low-noise comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import pandas as pd

SEX = ("F", "M")
RACE_ETHNICITY = ("White", "Black", "Hispanic", "Asian", "Other")
PAYER = ("Medicare", "Medicaid", "Private", "Self-pay")
ADMISSION_TYPE = ("Emergency", "Urgent", "Elective")
DISCHARGE_DISPOSITION = (
    "Home",
    "Home health",
    "Skilled nursing facility",
    "Rehabilitation",
    "Left against medical advice",
)

READMISSION_COLUMNS: list[str] = [
    "encounter_id",
    "patient_id",
    "admit_date",
    "age",
    "sex",
    "race_ethnicity",
    "payer",
    "admission_type",
    "length_of_stay",
    "prior_admissions_12m",
    "charlson_index",
    "n_chronic_conditions",
    "hba1c",
    "creatinine",
    "glucose",
    "systolic_bp",
    "heart_rate",
    "medication_count",
    "discharge_disposition",
    "readmitted_30d",
]
TARGET = "readmitted_30d"
LAB_COLUMNS: tuple[str, ...] = ("hba1c", "creatinine", "glucose", "systolic_bp", "heart_rate")

CATEGORIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "sex": SEX,
        "race_ethnicity": RACE_ETHNICITY,
        "payer": PAYER,
        "admission_type": ADMISSION_TYPE,
        "discharge_disposition": DISCHARGE_DISPOSITION,
    }
)
# Inclusive valid ranges; every generated value is clipped into them.
VALID_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "age": (18, 100),
        "length_of_stay": (1, 60),
        "prior_admissions_12m": (0, 30),
        "charlson_index": (0, 20),
        "n_chronic_conditions": (0, 15),
        "hba1c": (3.5, 20.0),
        "creatinine": (0.2, 20.0),
        "glucose": (20.0, 1000.0),
        "systolic_bp": (50.0, 260.0),
        "heart_rate": (20.0, 250.0),
        "medication_count": (0, 60),
    }
)

# Typical values used by the logit when a lab is missing, so risk stays defined.
TYPICAL_LABS: Mapping[str, float] = MappingProxyType({"hba1c": 5.7, "creatinine": 1.0, "glucose": 120.0})

# Coefficients of the readmission logit; keys match _logit_features() plus
# "intercept".  Intercepts are calibrated to a ~15% base rate for each vector.
BASELINE_COEFFICIENTS: Mapping[str, float] = MappingProxyType(
    {
        "intercept": -3.57,
        "log_length_of_stay": 0.40,
        "hba1c_above_8": 0.45,
        "glucose_u_shape": 0.25,
        "log_creatinine": 0.45,
        "prior_admissions_saturating": 1.30,
        "age_decades": 0.05,
        "charlson_index": 0.10,
        "age_x_charlson": 0.04,
        "medications_per_10": 0.15,
        "disposition_home_health": 0.25,
        "disposition_snf": 0.50,
        "disposition_rehab": 0.20,
        "disposition_ama": 1.00,
        "payer_medicaid": 0.30,
        "payer_private": -0.25,
        "payer_self_pay": 0.15,
        "admission_urgent": -0.10,
        "admission_elective": -0.50,
    }
)
# The world after a care-transition programme: diabetes management and
# post-acute follow-up remove the clinical signals, social risk dominates.
DRIFTED_COEFFICIENTS: Mapping[str, float] = MappingProxyType(
    {
        "intercept": -2.88,
        "log_length_of_stay": 0.15,
        "hba1c_above_8": 0.0,
        "glucose_u_shape": 0.0,
        "log_creatinine": 0.90,
        "prior_admissions_saturating": 0.60,
        "age_decades": 0.05,
        "charlson_index": 0.10,
        "age_x_charlson": 0.04,
        "medications_per_10": 0.30,
        "disposition_home_health": -0.10,
        "disposition_snf": -0.30,
        "disposition_rehab": -0.20,
        "disposition_ama": 1.20,
        "payer_medicaid": 0.80,
        "payer_private": -0.50,
        "payer_self_pay": 0.80,
        "admission_urgent": -0.10,
        "admission_elective": -0.50,
    }
)

_MAX_ROWS = 10_000_000  # keeps the 7-digit row part of the ids unambiguous
_KNOB_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "covariate_shift": (0.0, 3.0),
        "concept_drift": (0.0, 1.0),
        "label_shift": (-5.0, 5.0),
        "bias": (0.0, 1.0),
        "missingness": (0.0, 1.0),
        "corrupt_share": (0.0, 1.0),
    }
)
_STREAMS = (
    "patient", "date", "age", "sex", "race", "diabetes", "frailty", "payer",
    "admission", "los", "charlson", "chronic", "prior", "hba1c", "glucose",
    "creatinine", "systolic_bp", "heart_rate", "medications", "disposition",
    "label", "bias", "missing", "corrupt",
)  # fmt: skip

# Defects for corrupt rows: the (column, bad value) options of each kind.
_BAD_VALUES: Mapping[str, tuple[tuple[str, object], ...]] = MappingProxyType(
    {
        "out_of_range": (("age", -4), ("age", 240)),
        "unknown_category": (
            ("sex", "X?"),
            ("race_ethnicity", "unknown"),
            ("payer", "Medicare?"),
            ("admission_type", "EMERG"),
            ("discharge_disposition", "???"),
        ),
        "non_numeric": (
            ("glucose", "n/a"),
            ("creatinine", "<0.2"),
            ("length_of_stay", "unknown"),
            ("age", "sixty"),
        ),
        "missing_target": ((TARGET, math.nan),),
    }
)
_DUPLICATE_ID = "duplicate_id"


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #
def generate_readmission(
    n_rows: int,
    seed: int = 0,
    *,
    start_date: str = "2026-01-01",
    days: int = 30,
    covariate_shift: float = 0.0,
    concept_drift: float = 0.0,
    label_shift: float = 0.0,
    bias: float = 0.0,
    bias_group: str = "race_ethnicity=Black",
    missingness: float = 0.0,
    corrupt_share: float = 0.0,
) -> pd.DataFrame:
    """Generate ``n_rows`` encounters with columns ``READMISSION_COLUMNS``.

    The same arguments always give an identical frame.  ``encounter_id`` embeds
    the seed, so batches generated with different seeds never share ids.  See
    ``docs/synthetic_data.md`` for the generative model and each knob's effect.
    """
    start = _validate(
        n_rows, seed, start_date, days,
        covariate_shift=covariate_shift, concept_drift=concept_drift,
        label_shift=label_shift, bias=bias, missingness=missingness,
        corrupt_share=corrupt_share,
    )  # fmt: skip
    group_column, group_value = parse_bias_group(bias_group)
    streams = _streams(seed)

    columns = _population(streams, n_rows, seed=seed, start=start, days=days, shift=covariate_shift)
    coefficients = interpolate_coefficients(concept_drift)
    risk = _sigmoid(readmission_logit(columns, coefficients) + label_shift)
    labels = (streams["label"].random(n_rows) < risk).astype(np.int64)
    columns[TARGET] = _under_record(streams["bias"], labels, columns[group_column] == group_value, bias)
    _hide_labs(streams["missing"], columns, missingness)
    _corrupt(streams["corrupt"], columns, corrupt_share)
    return pd.DataFrame({name: columns[name] for name in READMISSION_COLUMNS})


def readmission_logit(
    frame: Mapping[str, np.ndarray] | pd.DataFrame,
    coefficients: Mapping[str, float] = BASELINE_COEFFICIENTS,
) -> np.ndarray:
    """Return the true readmission log-odds of each row of a valid frame.

    Missing labs are replaced by ``TYPICAL_LABS`` so risk is defined for every
    row; the generator itself draws labels before hiding any lab.
    """
    logit = coefficients["intercept"]
    for name, values in _logit_features(frame).items():
        logit = logit + coefficients[name] * values
    return logit


def interpolate_coefficients(concept_drift: float) -> dict[str, float]:
    """Blend the baseline and drifted coefficients: 0 is baseline, 1 is drifted."""
    return {
        name: (1.0 - concept_drift) * BASELINE_COEFFICIENTS[name] + concept_drift * DRIFTED_COEFFICIENTS[name]
        for name in BASELINE_COEFFICIENTS
    }


def parse_bias_group(bias_group: str) -> tuple[str, str]:
    """Split ``"column=value"`` and check it names a known category."""
    column, sep, value = str(bias_group).partition("=")
    if not sep:
        raise ValueError(f"bias_group must look like 'column=value', got {bias_group!r}")
    if column not in CATEGORIES:
        raise ValueError(
            f"bias_group column {column!r} is not a categorical column; choose one of {sorted(CATEGORIES)}"
        )
    if value not in CATEGORIES[column]:
        raise ValueError(
            f"bias_group value {value!r} is not a category of {column!r}; choose one of {list(CATEGORIES[column])}"
        )
    return column, value


# --------------------------------------------------------------------------- #
# Validation and randomness
# --------------------------------------------------------------------------- #
def _validate(n_rows: int, seed: int, start_date: str, days: int, **knobs: float) -> np.datetime64:
    """Check every argument; return the parsed start date."""
    _check_integer("n_rows", n_rows, 1, _MAX_ROWS)
    _check_integer("seed", seed, 0, None)
    _check_integer("days", days, 1, None)
    for name, value in knobs.items():
        low, high = _KNOB_RANGES[name]
        is_number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        # Written so that NaN fails the range test too.
        if not is_number or not low <= value <= high:
            raise ValueError(f"{name} must be a number within [{low}, {high}], got {value!r}")
    try:
        return np.datetime64(date.fromisoformat(start_date), "D")
    except (TypeError, ValueError):
        raise ValueError(f"start_date must be an ISO date 'YYYY-MM-DD', got {start_date!r}") from None


def _check_integer(name: str, value: object, low: int, high: int | None) -> None:
    """Raise ValueError unless ``value`` is an integer within [low, high]."""
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_int or value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent child generator per random variable (see module doc)."""
    children = np.random.default_rng(seed).spawn(len(_STREAMS))
    return dict(zip(_STREAMS, children, strict=True))


def _categorical(rng: np.random.Generator, probs: npt.ArrayLike, labels: tuple[str, ...], n: int) -> np.ndarray:
    """Draw ``n`` labels; ``probs`` is one shared vector or one row per draw.

    Inverse-CDF sampling with a single uniform per row: shifting the
    probabilities only changes rows near a category boundary (coupled draws).
    """
    probs = np.asarray(probs, dtype=float)
    cdf = np.cumsum(probs / probs.sum(axis=-1, keepdims=True), axis=-1)
    u = rng.random(n)[:, None]
    index = np.minimum((u > cdf).sum(axis=-1), len(labels) - 1)
    return np.asarray(labels, dtype=object)[index]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _clip(name: str, values: np.ndarray, decimals: int | None = None) -> np.ndarray:
    """Round (to int when ``decimals`` is None) and clip into the valid range."""
    low, high = VALID_RANGES[name]
    if decimals is None:
        return np.clip(np.rint(values), low, high).astype(np.int64)
    return np.clip(np.round(values, decimals), low, high)


# --------------------------------------------------------------------------- #
# Population
# --------------------------------------------------------------------------- #
def _population(
    streams: dict[str, np.random.Generator],
    n: int,
    *,
    seed: int,
    start: np.datetime64,
    days: int,
    shift: float,
) -> dict[str, np.ndarray]:
    """Draw ids, dates and every covariate; ``shift`` is the covariate-shift knob."""
    # Patients are drawn with replacement from a pool of n: ~1.6 encounters each.
    patient = streams["patient"].integers(0, n, n)
    offsets = streams["date"].integers(0, days, n).astype("timedelta64[D]")
    cols: dict[str, np.ndarray] = {
        "encounter_id": np.array([f"E{seed:06d}-{i:07d}" for i in range(n)], dtype=object),
        "patient_id": np.array([f"P{seed:06d}{k:07d}" for k in patient], dtype=object),
        "admit_date": np.datetime_as_string(start + offsets, unit="D").astype(object),
    }
    # Patient-level traits are drawn per patient, so repeat encounters agree.
    cols["age"] = _clip("age", streams["age"].normal(62.0 + 10.0 * shift, 17.0, n)[patient])
    cols["sex"] = _categorical(streams["sex"], [0.54, 0.46], SEX, n)[patient]
    cols["race_ethnicity"] = _categorical(streams["race"], [0.62, 0.17, 0.12, 0.05, 0.04], RACE_ETHNICITY, n)[patient]
    frailty = streams["frailty"].normal(0.0, 1.0, n)[patient]  # latent, never observed
    diabetic = _diabetes(streams["diabetes"], cols["age"], cols["race_ethnicity"], patient)

    cols["payer"] = _payer(streams["payer"], cols["age"], shift)
    cols["admission_type"] = _categorical(streams["admission"], [0.62, 0.22, 0.16], ADMISSION_TYPE, n)
    cols.update(_comorbidity(streams, cols["age"], diabetic, frailty))
    cols["prior_admissions_12m"] = _prior_admissions(streams["prior"], frailty, cols["charlson_index"], shift)
    cols["length_of_stay"] = _length_of_stay(streams["los"], cols["admission_type"], frailty, cols["charlson_index"])
    cols.update(_labs(streams, cols, diabetic, frailty, shift))
    cols["medication_count"] = _medications(streams["medications"], cols["age"], cols["n_chronic_conditions"], diabetic)
    cols["discharge_disposition"] = _disposition(streams["disposition"], cols)
    return cols


def _diabetes(rng: np.random.Generator, age: np.ndarray, race: np.ndarray, patient: np.ndarray) -> np.ndarray:
    """Latent diabetes (~30% of inpatients): commoner with age, Black and Hispanic."""
    higher_prevalence = np.isin(race, ("Black", "Hispanic"))
    p = _sigmoid(-1.0 + 0.03 * (age - 62) + 0.45 * higher_prevalence)
    return rng.random(len(age))[patient] < p


def _payer(rng: np.random.Generator, age: np.ndarray, shift: float) -> np.ndarray:
    """Payer by age band; covariate shift moves 25% x shift of the mass to Medicare."""
    senior = np.array([0.86, 0.06, 0.07, 0.01])
    younger = np.array([0.08, 0.30, 0.50, 0.12])
    probs = np.where((age >= 65)[:, None], senior, younger)
    toward_medicare = min(1.0, 0.25 * shift)
    probs = (1.0 - toward_medicare) * probs + toward_medicare * np.array([1.0, 0, 0, 0])
    return _categorical(rng, probs, PAYER, len(age))


def _comorbidity(
    streams: dict[str, np.random.Generator],
    age: np.ndarray,
    diabetic: np.ndarray,
    frailty: np.ndarray,
) -> dict[str, np.ndarray]:
    """Charlson index and chronic-condition count, both rising with age and frailty."""
    charlson = streams["charlson"].poisson(np.exp(0.55 + 0.03 * (age - 62) + 0.45 * frailty))
    chronic = streams["chronic"].poisson(np.exp(0.9 + 0.015 * (age - 62) + 0.35 * frailty))
    return {
        # Diabetes scores a Charlson point and is itself a chronic condition.
        "charlson_index": _clip("charlson_index", charlson + diabetic),
        "n_chronic_conditions": _clip("n_chronic_conditions", chronic + diabetic),
    }


def _prior_admissions(rng: np.random.Generator, frailty: np.ndarray, charlson: np.ndarray, shift: float) -> np.ndarray:
    """Over-dispersed (gamma-Poisson) count; covariate shift multiplies the mean by e^(0.5 s)."""
    mean = np.exp(-0.8 + 0.35 * frailty + 0.08 * charlson + 0.5 * shift)
    # Gamma draws first with a fixed shape, so the mean does not perturb them.
    heterogeneity = rng.gamma(shape=1.2, scale=1 / 1.2, size=len(mean))
    return _clip("prior_admissions_12m", rng.poisson(mean * heterogeneity))


def _length_of_stay(
    rng: np.random.Generator, admission: np.ndarray, frailty: np.ndarray, charlson: np.ndarray
) -> np.ndarray:
    """Right-skewed (log-normal, median ~4 days) stay, longer for emergencies and the frail."""
    log_days = (
        1.05 + 0.15 * frailty + 0.05 * charlson
        + 0.15 * (admission == "Emergency") - 0.2 * (admission == "Elective")
        + 0.55 * rng.normal(size=len(frailty))
    )  # fmt: skip
    return _clip("length_of_stay", np.ceil(np.exp(log_days)))


def _labs(
    streams: dict[str, np.random.Generator],
    cols: dict[str, np.ndarray],
    diabetic: np.ndarray,
    frailty: np.ndarray,
    shift: float,
) -> dict[str, np.ndarray]:
    """Labs and vitals; glucose tracks HbA1c, creatinine rises with age and comorbidity."""
    n = len(diabetic)
    age_c = cols["age"] - 62
    emergency = cols["admission_type"] == "Emergency"
    hba1c = np.where(diabetic, streams["hba1c"].normal(7.6, 1.5, n), streams["hba1c"].normal(5.4, 0.35, n))
    hba1c = _clip("hba1c", hba1c, 1)
    # Estimated average glucose (ADAG: 28.7 x HbA1c - 46.7) plus stress
    # hyperglycaemia; diabetics swing more, giving both tails of the U.
    glucose = (
        28.7 * hba1c - 46.7 + 12.0 * emergency + 20.0 * shift
        + (28.0 + 25.0 * diabetic) * streams["glucose"].normal(size=n)
    )  # fmt: skip
    creatinine = np.exp(
        np.log(0.9) + 0.007 * age_c + 0.07 * cols["charlson_index"] + 0.25 * shift
        + 0.3 * streams["creatinine"].normal(size=n)
    )  # fmt: skip
    return {
        "hba1c": hba1c,
        "creatinine": _clip("creatinine", creatinine, 2),
        "glucose": _clip("glucose", glucose, 0),
        "systolic_bp": _clip("systolic_bp", streams["systolic_bp"].normal(128.0 + 0.25 * age_c, 19.0), 0),
        "heart_rate": _clip(
            "heart_rate",
            streams["heart_rate"].normal(84.0 + 3.0 * frailty + 4.0 * emergency, 14.0),
            0,
        ),
    }


def _medications(rng: np.random.Generator, age: np.ndarray, chronic: np.ndarray, diabetic: np.ndarray) -> np.ndarray:
    """Medication count (mean ~8), driven by age and chronic conditions (polypharmacy)."""
    mean = np.exp(1.85 + 0.008 * (age - 62) + 0.08 * chronic + 0.15 * diabetic)
    return _clip("medication_count", rng.poisson(mean))


def _disposition(rng: np.random.Generator, cols: dict[str, np.ndarray]) -> np.ndarray:
    """Multinomial-logit disposition: old, long, comorbid stays go to post-acute care;
    young, self-pay and Medicaid patients are likelier to leave against advice."""
    age_c = cols["age"] - 62
    log_los = np.log(cols["length_of_stay"])
    charlson = cols["charlson_index"]
    payer = cols["payer"]
    scores = np.column_stack(
        [
            np.zeros(len(age_c)),  # Home is the reference
            -2.2 + 0.04 * age_c + 0.10 * charlson + 0.3 * log_los,
            -3.9 + 0.07 * age_c + 0.12 * charlson + 0.9 * log_los,
            -3.6 + 0.02 * age_c + 0.6 * log_los,
            -3.9 - 0.03 * age_c + 1.0 * (payer == "Self-pay") + 0.5 * (payer == "Medicaid"),
        ]
    )
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    return _categorical(rng, probs, DISCHARGE_DISPOSITION, len(age_c))


# --------------------------------------------------------------------------- #
# Outcome model
# --------------------------------------------------------------------------- #
def _logit_features(frame: Mapping[str, np.ndarray] | pd.DataFrame) -> dict[str, np.ndarray]:
    """The non-linear terms of the logit; keys match the coefficient mappings."""
    age_decades = (np.asarray(frame["age"], dtype=float) - 65.0) / 10.0
    charlson = np.asarray(frame["charlson_index"], dtype=float)
    prior = np.asarray(frame["prior_admissions_12m"], dtype=float)
    disposition = np.asarray(frame["discharge_disposition"])
    payer = np.asarray(frame["payer"])
    admission = np.asarray(frame["admission_type"])
    return {
        "log_length_of_stay": np.log(np.asarray(frame["length_of_stay"], dtype=float)),
        "hba1c_above_8": (_lab(frame, "hba1c") > 8.0).astype(float),
        # U-shape: both hypo- and hyperglycaemia are risky; capped at 4 (+-120 mg/dL).
        "glucose_u_shape": np.minimum(((_lab(frame, "glucose") - 120.0) / 60.0) ** 2, 4.0),
        "log_creatinine": np.log(_lab(frame, "creatinine")),
        # Saturating: the first admissions say most; 1 - e^(-n/2) tends to 1.
        "prior_admissions_saturating": 1.0 - np.exp(-prior / 2.0),
        "age_decades": age_decades,
        "charlson_index": charlson,
        "age_x_charlson": age_decades * charlson,
        "medications_per_10": np.asarray(frame["medication_count"], dtype=float) / 10.0,
        "disposition_home_health": (disposition == "Home health").astype(float),
        "disposition_snf": (disposition == "Skilled nursing facility").astype(float),
        "disposition_rehab": (disposition == "Rehabilitation").astype(float),
        "disposition_ama": (disposition == "Left against medical advice").astype(float),
        "payer_medicaid": (payer == "Medicaid").astype(float),
        "payer_private": (payer == "Private").astype(float),
        "payer_self_pay": (payer == "Self-pay").astype(float),
        "admission_urgent": (admission == "Urgent").astype(float),
        "admission_elective": (admission == "Elective").astype(float),
    }


def _lab(frame: Mapping[str, np.ndarray] | pd.DataFrame, name: str) -> np.ndarray:
    """A lab column with missing values replaced by its typical value."""
    values = np.asarray(frame[name], dtype=float)
    return np.where(np.isnan(values), TYPICAL_LABS[name], values)


def _under_record(rng: np.random.Generator, labels: np.ndarray, in_group: np.ndarray, bias: float) -> np.ndarray:
    """Record a share ``bias`` of the group's true positives as negatives."""
    missed = (labels == 1) & in_group & (rng.random(len(labels)) < bias)
    return np.where(missed, 0, labels)


# --------------------------------------------------------------------------- #
# Data-quality defects
# --------------------------------------------------------------------------- #
def _hide_labs(rng: np.random.Generator, cols: dict[str, np.ndarray], share: float) -> None:
    """Set each lab/vital value to NaN independently with probability ``share``."""
    hidden = rng.random((len(cols["age"]), len(LAB_COLUMNS))) < share
    for j, name in enumerate(LAB_COLUMNS):
        cols[name] = np.where(hidden[:, j], np.nan, cols[name])


def _corrupt(rng: np.random.Generator, cols: dict[str, np.ndarray], share: float) -> None:
    """Give ``round(share * n)`` random rows exactly one defect each.

    A duplicated id is copied from a clean row, so each copy adds exactly one
    repeated id and a contract check counts exactly the corrupted rows.  With
    no clean row left (every row corrupted) that defect kind is not used.
    """
    n = len(cols["age"])
    k = round(share * n)
    if k == 0:
        return
    rows = rng.choice(n, size=k, replace=False)
    kinds = (*_BAD_VALUES, _DUPLICATE_ID) if k < n else tuple(_BAD_VALUES)
    kind = rng.integers(0, len(kinds), size=k)
    for j, name in enumerate(kinds):
        chosen = rows[kind == j]
        if name == _DUPLICATE_ID:
            clean = np.setdiff1d(np.arange(n), rows)
            cols["encounter_id"][chosen] = cols["encounter_id"][rng.choice(clean, len(chosen))]
        else:
            _set_values(rng, cols, chosen, _BAD_VALUES[name])


def _set_values(
    rng: np.random.Generator,
    cols: dict[str, np.ndarray],
    rows: np.ndarray,
    options: tuple[tuple[str, object], ...],
) -> None:
    """Write one randomly chosen (column, bad value) option into each row."""
    pick = rng.integers(0, len(options), size=len(rows))
    for j, (column, value) in enumerate(options):
        targets = rows[pick == j]
        if len(targets) == 0:
            continue  # leave the column's dtype alone
        values = cols[column]
        # Widen the dtype so a bad value is stored as-is, as a raw extract would.
        if isinstance(value, str) and values.dtype != object:
            values = values.astype(object)
        elif isinstance(value, float) and values.dtype.kind in "iu":
            values = values.astype(np.float64)
        values[targets] = value
        cols[column] = values
