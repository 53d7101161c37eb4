"""The endpoint as a client sees it: a real `ml-platform serve` process on loopback, a real registry."""

import json
import re

import httpx
import pytest

from ml_platform.cli import main
from ml_platform.settings import database_url
from ml_platform.store import predictions as prediction_log
from ml_platform.store.database import engine_for
from ml_platform.store.predictions import IdHasher, id_hash_key
from ml_platform.store.tables import predictions
from ml_platform_tests.serving.conftest import (
    MODEL,
    TOKEN,
    Endpoint,
    database_dump,
    patient,
    platform_rows,
    set_alias,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def endpoint(registry):
    set_alias(registry, "champion", "1")
    server = Endpoint(registry, ML_PLATFORM_SERVE_MAX_RECORDS="600").start()
    yield server
    server.stop()


def logged(home, prediction_id) -> dict:
    """The prediction log's row, its JSON columns decoded (on SQLite and PostgreSQL alike)."""
    with _engine(home).connect() as conn:
        [row] = conn.execute(predictions.select().where(predictions.c.id == prediction_id)).mappings()
    return dict(row)


def test_one_record_gets_probability_label_version_and_a_logged_id(endpoint, registry):
    response = endpoint.predict(patient(1))
    assert response.status_code == 200, response.text
    [answer] = response.json()["predictions"]
    assert answer["version"] == "1" and answer["route"] == "champion"
    assert 0 <= answer["probability"] <= 1
    assert answer["label"] == int(answer["probability"] >= 0.25)  # the spec's threshold
    row = logged(registry, answer["prediction_id"])
    assert row["model"] == MODEL and row["version"] == "1"
    assert row["outputs"]["probability"] == answer["probability"]
    assert row["inputs"]["age"] == patient(1)["age"]


def test_a_batch_answers_every_record_in_order_like_single_requests(endpoint):
    records = [patient(i) for i in range(40)]
    batch = endpoint.predict(records).json()["predictions"]
    assert [a["record"] for a in batch] == list(range(40))
    assert len({a["prediction_id"] for a in batch}) == 40
    singles = [
        endpoint.predict({**r, "encounter_id": r["encounter_id"] + "s"}).json()["predictions"][0] for r in records[:5]
    ]
    assert [a["probability"] for a in batch[:5]] == pytest.approx([a["probability"] for a in singles])


def test_raw_identifiers_are_never_stored_but_their_keyed_hash_is(endpoint, registry):
    record = patient(77)
    [answer] = endpoint.predict(record).json()["predictions"]
    row = logged(registry, answer["prediction_id"])
    hasher = IdHasher(id_hash_key(registry))
    assert row["subject_hash"] == hasher(MODEL, record["patient_id"])  # route_by: patient_id
    assert row["record_hash"] == hasher(MODEL, record["encounter_id"])
    dump = database_dump(registry)
    assert record["patient_id"] not in dump and record["encounter_id"] not in dump


def test_a_bad_record_gets_422_naming_field_value_and_rule_and_nothing_is_scored(endpoint, registry):
    before = len(prediction_log.prediction_ids(_engine(registry), MODEL))
    response = endpoint.predict([patient(1), {**patient(2), "age": 150}])
    assert response.status_code == 422
    body = response.json()
    assert body["errors"] == [
        {
            "record": 1,
            "field": "age",
            "value": 150,
            "rule": "max",
            "message": "column 'age' breaks rule 'max': must be <= 100",
        }
    ]
    assert "nothing was scored" in body["detail"]
    assert len(prediction_log.prediction_ids(_engine(registry), MODEL)) == before


def test_partial_scores_the_valid_records_and_reports_the_others(endpoint):
    response = endpoint.predict([{**patient(3), "sex": "X"}, patient(4)], partial="true")
    assert response.status_code == 200
    body = response.json()
    assert [a["record"] for a in body["predictions"]] == [1]
    assert [(e["record"], e["field"], e["rule"]) for e in body["errors"]] == [(0, "sex", "allowed")]


@pytest.mark.parametrize(
    "content, status, words",
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 422, "holds no records"),
        (json.dumps([patient(i) for i in range(601)]).encode(), 413, "the limit is 600"),
        (b"[" + b" " * 1_100_000 + b"]", 413, "over the limit of 1048576 bytes"),
    ],
)
def test_malformed_empty_and_oversized_bodies(endpoint, content, status, words):
    response = endpoint.client.post(f"/v1/models/{MODEL}/predict", content=content)
    assert response.status_code == status
    assert words in response.json()["detail"]


def test_unknown_model_is_404_naming_the_served_ones(endpoint):
    response = endpoint.client.post("/v1/models/sepsis/predict", json=patient(1))
    assert response.status_code == 404
    assert "unknown model 'sepsis'" in response.json()["detail"] and MODEL in response.json()["detail"]


def test_a_model_without_champion_is_503_saying_why(endpoint):
    response = endpoint.client.post("/v1/models/breast_cancer_diagnosis/predict", json={})
    assert response.status_code in (422, 503)
    response = endpoint.client.post(
        "/v1/models/breast_cancer_diagnosis/predict",
        json=endpoint.client.get("/v1/models/breast_cancer_diagnosis").json()["example"],
    )
    assert response.status_code == 503 and "no champion yet" in response.json()["detail"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
def test_requests_without_a_valid_token_are_refused(endpoint, headers):
    with httpx.Client(base_url=endpoint.url, headers=headers) as client:
        for method, path in [("POST", f"/v1/models/{MODEL}/predict"), ("GET", "/v1/models"), ("GET", "/metrics")]:
            response = client.request(method, path, json=patient(1))
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/healthz").status_code == 200  # probes stay open for load balancers


def test_models_route_says_what_is_served_and_how(endpoint):
    models = {m["model"]: m for m in endpoint.client.get("/v1/models").json()["models"]}
    assert models[MODEL]["champion"]["version"] == "1" and models[MODEL]["policy"] == "direct"
    assert models["breast_cancer_diagnosis"]["champion"] is None
    one = endpoint.client.get(f"/v1/models/{MODEL}").json()
    assert one["inputs"]["properties"]["age"]["maximum"] == 100
    assert endpoint.predict(one["example"]).status_code == 200  # the documented example works as is


def test_readiness_metrics_and_docs(endpoint):
    assert endpoint.client.get("/readyz").json() == {
        "ready": True,
        "models": {"breast_cancer_diagnosis": None, MODEL: "1"},
    }
    endpoint.predict({**patient(1), "age": 999})
    text = endpoint.client.get("/metrics").text
    assert f'ml_platform_requests_total{{model="{MODEL}",route="predict",status="200",version="1"}}' in text
    assert f'ml_platform_request_errors_total{{model="{MODEL}",route="predict",status="422",version="1"}}' in text
    assert f'ml_platform_served_version{{alias="champion",model="{MODEL}",version="1"}} 1.0' in text
    assert "ml_platform_request_latency_seconds_bucket" in text
    openapi = endpoint.client.get("/openapi.json").json()
    assert "/v1/models/{model}/predict" in openapi["paths"]
    docs = endpoint.client.get("/docs")
    assert docs.status_code == 200
    # Swagger UI comes from the endpoint itself: no CDN, so the page renders without internet.
    assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css))["']""", docs.text)
    assert assets and all(a.startswith("/") for a in assets), assets
    assert all(endpoint.client.get(a).status_code == 200 for a in assets)


def test_outcomes_by_prediction_id_and_by_record_id(endpoint, registry):
    first, second = endpoint.predict([patient(201), patient(202)]).json()["predictions"]
    response = endpoint.client.post(
        f"/v1/models/{MODEL}/outcomes",
        json=[
            {"prediction_id": first["prediction_id"], "outcome": 1, "observed_at": "2026-12-20T10:00:00"},
            {"encounter_id": patient(202)["encounter_id"], "outcome": 0},
        ],
    )
    assert response.status_code == 200 and response.json()["accepted"] == 2
    rows = [
        tuple(r.values())
        for r in platform_rows(registry, "SELECT prediction_id, record_hash, outcome, source FROM outcomes ORDER BY id")
    ]
    assert rows[-2][0] == first["prediction_id"] and rows[-2][2] == 1.0
    # the outcome by record id joins the prediction through the same keyed hash
    assert rows[-1][1] == logged(registry, second["prediction_id"])["record_hash"] and rows[-1][3] == "api"


def test_bad_outcomes_are_refused_whole(endpoint, registry):
    [answer] = endpoint.predict(patient(301)).json()["predictions"]
    response = endpoint.client.post(
        f"/v1/models/{MODEL}/outcomes",
        json=[
            {"prediction_id": answer["prediction_id"], "outcome": 2},
            {"prediction_id": "f" * 32, "outcome": 1},
            {"outcome": 1},
        ],
    )
    assert response.status_code == 422
    rules = {(e["record"], e["rule"]) for e in response.json()["errors"]}
    assert rules == {(0, "allowed"), (1, "unknown_prediction"), (2, "one_reference")}
    stored = platform_rows(
        registry, "SELECT count(*) AS n FROM outcomes WHERE prediction_id = :id", id=answer["prediction_id"]
    )
    assert stored[0]["n"] == 0


def test_outcome_files_are_loaded_once_and_bad_files_set_aside(endpoint, registry):
    answers = endpoint.predict([patient(401), patient(402)]).json()["predictions"]
    folder = registry / "outcomes" / MODEL
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "week47.csv").write_text(
        "prediction_id,readmitted_30d\n" + "".join(f"{a['prediction_id']},1\n" for a in answers)
    )
    (folder / "broken.csv").write_text(f"encounter_id,outcome\n{patient(403)['encounter_id']},yes\n")
    endpoint.wait_until(lambda: (folder / "loaded" / "week47.csv").exists(), 20, "done loading week47.csv")
    endpoint.wait_until(lambda: (folder / "rejected" / "broken.csv").exists(), 20, "done rejecting broken.csv")
    error = (folder / "rejected" / "broken.csv.error.txt").read_text()
    assert "line 2" in error and "'type'" in error
    assert patient(403)["encounter_id"] not in error and "yes" not in error
    sources = [
        tuple(r.values())
        for r in platform_rows(
            registry, "SELECT source, count(*) AS n FROM outcomes WHERE source != 'api' GROUP BY source"
        )
    ]
    assert sources == [("week47.csv", 2)]


def test_serving_beyond_loopback_without_tokens_is_refused(monkeypatch, capsys):
    monkeypatch.delenv("ML_PLATFORM_API_TOKENS", raising=False)
    monkeypatch.delenv("ML_PLATFORM_API_TOKEN_FILE", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "refusing to serve on 0.0.0.0 without authentication" in capsys.readouterr().err


def _engine(home):
    return engine_for(database_url(home))


def test_the_deployment_check_passes_only_when_the_endpoint_serves_the_promoted_version(endpoint, registry):
    from ml_platform.defs.deployment import verify_endpoint
    from ml_platform.serving.client import ServingEndpoint

    checked = ServingEndpoint(url=endpoint.url, token=TOKEN, wait_seconds=30)
    assert verify_endpoint(checked, MODEL, "champion", "1").passed
    try:
        set_alias(registry, "champion", "2")  # what a deployment does; the check waits for the hot swap
        result = verify_endpoint(checked, MODEL, "champion", "2")
        assert result.passed, result.description
        stale = verify_endpoint(
            ServingEndpoint(url=endpoint.url, token=TOKEN, wait_seconds=1.5), MODEL, "champion", "3"
        )
        assert not stale.passed and "serves version 2 as champion, not the promoted version 3" in stale.description
    finally:
        set_alias(registry, "champion", "1")
        endpoint.wait_until(lambda: endpoint.serving() == "1", 30, "back on version 1")
    wrong_token = verify_endpoint(
        ServingEndpoint(url=endpoint.url, token="nope", wait_seconds=1), MODEL, "champion", "1"
    )
    assert not wrong_token.passed and "HTTP 401" in wrong_token.description
    unconfigured = verify_endpoint(ServingEndpoint(), MODEL, "champion", "1")
    assert not unconfigured.passed and unconfigured.severity.value == "WARN"
    assert "no serving endpoint configured" in unconfigured.description
