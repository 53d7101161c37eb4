"""Simulated clinical batches for the models whose spec names a simulator.

``seed`` gives a fresh platform something to train on; ``simulate`` lands one more
batch, optionally with drift, bias, missingness or corrupt rows, to watch the platform
react. Both write through ``landing.write_batch``: atomically, never overwriting.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ml_platform.data.breast_cancer import ID_COLUMN, TARGET, breast_cancer_batches, breast_cancer_frame
from ml_platform.data.landing import next_batch_name, write_batch
from ml_platform.data.synthetic import generate_readmission
from ml_platform.spec import ModelSpec

SEED_BATCHES = {"readmission": 2, "breast_cancer": 3}
# Rows per seeded readmission batch. The readmission fairness gate judges a group only with
# at least 500 test rows (about 75 readmissions); with a 20% test split, two seeded batches give
# Black and Hispanic patients (17% and 12%) about 850 and 600 test rows, so the gate compares
# them with White patients instead of deciding on a few dozen readmissions (see the spec).
SEED_ROWS = 12_500
BATCH_ROWS = 5_000  # default size of one `simulate`d batch


def _require_simulator(spec: ModelSpec) -> str:
    if spec.source.simulator is None:
        raise ValueError(
            f"model '{spec.name}' has no simulator (source.simulator in its spec); "
            "land real batch files in its landing folder instead"
        )
    return spec.source.simulator


def _batch_number(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def _resampled_breast_cancer(rows: int, seed: int) -> pd.DataFrame:
    """New synthetic samples: real rows resampled with 2% multiplicative measurement noise."""
    rng = np.random.default_rng(seed)
    frame = breast_cancer_frame()
    sample = frame.iloc[rng.integers(0, len(frame), rows)].reset_index(drop=True)
    measurements = [c for c in frame.columns if c not in (ID_COLUMN, TARGET)]
    sample[measurements] = (sample[measurements] * rng.normal(1.0, 0.02, (rows, len(measurements)))).clip(lower=0)
    sample[ID_COLUMN] = [f"WDBC-S{seed:05d}-{i:06d}" for i in range(rows)]
    return sample


def simulate(
    spec: ModelSpec, home: Path, rows: int = BATCH_ROWS, seed: int | None = None, fmt: str = "csv", **knobs
) -> Path:
    """Land one simulated batch for ``spec``; knobs go to the readmission generator."""
    simulator = _require_simulator(spec)
    landing = spec.landing_dir(home)
    name = next_batch_name(landing)
    # The default seed follows the batch number, so repeated calls land different patients.
    seed = _batch_number(name) if seed is None else seed
    if simulator == "readmission":
        start = pd.Timestamp("2026-01-01") + pd.Timedelta(days=30 * (_batch_number(name) - 1))
        frame = generate_readmission(rows, seed=seed, start_date=start.date().isoformat(), **knobs)
    else:
        if knobs:
            raise ValueError(f"the breast_cancer simulator takes no drift knobs (got {sorted(knobs)})")
        frame = _resampled_breast_cancer(rows, seed)
    return write_batch(frame, landing, name, fmt)


def seed_batch_count(spec: ModelSpec) -> int:
    """How many initial batches ``seed_batches`` writes for ``spec`` into an empty landing folder."""
    simulator = _require_simulator(spec)
    return len(breast_cancer_batches()) if simulator == "breast_cancer" else SEED_BATCHES[simulator]


def seed_batches(spec: ModelSpec, home: Path) -> Iterator[tuple[Path, int]]:
    """Write the initial batches one at a time, yielding each file and its row count.

    A generator so that a caller can show progress while larger seeds are written; nothing
    is written when the landing folder already holds data, since landed data is immutable.
    """
    simulator = _require_simulator(spec)
    landing = spec.landing_dir(home)
    if landing.is_dir() and any(not p.name.startswith(".") for p in landing.iterdir()):
        return
    if simulator == "breast_cancer":
        for i, batch in enumerate(breast_cancer_batches(), 1):
            yield write_batch(batch, landing, f"batch_{i:04d}"), len(batch)
        return
    for _ in range(SEED_BATCHES[simulator]):
        yield simulate(spec, home, rows=SEED_ROWS), SEED_ROWS


def seed_landing(spec: ModelSpec, home: Path) -> list[Path]:
    """Initial batches for a model whose landing folder holds none yet."""
    return [path for path, _ in seed_batches(spec, home)]
