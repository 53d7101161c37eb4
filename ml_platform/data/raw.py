"""Raw batches: landed files registered by content and copied, byte for byte, into the immutable raw store.

A batch key is the file name plus the first 12 hex digits of its sha256, so a file that
changes becomes a new batch and a registered batch always means the same bytes. The
landing folder is scanned with a cursor of each file's size, modification time and key,
so only new or changed files are hashed.

Landed files are not trusted. Only regular files are taken: a symbolic link (which could
point at any file the platform can read), a folder, a pipe or a device is rejected by name
and never opened, and files are opened with O_NOFOLLOW so a name swapped for a link after
the check is refused too. A file is registered only once its size and modification time
are the same on two scans (a copy still in progress is not a batch), when it is within the
size limit, and when it is not gzip-compressed (recognised by its first bytes, whatever
its name).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, NamedTuple

import pyarrow.parquet as pq

from ml_platform.errors import PlatformError
from ml_platform.settings import get_settings, variable_name
from ml_platform.spec import ModelSpec
from ml_platform.store.lake import Lake
from ml_platform.store.objects import StoragePath, atomic_write, download, is_local

logger = logging.getLogger("ml_platform.data.raw")

# Bound the work of one scan; the rest of a large drop is picked up by the next ones.
MAX_FILES_PER_SCAN = 50

HASH_PREFIX = 12

GZIP_MAGIC = b"\x1f\x8b"
MAX_FILE_ENV = variable_name("max_file_bytes")


class Rejected(NamedTuple):
    """A landed name that is not taken, and why, with the fix."""

    name: str
    reason: str


class Scan(NamedTuple):
    """One look at a landing folder: new batches, the cursor, files still changing, files refused."""

    found: list[tuple[str, Path]]
    cursor: dict[str, list]
    waiting: list[str]
    rejected: list[Rejected]


def entry_problem(name: str, info: os.stat_result, limit: int) -> str | None:
    """Why a folder entry is not taken, from its lstat alone (None: a regular file within the limit)."""
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return (
            f"{name} is a symbolic link: only regular files are taken and links are never followed; "
            "copy the file itself into the folder"
        )
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
        return f"{name} is {kind}: only regular files are taken; land each batch as a file"
    if info.st_size > limit:
        return (
            f"{name} is {info.st_size} bytes, over the limit of {limit} ({MAX_FILE_ENV}); "
            "split it into smaller batches, or raise the limit"
        )
    return None


def open_landed(path: Path) -> BinaryIO:
    """Open a landed file for reading without following a link, refusing anything but a regular file.

    O_NONBLOCK: opening a pipe must not hang the sensor tick waiting for a writer.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise PlatformError(f"{path.name} is a symbolic link: links are never followed; land the file itself") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PlatformError(f"{path.name} is not a regular file: only regular files are taken")
    return os.fdopen(fd, "rb")


def compressed_problem(name: str, head: bytes) -> str | None:
    """A gzip file is refused by its bytes: the raw copy must be the very bytes the contract reads,
    and a compressed file would pass the size limit yet expand without bound."""
    if head.startswith(GZIP_MAGIC):
        return (
            f"{name} is gzip-compressed (its bytes start 1f 8b): decompress it (gunzip) and land "
            "the .csv or .parquet itself"
        )
    return None


def settled_entries(
    folder: Path, skip: tuple[str, ...] = ()
) -> tuple[list[tuple[Path, os.stat_result]], list[Rejected]]:
    """(regular files with their lstat, rejected names) of a folder; hidden names and ``skip`` are ignored."""
    limit = get_settings().max_file_bytes
    files, rejected = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.name in skip:
                continue
            info = entry.stat(follow_symlinks=False)
            problem = entry_problem(entry.name, info, limit)
            if problem:
                rejected.append(Rejected(entry.name, problem))
            else:
                files.append((Path(entry.path), info))
    files.sort(key=lambda pair: (pair[1].st_mtime_ns, pair[0].name))
    return files, sorted(rejected)


def hash_landed(path: Path, size: int, mtime_ns: int) -> str | None:
    """The sha256 of a landed file, or None if it is gzip or changed while it was read (it waits again)."""
    digest = hashlib.sha256()
    with open_landed(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
        after = os.fstat(f.fileno())
    if (after.st_size, after.st_mtime_ns) != (size, mtime_ns):
        return None
    return digest.hexdigest()


def read_head(path: StoragePath) -> bytes:
    """The first bytes of a file (enough to recognise gzip); a local one is opened without following links."""
    with open_landed(path) if is_local(path) else path.open("rb") as f:
        return f.read(len(GZIP_MAGIC))


def sha256_of(path: StoragePath) -> str:
    """The file's sha256, read in chunks (on object storage: streamed, never held whole in memory)."""
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


def raw_copy_path(lake: Lake, spec: ModelSpec, key: str) -> StoragePath:
    return lake.raw_dir(spec.name, key) / parse_batch_key(key)[0]


def ensure_raw_copy(lake: Lake, spec: ModelSpec, key: str, landing: Path) -> tuple[StoragePath, str]:
    """Copy the landed file to its immutable raw location once; return (path, sha256).

    An existing copy is never overwritten: it is re-hashed, and a mismatch (someone edited
    raw data) fails loudly instead of training on altered records. The copy is hashed
    locally before it is published (a rename on disk, one PUT on object storage), so a
    file that changed since it was registered never becomes a raw copy.
    """
    file_name, prefix = parse_batch_key(key)
    target = raw_copy_path(lake, spec, key)
    if target.exists():
        return target, _verified(sha256_of(target), key, target)
    source = landing / file_name
    if not source.exists():
        raise PlatformError(f"batch {key}: landed file {source} is gone and no raw copy exists; land the file again")
    copied = {}
    atomic_write(target, lambda local: copied.update(sha=_copy_checked(source, local, key)))
    return target, copied["sha"]


def _copy_checked(source: Path, local: Path, key: str) -> str:
    """Copy ``source`` to ``local``, read-only, and return its sha256; refuse bytes that are not the batch's."""
    with open_landed(source) as src, open(local, "wb") as dst:  # a link put in the file's place is refused
        shutil.copyfileobj(src, dst)
    sha = sha256_of(local)
    if not sha.startswith(parse_batch_key(key)[1]):
        raise PlatformError(
            f"batch {key}: {source} has changed since it was registered (now sha256 "
            f"{sha[:HASH_PREFIX]}); the changed file is registered as a new batch by the sensor"
        )
    os.chmod(local, stat.S_IRUSR)  # read-only, and patient data: owner only
    return sha


def _verified(sha: str, key: str, path: StoragePath) -> str:
    """``sha`` if it is the batch's digest; else the raw copy was altered, and nothing may read it."""
    if not sha.startswith(parse_batch_key(key)[1]):
        raise PlatformError(
            f"raw copy {path} no longer matches batch {key} (sha256 {sha[:HASH_PREFIX]}): "
            "raw data is immutable; restore it from the landing source or backups"
        )
    return sha


@contextmanager
def verified_raw_copy(lake: Lake, spec: ModelSpec, key: str) -> Iterator[tuple[Path, str]]:
    """A local file holding the batch's raw copy, checked against the batch's digest, and its sha256.

    Readers parse this file, never the stored object directly, so what they read is exactly
    what was hashed: on object storage the copy is downloaded once and hashed; on local disk
    the read-only copy itself is hashed.
    """
    path = raw_copy_path(lake, spec, key)
    if not path.exists():
        raise PlatformError(f"batch {key}: no raw copy at {path}; materialise its raw_batches partition first")
    if is_local(path):
        yield Path(path), _verified(sha256_of(path), key, path)
        return
    with tempfile.TemporaryDirectory(prefix="ml-platform-raw-") as folder:
        local = download(path, Path(folder) / path.name)
        yield local, _verified(sha256_of(local), key, path)


def row_count(path: StoragePath) -> int | None:
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
            with path.open("rb") as f:
                return pq.ParquetFile(f).metadata.num_rows
    except Exception:  # noqa: BLE001 - a corrupt file is reported by the schema check, not here
        return None
    return None


def landed_files(landing: Path) -> list[Path]:
    """Regular files in the landing folder, oldest first; hidden files are writes still in progress."""
    if not landing.is_dir():
        return []
    return [path for path, _ in settled_entries(landing)[0]]


def scan(landing: Path, cursor: dict[str, list]) -> Scan:
    """New batch keys with their files, the updated cursor, files still changing and files refused.

    The cursor holds, per name, ``[size, mtime_ns, key]``: key None while a file waits for
    its next scan, and a fourth item, the reason, once it is refused. A file first seen, or
    changed since the last scan, waits one scan; unchanged since, it is hashed and registered.
    """
    cursor = dict(cursor)
    found, waiting, rejected = [], [], []
    if not landing.is_dir():
        return Scan(found, cursor, waiting, rejected)
    files, refused = settled_entries(landing)
    for entry in refused:
        _reject(landing, cursor, entry, [None, None])
    rejected += refused
    for path, info in files:
        now = [info.st_size, info.st_mtime_ns]
        seen = cursor.get(path.name)
        if seen and seen[:2] == now and (seen[2] is not None or len(seen) > 3):
            rejected += [Rejected(path.name, seen[3])] if len(seen) > 3 else []
            continue  # registered, or refused, and unchanged since
        if not seen or seen[:2] != now:
            cursor[path.name] = [*now, None]
            waiting.append(path.name)
            continue  # first seen, or changed: wait for one more scan
        problem = compressed_problem(path.name, read_head(path))
        if problem:
            rejected.append(_reject(landing, cursor, Rejected(path.name, problem), now))
            continue
        sha = hash_landed(path, *now)
        if sha is None:
            cursor[path.name] = [*now, None]
            waiting.append(path.name)
            continue
        key = batch_key(path.name, sha)
        cursor[path.name] = [*now, key]
        found.append((key, path))
        logger.info(
            "new batch %s in %s", key, landing,
            extra={"event": {"action": "batch_found"}, "file": {"name": path.name, "size": info.st_size}},
        )  # fmt: skip
        if len(found) >= MAX_FILES_PER_SCAN:
            break
    return Scan(found, cursor, waiting, rejected)


def _reject(landing: Path, cursor: dict[str, list], entry: Rejected, now: list) -> Rejected:
    """Remember a refused name in the cursor, logging it the first time (not on every scan)."""
    remembered = [*now, None, entry.reason]
    if cursor.get(entry.name) != remembered:
        logger.warning(
            "not taken from %s: %s", landing, entry.reason,
            extra={"event": {"action": "file_rejected"}, "file": {"name": entry.name}},
        )  # fmt: skip
    cursor[entry.name] = remembered
    return entry
