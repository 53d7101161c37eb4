"""Training assets: the versioned training set and the candidate model registered in MLflow."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    asset,
)

from ml_platform.data.features import content_hash
from ml_platform.defs.ingestion import batches_partitions
from ml_platform.defs.metadata import numbers, run_actor, table_metadata
from ml_platform.governance.service import Governance
from ml_platform.monitoring.windows import reference_sample
from ml_platform.spec import ModelSpec
from ml_platform.store.database import PlatformDatabase
from ml_platform.store.lake import Lake
from ml_platform.store.objects import uri
from ml_platform.store.predictions import count_outcomes
from ml_platform.store.registry import MLflowTracking, model_version_url, run_url
from ml_platform.training.registration import register_candidate
from ml_platform.training.split import assign_split, describe_training_set, labelled_production, union_batches

# Train when any batch's features update. Unlike plain eager(), do not wait for "missing"
# feature partitions: a rejected batch never gets features, and must not stop training
# on the valid ones.
TRAIN_ON_NEW_FEATURES = (
    AutomationCondition.eager().without(~AutomationCondition.any_deps_missing()).with_label("eager, valid batches only")
)


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
    def training_set(
        context: AssetExecutionContext, lake: ResourceParam[Lake], database: ResourceParam[PlatformDatabase]
    ) -> MaterializeResult:
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
        context: AssetExecutionContext,
        lake: ResourceParam[Lake],
        mlflow: ResourceParam[MLflowTracking],
        database: ResourceParam[PlatformDatabase],
    ) -> MaterializeResult:
        pointer = lake.read_json(name, "training_set", "latest")
        table = lake.read_table(name, "training_set", pointer["version"])
        source = uri(lake.table_path(name, "training_set", pointer["version"]))
        candidate, pipeline = register_candidate(
            spec, table, pointer["version"], source, mlflow, dagster_run_id=context.run_id
        )
        lake.write_json(candidate.model_dump(mode="json"), name, "candidate_model", "latest")
        # What monitoring compares production windows with while this version serves.
        train = table[table["split"] == "train"]
        lake.write_table(reference_sample(spec, train, pipeline), name, "reference", f"v{candidate.model_version}")
        Governance(mlflow, database).model_trained(
            spec, candidate, batches=pointer["batches"], actor=run_actor(context.run_id)
        )
        context.log.info(f"registered {name} version {candidate.model_version} (MLflow run {candidate.run_id})")
        return MaterializeResult(
            metadata={
                "model_version": candidate.model_version,
                "mlflow_run_id": candidate.run_id,
                "model_uri": candidate.model_uri,
                "training_set_version": pointer["version"],
                "mlflow_run": MetadataValue.url(run_url(candidate.experiment_id, candidate.run_id)),
                "mlflow_model_version": MetadataValue.url(model_version_url(name, candidate.model_version)),
                "rows/train": candidate.train_rows,
                **numbers(candidate.validation_metrics, "validation/"),
            },
            data_version=DataVersion(f"v{candidate.model_version}"),
        )

    return [training_set, candidate_model]
