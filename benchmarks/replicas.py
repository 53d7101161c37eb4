"""Prediction-log throughput and p99 with one and two endpoint replicas, on SQLite and on PostgreSQL.

    .venv/bin/python benchmarks/replicas.py [--seconds 10] [--warmup 3] [--concurrency 16,64] [--rounds 1]

One run measures every cell, so the ratios compare figures taken on the same machine within
minutes of each other:

* **Stores**: a SQLite platform home (the prediction log in ``platform.db``, MLflow on SQLite)
  and a home whose platform database and MLflow backend store are databases of a throwaway
  PostgreSQL server on loopback (the test suite's, ``ml_platform_tests/postgres.py``:
  ``initdb`` into a temporary folder, ``fsync=off`` as in the tests). Each home gets version
  1 of ``readmission_risk`` (seed 11, 3,000 rows, as the serving tests) as champion. Not timed.
* **Replicas**: one or two ``ml-platform serve`` processes (one uvicorn worker each, bearer
  token on, as the serving tests start them) on the same home, so two replicas share one
  registry and one prediction log.
* **Load**: in this process, ``ml_platform_tests/serving/roundrobin.py``: closed-loop
  clients over keep-alive HTTP/1.1, request ``n`` to replica ``n % replicas`` (client-side
  round robin), one distinct single-record encounter per request. Per cell ``--warmup``
  seconds not counted, then ``--seconds`` measured; a request counts in the window it
  completes in. Every answer is a 200 whose prediction id the server committed to its log
  before answering, so req/s is prediction-log throughput.
* **CPU**: during each window, from ``/proc``: the replicas' process trees, the PostgreSQL
  server's, this process, and the rest of the machine ("other": other people's jobs on a
  shared box). Before each cell the script waits (up to ``--quiet-wait`` s) until other
  processes use less than ``--max-other-load`` cores, and prints the load average. The
  replicas' and PostgreSQL's CPU per answered request is printed too: where neighbours take
  cores, req/s drops but the CPU a request costs barely moves.
* **Durability**: after each configuration's replicas stop (SIGTERM, they drain), the rows
  its run added to the log are counted and compared with the predictions answered with 200.
* **Ratios**: each cell's req/s and p99 against the one-replica SQLite cell of the same
  concurrency and round.

A script, not a test: nothing asserts absolute figures. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cpu_load import machine_busy_seconds
from serving_throughput import cpu_seconds, machine, proc_tree

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODEL = "readmission_risk"
STORES = ("sqlite", "postgres")
REPLICAS = (1, 2)
PLATFORM_ENV = (
    "MLFLOW_TRACKING_URI",
    "ML_PLATFORM_DATABASE_URL",
    "ML_PLATFORM_ARTIFACT_ROOT",
    "ML_PLATFORM_SPECS",
    "ML_PLATFORM_API_TOKENS",
    "ML_PLATFORM_API_TOKEN_FILE",
    "DAGSTER_HOME",
)


# --------------------------------------------------------------------------- #
# Homes and replicas
# --------------------------------------------------------------------------- #
def prepare_home(root: Path, store: str, postgres) -> tuple[Path, dict[str, str]]:
    """A platform home on ``store`` with version 1 as champion; returns it and its store settings.

    The settings are left in this process's environment: the replicas started next inherit them.
    """
    from ml_platform_tests.conftest import SQLITE, Stores
    from ml_platform_tests.serving.conftest import register_versions, set_alias

    home = root / store / "home"
    home.mkdir(parents=True)
    for var in PLATFORM_ENV:
        os.environ.pop(var, None)
    stores = SQLITE if store == "sqlite" else Stores("postgres", postgres)
    environment = stores.environment()
    os.environ.update(ML_PLATFORM_HOME=str(home), **environment)
    assert register_versions(home, seeds=[11]) == ["1"]
    set_alias(home, "champion", "1")
    return home, environment


def use_store(home: Path, environment: dict[str, str]) -> None:
    """Point this process (and the replicas it starts) at one prepared home."""
    for var in PLATFORM_ENV:
        os.environ.pop(var, None)
    os.environ.update(ML_PLATFORM_HOME=str(home), **environment)


def start_replicas(home: Path, count: int) -> list:
    """``count`` endpoint processes on one home, started one after the other, each ready."""
    from ml_platform_tests.serving.conftest import Endpoint

    replicas = []
    try:
        for _ in range(count):
            replicas.append(Endpoint(home).start(ready_within=180))
    except BaseException:
        stop_replicas(replicas)
        raise
    return replicas


def stop_replicas(replicas: list) -> None:
    for replica in replicas:
        replica.stop()


def logged_since(since: datetime) -> int:
    """Rows the prediction log of the current home gained since ``since``."""
    import sqlalchemy as sa

    from ml_platform.settings import database_url
    from ml_platform.store.database import engine_for
    from ml_platform.store.tables import predictions

    query = sa.select(sa.func.count()).where(predictions.c.model == MODEL, predictions.c.created_at >= since)
    with engine_for(database_url()).connect() as conn:
        return conn.execute(query).scalar_one()


# --------------------------------------------------------------------------- #
# One cell: a load of fixed duration, its figures and the CPU used meanwhile
# --------------------------------------------------------------------------- #
def cpu_sample(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each group of process trees, of this process and of the machine."""
    sample = {name: cpu_seconds([p for root in roots for p in proc_tree(root)]) for name, roots in groups.items()}
    sample["load"] = sum(os.times()[:2])
    sample["machine"] = machine_busy_seconds()
    sample["clock"] = time.perf_counter()
    return sample


def other_cores(groups: dict[str, list[int]], seconds: float = 1.0) -> float:
    """Cores used by processes outside the benchmark over ``seconds``."""
    before = cpu_sample(groups)
    time.sleep(seconds)
    return cores(before, cpu_sample(groups))["other"]


def cores(before: dict, after: dict) -> dict[str, float]:
    wall = after["clock"] - before["clock"]
    used = {k: (after[k] - before[k]) / wall for k in before if k not in ("machine", "clock")}
    used["other"] = max(0.0, (after["machine"] - before["machine"]) / wall - sum(used.values()))
    return used


def wait_for_quiet(groups: dict[str, list[int]], args) -> tuple[float, float]:
    """Wait until other processes use less than ``--max-other-load`` cores (at most ``--quiet-wait`` s)."""
    started = time.perf_counter()
    while True:
        other = other_cores(groups)
        waited = time.perf_counter() - started
        if other <= args.max_other_load or waited >= args.quiet_wait:
            return waited, other


async def timed_load(load, window: tuple[float, float], groups: dict[str, list[int]]) -> dict[str, float]:
    """Run the load; sample CPU at the window's edges meanwhile. Returns the cores used in the window."""

    async def sampler():
        await asyncio.sleep(max(0.0, window[0] - time.perf_counter()))
        before = cpu_sample(groups)
        await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
        return cores(before, cpu_sample(groups))

    _, used = await asyncio.gather(load.run(), sampler())
    return used


def measure_cell(replicas: list, clients: int, groups: dict[str, list[int]], args, offset: int) -> dict:
    """One concurrency level against running replicas: req/s, p50/p99 and errors in the measured window."""
    from ml_platform_tests.serving.conftest import TOKEN, patient
    from ml_platform_tests.serving.roundrobin import RoundRobin, percentile

    waited, other_before = wait_for_quiet(groups, args)
    loadavg = os.getloadavg()[0]
    start = time.perf_counter()
    window = (start + args.warmup, start + args.warmup + args.seconds)

    def record(n: int) -> dict:
        return {**patient(offset + n), "encounter_id": f"bench-{offset + n}"}

    load = RoundRobin(
        [r.port for r in replicas],
        f"/v1/models/{MODEL}/predict",
        record,
        clients,
        TOKEN,
        until=window[1],
        timeout=args.timeout,
    )
    try:
        import uvloop

        used = uvloop.run(timed_load(load, window, groups))
    except ImportError:
        used = asyncio.run(timed_load(load, window, groups))
    counted = [o for o in load.outcomes if window[0] <= o.done < window[1]]
    latencies = sorted(o.done - o.sent for o in counted if o.acknowledged)
    errors: dict[str, int] = {}
    for o in counted:
        if not o.acknowledged:
            errors[str(o.status)] = errors.get(str(o.status), 0) + 1
    return {
        "clients": clients,
        "rps": len(latencies) / args.seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "errors": errors,
        "answered": sum(o.acknowledged for o in load.outcomes),
        "requests": len(load.outcomes),
        "cores": used,
        "other_before": other_before,
        "waited_for_quiet_s": waited,
        "loadavg_1m": loadavg,
    }


def run_configuration(home: Path, environment: dict, store: str, count: int, postgres, args, offset: int) -> dict:
    """Start ``count`` replicas on a home, measure every concurrency level, stop them, check the log."""
    use_store(home, environment)
    since = datetime.now(UTC)
    replicas = start_replicas(home, count)
    groups = {"replicas": [r.process.pid for r in replicas]}
    if store == "postgres":
        groups["postgres"] = [int((postgres.data / "postmaster.pid").read_text().split()[0])]
    cells = []
    try:
        for clients in args.concurrency:
            cells.append(measure_cell(replicas, clients, groups, args, offset))
            offset += 1_000_000
            print(describe(store, count, cells[-1]), flush=True)
    finally:
        stop_replicas(replicas)
    answered = sum(c["answered"] for c in cells)
    return {"store": store, "replicas": count, "cells": cells, "answered": answered, "logged": logged_since(since)}


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #
def describe(store: str, count: int, cell: dict) -> str:
    used = cell["cores"]
    return (
        f"  {store:<9}{count} replica(s) {cell['clients']:>3} clients: {cell['rps']:7.0f} req/s  "
        f"p50 {cell['p50_ms']:6.1f} ms  p99 {cell['p99_ms']:7.1f} ms  errors {sum(cell['errors'].values())}  "
        f"replica CPU per request {cpu_ms_per_request(cell):.2f} ms  "
        f"cores: replicas {used['replicas']:.2f}, postgres {used.get('postgres', 0):.2f}, "
        f"load {used['load']:.2f}, other {used['other']:.2f} (load average {cell['loadavg_1m']:.2f})"
    )


def cpu_ms_per_request(cell: dict) -> float:
    """Replica (and PostgreSQL) CPU per answered request: unlike req/s, busy neighbours barely move it."""
    used = cell["cores"]
    return (used["replicas"] + used.get("postgres", 0.0)) * 1000 / cell["rps"] if cell["rps"] else float("nan")


def ratios(configurations: list[dict]) -> list[dict]:
    """Each cell against the one-replica SQLite cell of the same round and concurrency."""
    baseline = {
        (c["round"], cell["clients"]): cell
        for c in configurations
        if (c["store"], c["replicas"]) == ("sqlite", 1)
        for cell in c["cells"]
    }
    rows = []
    for c in configurations:
        for cell in c["cells"]:
            base = baseline[(c["round"], cell["clients"])]
            rows.append(
                {
                    "round": c["round"],
                    "store": c["store"],
                    "replicas": c["replicas"],
                    "clients": cell["clients"],
                    "rps": cell["rps"],
                    "p99_ms": cell["p99_ms"],
                    "rps_ratio": cell["rps"] / base["rps"],
                    "p99_ratio": cell["p99_ms"] / base["p99_ms"],
                    "errors": sum(cell["errors"].values()),
                    "cpu_ms_per_request": cpu_ms_per_request(cell),
                    "other_cores": cell["cores"]["other"],
                }
            )
    return rows


def print_report(configurations: list[dict]) -> None:
    rows = ratios(configurations)
    print("\n=== prediction-log throughput and p99, against one replica on SQLite (same round, same clients) ===")
    print(
        f"{'clients':>7} {'store':<9}{'replicas':>9}{'req/s':>9}{'x base':>8}{'p99 ms':>9}{'x base':>8}{'errors':>7}"
        f"{'round':>6}{'CPU ms/req':>11}{'other cores':>12}"
    )
    for r in sorted(rows, key=lambda r: (r["clients"], r["round"], STORES.index(r["store"]), r["replicas"])):
        print(
            f"{r['clients']:>7} {r['store']:<9}{r['replicas']:>9}{r['rps']:>9.0f}{r['rps_ratio']:>7.2f}x"
            f"{r['p99_ms']:>9.1f}{r['p99_ratio']:>7.2f}x{r['errors']:>7}{r['round']:>6}"
            f"{r['cpu_ms_per_request']:>11.2f}{r['other_cores']:>12.2f}"
        )
    if len({r["round"] for r in rows}) > 1:
        print("\nmedian over rounds:")
        keys = sorted(
            {(r["clients"], r["store"], r["replicas"]) for r in rows}, key=lambda k: (k[0], STORES.index(k[1]), k[2])
        )
        for clients, store, count in keys:
            mine = [r for r in rows if (r["clients"], r["store"], r["replicas"]) == (clients, store, count)]
            print(
                f"{clients:>7} {store:<9}{count:>9}{statistics.median(r['rps'] for r in mine):>9.0f}"
                f"{statistics.median(r['rps_ratio'] for r in mine):>7.2f}x"
                f"{statistics.median(r['p99_ms'] for r in mine):>9.1f}"
                f"{statistics.median(r['p99_ratio'] for r in mine):>7.2f}x"
            )
    print("\ndurability (rows each configuration added to the log against predictions answered with 200):")
    for c in configurations:
        verdict = "equal" if c["logged"] == c["answered"] else "NOT EQUAL"
        print(
            f"  round {c['round']} {c['store']:<9}{c['replicas']} replica(s): {c['logged']} logged, "
            f"{c['answered']} answered: {verdict}"
        )


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each measured window")
    parser.add_argument("--concurrency", default="16,64", help="concurrent clients, comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="times the whole matrix is measured (alternating)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a request counts as an error")
    parser.add_argument(
        "--max-other-load",
        type=float,
        default=0.25,
        help="before each cell, wait until other processes use less CPU than this (cores)",
    )
    parser.add_argument("--quiet-wait", type=float, default=120.0, help="longest wait for that, in seconds")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    args.concurrency = [int(v) for v in args.concurrency.split(",") if v.strip()]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    from ml_platform_tests.postgres import PostgresServer

    root = Path(tempfile.mkdtemp(prefix="ml_platform_replicas_bench_"))
    results: dict = {
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "loadavg_before": os.getloadavg(),
        "seconds": args.seconds,
        "warmup": args.warmup,
        "concurrency": args.concurrency,
    }
    print(f"machine: {results['machine']}\nload average before: {results['loadavg_before']}", flush=True)
    postgres = PostgresServer().start()
    configurations: list[dict] = []
    try:
        homes = {store: prepare_home(root, store, postgres) for store in STORES}
        offset = 0
        for round_ in range(1, args.rounds + 1):
            order = [(s, n) for s in STORES for n in REPLICAS]
            for store, count in order if round_ % 2 else reversed(order):  # alternate: drift hits both ends
                home, environment = homes[store]
                configuration = run_configuration(home, environment, store, count, postgres, args, offset)
                configuration["round"] = round_
                configurations.append(configuration)
                offset += 10_000_000
        print_report(configurations)
        results.update(configurations=configurations, ratios=ratios(configurations), loadavg_after=os.getloadavg())
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
