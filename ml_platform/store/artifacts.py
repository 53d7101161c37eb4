"""Model artifacts as the platform reads them: downloaded, digested and loaded without pickle.

Anyone who can write to the registry can also write a model version whose MLmodel file says
"cloudpickle", and loading that runs their code. So the platform never lets the artifact
choose how it is loaded: it accepts only the skops format, loads it with the trusted types
the caller names (the spec's reviewed list plus the platform's own), and ignores the trusted
types the MLmodel file lists. The artifact digest (sha256 over every file, in a stable order)
is what an attestation covers, so a version's files cannot be swapped after it was attested.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from ml_platform.errors import PlatformError

SKOPS_FORMAT = "skops"
SKOPS_SUFFIX = ".skops"
CHUNK_BYTES = 1 << 20


class UnsafeArtifactError(PlatformError):
    """A model artifact the platform refuses to load: not skops, or not what its MLmodel claims."""


@contextmanager
def downloaded(tracking_uri: str, model: str, version: str) -> Iterator[Path]:
    """The registry version's model artifact in a temporary folder, deleted after the block."""
    import mlflow.artifacts

    # MLflow draws a download progress bar on stderr, where the endpoint writes only log lines
    # (one JSON object per line when JSON logs are on): a shipper would drop the bar's lines.
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    with tempfile.TemporaryDirectory(prefix="ml_platform-model-") as folder:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{model}/{version}",
            dst_path=folder,
            tracking_uri=tracking_uri,
            registry_uri=tracking_uri,
        )
        yield Path(path)


def artifact_digest(folder: Path) -> str:
    """sha256 over every file of an artifact folder: relative path, size and content, sorted by path.

    Anything but regular files and folders (a symlink, a device) is refused: what the digest
    covers must be exactly what is loaded.
    """
    outer = hashlib.sha256()
    for path in sorted(_files(folder), key=lambda p: p.relative_to(folder).as_posix()):
        name = path.relative_to(folder).as_posix()
        outer.update(f"{name}\x1f{path.stat().st_size}\x1f{_file_sha256(path)}\n".encode())
    return outer.hexdigest()


def _files(folder: Path) -> list[Path]:
    files = []
    for path in folder.rglob("*"):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise UnsafeArtifactError(f"the model artifact holds {path.name}, which is not a regular file")
        if path.is_file():
            files.append(path)
    return files


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def skops_model_file(folder: Path) -> Path:
    """The skops file the MLmodel names, refused unless the sklearn flavor is skops and the file is one."""
    mlmodel = folder / "MLmodel"
    if not mlmodel.is_file():
        raise UnsafeArtifactError("the model artifact has no MLmodel file")
    flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get("sklearn")
    if not isinstance(flavor, dict):
        raise UnsafeArtifactError("the model artifact has no sklearn flavor; only skops-format models are loaded")
    serialization = flavor.get("serialization_format")
    if serialization != SKOPS_FORMAT:
        raise UnsafeArtifactError(
            f"the model artifact is serialised as '{serialization}'; only '{SKOPS_FORMAT}' is loaded "
            "(pickle formats run code when loaded)"
        )
    path = (folder / str(flavor.get("pickled_model", ""))).resolve()
    if not path.is_relative_to(folder.resolve()) or path.suffix != SKOPS_SUFFIX or not is_skops_file(path):
        raise UnsafeArtifactError(f"the model file {flavor.get('pickled_model')!r} is not a skops file")
    return path


def is_skops_file(path: Path) -> bool:
    """A skops file is a zip archive with a schema.json; a pickle is not."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return "schema.json" in archive.namelist()


def load_skops(folder: Path, trusted_types: list[str]):
    """Load the artifact's model with skops, trusting only ``trusted_types`` (never the MLmodel's list)."""
    import skops.io

    path = skops_model_file(folder)
    untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(trusted_types))
    if untrusted:
        raise UnsafeArtifactError(
            f"the model holds types that are not on its reviewed trusted list: {', '.join(untrusted)}"
        )
    return skops.io.load(path, trusted=list(trusted_types))
