"""Raw batches: landed files registered by content and copied, byte for byte, into the immutable raw store.

A batch key is the file name plus the first 12 hex digits of its sha256, so a file that
changes becomes a new batch and a registered batch always means the same bytes. The
landing folder is scanned with a cursor of each file's size, modification time and key,
so only new or changed files are hashed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
from pathlib import Path

import pyarrow.parquet as pq

from ml_platform.errors import PlatformError
from ml_platform.spec import ModelSpec
from ml_platform.store.lake import Lake
from ml_platform.store.private import private_dir

logger = logging.getLogger("ml_platform.data.raw")

# Bound the work of one scan; the rest of a large drop is picked up by the next ones.
MAX_FILES_PER_SCAN = 50

HASH_PREFIX = 12


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
            raise PlatformError(
                f"raw copy {target} no longer matches batch {key} (sha256 {sha[:HASH_PREFIX]}): "
                "raw data is immutable; restore it from the landing source or backups"
            )
        return target, sha
    source = landing / file_name
    if not source.exists():
        raise PlatformError(f"batch {key}: landed file {source} is gone and no raw copy exists; land the file again")
    private_dir(target.parent)
    tmp = target.with_name(f".{file_name}.tmp")
    shutil.copyfile(source, tmp)
    sha = sha256_of(tmp)
    if not sha.startswith(prefix):
        tmp.unlink()
        raise PlatformError(
            f"batch {key}: {source} has changed since it was registered (now sha256 "
            f"{sha[:HASH_PREFIX]}); the changed file is registered as a new batch by the sensor"
        )
    os.chmod(tmp, stat.S_IRUSR)  # read-only, and patient data: owner only
    os.replace(tmp, target)
    return target, sha


def row_count(path: Path) -> int | None:
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
            return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 - a corrupt file is reported by the schema check, not here
        return None
    return None


def landed_files(landing: Path) -> list[Path]:
    """Files in the landing folder, oldest first; hidden files are writes still in progress."""
    if not landing.is_dir():
        return []
    files = [p for p in landing.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def scan(landing: Path, cursor: dict[str, list]) -> tuple[list[tuple[str, Path]], dict[str, list]]:
    """(new batch keys with their files, updated cursor) for the files changed since the cursor."""
    cursor = dict(cursor)
    found = []
    for path in landed_files(landing):
        stat = path.stat()
        seen = cursor.get(path.name)
        if seen and seen[:2] == [stat.st_size, stat.st_mtime_ns]:
            continue
        key = batch_key(path.name, sha256_of(path))
        cursor[path.name] = [stat.st_size, stat.st_mtime_ns, key]
        if not seen or seen[2] != key:
            found.append((key, path))
            logger.info(
                "new batch %s in %s", key, landing,
                extra={"event": {"action": "batch_found"}, "file": {"name": path.name, "size": stat.st_size}},
            )  # fmt: skip
        if len(found) >= MAX_FILES_PER_SCAN:
            break
    return found, cursor
