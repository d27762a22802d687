"""The HTTP benchmark: the real service under load on loopback, beside a bare FastAPI app.

    python -m benchmarks.http_load [--duration 10] [--connections 32] [--rounds 3]
                                   [--posts 50] [--quick] [--no-postgresql]
                                   [--compare-tree DIR]

Why: a supervisor's tools and the city platform look ratings up one institution at a time, and
a year is computed on request. The service must stay close to what FastAPI and uvicorn can do
at all on this machine (the bare app, measured in the same run under the same uvicorn
settings), answer within 50 ms at the 99th percentile under 32 concurrent connections, and
compute and store the district's draft in under 200 ms.

What it does:
1. Builds a temporary SQLite database: migrated, the sample district imported
   (`data/institutions.csv`, `data/findings.csv`), a supervisor key created, 2023 computed and
   published, with the service's own functions; the same in a new database on the tests'
   embedded PostgreSQL server (unless `--no-postgresql`, or none can be started).
2. Starts the real service with `python -m service.cli serve` (what `credit-rating serve`
   runs: `uvicorn.run("service.api.app:create_app", factory=True, ...)`) and the bare app
   (`benchmarks.bare_app`, the same `uvicorn.run` arguments) as processes on free loopback
   ports, each in its own process group, stopped however the run ends (SIGTERM included).
3. Checks every path answers 200 with what its caller may see, then loads each for a fixed
   time after a warm-up, at 32 keep-alive connections, with `wrk` (a Lua script rotates over
   the 16 credit codes and reports latency percentiles) or, when wrk is not installed, a small
   asyncio load generator on raw HTTP/1.1 connections: the bare endpoint (`async def`, and a
   plain `def` for reference), `GET /v1/ratings/2023/{uscc}` anonymously (the public grade)
   and with the supervisor key (the key's hash looked up, and the explanation), on each
   database; and, on SQLite, anonymously with a query parameter of its own on every request
   (`?fresh=N`), so that no answer comes from memory. Rounds are
   interleaved and the median one reported; before each load it waits (bounded) for other work
   on the machine to stop, and it records the CPU the server, the client and anything else
   used, so a noisy neighbour is visible in the figures rather than hidden in them.
4. Times `POST /v1/ratings/2023` (rate the 16 institutions and store the draft) sequentially
   on one keep-alive connection, on each database.
5. With `--compare-tree DIR`, also serves and loads the service of another checkout (a proposed
   patch) in the same run, on a copy of the same database.
Prints a table and writes `benchmarks/out/http.json` (figures, every round, targets, machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks.run import machine as engine_machine
from benchmarks.run import mark
from tests.servers import PostgresUnavailable, create_database, free_port, start_postgres

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
YEAR = 2023
TARGETS = {"throughput_ratio": 0.5, "p99_ms": 50.0, "post_median_ms": 200.0}
WHERE = {"service": "", "postgresql": ", PostgreSQL"}
"""How each served tree is labelled (the service of another checkout: ` (tree)`)."""
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Server:
    name: str
    base: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass(frozen=True)
class Scenario:
    """One load: `paths` of `server`, rotated, with `key` if any; `fresh`: each request
    carries a query parameter of its own (`?fresh=N`), so none is a repeat."""

    name: str
    server: Server
    paths: list[str]
    key: str | None = None
    fresh: bool = False


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so the servers are stopped.
    signal.signal(signal.SIGTERM, _raise_exit)
    tool = "wrk" if shutil.which("wrk") and not args.asyncio_client else "asyncio"
    results: dict[str, Any] = {
        "command": "python -m benchmarks.http_load " + " ".join(argv or sys.argv[1:]),
        "tool": tool,
        "tool_version": _wrk_version() if tool == "wrk" else "benchmarks.http_load (asyncio)",
        "connections": args.connections,
        "client_threads": args.threads if tool == "wrk" else 1,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "posts": args.posts,
        "rounds": args.rounds,
        "year": YEAR,
        "targets": TARGETS,
        "machine": machine(),
        "uvicorn": uvicorn_settings(args.workers),
        "compare_tree": str(args.compare_tree) if args.compare_tree else None,
    }
    trees = {"service": ROOT}
    if args.compare_tree:
        trees["tree"] = args.compare_tree.resolve()
    OUT.mkdir(parents=True, exist_ok=True)
    # On the project's disk, as the service's own database would be (/tmp may be in memory,
    # which would make every fsync of a POST free).
    with (
        tempfile.TemporaryDirectory(prefix="http-bench-", dir=OUT) as tmp,
        ExitStack() as stack,
    ):
        folder = Path(tmp)
        console.print(
            "[dim]preparing the database (migrate, import, key, compute, publish) …[/dim]"
        )
        database = folder / "bench.db"
        key, usccs = prepare(f"sqlite:///{database}")
        results["institutions"] = len(usccs)
        urls: dict[str, str] = {}
        for name in trees:
            copy = folder / f"{name}.db"  # each service writes (POSTs) to a database of its own
            shutil.copyfile(database, copy)
            urls[name] = f"sqlite:///{copy}"
        keys = dict.fromkeys(trees, key)
        if args.postgresql and (url := postgresql_database(console)):
            trees["postgresql"], urls["postgresql"] = ROOT, url
            keys["postgresql"], _ = prepare(url)
        results["databases"] = {name: url.partition(":")[0] for name, url in urls.items()}
        services: dict[str, Server] = {}
        for name, tree in trees.items():
            services[name] = stack.enter_context(
                serve(
                    name,
                    [sys.executable, "-m", "service.cli", "serve", "--workers", str(args.workers)],
                    folder,
                    tree=tree,
                    env={"CREDIT_DATABASE_URL": urls[name], "CREDIT_HOST": "127.0.0.1"},
                    port_env="CREDIT_PORT",
                    ready="/ready",
                )
            )
        bare = stack.enter_context(
            serve(
                "bare",
                [sys.executable, "-m", "benchmarks.bare_app", "--workers", str(args.workers)],
                folder,
                env={},
                port_arg="--port",
                ready="/bare",
            )
        )
        rating_paths = [f"/v1/ratings/{YEAR}/{u}" for u in usccs]
        check(bare, services, rating_paths, keys)
        scenarios = [
            Scenario("bare/async", bare, ["/bare"]),
            Scenario("bare/def", bare, ["/bare-sync"]),
        ]
        for name, server in services.items():
            scenarios.append(Scenario(f"{name}/anonymous", server, rating_paths))
            scenarios.append(Scenario(f"{name}/supervisor", server, rating_paths, keys[name]))
        # Every request unlike any before (an ignored query parameter): what a lookup costs
        # when it is not answered from memory, as the first after a commit, or on PostgreSQL.
        scenarios.append(
            Scenario("service/uncached", services["service"], rating_paths, fresh=True)
        )
        rounds: dict[str, list[dict[str, Any]]] = {scenario.name: [] for scenario in scenarios}
        for number in range(1, args.rounds + 1):  # rounds interleave, so noise hits them all
            for scenario in scenarios:
                console.print(
                    f"[dim]round {number}/{args.rounds}: {describe(scenario.name)} "
                    f"({args.warmup:g} s warm-up, {args.duration:g} s) …[/dim]"
                )
                busy = settle(args.settle, console)
                run = load(scenario, args, tool, folder)
                rounds[scenario.name].append(run | {"busy_before": busy})
        results["loads"] = {
            scenario: {"label": describe(scenario)} | median_round(runs)
            for scenario, runs in rounds.items()
        }
        results["post"] = {}
        for name, server in services.items():
            console.print(
                f"[dim]timing {args.posts} sequential POST /v1/ratings/{YEAR} ({name}) …[/dim]"
            )
            busy = settle(args.settle, console)
            results["post"][name] = time_posts(server, keys[name], args.posts) | {
                "busy_before": busy
            }
    results["summary"] = summarise(results)
    report(results, console)
    (OUT / "http.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    console.print(f"written {OUT / 'http.json'}")
    return 0


def describe(scenario: str) -> str:
    server, _, kind = scenario.partition("/")
    if server == "bare":
        return "bare, async def" if kind == "async" else "bare, def (thread pool)"
    if kind == "uncached":
        return "rating, anonymous, never from memory"
    who = "anonymous" if kind == "anonymous" else "supervisor key"
    return f"rating, {who}" + WHERE.get(server, " (tree)")


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_load", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each load")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers, both servers")
    parser.add_argument("--posts", type=int, default=50, help="sequential POSTs timed")
    parser.add_argument(
        "--quick", action="store_true", help="one round of 3 s loads, 1 s warm-up, 20 POSTs"
    )
    parser.add_argument(
        "--asyncio-client", action="store_true", help="use the asyncio generator even with wrk"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds; the median one is reported"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=60.0,
        help="before each load, wait up to this many seconds for other work to stop",
    )
    parser.add_argument(
        "--no-postgresql",
        dest="postgresql",
        action="store_false",
        help="skip the service on PostgreSQL (the tests' embedded server)",
    )
    parser.add_argument(
        "--compare-tree",
        type=Path,
        help="also serve and load the service of this checkout (e.g. a proposed patch)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.posts, args.rounds = 3.0, 1.0, 20, 1
    if not (0 < args.duration <= 600 and 0 <= args.warmup <= 60):
        parser.error("--duration must be in (0, 600] s and --warmup in [0, 60] s")
    if not (1 <= args.connections <= 1024 and 1 <= args.posts <= 10_000):
        parser.error("--connections must be in [1, 1024] and --posts in [1, 10000]")
    if not (1 <= args.rounds <= 20 and 0 <= args.settle <= 3600):
        parser.error("--rounds must be in [1, 20] and --settle in [0, 3600] s")
    if args.compare_tree and not (args.compare_tree / "service" / "cli.py").is_file():
        parser.error(f"--compare-tree {args.compare_tree} is not a checkout of this project")
    return args


# --- set-up ------------------------------------------------------------------------------------


def prepare(url: str) -> tuple[str, list[str]]:
    """The database at `url` migrated, with the sample district and 2023 published.

    Returns a supervisor key and the institutions' credit codes.
    """
    from scoring.shipped import SAMPLE_DIR, load_rules
    from service.api import keys
    from service.api.keys import Role
    from service.core.database import make_engine, reading, writing
    from service.core.migrate import upgrade
    from service.ratings import snapshots
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
            snapshots.compute_draft(conn, rules=rules, year=YEAR, scale="four", by="benchmark")
        with writing(engine) as conn:
            snapshots.publish(conn, year=YEAR, revision=None, reason=None, by="benchmark")
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


@contextmanager
def serve(
    name: str,
    command: list[str],
    folder: Path,
    *,
    env: dict[str, str],
    ready: str,
    tree: Path = ROOT,
    port_env: str | None = None,
    port_arg: str | None = None,
) -> Iterator[Server]:
    """Start a server on a free loopback port, wait until `ready` answers 200, stop it after."""
    port = free_port()
    if port_env:
        env = {**env, port_env: str(port)}
    if port_arg:
        command = [*command, port_arg, str(port)]
    log = folder / f"{name}.log"
    # Only the settings given here: none of the caller's own CREDIT_* variables.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CREDIT_")}
    with log.open("wb") as out:  # a file, never an unread pipe that could stall the server
        process = subprocess.Popen(
            command,
            cwd=tree,
            env={**inherited, "PYTHONPATH": str(tree), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: workers are stopped with it
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_ready(server, ready)
        yield server
    finally:
        _stop(process)


def _wait_ready(server: Server, path: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n"
                + server.log.read_text(encoding="utf-8", errors="replace")[-4000:]
            )
        try:
            if httpx.get(server.base + path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} at {server.base} not ready after {READY_TIMEOUT_S} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # Any worker left in the server's own process group (started above, killed by its id).
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


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


# --- load --------------------------------------------------------------------------------------


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (not idle) since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the load generator)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def busy_cpus(seconds: float = 1.0) -> float:
    """How many CPUs were busy over `seconds`."""
    before = machine_cpu_seconds()
    time.sleep(seconds)
    return (machine_cpu_seconds() - before) / seconds


def settle(limit_s: float, console: Console) -> float:
    """Wait (at most `limit_s`) until other work uses under 0.25 CPU; return what it used."""
    deadline = time.monotonic() + limit_s
    busy = busy_cpus()
    warned = False
    while busy >= 0.25 and time.monotonic() < deadline:
        if not warned:
            console.print(f"[yellow]  {busy:.2f} CPU busy with other work: waiting …[/yellow]")
            warned = True
        busy = busy_cpus(2.0)
    if busy >= 0.25:
        console.print(f"[yellow]  measuring anyway with {busy:.2f} CPU busy elsewhere[/yellow]")
    return busy


def median_round(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput (its own latencies), and every round's figures."""
    chosen = sorted(runs, key=lambda r: r["rps"])[(len(runs) - 1) // 2]
    if len(runs) == 1:
        return chosen
    return chosen | {"rounds": runs}


def load(scenario: Scenario, args: argparse.Namespace, tool: str, folder: Path) -> dict[str, Any]:
    """Warm up, then load the scenario for `args.duration` seconds; figures and CPU use."""
    server = scenario.server
    if args.warmup:
        _run_load(scenario, args, tool, folder, args.warmup)
    load_before = os.getloadavg()[0]
    server_before, client_before = tree_cpu_seconds(server.process.pid), own_cpu_seconds()
    machine_before = machine_cpu_seconds()
    result = _run_load(scenario, args, tool, folder, args.duration)
    machine = machine_cpu_seconds() - machine_before
    server_cpu = tree_cpu_seconds(server.process.pid) - server_before
    client_cpu = own_cpu_seconds() - client_before
    result["server_cpu_s"] = server_cpu
    result["server_cpu_ms_per_request"] = 1000 * server_cpu / max(result["requests"], 1)
    result["client_cpu_s"] = client_cpu
    # CPUs used by anything else during the load: a noisy neighbour shows here
    result["other_cpus"] = max(0.0, machine - server_cpu - client_cpu) / result["duration_s"]
    result["load_before"] = load_before
    return result


def _run_load(
    scenario: Scenario, args: argparse.Namespace, tool: str, folder: Path, seconds: float
) -> dict[str, Any]:
    base, paths, key, fresh = scenario.server.base, scenario.paths, scenario.key, scenario.fresh
    if tool == "wrk":
        return run_wrk(base, paths, key, fresh, args.connections, args.threads, seconds, folder)
    coroutine = run_asyncio(base, paths, key, fresh, args.connections, seconds)
    try:  # uvloop (installed with uvicorn[standard]) makes the client cheaper
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


WRK_SCRIPT = """
local paths = {%(paths)s}
local key = %(key)s
local fresh = %(fresh)s
if key ~= nil then wrk.headers["X-API-Key"] = key end
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("offset", math.random(#paths))
  thread:set("id", threads)
end
function request()
  counter = counter + 1
  local path = paths[((counter + (offset or 0)) %% #paths) + 1]
  if fresh then path = path .. "?fresh=" .. (id or 0) .. "-" .. counter end
  return wrk.format("GET", path)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect_errors":%%d,' ..
    '"read_errors":%%d,"write_errors":%%d,"status_errors":%%d,"timeouts":%%d,' ..
    '"mean_us":%%.1f,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk(
    base: str,
    paths: list[str],
    key: str | None,
    fresh: bool,
    connections: int,
    threads: int,
    seconds: float,
    folder: Path,
) -> dict[str, Any]:
    script = folder / "rotate.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "paths": ", ".join(_lua_string(p) for p in paths),
            "key": _lua_string(key) if key else "nil",
            "fresh": "true" if fresh else "false",
        }
    )
    command = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        base,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=seconds + 60)
    lines = [line for line in out.stdout.splitlines() if line.startswith("WRKJSON ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    raw = json.loads(lines[-1].removeprefix("WRKJSON "))
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors"))
    duration = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "errors": errors,
        "timeouts": raw["timeouts"],
        "duration_s": duration,
        "rps": raw["requests"] / duration,
        "mean_ms": raw["mean_us"] / 1000,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "bytes_per_response": raw["bytes"] / max(raw["requests"], 1),
    }


async def run_asyncio(
    base: str, paths: list[str], key: str | None, fresh: bool, connections: int, seconds: float
) -> dict[str, Any]:
    """The fallback load generator: `connections` raw HTTP/1.1 keep-alive connections."""
    host, _, port = base.removeprefix("http://").partition(":")
    extra = f"X-API-Key: {key}\r\n" if key else ""

    def request(number: int) -> bytes:
        path = paths[number % len(paths)]
        if fresh:
            path += f"?fresh={number}"
        return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode("ascii")

    latencies: list[float] = []
    counts = {"errors": 0, "bytes": 0}
    started = time.perf_counter()
    deadline = started + seconds

    async def connection(offset: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            number = offset  # offset, offset + connections, …: no two requests alike
            while time.perf_counter() < deadline:  # bounded by the deadline
                began = time.perf_counter()
                writer.write(request(number))
                number += connections
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - began)
                counts["bytes"] += len(head) + len(body)
                if not head.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")):
                    counts["errors"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(connections)))
    duration = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))]

    return {
        "requests": len(latencies),
        "errors": counts["errors"],
        "timeouts": 0,
        "duration_s": duration,
        "rps": len(latencies) / duration,
        "mean_ms": 1000 * statistics.fmean(latencies),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": 1000 * latencies[-1],
        "bytes_per_response": counts["bytes"] / max(len(latencies), 1),
    }


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text.rpartition(")")[2].split()
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    total, frontier = 0.0, [pid]
    seen: set[int] = set()
    while frontier:
        current = frontier.pop()
        if current in seen or current not in stats:
            continue
        seen.add(current)
        total += stats[current][1]
        frontier.extend(child for child, (parent, _) in stats.items() if parent == current)
    return total


# --- compute and store -------------------------------------------------------------------------


def time_posts(service: Server, key: str, count: int) -> dict[str, Any]:
    """`count` sequential POSTs on one keep-alive connection (after 3 untimed ones)."""
    url = f"{service.base}/v1/ratings/{YEAR}"
    timings: list[float] = []
    revisions: list[int] = []
    server_before = tree_cpu_seconds(service.process.pid)
    with httpx.Client(headers={"X-API-Key": key}, timeout=30) as client:
        for i in range(count + 3):
            began = time.perf_counter()
            response = client.post(url)
            elapsed = time.perf_counter() - began
            if response.status_code != 201:
                raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:300]}")
            revisions.append(response.json()["revision"])
            if i >= 3:
                timings.append(elapsed)
    server_cpu = tree_cpu_seconds(service.process.pid) - server_before
    ms = sorted(1000 * t for t in timings)
    return {
        "requests": count,
        "server_cpu_ms_per_request": 1000 * server_cpu / (count + 3),
        "median_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))],
        "mean_ms": statistics.fmean(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "drafts_stored": len(set(revisions)),
    }


# --- report ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    facts = engine_machine()
    for name in ("pandas", "numpy", "pyarrow"):
        facts.pop(name, None)
    return facts


def uvicorn_settings(workers: int) -> dict[str, Any]:
    import fastapi
    import starlette
    import uvicorn

    from benchmarks.bare_app import UVICORN_SETTINGS

    settings: dict[str, Any] = {"workers": workers, "loop": "auto", "http": "auto"}
    settings |= UVICORN_SETTINGS
    versions: dict[str, str | None] = {"uvicorn": uvicorn.__version__}
    versions["fastapi"] = fastapi.__version__
    versions["starlette"] = starlette.__version__
    for module in ("uvloop", "httptools"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    settings["versions"] = versions
    return settings


def _wrk_version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False, timeout=10)
    words = (out.stdout or out.stderr).split()
    return " ".join(words[:2]) if words else "wrk"


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    loads = results["loads"]
    bare, bare_def = loads["bare/async"]["rps"], loads["bare/def"]["rps"]
    summary: dict[str, Any] = {}
    for scenario, run in loads.items():
        if scenario.startswith("bare/"):
            continue
        run["ratio_to_bare"] = run["rps"] / bare
        run["ratio_to_bare_def"] = run["rps"] / bare_def
        if scenario.endswith("/uncached"):  # for reference: the targets are for the lookup
            summary[scenario] = {"no_errors": run["errors"] == 0 and run["timeouts"] == 0}
            continue
        summary[scenario] = {
            "throughput_ratio": run["ratio_to_bare"] >= TARGETS["throughput_ratio"],
            "p99_ms": run["p99_ms"] < TARGETS["p99_ms"],
            "no_errors": run["errors"] == 0 and run["timeouts"] == 0,
        }
    for name, post in results["post"].items():
        summary[f"{name}/post"] = {"post_median_ms": post["median_ms"] < TARGETS["post_median_ms"]}
    summary["all_met"] = all(
        all(checks.values())
        for scenario, checks in summary.items()
        if scenario.startswith("service/")
    )
    return summary


def report(results: dict[str, Any], console: Console) -> None:
    m, u = results["machine"], results["uvicorn"]
    v = u["versions"]
    console.print(
        f"\n[bold]HTTP on loopback[/bold] — {m['nproc']} CPU {m['cpu']}, {m['ram_gib']} GiB RAM, "
        f"load {m['load_average'][0]:.2f}; Python {m['python']}, uvicorn {v['uvicorn']} "
        f"(workers {u['workers']}, loop {u['loop']} → uvloop {v['uvloop']}, http {u['http']} → "
        f"httptools {v['httptools']}, log {u['log_level']}), FastAPI {v['fastapi']}; client "
        f"{results['tool_version']}, {results['connections']} connections, "
        f"{results['duration_s']:g} s each after {results['warmup_s']:g} s warm-up; "
        f"{' and '.join(sorted(set(results['databases'].values())))}, "
        f"{results['institutions']} institutions"
    )
    summary = results["summary"]
    table = Table(
        title=f"{results['connections']} keep-alive connections ({results['tool']})",
        caption=f"rating: GET /v1/ratings/{results['year']}/{{uscc}}, rotating over the "
        f"{results['institutions']} codes; × bare: req/s over the bare async endpoint's; CPU: "
        "the server's per request; other CPU: CPUs busy with anything but server and client",
    )
    table.add_column("endpoint", no_wrap=True)
    for column in ("req/s", "× bare", "× bare def", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right")
    table.add_column("CPU ms/req", justify="right")
    table.add_column("other CPU", justify="right")
    table.add_column("errors", justify="right")
    for scenario, run in results["loads"].items():
        meets = summary.get(scenario, {})
        ratio, ratio_def = run.get("ratio_to_bare"), run.get("ratio_to_bare_def")
        table.add_row(
            run["label"],
            f"{run['rps']:,.0f}",
            mark(meets.get("throughput_ratio"), f"{ratio:.2f}") if ratio else "",
            f"{ratio_def:.2f}" if ratio_def else "",
            f"{run['p50_ms']:.1f}",
            mark(meets.get("p99_ms"), f"{run['p99_ms']:.1f}"),
            f"{run['max_ms']:.1f}",
            f"{run['server_cpu_ms_per_request']:.2f}",
            f"{run['other_cpus']:.2f}",
            mark(meets.get("no_errors"), str(run["errors"] + run["timeouts"])),
        )
    console.print(table)
    if results["rounds"] > 1:
        for run in results["loads"].values():
            spread = ", ".join(f"{r['rps']:,.0f}" for r in run["rounds"])
            console.print(f"  [dim]{run['label']}: req/s by round {spread} (median shown)[/dim]")
    for name, post in results["post"].items():
        ok = summary[f"{name}/post"]["post_median_ms"]
        where = WHERE.get(name, " (tree)")
        console.print(
            f"POST /v1/ratings/{results['year']}{where} (rate {results['institutions']} "
            f"institutions, store the draft), {post['requests']} sequential on one connection: "
            "median "
            + mark(ok, f"{post['median_ms']:.1f} ms")
            + f", p95 {post['p95_ms']:.1f} ms (min {post['min_ms']:.1f}, "
            f"max {post['max_ms']:.1f}); server CPU {post['server_cpu_ms_per_request']:.1f} ms "
            "per request"
        )
    if results.get("compare_tree"):
        console.print(
            f"  [dim]compare tree: the service of {escape(results['compare_tree'])}[/dim]"
        )
    console.print(
        f"targets: rating lookup ≥ {TARGETS['throughput_ratio']}× the bare async endpoint's "
        f"req/s with p99 < {TARGETS['p99_ms']:g} ms; POST median < "
        f"{TARGETS['post_median_ms']:g} ms — "
        + mark(summary["all_met"], "all met" if summary["all_met"] else "NOT all met")
    )


if __name__ == "__main__":
    raise SystemExit(main())
