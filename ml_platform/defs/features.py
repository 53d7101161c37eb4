"""The features asset: the per-batch feature table (``data.features``).

Only row-wise transformations live here (derived columns from the spec), so a batch's
features never depend on other batches and partitions stay independent. Everything
that learns from data (imputation, scaling, encoding) is part of the model pipeline
instead, fitted on training rows only.
"""

from dagster import AssetExecutionContext, AssetKey, DataVersion, MaterializeResult, ResourceParam, asset

from ml_platform.data.features import content_hash, feature_table
from ml_platform.defs.ingestion import batches_partitions
from ml_platform.defs.metadata import table_metadata
from ml_platform.spec import ModelSpec
from ml_platform.store.lake import Lake


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
    def features(context: AssetExecutionContext, lake: ResourceParam[Lake]) -> MaterializeResult:
        key = context.partition_key
        table = feature_table(lake.read_table(name, "validated_records", key), spec)
        lake.write_table(table, name, "features", key)
        return MaterializeResult(metadata=table_metadata(table), data_version=DataVersion(content_hash(table)))

    return [features]
