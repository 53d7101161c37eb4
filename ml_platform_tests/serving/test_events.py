"""The endpoint's log lines as a log shipper reads them: a real `ml-platform serve`, its whole output parsed."""

from __future__ import annotations

import hashlib
import json

import pytest

from ml_platform.serving.events import PREDICTIONS_LOGGER
from ml_platform.store.predictions import IdHasher, id_hash_key
from ml_platform_tests.serving.conftest import MODEL, TOKEN, Endpoint, patient, set_alias

pytestmark = pytest.mark.e2e

ECS_BASE = ("@timestamp", "log.level", "message", "ecs.version", "service", "log")


def served_output(home, records: list[dict], tokens: str, **env) -> tuple[str, list[dict], list[dict]]:
    """Run the endpoint, predict ``records`` and report the outcome of the first; (output, answers, outcome body)."""
    endpoint = Endpoint(home, tokens=tokens, **env).start()
    try:
        response = endpoint.predict(records)
        assert response.status_code == 200, response.text
        answers = response.json()["predictions"]
        outcome = endpoint.client.post(
            f"/v1/models/{MODEL}/outcomes", json=[{"prediction_id": answers[0]["prediction_id"], "outcome": 1}]
        )
        assert outcome.status_code == 200, outcome.text
    finally:
        endpoint.stop()
    return endpoint.process.stdout.read(), answers, outcome.json()


def json_lines(output: str) -> list[dict]:
    """Every line of the output as JSON: a line that does not parse fails the test (a shipper would drop it)."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "the endpoint wrote nothing"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line[:300]!r}") from None
    return parsed


def events(lines: list[dict], action: str) -> list[dict]:
    return [e for e in lines if e["log"].get("logger") == PREDICTIONS_LOGGER and e["event"]["action"] == action]


@pytest.fixture(scope="module")
def json_run(registry):
    set_alias(registry, "champion", "1")
    records = [patient(i, seed=8) for i in range(3)]
    output, answers, _ = served_output(
        registry,
        records,
        tokens=f"ward-7:predict+outcomes:{TOKEN}",
        ML_PLATFORM_LOG_FORMAT="json",
        ML_PLATFORM_SITE="eu-north-1",
    )
    return output, records, answers


def test_every_line_is_ecs_json(json_run):
    output, _, _ = json_run
    for line in json_lines(output):
        assert all(field in line for field in ECS_BASE), line
        assert line["service"]["name"] == "ml_platform"
        assert line["labels"]["site"] == "eu-north-1"


def test_one_prediction_event_per_answered_record_with_its_fields(json_run, registry):
    output, records, answers = json_run
    predictions = events(json_lines(output), "prediction")
    assert [e["ml_platform"]["prediction_id"] for e in predictions] == [a["prediction_id"] for a in answers]
    hasher = IdHasher(id_hash_key(registry))
    for event, record, answer in zip(predictions, records, answers):
        assert event["log.level"] == "info"
        assert event["user"]["name"] == "ward-7" and event["client"]["address"] == "127.0.0.1"
        fields = event["ml_platform"]
        assert (fields["model"], fields["version"], fields["route"]) == (MODEL, "1", "champion")
        assert fields["record_hash"] == hasher(MODEL, record["encounter_id"])
        assert fields["prediction"] == {"probability": answer["probability"], "label": answer["label"]}
        assert "inputs" not in fields  # record values stay in the prediction log, out of the logs
        assert 0 < fields["transformation_ms"] < event["event"]["duration"] / 1e6  # duration in nanoseconds
        assert event["@timestamp"].endswith("Z")


def test_the_outcome_event_names_the_prediction(json_run):
    output, _, answers = json_run
    [outcome] = events(json_lines(output), "outcome")
    assert outcome["ml_platform"]["prediction_id"] == answers[0]["prediction_id"]
    assert "outcome" not in outcome["ml_platform"] and outcome["user"]["name"] == "ward-7"
    assert outcome["event"]["duration"] > 0


def test_no_token_and_no_raw_identifier_is_ever_logged(json_run):
    output, records, _ = json_run
    assert TOKEN not in output
    for record in records:
        assert record["encounter_id"] not in output and record["patient_id"] not in output


def test_a_nameless_token_is_logged_as_a_short_hash(registry):
    set_alias(registry, "champion", "1")
    output, _, _ = served_output(
        registry, [patient(5, seed=9)], tokens=f":predict+outcomes:{TOKEN}", ML_PLATFORM_LOG_FORMAT="json"
    )
    [event] = events(json_lines(output), "prediction")
    assert event["user"]["name"] == "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:8]
    assert TOKEN not in output


def test_text_logs_are_plain_lines(registry):
    set_alias(registry, "champion", "1")
    output, answers, _ = served_output(
        registry,
        [patient(6, seed=9)],
        tokens=f":predict+outcomes:{TOKEN}",
        ML_PLATFORM_LOG_FORMAT="text",
        ML_PLATFORM_LOG_LEVEL="INFO",
    )
    lines = [line for line in output.splitlines() if line.strip()]
    assert any(answers[0]["prediction_id"] in line for line in lines)  # the event, as text
    for line in lines:
        with pytest.raises(ValueError):
            json.loads(line)
