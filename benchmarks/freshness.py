"""Freshness: from a landed batch to the endpoint serving the model trained on it.

    .venv/bin/python benchmarks/freshness.py [--rows 5000] [--repeat 3]

Runs the processes of ``make dev`` on a temporary platform home, on loopback ports:
``ml-platform serve`` and ``dagster dev -w workspace.yaml`` (webserver, daemon, sensors,
declarative automation), with the shipped specs and the embedded instance file. It seeds
the landing folders (``ml-platform seed``) and waits until every shipped model is champion
and served. Then, ``--repeat`` times, it lands one readmission batch of ``--rows`` rows
(``ml-platform simulate``'s writer) and records the time from the file landing to:

* **registered**: the new-data sensor added the batch's partition;
* **features**: the batch's ``features`` partition was materialised;
* **evaluated**: ``evaluation_report`` of the new candidate was materialised (gates run);
* **promoted**: the registry's ``champion`` alias names the new version;
* **served**: the endpoint answers with the new version as champion.

Materialisation times are Dagster's event timestamps; the other milestones are seen by
polling every ``--poll`` seconds (so they are late by at most that). Each stage is the time
since the previous milestone; their sum is the time to served. Between landings the script
waits until no run is queued or in progress, so landings do not overlap. The median of the
repeats is reported. A script, not a test: nothing asserts times. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from ml_platform.demo import free_port
from ml_platform_tests.stack import dagster_dev, endpoint, running, wait_for

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "readmission_risk"
MILESTONES = ("registered", "features", "evaluated", "promoted", "served")
TARGET_SECONDS = 30.0


# --------------------------------------------------------------------------- #
# The processes of `make dev`
# --------------------------------------------------------------------------- #
def platform_env(home: Path, endpoint_port: int) -> dict[str, str]:
    """The environment `make dev` gives its processes, on a home of the benchmark's own."""
    env = {**os.environ, "ML_PLATFORM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "ML_PLATFORM_ENDPOINT_URL": f"http://127.0.0.1:{endpoint_port}"}
    for name in ("MLFLOW_TRACKING_URI", "ML_PLATFORM_DATABASE_URL", "ML_PLATFORM_ARTIFACT_ROOT",
                 "ML_PLATFORM_API_TOKENS", "ML_PLATFORM_SPECS"):
        env.pop(name, None)
    return env


# --------------------------------------------------------------------------- #
# Reading the platform's state (what a person would look at)
# --------------------------------------------------------------------------- #
class Observer:
    """Read-only views of the instance, the registry and the endpoint."""

    def __init__(self, home: Path, endpoint_port: int):
        from dagster import DagsterInstance

        from ml_platform.store.registry import MLflowTracking

        self.instance = DagsterInstance.from_config(str(home / "dagster"))
        self.registry = MLflowTracking.for_home(home)
        self.endpoint = f"http://127.0.0.1:{endpoint_port}"

    def champion(self, model: str) -> str | None:
        from ml_platform.store.tags import CHAMPION

        return self.registry.alias_version(model, CHAMPION)

    def served(self, model: str) -> str | None:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/v1/models/{model}", timeout=5) as response:
                return (json.load(response).get("champion") or {}).get("version")
        except OSError:
            return None

    def registered(self, key: str) -> bool:
        return key in self.instance.get_dynamic_partitions(f"{MODEL}_batches")

    def materialised(self, asset: str, partition: str | None = None, version: str | None = None) -> float | None:
        """Event timestamp of the latest materialisation of ``asset`` for ``partition`` / ``version``."""
        from dagster import AssetKey

        for record in self.instance.fetch_materializations(AssetKey([MODEL, asset]), limit=20).records:
            metadata = record.asset_materialization.metadata
            if partition is not None and record.partition_key != partition:
                continue
            if version is not None and str(getattr(metadata.get("model_version"), "value", "")) != version:
                continue
            return record.timestamp
        return None

    def newest_evaluated(self, after: str) -> str | None:
        """The newest evaluated model version above ``after``."""
        from dagster import AssetKey

        records = self.instance.fetch_materializations(AssetKey([MODEL, "evaluation_report"]), limit=5).records
        versions = [int(r.asset_materialization.metadata["model_version"].value) for r in records]
        newer = [v for v in versions if v > int(after)]
        return str(max(newer)) if newer else None

    def busy(self) -> bool:
        from dagster import DagsterRunStatus, RunsFilter

        active = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                  DagsterRunStatus.STARTED]
        return bool(self.instance.get_run_records(RunsFilter(statuses=active), limit=1))


# --------------------------------------------------------------------------- #
# One landing
# --------------------------------------------------------------------------- #
def land_and_follow(home: Path, observer: Observer, rows: int, seed: int, poll: float, timeout: float) -> dict:
    """Land one batch; seconds from landing to each milestone (see the module docstring)."""
    from ml_platform.data.raw import batch_key, sha256_of
    from ml_platform.data.simulators import simulate
    from ml_platform.spec import get_spec

    before = observer.champion(MODEL)
    path = simulate(get_spec(MODEL), home, rows=rows, seed=seed)
    landed = time.time()
    key = batch_key(path.name, sha256_of(path))
    seen: dict[str, float] = {}

    def mark(name: str, at: float) -> None:
        seen[name] = at - landed
        print(f"  {name:<11}{seen[name]:>7.1f} s after landing", flush=True)

    wait_for(lambda: observer.registered(key), timeout, f"partition {key}", poll)
    mark("registered", time.time())
    mark("features", wait_for(lambda: observer.materialised("features", partition=key), timeout, "features", poll))
    version = wait_for(lambda: observer.newest_evaluated(before), timeout, "a new evaluation", poll)
    mark("evaluated", observer.materialised("evaluation_report", version=version))
    wait_for(lambda: observer.champion(MODEL) == version, timeout, f"version {version} as champion", poll)
    mark("promoted", time.time())
    wait_for(lambda: observer.served(MODEL) == version, timeout, f"the endpoint serving {version}", poll)
    mark("served", time.time())
    return {"batch": path.name, "version": version, "previous": before, "seconds": seen}


def stages(seconds: dict[str, float]) -> dict[str, float]:
    """Time since the previous milestone, per milestone; they add up to the time to served."""
    out, previous = {}, 0.0
    for name in MILESTONES:
        out[name] = seconds[name] - previous
        previous = seconds[name]
    return out


def print_results(results: list[dict]) -> None:
    print(f"\n== Freshness: {MODEL}, landed batch -> served, {len(results)} landing(s) ==")
    print(f"{'':<10}" + "".join(f"{m:>12}" for m in MILESTONES) + f"{'sum':>10}")
    for i, r in enumerate(results, 1):
        parts = stages(r["seconds"])
        print(f"{'landing ' + str(i):<10}" + "".join(f"{parts[m]:>12.1f}" for m in MILESTONES)
              + f"{sum(parts.values()):>10.1f}   (v{r['previous']} -> v{r['version']})")
    medians = {m: statistics.median(stages(r["seconds"])[m] for r in results) for m in MILESTONES}
    total = statistics.median(r["seconds"]["served"] for r in results)
    verdict = "PASS" if total <= TARGET_SECONDS else "FAIL"
    print(f"{'median':<10}" + "".join(f"{medians[m]:>12.1f}" for m in MILESTONES)
          + f"{total:>10.1f}   (median of the sums; target <= {TARGET_SECONDS:.0f} s: {verdict})")


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000, help="rows of each landed readmission batch")
    parser.add_argument("--repeat", type=int, default=3, help="landings; the median is reported")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between looks at the platform's state")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per milestone")
    parser.add_argument("--first-timeout", type=float, default=1200, help="seconds allowed for the first champions")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home and the process logs")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="ml_platform_freshness_"))
    home, endpoint_port, dagster_port = root / "home", free_port(), free_port()
    (home / "dagster").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "deploy/dagster.local.yaml", home / "dagster" / "dagster.yaml")
    env = platform_env(home, endpoint_port)
    os.environ.update({k: env[k] for k in ("ML_PLATFORM_HOME", "DAGSTER_HOME")})
    for name in set(os.environ) - set(env):
        os.environ.pop(name)
    results: list[dict] = []
    processes = ExitStack()
    try:
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "ml_platform.cli", "seed"], env=env, check=True, cwd=REPO_ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The MLflow store is created (migrated) once, here, before three processes open it at
        # once: concurrent first opens of a fresh SQLite store race in its migrations.
        observer = Observer(home, endpoint_port)
        observer.registry.client().search_registered_models()
        processes.enter_context(running(endpoint(endpoint_port), env, root / "endpoint.log"))
        processes.enter_context(running(dagster_dev(dagster_port), env, root / "dagster-dev.log"))
        print(f"seeded; dagster dev on :{dagster_port}, endpoint on :{endpoint_port}; waiting for the first "
              "champions", flush=True)
        from ml_platform.spec import load_specs

        for spec in load_specs():
            version = wait_for(lambda s=spec: observer.champion(s.name), args.first_timeout,
                               f"first {spec.name} champion", 2.0)
            wait_for(lambda s=spec, v=version: observer.served(s.name) == v, args.timeout,
                     f"endpoint serving {spec.name} v{version}", 1.0)
            print(f"{spec.name}: v{version} champion and served, {time.monotonic() - started:.0f} s after start",
                  flush=True)
        for i in range(args.repeat):
            wait_for(lambda: not observer.busy(), args.timeout, "idle runs", 1.0)
            time.sleep(2 * args.poll)
            print(f"landing {i + 1}/{args.repeat}: {args.rows:,} {MODEL} rows", flush=True)
            results.append(land_and_follow(home, observer, args.rows, 100 + i, args.poll, args.timeout))
        print_results(results)
        # The last run still writes its Evidently report after the model is served: let it end
        # rather than interrupt it, so a kept home shows only successful runs.
        wait_for(lambda: not observer.busy(), args.timeout, "idle runs", 1.0)
    finally:
        processes.close()  # stops the endpoint and dagster dev (process groups), newest first
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
