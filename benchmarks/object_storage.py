"""Object storage against local disk: the same asset graph, both ways, in the same run, as a ratio.

    .venv/bin/python benchmarks/object_storage.py [--rows 100000] [--repeat 2] [--warmup-rows 2000]

One synthetic readmission batch (``generate_readmission(rows, seed=2024)``, written once as
CSV, not timed) is landed in a fresh platform home per run, and the graph is materialised
for it: ``raw_batches``, ``validated_records``/``quarantine``, ``features``, then
``training_set``, ``candidate_model``, ``evaluation_report``, on a real SQLite Dagster
instance with MLflow on SQLite. The two sides differ only in ``ML_PLATFORM_STORAGE_URL``:

* **local**: unset: lake, raw copies, reports and MLflow artifacts under the home on local disk;
* **s3**: a fresh bucket on moto's standalone S3 server on a loopback port (started here),
  so lake, raw copies, reports, checkpoints and MLflow artifacts are objects, written by
  single PUTs and read by s3fs and boto3.

Runs alternate (local, s3, local, s3, ...) after a small warm-up run of each; the figure is
the ratio of the medians. moto on loopback has none of S3's network latency or throughput
limits: the ratio is the cost of the object-storage code path (uploads, downloads, digest
checks, HTTP), not of a real S3 or GCS region. A script, not a test. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from dagster import AssetKey, instance_for_test, materialize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml_platform.data.raw import batch_key, sha256_of  # noqa: E402
from ml_platform.data.synthetic import generate_readmission  # noqa: E402
from ml_platform.defs import build_definitions  # noqa: E402
from ml_platform.defs.sensors import BATCH_ASSETS  # noqa: E402
from ml_platform.spec import get_spec  # noqa: E402
from ml_platform_tests.objectstore import MotoServer  # noqa: E402

MODEL = "readmission_risk"
TRAINING_ASSETS = ("training_set", "candidate_model", "evaluation_report")
CLEARED = ("ML_PLATFORM_STORAGE_URL", "ML_PLATFORM_DATABASE_URL", "MLFLOW_TRACKING_URI", "ML_PLATFORM_ARTIFACT_ROOT",
           "ML_PLATFORM_AUDIT_CHECKPOINTS", "DAGSTER_HOME")  # fmt: skip
QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # events still go to the instance


@contextmanager
def environment(values: dict[str, str]):
    """Set the variables for one run and put everything back after, so runs never leak settings."""
    saved = {k: os.environ.get(k) for k in {*values, *CLEARED}}
    for key in CLEARED:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_graph(root: Path, batch: Path, storage: dict[str, str]) -> dict[str, float]:
    """Land ``batch`` in a fresh home under ``root`` and materialise the graph; seconds per phase."""
    home = root / "home"
    landing = get_spec(MODEL).landing_dir(home)
    landing.mkdir(parents=True)
    shutil.copyfile(batch, landing / batch.name)
    key = batch_key(batch.name, sha256_of(batch))
    with environment({"ML_PLATFORM_HOME": str(home), **storage}):
        (root / "dagster").mkdir()
        with instance_for_test(temp_dir=str(root / "dagster")) as instance:
            defs = build_definitions(home=home)
            instance.add_dynamic_partitions(f"{MODEL}_batches", [key])
            assets, resources = list(defs.assets), defs.resources
            started = time.perf_counter()
            batch_run = materialize(
                assets, selection=[AssetKey([MODEL, a]) for a in BATCH_ASSETS], partition_key=key,
                instance=instance, resources=resources, run_config=QUIET_RUN, raise_on_error=False,
            )  # fmt: skip
            middle = time.perf_counter()
            training_run = materialize(
                assets, selection=[AssetKey([MODEL, a]) for a in TRAINING_ASSETS], instance=instance,
                resources=resources, run_config=QUIET_RUN, raise_on_error=False,
            )  # fmt: skip
            ended = time.perf_counter()
    # A small warm-up batch may fail a gate check; what is timed is that every step ran.
    made = {e.asset_key.path[-1] for r in (batch_run, training_run) for e in r.get_asset_materialization_events()}
    assert {"features", *TRAINING_ASSETS} <= made, made
    return {"batch": middle - started, "training": ended - middle, "total": ended - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--warmup-rows", type=int, default=2_000)
    args = parser.parse_args()
    server = MotoServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="ml-platform-bench-objects-") as scratch:
            scratch = Path(scratch)
            sides = {
                "local": lambda: {},
                "s3": lambda: {**server.environment(), "ML_PLATFORM_STORAGE_URL": f"s3://{server.create_bucket()}/p"},
            }

            def batch_of(rows: int) -> Path:
                path = scratch / f"batch_{rows}" / "batch_0001.csv"
                path.parent.mkdir()
                generate_readmission(rows, seed=2024).to_csv(path, index=False)
                return path

            warmup, batch = batch_of(args.warmup_rows), batch_of(args.rows)
            print(f"batch: {args.rows:,} rows, {batch.stat().st_size / 2**20:.1f} MiB CSV; moto at {server.endpoint}")
            for side, storage in sides.items():
                run_graph(Path(tempfile.mkdtemp(dir=scratch)), warmup, storage())
            times: dict[str, list[dict]] = {side: [] for side in sides}
            for repeat in range(args.repeat):
                for side, storage in sides.items():
                    times[side].append(run_graph(Path(tempfile.mkdtemp(dir=scratch)), batch, storage()))
                    phases = ", ".join(f"{k} {v:.1f} s" for k, v in times[side][-1].items())
                    print(f"repeat {repeat + 1} {side:5}: {phases}")
    finally:
        server.stop()
    medians = {side: {k: statistics.median(t[k] for t in runs) for k in runs[0]} for side, runs in times.items()}
    for phase in ("batch", "training", "total"):
        local, s3 = medians["local"][phase], medians["s3"][phase]
        print(f"median {phase:8}: local {local:6.1f} s, s3 (moto) {s3:6.1f} s, ratio s3/local {s3 / local:.2f}")


if __name__ == "__main__":
    main()
