"""The calibration benchmark: `credit-rating calibrate` on 100,000 institutions over 4 years.

    python -m benchmarks.calibrate [--institutions 100000] [--years 2023-2026] [--seed 0]

Why: a city bureau calibrates on its whole history, so the fits must stay a small multiple of
rating the same years, within a small server's memory (issue 10). Each figure stands beside
its reference measured in the same run, the engine alone rating the same years, because this
machine is shared and its speed varies.

What it does, each step in a fresh process (peak memory is a process's high-water mark):
1. `generate`: `scoring.history.synthetic_history` (seeded) written as Parquet under
   `benchmarks/out/` (reused while size, years and seed are unchanged; never timed).
2. `engine`: read the Parquet files and rate every year with `scoring.engine.rate` on the
   four-class scale: the reference.
3. `calibrate`: read the same files and run `scoring.calibration_report.calibrate`, which
   rates the years itself, builds the outcomes, fits the score calibrator (cross-validated
   isotonic and sigmoid, bootstrapped intervals) and the non-negative logistic model, and
   scores the held-out year: what the command does between reading the files and printing.
Prints a table and writes `benchmarks/out/calibrate.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

OUT = Path(__file__).resolve().parent / "out"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.task:
        print(json.dumps(TASKS[args.task](args)))
        return 0
    from benchmarks.run import machine

    console = Console(width=None if sys.stdout.isatty() else 120)
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.calibrate", *(argv or sys.argv[1:])]),
        "institutions": args.institutions,
        "years": args.years,
        "seed": args.seed,
        "machine": machine(),
    }
    for task in ("generate", "engine", "calibrate"):
        console.print(f"[dim]{task} …[/dim]")
        results[task] = _in_fresh_process(task, argv or sys.argv[1:])
    OUT.mkdir(exist_ok=True)
    (OUT / "calibrate.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    _report(results, console)
    return 0 if all("error" not in results[t] for t in ("engine", "calibrate")) else 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibrate")
    parser.add_argument("--institutions", type=int, default=100_000)
    parser.add_argument("--years", default="2023-2026")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", choices=["generate", "engine", "calibrate"], help="internal")
    return parser.parse_args(argv)


def _in_fresh_process(task: str, argv: list[str]) -> dict[str, Any]:
    from benchmarks.run import in_fresh_process

    load = os.getloadavg()[0]
    result = in_fresh_process("benchmarks.calibrate", *argv, "--task", task)
    return result | {"load_before": load}


def _data(args: argparse.Namespace) -> Path:
    return OUT / f"history-{args.institutions}-{args.years}-seed{args.seed}"


def _years(args: argparse.Namespace) -> tuple[int, ...]:
    from scoring.calibration_report import parse_years

    return parse_years(args.years)


def _generate(args: argparse.Namespace) -> dict[str, Any]:
    import datetime as dt

    from scoring.history import synthetic_history

    data = _data(args)
    if (data / "findings.parquet").exists():
        return {"reused": str(data)}
    years = _years(args)
    today = min(dt.date.today(), dt.date(years[-1], 12, 31))
    history = synthetic_history(args.institutions, years, seed=args.seed, today=today)
    data.mkdir(parents=True, exist_ok=True)
    history.institutions.to_parquet(data / "institutions.parquet")
    history.findings.to_parquet(data / "findings.parquet")
    return {"written": str(data), "findings": len(history.findings)}


def _read(args: argparse.Namespace) -> tuple[Any, Any]:
    import pandas as pd

    data = _data(args)
    return pd.read_parquet(data / "institutions.parquet"), pd.read_parquet(
        data / "findings.parquet"
    )


def _engine(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.measure import _cpu_s, _peak_gib
    from scoring.engine import rate
    from scoring.history import OUTCOME_SCALE
    from scoring.shipped import load_rules

    rules = load_rules()
    institutions, findings = _read(args)
    cpu0, t0 = _cpu_s(), time.perf_counter()
    for year in _years(args):
        rate(institutions, findings, rules.in_force(year, OUTCOME_SCALE))
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": _cpu_s() - cpu0,
        "peak_gib": _peak_gib(),
        "findings": len(findings),
    }


def _calibrate(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.measure import _cpu_s, _peak_gib
    from scoring.calibration_report import calibrate
    from scoring.shipped import load_rules

    rules = load_rules()
    institutions, findings = _read(args)
    cpu0, t0 = _cpu_s(), time.perf_counter()
    result = calibrate(institutions, findings, rules, _years(args), seed=args.seed)
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": _cpu_s() - cpu0,
        "peak_gib": _peak_gib(),
        "auc": result.report["auc"],
        "brier": result.report["brier"],
        "brier_baseline": result.report["brier_baseline"],
        "method": result.report["method"],
    }


TASKS = {"generate": _generate, "engine": _engine, "calibrate": _calibrate}


def _report(results: dict[str, Any], console: Console) -> None:
    m = results["machine"]
    table = Table(
        title=f"calibrate: {results['institutions']:,} institutions, {results['years']} "
        f"({results['engine'].get('findings', '?'):,} findings) — {m['nproc']} CPU {m['cpu']}"
    )
    for column in ("step", "wall s", "CPU s", "peak GiB", "load", "× engine"):
        table.add_column(column, justify="left" if column == "step" else "right")
    engine = results["engine"]
    for step in ("engine", "calibrate"):
        run = results[step]
        if "error" in run:
            table.add_row(step, f"[red]{run['error'][-300:]}[/red]")
            continue
        ratio = run["wall_s"] / engine["wall_s"] if "wall_s" in engine else None
        table.add_row(
            "rate the years (engine alone)" if step == "engine" else "calibrate",
            f"{run['wall_s']:.1f}",
            f"{run['cpu_s']:.1f}",
            f"{run['peak_gib']:.2f}",
            f"{run['load_before']:.2f}",
            "—" if ratio is None else f"{ratio:.1f}×",
        )
    console.print(table)
    cal = results["calibrate"]
    if "auc" in cal:
        console.print(
            f"held out: AUC {cal['auc']:.3f}, Brier {cal['brier']:.4f} "
            f"(base rate {cal['brier_baseline']:.4f}), method {cal['method']} — synthetic data"
        )


if __name__ == "__main__":
    raise SystemExit(main())
