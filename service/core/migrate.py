"""Bring a database to the latest schema with Alembic; used at start-up and by the tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine) -> None:
    """Apply every migration not yet applied (idempotent; safe from several processes)."""
    with engine.execution_options(write=True).begin() as conn:
        if conn.dialect.name == "postgresql":  # one migrator at a time across processes
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(20221203)")
        config = _config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def is_current(engine: Engine) -> bool:
    """True when the database is at the latest migration (what /ready checks)."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head
