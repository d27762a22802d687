"""`credit-rating rate` at scale: the same bytes as before it was made fast, and progress only
on a terminal.

The golden files in tests/data/cli_golden/ were written by `credit-rating rate` before the
command was reworked for a million institutions (issue 13): the sample district, and the sample
with hostile names (formulas, quotes, line breaks), closed and suspended institutions (English
and Chinese status words), read from CSV and from Parquet (typed columns). Every format must
stay byte-identical. Regenerate only for an intended change of output:
`CREDIT_UPDATE_GOLDEN=1 pytest tests/test_cli_scale.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from scoring.shipped import SAMPLE_FINDINGS, SAMPLE_INSTITUTIONS
from tests.servers import ROOT

GOLDEN = Path(__file__).parent / "data" / "cli_golden"


def _parquet(tmp: Path) -> tuple[Path, Path]:
    """The hostile sample as Parquet with typed columns (dates, whole numbers)."""
    inst = pd.read_csv(GOLDEN / "institutions.csv", dtype=str, keep_default_na=False)
    found = pd.read_csv(GOLDEN / "findings.csv", dtype=str, keep_default_na=False)
    found["occurred_on"] = pd.to_datetime(found["occurred_on"])
    found["count"] = found["count"].astype("int64")
    inst.to_parquet(tmp / "institutions.parquet", index=False)
    found.to_parquet(tmp / "findings.parquet", index=False)
    return tmp / "institutions.parquet", tmp / "findings.parquet"


INPUTS = {
    "sample": lambda tmp: (SAMPLE_INSTITUTIONS, SAMPLE_FINDINGS),
    "hostile": lambda tmp: (GOLDEN / "institutions.csv", GOLDEN / "findings.csv"),
    "hostile-parquet": _parquet,
}


def _rate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "rate", *args],
        cwd=ROOT,
        capture_output=True,
        env={**os.environ, "COLUMNS": "160", "LANG": "C.UTF-8", **(env or {})},
        check=False,
    )


@pytest.mark.parametrize("year", ["2023", "2024"])
@pytest.mark.parametrize("inputs", list(INPUTS))
def test_rate_output_is_byte_identical_to_before_the_rework(
    inputs: str, year: str, tmp_path: Path
) -> None:
    institutions, findings = INPUTS[inputs](tmp_path)
    for form in ("csv", "json", "table"):
        done = _rate(
            "--year", year, "--institutions", str(institutions), "--findings", str(findings),
            "--format", form,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        golden = GOLDEN / f"{inputs}-{year}.{form}"
        if os.environ.get("CREDIT_UPDATE_GOLDEN") == "1":
            golden.write_bytes(done.stdout)
            golden.with_suffix(f".{form}.stderr").write_bytes(done.stderr)
        assert done.stdout == golden.read_bytes(), f"{golden.name} differs"
        assert done.stderr == golden.with_suffix(f".{form}.stderr").read_bytes()
