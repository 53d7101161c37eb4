"""Training: the versioned training set and the candidate model registered in MLflow."""

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from ml_platform.assets.evaluation import compute_metrics, model_inputs, score
from ml_platform.assets.ingestion import batches_partitions
from ml_platform.assets.metadata import content_hash, numbers, table_metadata
from ml_platform.assets.monitoring import labelled_production, reference_sample
from ml_platform.audit import run_actor
from ml_platform.resources import Lake, MLflowTracking, PlatformDatabase
from ml_platform.serving.log import count_outcomes
from ml_platform.settings import code_version, mlflow_ui_url
from ml_platform.specs import ModelSpec

# Train when any batch's features update. Unlike plain eager(), do not wait for "missing"
# feature partitions: a rejected batch never gets features, and must not stop training
# on the valid ones.
TRAIN_ON_NEW_FEATURES = (
    AutomationCondition.eager().without(~AutomationCondition.any_deps_missing()).with_label("eager, valid batches only")
)


def assign_split(table: pd.DataFrame, spec: ModelSpec) -> pd.Series:
    """train / validation / test per row, reproducibly (see ``Split``)."""
    split = spec.split
    if split.method == "hash":
        salted = table[spec.id_column].astype(str) + f"#{split.seed}"
        position = pd.util.hash_pandas_object(salted, index=False).to_numpy() / np.float64(2**64)
    else:
        # The newest rows get the lowest positions, so they are held out, like a prospective test.
        newest_first = table.sort_values([spec.contract.event_time_column, spec.id_column], ascending=False).index
        position = pd.Series(np.arange(len(table)) / len(table), index=newest_first).reindex(table.index).to_numpy()
    labels = np.where(
        position < split.test, "test", np.where(position < split.test + split.validation, "validation", "train")
    )
    return pd.Series(labels, index=table.index, name="split")


def union_batches(lake: Lake, spec: ModelSpec, batch_keys: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The feature tables of every usable batch (in landing order), latest row per id."""
    usable = [k for k in batch_keys if lake.has_table(spec.name, "features", k)]
    if spec.split.window:
        usable = usable[-spec.split.window :]
    if not usable:
        raise Failure(
            f"{spec.name}: no batch has passed validation yet; land data in the landing folder "
            "(or run `ml-platform simulate`) and let the new-data sensor register it"
        )
    frames = [lake.read_table(spec.name, "features", k).assign(batch=k) for k in usable]
    table = pd.concat(frames, ignore_index=True)
    # A corrected record re-landed later replaces the earlier one with the same id.
    table = table.drop_duplicates(spec.id_column, keep="last")
    return table.sort_values(spec.id_column).reset_index(drop=True), usable


def describe_training_set(spec: ModelSpec, table: pd.DataFrame, version: str, batches: list[str]) -> dict:
    """What a reviewer needs to know about the data a model learnt from."""
    counts = table["split"].value_counts()
    summary = {
        "version": version,
        "batches": batches,
        "rows": {s: int(counts.get(s, 0)) for s in ("train", "validation", "test")},
        "outcome_rate": float(table[spec.target].mean()) if spec.task.value == "binary_classification" else None,
        "event_time_range": None,
    }
    if spec.contract.event_time_column:
        times = table[spec.contract.event_time_column]
        summary["event_time_range"] = f"{times.min():%Y-%m-%d} .. {times.max():%Y-%m-%d}"
    return summary


def build_pipeline(spec: ModelSpec):
    """Preprocessing fitted on training rows only, then the spec's estimator."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

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
    return Pipeline([("preprocess", ColumnTransformer(transformers)), ("model", spec.estimator.build())])


def pip_requirements() -> list[str]:
    """Exact versions, so MLflow does not infer them in a subprocess (about 5 s per model)."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("scikit-learn", "pandas", "numpy", "skops", "mlflow")]


def build(spec: ModelSpec) -> list:
    name = spec.name
    partitions = batches_partitions(spec)
    training_key, candidate_key = AssetKey([name, "training_set"]), AssetKey([name, "candidate_model"])

    @asset(
        key=training_key,
        deps=[AssetKey([name, "features"])],
        group_name=name,
        kinds={"pandas", "parquet"},
        automation_condition=TRAIN_ON_NEW_FEATURES,
        description=f"The union of every valid {name} batch"
        f"{f' (latest {spec.split.window})' if spec.split.window else ''}, split into "
        f"train/validation/test by {spec.split.method}; versioned by a hash of its content.",
    )
    def training_set(context: AssetExecutionContext, lake: Lake, database: PlatformDatabase) -> MaterializeResult:
        table, batches = union_batches(lake, spec, context.instance.get_dynamic_partitions(partitions.name))
        # Counted before reading, so an outcome arriving meanwhile counts as new next time.
        outcomes_seen = count_outcomes(database.engine(), name)
        production = labelled_production(spec, database.engine())
        if len(production):
            table = pd.concat([table, production], ignore_index=True).drop_duplicates(spec.id_column, keep="last")
        table["split"] = assign_split(table, spec)
        version = content_hash(table)
        lake.write_table(table, name, "training_set", version)
        summary = describe_training_set(spec, table, version, batches)
        # The summary travels with the version: the model card of every model trained on it cites it.
        lake.write_json(summary, name, "training_set", f"{version}.summary")
        lake.write_json(summary, name, "training_set", "latest")
        metadata = {
            **table_metadata(table),
            "version": version,
            "batches": len(batches),
            "batch_keys": MetadataValue.json(batches),
            "rows/production": len(production),  # endpoint answers whose outcome was reported
            "outcomes_seen": outcomes_seen,
            **{f"rows/{s}": n for s, n in summary["rows"].items()},
            **{k: summary[k] for k in ("outcome_rate", "event_time_range") if summary.get(k) is not None},
        }
        return MaterializeResult(metadata=metadata, data_version=DataVersion(version))

    @asset(
        key=candidate_key,
        deps=[training_key],
        group_name=name,
        kinds={"scikit-learn", "mlflow"},
        automation_condition=AutomationCondition.eager(),
        description=f"A {spec.estimator.class_path.rsplit('.', 1)[-1]} pipeline fitted on the training split, "
        f"logged to MLflow (params, validation metrics, dataset digest, signature) and registered "
        f"as a new version of the '{name}' model.",
    )
    def candidate_model(
        context: AssetExecutionContext, lake: Lake, mlflow: MLflowTracking, database: PlatformDatabase
    ) -> MaterializeResult:
        pointer = lake.read_json(name, "training_set", "latest")
        table = lake.read_table(name, "training_set", pointer["version"])
        source = lake.table_path(name, "training_set", pointer["version"]).as_uri()
        candidate, pipeline = register_candidate(
            spec, table, pointer["version"], source, mlflow, dagster_run_id=context.run_id
        )
        lake.write_json(candidate, name, "candidate_model", "latest")
        # What monitoring compares production windows with while this version serves.
        train = table[table["split"] == "train"]
        lake.write_table(reference_sample(spec, train, pipeline), name, "reference", f"v{candidate['model_version']}")
        database.audit().record(
            "model_trained",
            name,
            actor=run_actor(context.run_id),
            version=candidate["model_version"],
            details={
                "training_set_version": pointer["version"],
                "batches": pointer["batches"],
                "mlflow_run_id": candidate["run_id"],
                "train_rows": candidate["train_rows"],
                "code_version": code_version(),
                "spec_hash": spec.spec_hash,
            },
        )
        context.log.info(f"registered {name} version {candidate['model_version']} (MLflow run {candidate['run_id']})")
        return MaterializeResult(
            metadata={
                "model_version": candidate["model_version"],
                "mlflow_run_id": candidate["run_id"],
                "model_uri": candidate["model_uri"],
                "training_set_version": pointer["version"],
                "mlflow_run": MetadataValue.url(
                    f"{mlflow_ui_url()}/#/experiments/{candidate['experiment_id']}/runs/{candidate['run_id']}"
                ),
                "mlflow_model_version": MetadataValue.url(
                    f"{mlflow_ui_url()}/#/models/{name}/versions/{candidate['model_version']}"
                ),
                "rows/train": candidate["train_rows"],
                **numbers(candidate["validation_metrics"], "validation/"),
            },
            data_version=DataVersion(f"v{candidate['model_version']}"),
        )

    return [training_set, candidate_model]


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
) -> tuple[dict, object]:
    """Fit on the train split, log everything to a new MLflow run and register the model version.

    Returns what the registry now holds (JSON-ready) and the fitted pipeline itself.
    """
    import mlflow as mlflow_api
    from mlflow.models import infer_signature

    train, validation = table[table["split"] == "train"], table[table["split"] == "validation"]
    if train.empty or (spec.task.value == "binary_classification" and train[spec.target].nunique() < 2):
        raise Failure(
            f"{spec.name}: the training split has {len(train)} rows and "
            f"{train[spec.target].nunique()} outcome class(es); land more labelled data"
        )
    pipeline = build_pipeline(spec).fit(model_inputs(train, spec), train[spec.target])
    validation_metrics = (
        compute_metrics(spec, validation[spec.target], score(pipeline, model_inputs(validation, spec)))
        if not validation.empty
        else {}
    )
    tags = {
        "ml_platform.data_version": data_version,
        "ml_platform.spec_hash": spec.spec_hash,
        "ml_platform.code_version": code_version(),
        "dagster.run_id": dagster_run_id,
        "ml_platform.model": spec.name,
    }
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
        client = mlflow.client()
        for key, value in {**tags, "ml_platform.dataset_digest": dataset.digest}.items():
            client.set_model_version_tag(spec.name, version, key, value)
        candidate = {
            "model_version": version,
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "dagster_run_id": dagster_run_id,
            "model_uri": f"models:/{spec.name}/{version}",
            "training_set_version": data_version,
            "dataset_digest": dataset.digest,
            "train_rows": len(train),
            "validation_metrics": validation_metrics,
        }
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
            skops_trusted_types=spec.estimator.skops_trusted_types or None,
        )
    except MlflowException as exc:
        if "untrusted types" not in str(exc):
            raise
        found = str(exc).rsplit("Untrusted types found in the file:", 1)[-1].strip()
        raise Failure(
            f"{spec.name}: the fitted model holds types skops does not trust by default: {found}. "
            "Review them, then list them under estimator.skops_trusted_types in the model's spec"
        ) from None
