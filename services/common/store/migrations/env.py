"""Alembic environment: runs against the engine handed over in config.attributes.

Several processes may start at once against one database; each takes the database's
migration lock first, so exactly one migrates and the others find the schema current.
SQLite needs no statement: our engines open every transaction with BEGIN IMMEDIATE.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from services.common.store.schema import metadata

_MIGRATION_LOCK = {"postgresql": "SELECT pg_advisory_xact_lock(7072797475)"}  # held until commit

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    lock = _MIGRATION_LOCK.get(connection.dialect.name)
    if lock:
        connection.execute(text(lock))
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()
