"""What anchors the audit trail outside the platform database: its key and its signed checkpoints.

Anyone who can write the database can recompute a plain hash chain, so the chain is a
keyed MAC (HMAC-SHA256) under a key the database never holds: the operator's secret
(``ML_PLATFORM_AUDIT_KEY`` or ``ML_PLATFORM_AUDIT_KEY_FILE``), else a random key created
once under the platform home's ``secrets/`` folder. Without it nobody can write a record
that verifies, so a full rewrite of the trail shows.

A MAC chain alone still allows cutting off its newest records, or putting back an older
copy of the database: what remains is a valid, shorter chain. So after appends the head
(record count and last MAC) is written, MAC'd with the same key, to a checkpoint file
outside the database; verification compares the database with the newest checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ml_platform.settings import get_settings
from ml_platform.store.objects import (
    StoragePath,
    create_new,
    list_folder,
    make_folder,
    move,
    storage_path,
    storage_root,
)
from ml_platform.store.private import private_dir

KEY_FILE_NAME = "audit.key"
MIN_KEY_CHARS = 32
# Older checkpoints are kept a while: one per append, the newest KEEP_CHECKPOINTS of them.
KEEP_CHECKPOINTS = 50
_PREFIX, _SUFFIX = "head-", ".json"


class AuditKeyError(ValueError):
    """The audit key is configured but unusable; the message says how to fix it."""


def audit_key(home: Path) -> bytes:
    """The key of the MAC chain: the setting, else the setting's file, else the one created once under ``home``."""
    settings = get_settings()
    if settings.audit_key is not None:
        return _checked(settings.audit_key.get_secret_value(), "ML_PLATFORM_AUDIT_KEY")
    if settings.audit_key_file is not None:
        return _read_key(settings.audit_key_file, "ML_PLATFORM_AUDIT_KEY_FILE")
    path = home / "secrets" / KEY_FILE_NAME
    if not path.exists():
        _create_key_file(path)
    return _read_key(path, "the platform's own audit key")


def _read_key(path: Path, what: str) -> bytes:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise AuditKeyError(f"{what}: cannot read {path}: {error.strerror}") from None
    return _checked(text, f"{what} ({path})")


def _checked(text: str, what: str) -> bytes:
    """Refuse a short or empty key: a new, different key would make the whole trail fail verification."""
    key = text.strip()
    if len(key) < MIN_KEY_CHARS:
        raise AuditKeyError(
            f"{what} holds {len(key)} characters; the audit key needs at least {MIN_KEY_CHARS} "
            "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`). If it was lost, restore it "
            "from the operator's backup: records written under it cannot be verified without it"
        )
    return key.encode("utf-8")


def _create_key_file(path: Path) -> None:
    """Write a new random key, owner-only, so the file is complete whenever it exists.

    The key goes to a temporary file in the same folder first and is then linked to its
    name, which fails if another process got there first: then both use the winner's key,
    and nobody ever reads a half-written or empty key.
    """
    private_dir(path.parent)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".audit-key-")  # mode 600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_hex(32))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)


def checkpoint_folder(home: Path) -> StoragePath:
    """Where checkpoints go: the setting (a folder or an object-storage URL), else ``audit/checkpoints`` under
    the storage root, so with object storage they live outside the database's host as well."""
    configured = get_settings().audit_checkpoints
    return storage_path(configured) if configured else storage_root(home) / "audit" / "checkpoints"


def mac(key: bytes, purpose: str, text: str) -> str:
    """HMAC-SHA256 of ``text``, with a purpose label so a record's MAC can never pass as a checkpoint's."""
    return hmac.new(key, f"{purpose}\x1f{text}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """The trail's head at one moment, as written outside the database."""

    record_count: int
    last_mac: str
    unkeyed_prefix: int  # records at the start that predate keyed chaining
    written_at: str
    path: StoragePath

    def describe(self) -> str:
        return f"checkpoint {self.path.name} (written {self.written_at}, {self.record_count} records)"


class Checkpoints:
    """Signed checkpoint files in one folder, one per record count; the highest count is the newest."""

    def __init__(self, folder: StoragePath, key: bytes):
        self.folder = folder
        self._key = key

    def write(self, record_count: int, last_mac: str, unkeyed_prefix: int) -> StoragePath:
        """Write the head's checkpoint atomically, then prune old ones.

        An existing checkpoint file is never replaced: if one for this count exists (another
        process wrote it, or it was altered), it stays as it is, as evidence. Locally that is
        a complete temporary file linked to its name; on object storage a conditional PUT.
        """
        body = {
            "record_count": record_count,
            "last_mac": last_mac,
            "unkeyed_prefix": unkeyed_prefix,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        text = json.dumps({**body, "mac": mac(self._key, "checkpoint", _canonical(body))}, sort_keys=True)
        make_folder(self.folder)
        path = self.folder / f"{_PREFIX}{record_count:012d}{_SUFFIX}"
        create_new(path, text.encode("utf-8"))
        self._prune()
        return path

    def latest(self) -> tuple[Checkpoint | None, list[str]]:
        """The newest checkpoint whose MAC verifies, and a problem for each newer file that does not."""
        problems = []
        for path in sorted(self._files(), reverse=True):
            checkpoint = self._read(path)
            if checkpoint is not None:
                return checkpoint, problems
            problems.append(
                f"checkpoint {path} was altered or written without the audit key (its MAC does not verify): "
                "keep it as evidence, move it out of the folder and verify again"
            )
        return None, problems

    def set_aside(self) -> int:
        """Move every checkpoint into a ``superseded-<time>`` subfolder, kept as evidence; how many moved."""
        files = self._files()
        if files:
            target = self.folder / f"superseded-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
            make_folder(target)
            for path in files:
                move(path, target / path.name)
        return len(files)

    def _read(self, path: StoragePath) -> Checkpoint | None:
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            body = {k: stored[k] for k in ("record_count", "last_mac", "unkeyed_prefix", "written_at")}
            valid = hmac.compare_digest(str(stored["mac"]), mac(self._key, "checkpoint", _canonical(body)))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return Checkpoint(**body, path=path) if valid else None

    def _files(self) -> list[StoragePath]:
        return [p for p in list_folder(self.folder) if p.name.startswith(_PREFIX) and p.name.endswith(_SUFFIX)]

    def _prune(self) -> None:
        """Keep the newest checkpoints only; several processes may prune at once, so a vanished file is fine."""
        for path in sorted(self._files(), reverse=True)[KEEP_CHECKPOINTS:]:
            path.unlink(missing_ok=True)


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
