"""Write batch files into a landing folder, atomically and without overwriting.

Landed raw data is immutable: once ``batch_0003.csv`` exists it is never
replaced, so every downstream result can be traced back to the exact bytes it
was computed from.  Files are written to a hidden temporary file in the same
folder (same filesystem, so the final rename is atomic) and only then renamed
to their visible name, so a sensor watching the folder never reads a
half-written file.  Watchers should ignore names starting with ".".
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import BinaryIO

import pandas as pd

FORMATS: dict[str, str] = {"csv": ".csv", "parquet": ".parquet"}


def write_batch(df: pd.DataFrame, folder: str | os.PathLike, name: str, fmt: str = "csv") -> Path:
    """Write ``df`` to ``folder/name.<fmt>`` atomically and return that path.

    ``fmt`` is "csv" (no index) or "parquet".  Creates ``folder`` if needed.
    Raises FileExistsError if the target already exists.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {sorted(FORMATS)}, got {fmt!r}")
    _check_name(name)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}{FORMATS[fmt]}"
    _refuse_overwrite(target)

    # A unique hidden name, so concurrent writers never share a temporary file;
    # open(..., "xb") keeps the usual umask permissions (mkstemp would force 0600).
    tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "xb") as handle:
            _serialise(df, handle, fmt)
            handle.flush()
            os.fsync(handle.fileno())  # the bytes are on disk before the name appears
        # Checked again just before the rename: another writer may have landed
        # the same name while we were writing (os.replace would overwrite it).
        _refuse_overwrite(target)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def next_batch_name(folder: str | os.PathLike, prefix: str = "batch") -> str:
    """Return ``f"{prefix}_NNNN"``: one above the highest existing number, any extension.

    A missing or empty folder gives ``prefix_0001``.  Hidden files (in-flight
    temporary files) are ignored.
    """
    pattern = re.compile(rf"{re.escape(prefix)}_(\d+)(\..*)?")
    folder = Path(folder)
    numbers = [
        int(match.group(1))
        for path in (folder.iterdir() if folder.is_dir() else ())
        if path.is_file() and (match := pattern.fullmatch(path.name))
    ]
    return f"{prefix}_{max(numbers, default=0) + 1:04d}"


def _serialise(df: pd.DataFrame, handle: BinaryIO, fmt: str) -> None:
    """Write ``df`` in ``fmt`` to an open binary file handle."""
    if fmt == "csv":
        df.to_csv(handle, index=False)
    else:
        df.to_parquet(handle, index=False)


def _check_name(name: str) -> None:
    """A batch name is a plain, visible file stem: no folders, no leading dot."""
    if not name or name.startswith(".") or Path(name).name != name or "\\" in name:
        raise ValueError(f"name must be a plain file name without folders or a leading '.', got {name!r}")


def _refuse_overwrite(target: Path) -> None:
    if target.exists():
        raise FileExistsError(
            f"{target} already exists; landed batches are immutable, so choose a new name (see next_batch_name)"
        )
