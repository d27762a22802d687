"""The servers the HTTP benchmark loads, and the databases they serve.

Set-up apart from measurement: a database migrated with the sample district and its year
published (SQLite, and the tests' embedded PostgreSQL), the real service and the bare app
started as processes with the tests' own helpers (`tests.servers`), and a check that every
loaded path answers what its caller may see before anything is timed.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
from rich.console import Console
from rich.markup import escape

from tests.servers import (
    ROOT,
    UNLIMITED,
    PostgresUnavailable,
    Server,
    create_database,
    running_server,
    serve_command,
    start_postgres,
)

YEAR = 2023


def prepare(url: str) -> tuple[str, list[str]]:
    """The database at `url` migrated, with the sample district and 2023 published.

    Returns a supervisor key and the institutions' credit codes.
    """
    from scoring.shipped import SAMPLE_DIR, load_rules
    from service.api import keys
    from service.api.keys import Role
    from service.core.database import make_engine, reading, writing
    from service.core.migrate import upgrade
    from service.ratings import publishing
    from service.records import storage
    from service.records.importing import import_files

    engine = make_engine(url)
    try:
        upgrade(engine)
        rules = load_rules()
        files = [SAMPLE_DIR / "institutions.csv", SAMPLE_DIR / "findings.csv"]
        import_files(engine, files, rules=rules, by="benchmark")
        with writing(engine) as conn:
            key = keys.create(conn, role=Role.SUPERVISOR, name="benchmark")
        with writing(engine) as conn:
            publishing.compute_draft(conn, rules=rules, year=YEAR, scale="four", by="benchmark")
        with writing(engine) as conn:
            publishing.publish(conn, year=YEAR, revision=None, reason=None, by="benchmark")
        with reading(engine) as conn:
            usccs = sorted(storage.known_usccs(conn))
    finally:
        engine.dispose()  # the last connection closed: SQLite's WAL is folded into the file
    return key, usccs


def postgresql_database(console: Console) -> str | None:
    """A new database on the tests' embedded PostgreSQL server; None when there is none."""
    try:
        return create_database(start_postgres())
    except PostgresUnavailable as exc:
        console.print(f"[yellow]PostgreSQL not measured: {escape(str(exc))}[/yellow]")
        return None


def serve_service(
    name: str, tree: Path, database_url: str, workers: int, folder: Path
) -> AbstractContextManager[Server]:
    """The service of checkout `tree` (`python -m service.cli serve`) on `database_url`."""
    return running_server(
        name,
        serve_command(workers),
        env=_environment(
            tree, {"CREDIT_DATABASE_URL": database_url, "CREDIT_HOST": "127.0.0.1", **UNLIMITED}
        ),
        log=folder / f"{name}.log",
        cwd=tree,
        ready="/ready",
        port_env="CREDIT_PORT",
        own_group=True,  # its own process group: workers are stopped with it
    )


def serve_bare(workers: int, folder: Path) -> AbstractContextManager[Server]:
    """The bare app (`benchmarks.bare_app`), under the same uvicorn settings."""
    return running_server(
        "bare",
        [sys.executable, "-m", "benchmarks.bare_app", "--workers", str(workers)],
        env=_environment(ROOT, {}),
        log=folder / "bare.log",
        ready="/bare",
        port_arg="--port",
        own_group=True,
    )


def _environment(tree: Path, settings: dict[str, str]) -> dict[str, str]:
    """Only the settings given here: none of the caller's own CREDIT_* variables."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CREDIT_")}
    return {**inherited, "PYTHONPATH": str(tree), **settings}


def check(
    bare: Server, services: dict[str, Server], paths: list[str], keys: dict[str, str]
) -> None:
    """Every loaded path answers 200 with what its caller may see, before any timing."""
    with httpx.Client(timeout=10) as client:
        for path in ("/bare", "/bare-sync"):
            response = client.get(bare.base + path)
            if response.status_code != 200 or response.json().get("status") != "ok":
                raise RuntimeError(f"bare {path}: {response.status_code} {response.text[:200]}")
        for name, service in services.items():
            for path in paths:
                public = client.get(service.base + path)
                full = client.get(service.base + path, headers={"X-API-Key": keys[name]})
                if public.status_code != 200 or public.json().get("explanation"):
                    raise RuntimeError(
                        f"anonymous {path}: {public.status_code} {public.text[:300]}"
                    )
                if full.status_code != 200 or not full.json().get("explanation"):
                    raise RuntimeError(f"supervisor {path}: {full.status_code} {full.text[:300]}")
