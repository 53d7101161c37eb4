"""Registration: fit the candidate, log it to its own MLflow run and register a new model version."""

from __future__ import annotations

from importlib.metadata import version as package_version

import pandas as pd
from pydantic import BaseModel
from sklearn.pipeline import Pipeline

from ml_platform import metrics as catalogue
from ml_platform.errors import PlatformError
from ml_platform.settings import code_version
from ml_platform.spec import ModelSpec, Task
from ml_platform.store import tags as tag
from ml_platform.store.registry import MLflowTracking
from ml_platform.training.pipeline import build_pipeline, model_inputs, score, trusted_types


class Candidate(BaseModel):
    """A registered, not yet evaluated model version and where it came from."""

    model_version: str
    run_id: str
    experiment_id: str
    dagster_run_id: str | None = None
    model_uri: str
    training_set_version: str
    dataset_digest: str | None = None
    train_rows: int
    validation_metrics: dict[str, float | None] = {}  # None: undefined on the validation rows
    lineage: dict[str, str] = {}  # the version's lineage tags (``lineage_tags``)


def pip_requirements() -> list[str]:
    """Exact versions, so MLflow does not infer them in a subprocess (about 5 s per model)."""
    return [f"{p}=={package_version(p)}" for p in ("scikit-learn", "pandas", "numpy", "skops", "mlflow")]


def lineage_tags(spec: ModelSpec, data_version: str, dagster_run_id: str | None) -> dict[str, str]:
    """What a run and its model version record about where they came from."""
    return {
        tag.DATA_VERSION: data_version,
        tag.SPEC_HASH: spec.spec_hash,
        tag.CODE_VERSION: code_version(),
        tag.DAGSTER_RUN_ID: dagster_run_id or "none",
        tag.MODEL: spec.name,
    }


def training_dataset(spec: ModelSpec, table: pd.DataFrame, data_version: str, source_uri: str):
    """The training set as an MLflow dataset: its lake file, its content hash as digest, its schema.

    ``mlflow.data.from_pandas`` would re-hash the rows and infer the schema cell by cell
    (about 4 s per 100k rows, 37 s per million); the data version already is a content hash,
    and a schema inferred from the first rows names the same columns and types.
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.models import infer_signature

    return MetaDataset(
        source=resolve_dataset_source(source_uri),
        name=f"{spec.name}-training-set-{data_version}",
        digest=data_version,
        schema=infer_signature(table.head(1000)).inputs,
    )


def register_candidate(
    spec: ModelSpec,
    table: pd.DataFrame,
    data_version: str,
    source_uri: str,
    mlflow: MLflowTracking,
    dagster_run_id: str,
) -> tuple[Candidate, Pipeline]:
    """Fit on the train split, log everything to a new MLflow run and register the model version.

    Returns what the registry now holds and the fitted pipeline itself. The governance
    service tags the version with its lineage (``Governance.model_trained``).
    """
    import mlflow as mlflow_api
    from mlflow.models import infer_signature

    train, validation = table[table["split"] == "train"], table[table["split"] == "validation"]
    if train.empty or (spec.task == Task.binary_classification and train[spec.target].nunique() < 2):
        raise PlatformError(
            f"{spec.name}: the training split has {len(train)} rows and "
            f"{train[spec.target].nunique()} outcome class(es); land more labelled data"
        )
    pipeline = build_pipeline(spec).fit(model_inputs(train, spec), train[spec.target])
    validation_metrics = (
        catalogue.compute_metrics(spec, validation[spec.target], score(pipeline, model_inputs(validation, spec)))
        if not validation.empty
        else {}
    )
    tags = lineage_tags(spec, data_version, dagster_run_id)
    with mlflow.run(spec.name, run_name=f"{spec.name}-{data_version}", tags=tags) as run:
        mlflow_api.log_params(
            {
                **{f"estimator.{k}": v for k, v in spec.estimator.params.items()},
                "estimator.class": spec.estimator.class_path,
                "split.method": spec.split.method,
                "split.test": spec.split.test,
                "split.validation": spec.split.validation,
                "threshold": spec.threshold,
                "rows.train": len(train),
            }
        )
        mlflow_api.log_metrics({f"validation_{k}": v for k, v in validation_metrics.items()})
        dataset = training_dataset(spec, table, data_version, source_uri)
        mlflow_api.log_input(dataset, context="training")
        inputs = model_inputs(train.head(100), spec)
        info = _log_model(spec, pipeline, infer_signature(inputs, score(pipeline, inputs)))
        version = str(info.registered_model_version)
        candidate = Candidate(
            model_version=version,
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            dagster_run_id=dagster_run_id,
            model_uri=f"models:/{spec.name}/{version}",
            training_set_version=data_version,
            dataset_digest=dataset.digest,
            train_rows=len(train),
            validation_metrics=validation_metrics,
            lineage={**tags, tag.DATASET_DIGEST: dataset.digest},
        )
        return candidate, pipeline


def _log_model(spec: ModelSpec, pipeline, signature):
    """Log with skops (safe loading) and explicit requirements; name untrusted types as a spec fix."""
    import mlflow as mlflow_api
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_api.sklearn.log_model(
            pipeline,
            name="model",
            registered_model_name=spec.name,
            pip_requirements=pip_requirements(),
            signature=signature,
            skops_trusted_types=trusted_types(spec),
        )
    except MlflowException as exc:
        if "untrusted types" not in str(exc):
            raise
        found = str(exc).rsplit("Untrusted types found in the file:", 1)[-1].strip()
        raise PlatformError(
            f"{spec.name}: the fitted model holds types skops does not trust by default: {found}. "
            "Review them, then list them under estimator.skops_trusted_types in the model's spec"
        ) from None
