"""Alembic environment: runs migrations on the connection `service.core.migrate` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from service.core.tables import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # `alembic` invoked by hand, for `revision --autogenerate`
    with create_engine(config.get_main_option("sqlalchemy.url") or "").connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
