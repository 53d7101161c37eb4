"""The model pipeline: derived features, preprocessing fitted on training rows only, the estimator.

The derived features are the pipeline's first step, so a registered model scores a raw
contract record by itself, identically in training, evaluation, the endpoint and
``mlflow.pyfunc.load_model``.
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml_platform.spec import ModelSpec
from ml_platform.spec.expressions import derive


class DerivedFeatures(TransformerMixin, BaseEstimator):
    """Contract columns in, model inputs out: the spec's derived expressions, categoricals as plain strings.

    It learns nothing, so it transforms training and serving rows alike. Its parameters are
    plain strings and lists, so skops stores it without code.
    """

    def __init__(self, derived: dict | None = None, categorical: list | None = None, inputs: list | None = None):
        self.derived = derived
        self.categorical = categorical
        self.inputs = inputs

    def fit(self, X: pd.DataFrame, y=None) -> DerivedFeatures:
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = derive(X, self.derived or {})
        for name in self.categorical or []:
            # Plain object strings: what scikit-learn's encoders expect.
            out[name] = out[name].astype(object).where(out[name].notna(), None)
        return out[list(self.inputs or [])]


# The platform's own pipeline steps, which skops must load beside the spec's reviewed types.
PLATFORM_TRUSTED_TYPES = [f"{DerivedFeatures.__module__}.{DerivedFeatures.__qualname__}"]


def trusted_types(spec: ModelSpec) -> list[str]:
    """The types a model of this spec may hold when loaded: the platform's own and the spec's reviewed ones.

    Loaders pass this list themselves, so the trusted types an artifact's MLmodel file
    declares never widen what is loaded.
    """
    return [*PLATFORM_TRUSTED_TYPES, *spec.estimator.skops_trusted_types]


def derived_features(spec: ModelSpec) -> DerivedFeatures:
    return DerivedFeatures(
        derived=dict(spec.features.derived),
        categorical=list(spec.features.categorical),
        inputs=list(spec.features.model_inputs),
    )


def model_inputs(table: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """The columns the pipeline reads: contract columns, derived features computed inside it."""
    return table[spec.pipeline_inputs]


def score(model, inputs: pd.DataFrame) -> np.ndarray:
    """P(positive) for classifiers, the predicted value for regressors."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(inputs)[:, 1]
    return np.asarray(model.predict(inputs), dtype=float)


def build_pipeline(spec: ModelSpec):
    """Derived features, preprocessing fitted on training rows only, then the spec's estimator."""
    numeric = [*spec.features.numeric, *spec.features.derived]
    transformers = []
    if numeric:
        transformers.append(
            (
                "numeric",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if spec.features.categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                        ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                spec.features.categorical,
            )
        )
    return Pipeline(
        [
            ("derive", derived_features(spec)),
            ("preprocess", ColumnTransformer(transformers)),
            ("model", spec.estimator.build()),
        ]
    )


def pip_requirements() -> list[str]:
    """Exact versions, so MLflow does not infer them in a subprocess (about 5 s per model)."""
    return [f"{package}=={version(package)}" for package in ("scikit-learn", "pandas", "numpy", "skops", "mlflow")]
