"""Data contracts: read a landed batch and split it into valid rows and quarantine.

Two levels of failure, because they call for different actions:

* a **batch problem** (unreadable file, no rows, missing or unknown columns, a column
  of the wrong type) means the file as a whole does not match the contract: nothing
  from it is used, and the blocking schema check says why;
* a **row problem** (a value out of range, not allowed, missing, unparsable, a
  duplicated id, undecodable bytes, a malformed line) sends just that row to
  quarantine, and the rest flows on.

Quarantine holds the minimum necessary patient data: a pointer to the row (the raw copy's
sha256, the row and, for CSV, the line of the file), the record id only as its keyed hash
(the prediction log's, so whoever holds the key can still join), the column and the rule;
never the value nor a copy of the record. A reviewer who needs the value reads that line of
the immutable raw copy, where access to raw data is governed anyway.

Every message names the file, the column and the rule, so a data engineer can fix the
export without reading Python; no message repeats a value from the file.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from ml_platform.data.raw import sha256_of
from ml_platform.spec import Column, ColumnType, ModelSpec

NA_VALUES = ["", "NA", "NaN", "nan", "null", "NULL", "None"]
QUARANTINE_COLUMNS = ["batch", "source_file", "raw_sha256", "row", "line", "record_hash", "column", "rule", "message"]
SUPPORTED_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class ContractResult:
    """The outcome of applying a contract to one batch."""

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    batch_problems: list[str] = field(default_factory=list)
    rows_read: int = 0
    raw_sha256: str = ""

    @property
    def passed(self) -> bool:
        return not self.batch_problems

    def counts_by_rule(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.quarantine["rule"].value_counts().sort_index().items()}


# A keyed hash of an identifier, as ``store.predictions.IdHasher``: (model, id) -> hex digest.
IdHash = Callable[[str, object], str]


@dataclass
class _Failures:
    """Collects quarantine entries while a batch is checked: pointers and hashed ids, never values."""

    file: str
    batch: str
    sha256: str = ""
    model: str = ""
    hasher: IdHash | None = None
    records: list[dict] = field(default_factory=list)

    def add(
        self,
        rule: str,
        message: str,
        column: str | None = None,
        row: int | None = None,
        line: int | None = None,
        record_id: object = None,
    ) -> None:
        self.records.append(
            {
                "batch": self.batch,
                "source_file": self.file,
                "raw_sha256": self.sha256,
                "row": row,
                "line": line,
                "record_hash": self._hash(record_id),
                "column": column,
                "rule": rule,
                "message": f"{self.file}: {message}",
            }
        )

    def _hash(self, record_id: object) -> str | None:
        """The id's keyed hash (None without a hasher or an id): the raw id is never kept."""
        if self.hasher is None or record_id is None or pd.isna(record_id):
            return None
        return self.hasher(self.model, printable(record_id))

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.records, columns=QUARANTINE_COLUMNS)
        text = {c: "string" for c in QUARANTINE_COLUMNS if c not in ("row", "line")}
        return frame.astype({"row": "Int64", "line": "Int64"}).astype(text)


class BatchReadError(Exception):
    """The file cannot be read as a table at all."""


# Bytes that are not UTF-8 are read as lone surrogates (surrogateescape), so nothing is lost.
_SURROGATES = "[\udc80-\udcff]"


def _is_utf8(path: Path) -> bool:
    """Whether the whole file decodes as UTF-8: if so, no cell needs checking for bad bytes."""
    if path.suffix.lower() != ".csv":
        return True
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def printable(value: object) -> str:
    # Show undecodable bytes (kept as surrogates) as \x escapes.
    text = str(value)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_batch(path: Path, bad_lines: list[list[str]] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet batch with every value as text (types are the contract's job).

    Malformed CSV lines (more fields than the header) are appended to ``bad_lines`` as
    their list of fields instead of failing the whole file.
    """
    kind = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise BatchReadError(
            f"'{path.suffix or 'no extension'}' is not a supported format; land .csv or .parquet files"
        )
    if path.stat().st_size == 0:
        raise BatchReadError("the file is empty (0 bytes); land a file with a header and rows")
    if kind == "parquet":
        try:
            return pd.read_parquet(path).astype(object)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for corrupt files
            raise BatchReadError(f"not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    return _read_csv(path, bad_lines if bad_lines is not None else [])


def _read_csv(path: Path, bad_lines: list[list[str]]) -> pd.DataFrame:
    options = dict(
        dtype=str,
        keep_default_na=False,
        na_values=NA_VALUES,
        encoding="utf-8",
        encoding_errors="surrogateescape",
        skipinitialspace=True,
    )
    try:
        return pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise BatchReadError("the file has no header line; land a CSV with a header and rows") from None
    except (pd.errors.ParserError, csv.Error):
        pass

    # The fast parser stops at the first malformed line; the Python parser can hand us each
    # one so that a single bad line costs one quarantined row, not the batch.
    def keep(fields: list[str]) -> None:
        bad_lines.append(fields)
        return None

    try:
        return pd.read_csv(path, engine="python", on_bad_lines=keep, **options)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise BatchReadError(f"not parseable as CSV: {exc}") from None


def record_lines(path: Path) -> tuple[list[int], list[int]]:
    """(first line of each table row, first line of each line with more fields than the header) of a CSV.

    Read as ``read_batch`` reads it (blank lines skipped, a quoted field may span lines), so
    the pointer of a quarantined row leads to its line in the raw copy. Only called when a
    batch has failures: it costs one more pass over the file.
    """
    rows: list[int] = []
    too_long: list[int] = []
    header: int | None = None
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        end = 0
        for fields in reader:
            start, end = end + 1, reader.line_num
            if not fields:
                continue
            if header is None:
                header = len(fields)
            else:
                (too_long if len(fields) > header else rows).append(start)
    return rows, too_long


def _coerce(series: pd.Series, col: Column) -> pd.Series:
    """Convert text to the contract type; values that do not convert become missing."""
    if col.type.is_numeric:
        return pd.to_numeric(series, errors="coerce").astype(float)
    if col.type == ColumnType.boolean:
        mapping = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
        return series.map(lambda v: mapping.get(str(v).strip().lower()) if pd.notna(v) else None).astype("boolean")
    if col.type in (ColumnType.date, ColumnType.datetime):
        return pd.to_datetime(series, errors="coerce", format="ISO8601")
    return series.astype("string")


def _type_failures(raw: pd.Series, typed: pd.Series, col: Column) -> pd.Series:
    """Rows whose value was present but did not convert (or is not whole, for integers)."""
    failed = raw.notna() & typed.isna()
    if col.type == ColumnType.integer:
        failed |= typed.notna() & (typed % 1 != 0)
    return failed


def _schema(spec: ModelSpec) -> pa.DataFrameSchema:
    """The pandera schema of the contract's row rules, run on already-typed columns."""
    columns = {}
    for name, col in spec.contract.columns.items():
        checks = []
        if col.min is not None:
            checks.append(pa.Check.ge(col.min, error="min"))
        if col.max is not None:
            checks.append(pa.Check.le(col.max, error="max"))
        if col.allowed is not None:
            allowed = [str(a) for a in col.allowed] if not col.type.is_numeric else col.allowed
            checks.append(pa.Check.isin(allowed, error="allowed"))
        columns[name] = pa.Column(checks=checks, nullable=col.nullable, unique=col.unique)
    return pa.DataFrameSchema(columns, strict=False)


_RULE_NAMES = {"not_nullable": "not_null", "field_uniqueness": "unique"}


def rule_message(name: str, col: Column, rule: str) -> str:
    """What rule ``name`` breaks and what it expects, without the value: messages travel to metadata and logs."""
    expected = {
        "min": lambda: f"must be >= {col.min:g}",
        "max": lambda: f"must be <= {col.max:g}",
        "allowed": lambda: f"must be one of {col.allowed}",
        "not_null": lambda: "must not be missing",
        "unique": lambda: "must be unique, but the id appears more than once in the batch",
        "type": lambda: f"must be of type {col.type.value}",
        "encoding": lambda: "holds bytes that are not valid UTF-8; re-export the file as UTF-8",
    }[rule]()
    return f"column '{name}' breaks rule '{rule}': {expected}"


_SEPARATORS = {";": "a semicolon (;)", "\t": "a tab", "|": "a pipe (|)"}


def _separator_problem(raw: pd.DataFrame, spec: ModelSpec) -> tuple[str, str | None, str] | None:
    """A header read as one column that splits into contract columns on another separator: say which."""
    if len(raw.columns) != 1:
        return None
    header = str(raw.columns[0])
    for separator, said in _SEPARATORS.items():
        names = [name.strip() for name in header.split(separator)]
        if len(names) > 1 and set(names) & set(spec.contract.columns):
            return (
                "separator",
                None,
                f"the header is separated by {said}, not commas (rule 'separator'); export the file as "
                "comma-separated CSV",
            )
    return None


def _case_twins(raw: pd.DataFrame, spec: ModelSpec) -> dict[str, str]:
    """Contract column -> the file's column that differs from it only in case or surrounding spaces."""
    present = {str(name).strip().lower(): str(name) for name in raw.columns if name not in spec.contract.columns}
    return {
        name: present[name.lower()]
        for name in spec.contract.columns
        if name not in raw.columns and name.lower() in present
    }


def _batch_problems(raw: pd.DataFrame, spec: ModelSpec) -> list[tuple[str, str | None, str]]:
    """(rule, column, message) for each way the file's shape breaks the contract, with the likely cause."""
    contract = spec.contract
    separator = _separator_problem(raw, spec)
    if separator:
        return [separator]  # every column would be "missing": the one cause is the separator
    twins = _case_twins(raw, spec)
    problems = []
    for name in contract.columns:
        if name in twins:
            problems.append(
                (
                    "missing_column",
                    name,
                    f"required column '{name}' is missing, but the file has '{twins[name]}', which differs only "
                    f"in case or spaces (rule 'missing_column'); rename it to '{name}' in the export",
                )
            )
        elif name not in raw.columns:
            problems.append(
                (
                    "missing_column",
                    name,
                    f"required column '{name}' is missing (rule 'missing_column'); "
                    f"the contract of {spec.name} requires it: add it to the export",
                )
            )
    unknown = [str(name) for name in raw.columns if name not in contract.columns and name not in twins.values()]
    if contract.unknown_columns == "reject" and unknown and len(problems) == len(contract.columns):
        # No contract column at all: likely no header line, so these "names" may be a patient's values.
        problems.append(
            (
                "unknown_column",
                None,
                f"none of the {len(unknown)} column names of the header is in the contract (rule "
                "'unknown_column'); is the header line missing? (the names are not repeated: they may be values)",
            )
        )
    elif contract.unknown_columns == "reject":
        for name in unknown:
            problems.append(
                (
                    "unknown_column",
                    name,
                    f"column '{name}' is not in the contract (rule "
                    "'unknown_column'); add it to contract.columns of the spec, remove it from the "
                    "export, or set contract.unknown_columns: ignore",
                )
            )
    if raw.empty:
        problems.append(("no_rows", None, "the file has a header but no rows (rule 'no_rows'); land a batch with data"))
    return problems


def _wrong_typed_columns(raw: pd.DataFrame, typed: pd.DataFrame, spec: ModelSpec) -> list[tuple[str, str | None, str]]:
    """Columns where not a single present value converts: the export's types are wrong."""
    problems = []
    for name, col in spec.contract.columns.items():
        present = raw[name].notna()
        if present.any() and typed.loc[present, name].isna().all():
            first = int(np.flatnonzero(present.to_numpy(dtype=bool))[0]) + 1
            problems.append(
                (
                    "column_type",
                    name,
                    f"column '{name}' holds no value of type {col.type.value} (the first one is in row "
                    f"{first} of the raw copy) (rule 'column_type'); fix the export or the contract type",
                )
            )
    return problems


def _rejected(path: Path, failures: _Failures, problems, rows_read: int, columns) -> ContractResult:
    """The result for a batch that fails as a whole: no valid rows, every problem recorded."""
    for rule, column, message in problems:
        failures.add(rule, message, column=column)
    messages = [f"{path.name}: {message}" for _, _, message in problems]
    return ContractResult(pd.DataFrame(columns=list(columns)), failures.frame(), messages, rows_read)


def apply_contract(path: Path, spec: ModelSpec, batch: str = "", hasher: IdHash | None = None) -> ContractResult:
    """Read a landed batch and split it into typed valid rows and quarantine entries.

    ``hasher`` (``store.predictions.IdHasher``) turns each quarantined record's id into its
    keyed hash; without one the quarantine names no record.
    """
    failures = _Failures(file=path.name, batch=batch, sha256=sha256_of(path), model=spec.name, hasher=hasher)
    bad_lines: list[list[str]] = []
    columns = spec.contract.columns
    try:
        raw = read_batch(path, bad_lines)
    except BatchReadError as exc:
        return _rejected(path, failures, [("unreadable", None, f"{exc} (rule 'unreadable')")], 0, columns)

    problems = _batch_problems(raw, spec)
    if problems:
        return _rejected(path, failures, problems, len(raw), columns)

    raw = raw[list(columns)].reset_index(drop=True)
    typed = pd.DataFrame({name: _coerce(raw[name], col) for name, col in columns.items()})
    problems = _wrong_typed_columns(raw, typed, spec)
    if problems:
        return _rejected(path, failures, problems, len(raw), columns)

    cells = _failed_cells(raw, typed, spec, check_encoding=not _is_utf8(path))
    row_lines, long_lines = record_lines(path) if (cells or bad_lines) and _is_csv(path) else ([], [])
    bad = _quarantine_rows(raw, cells, spec, failures, row_lines)
    for index, fields in enumerate(bad_lines):
        line = long_lines[index] if index < len(long_lines) else None
        failures.add(
            "malformed_line",
            f"line {line}: has more fields than the header ({len(fields)} vs {len(raw.columns)}) "
            "and breaks rule 'malformed_line'; fix the quoting or delimiters in the export",
            line=line,
        )
    valid = typed.loc[~bad].reset_index(drop=True)
    return ContractResult(valid, failures.frame(), [], len(raw) + len(bad_lines), failures.sha256)


def _is_csv(path: Path) -> bool:
    return SUPPORTED_SUFFIXES.get(path.suffix.lower()) == "csv"


def _failed_cells(
    raw: pd.DataFrame, typed: pd.DataFrame, spec: ModelSpec, check_encoding: bool
) -> dict[tuple[int, str], str]:
    """The rule each failing cell (row index, column) breaks: one rule per cell."""
    cells: dict[tuple[int, str], str] = {}
    for name, col in spec.contract.columns.items():
        for row in np.flatnonzero(_type_failures(raw[name], typed[name], col)):
            cells[(row, name)] = "type"
        if check_encoding and raw[name].dtype == object:
            undecodable = raw[name].str.contains(_SURROGATES, regex=True, na=False)
            for row in np.flatnonzero(undecodable.to_numpy(dtype=bool)):
                cells[(row, name)] = "encoding"
    try:
        _schema(spec).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.dropna(subset=["index"])
        for row, name, check in cases[["index", "column", "check"]].itertuples(index=False):
            # A value that failed to convert is reported once, as a type failure.
            cells.setdefault((int(row), name), _RULE_NAMES.get(check, check))
    return cells


def _quarantine_rows(
    raw: pd.DataFrame, cells: dict[tuple[int, str], str], spec: ModelSpec, failures: _Failures, lines: list[int]
) -> pd.Series:
    """One quarantine entry per failing cell (a pointer, the hashed id); the mask of rows failing any rule."""
    columns = spec.contract.columns
    bad = np.zeros(len(raw), dtype=bool)
    id_col = spec.contract.id_column
    for (row, name), rule in sorted(cells.items()):
        bad[row] = True
        line = lines[row] if row < len(lines) else None
        where = f"row {row + 1} (line {line})" if line is not None else f"row {row + 1}"
        failures.add(
            rule,
            f"{where}: {rule_message(name, columns[name], rule)}",
            column=name,
            row=row + 1,
            line=line,
            record_id=raw.at[row, id_col] if id_col in raw.columns else None,
        )
    return pd.Series(bad)
