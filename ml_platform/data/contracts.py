"""Data contracts: read a landed batch and split it into valid rows and quarantine.

Two levels of failure, because they call for different actions:

* a **batch problem** (unreadable file, no rows, missing or unknown columns, a column
  of the wrong type) means the file as a whole does not match the contract: nothing
  from it is used, and the blocking schema check says why;
* a **row problem** (a value out of range, not allowed, missing, unparsable, a
  duplicated id, undecodable bytes, a malformed line) sends just that row to
  quarantine, with the rule, the column and the value, and the rest flows on.

Every message names the file, the column and the rule, so a data engineer can fix the
export without reading Python.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from ml_platform.spec import Column, ColumnType, ModelSpec

NA_VALUES = ["", "NA", "NaN", "nan", "null", "NULL", "None"]
QUARANTINE_COLUMNS = ["batch", "source_file", "row", "record_id", "column", "rule", "value", "message", "record"]
SUPPORTED_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class ContractResult:
    """The outcome of applying a contract to one batch."""

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    batch_problems: list[str] = field(default_factory=list)
    rows_read: int = 0

    @property
    def passed(self) -> bool:
        return not self.batch_problems

    def counts_by_rule(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.quarantine["rule"].value_counts().sort_index().items()}


@dataclass
class _Failures:
    """Collects quarantine entries while a batch is checked."""

    file: str
    batch: str
    records: list[dict] = field(default_factory=list)

    def add(
        self,
        rule: str,
        message: str,
        column: str | None = None,
        row: int | None = None,
        record_id: str | None = None,
        value: object = None,
        record: str | None = None,
    ) -> None:
        self.records.append(
            {
                "batch": self.batch,
                "source_file": self.file,
                "row": row,
                "record_id": record_id,
                "column": column,
                "rule": rule,
                "value": None if value is None or pd.isna(value) else printable(value),
                "message": f"{self.file}: {message}",
                "record": record,
            }
        )

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.records, columns=QUARANTINE_COLUMNS)
        return frame.astype({"row": "Int64"}).astype({c: "string" for c in QUARANTINE_COLUMNS if c != "row"})


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


def _csv_line(fields: list[str]) -> str:
    """The fields written back as one CSV line, quoting kept."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(fields)
    return buffer.getvalue().rstrip("\r\n")


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


def rule_message(name: str, col: Column, rule: str, value: object) -> str:
    expected = {
        "min": lambda: f"must be >= {col.min:g}",
        "max": lambda: f"must be <= {col.max:g}",
        "allowed": lambda: f"must be one of {col.allowed}",
        "not_null": lambda: "must not be missing",
        "unique": lambda: "must be unique, but the id appears more than once in the batch",
        "type": lambda: f"must be of type {col.type.value}",
        "encoding": lambda: "holds bytes that are not valid UTF-8; re-export the file as UTF-8",
    }[rule]()
    return f"column '{name}' value {printable(value)!r} breaks rule '{rule}': {expected}"


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
    if contract.unknown_columns == "reject":
        for name in raw.columns:
            if name not in contract.columns and name not in twins.values():
                problems.append(
                    (
                        "unknown_column",
                        str(name),
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
            example = printable(raw.loc[present, name].iloc[0])
            problems.append(
                (
                    "column_type",
                    name,
                    f"column '{name}' holds no value of type {col.type.value} "
                    f"(e.g. {example!r}) (rule 'column_type'); fix the export or the contract type",
                )
            )
    return problems


def _rejected(path: Path, failures: _Failures, problems, rows_read: int, columns) -> ContractResult:
    """The result for a batch that fails as a whole: no valid rows, every problem recorded."""
    for rule, column, message in problems:
        failures.add(rule, message, column=column)
    messages = [f"{path.name}: {message}" for _, _, message in problems]
    return ContractResult(pd.DataFrame(columns=list(columns)), failures.frame(), messages, rows_read)


def apply_contract(path: Path, spec: ModelSpec, batch: str = "") -> ContractResult:
    """Read a landed batch and split it into typed valid rows and quarantine entries."""
    failures = _Failures(file=path.name, batch=batch)
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

    bad = _row_failures(raw, typed, spec, failures, check_encoding=not _is_utf8(path))
    for fields in bad_lines:
        text = _csv_line(fields)
        failures.add(
            "malformed_line",
            f"a line has more fields than the header ({len(fields)} vs {len(raw.columns)}) "
            f"and breaks rule 'malformed_line' ({text[:80]!r}); fix the quoting or delimiters in the export",
            value=text,
            record=json.dumps([printable(f) for f in fields]),
        )
    valid = typed.loc[~bad].reset_index(drop=True)
    return ContractResult(valid, failures.frame(), [], len(raw) + len(bad_lines))


def _row_failures(
    raw: pd.DataFrame, typed: pd.DataFrame, spec: ModelSpec, failures: _Failures, check_encoding: bool
) -> pd.Series:
    """Record every failing cell; return the mask of rows that fail at least one rule."""
    columns = spec.contract.columns
    cells: dict[tuple[int, str], tuple[str, object]] = {}
    for name, col in columns.items():
        for row in np.flatnonzero(_type_failures(raw[name], typed[name], col)):
            cells[(row, name)] = ("type", raw.at[row, name])
        if check_encoding and raw[name].dtype == object:
            undecodable = raw[name].str.contains(_SURROGATES, regex=True, na=False)
            for row in np.flatnonzero(undecodable.to_numpy(dtype=bool)):
                cells[(row, name)] = ("encoding", raw.at[row, name])
    try:
        _schema(spec).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.dropna(subset=["index"])
        for row, name, check, value in cases[["index", "column", "check", "failure_case"]].itertuples(index=False):
            # A value that failed to convert is reported once, as a type failure.
            cells.setdefault((int(row), name), (_RULE_NAMES.get(check, check), raw.at[int(row), name]))
    bad = np.zeros(len(raw), dtype=bool)
    id_col = spec.contract.id_column
    for (row, name), (rule, value) in sorted(cells.items()):
        bad[row] = True
        record = raw.iloc[row].to_dict()
        failures.add(
            rule,
            f"row {row + 1}: {rule_message(name, columns[name], rule, value)}",
            column=name,
            row=row + 1,
            record_id=printable(record.get(id_col)),
            value=value,
            record=json.dumps({k: None if pd.isna(v) else printable(v) for k, v in record.items()}),
        )
    return pd.Series(bad)
