"""Observed outcomes ("what really happened"), posted to the endpoint or landed as files.

An outcome names the prediction it resolves, by the ``prediction_id`` the endpoint
returned, or by the record's id (the spec's ``contract.id_column``), whichever the
clinical system has; monitoring joins them to the prediction log. The value is checked
against the contract's rules for the target column, so a 2 for a 0/1 outcome is refused
with the rule it breaks.

Files (CSV or Parquet) dropped in ``<home>/outcomes/<model>/`` are loaded by the running
endpoint: a file is all or nothing, loaded once by content hash, then moved to
``loaded/``; a file with any bad row moves to ``rejected/`` with a ``.error.txt`` beside it
naming every bad line, its field and the rule it breaks, and nothing of it is stored. The
error file and the log never repeat a value of the file: they are read by people who need
not see patient data, and the rejected file itself is where the values are.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from ml_platform.data.contracts import printable, rule_message
from ml_platform.data.raw import sha256_of
from ml_platform.serving.validation import RecordError, RuleBroken, check_value
from ml_platform.spec import ModelSpec
from ml_platform.store import predictions as prediction_log
from ml_platform.store.tables import outcome_files, outcomes

logger = logging.getLogger("ml_platform.serving")

OUTCOME_FIELD = "outcome"
PREDICTION_ID = "prediction_id"
OUTCOME_SUFFIXES = (".csv", ".parquet")


class OutcomeReader:
    """Turns outcome records of one model into rows of the outcomes table, or errors naming the field."""

    def __init__(self, spec: ModelSpec, engine: sa.Engine, hasher: prediction_log.IdHasher):
        self.spec, self.engine, self.hasher = spec, engine, hasher

    def read(self, records: list, source: str) -> tuple[list[dict], list[RecordError]]:
        rows, errors = {}, []
        for index, record in enumerate(records):
            row = self._row(index, record, source, errors)
            if row is not None:
                rows[index] = row
        self._check_prediction_ids(rows, errors)
        return list(rows.values()), errors

    def _row(self, index: int, record: object, source: str, errors: list[RecordError]) -> dict | None:
        id_column, target = self.spec.id_column, self.spec.target
        if not isinstance(record, dict):
            errors.append(
                RecordError(index, None, printable(record), "not_an_object", "each outcome must be an object")
            )
            return None
        value_field = OUTCOME_FIELD if OUTCOME_FIELD in record else target
        keys = [k for k in (PREDICTION_ID, id_column) if record.get(k) is not None]
        found = len(errors)
        if len(keys) != 1:
            errors.append(
                RecordError(
                    index,
                    PREDICTION_ID,
                    None,
                    "one_reference",
                    f"an outcome names exactly one of '{PREDICTION_ID}' (returned by predict) or '{id_column}'",
                )
            )
        unknown = set(record) - {PREDICTION_ID, id_column, OUTCOME_FIELD, target, "observed_at"}
        for name in sorted(unknown):
            errors.append(
                RecordError(
                    index,
                    name,
                    record[name],
                    "unknown_column",
                    f"field '{name}' is not part of an outcome: send '{PREDICTION_ID}' or '{id_column}', "
                    f"'{OUTCOME_FIELD}' and optionally 'observed_at'",
                )
            )
        outcome = self._value(index, record, value_field, errors)
        observed_at = self._observed_at(index, record.get("observed_at"), errors)
        if len(errors) > found:
            return None
        return {
            "model": self.spec.name,
            "prediction_id": record.get(PREDICTION_ID),
            "record_hash": self.hasher(self.spec.name, record[id_column]) if keys == [id_column] else None,
            "outcome": float(outcome),
            "observed_at": observed_at,
            "received_at": prediction_log.now(),
            "source": source,
        }

    def _value(self, index: int, record: dict, field: str, errors: list[RecordError]):
        column = self.spec.contract.columns[self.spec.target]
        value = record.get(field)
        if value is None:
            errors.append(RecordError(index, OUTCOME_FIELD, None, "required", f"field '{OUTCOME_FIELD}' is required"))
            return None
        try:
            return check_value(column, value)
        except RuleBroken as broken:
            message = rule_message(OUTCOME_FIELD, column, broken.rule)
            errors.append(RecordError(index, OUTCOME_FIELD, value, broken.rule, message))
            return None

    @staticmethod
    def _observed_at(index: int, value: object, errors: list[RecordError]) -> datetime | None:
        if value is None:
            return None
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            errors.append(
                RecordError(index, "observed_at", value, "type", "field 'observed_at' must be an ISO 8601 date-time")
            )
            return None

    def _check_prediction_ids(self, rows: dict[int, dict], errors: list[RecordError]) -> None:
        """Outcomes must name predictions of this model that were logged; unknown ids are errors."""
        named = {row["prediction_id"] for row in rows.values() if row["prediction_id"]}
        missing = named - prediction_log.existing_prediction_ids(self.engine, self.spec.name, named)
        for index, row in list(rows.items()):
            if row["prediction_id"] in missing:
                del rows[index]
                errors.append(
                    RecordError(
                        index,
                        PREDICTION_ID,
                        row["prediction_id"],
                        "unknown_prediction",
                        f"no logged prediction of {self.spec.name} has this '{PREDICTION_ID}'",
                    )
                )


def outcomes_dir(home: Path, model: str) -> Path:
    return home / "outcomes" / model


def set_aside_folders(home: Path) -> list[Path]:
    """The ``loaded/`` and ``rejected/`` folders of every model: copies of outcomes a purge deletes."""
    root = home / "outcomes"
    models = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [model / folder for model in models for folder in ("loaded", "rejected")]


def load_outcome_files(reader: OutcomeReader, folder: Path) -> list[str]:
    """Load every new outcome file in ``folder``; returns the names loaded. Bad files are set aside."""
    loaded = []
    for path in sorted(p for p in folder.glob("*") if p.suffix in OUTCOME_SUFFIXES and p.is_file()):
        try:
            if _load_file(reader, path):
                loaded.append(path.name)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is set aside with the reason
            # The exception's type only: parser messages can quote the file's content.
            _set_aside(path, "rejected", f"{path.name} cannot be read as CSV or Parquet ({type(exc).__name__})")
    return loaded


def _load_file(reader: OutcomeReader, path: Path) -> bool:
    sha256 = sha256_of(path)
    frame = (
        pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={reader.spec.id_column: str})
    )
    # Python values (not numpy scalars) and None for missing, as a JSON request would carry.
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    rows, errors = reader.read(records, source=path.name)
    if errors:
        lines = [_error_line(e) for e in errors]
        _set_aside(path, "rejected", f"{path.name}: {len(errors)} problem(s), nothing loaded\n" + "\n".join(lines))
        return False
    try:
        with reader.engine.begin() as conn:
            conn.execute(
                outcome_files.insert().values(
                    sha256=sha256,
                    model=reader.spec.name,
                    name=path.name,
                    rows=len(rows),
                    loaded_at=prediction_log.now(),
                )
            )
            if rows:
                conn.execute(outcomes.insert(), rows)
    except sa.exc.IntegrityError:
        logger.warning("outcome file %s was loaded before (same content); not loading it again", path.name)
    _set_aside(path, "loaded", None)
    return True


def _error_line(error: RecordError) -> str:
    """One bad line for the error file: line number, field and rule (messages carry no values), never the value."""
    field = f" field '{error.field}'" if error.field else ""
    return f"line {error.record + 2}{field} (rule '{error.rule}'): {error.message}"  # +2: header line, 1-based


def _set_aside(path: Path, folder: str, error: str | None) -> None:
    if not path.exists():
        return  # another server worker set it aside first
    target = path.parent / folder
    target.mkdir(exist_ok=True)
    if error:
        (target / f"{path.name}.error.txt").write_text(error + "\n")
        logger.warning(error.splitlines()[0])
    shutil.move(path, target / path.name)
