"""One measurement in a fresh process: `python -m benchmarks.measure '<json task>'`.

Why a process each: peak memory (`ru_maxrss`, `VmHWM`) is a high-water mark for the whole
process, so anything generated, cached or measured before would inflate it. `benchmarks.run`
starts this module once per measurement and reads the one JSON line it prints on stdout.

Tasks:
- `generate`: write the synthetic district's Parquet files (so the parent stays small).
- `rate`: read the Parquet files (`READERS`) and rate them with `scoring.engine.rate`;
  wall = read + compute (interpreter start-up and imports are reported apart).
- `validate`: read every column as the product does, then `scoring.inputs.validate`.
- `reference`: on the first N institutions and their findings, time the plain-Python
  reference (`benchmarks.reference`) and the engine, and count where they disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_START = time.perf_counter()

import numpy as np  # noqa: E402  (the imports' time is reported)
import pandas as pd  # noqa: E402

from scoring import engine  # noqa: E402
from scoring.shipped import load_rules  # noqa: E402

_IMPORTED = time.perf_counter()

ENGINE_COLUMNS = (["uscc", "name"], ["uscc", "indicator", "occurred_on", "count", "status"])
"""The engine's inputs (institutions, findings): all a rating reads from the files."""

Frames = tuple[pd.DataFrame, pd.DataFrame]


def _read_engine_columns(directory: Path) -> Frames:
    institutions, findings = ENGINE_COLUMNS
    return (
        pd.read_parquet(directory / "institutions.parquet", columns=institutions),
        pd.read_parquet(directory / "findings.parquet", columns=findings),
    )


def _read_all_columns(directory: Path) -> Frames:
    return (
        pd.read_parquet(directory / "institutions.parquet"),
        pd.read_parquet(directory / "findings.parquet"),
    )


READERS: dict[str, tuple[str, Callable[[Path], Frames]]] = {
    "columns": (
        "pd.read_parquet(path, columns=<the engine's 2 + 5 columns>)",
        _read_engine_columns,
    ),
    "all": ("pd.read_parquet(path)  [every column, text as pandas str]", _read_all_columns),
}


def _peak_gib() -> float:
    """Peak resident memory of this process, GiB (the larger of `ru_maxrss` and `VmHWM`:
    `ru_maxrss` keeps the parent's pre-exec mark, `VmHWM` starts clean at exec)."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak_kib = max(peak_kib, int(line.split()[1]))
    except OSError:
        pass
    return peak_kib / 2**20


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _digest(rated: pd.DataFrame, codes: list[str]) -> str:
    """sha256 of every rated figure: equal digests mean identical ratings."""
    h = hashlib.sha256()
    h.update(rated["score"].to_numpy(dtype=np.int64).tobytes())
    h.update("\n".join(rated["grade"].astype(str).tolist()).encode())
    h.update(repr([v for v in rated["vetoes"].tolist() if v]).encode())
    h.update(np.ascontiguousarray(rated[codes].to_numpy(dtype=np.int16)).tobytes())
    return h.hexdigest()


def task_rate(spec: dict[str, Any]) -> dict[str, Any]:
    force = load_rules().in_force(spec["year"])
    _, read = READERS[spec["reader"]]
    cpu0, t0 = _cpu_s(), time.perf_counter()
    institutions, findings = read(Path(spec["data"]))
    t1 = time.perf_counter()
    after_read = _peak_gib()
    rated = engine.rate(institutions, findings, force)
    t2 = time.perf_counter()
    cpu, peak = _cpu_s() - cpu0, _peak_gib()
    return {
        "import_s": _IMPORTED - _START,
        "read_s": t1 - t0,
        "compute_s": t2 - t1,
        "wall_s": t2 - t0,
        "cpu_s": cpu,
        "peak_after_read_gib": after_read,
        "peak_gib": peak,
        "grades": {str(k): int(v) for k, v in rated["grade"].value_counts().items()},
        "vetoed": int(rated["vetoed"].sum()),
        "digest": _digest(rated, [i.code for i in force.indicators]),
    }


def task_validate(spec: dict[str, Any]) -> dict[str, Any]:
    from scoring import inputs
    from scoring.input_files import read_table

    directory = Path(spec["data"])
    rules = load_rules()
    t0 = time.perf_counter()
    institutions = read_table(directory / "institutions.parquet")  # raises what it cannot read
    findings = read_table(directory / "findings.parquet")
    t1 = time.perf_counter()
    inputs.validate(
        institutions,
        findings,
        rules=rules,
        institutions_file="institutions.parquet",
        findings_file="findings.parquet",
    )
    t2 = time.perf_counter()
    return {"read_s": t1 - t0, "validate_s": t2 - t1, "peak_gib": _peak_gib()}


def task_reference(spec: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.reference import differences, rate_reference
    from scoring.uscc_columns import listed

    force = load_rules().in_force(spec["year"])
    institutions, findings = _read_engine_columns(Path(spec["data"]))
    subset = institutions.iloc[: spec["institutions"]].reset_index(drop=True)
    mine = findings[listed(findings["uscc"], subset["uscc"])].reset_index(drop=True)
    del institutions, findings

    t0 = time.perf_counter()
    reference = rate_reference(subset, mine, force)
    t1 = time.perf_counter()
    rated = engine.rate(subset, mine, force)
    t2 = time.perf_counter()
    return {
        "institutions": len(subset),
        "findings": len(mine),
        "reference_s": t1 - t0,
        "engine_s": t2 - t1,
        "mismatches": differences(rated, reference, [i.code for i in force.indicators]),
    }


def task_generate(spec: dict[str, Any]) -> dict[str, Any]:
    from scoring.synthetic import synthetic_district

    directory = Path(spec["data"])
    t0 = time.perf_counter()
    institutions, findings = synthetic_district(
        spec["institutions"],
        spec["findings"],
        year=spec["year"],
        seed=spec["seed"],
        rules=load_rules(),
    )
    t1 = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    institutions.to_parquet(directory / "institutions.parquet", index=False)
    findings.to_parquet(directory / "findings.parquet", index=False)
    return {"generate_s": t1 - t0, "write_s": time.perf_counter() - t1, "peak_gib": _peak_gib()}


TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "generate": task_generate,
    "rate": task_rate,
    "validate": task_validate,
    "reference": task_reference,
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    try:
        result = TASKS[spec["task"]](spec)
    except Exception as exc:  # reported in the table, not a crash of the whole benchmark
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result["pid"] = os.getpid()
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
