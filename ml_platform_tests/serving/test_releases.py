"""Release policies, hot swap and durability, against a real server process and a real registry."""

import signal
import threading

import httpx
import pytest

from ml_platform.serving.models import canary_bucket
from ml_platform_tests.serving.conftest import MODEL, TOKEN, Endpoint, patient, platform_rows, set_alias, specs_with

pytestmark = pytest.mark.e2e

CANARY_SHARE = 0.2
# 2,000 patients: the standard error of the observed share is sqrt(0.2 * 0.8 / 2000) = 0.009;
# 0.03 is more than three of them.
CANARY_TOLERANCE = 0.03


def log_rows(home, column: str, ids: list[str]) -> list[dict]:
    """Prediction log rows whose ``column`` is one of ``ids``."""
    return platform_rows(home, f"SELECT * FROM predictions WHERE {column} IN :ids", ids=ids)


def test_canary_buckets_are_stable_and_uniform():
    buckets = [canary_bucket(MODEL, f"P{i}") for i in range(20_000)]
    assert buckets == [canary_bucket(MODEL, f"P{i}") for i in range(20_000)]
    assert abs(sum(b < 0.2 for b in buckets) / len(buckets) - 0.2) < 0.01
    assert canary_bucket(MODEL, "P1") != canary_bucket("other_model", "P1")  # models draw independently


def test_canary_routes_a_stable_share_of_patients_to_the_challenger(registry, tmp_path):
    set_alias(registry, "champion", "1")
    set_alias(registry, "challenger", "2")
    specs = specs_with(tmp_path / "specs", policy="canary", canary_share=CANARY_SHARE)
    endpoint = Endpoint(registry, specs).start()
    try:
        assert endpoint.serving("challenger") == "2"
        routes = {}
        for start in range(0, 2_000, 500):
            records = [patient(i) for i in range(start, start + 500)]
            for record, answer in zip(records, endpoint.predict(records).json()["predictions"]):
                routes[record["patient_id"]] = (answer["route"], answer["version"])
        assert set(routes.values()) == {("champion", "1"), ("canary", "2")}
        share = sum(route == "canary" for route, _ in routes.values()) / len(routes)
        assert abs(share - CANARY_SHARE) <= CANARY_TOLERANCE, share
        # a patient seen again (a new encounter) sees the same version, request after request
        again = [{**patient(i), "encounter_id": f"again-{i}"} for i in range(300)]
        for record, answer in zip(again, endpoint.predict(again).json()["predictions"]):
            assert (answer["route"], answer["version"]) == routes[record["patient_id"]]
    finally:
        endpoint.stop()
        set_alias(registry, "challenger", None)


def test_shadow_answers_with_the_champion_and_logs_both(registry, tmp_path):
    set_alias(registry, "champion", "1")
    set_alias(registry, "challenger", "3")
    endpoint = Endpoint(registry, specs_with(tmp_path / "specs", policy="shadow")).start()
    try:
        answers = endpoint.predict([patient(i, seed=6) for i in range(25)]).json()["predictions"]
        assert {(a["route"], a["version"]) for a in answers} == {("champion", "1")}
        ids = [a["prediction_id"] for a in answers]
        endpoint.wait_until(lambda: len(log_rows(registry, "shadow_of", ids)) == 25, 20, "done logging the shadow")
        shadows = {row["shadow_of"]: row for row in log_rows(registry, "shadow_of", ids)}
        assert {(row["route"], row["version"]) for row in shadows.values()} == {("shadow", "3")}
        served = {row["id"]: row for row in log_rows(registry, "id", ids)}
        for prediction_id in ids:  # same patient, same inputs, two versions' outputs side by side
            assert shadows[prediction_id]["inputs"] == served[prediction_id]["inputs"]
            assert shadows[prediction_id]["subject_hash"] == served[prediction_id]["subject_hash"]
        assert any(shadows[i]["outputs"] != served[i]["outputs"] for i in ids)
    finally:
        endpoint.stop()
        set_alias(registry, "challenger", None)


def hammer(endpoint: Endpoint, stop: threading.Event, results: list, worker: int, limit: int = 2_000) -> None:
    """Send single-record requests back to back until told to stop (bounded), recording each answer."""
    with httpx.Client(base_url=endpoint.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
        for n in range(limit):
            if stop.is_set():
                return
            record = {**patient(n), "encounter_id": f"load-{worker}-{n}"}
            try:
                response = client.post(f"/v1/models/{MODEL}/predict", json=record)
                results.append((worker, response.status_code, response.json()["predictions"][0]["version"]))
            except Exception as exc:  # noqa: BLE001 - every failure is what the test counts
                results.append((worker, repr(exc), None))


def test_alias_moves_under_load_without_a_failed_request(registry):
    set_alias(registry, "champion", "1")
    endpoint = Endpoint(registry).start()
    stop, results = threading.Event(), []
    clients = [threading.Thread(target=hammer, args=(endpoint, stop, results, w)) for w in range(4)]
    try:
        for thread in clients:
            thread.start()
        endpoint.wait_until(lambda: len(results) >= 100, 60, "answering under load")
        set_alias(registry, "champion", "2")
        endpoint.wait_until(lambda: any(v == "2" for _, _, v in results[-20:]), 60, "serving version 2")
        settled = len(results)
        endpoint.wait_until(lambda: len(results) >= settled + 100, 60, "answering after the swap")
    finally:
        stop.set()
        for thread in clients:
            thread.join()
        endpoint.stop()
    assert [r for r in results if r[1] != 200] == []
    assert {v for _, _, v in results} == {"1", "2"}
    for worker in range(4):  # each client, sending one request after another, never goes back to 1
        versions = [v for w, _, v in results if w == worker]
        assert versions == sorted(versions), f"client {worker} saw {versions}"


def test_every_returned_prediction_id_survives_sigkill(registry):
    set_alias(registry, "champion", "1")
    endpoint = Endpoint(registry, workers=2).start()
    returned: list[str] = []
    failed: list[str] = []

    def burst(worker: int) -> None:
        with httpx.Client(base_url=endpoint.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
            for n in range(40):
                records = [{**patient(n * 3 + k), "encounter_id": f"burst-{worker}-{n}-{k}"} for k in range(3)]
                response = client.post(f"/v1/models/{MODEL}/predict", json=records)
                if response.status_code != 200:
                    failed.append(f"{response.status_code} {response.text}")
                    continue
                returned.extend(a["prediction_id"] for a in response.json()["predictions"])

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    endpoint.stop(signal.SIGKILL)  # no shutdown hook runs: only what was committed survives
    assert failed == []  # both workers loaded the champion before they took a request
    assert len(returned) == 6 * 40 * 3
    logged = {row["id"] for row in platform_rows(registry, "SELECT id FROM predictions")}
    assert set(returned) <= logged, f"{len(set(returned) - logged)} returned ids are missing from the log"
