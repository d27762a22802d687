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
import shutil
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from rich.console import Console

from benchmarks.http_asyncio import run_asyncio
from benchmarks.http_cpu import machine_cpu_seconds, own_cpu_seconds, settle, tree_cpu_seconds
from benchmarks.http_report import TARGETS, describe, machine, report, summarise, uvicorn_settings
from benchmarks.http_servers import (
    YEAR,
    check,
    postgresql_database,
    prepare,
    serve_bare,
    serve_service,
)
from benchmarks.http_wrk import run_wrk, wrk_version
from tests.servers import ROOT, Server

# This module runs the benchmark; its parts, by concern: the databases and servers
# (`http_servers`, which starts them with `tests.servers`), CPU accounting (`http_cpu`), the two
# load generators (`http_wrk`, `http_asyncio`), and the figures judged and shown (`http_report`).

OUT = Path(__file__).resolve().parent / "out"


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
        "tool_version": wrk_version() if tool == "wrk" else "benchmarks.http_load (asyncio)",
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
                serve_service(name, tree, urls[name], args.workers, folder)
            )
        bare = stack.enter_context(serve_bare(args.workers, folder))
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
    if args.compare_tree and not any(  # service.cli a package now, a module before
        (args.compare_tree / "service" / cli).is_file() for cli in ("cli.py", "cli/__main__.py")
    ):
        parser.error(f"--compare-tree {args.compare_tree} is not a checkout of this project")
    return args


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


if __name__ == "__main__":
    raise SystemExit(main())
