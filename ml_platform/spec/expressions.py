"""The derived-feature expression language: one evaluator for training, evaluation and serving.

A derived feature is an expression over a record's contract columns, such as
``log1p(length_of_stay)`` or ``(hba1c > 8) * 1.0``, with pandas.eval's meaning. It is
evaluated per row, so a batch's features never depend on other batches. The model
pipeline's first step calls ``derive``, so the registered model computes its derived
features itself, identically wherever it scores.
"""

from __future__ import annotations

import functools
import io
import re
import tokenize

import numpy as np
import pandas as pd

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


def referenced_names(expression: str) -> set[str]:
    """The names an expression uses (columns, functions, attributes), without evaluating it.

    The spec intersects them with its contract columns to know which raw columns the model
    pipeline must receive.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(expression).readline))
    except (tokenize.TokenError, SyntaxError):
        return set()
    return {t.string for t in tokens if t.type == tokenize.NAME}


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
    """Add each derived column, evaluating its expression over the row's columns."""
    out = df.copy()
    for name, expression in derived.items():
        try:
            values = _evaluate(out, expression)
        except Exception as exc:  # noqa: BLE001 - name the failing expression, whatever pandas raised
            raise ValueError(f"derived feature '{name}' = {expression!r} cannot be computed: {exc}") from None
        out[name] = pd.to_numeric(values, errors="coerce").replace([np.inf, -np.inf], np.nan)
    return out
