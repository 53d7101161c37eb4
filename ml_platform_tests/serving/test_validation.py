"""Request records against the data contract: each broken rule named with its field and value."""

import pytest

from ml_platform.serving.validation import RecordValidator, example_record
from ml_platform.spec import get_spec
from ml_platform_tests.serving.conftest import patient


@pytest.fixture(scope="module")
def validator():
    return RecordValidator(get_spec("readmission_risk"))


def only_error(validator, record):
    typed, errors = validator.validate([record])
    assert typed == [None], "an invalid record must not be handed on for scoring"
    assert len(errors) == 1, errors
    return errors[0]


def test_a_valid_record_comes_back_typed(validator):
    typed, errors = validator.validate([patient(1)])
    assert errors == []
    assert typed[0]["age"] == float(patient(1)["age"])
    assert typed[0]["sex"] == patient(1)["sex"]


@pytest.mark.parametrize(
    "field, value, rule",
    [
        ("age", 150, "max"),
        ("age", 17, "min"),
        ("age", 40.5, "type"),
        ("age", "forty", "type"),
        ("age", True, "type"),
        ("sex", "X", "allowed"),
        ("sex", 1, "type"),
        ("admit_date", "22/11/2026", "type"),
        ("hba1c", float("nan"), "type"),
        ("length_of_stay", None, "not_null"),
    ],
)
def test_each_broken_rule_names_field_value_and_rule(validator, field, value, rule):
    error = only_error(validator, {**patient(1), field: value})
    assert (error.field, error.rule, error.record) == (field, rule, 0)
    assert field in error.message


def test_a_nullable_lab_may_be_missing_or_null(validator):
    record = patient(1)
    del record["hba1c"]
    typed, errors = validator.validate([record, {**patient(2), "creatinine": None}])
    assert errors == []
    assert typed[0]["hba1c"] is None and typed[1]["creatinine"] is None


def test_a_required_field_that_is_absent(validator):
    record = patient(1)
    del record["payer"]
    error = only_error(validator, record)
    assert (error.field, error.rule) == ("payer", "required")


def test_unknown_fields_and_the_outcome_are_refused_with_the_fix(validator):
    error = only_error(validator, {**patient(1), "favourite_colour": "blue"})
    assert (error.field, error.rule) == ("favourite_colour", "unknown_column")
    assert "GET /v1/models/readmission_risk" in error.message
    error = only_error(validator, {**patient(1), "readmitted_30d": 1})
    assert error.rule == "outcome_in_request" and "/outcomes" in error.message


def test_unknown_fields_are_dropped_when_the_contract_ignores_them():
    spec = get_spec("readmission_risk")
    contract = spec.contract.model_copy(update={"unknown_columns": "ignore"})
    lenient = RecordValidator(spec.model_copy(update={"contract": contract}))
    typed, errors = lenient.validate([{**patient(1), "favourite_colour": "blue"}])
    assert errors == [] and "favourite_colour" not in typed[0]


def test_a_repeated_id_in_one_request_is_an_error_on_the_repeat(validator):
    typed, errors = validator.validate([patient(1), patient(2), patient(1)])
    assert [e.record for e in errors] == [2] and errors[0].rule == "unique"
    assert typed[0] is not None and typed[2] is None


def test_errors_of_every_record_are_reported_at_once(validator):
    records = [{**patient(0), "age": 999}, patient(1), "not a record", {**patient(3), "sex": "?"}]
    typed, errors = validator.validate(records)
    assert [(e.record, e.rule) for e in errors] == [(0, "max"), (2, "not_an_object"), (3, "allowed")]
    assert typed[1] is not None


@pytest.mark.parametrize("model", ["readmission_risk", "breast_cancer_diagnosis"])
def test_the_documented_example_meets_the_contract(model):
    spec = get_spec(model)
    typed, errors = RecordValidator(spec).validate([example_record(spec)])
    assert errors == []


def test_the_json_schema_states_the_rules(validator):
    schema = validator.json_schema()
    assert schema["properties"]["age"] == {"type": "integer", "minimum": 18, "maximum": 100}
    assert schema["properties"]["sex"]["enum"] == ["F", "M"]
    assert "readmitted_30d" not in schema["properties"]
    assert "hba1c" not in schema["required"] and "age" in schema["required"]
    assert schema["additionalProperties"] is False
