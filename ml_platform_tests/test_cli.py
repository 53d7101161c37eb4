"""The ml-platform command, as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

from ml_platform.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml_platform.cli", *args], capture_output=True, text=True, timeout=120)


def test_seed_lands_initial_batches_once(home, readmission, breast_cancer, capsys):
    assert main(["seed"]) == 0
    assert sorted(p.name for p in readmission.landing_dir(home).iterdir()) == ["batch_0001.csv", "batch_0002.csv"]
    assert len(list(breast_cancer.landing_dir(home).iterdir())) == 3
    before = {p: p.stat().st_mtime_ns for p in readmission.landing_dir(home).iterdir()}
    assert main(["seed"]) == 0  # a second seed changes nothing: landed data is immutable
    assert {p: p.stat().st_mtime_ns for p in readmission.landing_dir(home).iterdir()} == before
    assert "already holds data" in capsys.readouterr().out


def test_seed_shows_progress_and_ends_with_a_one_line_summary(home):
    result = run("seed")
    assert result.returncode == 0, result.stderr
    assert "seeded" in result.stderr and "5/5" in result.stderr  # the progress bar, on stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("seeded 2 model(s): 5 batch(es), 25,569 rows in "), result.stdout
    again = run("seed").stdout.strip().splitlines()[-1]
    assert again.startswith("seeded 0 model(s): 0 batch(es), 0 rows")
    assert again.endswith("already seeded, left as is: breast_cancer_diagnosis, readmission_risk")


def test_simulate_writes_a_new_batch_with_the_chosen_knobs(home, readmission):
    assert main(["simulate", "readmission_risk", "--rows", "400", "--covariate-shift", "1.0", "--seed", "3"]) == 0
    assert main(["simulate", "readmission_risk", "--rows", "400", "--seed", "3"]) == 0
    shifted = pd.read_csv(readmission.landing_dir(home) / "batch_0001.csv")
    plain = pd.read_csv(readmission.landing_dir(home) / "batch_0002.csv")
    assert len(shifted) == 400
    assert shifted["age"].mean() > plain["age"].mean() + 5


def test_simulate_parquet(home, readmission):
    assert main(["simulate", "readmission_risk", "--rows", "50", "--format", "parquet"]) == 0
    assert len(pd.read_parquet(readmission.landing_dir(home) / "batch_0001.parquet")) == 50


def test_unknown_model_is_a_clear_error_not_a_traceback(home):
    result = run("simulate", "readmision_risk", "--rows", "10")
    assert result.returncode == 2
    assert "unknown model 'readmision_risk'; known models: breast_cancer_diagnosis, readmission_risk" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_knob_value_names_the_argument(home):
    result = run("simulate", "readmission_risk", "--rows", "10", "--missingness", "1.5")
    assert result.returncode == 2
    assert "missingness" in result.stderr and "1.5" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broken_spec_folder_is_reported_with_file_and_key(home, tmp_path, monkeypatch):
    (tmp_path / "bad_model.yaml").write_text("name: bad_model\ntask: clustering\n")
    result = run("specs", "--dir", str(tmp_path))
    assert result.returncode == 2
    assert "bad_model.yaml" in result.stderr and "task" in result.stderr
