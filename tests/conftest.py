"""Shared fixtures: both databases, the sample district loaded, and a live service."""

from __future__ import annotations

import os

# The suite asserts English messages: set before anything builds a message or Typer's help,
# and inherited by every process a test starts. tests/test_i18n.py checks the Chinese default.
os.environ["CREDIT_LANG"] = "en"
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, select

from scoring.shipped import SAMPLE_DIR, load_rules
from service.api import keys
from service.api.keys import Role
from service.core.database import make_engine, reading, writing
from service.core.migrate import upgrade
from service.core.tables import findings, institutions
from service.records.importing import import_files
from tests.servers import (
    PostgresUnavailable,
    create_database,
    running_service,
    start_postgres,
    with_database,
)

SAMPLE_FILES = [SAMPLE_DIR / "institutions.csv", SAMPLE_DIR / "findings.csv"]


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    """A PostgreSQL server for the session. In CI its absence fails the run, never skips."""
    try:
        return start_postgres()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL tests skipped: no server could be had ({exc})")


def migrated(url: str) -> str:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()  # no connection left: SQLite folds its WAL in, PostgreSQL may copy it
    return url


def new_postgres_database(admin_url: str, *, template: str = "template1") -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


# Each test gets a database of its own, copied from one migrated once per session: migrating
# (and importing the sample into) a database per test would cost more than most tests.


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    migrated(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_admin: str) -> str:
    name = new_postgres_database(postgres_admin)
    migrated(with_database(postgres_admin, name))
    return name


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new database of the test's own, already at the latest migration."""
    if request.param == "sqlite":
        path = tmp_path / "credit-rating.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    admin = request.getfixturevalue("postgres_admin")
    template = request.getfixturevalue("postgres_template")
    return with_database(admin, new_postgres_database(admin, template=template))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sample_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """The sample district exactly as `import_files` stores it, imported once per session."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('sample') / 'sample.db'}")
    try:
        upgrade(engine)
        import_files(engine, SAMPLE_FILES, rules=load_rules(), by="tests")
        with reading(engine) as conn:
            return {
                table.name: [_utc(dict(r._mapping)) for r in conn.execute(select(table))]
                for table in (institutions, findings)
            }
    finally:
        engine.dispose()


def _utc(row: dict[str, Any]) -> dict[str, Any]:
    """SQLite gives back naive datetimes; they were stored in UTC."""
    return {
        k: v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v
        for k, v in row.items()
    }


@pytest.fixture
def loaded(engine: Engine, sample_rows: dict[str, list[dict[str, Any]]]) -> Engine:
    """The engine with the sample district imported (the rows of one import, copied)."""
    with writing(engine) as conn:
        for table in (institutions, findings):
            conn.execute(table.insert(), sample_rows[table.name])
    return engine


@dataclass(frozen=True)
class Keys:
    supervisor: str
    analyst: str
    sharing: str

    def header(self, role: str) -> dict[str, str]:
        return {"X-API-Key": getattr(self, role)}


@pytest.fixture
def api_keys(engine: Engine) -> Keys:
    with writing(engine) as conn:
        return Keys(
            supervisor=keys.create(conn, role=Role.SUPERVISOR, name="test supervisor"),
            analyst=keys.create(conn, role=Role.ANALYST, name="test analyst"),
            sharing=keys.create(conn, role=Role.SHARING, name="test sharing"),
        )


@pytest.fixture
def service(database_url: str, loaded: Engine, api_keys: Keys) -> Iterator[str]:
    """A real `credit-rating serve` process on loopback, over the loaded database."""
    with running_service(database_url) as base:
        yield base


# One live service per test module (each module works on its own database), on both databases.


@dataclass(frozen=True)
class Live:
    base: str
    url: str
    engine: Engine
    keys: dict[str, str]

    def as_(self, role: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('live') / 'credit-rating.db'}"
    else:
        url = create_database(request.getfixturevalue("postgres_admin"))
    engine = make_engine(url)
    upgrade(engine)
    import_files(engine, SAMPLE_FILES, rules=load_rules(), by="tests")
    with writing(engine) as conn:
        made = {
            role.value: keys.create(conn, role=role, name=f"test {role.value}") for role in Role
        }
    try:
        with running_service(url) as base:
            yield Live(base, url, engine, made)
    finally:
        engine.dispose()


def drop_guards(engine: Engine) -> None:
    """What an intruder with the database owner's rights does first."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            names = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            for name in [n for (n,) in names]:
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
        else:
            conn.exec_driver_sql("DROP FUNCTION refuse() CASCADE")
            conn.exec_driver_sql("DROP FUNCTION refuse_if_parent_published() CASCADE")
