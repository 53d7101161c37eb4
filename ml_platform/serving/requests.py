"""Reading a request body: JSON only, within the byte and record limits, refused with a status naming why.

Hostile bodies (deep nesting, NaN, numbers beyond a float, other content types, oversized
bodies) are answered 4xx before anything is validated, scored or logged.
"""

from __future__ import annotations

import json
import math

from fastapi import HTTPException, Request

from ml_platform.serving.config import ServingConfig
from ml_platform.serving.validation import RecordError


class ApiError(HTTPException):
    """An error answer whose body says what was wrong and how to fix it."""

    def __init__(self, status: int, message: str, errors: list[RecordError] | None = None):
        super().__init__(status, message)
        self.errors = errors or []


def _check_content_type(request: Request) -> None:
    """JSON only; a request without a content type is read as JSON, as simple clients send it."""
    declared = request.headers.get("content-type")
    if declared is None:
        return
    media = declared.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    raise ApiError(
        415, f"content type '{media[:60]}' is not accepted: send JSON with the header 'Content-Type: application/json'"
    )


def _no_constant(name: str) -> object:
    """NaN and Infinity are not JSON; Python's parser accepts them, the contract and the response cannot."""
    raise ValueError(f"{name} is not a JSON number; send a finite number or null")


def _finite(text: str) -> float:
    """A number too large for a float would become inf and break every comparison after it."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range; send a finite number")
    return value


def parse_json(body: bytes) -> object:
    """The body as JSON; anything a strict JSON reader would refuse is a 400 naming why."""
    try:
        return json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply; a record is one object of plain values") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {str(exc)[:200]}") from None


async def read_json(request: Request, config: ServingConfig) -> object:
    """The JSON body, refused with 413 before it is read in full when it is over the limit."""
    _check_content_type(request)
    limit = config.max_body_bytes
    declared = request.headers.get("content-length")
    too_big = f"over the limit of {limit} bytes; send at most {config.max_records} records per request"
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes is {too_big}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"request body is {too_big}")
    return parse_json(bytes(body))


def as_records(payload: object, config: ServingConfig, what: str) -> list:
    records = payload if isinstance(payload, list) else [payload]
    if not records:
        raise ApiError(422, f"the request holds no {what}: send one object or a non-empty list")
    if len(records) > config.max_records:
        raise ApiError(413, f"{len(records)} {what} in one request; the limit is {config.max_records}")
    return records
