"""Attacks on the endpoint, mounted from outside against a real `ml-platform serve` process.

Each hostile request must get a 4xx with a message saying what was wrong, never a 500, and
leave nothing in the prediction log or the outcomes; each token may do only what its
scopes say; files put in the outcomes folder are taken only when they are regular files.
"""

from __future__ import annotations

import gzip
import json

import httpx
import pytest

from ml_platform_tests.serving.conftest import MODEL, TOKEN, Endpoint, patient, platform_rows, set_alias

pytestmark = pytest.mark.e2e

PREDICT_ONLY = "clinic-token-0b9e"  # `name:token`: the default scope, predict only
ADMIN_ONLY = "ops-token-41c2"
MARKER = "MARKER-outside-the-outcomes-folder"


@pytest.fixture(scope="module")
def endpoint(registry):
    set_alias(registry, "champion", "1")
    tokens = f":predict+outcomes+admin:{TOKEN},clinic:{PREDICT_ONLY},ops:admin:{ADMIN_ONLY}"
    server = Endpoint(registry, tokens=tokens).start()
    yield server
    server.stop()


def counts(home) -> tuple[int, int]:
    """(predictions, outcomes) in the platform database: what an attack must not change."""
    [row] = platform_rows(home, "SELECT (SELECT count(*) FROM predictions) AS p, (SELECT count(*) FROM outcomes) AS o")
    return row["p"], row["o"]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def record_with(**values) -> bytes:
    """A valid record with some fields replaced by raw JSON text (which json.dumps could not write)."""
    text = json.dumps({**patient(7), **{k: "@" + k for k in values}})
    for name, raw in values.items():
        text = text.replace(f'"@{name}"', raw)
    return text.encode()


JSON = {"Content-Type": "application/json"}
HOSTILE = {
    "deeply nested body": (nested(100_000), JSON, 400, "nested too deeply"),
    "nested value in a field": (record_with(age=nested(500).decode()), JSON, 422, "must be of type"),
    "400-digit integer": (record_with(age="9" * 400), JSON, 422, "must be of type"),
    "5000-digit integer": (record_with(age="9" * 5000), JSON, 400, "not valid JSON"),
    "object where an id is expected": (record_with(encounter_id='{"$gt": ""}'), JSON, 422, "encounter_id"),
    "NaN": (record_with(age="NaN"), JSON, 400, "NaN is not a JSON number"),
    "Infinity": (record_with(age="-Infinity"), JSON, 400, "-Infinity is not a JSON number"),
    "float overflowing to infinity": (record_with(age="1e400"), JSON, 400, "out of range"),
    "text/plain content type": (json.dumps(patient(7)).encode(), {"Content-Type": "text/plain"}, 415, "text/plain"),
    "form content type": (b"age=5", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
    "huge array": (b"[" + b"0," * 300_000 + b"0]", JSON, 413, "the limit is 1000"),
    "a bare string": (b'"DROP TABLE predictions"', JSON, 422, "must be a JSON object"),
    "bytes that are not UTF-8": (b'{"age": "\xff\xfe"}', JSON, 400, "not valid JSON"),
    "empty body": (b"", JSON, 400, "not valid JSON"),
}


@pytest.mark.parametrize("route", ["predict", "outcomes"])
@pytest.mark.parametrize("attack", list(HOSTILE))
def test_hostile_bodies_get_a_4xx_with_a_message_and_leave_no_trace(endpoint, registry, attack, route):
    content, headers, status, words = HOSTILE[attack]
    if route == "outcomes" and status == 422:
        status, words = 422, ""  # an outcome body is refused by its own rules; the status is what matters
    before = counts(registry)
    response = endpoint.client.post(f"/v1/models/{MODEL}/{route}", content=content, headers=headers)
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert words in json.dumps(body)
    assert len(response.content) < 20_000  # an error never echoes a hostile payload back
    assert counts(registry) == before


@pytest.mark.parametrize(
    "outcome",
    [
        {"prediction_id": {"$ne": None}, "outcome": 1},
        {"prediction_id": ["a", "b"], "outcome": 1},
        {"prediction_id": "x" * 10_000, "outcome": 1},
        {"encounter_id": True, "outcome": 1},
        {"encounter_id": "E1", "outcome": 10**400},
        {"encounter_id": "E1", "outcome": 1, "observed_at": {"year": 2026}},
    ],
)
def test_outcomes_with_an_object_or_a_huge_value_where_an_id_or_value_is_expected_are_422(endpoint, registry, outcome):
    before = counts(registry)
    response = endpoint.client.post(f"/v1/models/{MODEL}/outcomes", json=outcome)
    assert response.status_code == 422, response.text[:500]
    assert response.json()["errors"][0]["message"]
    assert counts(registry) == before


def test_a_bad_query_parameter_is_422_in_the_same_error_shape(endpoint):
    response = endpoint.client.post(f"/v1/models/{MODEL}/predict", params={"partial": "maybe"}, json=patient(8))
    assert response.status_code == 422
    assert response.json()["detail"].startswith("invalid request: query partial")


def test_a_predict_only_token_cannot_post_outcomes_and_no_outcome_row_appears(endpoint, registry):
    with httpx.Client(base_url=endpoint.url, headers={"Authorization": f"Bearer {PREDICT_ONLY}"}) as clinic:
        [answer] = clinic.post(f"/v1/models/{MODEL}/predict", json=patient(9)).json()["predictions"]
        before = counts(registry)
        response = clinic.post(
            f"/v1/models/{MODEL}/outcomes", json={"prediction_id": answer["prediction_id"], "outcome": 1}
        )
        assert response.status_code == 403
        assert "token 'clinic' has scope(s) predict, not 'outcomes'" in response.json()["detail"]
        assert counts(registry) == before
        assert platform_rows(
            registry, "SELECT count(*) AS n FROM outcomes WHERE prediction_id = :id", id=answer["prediction_id"]
        ) == [{"n": 0}]
        for path in ("/metrics", "/openapi.json", "/docs"):
            assert clinic.get(path).status_code == 403, path
        assert clinic.get("/v1/models").status_code == 200  # what a scoring client needs to build records


def test_an_admin_token_reads_metrics_and_docs_but_cannot_score_patients(endpoint):
    with httpx.Client(base_url=endpoint.url, headers={"Authorization": f"Bearer {ADMIN_ONLY}"}) as ops:
        assert ops.get("/metrics").status_code == 200
        assert ops.get("/openapi.json").status_code == 200 and ops.get("/docs").status_code == 200
        assert ops.post(f"/v1/models/{MODEL}/predict", json=patient(10)).status_code == 403
    with httpx.Client(base_url=endpoint.url) as nobody:
        assert nobody.get("/openapi.json").status_code == 401


def test_the_openapi_document_lists_every_status_of_each_route(endpoint):
    paths = endpoint.client.get("/openapi.json").json()["paths"]
    expected = {
        ("/v1/models/{model}/predict", "post"): {"200", "400", "401", "403", "404", "413", "415", "422", "503"},
        ("/v1/models/{model}/outcomes", "post"): {"200", "400", "401", "403", "404", "413", "415", "422"},
        ("/v1/models", "get"): {"200", "401", "403"},
        ("/metrics", "get"): {"200", "401", "403"},
        ("/readyz", "get"): {"200", "503"},
    }
    for (path, method), statuses in expected.items():
        assert set(paths[path][method]["responses"]) == statuses, path
    error = paths["/v1/models/{model}/predict"]["post"]["responses"]["422"]["content"]["application/json"]
    assert error["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


def test_outcome_files_that_are_links_or_gzip_are_set_aside_by_name_unread(endpoint, registry, tmp_path):
    [answer] = endpoint.predict(patient(11)).json()["predictions"]
    outside = tmp_path / "elsewhere.csv"
    outside.write_text(f"prediction_id,outcome\n{answer['prediction_id']},1\n# {MARKER}\n")
    folder = registry / "outcomes" / MODEL
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "linked.csv").symlink_to(outside)
    (folder / "packed.csv").write_bytes(gzip.compress(outside.read_bytes()))
    before = counts(registry)
    rejected = folder / "rejected"
    endpoint.wait_until(lambda: (rejected / "packed.csv.error.txt").exists(), 20, "done refusing packed.csv")
    endpoint.wait_until(lambda: (rejected / "linked.csv.error.txt").exists(), 20, "done refusing linked.csv")
    assert "linked.csv is a symbolic link" in (rejected / "linked.csv.error.txt").read_text()
    assert "packed.csv is gzip-compressed" in (rejected / "packed.csv.error.txt").read_text()
    assert (rejected / "linked.csv").is_symlink()  # the link moved, its target untouched and unread
    assert counts(registry) == before
    assert MARKER not in "".join(p.read_text() for p in rejected.glob("*.error.txt"))
