"""Alembic environment: runs with the connection handed over by ``stowage.store.database``."""

from __future__ import annotations

from alembic import context

from stowage.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when someone runs the alembic CLI by hand
    raise RuntimeError("Run migrations through `stowage.store.database.migrate()`.")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
