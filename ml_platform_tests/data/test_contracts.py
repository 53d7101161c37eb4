"""The bad-input corpus for data contracts (`ml_platform/data/contracts.py`).

Each case lands one broken file against the readmission contract and checks where it
goes: a batch problem rejects the whole file (nothing valid, one quarantine entry per
problem), a row problem quarantines only the rows concerned with the rule, the column, a
pointer to the raw row and the record id's keyed hash (never the value or a copy of the
record), and every other row comes out valid and typed. Every message must name the
file, the column (when there is one) and the rule.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.contracts import (
    QUARANTINE_COLUMNS,
    ContractResult,
    apply_contract,
)
from ml_platform.data.raw import sha256_of
from ml_platform.data.synthetic import generate_readmission
from ml_platform.spec import SHIPPED_SPECS_DIR, ColumnType, ModelSpec, get_spec
from ml_platform.store.predictions import IdHasher

HASHER = IdHasher(b"test-key-for-identifier-hashes-0123456789")

N_ROWS = 200
ROW_RULES = {
    "min",
    "max",
    "allowed",
    "not_null",
    "type",
    "unique",
    "encoding",
    "malformed_line",
}
BATCH_RULES = {
    "unreadable",
    "no_rows",
    "missing_column",
    "unknown_column",
    "column_type",
}


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return get_spec("readmission_risk", SHIPPED_SPECS_DIR)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return generate_readmission(N_ROWS, seed=1)


@pytest.fixture
def df(rows: pd.DataFrame) -> pd.DataFrame:
    # Widened to object so a test can write any bad value into any cell.
    return rows.astype(object).copy()


def land_csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def check_messages(result: ContractResult, file_name: str) -> None:
    """Every failure names the file, its column (when there is one) and its rule."""
    assert list(result.quarantine.columns) == QUARANTINE_COLUMNS
    for entry in result.quarantine.itertuples(index=False):
        assert entry.rule in ROW_RULES | BATCH_RULES, entry.rule
        assert entry.source_file == file_name
        assert entry.message.startswith(f"{file_name}: "), entry.message
        assert f"'{entry.rule}'" in entry.message, entry.message
        if not pd.isna(entry.column):
            assert f"'{entry.column}'" in entry.message, entry.message
    for problem in result.batch_problems:
        assert problem.startswith(f"{file_name}: "), problem


def assert_rejected(result: ContractResult, file_name: str, expected: list[tuple[str, str | None]]) -> None:
    """A batch-level failure: nothing valid, one quarantine entry per (rule, column)."""
    assert not result.passed
    assert result.valid.empty
    assert len(result.batch_problems) == len(expected)
    got = [(e.rule, None if pd.isna(e.column) else e.column) for e in result.quarantine.itertuples(index=False)]
    assert got == expected
    assert result.quarantine["row"].isna().all()
    check_messages(result, file_name)


def assert_rows_quarantined(
    result: ContractResult,
    file_name: str,
    expected: dict[int, set[tuple[str, str]]],
    n_rows: int = N_ROWS,
) -> None:
    """A row-level failure: the batch passes, exactly the given 0-based rows are quarantined
    with the given (rule, column) pairs, and every other row is valid."""
    assert result.passed, result.batch_problems
    assert result.batch_problems == []
    assert result.rows_read == n_rows
    got: dict[int, set[tuple[str, str]]] = {}
    for entry in result.quarantine.itertuples(index=False):
        got.setdefault(int(entry.row) - 1, set()).add((entry.rule, entry.column))
    assert got == expected
    assert len(result.valid) == n_rows - len(expected)
    assert result.quarantine["batch"].eq("batch_0001").all()
    check_messages(result, file_name)


def raw_line(path: Path, line: int) -> bytes:
    """Line ``line`` (1-based) of a file, as bytes: where a quarantine pointer leads."""
    return path.read_bytes().split(b"\n")[line - 1]


def valid_ids(result: ContractResult) -> set[str]:
    return set(result.valid["encounter_id"])


# --------------------------------------------------------------------------- #
# Happy paths
# --------------------------------------------------------------------------- #
def test_happy_path_csv(tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec) -> None:
    result = apply_contract(land_csv(rows, tmp_path / "batch.csv"), spec, batch="batch_0001")
    assert result.passed
    assert result.batch_problems == []
    assert result.rows_read == N_ROWS
    assert len(result.valid) == N_ROWS
    assert result.quarantine.empty
    assert list(result.quarantine.columns) == QUARANTINE_COLUMNS
    assert result.counts_by_rule() == {}
    assert list(result.valid.columns) == list(spec.contract.columns)
    for name, col in spec.contract.columns.items():
        dtype = result.valid[name].dtype
        if col.type.is_numeric:
            assert dtype == np.float64, name
        elif col.type == ColumnType.date:
            assert pd.api.types.is_datetime64_any_dtype(dtype), name
        else:
            assert pd.api.types.is_string_dtype(dtype), name
    # Values survive the round trip.
    assert result.valid["encounter_id"].tolist() == rows["encounter_id"].tolist()
    np.testing.assert_allclose(result.valid["glucose"], rows["glucose"].astype(float))
    np.testing.assert_array_equal(result.valid["age"], rows["age"].astype(float))
    assert (result.valid["admit_date"] == pd.to_datetime(rows["admit_date"])).all()


def test_parquet_gives_the_same_valid_rows_as_csv(tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec) -> None:
    from_csv = apply_contract(land_csv(rows, tmp_path / "batch.csv"), spec)
    parquet = tmp_path / "batch.parquet"
    rows.to_parquet(parquet)
    from_parquet = apply_contract(parquet, spec)
    assert from_parquet.passed
    assert from_parquet.rows_read == N_ROWS
    assert from_parquet.quarantine.empty
    pd.testing.assert_frame_equal(from_parquet.valid, from_csv.valid)


def test_row_problems_in_parquet_are_quarantined(tmp_path: Path, df: pd.DataFrame, spec: ModelSpec) -> None:
    df["age"] = df["age"].astype(float)
    df.loc[3, "age"] = 240.0
    path = tmp_path / "batch.parquet"
    df.to_parquet(path)
    result = apply_contract(path, spec, batch="batch_0001")
    assert_rows_quarantined(result, "batch.parquet", {3: {("max", "age")}})


# --------------------------------------------------------------------------- #
# Batch-level problems: the whole file is rejected
# --------------------------------------------------------------------------- #
def test_empty_file(tmp_path: Path, spec: ModelSpec) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    result = apply_contract(path, spec)
    assert_rejected(result, "empty.csv", [("unreadable", None)])
    assert result.rows_read == 0
    assert "empty (0 bytes)" in result.batch_problems[0]


def test_file_with_only_a_blank_line(tmp_path: Path, spec: ModelSpec) -> None:
    path = tmp_path / "blank.csv"
    path.write_bytes(b"\n")
    result = apply_contract(path, spec)
    assert_rejected(result, "blank.csv", [("unreadable", None)])
    assert "no header line" in result.batch_problems[0]


def test_header_only(tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec) -> None:
    result = apply_contract(land_csv(rows.head(0), tmp_path / "header.csv"), spec)
    assert_rejected(result, "header.csv", [("no_rows", None)])
    assert result.rows_read == 0
    assert "header but no rows" in result.batch_problems[0]


def test_missing_required_column(tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec) -> None:
    result = apply_contract(land_csv(rows.drop(columns="age"), tmp_path / "no_age.csv"), spec)
    assert_rejected(result, "no_age.csv", [("missing_column", "age")])
    assert result.rows_read == N_ROWS
    assert "required column 'age' is missing" in result.batch_problems[0]
    assert "readmission_risk" in result.batch_problems[0]


def test_unknown_extra_column_is_rejected(tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec) -> None:
    path = land_csv(rows.assign(favourite_colour="blue"), tmp_path / "extra.csv")
    result = apply_contract(path, spec)
    assert_rejected(result, "extra.csv", [("unknown_column", "favourite_colour")])
    assert "unknown_columns: ignore" in result.batch_problems[0]  # the fix is named


def test_unknown_extra_column_is_dropped_when_ignored(tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec) -> None:
    lenient = spec.model_copy(update={"contract": spec.contract.model_copy(update={"unknown_columns": "ignore"})})
    path = land_csv(rows.assign(favourite_colour="blue"), tmp_path / "extra.csv")
    result = apply_contract(path, lenient)
    assert result.passed
    assert len(result.valid) == N_ROWS
    assert result.quarantine.empty
    assert "favourite_colour" not in result.valid.columns
    assert list(result.valid.columns) == list(spec.contract.columns)


def test_several_batch_problems_are_all_reported(tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec) -> None:
    path = land_csv(
        rows.drop(columns=["age", "sex"]).assign(favourite_colour="blue"),
        tmp_path / "shape.csv",
    )
    result = apply_contract(path, spec)
    assert_rejected(
        result,
        "shape.csv",
        [
            ("missing_column", "age"),
            ("missing_column", "sex"),
            ("unknown_column", "favourite_colour"),
        ],
    )


def test_whole_column_of_the_wrong_type(tmp_path: Path, df: pd.DataFrame, spec: ModelSpec) -> None:
    df["glucose"] = "high"
    result = apply_contract(land_csv(df, tmp_path / "text_glucose.csv"), spec)
    assert_rejected(result, "text_glucose.csv", [("column_type", "glucose")])
    assert "no value of type float" in result.batch_problems[0]
    assert "high" not in result.batch_problems[0]  # the value is not repeated: the row says where it is
    assert "row 1 of the raw copy" in result.batch_problems[0]


def test_json_file_is_unreadable(tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec) -> None:
    path = tmp_path / "batch.json"
    rows.to_json(path)
    result = apply_contract(path, spec)
    assert_rejected(result, "batch.json", [("unreadable", None)])
    assert "'.json' is not a supported format" in result.batch_problems[0]
    assert ".csv or .parquet" in result.batch_problems[0]


def test_random_bytes_named_parquet_are_unreadable(tmp_path: Path, spec: ModelSpec) -> None:
    path = tmp_path / "batch.parquet"
    path.write_bytes(np.random.default_rng(0).bytes(2048))
    result = apply_contract(path, spec)
    assert_rejected(result, "batch.parquet", [("unreadable", None)])
    assert "not a readable Parquet file" in result.batch_problems[0]


def test_file_without_extension_is_unreadable(tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec) -> None:
    result = apply_contract(land_csv(rows, tmp_path / "batch"), spec)
    assert_rejected(result, "batch", [("unreadable", None)])
    assert "'no extension' is not a supported format" in result.batch_problems[0]


# --------------------------------------------------------------------------- #
# Row-level problems: only the rows concerned are quarantined
# --------------------------------------------------------------------------- #
def test_wrong_type_in_one_row(tmp_path: Path, df: pd.DataFrame, rows: pd.DataFrame, spec: ModelSpec) -> None:
    df.loc[5, "glucose"] = "n/a"
    path = land_csv(df, tmp_path / "batch.csv")
    result = apply_contract(path, spec, batch="batch_0001", hasher=HASHER)
    assert_rows_quarantined(result, "batch.csv", {5: {("type", "glucose")}})
    entry = result.quarantine.iloc[0]
    encounter = rows.loc[5, "encounter_id"]
    assert entry["record_hash"] == HASHER(spec.name, encounter)
    assert "row 6 (line 7)" in entry["message"]
    assert "must be of type float" in entry["message"]
    assert "n/a" not in entry["message"] and encounter not in "".join(map(str, entry.tolist()))
    # The pointer leads back to the row: the raw file's bytes, line 7.
    assert (entry["raw_sha256"], entry["line"]) == (sha256_of(path), 7)
    assert raw_line(path, 7).startswith(encounter.encode())
    assert rows.loc[5, "encounter_id"] not in valid_ids(result)
    assert result.valid["glucose"].notna().all()


def test_non_integer_in_integer_column(tmp_path: Path, df: pd.DataFrame, spec: ModelSpec) -> None:
    df.loc[2, "length_of_stay"] = 2.5
    result = apply_contract(land_csv(df, tmp_path / "batch.csv"), spec, batch="batch_0001")
    assert_rows_quarantined(result, "batch.csv", {2: {("type", "length_of_stay")}})
    assert "must be of type integer" in result.quarantine["message"].iloc[0]


@pytest.mark.parametrize(
    ("age", "rule", "expected"),
    [(240, "max", "must be <= 100"), (-4, "min", "must be >= 18")],
)
def test_out_of_range(
    tmp_path: Path,
    df: pd.DataFrame,
    spec: ModelSpec,
    age: int,
    rule: str,
    expected: str,
) -> None:
    df.loc[7, "age"] = age
    result = apply_contract(land_csv(df, tmp_path / "batch.csv"), spec, batch="batch_0001")
    assert_rows_quarantined(result, "batch.csv", {7: {(rule, "age")}})
    entry = result.quarantine.iloc[0]
    assert str(age) not in entry["message"]
    assert expected in entry["message"]
    assert result.valid["age"].between(18, 100).all()


def test_disallowed_category(tmp_path: Path, df: pd.DataFrame, spec: ModelSpec) -> None:
    df.loc[9, "sex"] = "X?"
    result = apply_contract(land_csv(df, tmp_path / "batch.csv"), spec, batch="batch_0001")
    assert_rows_quarantined(result, "batch.csv", {9: {("allowed", "sex")}})
    entry = result.quarantine.iloc[0]
    assert "X?" not in entry["message"]
    assert "must be one of ['F', 'M']" in entry["message"]
    assert set(result.valid["sex"]) == {"F", "M"}


def test_missing_target(tmp_path: Path, df: pd.DataFrame, spec: ModelSpec) -> None:
    df.loc[10, "readmitted_30d"] = None
    result = apply_contract(land_csv(df, tmp_path / "batch.csv"), spec, batch="batch_0001")
    assert_rows_quarantined(result, "batch.csv", {10: {("not_null", "readmitted_30d")}})
    assert "must not be missing" in result.quarantine["message"].iloc[0]
    assert result.valid["readmitted_30d"].isin([0.0, 1.0]).all()


def test_missing_value_in_nullable_column_is_valid(tmp_path: Path, df: pd.DataFrame, spec: ModelSpec) -> None:
    df.loc[[1, 4], "hba1c"] = None
    result = apply_contract(land_csv(df, tmp_path / "batch.csv"), spec)
    assert result.passed
    assert result.quarantine.empty
    assert len(result.valid) == N_ROWS
    assert result.valid["hba1c"].isna().sum() == 2


def test_duplicate_ids_quarantine_every_row_sharing_the_id(
    tmp_path: Path, df: pd.DataFrame, rows: pd.DataFrame, spec: ModelSpec
) -> None:
    df.loc[12, "encounter_id"] = df.loc[11, "encounter_id"]
    result = apply_contract(land_csv(df, tmp_path / "batch.csv"), spec, batch="batch_0001", hasher=HASHER)
    assert_rows_quarantined(
        result,
        "batch.csv",
        {11: {("unique", "encounter_id")}, 12: {("unique", "encounter_id")}},
    )
    assert result.quarantine["record_hash"].eq(HASHER(spec.name, rows.loc[11, "encounter_id"])).all()
    assert "appears more than once" in result.quarantine["message"].iloc[0]
    assert rows.loc[11, "encounter_id"] not in valid_ids(result)
    assert result.valid["encounter_id"].is_unique


def test_non_utf8_bytes(tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec) -> None:
    path = land_csv(rows, tmp_path / "batch.csv")
    patient = rows.loc[3, "patient_id"].encode()
    data = path.read_bytes()
    assert data.count(patient) == 1
    path.write_bytes(data.replace(patient, b"\xff\xfe"))
    result = apply_contract(path, spec, batch="batch_0001")
    assert_rows_quarantined(result, "batch.csv", {3: {("encoding", "patient_id")}})
    entry = result.quarantine.iloc[0]
    assert "not valid UTF-8" in entry["message"]
    assert b"\xff\xfe" in raw_line(path, entry["line"])  # the bytes are where the pointer says
    assert valid_ids(result) == set(rows["encounter_id"]) - {rows.loc[3, "encounter_id"]}


def test_non_utf8_bytes_in_a_numeric_cell_are_an_encoding_problem(
    tmp_path: Path, df: pd.DataFrame, spec: ModelSpec
) -> None:
    df.loc[4, "glucose"] = "GLUCOSE_PLACEHOLDER"
    path = land_csv(df, tmp_path / "batch.csv")
    path.write_bytes(path.read_bytes().replace(b"GLUCOSE_PLACEHOLDER", b"1\xff2"))
    result = apply_contract(path, spec, batch="batch_0001")
    assert_rows_quarantined(result, "batch.csv", {4: {("encoding", "glucose")}})
    assert b"1\xff2" in raw_line(path, result.quarantine["line"].iloc[0])


def test_truncated_last_line(tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec) -> None:
    path = land_csv(rows, tmp_path / "batch.csv")
    data = path.read_bytes()
    last_line = data.rstrip(b"\n").rsplit(b"\n", 1)[1]
    assert last_line.startswith(rows["encounter_id"].iloc[-1].encode())
    path.write_bytes(data[: len(data) - 1 - len(last_line) // 2])  # cut mid-row, no final newline
    result = apply_contract(path, spec, batch="batch_0001", hasher=HASHER)
    assert result.passed
    assert result.rows_read == N_ROWS
    assert len(result.valid) == N_ROWS - 1
    assert result.quarantine["row"].eq(N_ROWS).all()
    assert result.quarantine["record_hash"].eq(HASHER(spec.name, rows["encounter_id"].iloc[-1])).all()
    assert result.quarantine["line"].eq(N_ROWS + 1).all()
    assert ("not_null", "readmitted_30d") in set(zip(result.quarantine["rule"], result.quarantine["column"]))
    assert valid_ids(result) == set(rows["encounter_id"].iloc[:-1])
    check_messages(result, "batch.csv")


def test_line_with_too_many_fields(tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec) -> None:
    path = land_csv(rows, tmp_path / "batch.csv")
    lines = path.read_text().splitlines()
    lines[11] += ",extra,fields"  # data row 11 (0-based 10)
    path.write_text("\n".join(lines) + "\n")
    result = apply_contract(path, spec, batch="batch_0001")
    assert result.passed
    assert result.rows_read == N_ROWS
    assert len(result.valid) == N_ROWS - 1
    assert valid_ids(result) == set(rows["encounter_id"]) - {rows.loc[10, "encounter_id"]}
    assert result.counts_by_rule() == {"malformed_line": 1}
    entry = result.quarantine.iloc[0]
    assert entry["line"] == 12 and raw_line(path, 12).decode() == lines[11]  # a pointer, not a copy
    assert "extra" not in entry["message"]
    assert "more fields than the header" in entry["message"]
    assert entry["message"].startswith("batch.csv: ")
    assert "'malformed_line'" in entry["message"]


def test_leading_spaces_are_read_the_same_with_or_without_a_malformed_line(
    tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec
) -> None:
    path = land_csv(rows, tmp_path / "batch.csv")
    lines = path.read_text().splitlines()
    lines = [lines[0], *(line.replace(",M,", ", M,", 1) for line in lines[1:])]
    path.write_text("\n".join(lines) + "\n")
    clean = apply_contract(path, spec)
    assert clean.passed and clean.quarantine.empty

    lines[11] += ",extra"
    path.write_text("\n".join(lines) + "\n")
    result = apply_contract(path, spec)
    assert result.counts_by_rule() == {"malformed_line": 1}
    assert len(result.valid) == N_ROWS - 1


def test_one_row_breaking_several_rules_is_quarantined_once_per_cell(
    tmp_path: Path, df: pd.DataFrame, spec: ModelSpec
) -> None:
    df.loc[0, "age"] = 240
    df.loc[0, "sex"] = "X?"
    df.loc[0, "glucose"] = "n/a"
    result = apply_contract(land_csv(df, tmp_path / "batch.csv"), spec, batch="batch_0001")
    assert_rows_quarantined(
        result,
        "batch.csv",
        {0: {("max", "age"), ("allowed", "sex"), ("type", "glucose")}},
    )
    assert len(result.quarantine) == 3


# --------------------------------------------------------------------------- #
# The corrupt_share knob of the generator
# --------------------------------------------------------------------------- #
def breaks_contract(raw: pd.DataFrame, spec: ModelSpec) -> pd.Series:
    """An independent restatement of the row rules, on the file read back as text."""
    bad = pd.Series(False, index=raw.index)
    for name, col in spec.contract.columns.items():
        values = raw[name]
        present = values.notna()
        if not col.nullable:
            bad |= ~present
        if col.type.is_numeric:
            number = pd.to_numeric(values, errors="coerce")
            bad |= present & number.isna()
            if col.type == ColumnType.integer:
                bad |= number.notna() & (number % 1 != 0)
            if col.min is not None:
                bad |= number < col.min
            if col.max is not None:
                bad |= number > col.max
            if col.allowed is not None:
                bad |= number.notna() & ~number.isin(col.allowed)
        elif col.allowed is not None:
            bad |= present & ~values.isin([str(a) for a in col.allowed])
        if col.unique:
            bad |= present & values.duplicated(keep=False)
    return bad


def test_corrupt_share_quarantines_about_that_share(tmp_path: Path, spec: ModelSpec) -> None:
    n, share = 2000, 0.05
    path = land_csv(generate_readmission(n, seed=3, corrupt_share=share), tmp_path / "corrupt.csv")
    result = apply_contract(path, spec, batch="batch_0001")
    assert result.passed
    assert result.rows_read == n
    check_messages(result, "corrupt.csv")

    quarantined_rows = set(result.quarantine["row"].astype(int) - 1)
    # round(0.05 * 2000) = 100 rows get one defect each; a duplicated id also quarantines
    # the clean row it was copied from, so the share is 5% plus up to a fifth of that.
    assert 0.05 * n <= len(quarantined_rows) <= 0.065 * n
    assert len(result.valid) == n - len(quarantined_rows)
    assert set(result.counts_by_rule()) == {
        "min",
        "max",
        "allowed",
        "not_null",
        "type",
        "unique",
    }

    # Exactly the rows that break a rule are quarantined (independent restatement of the rules).
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    expected_bad = breaks_contract(raw, spec)
    assert quarantined_rows == set(np.flatnonzero(expected_bad))
    assert set(result.valid["encounter_id"]) == set(raw.loc[~expected_bad, "encounter_id"])

    # No valid row breaks any contract rule.
    valid = result.valid
    for name, col in spec.contract.columns.items():
        if not col.nullable:
            assert valid[name].notna().all(), name
        present = valid[name].dropna()
        if col.min is not None:
            assert (present >= col.min).all(), name
        if col.max is not None:
            assert (present <= col.max).all(), name
        if col.type == ColumnType.integer:
            assert (present % 1 == 0).all(), name
        if col.allowed is not None:
            allowed = col.allowed if col.type.is_numeric else [str(a) for a in col.allowed]
            assert present.isin(allowed).all(), name
        if col.unique:
            assert valid[name].is_unique, name


def test_quarantine_frame_types(tmp_path: Path, df: pd.DataFrame, spec: ModelSpec) -> None:
    df.loc[7, "age"] = 240
    result = apply_contract(land_csv(df, tmp_path / "batch.csv"), spec, batch="batch_0001")
    q = result.quarantine
    assert str(q["row"].dtype) == "Int64" and str(q["line"].dtype) == "Int64"
    for name in QUARANTINE_COLUMNS:
        if name not in ("row", "line"):
            assert pd.api.types.is_string_dtype(q[name].dtype), name
    assert result.counts_by_rule() == {"max": 1}


def test_source_file_is_the_file_name_not_the_path(tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec) -> None:
    folder = tmp_path / "landing" / "readmission_risk"
    folder.mkdir(parents=True)
    path = land_csv(rows.drop(columns="sex"), folder / "batch_0007.csv")
    result = apply_contract(path, spec, batch="batch_0007")
    assert result.quarantine["source_file"].tolist() == ["batch_0007.csv"]
    assert result.quarantine["batch"].tolist() == ["batch_0007"]
    assert str(folder) not in result.batch_problems[0]
    assert os.sep not in result.quarantine["message"].iloc[0].split(":")[0]


def test_a_file_without_its_header_line_does_not_repeat_the_first_row(
    tmp_path: Path, rows: pd.DataFrame, spec: ModelSpec
) -> None:
    path = tmp_path / "no_header.csv"
    rows.to_csv(path, index=False, header=False)  # the first patient's values become the "column names"
    result = apply_contract(path, spec)
    assert not result.passed
    text = " ".join(result.batch_problems) + " ".join(result.quarantine["message"])
    assert "header line missing" in text
    for value in rows.iloc[0].astype(str):
        assert f"'{value}'" not in text
