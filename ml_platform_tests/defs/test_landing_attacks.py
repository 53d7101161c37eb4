"""Landed files as an attacker or a careless colleague would land them, through the real sensor and assets.

Each case asserts what the platform refuses, by name and with the fix, and that nothing of
the refused file reaches the raw store.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from ml_platform.data.contracts import apply_contract
from ml_platform.data.landing import write_batch
from ml_platform.data.raw import ensure_raw_copy
from ml_platform.data.synthetic import generate_readmission
from ml_platform.errors import PlatformError
from ml_platform.store.lake import Lake
from ml_platform_tests.defs.test_sensors import tick, tick_once

MARKER = b"MARKER-outside-the-landing-folder-5d1e"


def every_byte_under(folder: Path) -> bytes:
    """All bytes of all regular files under a folder: where a leaked copy would show."""
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def skip_message(result) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


def test_a_symlink_is_reported_by_name_and_its_target_never_reaches_the_raw_store(platform, readmission, tmp_path):
    landing = readmission.landing_dir(platform.home)
    secret = tmp_path / "outside" / "patients.csv"
    secret.parent.mkdir()
    secret.write_bytes(b"encounter_id,patient_id\n" + MARKER + b",P1\n")
    good = write_batch(generate_readmission(40, seed=1), landing, "batch_0001")
    (landing / "batch_0002.csv").symlink_to(secret)

    result = tick(platform)
    assert [r.tags["ml_platform/batch_file"] for r in result.run_requests] == [good.name]
    assert platform.run_batch("readmission_risk", result.run_requests[0].partition_key).success
    again = tick_once(platform, result.cursor)
    assert "batch_0002.csv is a symbolic link" in skip_message(again)
    assert "copy the file itself into the folder" in skip_message(again)

    # Even a partition registered by hand for the link's name is refused, not followed.
    lake = Lake(home=str(platform.home))
    with pytest.raises(PlatformError, match="not a regular file|Too many levels|symbolic"):
        ensure_raw_copy(lake, readmission, "batch_0002.csv-000000000000", landing)
    raw_store = platform.home / "raw"
    assert raw_store.is_dir() and MARKER not in every_byte_under(platform.home)


def test_a_file_still_growing_waits_until_it_is_unchanged_for_a_tick(platform, readmission):
    landing = readmission.landing_dir(platform.home)
    landing.mkdir(parents=True)
    growing = landing / "batch_0003.csv"
    frame = generate_readmission(60, seed=3)
    text = frame.to_csv(index=False)
    growing.write_text(text[: len(text) // 2])

    first = tick_once(platform)
    assert first.run_requests == [] and "waiting one more tick for batch_0003.csv" in skip_message(first)
    with growing.open("a") as handle:  # the copy goes on between two ticks
        handle.write(text[len(text) // 2 :])
    os.utime(growing, ns=(0, growing.stat().st_mtime_ns + 1_000_000))
    second = tick_once(platform, first.cursor)
    assert second.run_requests == [] and "batch_0003.csv" in skip_message(second)
    third = tick_once(platform, second.cursor)
    [request] = third.run_requests
    assert request.tags["ml_platform/batch_file"] == "batch_0003.csv"
    assert platform.run_batch("readmission_risk", request.partition_key).success  # the whole file, not half


def test_a_gzip_file_is_recognised_by_its_bytes_and_refused_saying_so(platform, readmission):
    landing = readmission.landing_dir(platform.home)
    landing.mkdir(parents=True)
    csv = generate_readmission(30, seed=4).to_csv(index=False).encode()
    (landing / "batch_0004.csv").write_bytes(gzip.compress(csv))  # named .csv, compressed inside

    result = tick(platform)
    assert result.run_requests == []
    message = skip_message(result)
    assert "batch_0004.csv is gzip-compressed (its bytes start 1f 8b)" in message and "gunzip" in message
    assert platform.instance.get_dynamic_partitions("readmission_risk_batches") == []


def test_an_oversize_file_is_refused_by_name_without_being_read(platform, readmission, monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_MAX_FILE_BYTES", "1000")
    landing = readmission.landing_dir(platform.home)
    write_batch(generate_readmission(200, seed=5), landing, "batch_0005")

    result = tick(platform)
    assert result.run_requests == []
    assert "batch_0005.csv is" in skip_message(result)
    assert "over the limit of 1000 (ML_PLATFORM_MAX_FILE_BYTES)" in skip_message(result)


def test_folders_and_pipes_are_refused_by_name(platform, readmission):
    landing = readmission.landing_dir(platform.home)
    (landing / "batch_0006.csv").mkdir(parents=True)
    os.mkfifo(landing / "batch_0007.csv")  # opening a pipe would hang a tick waiting for a writer

    result = tick(platform)
    assert result.run_requests == []
    assert "batch_0006.csv is a folder" in skip_message(result)
    assert "batch_0007.csv is not a regular file" in skip_message(result)


@pytest.mark.parametrize("separator, said", [(";", "a semicolon (;)"), ("\t", "a tab")])
def test_a_header_with_another_separator_is_named_as_the_cause(tmp_path, readmission, separator, said):
    path = tmp_path / "batch.csv"
    generate_readmission(20, seed=6).to_csv(path, index=False, sep=separator)
    result = apply_contract(path, readmission)
    assert not result.passed
    assert result.batch_problems == [
        f"batch.csv: the header is separated by {said}, not commas (rule 'separator'); "
        "export the file as comma-separated CSV"
    ]


def test_a_column_differing_only_in_case_is_named_with_the_rename(tmp_path, readmission):
    path = tmp_path / "batch.csv"
    generate_readmission(20, seed=7).rename(columns={"age": "Age"}).to_csv(path, index=False)
    [problem] = apply_contract(path, readmission).batch_problems
    assert "required column 'age' is missing, but the file has 'Age'" in problem
    assert "rename it to 'age'" in problem
