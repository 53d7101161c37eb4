"""The prediction log and the outcomes: what the endpoint answered, and what really happened.

Both live in the platform database (SQLite by default, any SQLAlchemy URL), so monitoring
joins outcomes to predictions with one query. Patient and record identifiers are never
stored: the log keeps an HMAC-SHA256 of each under a key the platform holds (environment
variable ``ML_PLATFORM_ID_HASH_KEY``, else a random key created once under the platform
home). The same key hashes the id of an outcome posted later, so the two still join, but
nobody reading the database can recover an identifier or test a guess without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from ml_platform.settings import SettingsError, get_settings
from ml_platform.store.private import private_dir
from ml_platform.store.tables import outcomes, predictions


def now() -> datetime:
    return datetime.now(UTC)


def new_prediction_id() -> str:
    return uuid.uuid4().hex


# 32 random bytes as hex; a configured key shorter than this is too easy to guess.
MIN_KEY_CHARS = 16


def id_hash_key(home: Path) -> bytes:
    """The key for identifier hashes: from the environment, else created once under the home (mode 600).

    Never empty: a blank key would make every hash a plain, guessable SHA-256 of the id.
    """
    configured = get_settings().id_hash_key
    if configured is not None:
        key = configured.get_secret_value().strip()
        if len(key) < MIN_KEY_CHARS:
            raise SettingsError(
                f"ML_PLATFORM_ID_HASH_KEY is {len(key)} characters; use at least {MIN_KEY_CHARS} random ones "
                "(e.g. python -c 'import secrets; print(secrets.token_hex(32))')"
            )
        return key.encode()
    path = home / "secrets" / "id_hash.key"
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path)


def _create_key_file(path: Path) -> None:
    """Write a new key to a private temporary file, then link it into place in one step.

    os.link fails if the name exists, so two server workers starting together end with one
    key, and a reader never sees the file before its key is written (O_CREAT|O_EXCL alone
    leaves an empty file visible until the write).
    """
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    except FileExistsError:
        pass  # another worker linked its key first; everyone uses that one
    finally:
        tmp.unlink(missing_ok=True)


def _read_key_file(path: Path) -> bytes:
    """The key file's content; a symlink or an empty or short key is refused, never used."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise SettingsError(
            f"identifier-hash key {path} cannot be opened ({exc.strerror}); it must be a file"
        ) from None
    with os.fdopen(fd) as handle:
        key = handle.read().strip()
    if len(key) < MIN_KEY_CHARS:
        raise SettingsError(
            f"identifier-hash key {path} is empty or too short: restore it from backup, or set "
            "ML_PLATFORM_ID_HASH_KEY (a new key means earlier identifier hashes no longer join)"
        )
    return key.encode()


class IdHasher:
    """Keyed hashes of identifiers, scoped by model so equal ids of two models do not link."""

    def __init__(self, key: bytes):
        self._key = key

    def __call__(self, model: str, value: object) -> str:
        return hmac.new(self._key, f"{model}\x1f{value}".encode(), hashlib.sha256).hexdigest()


def prediction_row(
    spec, hasher: IdHasher, version: str, route: str, record: dict, output: dict, latency_ms: float, **extra
) -> dict:
    """One row of the log for a validated record: raw identifiers replaced by their keyed hashes."""
    identifiers = {spec.id_column, spec.route_column}
    return {
        "id": new_prediction_id(),
        "created_at": now(),
        "model": spec.name,
        "version": version,
        "route": route,
        "shadow_of": None,
        "subject_hash": hasher(spec.name, record[spec.route_column]),
        "record_hash": hasher(spec.name, record[spec.id_column]),
        "inputs": {k: v for k, v in record.items() if k not in identifiers},
        "outputs": output,
        "latency_ms": latency_ms,
        **extra,
    }


def write_predictions(engine: sa.Engine, rows: list[dict]) -> list[None]:
    """Append prediction rows in one transaction; returns once they are committed."""
    with engine.begin() as conn:
        conn.execute(predictions.insert(), rows)
    return [None] * len(rows)


def write_outcomes(engine: sa.Engine, rows: list[dict]) -> None:
    with engine.begin() as conn:
        conn.execute(outcomes.insert(), rows)


def existing_prediction_ids(engine: sa.Engine, model: str, ids: Iterable[str]) -> set[str]:
    ids = list(ids)
    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):  # bounded IN lists
            chunk = ids[start : start + 500]
            query = sa.select(predictions.c.id).where(predictions.c.model == model, predictions.c.id.in_(chunk))
            found.update(conn.execute(query).scalars())
    return found


def prediction_ids(engine: sa.Engine, model: str | None = None) -> set[str]:
    """Every logged prediction id (of one model): what durability checks compare against."""
    query = sa.select(predictions.c.id)
    if model:
        query = query.where(predictions.c.model == model)
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())


def read_predictions(
    engine: sa.Engine,
    model: str,
    start: datetime | None = None,
    end: datetime | None = None,
    labelled_only: bool = False,
) -> pd.DataFrame:
    """The answers the endpoint returned (champion and canary, not shadow) in [start, end), one row each.

    Columns: the log's own (id, created_at, version, route, subject_hash, record_hash,
    latency_ms), then each input field, then each output (probability and label, or value).
    ``labelled_only`` keeps the answers an outcome names (by prediction or record id), so
    training does not read and decode the whole log for the few rows it can learn from.
    """
    query = sa.select(predictions).where(predictions.c.model == model, predictions.c.route != "shadow")
    if labelled_only:
        reported_ids = sa.select(outcomes.c.prediction_id).where(outcomes.c.model == model)
        reported_records = sa.select(outcomes.c.record_hash).where(outcomes.c.model == model)
        query = query.where(sa.or_(predictions.c.id.in_(reported_ids), predictions.c.record_hash.in_(reported_records)))
    if start is not None:
        query = query.where(predictions.c.created_at >= start)
    if end is not None:
        query = query.where(predictions.c.created_at < end)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(predictions.c.created_at)).mappings().all()
    base = ["id", "created_at", "version", "route", "subject_hash", "record_hash", "latency_ms"]
    if not rows:
        return pd.DataFrame(columns=base)
    frame = pd.DataFrame([{k: row[k] for k in base} for row in rows])
    inputs = pd.DataFrame([row["inputs"] for row in rows])
    outputs = pd.DataFrame([row["outputs"] for row in rows])
    return pd.concat([frame, inputs, outputs.drop(columns=[c for c in outputs if c in inputs])], axis=1)


def read_outcomes(engine: sa.Engine, model: str) -> pd.DataFrame:
    query = sa.select(outcomes.c.prediction_id, outcomes.c.record_hash, outcomes.c.outcome, outcomes.c.received_at)
    with engine.connect() as conn:
        rows = conn.execute(query.where(outcomes.c.model == model).order_by(outcomes.c.id)).all()
    return pd.DataFrame(rows, columns=["prediction_id", "record_hash", "outcome", "received_at"])


def with_outcomes(answers: pd.DataFrame, observed: pd.DataFrame) -> pd.DataFrame:
    """``answers`` with an ``outcome`` column: by prediction id, else by record id; the latest report wins."""
    by_id = observed.dropna(subset=["prediction_id"]).drop_duplicates("prediction_id", keep="last")
    by_record = observed.dropna(subset=["record_hash"]).drop_duplicates("record_hash", keep="last")
    outcome = answers["id"].map(by_id.set_index("prediction_id")["outcome"])
    fallback = answers["record_hash"].map(by_record.set_index("record_hash")["outcome"])
    return answers.assign(outcome=outcome.fillna(fallback).astype(float))


def count_outcomes(engine: sa.Engine, model: str) -> int:
    """How many outcomes were ever reported for a model: a cheap measure of new labelled data."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).where(outcomes.c.model == model)).scalar_one()
