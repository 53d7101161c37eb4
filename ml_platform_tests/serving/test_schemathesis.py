"""Property-based tests from the endpoint's own OpenAPI document, against a real `ml-platform serve`.

Schemathesis generates requests from the document (valid ones, and invalid ones in its
negative mode), for every operation, with any model name and with the served one. Every
answer must be documented for its route and none may be a server error. Bounded: 30
examples per operation and mode, so the test takes well under three minutes.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import status_code_conformance

from ml_platform_tests.serving.conftest import MODEL, TOKEN, Endpoint, set_alias

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 30


@pytest.fixture(scope="module")
def endpoint(registry):
    set_alias(registry, "champion", "1")
    server = Endpoint(registry).start()
    yield server
    server.stop()


def operations(endpoint: Endpoint):
    schema = schemathesis.openapi.from_url(f"{endpoint.url}/openapi.json", headers=AUTH, timeout=30)
    return [result.ok() for result in schema.get_all_operations()]


def run(operation, endpoint: Endpoint, mode: GenerationMode, path_parameters: dict | None) -> list[int]:
    """Send up to EXAMPLES generated requests; schemathesis' checks fail the test on a 5xx or an undocumented status."""
    statuses = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as generated
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def check(case):
        response = case.call_and_validate(
            base_url=endpoint.url, headers=AUTH, checks=[not_a_server_error, status_code_conformance], timeout=30
        )
        statuses.append(response.status_code)

    check()
    return statuses


def test_no_server_error_and_no_undocumented_status_for_any_generated_request(endpoint):
    seen: dict[str, set[int]] = {}
    for operation in operations(endpoint):
        fixed = {"model": MODEL} if "{model}" in operation.path else None
        for mode, path_parameters in [
            (GenerationMode.POSITIVE, None),
            (GenerationMode.POSITIVE, fixed),
            (GenerationMode.NEGATIVE, fixed),
        ]:
            if mode == GenerationMode.NEGATIVE and not (len(operation.body) or len(operation.query)):
                continue  # no body or query to make invalid (the model name is fixed)
            label = f"{operation.method.upper()} {operation.path}"
            seen.setdefault(label, set()).update(run(operation, endpoint, mode, path_parameters))
    assert all(status < 500 for statuses in seen.values() for status in statuses), seen
    predict = seen["POST /v1/models/{model}/predict"]
    assert 200 in predict and 422 in predict  # scored records and refused ones were both generated
    assert 422 in seen["POST /v1/models/{model}/outcomes"]
