"""Bring a database to the latest schema with Alembic; used at start-up and by the tests.

The guards (triggers that keep published snapshots and findings intact, installed by migration
0001) are checked as well: `missing_guards` names any guard that was dropped, disabled or
replaced (what /ready reports), and `upgrade` puts them back every time it runs, so a start-up
or any `credit-rating` command restores them.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine) -> None:
    """Apply every migration not yet applied, then restore any guard that was dropped
    (idempotent; safe from several processes)."""
    with engine.execution_options(write=True).begin() as conn:
        if conn.dialect.name == "postgresql":  # one migrator at a time across processes
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(20221203)")
        config = _config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        restore_guards(conn)


def is_current(engine: Engine) -> bool:
    """True when the database is at the latest migration (what /ready checks)."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head


# Guards -------------------------------------------------------------------------------------


@cache
def _initial_schema() -> ModuleType:
    """Migration 0001, where the guards are defined (one definition, not a copy)."""
    path = MIGRATIONS / "versions" / "0001_initial_schema.py"
    spec = importlib.util.spec_from_file_location("credit_rating_migration_0001", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _squeeze(sql: str | None) -> str:
    return " ".join((sql or "").split())


def _sqlite_expected() -> dict[str, str]:
    """Each SQLite guard trigger's name and the statement that creates it."""
    m: Any = _initial_schema()
    return {trigger[0]: m._sqlite_guard(*trigger) for trigger in m.SQLITE_TRIGGERS}


_PG_TRIGGER = re.compile(r"CREATE TRIGGER (\w+) .*? ON (\w+) .*EXECUTE FUNCTION (\w+)\(", re.S)
_PG_FUNCTION = re.compile(r"CREATE FUNCTION (\w+)\(\).*?AS \$\$(.*)\$\$", re.S)


def _postgres_expected() -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str, str]]]:
    """PostgreSQL guards: {function: (body, statement)}, {trigger: (table, function, stmt)}."""
    m: Any = _initial_schema()
    functions, triggers = {}, {}
    for statement in m.POSTGRES_GUARDS:
        if found := _PG_FUNCTION.match(statement):
            functions[found[1]] = (found[2], statement)
        elif found := _PG_TRIGGER.match(statement):
            triggers[found[1]] = (found[2], found[3], statement)
    return functions, triggers


def missing_guards(conn: Connection) -> list[str]:
    """The guards that are missing, disabled or not as the migrations made them (by name)."""
    if conn.dialect.name == "sqlite":
        present: dict[str, str] = {
            name: sql
            for name, sql in conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
            )
        }
        return [
            name
            for name, sql in _sqlite_expected().items()
            if _squeeze(present.get(name)) != _squeeze(sql)
        ]
    functions, triggers = _postgres_expected()
    bodies: dict[str, str] = {
        name: body
        for name, body in conn.exec_driver_sql(
            "SELECT proname, prosrc FROM pg_proc "
            "WHERE pronamespace = current_schema()::regnamespace"
        )
    }
    wrong = [f"{name}()" for name, (body, _) in functions.items() if bodies.get(name) != body]
    found = {
        name: (table, function, enabled)
        for name, table, function, enabled in conn.exec_driver_sql(
            "SELECT t.tgname, c.relname, p.proname, t.tgenabled FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
        ).all()
    }
    for name, (table, function, _) in triggers.items():
        if name not in found or found[name][:2] != (table, function) or found[name][2] == "D":
            wrong.append(name)
    return wrong


def restore_guards(conn: Connection) -> list[str]:
    """Put back every guard `missing_guards` names; returns what was restored."""
    wrong = missing_guards(conn)
    if conn.dialect.name == "sqlite":
        expected = _sqlite_expected()
        for name in wrong:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
            conn.execute(text(expected[name]))
        return wrong
    functions, triggers = _postgres_expected()
    for name, (_, statement) in functions.items():
        if f"{name}()" in wrong:
            conn.execute(text(statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")))
    for name, (table, _, statement) in triggers.items():
        if name in wrong:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            conn.execute(text(statement))
    return wrong
