"""Tests of the model spec loader (`ml_platform/spec/`).

Every broken spec is built from the shipped readmission YAML with exactly one thing
changed, so each test exercises one error class. The error must name the file, the
key and say what is expected, because the reader is editing YAML, not Python.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from ml_platform.spec import (
    SHIPPED_SPECS_DIR,
    ModelSpec,
    SpecError,
    Task,
    get_spec,
    load_spec,
    load_specs,
)

READMISSION_YAML = SHIPPED_SPECS_DIR / "readmission_risk.yaml"
BREAST_CANCER_YAML = SHIPPED_SPECS_DIR / "breast_cancer_diagnosis.yaml"


@pytest.fixture(autouse=True)
def _no_specs_dir_override(monkeypatch) -> None:
    # get_spec/load_specs fall back to $ML_PLATFORM_SPECS; the tests are about the shipped folder.
    monkeypatch.delenv("ML_PLATFORM_SPECS", raising=False)


@pytest.fixture(scope="module")
def base() -> dict:
    """The shipped readmission spec as plain YAML data, to be mutated per test."""
    return yaml.safe_load(READMISSION_YAML.read_text(encoding="utf-8"))


def write_spec(directory: Path, raw: dict, file_name: str = "readmission_risk") -> Path:
    path = directory / f"{file_name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def load_modified(
    tmp_path: Path,
    base: dict,
    change: Callable[[dict], object],
    file_name: str = "readmission_risk",
) -> ModelSpec:
    raw = copy.deepcopy(base)
    change(raw)
    return load_spec(write_spec(tmp_path, raw, file_name))


def spec_error(
    tmp_path: Path,
    base: dict,
    change: Callable[[dict], object],
    file_name: str = "readmission_risk",
) -> str:
    with pytest.raises(SpecError) as info:
        load_modified(tmp_path, base, change, file_name)
    return str(info.value)


# --------------------------------------------------------------------------- #
# The shipped specs
# --------------------------------------------------------------------------- #
def test_shipped_specs_load_with_their_names_tasks_and_targets() -> None:
    specs = load_specs(SHIPPED_SPECS_DIR)
    assert [s.name for s in specs] == ["breast_cancer_diagnosis", "readmission_risk"]
    by_name = {s.name: s for s in specs}

    readmission = by_name["readmission_risk"]
    assert readmission.task is Task.binary_classification
    assert readmission.target == "readmitted_30d"
    assert readmission.id_column == "encounter_id"
    assert readmission.contract.event_time_column == "admit_date"
    assert readmission.threshold == pytest.approx(0.25)
    assert readmission.estimator.class_path == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert readmission.features.model_inputs[:2] == ["age", "length_of_stay"]
    assert list(readmission.features.derived) == [
        "log_length_of_stay",
        "poor_glycaemic_control",
    ]
    assert readmission.sensitive_attributes == ["sex", "race_ethnicity"]
    assert readmission.contract.columns["readmitted_30d"].allowed == [0, 1]

    cancer = by_name["breast_cancer_diagnosis"]
    assert cancer.task is Task.binary_classification
    assert cancer.target == "malignant"
    assert cancer.id_column == "sample_id"
    assert len(cancer.features.numeric) == 30
    assert cancer.estimator.class_path == "sklearn.linear_model.LogisticRegression"


def test_get_spec_returns_the_named_shipped_spec() -> None:
    spec = get_spec("breast_cancer_diagnosis", SHIPPED_SPECS_DIR)
    assert spec == load_spec(BREAST_CANCER_YAML)


def test_pipeline_inputs_are_the_contract_columns_the_model_reads() -> None:
    spec = load_spec(READMISSION_YAML)
    assert "hba1c" in spec.pipeline_inputs and "length_of_stay" in spec.pipeline_inputs
    assert "readmitted_30d" not in spec.pipeline_inputs and "log1p" not in spec.pipeline_inputs


def test_shipped_estimators_build() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    estimator = load_spec(READMISSION_YAML).estimator.build()
    assert isinstance(estimator, HistGradientBoostingClassifier)
    assert estimator.get_params()["learning_rate"] == pytest.approx(0.06)


def test_spec_hash_is_stable_across_loads(tmp_path: Path, base: dict) -> None:
    first, second = load_spec(READMISSION_YAML), load_spec(READMISSION_YAML)
    assert first.spec_hash == second.spec_hash
    assert len(first.spec_hash) == 16
    # Same meaning, different formatting: the hash must not move.
    reformatted = load_spec(write_spec(tmp_path, copy.deepcopy(base)))
    assert reformatted.spec_hash == first.spec_hash
    assert load_spec(BREAST_CANCER_YAML).spec_hash != first.spec_hash


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda r: r["estimator"]["params"].update(learning_rate=0.1),
            id="estimator-param",
        ),
        pytest.param(lambda r: r.update(threshold=0.3), id="threshold"),
        pytest.param(lambda r: r["split"].update(seed=8), id="split-seed"),
        pytest.param(
            lambda r: r["contract"]["columns"]["age"].update(max=110),
            id="contract-bound",
        ),
        pytest.param(lambda r: r["gates"]["min"].update(roc_auc=0.7), id="gate"),
    ],
)
def test_spec_hash_changes_when_a_parameter_changes(tmp_path: Path, base: dict, change) -> None:
    original = load_spec(READMISSION_YAML).spec_hash
    assert load_modified(tmp_path, base, change).spec_hash != original


def test_spec_hash_ignores_the_description(tmp_path: Path, base: dict) -> None:
    changed = load_modified(tmp_path, base, lambda r: r.update(description="Reworded."))
    assert changed.spec_hash == load_spec(READMISSION_YAML).spec_hash


# --------------------------------------------------------------------------- #
# One test per error class
# --------------------------------------------------------------------------- #
def test_invalid_yaml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "readmission_risk.yaml"
    path.write_text("name: readmission_risk\ntask: [binary_classification\ntarget: readmitted_30d\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid YAML" in message
    assert "line 2" in message  # where the unclosed flow sequence starts


@pytest.mark.parametrize("text", ["- name\n- task\n", "just a string\n", ""], ids=["list", "scalar", "empty"])
def test_top_level_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "readmission_risk.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message
    assert "YAML mapping" in message
    assert "name, task, contract" in message  # what keys a spec holds


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "readmission_risk.yaml"
    path.write_bytes(b"name: \xff\xfe readmission\n")
    with pytest.raises(SpecError, match="cannot be read") as info:
        load_spec(path)
    assert str(path) in str(info.value)


# (change to the readmission spec, file name, fragments the message must contain:
#  the key and a hint of what is expected / how to fix it)
ERROR_CASES = [
    pytest.param(
        lambda r: r.pop("target"),
        "readmission_risk",
        ["target", "required key is missing"],
        id="missing-required-key",
    ),
    pytest.param(
        lambda r: r.__setitem__("featuers", r["features"]),
        "readmission_risk",
        ["featuers", "unknown key", "check its spelling"],
        id="misspelt-key",
    ),
    pytest.param(
        lambda r: r["contract"]["columns"]["age"].__setitem__("minimum", 18),
        "readmission_risk",
        ["contract.columns.age.minimum", "unknown key"],
        id="misspelt-nested-key",
    ),
    pytest.param(
        lambda r: r.update(threshold="high"),
        "readmission_risk",
        ["threshold", "valid number"],
        id="wrong-type",
    ),
    pytest.param(
        lambda r: r.update(threshold=1.5),
        "readmission_risk",
        ["threshold", "less than 1"],
        id="threshold-out-of-range",
    ),
    pytest.param(
        lambda r: r["contract"]["columns"]["age"].update(min="old"),
        "readmission_risk",
        ["contract.columns.age.min", "valid number"],
        id="wrong-type-nested",
    ),
    pytest.param(
        lambda r: r["contract"]["columns"]["age"].update(min=200),
        "readmission_risk",
        ["contract.columns.age", "min (200.0) is greater than max (100.0)"],
        id="min-greater-than-max",
    ),
    pytest.param(
        lambda r: r["contract"]["columns"]["sex"].update(min=0),
        "readmission_risk",
        ["contract.columns.sex", "min/max only apply to integer or float columns"],
        id="bounds-on-category",
    ),
    pytest.param(
        lambda r: r["contract"]["columns"]["age"].update(type="int"),
        "readmission_risk",
        ["contract.columns.age.type", "'integer'"],
        id="unknown-column-type",
    ),
    pytest.param(
        lambda r: r["features"]["numeric"].append("bmi"),
        "readmission_risk",
        ["features.numeric", "'bmi'", "not a column of contract.columns"],
        id="feature-not-in-contract",
    ),
    pytest.param(
        lambda r: r["features"]["categorical"].append("religion"),
        "readmission_risk",
        ["features.categorical", "'religion'", "not a column of contract.columns"],
        id="categorical-not-in-contract",
    ),
    pytest.param(
        lambda r: r["features"]["numeric"].append("sex"),
        "readmission_risk",
        ["features.numeric", "'sex'", "contract type is category"],
        id="numeric-feature-not-numeric",
    ),
    pytest.param(
        lambda r: r.update(target="readmitted_90d"),
        "readmission_risk",
        ["target", "'readmitted_90d'", "not a column of contract.columns"],
        id="target-not-in-contract",
    ),
    pytest.param(
        lambda r: r["contract"].update(id_column="visit_id"),
        "readmission_risk",
        ["contract.id_column", "'visit_id'", "not a column of contract.columns"],
        id="id-not-in-contract",
    ),
    pytest.param(
        lambda r: r["sensitive_attributes"].append("religion"),
        "readmission_risk",
        ["sensitive_attributes", "'religion'", "not a column of contract.columns"],
        id="sensitive-attribute-not-in-contract",
    ),
    pytest.param(
        lambda r: r["features"]["numeric"].append("readmitted_30d"),
        "readmission_risk",
        ["target 'readmitted_30d'", "listed as a feature", "leaks the label"],
        id="target-as-feature",
    ),
    pytest.param(
        lambda r: r.update(features={}),
        "readmission_risk",
        ["features", "no model inputs", "add numeric, categorical or derived"],
        id="no-features",
    ),
    pytest.param(
        lambda r: r["contract"]["columns"]["readmitted_30d"].pop("allowed"),
        "readmission_risk",
        ["binary_classification", "allowed: [0, 1]", "contract.columns.readmitted_30d"],
        id="binary-target-without-allowed",
    ),
    pytest.param(
        lambda r: r["contract"]["columns"]["readmitted_30d"].update(allowed=[0, 1, 2]),
        "readmission_risk",
        ["binary_classification", "allowed: [0, 1]", "contract.columns.readmitted_30d"],
        id="binary-target-three-classes",
    ),
    pytest.param(
        lambda r: r["estimator"].update({"class": "sklearn.ensemble.NoSuchClassifier"}),
        "readmission_risk",
        [
            "estimator.class",
            "sklearn.ensemble.NoSuchClassifier",
            "cannot be imported",
            "full class path such as sklearn.linear_model.LogisticRegression",
        ],
        id="estimator-class-missing",
    ),
    pytest.param(
        lambda r: r["estimator"].update({"class": "sklearnx.ensemble.Forest"}),
        "readmission_risk",
        [
            "estimator.class 'sklearnx.ensemble.Forest' is not allowed",
            "estimators come from the modules sklearn",
            "ML_PLATFORM_ESTIMATOR_MODULES",
        ],
        id="estimator-module-not-allowed",
    ),
    pytest.param(
        lambda r: r["estimator"].update({"class": "sklearn.no_such_module.Forest"}),
        "readmission_risk",
        [
            "estimator.class",
            "cannot be imported",
            "No module named 'sklearn.no_such_module'",
            "full class path",
        ],
        id="estimator-module-missing",
    ),
    pytest.param(
        lambda r: r["estimator"].update({"class": "LogisticRegression"}),
        "readmission_risk",
        [
            "estimator.class",
            "'LogisticRegression'",
            "cannot be imported",
            "full class path",
        ],
        id="estimator-class-not-dotted",
    ),
    pytest.param(
        lambda r: r["estimator"]["params"].update(n_trees=500),
        "readmission_risk",
        ["estimator.params", "HistGradientBoostingClassifier", "n_trees"],
        id="estimator-params-rejected",
    ),
    pytest.param(
        lambda r: r["estimator"].update({"class": "sklearn.linear_model.LinearRegression", "params": {}}),
        "readmission_risk",
        [
            "task binary_classification needs a classifier",
            "sklearn.linear_model.LinearRegression",
        ],
        id="regressor-for-binary-classification",
    ),
    pytest.param(
        lambda r: r["features"]["derived"].update(bmi_squared="bmi ** 2"),
        "readmission_risk",
        ["features.derived.bmi_squared", "bmi ** 2", "'bmi' is not defined", "a column of contract.columns"],
        id="derived-unknown-column",
    ),
    pytest.param(
        lambda r: r["features"]["derived"].update(admit_month="admit_date.dt.month"),
        "readmission_risk",
        ["features.derived.admit_month", "attribute access at character 11", "is not allowed"],
        id="derived-attribute-access",
    ),
    pytest.param(
        lambda r: r["features"]["derived"].update(sodium="clip(age, 0)"),
        "readmission_risk",
        ["features.derived.sodium", "clip() with 2 argument(s)", "it takes 3"],
        id="derived-function-arity",
    ),
    pytest.param(
        lambda r: r["estimator"]["params"].update(learning_rate={"from": [1, {"x": {1, 2}}]}),
        "readmission_risk",
        ["estimator.params.learning_rate", "plain data"],
        id="estimator-params-not-plain",
    ),
    pytest.param(
        lambda r: r["gates"]["min"].update(auc=0.7),
        "readmission_risk",
        ["gates.min", "unknown metric 'auc'", "use one of roc_auc"],
        id="gate-unknown-metric",
    ),
    pytest.param(
        lambda r: r["gates"]["max"].update(rmse=3.0),
        "readmission_risk",
        ["gates.max", "unknown metric 'rmse'", "for binary_classification use one of"],
        id="gate-metric-of-other-task",
    ),
    pytest.param(
        lambda r: (
            r["contract"].pop("event_time_column"),
            r["split"].update(method="time"),
        ),
        "readmission_risk",
        ["split.method 'time'", "needs contract.event_time_column"],
        id="time-split-without-event-time",
    ),
    pytest.param(
        lambda r: r["split"].update(method="random"),
        "readmission_risk",
        ["split.method", "'hash' or 'time'"],
        id="unknown-split-method",
    ),
    pytest.param(
        lambda r: r["split"].update(validation=0.5, test=0.5),
        "readmission_risk",
        ["split", "validation (0.5) + test (0.5) must be below 1"],
        id="validation-plus-test-is-1",
    ),
    pytest.param(
        lambda r: r["split"].update(validation=0.6, test=0.45),
        "readmission_risk",
        ["split", "must be below 1"],
        id="validation-plus-test-above-1",
    ),
    pytest.param(
        lambda r: r["contract"].update(unknown_columns="keep"),
        "readmission_risk",
        ["contract.unknown_columns", "'reject' or 'ignore'"],
        id="unknown-columns-policy",
    ),
    pytest.param(
        lambda r: r.update(name="readmission"),
        "readmission_risk",
        [
            "name 'readmission' differs from the file name",
            "name the file readmission.yaml",
        ],
        id="name-differs-from-file",
    ),
    pytest.param(
        lambda r: r.update(name="Readmission-Risk"),
        "Readmission-Risk",
        [
            "name",
            "'Readmission-Risk' is not a valid model name",
            "lower-case letters, digits and underscores",
        ],
        id="name-not-identifier",
    ),
    pytest.param(
        lambda r: r.__setitem__("monitoring", {"window": "every hour"}),
        "readmission_risk",
        ["monitoring.window 'every hour' is not a cron expression", "'0 * * * *' is hourly"],
        id="monitoring-window-not-cron",
    ),
    pytest.param(
        lambda r: r.__setitem__("monitoring", {"performance": {"metric": "brier"}}),
        "readmission_risk",
        ["monitoring.performance.metric 'brier' cannot be monitored against a floor", "roc_auc"],
        id="monitoring-metric-lower-is-better",
    ),
    pytest.param(
        lambda r: r.__setitem__("monitoring", {"start": "22/11/2026"}),
        "readmission_risk",
        ["monitoring.start '22/11/2026' is not an ISO date"],
        id="monitoring-start-not-iso",
    ),
    pytest.param(
        lambda r: r.__setitem__("monitoring", {"drift": {"consecutive": 0}}),
        "readmission_risk",
        ["monitoring.drift.consecutive", "greater than or equal to 1"],
        id="monitoring-consecutive-zero",
    ),
    pytest.param(
        lambda r: r["deployment"].__setitem__("route_by", "patient"),
        "readmission_risk",
        ["deployment.route_by names 'patient', which is not a column of contract.columns"],
        id="route-by-unknown-column",
    ),
]


@pytest.mark.parametrize(("change", "file_name", "expected"), ERROR_CASES)
def test_error_names_file_key_and_fix(tmp_path: Path, base: dict, change, file_name: str, expected: list[str]) -> None:
    message = spec_error(tmp_path, base, change, file_name)
    assert str(tmp_path / f"{file_name}.yaml") in message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_every_problem_of_a_spec_is_listed_on_its_own_line(tmp_path: Path, base: dict) -> None:
    def change(raw: dict) -> None:
        raw.pop("target")
        raw["featuers"] = raw["features"]
        raw["threshold"] = "high"

    lines = spec_error(tmp_path, base, change).splitlines()
    assert lines[0] == f"{tmp_path / 'readmission_risk.yaml'}: invalid model spec"
    keys = sorted(line.strip().split(":")[0] for line in lines[1:])
    assert keys == ["featuers", "target", "threshold"]


def test_name_defaults_to_the_file_name(tmp_path: Path, base: dict) -> None:
    spec = load_modified(tmp_path, base, lambda r: r.pop("name"))
    assert spec.name == "readmission_risk"


def test_a_valid_derived_feature_loads(tmp_path: Path, base: dict) -> None:
    spec = load_modified(
        tmp_path,
        base,
        lambda r: r["features"]["derived"].update(stay_per_condition="length_of_stay / (n_chronic_conditions + 1)"),
    )
    assert "stay_per_condition" in spec.features.model_inputs


def test_derived_feature_on_a_categorical_column_loads(tmp_path: Path, base: dict) -> None:
    spec = load_modified(
        tmp_path,
        base,
        lambda r: r["features"]["derived"].update(emergency="(admission_type == 'Emergency') * 1.0"),
    )
    assert "emergency" in spec.features.model_inputs
    assert "admission_type" in spec.pipeline_inputs


def test_derived_feature_using_the_target_is_rejected(tmp_path: Path, base: dict) -> None:
    message = spec_error(
        tmp_path,
        base,
        lambda r: r["features"]["derived"].update(readmitted_copy="readmitted_30d * 1.0"),
    )
    assert "readmitted_30d" in message
    assert "leaks the label" in message


def test_estimator_class_that_is_a_module_is_reported_as_a_class_error(tmp_path: Path, base: dict) -> None:
    message = spec_error(
        tmp_path,
        base,
        lambda r: r["estimator"].update({"class": "sklearn.linear_model", "params": {}}),
    )
    assert "estimator.class 'sklearn.linear_model'" in message
    assert "estimator.params" not in message


# --------------------------------------------------------------------------- #
# Finding specs
# --------------------------------------------------------------------------- #
def test_get_spec_unknown_name_lists_known_models() -> None:
    with pytest.raises(SpecError) as info:
        get_spec("nope", SHIPPED_SPECS_DIR)
    message = str(info.value)
    assert "unknown model 'nope'" in message
    assert "known models: breast_cancer_diagnosis, readmission_risk" in message


def test_get_spec_uses_the_specs_dir_variable(tmp_path: Path, base: dict, monkeypatch) -> None:
    write_spec(tmp_path, copy.deepcopy(base))
    monkeypatch.setenv("ML_PLATFORM_SPECS", str(tmp_path))
    assert get_spec("readmission_risk").name == "readmission_risk"
    with pytest.raises(SpecError, match="known models: readmission_risk$"):
        get_spec("breast_cancer_diagnosis")


def test_load_specs_on_an_empty_folder_says_none_found(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a spec")
    with pytest.raises(SpecError) as info:
        load_specs(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "no model specs (*.yaml) found" in message
    assert "ML_PLATFORM_SPECS" in message


def test_load_specs_reads_yml_and_yaml_and_reports_the_bad_file(tmp_path: Path, base: dict) -> None:
    write_spec(tmp_path, copy.deepcopy(base))
    cancer = yaml.safe_load(BREAST_CANCER_YAML.read_text(encoding="utf-8"))
    (tmp_path / "breast_cancer_diagnosis.yml").write_text(yaml.safe_dump(cancer))
    assert [s.name for s in load_specs(tmp_path)] == [
        "breast_cancer_diagnosis",
        "readmission_risk",
    ]

    broken = copy.deepcopy(base)
    broken["name"] = "sepsis"
    broken["threshold"] = "high"
    write_spec(tmp_path, broken, "sepsis")
    with pytest.raises(SpecError) as info:
        load_specs(tmp_path)
    assert "sepsis.yaml" in str(info.value)
    assert "threshold" in str(info.value)
