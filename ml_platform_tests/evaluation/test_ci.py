"""`ml-platform ci` on the shipped specs and on real changes: its report says what the evaluation says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml_platform import metrics as catalogue
from ml_platform.cli import main
from ml_platform.data.contracts import apply_contract
from ml_platform.data.landing import write_batch
from ml_platform.evaluation import ci, gates
from ml_platform.evaluation.ci_report import MARKER, fmt, signed
from ml_platform.evaluation.plots import PNG_SIGNATURE
from ml_platform.spec import get_spec
from ml_platform.training.pipeline import build_pipeline, model_inputs, score
from ml_platform_tests.conftest import spec_folder, use_home

MODEL = "readmission_risk"


def run(tmp: Path, name: str, *args: str) -> tuple[int, dict, str, Path]:
    """Run the command; its exit status, JSON result, Markdown report and report path."""
    report = tmp / name / "ci-report.md"
    status = main(["ci", "--report", str(report), *args])
    return status, json.loads(report.with_suffix(".json").read_text()), report.read_text(), report


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The shipped specs, once, with an empty registry: it writes the baseline the other tests compare with."""
    root = tmp_path_factory.mktemp("ci")
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_home(root, monkeypatch)
        summary = root / "step_summary.md"
        summary.write_text("earlier step\n")
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
        baseline = root / "baseline"
        status, result, markdown, report = run(root, "shipped", "--baseline", str(baseline), "--write-baseline")
        yield {"root": root, "status": status, "result": result, "markdown": markdown, "report": report,
               "baseline": baseline, "summary": summary.read_text()}  # fmt: skip


def by_model(result: dict, model: str) -> dict:
    return next(m for m in result["models"] if m["model"] == model)


def gate_row(markdown: str, gate: str, model: str = MODEL) -> str:
    """The gate's table row in the model's own section of the report."""
    section = markdown.split(f"\n## {model}: ", 1)[1].split("\n## ", 1)[0]
    return next(line for line in section.splitlines() if line.startswith(f"| {gate} |"))


def test_the_shipped_specs_pass_and_the_report_is_written_everywhere(shipped):
    assert shipped["status"] == 0 and shipped["result"]["passed"]
    markdown = shipped["markdown"]
    assert markdown.startswith(MARKER) and "# Model CI: PASS: 2 model(s) checked, 0 failed" in markdown
    assert "Specs and Dagster definitions: valid (" in markdown
    assert shipped["summary"] == "earlier step\n" + markdown + "\n"  # appended to the job summary
    written = sorted(p.name for p in shipped["baseline"].iterdir())
    assert written == ["breast_cancer_diagnosis.json", "readmission_risk.json"]
    # Every plot is a PNG next to the report, linked relatively.
    for model in shipped["result"]["models"]:
        for path in model["plots"].values():
            assert Path(path).read_bytes().startswith(PNG_SIGNATURE)
            link = Path(path).relative_to(shipped["report"].parent)
            assert f"]({link})" in markdown


def test_metrics_and_verdicts_equal_what_the_evaluation_computes(shipped, tmp_path):
    """Rebuilt from the same reference sample with the evaluation's own functions, outside the command."""
    spec = get_spec(MODEL)
    entry = by_model(shipped["result"], MODEL)
    sample = ci.reference_sample(spec, ci.SAMPLE_ROWS)
    assert entry["sample"]["digest"] == ci.content_hash(sample)
    valid = apply_contract(write_batch(sample, tmp_path, "reference"), spec).valid
    table = ci.training_table(spec, valid)
    train, test = table[table["split"] == "train"], table[table["split"] == "test"]
    pipeline = build_pipeline(spec).fit(model_inputs(train, spec), train[spec.target])
    metrics = catalogue.compute_metrics(spec, test[spec.target], score(pipeline, model_inputs(test, spec)))
    assert entry["metrics"] == pytest.approx(metrics)
    expected = {v.gate: v.passed for v in gates.absolute_gates(spec, metrics)}
    assert {g["gate"]: g["passed"] for g in entry["gates"] if g["gate"] in expected} == expected
    # The Markdown says what the JSON says: each gate's verdict and value, each metric and interval.
    markdown = shipped["markdown"]
    for g in entry["gates"]:
        row = gate_row(markdown, g["gate"])
        assert f"| {'PASS' if g['passed'] else 'FAIL'} | {fmt(g['value'])} |" in row
    for name, value in entry["metrics"].items():
        assert f"| {name} | {fmt(value)} | {fmt(entry['metric_ci'][name])} |" in markdown
    assert "### Performance by race_ethnicity" in markdown and "| White | " in markdown


def test_a_changed_estimator_shows_its_deltas_against_the_baseline(shipped, tmp_path, monkeypatch):
    use_home(tmp_path, monkeypatch)
    folder = spec_folder(tmp_path / "specs", MODEL, estimator={"params": {"max_iter": 50}})
    status, result, markdown, _ = run(
        tmp_path, "changed", "--specs", str(folder), "--baseline", str(shipped["baseline"])
    )
    baseline = json.loads((shipped["baseline"] / f"{MODEL}.json").read_text())
    entry = by_model(result, MODEL)
    assert entry["spec_hash"] != baseline["spec_hash"] == entry["baseline_spec_hash"]
    assert entry["champion"]["source"] == "baseline"
    assert entry["metrics"]["roc_auc"] != baseline["metrics"]["roc_auc"]  # a real change, not a rerun
    for name, value in entry["metrics"].items():
        assert entry["delta"][name] == pytest.approx(value - baseline["metrics"][name])
        assert (
            f"| {name} | {fmt(value)} | {fmt(entry['metric_ci'][name])} | {fmt(baseline['metrics'][name])} | {signed(entry['delta'][name])} |"
            in markdown
        )
    champion_gate = next(g for g in entry["gates"] if g["gate"] == "champion.roc_auc")
    assert champion_gate["champion"] == pytest.approx(baseline["metrics"]["roc_auc"])
    assert f"(changed; baseline `{baseline['spec_hash']}`)" in markdown
    assert status == (0 if result["passed"] else 1)


def test_a_gate_the_change_fails_exits_1_and_says_fail(shipped, tmp_path, monkeypatch, capsys):
    use_home(tmp_path, monkeypatch)
    folder = spec_folder(tmp_path / "specs", MODEL, gates={"min": {"roc_auc": 0.99}})
    status, result, markdown, _ = run(
        tmp_path, "failing", "--specs", str(folder), "--baseline", str(shipped["baseline"])
    )
    assert status == 1 and not result["passed"]
    gate = next(g for g in by_model(result, MODEL)["gates"] if g["gate"] == "min.roc_auc")
    assert not gate["passed"] and gate["threshold"] == 0.99
    assert gate_row(markdown, "min.roc_auc").startswith("| min.roc_auc | FAIL |")
    assert "# Model CI: FAIL: 1 model(s) checked, 1 failed (readmission_risk: min.roc_auc)" in markdown
    assert (
        "ml-platform ci: FAIL: 1 model(s) checked, 1 failed (readmission_risk: min.roc_auc)" in capsys.readouterr().out
    )


def test_changed_only_skips_models_whose_spec_matches_the_baseline(shipped, tmp_path, monkeypatch):
    use_home(tmp_path, monkeypatch)
    status, result, markdown, _ = run(tmp_path, "unchanged", "--changed-only", "--baseline", str(shipped["baseline"]))
    assert status == 0
    assert [m.get("skipped") for m in result["models"]] == ["spec unchanged since the baseline"] * 2
    assert "## readmission_risk: skipped" in markdown


def test_nothing_is_written_to_the_platform_registry(shipped):
    home = shipped["root"] / "home"
    assert not (home / "mlflow.db").exists() and not (home / "mlartifacts").exists()
