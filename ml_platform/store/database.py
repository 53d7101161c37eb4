"""The platform database engine: audit trail, approvals, prediction log and outcomes live here.

SQLite (``platform.db`` under the platform home) by default, any SQLAlchemy URL
(PostgreSQL in production) through ``ML_PLATFORM_DATABASE_URL``. Several processes write
to it at once (Dagster runs, sensors, the CLI), so SQLite engines are set up to make
writers queue for the lock instead of failing with "database is locked".
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path

import sqlalchemy
from pydantic import BaseModel, ConfigDict
from sqlalchemy import event

from ml_platform.store.private import private_file
from ml_platform.store.tables import metadata

# How long a SQLite connection waits for another process's write lock before giving up.
# Appends take milliseconds; 30 s absorbs a burst of writers without ever failing one.
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0

_engines: dict[str, sqlalchemy.Engine] = {}
# The table names each engine has created; weak, so an engine made elsewhere is not kept alive.
_tables_created: weakref.WeakKeyDictionary[sqlalchemy.Engine, frozenset[str]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def engine_for(url: str) -> sqlalchemy.Engine:
    """The engine for ``url``, created once per process, with every platform table created in it.

    One engine per URL keeps one connection pool per database, however many resources and
    helpers ask for it.
    """
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _create_engine(url)
        create_tables(engine)
    return engine


def _create_engine(url: str) -> sqlalchemy.Engine:
    parsed = sqlalchemy.make_url(url)
    if parsed.drivername == "postgresql":
        # A plain postgresql:// URL means psycopg 3 to SQLAlchemy 2.1; the platform ships psycopg2
        # (the driver dagster-postgres needs), so the same URL works for every store.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if parsed.get_backend_name() != "sqlite":
        # Pre-ping: long-lived processes (the daemon, the webserver) outlive server-side idle timeouts.
        return sqlalchemy.create_engine(parsed, pool_pre_ping=True)
    _make_private_file(parsed)
    engine = sqlalchemy.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_immediate)
    return engine


def _make_private_file(url: sqlalchemy.URL) -> None:
    """Create a SQLite file (and its folder) owner-only before SQLite opens it, so a fresh home needs no set-up.

    The database holds the prediction log and outcomes: SQLite would create it with the
    umask's mode (often world-readable) and gives its ``-wal`` and ``-shm`` files the same
    mode, so the file is made mode 600 first, and an older world-readable one is tightened.
    """
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return  # in memory, or a sqlite URI whose path is not a plain file name
    path = Path(database)
    private_file(path)
    for suffix in ("-wal", "-shm"):
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():
            private_file(sidecar)


def _configure_sqlite_connection(dbapi_connection, connection_record) -> None:
    """Stop pysqlite from opening transactions itself (SQLAlchemy's "pysqlite serializable" recipe); use WAL.

    pysqlite defers BEGIN until the first write, so a read-then-write transaction holds only a
    shared lock while it reads: two processes can read the same audit head and both append
    after it. With pysqlite silent, ``_begin_immediate`` decides how transactions start.
    """
    dbapi_connection.isolation_level = None
    # Write-ahead logging, and outside readers of the file (the sqlite3 shell, a BI tool)
    # never block the platform's writers. synchronous=NORMAL, SQLite's recommended setting
    # for WAL: a commit is written to the log file without waiting for the disk, so a
    # committed transaction survives the process being killed; only an operating-system
    # crash or power loss can lose the last commits (production uses PostgreSQL).
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _begin_immediate(connection: sqlalchemy.Connection) -> None:
    """Start every transaction with the write lock, so concurrent writers queue (busy timeout) instead of racing."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def insert_if_absent(conn: sqlalchemy.Connection, table: sqlalchemy.Table, **values) -> None:
    """Insert the row unless one with the same primary key exists; a concurrent insert is not an error.

    SELECT ... FOR UPDATE cannot lock a row that is not there yet, so two processes that both
    see it missing would both insert and one would fail on the key. ON CONFLICT DO NOTHING
    (both SQLite and PostgreSQL have it) makes creating the row safe to race.
    """
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    conn.execute(insert(table).values(**values).on_conflict_do_nothing())


def is_serialised(engine: sqlalchemy.Engine) -> bool:
    """Whether concurrent transactions on ``engine`` are serialised: any server database, or SQLite from engine_for."""
    return engine.dialect.name != "sqlite" or event.contains(engine, "begin", _begin_immediate)


def create_tables(engine: sqlalchemy.Engine) -> None:
    """Create the tables on ``metadata`` that ``engine`` has not created yet (once per table per process).

    Cheap when nothing is new, so callers handed an engine can call it without thinking.
    """
    names = frozenset(metadata.tables)
    if names <= _tables_created.get(engine, frozenset()):
        return
    try:
        metadata.create_all(engine)
    except sqlalchemy.exc.DBAPIError:
        # On PostgreSQL two processes can both see a table missing and both CREATE it; the loser
        # fails. The table exists now, so checking again creates only what is still missing.
        metadata.create_all(engine)
    _tables_created[engine] = names


def _forget_inherited_connections() -> None:
    """In a forked child, drop the parent's pooled connections without closing them.

    A database connection used by two processes corrupts its protocol state (and SQLite's
    locks); closing it in the child would also close it for the parent. The lock is
    replaced because another parent thread may have held it at the fork.
    """
    global _lock
    _lock = threading.Lock()
    for engine in list(_engines.values()):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_connections)


class PlatformDatabase(BaseModel):
    """The platform database, by SQLAlchemy URL (``settings.database_url``)."""

    model_config = ConfigDict(frozen=True)

    url: str

    def engine(self) -> sqlalchemy.Engine:
        return engine_for(self.url)
