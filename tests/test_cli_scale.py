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

import io
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def _rating(institutions: Path, findings: Path, year: int) -> tuple[pd.DataFrame, Any]:
    from scoring.engine import rate
    from scoring.input_files import read_inputs
    from scoring.shipped import load_rules
    from scoring.standing import marked, standing

    rules = load_rules()
    force = rules.in_force(year)
    split = standing(*read_inputs(institutions, findings, rules=rules))
    return marked(rate(split.rated, split.findings, force), split), force


@pytest.mark.parametrize("year", [2022, 2023, 2024])
def test_block_writers_write_what_the_renderers_print(year: int) -> None:
    """`service.cli.bulk` against `render.as_csv`/`as_json`, in blocks smaller than the input,
    on slices with only rated, only closed and no institutions at all."""
    from service.cli import bulk, render

    rating, force = _rating(GOLDEN / "institutions.csv", GOLDEN / "findings.csv", year)
    for part in (rating, rating.iloc[:0], rating.iloc[-2:], rating.iloc[:5], rating.iloc[::-1]):
        for block in (bulk.BLOCK, 3):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(bulk, "BLOCK", block)
                out = io.BytesIO()
                assert bulk.write_csv(part, out)
                assert out.getvalue() == render.as_csv(part).encode()
                out = io.BytesIO()
                assert bulk.write_json(part, force, out)
                assert out.getvalue() == (render.as_json(part, force) + "\n").encode()


def test_block_writers_leave_unknown_columns_to_the_renderers() -> None:
    from service.cli import bulk

    rating, _force = _rating(SAMPLE_INSTITUTIONS, SAMPLE_FINDINGS, 2023)
    odd = rating.assign(extra=[1.5] * len(rating))
    out = io.BytesIO()
    assert not bulk.write_csv(odd, out)
    assert out.getvalue() == b""  # nothing half-written


def test_progress_is_shown_on_a_terminal_and_the_output_is_unchanged(tmp_path: Path) -> None:
    """stderr a pseudo-terminal: the steps are drawn there (and cleared); stdout, a file, holds
    exactly what it holds without them."""
    master, slave = pty.openpty()
    output = tmp_path / "rated.csv"
    with output.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "rate", "--year", "2023", "--format", "csv"],
            cwd=ROOT,
            stdout=out,
            stderr=slave,
            env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
        )
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert child.wait(timeout=120) == 0
    os.close(master)
    assert b"reading and checking institutions.csv, findings.csv" in shown
    assert b"writing csv" in shown and b"16/16" in shown
    assert output.read_bytes() == (GOLDEN / "sample-2023.csv").read_bytes()


def test_no_progress_on_a_pipe() -> None:
    done = _rate("--year", "2023", "--format", "json")
    assert done.returncode == 0
    assert done.stderr == b""
    assert done.stdout == (GOLDEN / "sample-2023.json").read_bytes()


def test_steps_draw_only_on_a_terminal_console() -> None:
    from rich.console import Console

    from service.cli.stages import steps

    for terminal in (True, False):
        screen = io.StringIO()
        console = Console(file=screen, force_terminal=terminal, width=100)
        with steps(console) as shown:
            shown.step("reading")
            shown.step("writing", total=10)
            shown.advance(10)
        assert ("writing" in screen.getvalue()) is terminal
        assert (screen.getvalue() == "") is not terminal


@pytest.mark.parametrize("year", [2022, 2023, 2024])
def test_rating_every_institution_then_leaving_out_the_closed_is_rating_the_others(
    year: int,
) -> None:
    """What `rate` does (`rated_part`, columns kept by `read_inputs(keep=…)`) gives the same
    frame as splitting first (`standing`) and rating the rated institutions' findings."""
    from scoring.engine import rate
    from scoring.input_files import read_inputs
    from scoring.shipped import load_rules
    from scoring.standing import marked, rated_part
    from service.cli.bulk import ENGINE_FINDING_COLUMNS, RATED_COLUMNS

    rules = load_rules()
    force = rules.in_force(year)
    files = (GOLDEN / "institutions.csv", GOLDEN / "findings.csv")
    institutions, findings = read_inputs(
        *files, rules=rules, keep=(RATED_COLUMNS, ENGINE_FINDING_COLUMNS)
    )
    rating, split = rated_part(rate(institutions[["uscc", "name"]], findings, force), institutions)
    assert not split.closed.empty  # the golden district has closed institutions
    expected, _force = _rating(*files, year)
    pd.testing.assert_frame_equal(marked(rating, split), expected)


def test_block_writers_neutralise_headers_as_the_exports_do() -> None:
    from service.cli import bulk
    from service.ratings import exports

    names = ["=cmd", "+1", "-x", "@a", "\tt", "\rr", "plain", 'a,"b"']
    frame = pd.DataFrame({name: pd.Series([name], dtype="str") for name in names})
    header = bulk.csv_header(frame).decode()
    assert exports.csv_text(frame).startswith(header)


def test_rate_imports_neither_the_web_nor_calibration() -> None:
    """`credit-rating rate` starts with what rating needs: the service is imported lazily (the
    CSV writer's neutraliser lives with the exports, which import SQLAlchemy)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "service.cli", "rate", "--year", "2023",
         "--format", "csv"],
        cwd=ROOT, capture_output=True, check=True,
    )  # fmt: skip
    imported = {line.split("|")[-1].strip() for line in done.stderr.decode().splitlines()}
    for heavy in ("fastapi", "uvicorn", "sklearn", "scipy", "service.api", "alembic"):
        assert heavy not in imported, heavy
