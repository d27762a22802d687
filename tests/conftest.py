"""Shared fixtures: both databases, the sample district loaded, and a live service."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from service import keys
from service.db import make_engine, writing
from service.importing import import_files
from service.keys import Role
from service.loading import SAMPLE_DIR, load_rules
from service.migrate import upgrade
from tests.servers import PostgresUnavailable, create_database, running_service, start_postgres

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


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'credit-rating.db'}"
    return create_database(request.getfixturevalue("postgres_admin"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def loaded(engine: Engine) -> Engine:
    """The engine with the sample district imported."""
    import_files(engine, SAMPLE_FILES, rules=load_rules(), by="tests")
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
