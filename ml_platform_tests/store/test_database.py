"""The platform database on PostgreSQL, by the URL an operator writes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import sqlalchemy as sa

from ml_platform.store.database import engine_for, insert_if_absent
from ml_platform.store.tables import predictions, promotion_locks


def test_a_plain_postgresql_url_uses_the_shipped_driver_and_creates_every_table(postgres_server):
    """``postgresql://`` (what deployments write) works although SQLAlchemy 2.1 would pick psycopg 3 for it."""
    url = postgres_server.url(postgres_server.create_database("plain"), driver="postgresql")
    engine = engine_for(url)
    assert engine.url.drivername == "postgresql+psycopg2"
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(predictions)).scalar() == 0


def test_two_processes_creating_the_same_lock_row_at_once_both_succeed(postgres_server):
    """The first promotion of a model races to create its lock row: the loser must wait, not fail on the key.

    The first transaction inserts and stays open; the second inserts the same key from another
    connection (it blocks on the first), then the first commits. A plain INSERT raises
    UniqueViolation here, which is how a concurrent first promotion used to crash.
    """
    engine = engine_for(postgres_server.url(postgres_server.create_database("racing_locks")))
    values = {"model": "m", "holder": "first", "acquired_at": datetime.now(UTC)}
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with engine.begin() as conn:
                insert_if_absent(conn, promotion_locks, **{**values, "holder": "second"})
        except BaseException as error:  # reported to the test below
            errors.append(error)

    with engine.begin() as conn:
        insert_if_absent(conn, promotion_locks, **values)
        racer = threading.Thread(target=second)
        racer.start()
        racer.join(timeout=1)
        assert racer.is_alive(), "the second insert should wait for the first transaction"
    racer.join(timeout=30)
    assert not racer.is_alive() and errors == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(promotion_locks.c.holder)).scalars().all() == ["first"]
