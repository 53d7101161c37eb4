"""Request records checked against the model's data contract, at the endpoint's boundary.

The same contract that guards landed batches guards live requests, with the same rule
names and messages, so a rule reads the same in the quarantine and in a 422 response.
Requests are small, so records are checked in plain Python (no data frames): microseconds
per record. The outcome column is not an input: it is refused with a pointer to the
outcomes route.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

from ml_platform.data.contracts import printable, rule_message
from ml_platform.spec import Column, ColumnType, ModelSpec


@dataclass(frozen=True)
class RecordError:
    """One broken rule: which record, which field, the value, the rule, and a readable message."""

    record: int
    field: str | None
    value: object
    rule: str
    message: str

    def as_dict(self) -> dict:
        return {
            "record": self.record,
            "field": self.field,
            "value": shown(self.value),
            "rule": self.rule,
            "message": self.message,
        }


# An error echoes the value it refuses, but never a whole hostile payload back at the client.
SHOWN_CHARS = 200


def shown(value: object) -> object:
    """The value as an error shows it: plain values as they are, long text cut, objects and lists named."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return value if abs(value) < 10**15 else f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    text = printable(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


class RuleBroken(Exception):
    """A value breaks the contract rule named ``rule``."""

    def __init__(self, rule: str):
        self.rule = rule


def _number(value: object) -> float:
    """A finite float; an integer too large for one (a 400-digit id) breaks the type rule, not the server."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleBroken("type")
    try:
        number = float(value)
    except OverflowError:
        raise RuleBroken("type") from None
    if not math.isfinite(number):
        raise RuleBroken("type")
    return number


def _integer(value: object) -> float:
    number = _number(value)
    if not number.is_integer():
        raise RuleBroken("type")
    return number


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise RuleBroken("type")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise RuleBroken("type")
    return value


def _iso(parse):
    def check(value: object) -> str:
        try:
            parse(_text(value))
        except ValueError:
            raise RuleBroken("type") from None
        return value

    return check


_CONVERTERS = {
    ColumnType.integer: _integer,
    ColumnType.float: _number,
    ColumnType.string: _text,
    ColumnType.category: _text,
    ColumnType.boolean: _boolean,
    ColumnType.date: _iso(date.fromisoformat),
    ColumnType.datetime: _iso(datetime.fromisoformat),
}


def check_value(col: Column, value: object) -> object:
    """The value in its contract type; RuleBroken names the rule it breaks."""
    if value is None:
        if not col.nullable:
            raise RuleBroken("not_null")
        return None
    typed = _CONVERTERS[col.type](value)
    if col.min is not None and typed < col.min:
        raise RuleBroken("min")
    if col.max is not None and typed > col.max:
        raise RuleBroken("max")
    if col.allowed is not None and typed not in col.allowed and str(typed) not in map(str, col.allowed):
        raise RuleBroken("allowed")
    return typed


class RecordValidator:
    """Checks request records of one model: the contract's columns without the outcome."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.columns = {name: col for name, col in spec.contract.columns.items() if name != spec.target}
        self._unique = [name for name, col in self.columns.items() if col.unique]

    def validate(self, records: list) -> tuple[list[dict | None], list[RecordError]]:
        """Typed records (None where a record is invalid) and every error found, all records checked."""
        typed: list[dict | None] = []
        errors: list[RecordError] = []
        seen: dict[str, set] = {name: set() for name in self._unique}
        for index, record in enumerate(records):
            record_errors = []
            values = self._record(index, record, record_errors)
            for name in self._unique:
                value = values.get(name) if values else None
                if value is not None and value in seen[name]:
                    record_errors.append(self._error(index, name, value, "unique"))
                seen[name].add(value)
            errors.extend(record_errors)
            typed.append(None if record_errors else values)
        return typed, errors

    def _record(self, index: int, record: object, errors: list[RecordError]) -> dict | None:
        if not isinstance(record, dict):
            errors.append(RecordError(index, None, shown(record), "not_an_object", "each record must be a JSON object"))
            return None
        for name in record:
            if name in self.columns:
                continue
            if name == self.spec.target:
                errors.append(self._outcome_sent(index, record[name]))
            elif self.spec.contract.unknown_columns == "reject":
                errors.append(self._unknown(index, name, record[name]))
        values = {}
        for name, col in self.columns.items():
            if name not in record and not col.nullable:
                errors.append(
                    RecordError(index, name, None, "required", f"field '{name}' is required ({col.type.value})")
                )
                continue
            try:
                values[name] = check_value(col, record.get(name))
            except RuleBroken as broken:
                errors.append(self._error(index, name, record.get(name), broken.rule))
        return values

    def _error(self, index: int, name: str, value: object, rule: str) -> RecordError:
        message = rule_message(name, self.columns[name], rule)
        if rule == "unique":
            message = f"field '{name}': the same value appears more than once in the request"
        return RecordError(index, name, value, rule, message)

    def _unknown(self, index: int, name: str, value: object) -> RecordError:
        return RecordError(
            index,
            name,
            value,
            "unknown_column",
            f"field '{name}' is not in the data contract of {self.spec.name}; "
            f"GET /v1/models/{self.spec.name} lists the fields it takes",
        )

    def _outcome_sent(self, index: int, value: object) -> RecordError:
        return RecordError(
            index,
            self.spec.target,
            value,
            "outcome_in_request",
            f"field '{self.spec.target}' is the outcome the model predicts, not an input; "
            f"post observed outcomes to /v1/models/{self.spec.name}/outcomes",
        )

    def json_schema(self) -> dict:
        """The JSON Schema of one record, for the OpenAPI document."""
        kinds = {
            ColumnType.integer: "integer",
            ColumnType.float: "number",
            ColumnType.boolean: "boolean",
        }
        properties = {}
        for name, col in self.columns.items():
            schema: dict = {"type": kinds.get(col.type, "string")}
            if col.type in (ColumnType.date, ColumnType.datetime):
                schema["format"] = "date" if col.type == ColumnType.date else "date-time"
            if col.min is not None:
                schema["minimum"] = col.min
            if col.max is not None:
                schema["maximum"] = col.max
            if col.allowed is not None:
                schema["enum"] = col.allowed
            if col.nullable:
                schema = {"anyOf": [schema, {"type": "null"}]}
            if col.description:
                schema["description"] = col.description
            properties[name] = schema
        required = [name for name, col in self.columns.items() if not col.nullable]
        return {
            "type": "object",
            "title": f"{self.spec.name} record",
            "properties": properties,
            "required": required,
            "additionalProperties": self.spec.contract.unknown_columns == "ignore",
        }


def example_record(spec: ModelSpec) -> dict:
    """A record that meets the contract: the API docs' example, and a freshly loaded model's warm-up."""
    typical = {
        ColumnType.date: "2026-01-01",
        ColumnType.datetime: "2026-01-01T08:00:00",
        ColumnType.boolean: True,
        ColumnType.string: "example-1",
    }
    record = {}
    for name, col in spec.contract.columns.items():
        if name == spec.target:
            continue
        if col.allowed:
            record[name] = col.allowed[0]
        elif col.type.is_numeric:
            low, high = col.min if col.min is not None else 0, col.max if col.max is not None else 1
            middle = (low + high) / 2
            record[name] = int(middle) if col.type == ColumnType.integer else middle
        else:
            record[name] = typical.get(col.type, "example")
    return record
