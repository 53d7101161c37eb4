"""`ml-platform demo`: the closed loop of continuous training, told in a terminal.

It runs the real thing on a platform home of its own: `dagster dev` (webserver, daemon,
sensors, schedules) and `ml-platform serve`, then plays the hospital's part. Initial
encounters land; the model trains, passes its gates and is promoted; the endpoint serves
it. Patients from the training population are scored for a while: drift reports stay
calm and nothing retrains. Then the population shifts (older, sicker patients) and their
30-day outcomes come back: the drift reports flag it, the drift sensor requests a retrain
with its reason, the candidate learns from the labelled production rows, passes its gates,
is promoted, and the endpoint serves it. Nobody clicks anything.

Monitoring windows are one minute long here (an hour in the shipped spec) so the story
takes about ten minutes; the UI stays open at the printed address while it runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from dagster import AssetCheckEvaluation, AssetCheckKey, AssetKey, DagsterInstance, RunsFilter

from ml_platform.data.simulators import seed_landing
from ml_platform.data.synthetic import generate_readmission
from ml_platform.defs.deployment import ENDPOINT_CHECK
from ml_platform.governance.audit import AuditTrail
from ml_platform.serving.periodic import Periodic
from ml_platform.settings import database_url
from ml_platform.spec import SHIPPED_SPECS_DIR, load_spec
from ml_platform.store.database import engine_for
from ml_platform.store.registry import MLflowTracking
from ml_platform.store.tags import CHAMPION, GATES

MODEL = "readmission_risk"
# Monitoring policy of the demo: one-minute windows, two drifted windows in a row retrain.
DEMO_MONITORING = {
    "window": "* * * * *",
    "drift": {"share": 0.3, "consecutive": 2},
    "performance": {"floor": 0.6, "tolerance": None},
    "retrain": {"cooldown_minutes": 1, "min_new_labelled_rows": None},
}
DAGSTER_YAML = (
    "concurrency:\n  runs:\n    max_concurrent_runs: 3\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n"
)
RECORDS_PER_SECOND = 20
DRIFT_SHIFT = 2.0  # covariate_shift of the later population (see docs/synthetic_data.md)


class DemoError(ValueError):
    """The story did not reach its next step in time; the message says which and where to look."""


@dataclass
class Story:
    """What happened, for the summary (and for the test that checks the loop)."""

    started: float = field(default_factory=time.monotonic)
    steps: list[tuple[float, str]] = field(default_factory=list)
    first_version: str | None = None
    calm_windows: list[str] = field(default_factory=list)
    retrains_while_calm: int = 0
    drifted_windows: list[str] = field(default_factory=list)
    trigger: dict = field(default_factory=dict)
    new_version: str | None = None
    gates: str | None = None
    served_version: str | None = None
    predictions: int = 0
    outcomes: int = 0
    ticks: dict = field(default_factory=dict)  # sensor -> (ticks, median s, max s)
    endpoint_check: tuple[bool, str] | None = None  # the deployment's serving_endpoint check: passed, description


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Platform:
    """The demo's running platform: processes, and read access to their state."""

    def __init__(self, home: Path, dagster_port: int, endpoint_port: int):
        self.home = home
        self.dagster_url = f"http://127.0.0.1:{dagster_port}"
        self.endpoint_url = f"http://127.0.0.1:{endpoint_port}"
        self.dagster_port, self.endpoint_port = dagster_port, endpoint_port
        self.processes: list[subprocess.Popen] = []
        self.env = {
            **os.environ,
            "ML_PLATFORM_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "ML_PLATFORM_SPECS": str(home / "specs"),
            "ML_PLATFORM_ENDPOINT_URL": self.endpoint_url,
            "ML_PLATFORM_SERVE_POLL_SECONDS": "1",
        }
        for name in (
            "MLFLOW_TRACKING_URI",
            "ML_PLATFORM_DATABASE_URL",
            "ML_PLATFORM_ARTIFACT_ROOT",
            "ML_PLATFORM_API_TOKENS",
        ):
            self.env.pop(name, None)

    def prepare(self) -> None:
        """A fresh home: the readmission spec with the demo's monitoring policy, initial data, instance settings."""
        (self.home / "specs").mkdir(parents=True, exist_ok=True)
        raw = yaml.safe_load((SHIPPED_SPECS_DIR / f"{MODEL}.yaml").read_text())
        raw["monitoring"] = {**DEMO_MONITORING, "start": datetime.now(UTC).strftime("%Y-%m-%d")}
        (self.home / "specs" / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
        spec = load_spec(self.home / "specs" / f"{MODEL}.yaml")
        (self.home / "dagster").mkdir(exist_ok=True)
        (self.home / "dagster" / "dagster.yaml").write_text(DAGSTER_YAML)
        # The seeded batches are sized for the fairness gate (enough test rows per group).
        if not seed_landing(spec, self.home):
            raise DemoError(f"{self.home} already holds a demo; remove it or pass another --home")

    def start(self) -> None:
        bin_dir = Path(sys.executable).parent
        log = (self.home / "demo-processes.log").open("w")
        serve = [sys.executable, "-m", "ml_platform.cli", "serve", "--port", str(self.endpoint_port)]
        dagster = [
            str(bin_dir / "dagster"), "dev", "-m", "ml_platform.defs",
            "--host", "127.0.0.1", "--port", str(self.dagster_port),
        ]  # fmt: skip
        for command in (serve, dagster):
            self.processes.append(
                subprocess.Popen(
                    command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.home
                )
            )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise DemoError(f"{process.args[2:4]} exited; see {self.home / 'demo-processes.log'}")

    # ------------------------------------------------------------------ reading state

    def instance(self):
        return DagsterInstance.from_config(str(self.home / "dagster"))

    def alias(self, alias: str) -> str | None:
        return MLflowTracking.for_home(self.home).alias_version(MODEL, alias)

    def served(self) -> str | None:
        try:
            return (self.get(f"/v1/models/{MODEL}").get("champion") or {}).get("version")
        except OSError:
            return None

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.endpoint_url}{path}", timeout=10) as response:
            return json.load(response)

    def post(self, path: str, body) -> dict:
        request = urllib.request.Request(
            f"{self.endpoint_url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def drift_reports(self) -> dict[str, dict]:
        """Window -> metadata of its latest drift report."""
        with self.instance() as instance:
            records = instance.fetch_materializations(AssetKey([MODEL, "drift_report"]), limit=100).records
        reports = {}
        for record in records:
            metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
            reports.setdefault(record.partition_key, metadata)
        return reports

    def retrain_runs(self) -> list:
        with self.instance() as instance:
            return list(instance.get_runs(RunsFilter(job_name=f"{MODEL}_retrain")))


class Traffic(Periodic):
    """Patients arriving at the endpoint, a few per second, with their outcomes reported when asked."""

    def __init__(self, platform: Platform, story: Story):
        super().__init__("demo-traffic", 1.0)
        self.platform, self.story = platform, story
        self.shift, self.report_outcomes = 0.0, False
        self.seed = 1_000
        self.errors: list[str] = []

    def step(self) -> None:
        self.seed += 1
        frame = generate_readmission(RECORDS_PER_SECOND, seed=self.seed, covariate_shift=self.shift)
        frame["admit_date"] = frame["admit_date"].astype(str)
        outcomes = frame.pop("readmitted_30d").tolist()
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        try:
            answers = self.platform.post(f"/v1/models/{MODEL}/predict", records)["predictions"]
            self.story.predictions += len(answers)
            if self.report_outcomes:  # in the demo, "a month later" is now
                reported = [{"prediction_id": a["prediction_id"], "outcome": y} for a, y in zip(answers, outcomes)]
                self.story.outcomes += self.platform.post(f"/v1/models/{MODEL}/outcomes", reported)["accepted"]
        except OSError as exc:
            self.errors.append(str(exc))


def run_demo(home: Path, say=print, keep_running: bool = False, calm_windows: int = 2) -> Story:
    """Play the whole story; returns what happened. Raises DemoError when a step times out."""
    story = Story()
    platform = Platform(home.resolve(), free_port(), free_port())

    def step(message: str) -> None:
        elapsed = time.monotonic() - story.started
        story.steps.append((elapsed, message))
        say(f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] {message}")

    def wait(predicate, seconds: float, what: str):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            platform.alive()
            value = predicate()
            if value:
                return value
            time.sleep(2)
        raise DemoError(f"no {what} after {seconds:.0f} s; see {platform.home / 'demo-processes.log'} and the UI")

    platform.prepare()
    step(f"landed initial encounters in {platform.home / 'landing' / MODEL}")
    platform.start()
    traffic = Traffic(platform, story)
    try:
        step(f"Dagster UI at {platform.dagster_url}, endpoint at {platform.endpoint_url}/docs")
        story.first_version = wait(lambda: platform.alias(CHAMPION), 600, "first champion")
        step(f"version {story.first_version} trained, passed its gates and was promoted to champion")
        wait(lambda: platform.served() == story.first_version, 120, f"endpoint serving version {story.first_version}")
        step(f"the endpoint serves version {story.first_version}; patients from the training population arrive")
        traffic.start()
        calm = wait(lambda: _windows(platform, drifted=False, count=calm_windows), 420, "calm windows")
        story.calm_windows = calm
        story.retrains_while_calm = len(platform.retrain_runs())
        step(f"windows {', '.join(calm)}: no drift, no retrain ({story.retrains_while_calm} retrain runs)")
        traffic.shift, traffic.report_outcomes = DRIFT_SHIFT, True
        step("the population shifts (older, sicker patients) and their 30-day outcomes are reported")
        run = wait(lambda: platform.retrain_runs(), 600, "retrain request from the drift sensor")[0]
        story.trigger = {k: v for k, v in run.tags.items() if k.startswith("ml_platform/")}
        story.drifted_windows = sorted(w for w, m in platform.drift_reports().items() if m.get("drifted"))
        step(f"drift sensor requested a retrain: {story.trigger.get('ml_platform/reason')}")
        story.new_version = wait(lambda: _newer_candidate(platform, story.first_version), 600, "new candidate")
        step(f"version {story.new_version} trained on landed batches and labelled production rows")
        story.gates = wait(lambda: _gates(platform, story.new_version), 600, f"gates of version {story.new_version}")
        step(f"version {story.new_version} gates: {story.gates}")
        if story.gates == "passed":
            wait(lambda: platform.alias(CHAMPION) == story.new_version, 300, f"promotion of {story.new_version}")
            step(f"version {story.new_version} promoted to champion")
            wait(lambda: platform.served() == story.new_version, 120, f"endpoint serving {story.new_version}")
        story.served_version = platform.served()
        step(f"the endpoint serves version {story.served_version}")
        story.endpoint_check = wait(lambda: _endpoint_check(platform, story.served_version), 120, "endpoint check")
        step(f"the deployment's serving_endpoint check: {story.endpoint_check[1]}")
        story.ticks = tick_durations(platform)
    finally:
        traffic.stop()
        if keep_running:
            say(f"still running: Dagster UI {platform.dagster_url}, endpoint {platform.endpoint_url}; Ctrl-C stops")
            _wait_for_interrupt()
        platform.stop()
    say(summary(story, platform))
    return story


def _windows(platform: Platform, drifted: bool, count: int) -> list[str] | None:
    """The latest ``count`` reported windows, when they are all (un)drifted as asked."""
    reports = platform.drift_reports()
    with_traffic = sorted(w for w, m in reports.items() if m.get("rows", 0) > 0)
    recent = with_traffic[-count:]
    if len(recent) == count and all(bool(reports[w]["drifted"]) == drifted for w in recent):
        return recent
    return None


def _newer_candidate(platform: Platform, first: str) -> str | None:
    with platform.instance() as instance:
        event = instance.get_latest_materialization_event(AssetKey([MODEL, "candidate_model"]))
    version = str(event.asset_materialization.metadata["model_version"].value) if event else None
    return version if version and int(version) > int(first) else None


def _endpoint_check(platform: Platform, version: str) -> tuple[bool, str] | None:
    """The latest serving_endpoint check of the deployment, once it concerns ``version``."""
    with platform.instance() as instance:
        record = instance.get_latest_asset_check_evaluation_record(
            AssetCheckKey(AssetKey([MODEL, "deployment"]), ENDPOINT_CHECK)
        )
    evaluation = record.evaluation if record else None
    # While the deployment run executes, the latest record is the check's plan, without a result yet.
    if not isinstance(evaluation, AssetCheckEvaluation) or evaluation.metadata["promoted_version"].value != version:
        return None
    return evaluation.passed, evaluation.description


def _gates(platform: Platform, version: str) -> str | None:
    client = MLflowTracking.for_home(platform.home).client()
    return client.get_model_version(MODEL, version).tags.get(GATES)


def tick_durations(platform: Platform) -> dict[str, tuple[int, float, float]]:
    """Per sensor, from the instance's tick history: ticks, median and longest duration in seconds."""
    import statistics

    durations = {}
    with platform.instance() as instance:
        for state in instance.all_instigator_state():
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=500)
            seconds = [t.end_timestamp - t.timestamp for t in ticks if t.end_timestamp]
            if seconds and state.instigator_type.value == "SENSOR":
                durations[state.instigator_name] = (len(seconds), statistics.median(seconds), max(seconds))
    return durations


def _wait_for_interrupt() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def summary(story: Story, platform: Platform) -> str:
    audit = AuditTrail(engine_for(database_url(platform.home)), home=platform.home)
    lines = [
        "",
        "Summary",
        f"  first champion:      version {story.first_version}",
        f"  calm windows:        {', '.join(story.calm_windows)} (retrains while calm: {story.retrains_while_calm})",
        f"  drifted windows:     {', '.join(story.drifted_windows)}",
        f"  retrain trigger:     {story.trigger.get('ml_platform/trigger')}: {story.trigger.get('ml_platform/reason')}",
        f"  new version:         {story.new_version} (gates {story.gates})",
        f"  endpoint serves:     version {story.served_version}",
        f"  traffic:             {story.predictions} predictions, {story.outcomes} outcomes reported",
        *(
            f"  sensor {name + ':':<32} {n} ticks, median {median:.2f} s, longest {longest:.2f} s"
            for name, (n, median, longest) in sorted(story.ticks.items())
        ),
        f"  audit trail:         {len(audit.records())} records, chain {'intact' if not audit.verify() else 'BROKEN'}",
        f"  platform home:       {platform.home} (ML_PLATFORM_HOME={platform.home} ml-platform audit {MODEL})",
    ]
    return "\n".join(lines)
