"""Ingestion assets: landed files become immutable raw batches, then validated records.

``raw_batches`` has one dynamic partition per landed file version (``data.raw``'s batch key).
"""

from datetime import UTC, datetime
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    DataVersion,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    asset,
    multi_asset,
)

from ml_platform.data.contracts import apply_contract
from ml_platform.data.raw import HASH_PREFIX, ensure_raw_copy, row_count, verified_raw_copy
from ml_platform.defs.metadata import run_actor, table_metadata
from ml_platform.governance.service import Governance
from ml_platform.settings import platform_home
from ml_platform.spec import ModelSpec
from ml_platform.store.database import PlatformDatabase
from ml_platform.store.lake import Lake
from ml_platform.store.predictions import IdHasher, id_hash_key
from ml_platform.store.registry import MLflowTracking


def batches_partitions(spec: ModelSpec) -> DynamicPartitionsDefinition:
    return DynamicPartitionsDefinition(name=f"{spec.name}_batches")


def build(spec: ModelSpec, home: Path | None = None) -> list:
    """The ingestion assets of one model."""
    name = spec.name
    partitions = batches_partitions(spec)
    home = home or platform_home()
    landing = spec.landing_dir(home)
    raw_key, validated_key, quarantine_key = (
        AssetKey([name, a]) for a in ("raw_batches", "validated_records", "quarantine")
    )

    @asset(
        key=raw_key,
        group_name=name,
        partitions_def=partitions,
        kinds={"file"},
        description=f"Landed {name} batch files, copied byte-for-byte and read-only, one partition per file "
        f"version (name + sha256 prefix). Landing folder: {landing}. Never modified or deleted.",
    )
    def raw_batches(context: AssetExecutionContext, lake: ResourceParam[Lake]) -> MaterializeResult:
        path, sha = ensure_raw_copy(lake, spec, context.partition_key, landing)
        stored = path.stat()
        return MaterializeResult(
            metadata={
                "sha256": sha,
                "size_bytes": stored.st_size,
                "arrived_at": datetime.fromtimestamp(stored.st_mtime, UTC).isoformat(),
                "raw_copy": MetadataValue.path(str(path)),
                "source_file": path.name,
                **({"dagster/row_count": rows} if (rows := row_count(path)) is not None else {}),
            },
            data_version=DataVersion(sha[:HASH_PREFIX]),
        )

    @multi_asset(
        specs=[
            AssetSpec(
                validated_key,
                deps=[raw_key],
                group_name=name,
                kinds={"pandas", "parquet"},
                description=f"Rows of each {name} batch that meet the data contract (types, ranges, "
                "allowed values, nullability, unique ids), typed.",
            ),
            AssetSpec(
                quarantine_key,
                deps=[raw_key],
                group_name=name,
                kinds={"pandas", "parquet"},
                description="Rows that broke the data contract, one entry per failed rule: the rule, the "
                "column, a pointer to the row in the raw copy (its sha256, row and line) and the record id "
                "as its keyed hash. No values and no copy of the record: the raw copy keeps them.",
            ),
        ],
        check_specs=[
            AssetCheckSpec(
                "batch_schema",
                asset=validated_key,
                blocking=True,
                description="The batch file as a whole matches the contract: readable CSV/Parquet, has rows, "
                "every contract column present, no unknown columns, each column of its type.",
            )
        ],
        partitions_def=partitions,
        name=f"{name}_validate",
    )
    def validate(
        context: AssetExecutionContext,
        lake: ResourceParam[Lake],
        mlflow: ResourceParam[MLflowTracking],
        database: ResourceParam[PlatformDatabase],
    ):
        key = context.partition_key
        with verified_raw_copy(lake, spec, key) as (raw, sha256):  # re-hashed: altered raw data is refused
            result = apply_contract(raw, spec, batch=key, hasher=IdHasher(id_hash_key(home)))
        lake.write_table(result.valid, name, "validated_records", key)
        lake.write_table(result.quarantine, name, "quarantine", key)
        rule_counts = result.counts_by_rule()
        Governance(mlflow, database).batch_validated(
            name,
            result.passed,
            actor=run_actor(context.run_id),
            details={
                "batch": key,
                "file": raw.name,
                "sha256": sha256,
                "rows_valid": len(result.valid),
                "quarantined_by_rule": rule_counts,
                "problems": result.batch_problems,
            },
        )
        yield MaterializeResult(
            asset_key=validated_key,
            metadata={
                **table_metadata(result.valid),
                "rows_read": result.rows_read,
                "rows_quarantined": int(result.quarantine["row"].nunique()),
                "batch_passed": result.passed,
            },
        )
        yield MaterializeResult(
            asset_key=quarantine_key,
            metadata={
                **table_metadata(result.quarantine),
                **{f"quarantined_by_rule/{rule}": count for rule, count in rule_counts.items()},
                "examples": MetadataValue.md(_examples(result.quarantine)),
            },
        )
        yield AssetCheckResult(
            asset_key=validated_key,
            check_name="batch_schema",
            passed=result.passed,
            severity=AssetCheckSeverity.ERROR,
            description="; ".join(result.batch_problems) or "the batch matches the contract",
            metadata={"problems": MetadataValue.md("\n".join(f"- {p}" for p in result.batch_problems) or "none")},
        )

    return [raw_batches, validate]


def _examples(quarantine, limit: int = 10) -> str:
    """The first few quarantine messages, for the UI: rule, column and pointer, never a value."""
    if quarantine.empty:
        return "No rows quarantined."
    return "\n".join(
        f"- `{rule}`: {message}"
        for rule, message in quarantine[["rule", "message"]].head(limit).itertuples(index=False)
    )
