"""One measurement in a fresh process: `python -m benchmarks.measure '<json task>'`.

Peak memory (`ru_maxrss`) is a high-water mark for the whole process, so each measurement
runs in its own interpreter started by `benchmarks.run`: nothing generated, cached or
measured before can inflate it. The result is printed as one JSON line on stdout.

Tasks:
- `generate`: write the synthetic district's Parquet files (so the parent stays small).
- `rate`: read the Parquet files (one of `READERS`), rate with the engine as committed or
  with `benchmarks.prototype` installed; wall = read + compute.
- `validate`: read as the product does, then `scoring.inputs.validate` (reported apart).
- `reference`: on the first N institutions and their findings, time the engine and the
  plain-Python reference (`benchmarks.reference`) and count the institutions they disagree on.
"""

from __future__ import annotations

import cProfile
import hashlib
import json
import os
import pstats
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_START = time.perf_counter()

import numpy as np  # noqa: E402  (imports are part of what is timed)
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from scoring import engine  # noqa: E402
from scoring.rules import RulesInForce  # noqa: E402
from service.loading import load_rules  # noqa: E402

_IMPORTED = time.perf_counter()

ENUM_COLUMNS = ["indicator", "source", "status", "note"]
"""Findings columns with a handful of distinct values (`reference` is not: work orders)."""
RATING_COLUMNS = (["uscc", "name"], ["uscc", "indicator", "occurred_on", "count", "status"])
"""The only columns the engine reads."""

Frames = tuple[pd.DataFrame, pd.DataFrame]


def _read_default(i: Path, f: Path) -> Frames:
    return pd.read_parquet(i), pd.read_parquet(f)


def _read_backend(backend: str) -> Callable[[Path, Path], Frames]:
    def read(i: Path, f: Path) -> Frames:
        kind: Any = backend
        return pd.read_parquet(i, dtype_backend=kind), pd.read_parquet(f, dtype_backend=kind)

    return read


def _read_categorical(i: Path, f: Path) -> Frames:
    table = pq.read_table(f, read_dictionary=ENUM_COLUMNS).unify_dictionaries()
    return pd.read_parquet(i), table.to_pandas()


def _read_service(i: Path, f: Path) -> Frames:
    """What the product does: `service.files.read_raw` (pyarrow read_table, to_pandas)."""
    from service.files import read_raw

    frames = read_raw(i)[0], read_raw(f)[0]
    if frames[0] is None or frames[1] is None:
        raise RuntimeError("service.files could not read the Parquet files")
    return frames[0], frames[1]


def _read_rating_columns(i: Path, f: Path) -> Frames:
    return pd.read_parquet(i, columns=RATING_COLUMNS[0]), pd.read_parquet(
        f, columns=RATING_COLUMNS[1]
    )


READERS: dict[str, tuple[str, Callable[[Path, Path], Frames]]] = {
    "str": ("pd.read_parquet(path)  [pandas 3 default: str columns on Arrow]", _read_default),
    "service": ("service.files.read_raw(path)  [the product's Parquet reader]", _read_service),
    "pyarrow": ("pd.read_parquet(path, dtype_backend='pyarrow')", _read_backend("pyarrow")),
    "numpy_nullable": (
        "pd.read_parquet(path, dtype_backend='numpy_nullable')",
        _read_backend("numpy_nullable"),
    ),
    "categorical": (
        "pq.read_table(path, read_dictionary=[indicator, source, status, note]).to_pandas()",
        _read_categorical,
    ),
    "rating_columns": (
        "pd.read_parquet(path, columns=<the 2 + 5 columns the engine reads>)",
        _read_rating_columns,
    ),
}


def _peak_gib() -> float:
    """Peak resident memory of this process, GiB.

    `VmHWM` belongs to the address space made by exec, so it starts clean; `ru_maxrss` is
    the same figure on Linux when the parent is small (it keeps the pre-exec high-water mark,
    which is why the district is generated in a subprocess too). Take the larger, to be safe.
    """
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


def digest(rated: pd.DataFrame, codes: list[str]) -> str:
    """sha256 of every rated figure: equal digests mean identical ratings."""
    h = hashlib.sha256()
    h.update(rated["score"].to_numpy(dtype=np.int64).tobytes())
    h.update("\n".join(rated["grade"].astype(str).tolist()).encode())
    h.update(repr([v for v in rated["vetoes"].tolist() if v]).encode())
    h.update(np.ascontiguousarray(rated[codes].to_numpy(dtype=np.int16)).tobytes())
    return h.hexdigest()


def _profile(call: Callable[[], Any]) -> tuple[Any, list[dict[str, Any]]]:
    profiler = cProfile.Profile()
    result = profiler.runcall(call)
    stats = pstats.Stats(profiler)
    rows = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (file, line, name), (_, calls, tottime, cumtime, _) in raw.items():
        where = f"{Path(file).name}:{line}({name})" if line else name
        rows.append({"function": where, "calls": calls, "tottime_s": tottime, "cumtime_s": cumtime})
    rows.sort(key=lambda r: -float(r["tottime_s"]))
    return result, rows[:15]


def task_rate(spec: dict[str, Any]) -> dict[str, Any]:
    directory = Path(spec["data"])
    rules = load_rules()
    force: RulesInForce = rules.in_force(spec["year"])
    codes = [i.code for i in force.indicators]
    if spec.get("engine") == "prototype":
        from benchmarks import prototype

        prototype.install()
    _, reader = READERS[spec["reader"]]
    cpu0, t0 = _cpu_s(), time.perf_counter()
    institutions, findings = reader(
        directory / "institutions.parquet", directory / "findings.parquet"
    )
    t1 = time.perf_counter()
    after_read = _peak_gib()
    profile: list[dict[str, Any]] = []
    if spec.get("profile"):
        rated, profile = _profile(lambda: engine.rate(institutions, findings, force))
    else:
        rated = engine.rate(institutions, findings, force)
    t2 = time.perf_counter()
    return {
        "import_s": _IMPORTED - _START,
        "read_s": t1 - t0,
        "compute_s": t2 - t1,
        "wall_s": t2 - t0,
        "cpu_s": _cpu_s() - cpu0,
        "peak_after_read_gib": after_read,
        "peak_gib": _peak_gib(),
        "dtypes": {c: str(t) for c, t in findings.dtypes.items()},
        "grades": {str(k): int(v) for k, v in rated["grade"].value_counts().items()},
        "vetoed": int(rated["vetoed"].sum()),
        "digest": digest(rated, codes),
        "profile": profile,
    }


def task_validate(spec: dict[str, Any]) -> dict[str, Any]:
    from scoring import inputs

    directory = Path(spec["data"])
    rules = load_rules()
    t0 = time.perf_counter()
    institutions, findings = _read_service(
        directory / "institutions.parquet", directory / "findings.parquet"
    )
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

    directory = Path(spec["data"])
    force = load_rules().in_force(spec["year"])
    codes = [i.code for i in force.indicators]
    institutions, findings = _read_default(
        directory / "institutions.parquet", directory / "findings.parquet"
    )
    subset = institutions.iloc[: spec["institutions"]].reset_index(drop=True)
    mine = findings[findings["uscc"].isin(subset["uscc"])].reset_index(drop=True)
    del institutions, findings

    timings: dict[str, float] = {}
    mismatches: dict[str, int] = {}
    t0 = time.perf_counter()
    reference = rate_reference(subset, mine, force)
    timings["reference_s"] = time.perf_counter() - t0
    for variant in ("engine", "prototype"):
        if variant == "prototype":
            from benchmarks import prototype

            prototype.install()
        t0 = time.perf_counter()
        rated = engine.rate(subset, mine, force)
        timings[f"{variant}_s"] = time.perf_counter() - t0
        mismatches[variant] = differences(rated, reference, codes)
    return {
        "institutions": len(subset),
        "findings": len(mine),
        **timings,
        "mismatches": mismatches,
    }


def task_generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Write the synthetic district (not timed as part of any measurement)."""
    from scoring.synthetic import synthetic_district

    directory = Path(spec["data"])
    rules = load_rules()
    t0 = time.perf_counter()
    institutions, findings = synthetic_district(
        spec["institutions"], spec["findings"], year=spec["year"], seed=spec["seed"], rules=rules
    )
    t1 = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    institutions.to_parquet(directory / "institutions.parquet", index=False)
    findings.to_parquet(directory / "findings.parquet", index=False)
    t2 = time.perf_counter()
    return {"generate_s": t1 - t0, "write_s": t2 - t1, "peak_gib": _peak_gib()}


TASKS = {
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
