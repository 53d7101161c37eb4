"""Outcome files with bad lines: set aside with an error file naming lines and rules, never the values."""

from __future__ import annotations

import logging

from ml_platform.serving.outcomes import OutcomeReader, load_outcome_files, outcomes_dir
from ml_platform.settings import database_url
from ml_platform.spec import get_spec
from ml_platform.store.database import engine_for
from ml_platform.store.predictions import IdHasher, id_hash_key

MODEL = "readmission_risk"


def test_a_bad_outcome_file_is_rejected_with_lines_and_rules_but_no_values(home, caplog):
    caplog.set_level(logging.DEBUG)
    reader = OutcomeReader(get_spec(MODEL), engine_for(database_url(home)), IdHasher(id_hash_key(home)))
    folder = outcomes_dir(home, MODEL)
    folder.mkdir(parents=True)
    (folder / "week9.csv").write_text(
        "encounter_id,outcome\n"
        "ENC-SECRET-1,1\n"
        "ENC-SECRET-2,7\n"  # read as text beside "maybe": not an integer
        "ENC-SECRET-3,maybe\n"  # not a number
        "ENC-SECRET-4,0\n"
        ",1\n"  # no reference at all
    )
    (folder / "week10.csv").write_text("encounter_id,outcome\nENC-SECRET-5,0,PAT-SECRET-5\n")  # a field too many
    seen = {}
    assert load_outcome_files(reader, folder, seen) == []  # first look: files wait until unchanged
    assert load_outcome_files(reader, folder, seen) == []  # second look: both are read and rejected
    error = (folder / "rejected" / "week9.csv.error.txt").read_text()
    unreadable = (folder / "rejected" / "week10.csv.error.txt").read_text()
    assert "line 2" in unreadable and "SECRET" not in unreadable
    assert (folder / "rejected" / "week9.csv").exists()
    for line, rule in ((3, "type"), (4, "type"), (6, "one_reference")):
        assert f"line {line} field" in error and f"(rule '{rule}')" in error, error
    for leaked in ("ENC-SECRET", "PAT-SECRET", "maybe", "'7'", " 7 "):
        assert leaked not in error, error
        assert leaked not in caplog.text
