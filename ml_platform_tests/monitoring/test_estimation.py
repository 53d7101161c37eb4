"""Confidence-based performance estimation: hand-checked numbers, simulated outcomes, and estimates against
measured performance on the synthetic readmission generator (fresh, covariate-shifted and concept-drifted)."""

from __future__ import annotations

import math
import re
import timeit

import numpy as np
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from ml_platform import metrics as catalogue
from ml_platform.data.synthetic import TARGET, generate_readmission
from ml_platform.metrics import compute_metrics
from ml_platform.monitoring.estimation import ESTIMATED_METRICS, estimate_performance
from ml_platform.spec import Task, get_spec

THRESHOLD = 0.25  # the readmission spec's decision threshold

# --------------------------------------------------------------------------- #
# Definition: hand-checked and simulated
# --------------------------------------------------------------------------- #


def test_estimates_the_platforms_binary_metrics():
    assert set(ESTIMATED_METRICS) <= set(catalogue.names(Task.binary_classification))
    assert set(estimate_performance([0.1, 0.7], THRESHOLD)) == set(ESTIMATED_METRICS)


def test_hand_worked_example():
    # p = 0.8, 0.6, 0.3 are flagged (p >= 0.25); 0.2 and 0.1 are not.
    # TP = 0.8 + 0.6 + 0.3 = 1.7    FP = 0.2 + 0.4 + 0.7 = 1.3
    # FN = 0.2 + 0.1       = 0.3    TN = 0.8 + 0.9       = 1.7
    # expected positives P = 2.0, negatives N = 3.0, sum of p(1 - p) = 0.16+0.24+0.21+0.16+0.09 = 0.86
    m = estimate_performance([0.3, 0.1, 0.8, 0.2, 0.6], THRESHOLD)  # order does not matter
    assert m["sensitivity"] == pytest.approx(1.7 / 2.0)
    assert m["specificity"] == pytest.approx(1.7 / 3.0)
    assert m["ppv"] == pytest.approx(1.7 / 3.0)
    assert m["npv"] == pytest.approx(1.7 / 2.0)
    assert m["accuracy"] == pytest.approx((1.7 + 1.7) / 5)
    assert m["prevalence"] == pytest.approx(0.4)
    assert m["positive_rate"] == pytest.approx(0.6)
    assert m["brier"] == pytest.approx(0.86 / 5)
    # AUC: expected correctly ranked pairs, sum over i ranked above j of p_i (1 - p_j):
    #   0.8 (0.4 + 0.7 + 0.8 + 0.9) + 0.6 (0.7 + 0.8 + 0.9) + 0.3 (0.8 + 0.9) + 0.2 (0.9)
    #   = 2.24 + 1.44 + 0.51 + 0.18 = 4.37
    # expected (positive, negative) pairs of distinct rows: P N - sum p(1 - p) = 6 - 0.86 = 5.14
    assert m["roc_auc"] == pytest.approx(4.37 / 5.14)
    # AP: expected sum over positives of the precision at their rank, E[y_k TP_k] / k = p_k (1 + p above) / k:
    #   0.8 (1) / 1 + 0.6 (1 + 0.8) / 2 + 0.3 (1 + 1.4) / 3 + 0.2 (1 + 1.7) / 4 + 0.1 (1 + 1.9) / 5
    #   = 0.8 + 0.54 + 0.24 + 0.135 + 0.058 = 1.773, over P = 2.0 expected positives
    assert m["average_precision"] == pytest.approx(1.773 / 2.0)


def test_equal_probabilities_carry_no_ranking_information():
    m = estimate_performance(np.full(10, 0.3), THRESHOLD)
    assert m["roc_auc"] == pytest.approx(0.5)  # ties count half, as in scikit-learn
    assert m["sensitivity"] == pytest.approx(1.0) and math.isnan(m["npv"])  # everyone is flagged


def test_undefined_metrics_are_nan_as_in_compute_metrics():
    none_positive = estimate_performance([0.0, 0.0, 0.0], THRESHOLD)  # no expected positive at all
    for name in ("roc_auc", "average_precision", "sensitivity", "ppv"):
        assert math.isnan(none_positive[name]), name
    assert none_positive["specificity"] == 1.0 and none_positive["npv"] == 1.0
    one_row = estimate_performance([0.4], THRESHOLD)  # one row cannot be both a positive and a negative
    assert math.isnan(one_row["roc_auc"]) and one_row["ppv"] == pytest.approx(0.4)


@pytest.mark.parametrize("outcomes", [[1, 0, 0, 1, 0], [1, 1, 1], [0, 0]])
def test_certain_outcomes_give_exactly_the_measured_metrics(readmission, outcomes):
    """Probabilities of 0 and 1 leave nothing to chance: the estimate is what ``compute_metrics`` measures."""
    estimated = estimate_performance(outcomes, readmission.threshold)
    measured = compute_metrics(readmission, outcomes, outcomes)
    for name in ESTIMATED_METRICS:
        assert estimated[name] == pytest.approx(measured[name], nan_ok=True), name


def _simulated_metrics(p: np.ndarray, draws: int, seed: int) -> dict[str, float]:
    """Average AUC, AP and accuracy over simulated outcome vectors y ~ Bernoulli(p); p must have no ties."""
    rng = np.random.default_rng(seed)
    order = np.argsort(-p)
    p = p[order]
    y = rng.random((draws, p.size)) < p  # columns ranked from the highest probability down
    positives, negatives = y.sum(axis=1), (~y).sum(axis=1)
    # AUC from ranks (rank 1 = lowest probability): (sum of positive ranks - npos (npos + 1) / 2) / (npos nneg)
    ranks = np.arange(p.size, 0, -1)
    both = (positives > 0) & (negatives > 0)
    auc = ((y * ranks).sum(axis=1) - positives * (positives + 1) / 2)[both] / (positives * negatives)[both]
    precision = np.cumsum(y, axis=1) / np.arange(1, p.size + 1)
    any_positive = positives > 0
    ap = (y * precision).sum(axis=1)[any_positive] / positives[any_positive]
    accuracy = (y == (p >= THRESHOLD)).mean(axis=1)
    return {"roc_auc": auc.mean(), "average_precision": ap.mean(), "accuracy": accuracy.mean()}


def test_small_window_estimate_is_the_average_over_simulated_outcomes():
    """For 50 rows, the estimate matches what a calibrated model's outcomes give on average.

    Accuracy is an exact expectation. The AUC is a ratio of exact expected pair counts, so it is within
    simulation noise (about 0.0005 for 40,000 draws) of the average AUC; the trapezoid over the expected ROC
    curve alone would be 0.004 low here. AP keeps a small ratio bias at 50 rows (0.02 high); plugging in
    expected counts without the variance term would be 0.08 low.
    """
    p = np.random.default_rng(5).beta(1.0, 5.0, size=50)
    estimated, simulated = estimate_performance(p, THRESHOLD), _simulated_metrics(p, draws=40_000, seed=6)
    assert estimated["accuracy"] == pytest.approx(simulated["accuracy"], abs=0.002)
    assert estimated["roc_auc"] == pytest.approx(simulated["roc_auc"], abs=0.002)
    assert estimated["average_precision"] == pytest.approx(simulated["average_precision"], abs=0.03)


def test_one_million_probabilities_cost_a_few_sorts():
    """O(n log n): one sort and a few cumulative sums, measured against a sort of the same array in
    the same run (an absolute time would depend on the machine and its load)."""
    p = np.random.default_rng(0).random(1_000_000)
    estimate_performance(p[:1000], THRESHOLD)  # warm-up

    def seconds(work) -> float:
        return min(timeit.repeat(work, number=1, repeat=3))

    assert seconds(lambda: estimate_performance(p, THRESHOLD)) < 15 * seconds(lambda: np.argsort(p))


@pytest.mark.parametrize(
    ("probabilities", "message"),
    [
        ([], "probabilities is empty"),
        ([0.1, math.nan, 0.5, math.nan], "2 NaN value"),
        ([0.1, -0.2, 1.5, 0.3, math.inf], "3 value(s) of 5 are outside"),
        ([[0.9, 0.1], [0.2, 0.8]], "one-dimensional"),
        (["0.2", "high"], "must be numbers"),
    ],
)
def test_bad_probabilities_are_rejected_with_the_problem_and_the_count(probabilities, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        estimate_performance(probabilities, THRESHOLD)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, math.nan, None])
def test_a_threshold_outside_zero_one_is_rejected(threshold):
    with pytest.raises(ValueError, match="threshold must be a probability in"):
        estimate_performance([0.2, 0.4], threshold)


# --------------------------------------------------------------------------- #
# Against measured performance on the readmission generator
# --------------------------------------------------------------------------- #
TRAIN_ROWS = 20_000
# 50,000 monitored rows keep the sampling noise of the measured metrics well inside the tolerances
# (about 0.002 for prevalence and 0.003 for AUC at one standard error).
MONITOR_ROWS = 50_000
TRAIN_SEED, MONITOR_SEED = 100, 101  # one seed for every monitored population: the same patients (paired)

# How far an estimate may be from the measured metric for a calibrated model trained on 20,000 rows. Each
# covers the sampling noise of 50,000 outcomes plus the calibration error of a model fitted on 20,000 rows,
# which grows when a shifted population pushes it to extrapolate (trees predict flat beyond the training
# range). Over six train/monitor seed pairs the largest gaps were AUC 0.010, sensitivity 0.021, ppv 0.022,
# specificity/npv/accuracy 0.007, prevalence 0.012, AP 0.049, Brier 0.003. An uncalibrated model misses
# by 0.07 to 0.3 on the metrics it distorts, far outside.
TOLERANCES = {
    "roc_auc": 0.02,
    "sensitivity": 0.03,
    "specificity": 0.03,
    "ppv": 0.03,
    "npv": 0.03,
    "accuracy": 0.03,
    "prevalence": 0.015,
    "brier": 0.01,
    # AP is dominated by the highest-risk rows, whose probabilities rest on the fewest training rows, so a
    # slight miscalibration in that tail moves it most.
    "average_precision": 0.06,
}


def _inputs(frame, spec):
    columns = [*spec.features.numeric, *spec.features.categorical]
    inputs = frame[columns].copy()
    for column in spec.features.categorical:
        inputs[column] = inputs[column].astype("category")
    return inputs


def _fit_calibrated(spec, train):
    """The readmission spec's gradient-boosted model, calibrated by its log-loss objective."""
    settings = {**spec.estimator.params, "categorical_features": "from_dtype"}
    return HistGradientBoostingClassifier(**settings).fit(_inputs(train, spec), train[TARGET])


def _fit_class_weighted(spec, train):
    """A common mistake: logistic regression with balanced class weights, which inflates every probability."""
    numeric, categorical = list(spec.features.numeric), list(spec.features.categorical)
    preprocess = make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        (OneHotEncoder(handle_unknown="ignore"), categorical),
    )
    model = make_pipeline(preprocess, LogisticRegression(class_weight="balanced", max_iter=1000))
    return model.fit(_inputs(train, spec), train[TARGET])


@pytest.fixture(scope="module", autouse=True)
def one_openmp_thread():
    """Fit and score gradient boosting on one thread: the same model and probabilities, and on a busy machine
    several times faster than threads that wait on each other."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def spec():
    return get_spec("readmission_risk").model_copy(update={"threshold": THRESHOLD})


@pytest.fixture(scope="module")
def train():
    return generate_readmission(TRAIN_ROWS, seed=TRAIN_SEED)


@pytest.fixture(scope="module")
def calibrated(spec, train):
    return _fit_calibrated(spec, train)


@pytest.fixture(scope="module")
def populations():
    return {
        "fresh": generate_readmission(MONITOR_ROWS, seed=MONITOR_SEED),
        "covariate_shift": generate_readmission(MONITOR_ROWS, seed=MONITOR_SEED, covariate_shift=1.0),
        "concept_drift": generate_readmission(MONITOR_ROWS, seed=MONITOR_SEED, concept_drift=1.0),
    }


@pytest.fixture(scope="module")
def scores(spec, calibrated, populations):
    """The calibrated model's probabilities for each monitored population, scored once."""
    return {name: calibrated.predict_proba(_inputs(frame, spec))[:, 1] for name, frame in populations.items()}


def _estimated_and_measured(spec, probabilities, frame):
    return estimate_performance(probabilities, THRESHOLD), compute_metrics(spec, frame[TARGET], probabilities)


def _gaps(estimated, measured):
    return {name: estimated[name] - measured[name] for name in TOLERANCES}


def _outside_tolerance(gaps):
    return {name for name, gap in gaps.items() if abs(gap) > TOLERANCES[name]}


@pytest.mark.parametrize("population", ["fresh", "covariate_shift"])
def test_estimate_tracks_measured_performance_of_a_calibrated_model(spec, populations, scores, population):
    estimated, measured = _estimated_and_measured(spec, scores[population], populations[population])
    gaps = _gaps(estimated, measured)
    assert not _outside_tolerance(gaps), gaps
    assert estimated["positive_rate"] == measured["positive_rate"]  # flagging needs no outcome


def test_estimate_follows_a_covariate_shift(spec, populations, scores):
    """A sicker population raises the readmission rate and moves every threshold metric; the estimate follows."""
    fresh_estimate, fresh_measured = _estimated_and_measured(spec, scores["fresh"], populations["fresh"])
    shift_estimate, shift_measured = _estimated_and_measured(
        spec, scores["covariate_shift"], populations["covariate_shift"]
    )
    for metric in ("prevalence", "sensitivity", "specificity", "accuracy"):
        measured_change = shift_measured[metric] - fresh_measured[metric]
        estimated_change = shift_estimate[metric] - fresh_estimate[metric]
        assert abs(measured_change) > 2 * TOLERANCES[metric], (metric, measured_change)
        assert estimated_change == pytest.approx(measured_change, abs=TOLERANCES[metric]), metric


def test_concept_drift_is_invisible_to_the_estimate(spec, populations, scores):
    """The limitation: when P(y | x) changes, the probabilities (and so the estimate) do not.

    Concept drift at the same seed describes the same patients with different outcomes: the model's
    probabilities, and so the estimate, are identical to the fresh population's, while the measured AUC,
    sensitivity, ppv and AP fall well beyond the tolerances. The base rate does not move, so even prevalence
    agrees: nothing in the estimate hints at the drift.
    """
    assert np.array_equal(scores["concept_drift"], scores["fresh"])
    estimated, measured = _estimated_and_measured(spec, scores["concept_drift"], populations["concept_drift"])
    gaps = _gaps(estimated, measured)
    for metric in ("roc_auc", "sensitivity", "ppv", "average_precision"):
        assert gaps[metric] > 1.5 * TOLERANCES[metric], (metric, gaps[metric])  # the estimate is optimistic
    assert abs(gaps["prevalence"]) <= TOLERANCES["prevalence"]


def _squashed(p: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """The same ranking with the log-odds divided by `factor`: probabilities pulled toward 0.5."""
    return 1.0 / (1.0 + np.exp(-(np.log(p) - np.log1p(-p)) / factor))


def test_an_uncalibrated_model_fails_the_tolerances(spec, train, populations, scores):
    """Calibration is what the estimate rests on: without it the estimate is wrong even with no shift.

    Squashing keeps the ranking (the measured AUC is unchanged) but the estimate reads the flatter
    probabilities as a weaker model; balanced class weights inflate every probability, so the estimate
    expects far more readmissions than occur.
    """
    frame, calibrated_p = populations["fresh"], scores["fresh"]
    squashed_estimate, squashed_measured = _estimated_and_measured(spec, _squashed(calibrated_p), frame)
    assert squashed_measured["roc_auc"] == pytest.approx(compute_metrics(spec, frame[TARGET], calibrated_p)["roc_auc"])
    assert {"roc_auc", "sensitivity", "ppv", "npv", "prevalence"} <= _outside_tolerance(
        _gaps(squashed_estimate, squashed_measured)
    )

    weighted_p = _fit_class_weighted(spec, train).predict_proba(_inputs(frame, spec))[:, 1]
    assert {"ppv", "npv", "accuracy", "prevalence"} <= _outside_tolerance(
        _gaps(*_estimated_and_measured(spec, weighted_p, frame))
    )
