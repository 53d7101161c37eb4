"""Owner-only files and folders: what the platform writes under its home is patient data or secrets.

The home holds raw batches, validated records, reports with samples of inputs, the platform
database (prediction log, outcomes) and the keys of the identifier hashes and the audit
chain. None of it is for other accounts on the machine, so the platform creates each of
these folders with mode 700 and each file with mode 600, whatever the process's umask says.

Libraries that write under the home by themselves (MLflow's artifacts and database, the
Dagster instance, report and plot writers) are covered by ``restrict_new_files``: the
command line and the Dagster code location call it once at start, so every file their
process creates is owner-only too.
"""

from __future__ import annotations

import os
from pathlib import Path

OWNER_ONLY_UMASK = 0o077
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def restrict_new_files() -> int:
    """Make every file and folder this process creates from now on owner-only; returns the previous umask.

    Process-wide on purpose: it also covers what libraries write (MLflow, Dagster, Evidently),
    which no explicit mode of ours reaches. Bits already masked stay masked.
    """
    previous = os.umask(OWNER_ONLY_UMASK)
    os.umask(previous | OWNER_ONLY_UMASK)
    return previous


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents with mode 700 (``mkdir(parents=True)`` gives parents the umask's mode).

    Existing folders are left as they are: the platform does not change permissions it did not set.
    """
    missing = []
    current = Path(path)
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # another process created it first
        os.chmod(folder, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask; 700 is what we mean
    return Path(path)


def private_file(path: Path) -> Path:
    """Make sure ``path`` exists with no group or other permission bits: created empty with mode 600, or tightened.

    For files a library then opens itself (a SQLite database: SQLite gives its ``-wal`` and
    ``-shm`` files the database file's mode), so they are never readable by others, not even
    for a moment. An existing file is tightened to its owner's bits, as an older platform may
    have created it world-readable.
    """
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, mode & 0o700)
    else:
        os.close(fd)
    return path


def owner_only(path: Path) -> bool:
    """Whether ``path`` has no permission bit for group or others."""
    return path.stat().st_mode & 0o077 == 0
