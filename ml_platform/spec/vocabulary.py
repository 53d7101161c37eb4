"""The words a spec is written in that the rest of the platform also speaks: tasks and column types."""

from __future__ import annotations

from enum import StrEnum


class Task(StrEnum):
    binary_classification = "binary_classification"
    regression = "regression"


class ColumnType(StrEnum):
    string = "string"
    integer = "integer"
    float = "float"
    category = "category"
    boolean = "boolean"
    date = "date"
    datetime = "datetime"

    @property
    def is_numeric(self) -> bool:
        return self in (ColumnType.integer, ColumnType.float)
