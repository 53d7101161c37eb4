"""What users look at, in a real browser: the Dagster UI, the MLflow UI and the endpoint's docs.

One stack for the module, started as `make dev` and `make mlflow` start it, on a temporary
home and loopback ports: `ml-platform seed`, the endpoint, `dagster dev` on the workspace and
`mlflow ui` on the platform's tracking store. The sensors and automation train both shipped
models from the seed; the tests then check that this first run was green and drive Debian's
Chromium (never a downloaded browser) through the pages. A failing page check saves a
screenshot under test-artifacts/ at the repository root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from ml_platform.defs.deployment import ENDPOINT_CHECK
from ml_platform.demo import free_port
from ml_platform.evaluation.gates import gate_checks
from ml_platform.spec import get_spec
from ml_platform.store.registry import MLflowTracking
from ml_platform_tests.conftest import PHASE_REPORTS, use_home
from ml_platform_tests.stack import REPO_ROOT, dagster_dev, endpoint, http_ok, mlflow_ui, running, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]  # the first test waits for training
MODELS = ("readmission_risk", "breast_cancer_diagnosis")
GATE_CHECKS = ("quality_gates", "champion_comparison", "calibration", "fairness")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"
TRAINING_TIMEOUT = 720  # seconds for both models to be trained, gated, promoted and served
PAGE_TIMEOUT = 60_000  # milliseconds for one page to show what is checked
UNFINISHED = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


class Stack:
    """Addresses and state of the running platform."""

    def __init__(self, home: Path, ports: dict[str, int]):
        self.home = home
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

    def instance(self) -> DagsterInstance:
        return DagsterInstance.from_config(str(self.home / "dagster"))

    def champion(self, model: str) -> str | None:
        return MLflowTracking.for_home(self.home).alias_version(model, "champion")

    def served(self, model: str) -> str | None:
        """The champion version the endpoint answers with, or None while it has none."""
        try:
            with urllib.request.urlopen(f"{self.urls['endpoint']}/v1/models/{model}", timeout=5) as response:
                return (json.load(response).get("champion") or {}).get("version")
        except OSError:
            return None

    def settled(self) -> bool:
        """Every model's champion is served and no run is queued or in progress."""
        if not all((v := self.champion(m)) and self.served(m) == v for m in MODELS):
            return False
        with self.instance() as instance:
            return not instance.get_run_records(RunsFilter(statuses=UNFINISHED), limit=1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Seed a fresh home, start the endpoint, `dagster dev` and the MLflow UI, and wait for the first run."""
    root = tmp_path_factory.mktemp("browser")
    with pytest.MonkeyPatch.context() as monkeypatch, ExitStack() as processes:
        home = use_home(root, monkeypatch)
        (home / "dagster").mkdir()
        shutil.copy(REPO_ROOT / "deploy/dagster.local.yaml", home / "dagster" / "dagster.yaml")
        ports = {name: free_port() for name in ("dagster", "endpoint", "mlflow")}
        running_stack = Stack(home, ports)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home / "dagster"),
            "ML_PLATFORM_ENDPOINT_URL": running_stack.urls["endpoint"],
            "ML_PLATFORM_MLFLOW_UI_URL": running_stack.urls["mlflow"],
        }
        seed = [sys.executable, "-m", "ml_platform.cli", "seed"]
        subprocess.run(seed, env=env, check=True, capture_output=True, timeout=120)
        # `make dev`: the endpoint first, so the deployment can verify what it promotes.
        for name, command in (("endpoint", endpoint(ports["endpoint"])), ("dagster", dagster_dev(ports["dagster"]))):
            processes.enter_context(running(command, env, root / f"{name}.log"))
        wait_for(lambda: http_ok(f"{running_stack.urls['dagster']}/server_info"), 180, "the Dagster webserver")
        wait_for(running_stack.settled, TRAINING_TIMEOUT, "both models to be trained, promoted and served")
        # `make mlflow` afterwards: started together, the UI and the endpoint race to create the store's tables.
        processes.enter_context(running(mlflow_ui(home, ports["mlflow"]), env, root / "mlflow.log"))
        wait_for(lambda: http_ok(running_stack.urls["mlflow"]), 120, "the MLflow UI")
        yield running_stack


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright; the test fails (it does not download a browser) if it is missing."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium package"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, request, tmp_path):
    """A fresh page; its screenshot goes to test-artifacts/ when the test fails."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT)
    yield page
    report = request.node.stash.get(PHASE_REPORTS, {}).get("call")
    shot = tmp_path / f"{request.node.name}.png"
    page.screenshot(path=str(shot), full_page=True)
    if report is None or report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / shot.name)
    context.close()


def dismiss_dagster_prompt(page) -> None:
    """Close the Dagster UI's first-visit newsletter prompt, so it does not cover the page."""
    skip = page.get_by_role("button", name="Skip", exact=True)
    try:
        skip.click(timeout=5_000)
    except PlaywrightTimeout:
        pass  # no prompt this time


@contextmanager
def no_errors(page):
    """Fail on an uncaught JavaScript error of the page: a blank or broken page must not pass."""
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield
    assert not errors, errors


def test_the_first_run_is_green(stack):
    """What `make dev` shows a new user: every run succeeded and every gate check passed."""
    with stack.instance() as instance:
        runs = instance.get_run_records(RunsFilter())
        failed = [r.dagster_run.job_name for r in runs if r.dagster_run.status != DagsterRunStatus.SUCCESS]
        assert runs and not failed, f"runs that did not succeed: {failed}"
        for model in MODELS:
            checks = [(AssetKey([model, "evaluation_report"]), c) for c in gate_checks(get_spec(model))]
            checks.append((AssetKey([model, "deployment"]), ENDPOINT_CHECK))  # the endpoint serves it
            for asset, check in checks:
                history = instance.event_log_storage.get_asset_check_execution_history(
                    AssetCheckKey(asset, check), limit=20
                )
                statuses = {r.status.value for r in history}
                assert statuses == {"SUCCEEDED"}, (model, check, statuses)


def test_the_asset_graph_shows_both_models(stack, page):
    with no_errors(page):
        page.goto(f"{stack.urls['dagster']}/asset-groups")
        dismiss_dagster_prompt(page)
        for model in MODELS:
            page.get_by_text(model, exact=True).first.wait_for()


def test_the_readmission_report_shows_its_metrics_and_four_passed_checks(stack, page):
    asset = f"{stack.urls['dagster']}/assets/readmission_risk/evaluation_report"
    with no_errors(page):
        page.goto(asset)
        dismiss_dagster_prompt(page)
        for entry in ("test/roc_auc", "test/brier", "calibration/ece", "gates_passed"):
            page.get_by_text(entry, exact=True).first.wait_for()
        page.goto(f"{asset}?view=checks")
        dismiss_dagster_prompt(page)
        page.get_by_text(f"Checks ({len(GATE_CHECKS)})", exact=True).wait_for()
        for check in GATE_CHECKS:
            page.get_by_text(check, exact=True).first.wait_for()
        succeeded = page.get_by_text("Succeeded", exact=True)
        succeeded.nth(len(GATE_CHECKS) - 1).wait_for()
        assert succeeded.count() == len(GATE_CHECKS)
        assert page.get_by_text("Failed", exact=True).count() == 0


def test_the_mlflow_ui_lists_the_model_with_its_champion_alias(stack, page):
    version = stack.champion("readmission_risk")
    with no_errors(page):
        page.goto(f"{stack.urls['mlflow']}/#/models")
        page.get_by_text("readmission_risk", exact=True).first.wait_for()
        page.goto(f"{stack.urls['mlflow']}/#/models/readmission_risk")
        row = page.get_by_role("row").filter(has_text=f"Version {version}")
        row.get_by_text(re.compile(r"@\s*champion")).first.wait_for()


def test_the_endpoint_docs_render_the_predict_route(stack, page):
    with no_errors(page):
        page.goto(f"{stack.urls['endpoint']}/docs")
        page.get_by_text("/v1/models/{model}/predict", exact=True).first.wait_for()


def test_the_readmission_report_shows_its_plots(stack, page):
    """The evaluation's curves are in the UI itself: PNGs embedded in the materialisation's Markdown metadata."""
    with no_errors(page):
        page.goto(f"{stack.urls['dagster']}/assets/readmission_risk/evaluation_report")
        dismiss_dagster_prompt(page)
        page.get_by_placeholder("Filter metadata keys").fill("plots")
        row = page.get_by_role("row").filter(has=page.get_by_text("plots", exact=True))
        row.first.wait_for()
        images = page.locator('img[src^="data:image/png"]')
        if images.count() == 0:  # the UI opens a Markdown entry from its row
            row.first.get_by_text("Show Markdown").first.click()
        images.first.wait_for()
        assert images.first.evaluate("img => img.naturalWidth") > 100  # a decoded picture, not a broken icon
