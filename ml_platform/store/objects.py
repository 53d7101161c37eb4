"""Files on local disk or on object storage (``s3://``, ``gs://``, ...), through one kind of path.

Everything file-shaped (lake tables, raw copies, reports, outcome drops, audit checkpoints)
lives under the storage root: ``ML_PLATFORM_STORAGE_URL``, else the platform home on local
disk. A local location is a plain ``pathlib.Path``, so renames, file modes and hard links
keep working there; any other fsspec URL is a universal-pathlib ``UPath`` (s3fs for S3,
which reads the standard AWS variables: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...).

Atomicity differs by medium and is handled here once: on local disk a file is written
beside its target and renamed into place; on object storage an object is written by a
single PUT of the whole file (S3 makes an object visible only once its upload completes),
so there is no rename, and a write that fails before the upload leaves no object at all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from upath import UPath

from ml_platform.settings import storage_url
from ml_platform.store.private import private_dir

LOCAL_PROTOCOLS = ("", "file", "local")
# Several processes write the same prefixes (run workers, the endpoint, the CLI): a listing
# cached by one of them would hide the others' objects, so listings are never cached.
_UNCACHED_LISTINGS = {"s3": {"use_listings_cache": False}, "s3a": {"use_listings_cache": False},
                      "gs": {"use_listings_cache": False}, "gcs": {"use_listings_cache": False}}  # fmt: skip

StoragePath = Path | UPath


def storage_path(location: str | os.PathLike) -> StoragePath:
    """A plain ``Path`` for a local folder or ``file://`` URL, a ``UPath`` for object storage."""
    if isinstance(location, Path) and not isinstance(location, UPath):
        return location
    probe = UPath(location)
    if probe.protocol in LOCAL_PROTOCOLS:
        return Path(probe.path)
    return UPath(location, **_UNCACHED_LISTINGS.get(probe.protocol, {}))


def storage_root(home: Path | None = None) -> StoragePath:
    """Where the lake, raw copies, reports, outcome drops and checkpoints live (the settings' storage URL)."""
    return storage_path(storage_url(home))


def is_local(path: StoragePath) -> bool:
    return not isinstance(path, UPath) or path.protocol in LOCAL_PROTOCOLS


def uri(path: StoragePath) -> str:
    """The path as a URL other tools accept (``file:///...`` or ``s3://bucket/key``)."""
    return path.as_uri() if is_local(path) else str(path)


def atomic_write(path: StoragePath, write: Callable[[Path], object]) -> StoragePath:
    """Call ``write(local_file)``, then make its result ``path`` at once: a rename locally, one PUT remotely.

    ``write`` always gets a local file, so any writer (pandas, Evidently, matplotlib) works
    unchanged; a reader never sees half a file, and a write that raises leaves nothing behind.
    """
    if is_local(path):
        return _replace_local(Path(path), write)
    with tempfile.TemporaryDirectory(prefix="ml-platform-upload-") as folder:
        local = Path(folder) / path.name
        write(local)
        path.fs.put_file(str(local), path.path)
    return path


def _replace_local(path: Path, write: Callable[[Path], object]) -> Path:
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_bytes(path: StoragePath, data: bytes) -> StoragePath:
    return atomic_write(path, lambda local: local.write_bytes(data))


def create_new(path: StoragePath, data: bytes) -> bool:
    """Write ``path`` only if it does not exist yet; False if it does (the existing file is left as it is).

    Locally: a complete, fsync'ed temporary file hard-linked to its name. Remotely: a
    conditional PUT (``If-None-Match: *``), which the store refuses if the key exists.
    """
    if is_local(path):
        return _link_new(Path(path), data)
    try:
        with path.open("xb") as handle:
            handle.write(data)
    except FileExistsError:
        return False
    return True


def _link_new(path: Path, data: bytes) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)
    return True


def make_folder(path: StoragePath) -> None:
    """Create a local folder, owner-only; object storage has no folders (a prefix exists once an object is under it)."""
    if is_local(path):
        private_dir(Path(path))


def list_folder(folder: StoragePath) -> list[StoragePath]:
    """The entries of a folder as it is now (no cached listing); empty if there is none."""
    if is_local(folder):
        return list(folder.iterdir()) if folder.is_dir() else []
    try:
        names = folder.fs.ls(folder.path, detail=False, refresh=True)
    except FileNotFoundError:
        return []
    return [folder / name.rstrip("/").rsplit("/", 1)[-1] for name in names if name.rstrip("/") != folder.path]


def move(source: StoragePath, target: StoragePath) -> None:
    """Move a file: a rename locally, copy then delete on object storage (which has no rename)."""
    if is_local(source) and is_local(target):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
    else:
        source.fs.mv(source.path, target.path)


def download(path: StoragePath, local: Path) -> Path:
    """A local copy of ``path`` (for tools that only read local files)."""
    if is_local(path):
        shutil.copyfile(path, local)
    else:
        path.fs.get_file(path.path, str(local))
    return local


def upload_folder(local: Path, folder: StoragePath) -> dict[str, StoragePath]:
    """Publish every file of a local folder into ``folder``, each atomically; returns the new paths by name."""
    return {
        file.name: atomic_write(folder / file.name, lambda target, file=file: shutil.copyfile(file, target))
        for file in sorted(local.iterdir())
        if file.is_file()
    }
