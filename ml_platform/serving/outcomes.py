"""Observed outcomes ("what really happened"), posted to the endpoint or landed as files.

An outcome names the prediction it resolves, by the ``prediction_id`` the endpoint
returned, or by the record's id (the spec's ``contract.id_column``), whichever the
clinical system has; monitoring joins them to the prediction log. The value is checked
against the contract's rules for the target column, so a 2 for a 0/1 outcome is refused
with the rule it breaks.

Files (CSV or Parquet) dropped in ``<storage>/outcomes/<model>/`` (under the storage URL:
the platform home, or a prefix on object storage) are loaded by the running endpoint: a file is all or nothing, loaded once by content hash, then moved to
``loaded/``; a file with any bad row moves to ``rejected/`` with a ``.error.txt`` beside it
naming every bad line, its field and the rule it breaks, and nothing of it is stored. The
error file and the log never repeat a value of the file: they are read by people who need
not see patient data, and the rejected file itself is where the values are. As in the landing
folder, only regular files are taken, once unchanged between two polls, within the size limit
and not gzip: a link, a folder, an oversize or a compressed file is moved to ``rejected/`` by
name, never opened or followed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from datetime import datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from ml_platform.data.contracts import rule_message
from ml_platform.data.raw import compressed_problem, open_landed, read_head, settled_entries
from ml_platform.serving.validation import RecordError, RuleBroken, check_value, shown
from ml_platform.spec import ModelSpec
from ml_platform.store import predictions as prediction_log
from ml_platform.store.objects import StoragePath, is_local, list_folder, make_folder, move, write_bytes
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
            errors.append(RecordError(index, None, shown(record), "not_an_object", "each outcome must be an object"))
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
        errors.extend(self._reference_type(index, name, record[name]) for name in keys if bad_reference(record[name]))
        unknown = set(record) - {PREDICTION_ID, id_column, OUTCOME_FIELD, target, "observed_at"}
        for name in sorted(unknown):
            errors.append(
                RecordError(
                    index,
                    name,
                    shown(record[name]),
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
    def _reference_type(index: int, name: str, value: object) -> RecordError:
        return RecordError(
            index, name, value, "type",
            f"field '{name}' must be an id: a string of at most {MAX_REFERENCE_CHARS} characters or an integer",
        )  # fmt: skip

    @staticmethod
    def _observed_at(index: int, value: object, errors: list[RecordError]) -> datetime | None:
        if value is None:
            return None
        try:
            return datetime.fromisoformat(value if isinstance(value, str) else str(value))
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


# Prediction ids are 32 hex digits and record ids are short; anything longer is not an id.
MAX_REFERENCE_CHARS = 128


def bad_reference(value: object) -> bool:
    """Whether a value cannot be an id (an object, a list, a float, a bool, a megabyte of text)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) >= 10**MAX_REFERENCE_CHARS
    return not isinstance(value, str) or len(value) > MAX_REFERENCE_CHARS


def outcomes_dir(root: StoragePath, model: str) -> StoragePath:
    """A model's drop folder under the storage root (local disk or object storage)."""
    return root / "outcomes" / model


def set_aside_folders(home: Path) -> list[Path]:
    """The ``loaded/`` and ``rejected/`` folders of every model: copies of outcomes a purge deletes."""
    root = home / "outcomes"
    models = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [model / folder for model in models for folder in ("loaded", "rejected")]


SET_ASIDE = ("loaded", "rejected")


def load_outcome_files(reader: OutcomeReader, folder: StoragePath, seen: dict[str, tuple[int, int]]) -> list[str]:
    """Load every outcome file in ``folder`` that is complete; returns the names loaded. Bad files are set aside.

    On local disk a file counts once unchanged since the previous call (``seen`` holds each
    file's size and mtime and is updated), and links and other non-regular entries are refused
    by name. On object storage an object appears whole when its upload completes, so every
    listed object is complete, and there are no links to follow.
    """
    loaded = []
    for path in _complete_drops(folder, seen):
        try:
            problem = compressed_problem(path.name, read_head(path))
            if problem:
                _set_aside(path, "rejected", problem)
            elif path.suffix in OUTCOME_SUFFIXES and _load_file(reader, path):
                loaded.append(path.name)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is set aside with the reason
            # The exception's type only: parser messages can quote the file's content.
            _set_aside(path, "rejected", f"{path.name} cannot be read as CSV or Parquet ({type(exc).__name__})")
    return loaded


def _complete_drops(folder: StoragePath, seen: dict[str, tuple[int, int]]) -> list[StoragePath]:
    """The drops ready to load, oldest first; refused local entries are set aside on the way."""
    if not is_local(folder):
        # A fresh listing each time: files are dropped by other processes; set-aside ones are in subfolders.
        drops = [p for p in list_folder(folder) if p.name not in SET_ASIDE and not p.name.startswith(".")]
        return sorted((p for p in drops if p.is_file()), key=lambda p: p.name)
    if not folder.is_dir():
        return []
    files, refused = settled_entries(folder, skip=SET_ASIDE)
    for entry in refused:
        _set_aside(folder / entry.name, "rejected", entry.reason)
    previous = dict(seen)
    seen.clear()
    ready = []
    for path, info in files:
        seen[path.name] = (info.st_size, info.st_mtime_ns)
        if previous.get(path.name) == seen[path.name]:
            ready.append(path)  # unchanged since the last poll; first seen or still changing waits
    return ready


def _load_file(reader: OutcomeReader, path: StoragePath) -> bool:
    content = _read_once(path)  # one read: the hash and the rows come from the same bytes
    sha256 = hashlib.sha256(content).hexdigest()
    source = io.BytesIO(content)
    frame = (
        pd.read_parquet(source)
        if path.suffix == ".parquet"
        else pd.read_csv(source, dtype={reader.spec.id_column: str})
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


def _read_once(path: StoragePath) -> bytes:
    if is_local(path):
        with open_landed(path) as handle:  # not following a link swapped in since the check
            return handle.read()
    return path.read_bytes()


def _set_aside(path: StoragePath, folder: str, error: str | None) -> None:
    """Move a file (or a link, itself, not its target) into ``folder``, writing the error beside it."""
    if not is_local(path):
        _set_aside_object(path, folder, error)
        return
    if not os.path.lexists(path):
        return  # another server worker set it aside first
    target = path.parent / folder
    target.mkdir(exist_ok=True)
    if target.is_symlink():
        logger.error("%s is a link; not setting %s aside there", target, path.name)
        return
    if error:
        _write_error(target / f"{path.name}.error.txt", error + "\n")
        logger.warning(error.splitlines()[0])
    os.replace(path, target / path.name)  # a rename: a link moves as a link


def _set_aside_object(path: StoragePath, folder: str, error: str | None) -> None:
    """The same on object storage: copy under ``folder`` and delete (no links exist there)."""
    if not path.exists():
        return  # another server worker set it aside first
    target = path.parent / folder
    make_folder(target)
    if error:
        write_bytes(target / f"{path.name}.error.txt", (error + "\n").encode())
        logger.warning(error.splitlines()[0])
    move(path, target / path.name)


def _write_error(path: Path, text: str) -> None:
    """Write an error file without following a link someone placed at its name."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
