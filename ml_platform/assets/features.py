"""Features: the per-batch feature table, computed the same way for training and serving.

Only row-wise transformations live here (derived columns from the spec), so a batch's
features never depend on other batches and partitions stay independent. Everything
that learns from data (imputation, scaling, encoding) is part of the model pipeline
instead, fitted on training rows only.
"""

import functools
import re

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetKey, DataVersion, MaterializeResult, asset

from ml_platform.assets.ingestion import batches_partitions
from ml_platform.assets.metadata import content_hash, table_metadata
from ml_platform.resources import Lake
from ml_platform.specs import ModelSpec

# The functions pandas.eval offers in expressions, by the numpy functions it maps them to.
EVAL_FUNCTIONS = {
    name: getattr(np, name)
    for name in (
        "sin", "cos", "tan", "exp", "expm1", "log", "log10", "log1p", "sqrt", "sinh", "cosh", "tanh",
        "arcsin", "arccos", "arctan", "arccosh", "arcsinh", "arctanh", "abs", "floor", "ceil", "arctan2",
    )
}  # fmt: skip
# Boolean operators: pandas.eval gives & and | the precedence of `and`/`or`, Python binds them
# tighter than comparisons, so expressions using them always go through pandas.eval.
_PANDAS_ONLY = re.compile(r"[&|~@`]|\b(and|or|not|in)\b")


@functools.lru_cache(maxsize=256)
def _compiled(expression: str):
    """The expression as Python bytecode when Python evaluates it exactly as pandas.eval would, else None."""
    if _PANDAS_ONLY.search(expression):
        return None
    try:
        return compile(expression, "<derived feature>", "eval")
    except SyntaxError:
        return None


def _evaluate(df: pd.DataFrame, expression: str):
    """pandas.eval's result, computed by Python directly when that is the same thing.

    pandas.eval parses the expression on every call (milliseconds); the endpoint derives
    features for every micro-batch, so arithmetic, comparisons and the functions above are
    compiled once and evaluated on the columns instead.
    """
    code = _compiled(expression)
    if code is not None:
        try:
            return eval(code, {"__builtins__": {}}, {**EVAL_FUNCTIONS, **{c: df[c] for c in df.columns}})  # noqa: S307 - no builtins, columns and numpy functions only
        except Exception:  # noqa: BLE001 - anything Python cannot do, pandas.eval decides (or explains)
            pass
    return df.eval(expression, engine="python")


def derive(df: pd.DataFrame, derived: dict[str, str]) -> pd.DataFrame:
    """Add each derived column, evaluating its pandas expression over the row's columns."""
    out = df.copy()
    for name, expression in derived.items():
        try:
            values = _evaluate(out, expression)
        except Exception as exc:  # noqa: BLE001 - name the failing expression, whatever pandas raised
            raise ValueError(f"derived feature '{name}' = {expression!r} cannot be computed: {exc}") from None
        out[name] = pd.to_numeric(values, errors="coerce").replace([np.inf, -np.inf], np.nan)
    return out


def _with_inputs(df: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    out = derive(df, spec.features.derived)
    for name in spec.features.categorical:
        # Plain object strings: what scikit-learn's encoders and MLflow signatures expect.
        out[name] = out[name].astype(object).where(out[name].notna(), None)
    return out


def model_frame(df: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """The model's input columns of validated records; the endpoint scores exactly what training saw."""
    return _with_inputs(df, spec)[spec.features.model_inputs]


def engineer(df: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """The feature table of validated rows: ids, event time, sensitive attributes, inputs, target."""
    out = _with_inputs(df, spec)
    if spec.task.value == "binary_classification":
        out[spec.target] = out[spec.target].astype(int)  # validated: never missing, always 0 or 1
    keep = [
        spec.id_column,
        spec.contract.event_time_column,
        *spec.sensitive_attributes,
        *spec.features.model_inputs,
        spec.target,
    ]
    return out[list(dict.fromkeys(c for c in keep if c is not None and c in out.columns))]


def build(spec: ModelSpec) -> list:
    name = spec.name

    @asset(
        key=AssetKey([name, "features"]),
        deps=[AssetKey([name, "validated_records"])],
        group_name=name,
        partitions_def=batches_partitions(spec),
        kinds={"pandas", "parquet"},
        description=f"Model inputs of each validated {name} batch: {len(spec.features.model_inputs)} features "
        f"({', '.join(spec.features.model_inputs[:6])}, ...) plus id, event time, sensitive "
        "attributes and target.",
    )
    def features(context: AssetExecutionContext, lake: Lake) -> MaterializeResult:
        key = context.partition_key
        table = engineer(lake.read_table(name, "validated_records", key), spec)
        lake.write_table(table, name, "features", key)
        return MaterializeResult(metadata=table_metadata(table), data_version=DataVersion(content_hash(table)))

    return [features]
