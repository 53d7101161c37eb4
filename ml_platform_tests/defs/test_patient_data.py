"""Minimum necessary patient data through the real batch graph.

A batch with known identifiers and a distinctive out-of-range value is landed and run
through raw_batches -> validated_records/quarantine -> features, as the sensor would. The
quarantine table, every Dagster event of the run (metadata, check results, messages), the
audit trail's details and the captured logs must hold neither the identifiers nor the
value, while the quarantine's pointer (raw file digest + line) leads back to the raw row
and its keyed hash joins to the id for whoever holds the key.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from ml_platform.data.raw import batch_key, raw_copy_path, sha256_of
from ml_platform.data.synthetic import generate_readmission
from ml_platform.governance.audit import AuditTrail
from ml_platform.settings import database_url
from ml_platform.spec import get_spec
from ml_platform.store.database import engine_for
from ml_platform.store.lake import Lake
from ml_platform.store.predictions import IdHasher, id_hash_key
from ml_platform_tests.conftest import Platform

MODEL = "readmission_risk"
SECRET_ID = "ENC-SECRET-42"
SECRET_PATIENT = "PAT-SECRET-42"
VALID_ID = "ENC-VALID-77"  # a row that passes: its id must not surface either
AGE = 18765  # out of range and distinctive: no timestamp, count or digest of the run contains it as a number
BAD_ROW = 3  # 0-based data row: line 5 of the file (header is line 1)


def leaks(text: str) -> list[str]:
    """The secrets found in ``text``; the age as a number of its own (not inside a hex digest or another number)."""
    found = [s for s in (SECRET_ID, SECRET_PATIENT, VALID_ID) if s in text]
    if re.search(rf"(?<![\w.]){AGE}(?![\w.])", text):
        found.append(str(AGE))
    return found


@pytest.fixture
def landed(home: Path) -> tuple[str, Path]:
    """One batch of 40 rows with the secrets in it, in the landing folder; its batch key and file."""
    rows = generate_readmission(40, seed=11)
    rows.loc[BAD_ROW, ["encounter_id", "patient_id", "age"]] = [SECRET_ID, SECRET_PATIENT, AGE]
    rows.loc[BAD_ROW + 1, "encounter_id"] = VALID_ID
    folder = get_spec(MODEL).landing_dir(home)
    folder.mkdir(parents=True)
    path = folder / "batch_phi.csv"
    rows.to_csv(path, index=False)
    assert leaks(path.read_text()) == [SECRET_ID, SECRET_PATIENT, VALID_ID, str(AGE)]  # the detector works
    return batch_key(path.name, sha256_of(path)), path


@pytest.fixture
def run(platform: Platform, landed, caplog, capfd):
    """The batch run through the real graph, with every log line captured."""
    key, _ = landed
    caplog.set_level(logging.DEBUG)
    platform.register(MODEL, [key])
    result = platform.run_batch(MODEL, key)
    assert result.success
    captured = capfd.readouterr()
    return key, result, caplog.text + captured.out + captured.err


def test_quarantine_points_to_the_raw_row_and_copies_nothing(platform: Platform, landed, run):
    key, _, _ = run
    lake = Lake(home=str(platform.home))
    quarantine = lake.read_table(MODEL, "quarantine", key)
    assert "value" not in quarantine and "record" not in quarantine
    assert leaks(quarantine.to_csv()) == []
    [entry] = quarantine[quarantine["column"] == "age"].to_dict("records")
    assert entry["rule"] == "max" and "must be <= 100" in entry["message"]
    # The pointer leads back: the raw copy with that digest, at that line, holds the row.
    raw = raw_copy_path(lake, get_spec(MODEL), key)
    assert entry["raw_sha256"] == sha256_of(raw)
    assert (entry["row"], entry["line"]) == (BAD_ROW + 1, BAD_ROW + 2)
    line = raw.read_text().splitlines()[entry["line"] - 1]
    assert line.startswith(f"{SECRET_ID},{SECRET_PATIENT},") and f",{AGE}," in line
    # Whoever holds the identifier key can still join: the prediction log's keyed hash.
    assert entry["record_hash"] == IdHasher(id_hash_key(platform.home))(MODEL, SECRET_ID)


def test_no_identifier_or_value_in_dagster_events_audit_details_or_logs(platform: Platform, run):
    _, result, logs = run
    events = platform.instance.all_logs(result.run_id)
    assert any(e.dagster_event and e.dagster_event.is_step_materialization for e in events)
    assert leaks("\n".join(repr(e) for e in events)) == []  # metadata, check results, messages
    records = AuditTrail(engine_for(database_url(platform.home)), home=platform.home).records()
    assert [r.event for r in records] == ["batch_ingested"]
    assert records[0].details["quarantined_by_rule"] == {"max": 1}
    assert leaks(repr(records)) == []
    assert "batch_phi.csv" in logs or "quarantine" in logs  # the capture did see the run's output
    assert leaks(logs) == []
