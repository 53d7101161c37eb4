"""scikit-learn's Wisconsin diagnostic breast-cancer data, prepared as landed batches.

The data set ships inside scikit-learn (nothing is downloaded), which makes it
a small, real, offline second use case next to the synthetic readmission data.
Columns are renamed to snake_case so they are valid identifiers everywhere
(SQL, Parquet, Dagster metadata), and the target is re-coded so that 1 means
malignant: the positive class is the one a screening model must find.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer

ID_COLUMN = "sample_id"
TARGET = "malignant"


def breast_cancer_frame() -> pd.DataFrame:
    """Return all 569 samples: ``sample_id``, 30 snake_case measurements, ``malignant``.

    scikit-learn codes ``target`` as 1 = benign, so it is inverted here
    (212 malignant, 357 benign).
    """
    raw = load_breast_cancer(as_frame=True).frame
    frame = raw.drop(columns="target").rename(columns=_snake_case)
    frame.insert(0, ID_COLUMN, [f"WDBC-{i:04d}" for i in range(1, len(raw) + 1)])
    frame[TARGET] = (1 - raw["target"]).astype(np.int64)
    return frame


def breast_cancer_batches(n_batches: int = 3) -> list[pd.DataFrame]:
    """Split the data set, in its original order, into ``n_batches`` contiguous batches.

    Deterministic and exhaustive: every row lands in exactly one batch, and
    batch sizes differ by at most one row.  Each batch has a fresh 0-based index.
    """
    frame = breast_cancer_frame()
    is_int = isinstance(n_batches, (int, np.integer)) and not isinstance(n_batches, bool)
    if not is_int or not 1 <= n_batches <= len(frame):
        raise ValueError(f"n_batches must be an integer within [1, {len(frame)}], got {n_batches!r}")
    bounds = np.linspace(0, len(frame), n_batches + 1).round().astype(int)
    return [frame.iloc[start:stop].reset_index(drop=True) for start, stop in pairwise(bounds)]


def _snake_case(name: str) -> str:
    """``"worst concave points"`` -> ``"worst_concave_points"``."""
    return "_".join(name.strip().lower().split())
