"""Ingestion: landed files become immutable raw batches, then validated records.

``raw_batches`` has one dynamic partition per landed file version. The partition key
is the file name plus the first 12 hex digits of its sha256, so a file that changes
becomes a new batch and a registered batch always means the same bytes.
"""

import hashlib
import os
import shutil
import stat
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
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from ml_platform.assets.metadata import table_metadata
from ml_platform.audit import run_actor
from ml_platform.data.contracts import apply_contract
from ml_platform.resources import Lake, PlatformDatabase
from ml_platform.settings import platform_home
from ml_platform.specs import ModelSpec

HASH_PREFIX = 12


def batches_partitions(spec: ModelSpec) -> DynamicPartitionsDefinition:
    return DynamicPartitionsDefinition(name=f"{spec.name}_batches")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def batch_key(file_name: str, sha256: str) -> str:
    return f"{file_name}-{sha256[:HASH_PREFIX]}"


def parse_batch_key(key: str) -> tuple[str, str]:
    """(file name, sha256 prefix) of a batch partition key."""
    name, _, prefix = key.rpartition("-")
    return name, prefix


def raw_copy_path(lake: Lake, spec: ModelSpec, key: str) -> Path:
    return lake.raw_dir(spec.name, key) / parse_batch_key(key)[0]


def ensure_raw_copy(lake: Lake, spec: ModelSpec, key: str, landing: Path) -> tuple[Path, str]:
    """Copy the landed file to its immutable raw location once; return (path, sha256).

    An existing copy is never overwritten: it is re-hashed, and a mismatch (someone edited
    raw data) fails loudly instead of training on altered records.
    """
    file_name, prefix = parse_batch_key(key)
    target = raw_copy_path(lake, spec, key)
    if target.exists():
        sha = sha256_of(target)
        if not sha.startswith(prefix):
            raise Failure(
                f"raw copy {target} no longer matches batch {key} (sha256 {sha[:HASH_PREFIX]}): "
                "raw data is immutable; restore it from the landing source or backups"
            )
        return target, sha
    source = landing / file_name
    if not source.exists():
        raise Failure(f"batch {key}: landed file {source} is gone and no raw copy exists; land the file again")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{file_name}.tmp")
    shutil.copyfile(source, tmp)
    sha = sha256_of(tmp)
    if not sha.startswith(prefix):
        tmp.unlink()
        raise Failure(
            f"batch {key}: {source} has changed since it was registered (now sha256 "
            f"{sha[:HASH_PREFIX]}); the changed file is registered as a new batch by the sensor"
        )
    os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    os.replace(tmp, target)
    return target, sha


def build(spec: ModelSpec, home: Path | None = None) -> list:
    """The ingestion assets of one model."""
    name = spec.name
    partitions = batches_partitions(spec)
    landing = spec.landing_dir(home or platform_home())
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
    def raw_batches(context: AssetExecutionContext, lake: Lake) -> MaterializeResult:
        path, sha = ensure_raw_copy(lake, spec, context.partition_key, landing)
        return MaterializeResult(
            metadata={
                "sha256": sha,
                "size_bytes": path.stat().st_size,
                "arrived_at": datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(),
                "raw_copy": MetadataValue.path(str(path)),
                "source_file": path.name,
                **({"dagster/row_count": rows} if (rows := _row_count(path)) is not None else {}),
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
                description="Rows that broke the data contract, one entry per failed rule, with the "
                "column, the value and the whole original record, so nothing is lost.",
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
    def validate(context: AssetExecutionContext, lake: Lake, database: PlatformDatabase):
        key = context.partition_key
        raw = raw_copy_path(lake, spec, key)
        result = apply_contract(raw, spec, batch=key)
        lake.write_table(result.valid, name, "validated_records", key)
        lake.write_table(result.quarantine, name, "quarantine", key)
        rule_counts = result.counts_by_rule()
        database.audit().record(
            "batch_ingested" if result.passed else "batch_rejected",
            name,
            actor=run_actor(context.run_id),
            details={
                "batch": key,
                "file": raw.name,
                "sha256": sha256_of(raw),
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


def _row_count(path: Path) -> int | None:
    """Rows in a landed table, read cheaply (line count or Parquet footer); None if not a table."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open("rb") as f:
                lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
                if f.tell() == 0:
                    return 0
                f.seek(-1, os.SEEK_END)
                unterminated = f.read(1) != b"\n"  # a last line without a newline still counts
            return max(lines + unterminated - 1, 0)
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 - a corrupt file is reported by the schema check, not here
        return None
    return None


def _examples(quarantine, limit: int = 10) -> str:
    """The first few quarantine messages, for the UI."""
    if quarantine.empty:
        return "No rows quarantined."
    return "\n".join(
        f"- `{rule}`: {message}"
        for rule, message in quarantine[["rule", "message"]].head(limit).itertuples(index=False)
    )
