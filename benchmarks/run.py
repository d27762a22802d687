"""The engine benchmark: rate a synthetic Tianjin of 1M institutions and 10M findings.

    python -m benchmarks.run [--institutions 1000000] [--findings 10000000] [--quick]

Why: the engine must rate a whole city (or a national what-if) in seconds, within the memory
of a small server, and much faster than the obvious per-institution loop. This run measures
exactly that and says where the time goes, so a regression or a missed target is visible.

What it does:
1. Generates the district with `scoring.synthetic` (seeded) and writes it to Parquet under
   `benchmarks/out/` (gitignored), in a subprocess so this process stays small (a child's
   `ru_maxrss` starts at its parent's size). Reused when present; never part of a timing.
2. In a fresh subprocess per measurement (`benchmarks.measure`) so peak RSS is clean: reads
   the Parquet files and rates them with `scoring.engine.rate` (wall = read + compute), for
   several ways of reading; `scoring.inputs.validate` is timed apart.
3. Times the plain-Python reference (`benchmarks.reference`) on the first N institutions and
   their findings (the codes are scattered, so that is a random sample), scales it linearly
   to the full size, and checks it agrees with the engine on every institution.
4. Runs the same with `benchmarks.prototype` (a faster `units_lost`) installed, and, with
   `--compare-tree DIR`, with the `scoring` package of another checkout (a proposed patch);
   every run's ratings must be identical (sha256 of every score, grade and point).
Prints tables (rich) and writes `benchmarks/out/results.json`.
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
    results: dict[str, Any] = {
        "command": "python -m benchmarks.run " + " ".join(argv or sys.argv[1:]),
        "institutions": args.institutions,
        "findings": args.findings,
        "seed": args.seed,
        "year": args.year,
        "machine": machine(),
        "targets": TARGETS,
    }

    def measure(label: str, tree: Path = ROOT, **spec: Any) -> dict[str, Any]:
        console.print(f"[dim]measuring {label} …[/dim]")
        spec |= {"data": str(data), "year": args.year}
        load = os.getloadavg()[0]
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.measure", json.dumps(spec)],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            capture_output=True,
            text=True,
            check=False,
        )
        lines = out.stdout.strip().splitlines()
        try:
            result: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"error": (out.stderr or out.stdout).strip()[-2000:]}
        result["load_before"] = load
        return result

    results["generation"] = _generate(data, args, measure)
    runs: dict[str, dict[str, Any]] = {}
    runs["engine/str"] = measure("engine, pandas default read", task="rate", reader="str")
    if args.compare_tree:
        for reader in args.readers:
            runs[f"tree/{reader}"] = measure(
                f"engine of {args.compare_tree}, {reader} read",
                tree=args.compare_tree.resolve(),
                task="rate",
                reader=reader,
            )
    for reader in args.readers:
        runs[f"prototype/{reader}"] = measure(
            f"prototype, {reader} read", task="rate", reader=reader, engine="prototype"
        )
    if args.all_engine_readers:
        for reader in args.readers:
            if reader != "str":
                runs[f"engine/{reader}"] = measure(
                    f"engine, {reader} read", task="rate", reader=reader
                )
    results["runs"] = runs
    results["compare_tree"] = str(args.compare_tree) if args.compare_tree else None
    results["validation"] = measure("scoring.inputs.validate", task="validate")
    subset = min(args.reference_institutions, args.institutions)
    reference = measure(
        f"reference on {subset:,} institutions", task="reference", institutions=subset
    )
    results["reference"] = reference
    if args.profile:
        results["profile"] = {
            "engine": measure("engine profile", task="rate", reader="str", profile=True),
            "prototype": measure(
                "prototype profile", task="rate", reader="str", engine="prototype", profile=True
            ),
        }
    results["summary"] = summarise(results)
    report(results, console)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    console.print(f"written {OUT / 'results.json'}")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--institutions", type=int, default=1_000_000)
    parser.add_argument("--findings", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true", help="100k institutions, 1M findings")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--year", type=int, default=2024)
    parser.add_argument(
        "--reference-institutions",
        type=int,
        default=100_000,
        help="the plain-Python reference is timed on this many institutions, then scaled",
    )
    parser.add_argument(
        "--readers",
        nargs="+",
        choices=list(READERS),
        default=list(READERS),
        help="ways of reading Parquet to compare (with the prototype engine)",
    )
    parser.add_argument(
        "--all-engine-readers",
        action="store_true",
        help="also run the committed engine on every reader (slow)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile engine and prototype")
    parser.add_argument(
        "--compare-tree",
        type=Path,
        help="also rate with the scoring package of this checkout (e.g. a proposed patch)",
    )
    parser.add_argument("--regenerate", action="store_true", help="ignore cached Parquet files")
    args = parser.parse_args(argv)
    if args.quick:
        args.institutions, args.findings = 100_000, 1_000_000
    return args


def _generate(data: Path, args: argparse.Namespace, measure: Any) -> dict[str, Any]:
    """Write the district's Parquet files (in a subprocess) unless an identical run did."""
    from service.loading import load_rules

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
    )
    if "error" in result:
        raise SystemExit(f"generation failed: {result['error']}")
    stamp.write_text(json.dumps(meta))
    return result


def machine() -> dict[str, Any]:
    import numpy
    import pandas
    import pyarrow

    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("MemTotal"):
                ram_kib = int(line.split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gib": round(ram_kib / 2**20, 1),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
    }


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    scale = results["institutions"] / max(results["reference"].get("institutions", 1), 1)
    summary: dict[str, Any] = {"reference_scale": scale}
    reference_s = results["reference"].get("reference_s")
    if reference_s is not None:
        summary["reference_full_s_estimated"] = reference_s * scale
    digests = {k: r.get("digest") for k, r in results["runs"].items() if "digest" in r}
    summary["identical_ratings"] = len(set(digests.values())) == 1 if digests else None
    for key, run in results["runs"].items():
        if "error" in run or reference_s is None:
            continue
        run["speedup"] = reference_s * scale / run["compute_s"]
        run["meets"] = {
            "wall_s": run["wall_s"] < TARGETS["wall_s"],
            "peak_gib": run["peak_gib"] < TARGETS["peak_gib"],
            "speedup": run["speedup"] >= TARGETS["speedup"],
        }
        summary[key] = run["meets"]
    return summary


def _mark(ok: bool | None, text: str) -> str:
    if ok is None:
        return text
    return f"[green]{text}[/green]" if ok else f"[red]{text}[/red]"


def report(results: dict[str, Any], console: Console) -> None:
    m = results["machine"]
    console.print(
        f"\n[bold]{results['institutions']:,} institutions, {results['findings']:,} findings"
        f"[/bold] (seed {results['seed']}, rated for {results['year']}) — "
        f"{m['nproc']} CPU {m['cpu']}, {m['ram_gib']} GiB RAM, load {m['load_average'][0]:.2f}; "
        f"Python {m['python']}, pandas {m['pandas']}, numpy {m['numpy']}, pyarrow {m['pyarrow']}"
    )
    table = Table(title="Read Parquet + rate (each row a fresh process)")
    for column in ("engine", "read", "read s", "compute s", "wall s", "CPU s", "peak GiB"):
        table.add_column(column, justify="right" if column.endswith(("s", "GiB")) else "left")
    table.add_column("× reference", justify="right")
    table.add_column("load", justify="right")
    for key, run in results["runs"].items():
        engine, reader = key.split("/")
        if "error" in run:
            table.add_row(engine, reader, "[red]" + run["error"][:80] + "[/red]")
            continue
        meets = run.get("meets", {})
        table.add_row(
            engine,
            reader,
            f"{run['read_s']:.2f}",
            f"{run['compute_s']:.2f}",
            _mark(meets.get("wall_s"), f"{run['wall_s']:.2f}"),
            f"{run['cpu_s']:.2f}",
            _mark(meets.get("peak_gib"), f"{run['peak_gib']:.2f}"),
            _mark(meets.get("speedup"), f"{run.get('speedup', float('nan')):.1f}"),
            f"{run['load_before']:.1f}",
        )
    console.print(table)
    console.print(
        f"targets: wall < {TARGETS['wall_s']} s, peak < {TARGETS['peak_gib']} GiB, "
        f"compute ≥ {TARGETS['speedup']}× the reference. "
        f"Identical ratings across runs: {results['summary']['identical_ratings']}"
    )
    if results.get("compare_tree"):
        console.print(
            f"  [dim]tree: the scoring package of {escape(results['compare_tree'])}[/dim]"
        )
    for key, (label, _) in READERS.items():
        console.print(f"  [dim]{key}: {escape(label)}[/dim]")

    ref = results["reference"]
    if "error" in ref:
        console.print(f"[red]reference failed: {ref['error']}[/red]")
    else:
        scale = results["summary"]["reference_scale"]
        console.print(
            f"\nReference (plain Python, one institution at a time) on the first "
            f"{ref['institutions']:,} institutions ({ref['findings']:,} findings): "
            f"{ref['reference_s']:.2f} s; engine {ref['engine_s']:.2f} s, prototype "
            f"{ref['prototype_s']:.2f} s on the same subset. Scaled ×{scale:g} to the full "
            f"size: {results['summary'].get('reference_full_s_estimated', 0):.1f} s. "
            f"Institutions where they disagree: engine {ref['mismatches']['engine']}, "
            f"prototype {ref['mismatches']['prototype']}."
        )
    val = results["validation"]
    if "error" in val:
        console.print(f"[yellow]validation not measured: {val['error'][:200]}[/yellow]")
    else:
        console.print(
            f"scoring.inputs.validate: {val['validate_s']:.2f} s after a {val['read_s']:.2f} s "
            f"read, peak {val['peak_gib']:.2f} GiB (not included in the wall times above)"
        )
    for name, run in results.get("profile", {}).items():
        if "profile" not in run:
            continue
        top = Table(title=f"Where {name}'s compute goes (cProfile, by own time)")
        top.add_column("function")
        top.add_column("calls", justify="right")
        top.add_column("own s", justify="right")
        top.add_column("cumulative s", justify="right")
        for row in run["profile"][:10]:
            top.add_row(
                row["function"],
                str(row["calls"]),
                f"{row['tottime_s']:.2f}",
                f"{row['cumtime_s']:.2f}",
            )
        console.print(top)


if __name__ == "__main__":
    raise SystemExit(main())
