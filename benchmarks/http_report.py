"""The HTTP benchmark's report: the machine, the uvicorn settings, targets met, the table.

Kept apart from the measurement so that what is measured and how it is judged and shown can
be read (and changed) separately; `benchmarks/out/http.json` holds the same figures.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks.run import machine as engine_machine
from benchmarks.run import mark

TARGETS = {"throughput_ratio": 0.5, "p99_ms": 50.0, "post_median_ms": 200.0}
WHERE = {"service": "", "postgresql": ", PostgreSQL"}
"""How each served tree is labelled (the service of another checkout: ` (tree)`)."""


def describe(scenario: str) -> str:
    server, _, kind = scenario.partition("/")
    if server == "bare":
        return "bare, async def" if kind == "async" else "bare, def (thread pool)"
    if kind == "uncached":
        return "rating, anonymous, never from memory"
    who = "anonymous" if kind == "anonymous" else "supervisor key"
    return f"rating, {who}" + WHERE.get(server, " (tree)")


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
