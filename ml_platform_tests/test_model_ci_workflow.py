"""The pull-request workflow users copy: it parses, runs on pull requests, and keeps one report comment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ml_platform.evaluation.ci_report import MARKER

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "model-ci.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def steps(workflow) -> list[dict]:
    (job,) = workflow["jobs"].values()
    return job["steps"]


def step(steps: list[dict], uses_or_run: str) -> dict:
    return next(s for s in steps if uses_or_run in s.get("uses", "") or uses_or_run in s.get("run", ""))


def test_it_runs_on_pull_requests_with_python_311(workflow, steps):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert "pull_request" in triggers
    assert step(steps, "actions/setup-python")["with"]["python-version"] == "3.11"
    assert workflow["permissions"]["pull-requests"] == "write"


def test_lint_and_tests_run_before_the_model_ci_report(steps):
    order = [s.get("run", s.get("uses", "")) for s in steps]
    lint = next(i for i, s in enumerate(order) if "make lint" in s)
    test = next(i for i, s in enumerate(order) if "make test" in s)
    ci = next(i for i, s in enumerate(order) if "ml-platform ci --report ci-report.md" in s)
    assert lint < test < ci


def test_the_report_is_one_comment_found_by_its_marker_and_updated(steps):
    comment = step(steps, "actions/github-script")
    script = comment["with"]["script"]
    assert MARKER in script
    assert "updateComment" in script and "createComment" in script
    assert script.index("updateComment") < script.index("createComment")  # update first, create only if none
    assert "ci-report.md" in script
    # A failed gate still posts the report, and then fails the job.
    assert "always()" in comment["if"]
    final = steps[-1]
    assert "steps.model_ci.outputs.status != '0'" in final["if"] and "exit 1" in final["run"]
