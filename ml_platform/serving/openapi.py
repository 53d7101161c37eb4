"""What the OpenAPI document says of the endpoint: every error status each route answers, the
error body, and each model's record schema built from its data contract."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ml_platform.serving.validation import example_record


class RecordProblem(BaseModel):
    """One broken rule of one record, as in the batch quarantine."""

    record: int
    field: str | None = None
    value: Any = None
    rule: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: what was wrong and how to fix it; per-record problems where there are any."""

    detail: str
    errors: list[RecordProblem] | None = None


class Readiness(BaseModel):
    """Whether every champion is loaded; what is still waiting, and why, when not."""

    ready: bool
    detail: str | None = None
    models: dict[str, str | None] | None = None
    waiting: dict[str, dict] | None = None


# Every status the routes answer besides 200, so the OpenAPI document lists all of them.
STATUS_MEANINGS = {
    400: "The body is not JSON: malformed, nested too deeply, NaN/Infinity or a number out of range",
    401: "No bearer token, or one that is not configured",
    403: "The token lacks the route's scope, or a client beyond loopback reached a server without tokens",
    404: "Unknown model",
    413: "The body is over the byte limit or holds too many records",
    415: "The body is not sent as application/json",
    422: "A record or parameter breaks the model's contract; `errors` names each record, field and rule",
    503: "The model has no champion loaded yet",
}


def documented(*statuses: int) -> dict:
    """The ``responses=`` of a route: each status with the error body it carries."""
    return {status: {"model": ErrorBody, "description": STATUS_MEANINGS[status]} for status in statuses}


def predict_openapi(models: dict) -> dict:
    """The request body of predict in the OpenAPI document: each model's record schema, one or a list."""
    schemas = [served.validator.json_schema() for served in models.values()]
    one = {"anyOf": schemas} if schemas else {"type": "object"}
    examples = {name: {"value": example_record(s.spec)} for name, s in models.items()}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"anyOf": [one, {"type": "array", "items": one}]},
                    "examples": examples,
                }
            },
        }
    }


def outcomes_openapi(models: dict) -> dict:
    """The request body of outcomes: a prediction id or a record id, the outcome, optionally when it was observed."""
    ids = sorted({served.spec.id_column for served in models.values()})
    properties = {
        "prediction_id": {"type": "string", "description": "the id predict returned"},
        **{name: {"type": "string", "description": "the record's id column"} for name in ids},
        "outcome": {"type": "number", "description": "what really happened, by the target column's rules"},
        "observed_at": {"type": "string", "format": "date-time"},
    }
    one = {"type": "object", "properties": properties, "required": ["outcome"], "additionalProperties": False}
    schema = {"anyOf": [one, {"type": "array", "items": one, "minItems": 1}]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
