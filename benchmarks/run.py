"""The engine benchmark: rate a synthetic Tianjin of 1M institutions and 10M findings.

    python -m benchmarks.run [--quick] [--all-columns] [--validate]

Why: the engine must rate a whole city (or a national what-if) from files in seconds, within
the memory of a small server, and much faster than the obvious per-institution loop. Targets
(issue 2, on a 2-core machine): read + compute under 8 s, peak memory under 2.5 GiB, compute at
least 8 times faster than the plain-Python reference.

What it does:
1. Generates the district with `scoring.synthetic` (seeded) and writes it to Parquet under
   `benchmarks/out/` (gitignored), in a subprocess so this process stays small. Reused while
   the size, seed, year, rules and generator are unchanged; never part of a timing.
2. In a fresh subprocess (`benchmarks.measure`), so its peak RSS is its own: reads the
   columns the engine needs (institutions `uscc`, `name`; findings `uscc`, `indicator`,
   `occurred_on`, `count`, `status`) and rates them with `scoring.engine.rate`.
   `--all-columns` also measures reading every column; `--validate` times
   `scoring.inputs.validate` (which checks every column) and reports it apart.
3. Times the plain-Python reference (`benchmarks.reference`) on the first
   `--reference-institutions` institutions (100k) and their findings, and scales it linearly
   to the full size: it is one pass over the findings and one over the institutions, and the
   synthetic codes are scattered, so the first 100k are a random tenth of the district. The
   engine must agree with it on every institution of the subset.
Prints a table (rich) and writes `benchmarks/out/results.json`. The machine may be shared:
the load average before each measurement is recorded beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks.measure import READERS

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
TARGETS = {"wall_s": 8.0, "peak_gib": 2.5, "speedup": 8.0}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    data = OUT / f"district-{args.institutions}-{args.findings}-seed{args.seed}-{args.year}"

    def measure(label: str, **spec: Any) -> dict[str, Any]:
        console.print(f"[dim]measuring {label} …[/dim]")
        load = os.getloadavg()[0]
        result = in_fresh_process("benchmarks.measure", json.dumps(spec | {"data": str(data)}))
        return result | {"load_before": load}

    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.run", *(argv or sys.argv[1:])]),
        "institutions": args.institutions,
        "findings": args.findings,
        "seed": args.seed,
        "year": args.year,
        "machine": machine(),
        "targets": TARGETS,
    }
    results["generation"] = _generate(data, args, measure)
    readers = ["columns", "all"] if args.all_columns else ["columns"]
    results["runs"] = {
        reader: measure(f"read ({reader}) + rate", task="rate", reader=reader, year=args.year)
        for reader in readers
    }
    if args.validate:
        results["validation"] = measure("scoring.inputs.validate", task="validate")
    subset = min(args.reference_institutions, args.institutions)
    results["reference"] = measure(
        f"reference on {subset:,} institutions",
        task="reference",
        institutions=subset,
        year=args.year,
    )
    results["machine"]["load_average_after"] = os.getloadavg()
    _summarise(results)
    report(results, console)
    (OUT / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    console.print(f"written {OUT / 'results.json'}")
    failed = [r for r in [*results["runs"].values(), results["reference"]] if "error" in r]
    return 1 if failed or results["reference"].get("mismatches") else 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--institutions", type=int, default=1_000_000)
    parser.add_argument("--findings", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true", help="100k institutions, 1M findings")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--year", type=int, default=2024)
    parser.add_argument(
        "--reference-institutions",
        type=int,
        default=100_000,
        help="time the plain-Python reference on this many institutions, then scale linearly",
    )
    parser.add_argument(
        "--all-columns", action="store_true", help="also measure reading every column"
    )
    parser.add_argument(
        "--validate", action="store_true", help="also time scoring.inputs.validate (apart)"
    )
    parser.add_argument("--regenerate", action="store_true", help="ignore cached Parquet files")
    args = parser.parse_args(argv)
    if args.quick:
        args.institutions, args.findings = 100_000, 1_000_000
    return args


def _generate(data: Path, args: argparse.Namespace, measure: Any) -> dict[str, Any]:
    """Write the district's Parquet files (in a subprocess) unless an identical run did."""
    from scoring.shipped import load_rules

    meta = {
        "institutions": args.institutions,
        "findings": args.findings,
        "seed": args.seed,
        "year": args.year,
        "rules": load_rules().version,
        "generator": hashlib.sha256((ROOT / "scoring" / "synthetic.py").read_bytes()).hexdigest(),
    }
    stamp = data / "meta.json"
    if not args.regenerate and stamp.is_file() and json.loads(stamp.read_text()) == meta:
        return {"reused": str(data)}
    result: dict[str, Any] = measure(
        f"generating {args.institutions:,} institutions, {args.findings:,} findings",
        task="generate",
        institutions=args.institutions,
        findings=args.findings,
        seed=args.seed,
        year=args.year,
    )
    if "error" in result:
        raise SystemExit(f"generation failed: {result['error']}")
    stamp.write_text(json.dumps(meta))
    return result


def in_fresh_process(module: str, *args: str) -> dict[str, Any]:
    """`python -m module args…` in a process of its own (its peak memory its own), and the one
    JSON object it prints last (`last_json`)."""
    return last_json([sys.executable, "-m", module, *args])


def last_json(command: list[str]) -> dict[str, Any]:
    """`command` run from the repository, and the one JSON object it prints last; `{"error": …}`
    with the end of its output when there is none."""
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"error": (done.stderr or done.stdout).strip()[-2000:]}
    return result


def machine() -> dict[str, Any]:
    """CPU, memory, load and library versions (also used by `benchmarks.http_load`)."""
    import numpy
    import pandas
    import pyarrow

    def first(path: str, key: str) -> str:
        with open(path, encoding="utf-8") as info:
            return next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith(key)), "?")

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": first("/proc/cpuinfo", "model name"),
        "ram_gib": round(int(first("/proc/meminfo", "MemTotal").split()[0]) / 2**20, 1),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
    }


def _summarise(results: dict[str, Any]) -> None:
    """Scale the reference to the full size; each run's speed-up and targets met."""
    digests = {run.get("digest") for run in results["runs"].values()}
    results["identical_ratings"] = len(digests) == 1 and None not in digests
    ref = results["reference"]
    if "error" in ref:
        return
    ref["scale"] = results["institutions"] / ref["institutions"]
    ref["full_s_estimated"] = ref["reference_s"] * ref["scale"]
    ref["speedup_same_subset"] = ref["reference_s"] / ref["engine_s"]
    for run in results["runs"].values():
        if "error" in run:
            continue
        run["speedup"] = ref["full_s_estimated"] / run["compute_s"]
        run["meets"] = {
            "wall_s": run["wall_s"] < TARGETS["wall_s"],
            "peak_gib": run["peak_gib"] < TARGETS["peak_gib"],
            "speedup": run["speedup"] >= TARGETS["speedup"],
        }


def mark(ok: bool | None, text: str) -> str:
    """`text` green when a target is met, red when not, plain when no target applies."""
    if ok is None:
        return text
    return f"[green]{text}[/green]" if ok else f"[red]{text}[/red]"


def report(results: dict[str, Any], console: Console) -> None:
    m, ref = results["machine"], results["reference"]
    console.print(
        f"\n[bold]{results['institutions']:,} institutions, {results['findings']:,} findings"
        f"[/bold] (seed {results['seed']}, rated for {results['year']}) — {m['nproc']} CPU "
        f"{m['cpu']}, {m['ram_gib']} GiB RAM, load average {m['load_average'][0]:.2f} at start; "
        f"Python {m['python']}, pandas {m['pandas']}, numpy {m['numpy']}, pyarrow {m['pyarrow']}"
    )
    table = Table(title="Read Parquet + rate (each row a fresh process)")
    for column in ("read", "read s", "compute s", "wall s", "CPU s", "peak GiB"):
        table.add_column(column, justify="left" if column == "read" else "right")
    table.add_column("reference s (scaled)", justify="right")
    table.add_column("speed-up", justify="right")
    table.add_column("load", justify="right")
    for reader, run in results["runs"].items():
        if "error" in run:
            table.add_row(reader, "[red]" + run["error"][-200:] + "[/red]")
            continue
        meets = run.get("meets", {})
        table.add_row(
            reader,
            f"{run['read_s']:.2f}",
            f"{run['compute_s']:.2f}",
            mark(meets.get("wall_s"), f"{run['wall_s']:.2f}"),
            f"{run['cpu_s']:.2f}",
            mark(meets.get("peak_gib"), f"{run['peak_gib']:.2f}"),
            f"{ref['full_s_estimated']:.1f}" if "full_s_estimated" in ref else "—",
            mark(meets.get("speedup"), f"{run['speedup']:.1f}×" if "speedup" in run else "—"),
            f"{run['load_before']:.1f}",
        )
    console.print(table)
    console.print(
        f"targets: wall (read + compute) < {TARGETS['wall_s']:g} s, peak < "
        f"{TARGETS['peak_gib']:g} GiB, compute ≥ {TARGETS['speedup']:g}× the reference."
    )
    for reader in results["runs"]:
        console.print(f"  [dim]{reader}: {escape(READERS[reader][0])}[/dim]")
    first = next(iter(results["runs"].values()))
    if "import_s" in first:
        console.print(
            f"  [dim]not in wall: interpreter start-up and imports, {first['import_s']:.2f} s[/dim]"
        )
    if len(results["runs"]) > 1:
        console.print(f"identical ratings from every read: {results['identical_ratings']}")

    if "error" in ref:
        console.print(f"[red]reference failed: {ref['error']}[/red]")
    else:
        agree = mark(ref["mismatches"] == 0, f"{ref['mismatches']} institutions")
        console.print(
            f"\nReference (plain Python, one institution at a time) on the first "
            f"{ref['institutions']:,} institutions and their {ref['findings']:,} findings: "
            f"{ref['reference_s']:.2f} s, scaled ×{ref['scale']:g} to "
            f"{ref['full_s_estimated']:.1f} s. The engine on the same subset: "
            f"{ref['engine_s']:.2f} s ({ref['speedup_same_subset']:.1f}×). "
            f"Engine and reference disagree on {agree}."
        )
    val = results.get("validation")
    if val is not None and "error" in val:
        console.print(f"[yellow]validation not measured: {val['error'][-300:]}[/yellow]")
    elif val is not None:
        console.print(
            f"scoring.inputs.validate (every column, scoring.input_files.read_raw): "
            f"{val['validate_s']:.2f} s after a {val['read_s']:.2f} s read, peak "
            f"{val['peak_gib']:.2f} GiB (not in the wall times above)"
        )
    after = m["load_average_after"]
    console.print(f"[dim]load average at the end: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
