"""Features: the per-batch feature table of validated rows.

Only row-wise transformations live here (derived columns from the spec), so a batch's
features never depend on other batches and partitions stay independent. Everything that
learns from data (imputation, scaling, encoding) is part of the model pipeline instead,
fitted on training rows only. The table keeps the contract columns the pipeline reads, so
the model derives its own features from them; the derived values are kept beside them for
people and drift monitoring.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from ml_platform.spec import ModelSpec, Task
from ml_platform.spec.expressions import derive


def feature_table(df: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Ids, event time, sensitive attributes, the pipeline's contract columns, derived features, target."""
    out = derive(df, spec.features.derived)
    for name in spec.features.categorical:
        # Plain object strings: what scikit-learn's encoders and MLflow signatures expect.
        out[name] = out[name].astype(object).where(out[name].notna(), None)
    if spec.task == Task.binary_classification:
        out[spec.target] = out[spec.target].astype(int)  # validated: never missing, always 0 or 1
    keep = [
        spec.id_column,
        spec.contract.event_time_column,
        *spec.sensitive_attributes,
        *spec.pipeline_inputs,
        *spec.features.model_inputs,
        spec.target,
    ]
    return out[list(dict.fromkeys(c for c in keep if c is not None and c in out.columns))]


def content_hash(df: pd.DataFrame) -> str:
    """A short, order-sensitive hash of a table's values: its data version."""
    row_hashes = pd.util.hash_pandas_object(df, index=False).to_numpy()
    digest = hashlib.sha256(row_hashes.tobytes())
    digest.update(",".join(map(str, df.columns)).encode())
    return digest.hexdigest()[:16]
