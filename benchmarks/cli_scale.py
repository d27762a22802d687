"""The command line at scale: `credit-rating rate` on the 1M/10M district, beside the engine.

    python -m benchmarks.cli_scale [--quick] [--skip-csv-input]

Why (issue 13, part 4): a supervisor rates a city from files with `credit-rating rate`, and
the command reads every column, checks the whole input contract (`scoring.inputs`), lists
closed institutions and writes the result; it should cost at most twice the engine alone
(`benchmarks.run`: read the engine's columns + rate) from Parquet, at most three times from
CSV, and stay under 2.5 GiB.

What it does, each measurement a fresh process (peak memory is a process's own):
1. Reuses (or writes, through `benchmarks.run`'s generator) the district's Parquet files under
   `benchmarks/out/`, and writes the same district as CSV beside them once (never timed).
2. The engine alone (`benchmarks.measure`, task `rate`): read + compute, imports apart.
3. `credit-rating rate --year Y --institutions … --findings … --format F > file`, as a user
   runs it (`python -m service.cli`), for Parquet → CSV, Parquet → JSON, CSV → CSV: the
   whole process's wall time and peak memory (`ru_maxrss` of the child), and the same minus
   the command's start-up (interpreter and the imports every command needs, `credit-rating
   rate --help` timed apart), which is what the engine's figure leaves out too. Ratios: that
   to the engine's read + compute, and the whole command to the engine's read + compute +
   imports (what a user waits for, each side), and CPU seconds to the engine's.
4. The outputs from Parquet and from CSV are compared byte for byte.
Prints a table and writes `benchmarks/out/cli_scale.json`.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.run import OUT, ROOT, _generate, in_fresh_process, last_json, machine, mark

TARGETS = {"parquet": 2.0, "csv": 3.0, "peak_gib": 2.5}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    data = OUT / f"district-{args.institutions}-{args.findings}-seed{args.seed}-{args.year}"

    def measure(label: str, **spec: Any) -> dict[str, Any]:
        console.print(f"[dim]measuring {label} …[/dim]")
        return in_fresh_process("benchmarks.measure", json.dumps(spec | {"data": str(data)}))

    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.cli_scale", *(argv or sys.argv[1:])]),
        "institutions": args.institutions,
        "findings": args.findings,
        "year": args.year,
        "machine": machine(),
        "targets": TARGETS,
    }
    results["generation"] = _generate(data, args, measure)
    if not args.skip_csv_input:
        results["csv_files"] = _write_csv(data, console)
    results["engine"] = measure("the engine alone", task="rate", reader="columns", year=args.year)
    results["startup_s"] = _startup()
    runs = [("parquet", "csv"), ("parquet", "json")]
    if not args.skip_csv_input:
        runs.append(("csv", "csv"))
    results["cli"] = {}
    for source, form in runs:
        console.print(f"[dim]measuring credit-rating rate from {source} to {form} …[/dim]")
        results["cli"][f"{source}->{form}"] = _cli(data, source, form, args.year)
    if "csv->csv" in results["cli"]:
        results["same_output_from_csv"] = filecmp.cmp(
            data / "rated-parquet.csv", data / "rated-csv.csv", shallow=False
        )
    results["machine"]["load_average_after"] = os.getloadavg()
    _summarise(results)
    report(results, console)
    (OUT / "cli_scale.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    console.print(f"written {OUT / 'cli_scale.json'}")
    failed = [r for r in results["cli"].values() if "error" in r] + (
        [results["engine"]] if "error" in results["engine"] else []
    )
    return 1 if failed or results.get("same_output_from_csv") is False else 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cli_scale",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--institutions", type=int, default=1_000_000)
    parser.add_argument("--findings", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true", help="100k institutions, 1M findings")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--year", type=int, default=2024)
    parser.add_argument("--skip-csv-input", action="store_true", help="Parquet input only")
    parser.add_argument("--regenerate", action="store_true", help="ignore cached Parquet files")
    args = parser.parse_args(argv)
    if args.quick:
        args.institutions, args.findings = 100_000, 1_000_000
    return args


def _write_csv(data: Path, console: Console) -> dict[str, Any]:
    """The district's Parquet files as CSV (dates as YYYY-MM-DD), once; never timed."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    done = data / "csv.done"
    if done.is_file() and done.stat().st_mtime >= (data / "findings.parquet").stat().st_mtime:
        return {"reused": True}
    console.print("[dim]writing the district as CSV …[/dim]")
    t0 = time.perf_counter()
    for name in ("institutions", "findings"):
        table = pq.read_table(data / f"{name}.parquet")
        for position, field in enumerate(table.schema):
            if pa.types.is_timestamp(field.type):
                table = table.set_column(
                    position, field.name, table.column(position).cast(pa.date32())
                )
        pacsv.write_csv(table, data / f"{name}.csv")
        del table
    done.write_text("")
    return {"write_s": time.perf_counter() - t0}


def _startup() -> float:
    """Wall time of `credit-rating rate --help`: the interpreter and the imports of the
    command line and its `rate` command (`credit-rating --help` lists every command, so it
    imports the whole service, which `rate` itself does not)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "service.cli", "rate", "--help"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        best = min(best, time.perf_counter() - t0)
    return best


def _cli(data: Path, source: str, form: str, year: int) -> dict[str, Any]:
    """One `credit-rating rate` in a child process, its output to a file: wall time, CPU and
    the child's peak memory (`ru_maxrss` of children: this process starts only this one)."""
    output = data / f"rated-{source}.{form}"
    command = [
        sys.executable,
        "-m",
        "service.cli",
        "rate",
        "--year",
        str(year),
        "--institutions",
        str(data / f"institutions.{source}"),
        "--findings",
        str(data / f"findings.{source}"),
        "--format",
        form,
    ]
    load = os.getloadavg()[0]
    # A fresh interpreter measures each run, so that RUSAGE_CHILDREN holds only this child.
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        "with open(sys.argv[1], 'wb') as out:\n"
        "    done = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.PIPE)\n"
        "wall = time.perf_counter() - t0\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'rc': done.returncode, 'wall_s': wall,\n"
        "  'cpu_s': usage.ru_utime + usage.ru_stime, 'peak_gib': usage.ru_maxrss / 2**20,\n"
        "  'stderr': done.stderr.decode(errors='replace')[-2000:]}))\n"
    )
    result = last_json([sys.executable, "-c", probe, str(output), *command])
    if "error" in result:
        return result
    if result["rc"] != 0:
        return {"error": result["stderr"]}
    result.pop("stderr")
    result["bytes"] = output.stat().st_size
    result["load_before"] = load
    result["command"] = " ".join(["credit-rating", *command[3:], ">", output.name])
    return result


def _summarise(results: dict[str, Any]) -> None:
    engine = results["engine"]
    if "error" in engine:
        return
    for key, run in results["cli"].items():
        if "error" in run:
            continue
        run["work_s"] = run["wall_s"] - results["startup_s"]
        run["ratio"] = run["work_s"] / engine["wall_s"]
        run["ratio_whole"] = run["wall_s"] / (engine["wall_s"] + engine.get("import_s", 0.0))
        # CPU seconds: what a shared machine's load does not inflate (wall time waits for it).
        run["cpu_ratio"] = run["cpu_s"] / engine["cpu_s"]
        limit = TARGETS["csv"] if key.startswith("csv") else TARGETS["parquet"]
        run["meets"] = {"ratio": run["ratio"] <= limit, "peak_gib": run["peak_gib"] < 2.5}


def report(results: dict[str, Any], console: Console) -> None:
    m, engine = results["machine"], results["engine"]
    console.print(
        f"\n[bold]credit-rating rate, {results['institutions']:,} institutions, "
        f"{results['findings']:,} findings[/bold] (rated for {results['year']}) — {m['nproc']} "
        f"CPU {m['cpu']}, {m['ram_gib']} GiB RAM, load {m['load_average'][0]:.2f} at start"
    )
    if "error" in engine:
        console.print(f"[red]engine failed: {engine['error'][-300:]}[/red]")
        return
    console.print(
        f"engine alone (read 7 columns + rate): {engine['wall_s']:.2f} s, "
        f"CPU {engine['cpu_s']:.2f} s "
        f"(+ {engine['import_s']:.2f} s imports), peak {engine['peak_gib']:.2f} GiB; "
        f"command start-up (credit-rating rate --help): {results['startup_s']:.2f} s"
    )
    table = Table(title="credit-rating rate (each a fresh process, output to a file)")
    for column in ("input → output", "wall s", "minus start-up", "× engine", "target"):
        table.add_column(column, justify="left" if column == "input → output" else "right")
    for column in ("whole × engine", "CPU s", "CPU × engine", "peak GiB", "MB written", "load"):
        table.add_column(column, justify="right")
    for key, run in results["cli"].items():
        if "error" in run:
            table.add_row(key, "[red]" + run["error"][-200:] + "[/red]")
            continue
        meets = run.get("meets", {})
        limit = TARGETS["csv"] if key.startswith("csv") else TARGETS["parquet"]
        table.add_row(
            key.replace("->", " → "),
            f"{run['wall_s']:.2f}",
            f"{run['work_s']:.2f}",
            mark(meets.get("ratio"), f"{run['ratio']:.2f}×"),
            f"≤ {limit:g}×",
            f"{run['ratio_whole']:.2f}×",
            f"{run['cpu_s']:.2f}",
            f"{run['cpu_ratio']:.2f}×",
            mark(meets.get("peak_gib"), f"{run['peak_gib']:.2f}"),
            f"{run['bytes'] / 1e6:.0f}",
            f"{run['load_before']:.1f}",
        )
    console.print(table)
    console.print(
        "× engine: (wall − start-up) / the engine's read + compute; whole × engine: wall / "
        "(the engine's read + compute + imports); CPU × engine: the command's CPU seconds "
        "(start-up included) / the engine's. Peak target < 2.5 GiB."
    )
    if "same_output_from_csv" in results:
        console.print(
            f"same CSV output from Parquet and from CSV: {results['same_output_from_csv']}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
