"""The platform database on PostgreSQL, by the URL an operator writes."""

from __future__ import annotations

import sqlalchemy as sa

from ml_platform.store.database import engine_for
from ml_platform.store.tables import predictions


def test_a_plain_postgresql_url_uses_the_shipped_driver_and_creates_every_table(postgres_server):
    """``postgresql://`` (what deployments write) works although SQLAlchemy 2.1 would pick psycopg 3 for it."""
    url = postgres_server.url(postgres_server.create_database("plain"), driver="postgresql")
    engine = engine_for(url)
    assert engine.url.drivername == "postgresql+psycopg2"
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(predictions)).scalar() == 0
