"""Bring a database to the latest schema with Alembic; used at start-up and by the tests.

The guards (triggers that keep published snapshots, findings, inspections, draws and
objections intact, installed by the migrations that make those tables) are checked as well:
`missing_guards` names any guard that was dropped, disabled or replaced (what /ready reports),
and `upgrade` puts them back every time it runs, so a start-up or any `credit-rating` command
restores them.
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
def _guarded_migrations() -> tuple[ModuleType, ...]:
    """The migrations that install guards (0001, then each that adds a guarded table), loaded
    from their files: the guards are defined there once, not copied here."""
    found = []
    for path in sorted((MIGRATIONS / "versions").glob("[0-9]*.py")):
        spec = importlib.util.spec_from_file_location(f"credit_rating_migration_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if hasattr(module, "POSTGRES_GUARDS"):
            found.append(module)
    return tuple(found)


def _squeeze(sql: str | None) -> str:
    return " ".join((sql or "").split())


_SQLITE_TRIGGER = re.compile(r"CREATE TRIGGER (\w+) BEFORE \w+ ON (\w+)")


def _sqlite_expected(tables: set[str]) -> dict[str, str]:
    """Each SQLite guard trigger on one of `tables` and the statement that creates it (a
    migration lists its statements, or (name, event, table, when, message) tuples)."""
    expected = {}
    for m in _guarded_migrations():
        module: Any = m
        statements = list(getattr(module, "SQLITE_GUARDS", []))
        statements += [module._sqlite_guard(*t) for t in getattr(module, "SQLITE_TRIGGERS", [])]
        for statement in statements:
            if (found := _SQLITE_TRIGGER.match(statement)) and found[2] in tables:
                expected[found[1]] = statement
    return expected


_PG_TRIGGER = re.compile(r"CREATE TRIGGER (\w+) .*? ON (\w+) .*EXECUTE FUNCTION (\w+)\(", re.S)
_PG_FUNCTION = re.compile(r"CREATE FUNCTION (\w+)\(\).*?AS \$\$(.*)\$\$", re.S)


def _postgres_expected(
    tables: set[str],
) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str, str]]]:
    """PostgreSQL guards: {function: (body, statement)}, {trigger: (table, function, stmt)}
    for the triggers on `tables` (grants are not guards: they are not checked here)."""
    functions, triggers = {}, {}
    for m in _guarded_migrations():
        module: Any = m
        for statement in module.POSTGRES_GUARDS:
            if found := _PG_FUNCTION.match(statement):
                functions[found[1]] = (found[2], statement)
            elif (found := _PG_TRIGGER.match(statement)) and found[2] in tables:
                triggers[found[1]] = (found[2], found[3], statement)
    return functions, triggers


def _tables(conn: Connection) -> set[str]:
    """The tables there are: a guard is expected once its table exists (a migration that
    restores guards runs before later migrations have made theirs)."""
    if conn.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        query = (
            "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') "
            "AND relnamespace = current_schema()::regnamespace"
        )
    return {name for (name,) in conn.exec_driver_sql(query)}


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
            for name, sql in _sqlite_expected(_tables(conn)).items()
            if _squeeze(present.get(name)) != _squeeze(sql)
        ]
    functions, triggers = _postgres_expected(_tables(conn))
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
        expected = _sqlite_expected(_tables(conn))
        for name in wrong:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
            conn.execute(text(expected[name]))
        return wrong
    functions, triggers = _postgres_expected(_tables(conn))
    for name, (_, statement) in functions.items():
        if f"{name}()" in wrong:
            conn.execute(text(statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")))
    for name, (table, _, statement) in triggers.items():
        if name in wrong:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            conn.execute(text(statement))
    return wrong
