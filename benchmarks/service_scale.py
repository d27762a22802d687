"""The service at city and national scale: a 20,000- and a 100,000-institution year through the
real service, on SQLite and on PostgreSQL, beside the bare FastAPI app measured in the same run.

    python -m benchmarks.service_scale [--sizes 20000,100000] [--duration 4] [--rounds 3]
                                       [--no-postgresql]

For each database and size: a new database, migrated, with an independently generated district
(`scoring.synthetic`, 1.53 findings per institution, seed 2023) stored by the service's own
import functions and a supervisor key; then the real service (`python -m service.cli serve`,
one uvicorn worker) is started on it and timed through HTTP:

- `POST /v1/ratings/2023` (compute and store the draft), and the service's peak memory (VmHWM of
  its process) after it;
- `POST /v1/ratings/2023/publish`;
- `GET /v1/ratings/2023` (the whole year, anonymous and as a supervisor: the median of 3);
- random lookups `GET /v1/ratings/2023/{uscc}` with wrk at 32 connections, rotating over every
  code in a shuffled order, anonymous and with the supervisor key (the explanation), after a
  commit that empties the response cache, for `--duration` seconds per round: at most a few
  requests per code, so nearly every lookup is a first one (the share of repeats is reported);
- the bare app's `async def` endpoint under the same wrk settings, in the same rounds.

Each round's figures are kept too (req/s, p99, the ratio to the bare app's round of the same
number, and the 1-minute load average as it began): on a shared machine they vary a lot.

Prints a table and writes `benchmarks/out/service_scale.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from benchmarks.http_cpu import settle
from benchmarks.http_report import machine, uvicorn_settings
from benchmarks.http_servers import postgresql_database, serve_bare, serve_service
from benchmarks.http_wrk import run_wrk, wrk_version
from tests.servers import ROOT, Server

OUT = Path(__file__).resolve().parent / "out"
YEAR = 2023
FINDINGS_PER_INSTITUTION = 1.53
TARGETS = {
    "compute_s": {20_000: 2.0, 100_000: 10.0},
    "peak_memory_gib": {100_000: 1.0},
    "publish_s": {20_000: 1.0},
    "whole_year_s": {20_000: 0.5},
    "lookup_ratio": {"sqlite": 0.5, "postgresql": 0.3},
    "lookup_p99_ms": 50.0,
}


def prepare(url: str, size: int) -> str:
    """The database at `url` migrated, the district stored, a supervisor key (returned)."""
    from scoring.shipped import load_rules
    from scoring.synthetic import synthetic_district
    from service.api import keys
    from service.api.keys import Role
    from service.core.clock import now
    from service.core.database import make_engine, writing
    from service.core.migrate import upgrade
    from service.records import storage

    rules = load_rules()
    institutions, findings = synthetic_district(
        size, int(size * FINDINGS_PER_INSTITUTION), year=YEAR, seed=YEAR, rules=rules
    )
    engine = make_engine(url)
    try:
        upgrade(engine)
        with writing(engine) as conn:
            storage.import_frames(
                conn,
                institution_frame=institutions,
                finding_frame=findings,
                by="benchmark",
                at=now(),
            )
        with writing(engine) as conn:
            return keys.create(conn, role=Role.SUPERVISOR, name="benchmark")
    finally:
        engine.dispose()


def commit(url: str) -> None:
    """A commit (a new analyst key): the response cache is emptied by it."""
    from service.api import keys
    from service.api.keys import Role
    from service.core.database import make_engine, writing

    engine = make_engine(url)
    try:
        with writing(engine) as conn:
            keys.create(conn, role=Role.ANALYST, name="a commit")
    finally:
        engine.dispose()


def peak_rss_bytes(pid: int) -> int:
    """The peak resident memory of process `pid` (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def timed(client: httpx.Client, method: str, url: str, **kwargs: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    response = client.request(method, url, **kwargs)
    elapsed = time.perf_counter() - began
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {url}: {response.status_code} {response.text[:300]}")
    return elapsed, response


def measure(
    name: str, url: str, size: int, args: argparse.Namespace, bare: Server, folder: Path
) -> dict[str, Any]:
    console = args.console
    console.print(f"[dim]{name} {size:,}: preparing the district …[/dim]")
    began = time.perf_counter()
    key = prepare(url, size)
    result: dict[str, Any] = {"database": name, "institutions": size}
    result["prepare_s"] = time.perf_counter() - began
    supervisor = {"X-API-Key": key}
    with (
        serve_service(f"{name}-{size}", ROOT, url, 1, folder) as service,
        httpx.Client(base_url=service.base, timeout=900) as client,
    ):
        pid = service.process.pid
        result["rss_before_mib"] = peak_rss_bytes(pid) / 2**20
        settle(args.settle, console)
        console.print(f"[dim]{name} {size:,}: POST /v1/ratings/{YEAR} …[/dim]")
        result["compute_s"], _ = timed(client, "POST", f"/v1/ratings/{YEAR}", headers=supervisor)
        result["peak_memory_mib_after_compute"] = peak_rss_bytes(pid) / 2**20
        result["publish_s"], _ = timed(
            client, "POST", f"/v1/ratings/{YEAR}/publish", headers=supervisor
        )
        whole: dict[str, list[float]] = {"anonymous": [], "supervisor": []}
        codes: list[str] = []
        for _ in range(3):
            for who, headers in (("anonymous", {}), ("supervisor", supervisor)):
                elapsed, response = timed(client, "GET", f"/v1/ratings/{YEAR}", headers=headers)
                whole[who].append(elapsed)
                if not codes:
                    codes = [r["uscc"] for r in response.json()["institutions"]]
                    result["whole_year_bytes"] = len(response.content)
        result["whole_year_s"] = {who: statistics.median(t) for who, t in whole.items()}
        # The first read after publishing also loads the year into memory (service.api.published)
        result["whole_year_runs_s"] = whole
        random.Random(size).shuffle(codes)
        paths = [f"/v1/ratings/{YEAR}/{code}" for code in codes]
        # The year is loaded into memory by its first lookup: not timed.
        timed(client, "GET", paths[0], headers=supervisor)
        rounds: dict[str, list[dict[str, Any]]] = {"bare": [], "anonymous": [], "supervisor": []}
        for number in range(args.rounds):
            for scenario in rounds:
                console.print(
                    f"[dim]{name} {size:,}: round {number + 1}/{args.rounds}, {scenario} …[/dim]"
                )
                settle(args.settle, console)
                load = os.getloadavg()[0]
                if scenario == "bare":
                    run = run_wrk(bare.base, ["/bare"], None, False, 32, 1, args.duration, folder)
                else:
                    commit(url)  # the response cache emptied: first lookups
                    run = run_wrk(
                        service.base,
                        paths,
                        key if scenario == "supervisor" else None,
                        False,
                        32,
                        1,
                        args.duration,
                        folder,
                    )
                    run["repeats"] = max(0, run["requests"] - len(paths)) / max(run["requests"], 1)
                run["load_average"] = load  # the 1-minute load average as the round began
                rounds[scenario].append(run)
        result["peak_memory_mib"] = peak_rss_bytes(pid) / 2**20
    lookups = {s: sorted(r, key=lambda x: x["rps"])[(len(r) - 1) // 2] for s, r in rounds.items()}
    lookups_all = {s: [round(x["rps"]) for x in r] for s, r in rounds.items()}
    result["lookups"] = lookups
    result["lookups_rounds_rps"] = lookups_all
    result["lookups_rounds_p99_ms"] = {
        s: [round(x["p99_ms"], 1) for x in r] for s, r in rounds.items()
    }
    result["lookups_rounds_ratio"] = {
        s: [round(x["rps"] / b["rps"], 2) for x, b in zip(rounds[s], rounds["bare"], strict=True)]
        for s in ("anonymous", "supervisor")
    }
    result["lookups_rounds_load_average"] = [round(x["load_average"], 2) for x in rounds["bare"]]
    for scenario in ("anonymous", "supervisor"):
        result[f"ratio_{scenario}"] = lookups[scenario]["rps"] / lookups["bare"]["rps"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service_scale", description=__doc__)
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per wrk round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--no-postgresql", dest="postgresql", action="store_false")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    args.console = console
    signal.signal(signal.SIGTERM, _raise_exit)
    if not shutil.which("wrk"):
        console.print("[red]wrk is needed (apt-get install wrk)[/red]")
        return 1
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, Any] = {
        "command": "python -m benchmarks.service_scale " + " ".join(argv or sys.argv[1:]),
        "tool_version": wrk_version(),
        "connections": 32,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "targets": {
            k: {str(n): v for n, v in t.items()} if isinstance(t, dict) else t
            for k, t in TARGETS.items()
        },
        "machine": machine(),
        "uvicorn": uvicorn_settings(1),
        "runs": [],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="scale-bench-", dir=OUT) as tmp,
        ExitStack() as stack,
    ):
        folder = Path(tmp)
        bare = stack.enter_context(serve_bare(1, folder))
        for size in sizes:
            databases = [("sqlite", f"sqlite:///{folder / f'scale-{size}.db'}")]
            if args.postgresql and (pg := postgresql_database(console)):
                databases.append(("postgresql", pg))
            for name, url in databases:
                run = measure(name, url, size, args, bare, folder)
                results["runs"].append(run)
                _row(console, run)
    report(results, console)
    (OUT / "service_scale.json").write_text(
        json.dumps(results, ensure_ascii=False, indent=2) + "\n"
    )
    console.print(f"written {OUT / 'service_scale.json'}")
    return 0


def _row(console: Console, run: dict[str, Any]) -> None:
    lookups, whole = run["lookups"], run["whole_year_s"]
    console.print(
        f"{run['database']} {run['institutions']:,}: compute {run['compute_s']:.2f} s "
        f"(peak {run['peak_memory_mib_after_compute']:.0f} MiB), "
        f"publish {run['publish_s']:.2f} s, "
        f"whole year {whole['anonymous']:.2f}/{whole['supervisor']:.2f} s, "
        f"lookups {lookups['anonymous']['rps']:.0f}/{lookups['supervisor']['rps']:.0f} req/s "
        f"(bare {lookups['bare']['rps']:.0f}): "
        f"{run['ratio_anonymous']:.2f}×/{run['ratio_supervisor']:.2f}×; round by round: "
        f"anonymous {run['lookups_rounds_ratio']['anonymous']}× "
        f"p99 {run['lookups_rounds_p99_ms']['anonymous']} ms, "
        f"load average {run['lookups_rounds_load_average']}"
    )


def report(results: dict[str, Any], console: Console) -> None:
    table = Table(title="The service at scale (wrk, 32 connections; bare app in the same run)")
    for column in (
        "database",
        "institutions",
        "compute s",
        "peak MiB",
        "publish s",
        "whole year s (anon/sup)",
        "lookups req/s anon / sup / bare",
        "ratio anon / sup",
        "p99 ms anon / sup",
    ):
        table.add_column(column)
    for run in results["runs"]:
        lookups = run["lookups"]
        table.add_row(
            run["database"],
            f"{run['institutions']:,}",
            f"{run['compute_s']:.2f}",
            f"{run['peak_memory_mib_after_compute']:.0f}",
            f"{run['publish_s']:.2f}",
            f"{run['whole_year_s']['anonymous']:.2f} / {run['whole_year_s']['supervisor']:.2f}",
            f"{lookups['anonymous']['rps']:.0f} / {lookups['supervisor']['rps']:.0f} / "
            f"{lookups['bare']['rps']:.0f}",
            f"{run['ratio_anonymous']:.2f} / {run['ratio_supervisor']:.2f}",
            f"{lookups['anonymous']['p99_ms']:.1f} / {lookups['supervisor']['p99_ms']:.1f}",
        )
    console.print(table)


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    raise SystemExit(main())
