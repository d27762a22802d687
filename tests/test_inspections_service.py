"""The inspection register in the service, on SQLite and PostgreSQL: imported with the other
files all or nothing (by `credit-rating import` and `POST /v1/imports`), never edited or
deleted, listed at `GET /v1/inspections`, and a year's coverage from the records on file
(`credit-rating coverage --stored`, `GET /v1/coverage/{year}`) equal to the files'.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner, Result

from scoring.errors import InputError
from scoring.shipped import SAMPLE_DIR, SAMPLE_INSPECTIONS, load_rules
from service.cli import app
from service.core.database import reading, writing
from service.core.errors import Conflict
from service.core.tables import findings, inspections, institutions
from service.records.importing import import_files, record_finding
from tests.conftest import Live

RULES = load_rules()
REGISTER_ROWS = 28  # data/inspections.csv
HEADER = "task_id,uscc,inspected_on,result,note\n"
QIHANG = "52120111MJ0627485A"
NEW_CODE = "52120111MJ0700002J"  # valid, not in the sample


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def count(engine: Engine, table: Any) -> int:
    with reading(engine) as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


def new_institution(folder: Path) -> Path:
    return write(
        folder / "new.csv",
        "uscc,name,district_code,licence_no\n"
        f"{NEW_CODE},天津市西青区远帆培训学校,120111,教民11201117000099号\n",
    )


# Storage ------------------------------------------------------------------------------------


def test_the_register_is_imported_once_and_a_changed_row_is_a_conflict(
    loaded: Engine, tmp_path: Path
) -> None:
    first = import_files(loaded, [SAMPLE_INSPECTIONS], rules=RULES, by="tests")
    assert (first.inspections_added, first.inspections_unchanged) == (REGISTER_ROWS, 0)
    again = import_files(loaded, [SAMPLE_INSPECTIONS], rules=RULES, by="someone else")
    assert (again.inspections_added, again.inspections_unchanged) == (0, REGISTER_ROWS)
    with reading(loaded) as conn:
        by = set(conn.scalars(select(inspections.c.recorded_by)))
    assert by == {"tests"}  # re-importing changed nothing, not even who recorded it
    changed = write(
        tmp_path / "changed.csv",
        HEADER
        + "西青教查〔2024〕1号,52120111MJ0631902H,2024-03-12,no_issue,\n"
        + f"西青教查〔2023〕1号,{QIHANG},2023-03-14,no_issue,改为无问题\n",
    )
    with pytest.raises(Conflict, match="西青教查〔2023〕1号"):
        import_files(loaded, [changed], rules=RULES, by="tests")
    assert count(loaded, inspections) == REGISTER_ROWS  # the new 2024 row was not kept either


def test_the_database_refuses_to_edit_or_delete_a_register_row(loaded: Engine) -> None:
    import_files(loaded, [SAMPLE_INSPECTIONS], rules=RULES, by="tests")
    for statement in (
        update(inspections).values(result="no_issue"),
        delete(inspections).where(inspections.c.uscc == QIHANG),
    ):
        with pytest.raises(DBAPIError, match="never edited or deleted"), writing(loaded) as conn:
            conn.execute(statement)
    assert count(loaded, inspections) == REGISTER_ROWS


def test_a_bad_register_stores_nothing_of_any_file_and_lists_every_problem(
    loaded: Engine, tmp_path: Path
) -> None:
    bad = write(
        tmp_path / "检查台账.csv",
        "任务编号,统一社会信用代码,检查日期,检查结果\n"
        f"西青教查〔2025〕1号,{NEW_CODE},2025-03-01,无问题\n"
        f"西青教查〔2025〕1号,{NEW_CODE},2025-03-02,无问题\n"
        "西青教查〔2025〕1号,52120111MJ0799999B,2025-03-01,整改\n",
    )
    finding = write(
        tmp_path / "findings.csv",
        "uscc,indicator,occurred_on,reference\n"
        f"{NEW_CODE},fees_displayed,2025-03-01,西青教查〔2025〕1号\n",
    )
    before = (count(loaded, institutions), count(loaded, findings))
    with pytest.raises(InputError) as refused:
        import_files(loaded, [new_institution(tmp_path), finding, bad], rules=RULES, by="tests")
    located = {(p.file, p.row, p.column) for p in refused.value.problems}
    assert located == {
        (str(bad), 3, "统一社会信用代码"),  # the same task and institution twice
        (str(bad), 4, "统一社会信用代码"),  # no such institution
        (str(bad), 4, "检查结果"),
    }
    assert (count(loaded, institutions), count(loaded, findings)) == before
    assert count(loaded, inspections) == 0


def test_a_finding_naming_a_task_unknown_to_the_register_is_refused(
    loaded: Engine, tmp_path: Path
) -> None:
    import_files(loaded, [SAMPLE_INSPECTIONS], rules=RULES, by="tests")
    finding = write(
        tmp_path / "发现.csv",
        "统一社会信用代码,指标,发生日期,文号\n"
        f"{QIHANG},fees_displayed,2023-12-01,西青教查〔2023〕9号\n"
        f"{QIHANG},fees_displayed,2023-12-02,西青教查〔2023〕8号\n",
    )
    with pytest.raises(InputError) as refused:
        import_files(loaded, [finding], rules=RULES, by="tests")
    assert [(p.row, p.column, p.value) for p in refused.value.problems] == [
        (2, "文号", "西青教查〔2023〕9号")
    ]
    # the task registered in the same import makes it known
    task = write(
        tmp_path / "task9.csv", HEADER + f"西青教查〔2023〕9号,{QIHANG},2023-12-01,findings,\n"
    )
    summary = import_files(loaded, [finding, task], rules=RULES, by="tests")
    assert (summary.findings_added, summary.inspections_added) == (2, 1)


def test_one_finding_naming_an_unknown_task_is_refused_like_a_file_of_them(
    loaded: Engine,
) -> None:
    import_files(loaded, [SAMPLE_INSPECTIONS], rules=RULES, by="tests")
    finding = {
        "uscc": QIHANG,
        "indicator": "fees_displayed",
        "occurred_on": "2023-12-01",
        "reference": "西青教查〔2023〕9号",
    }
    with pytest.raises(InputError, match="2023's register has no task"), writing(loaded) as conn:
        record_finding(conn, finding, rules=RULES, by="tests")
    with writing(loaded) as conn:
        stored = record_finding(
            conn, {**finding, "reference": "西青教查〔2023〕8号"}, rules=RULES, by="tests"
        )
    assert stored["reference"] == "西青教查〔2023〕8号"


# The command line, on both databases --------------------------------------------------------


def run(*args: str, url: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"CREDIT_DATABASE_URL": url})


def test_cli_imports_the_register_and_gives_the_same_coverage_from_files_and_database(
    database_url: str, tmp_path: Path
) -> None:
    files = [str(SAMPLE_DIR / n) for n in ("institutions.csv", "findings.csv", "inspections.csv")]
    imported = run("import", *files, url=database_url)
    assert imported.exit_code == 0, imported.stderr
    assert f"inspections: {REGISTER_ROWS} added, 0 already on record" in imported.stdout
    from_files = run("coverage", "--year", "2023", "--format", "json", url=database_url)
    stored = run("coverage", "--year", "2023", "--stored", "--format", "json", url=database_url)
    assert from_files.exit_code == 0 and stored.exit_code == 0, from_files.stderr + stored.stderr
    assert json.loads(from_files.stdout) == json.loads(stored.stdout)
    figures = json.loads(stored.stdout)
    assert (len(figures["tasks"]), len(figures["covered"]), figures["institutions"]) == (8, 15, 16)
    assert (len(figures["rectify"]), len(figures["penalty"])) == (2, 1)

    # a bad register beside a new institution: exit 1, every problem named, nothing stored
    bad = write(tmp_path / "bad.csv", HEADER + f"西青教查〔2025〕1号,{NEW_CODE},2025-02-30,,\n")
    refused = run("import", str(new_institution(tmp_path)), str(bad), url=database_url)
    assert refused.exit_code == 1
    assert "bad.csv,row2,columninspected_on" in "".join(refused.stderr.split())
    listed = run("coverage", "--year", "2025", "--stored", "--format", "json", url=database_url)
    assert NEW_CODE not in listed.stdout and json.loads(listed.stdout)["institutions"] == 16


def test_cli_coverage_table_is_in_chinese_and_bad_files_are_reported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'unused.db'}"
    table = run("coverage", "--year", "2023", url=url)
    assert table.exit_code == 0, table.stderr
    assert "抽查任务 8 项，覆盖机构 15 家（共 16 家）" in table.stdout
    assert "责令整改 2 家，立案处罚 1 家" in table.stdout
    assert "天津市西青区思齐文化培训学校" in table.stdout  # the one not covered
    typo = write(
        tmp_path / "findings.csv",
        (SAMPLE_DIR / "findings.csv")
        .read_text(encoding="utf-8")
        .replace("西青教查〔2023〕5号", "西青教查〔2023〕15号"),
    )
    refused = run("coverage", "--year", "2023", "--findings", str(typo), url=url)
    assert refused.exit_code == 1
    said = "".join(refused.stderr.split())  # the console wraps long lines
    assert said.count("2023'sregisterhasnotask'西青教查〔2023〕15号'") == 3


# The HTTP API, on both databases -------------------------------------------------------------


@pytest.fixture
def http(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, timeout=60) as client:
        yield client


def upload(http: httpx.Client, live: Live, *files: tuple[str, bytes]) -> httpx.Response:
    return http.post(
        "/v1/imports",
        headers=live.as_("supervisor"),
        files=[("files", (name, content, "text/csv")) for name, content in files],
    )


def sample_register(http: httpx.Client, live: Live) -> dict[str, Any]:
    response = upload(http, live, ("检查台账.csv", SAMPLE_INSPECTIONS.read_bytes()))
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    assert report["inspections_added"] + report["inspections_unchanged"] == REGISTER_ROWS
    return report


def test_api_lists_the_register_a_page_at_a_time_for_readers_only(
    live: Live, http: httpx.Client
) -> None:
    sample_register(http, live)
    analyst = live.as_("analyst")
    pages = [
        http.get(
            "/v1/inspections", params={"year": 2023, "limit": 10, "offset": offset}, headers=analyst
        )
        for offset in (0, 10, 20)
    ]
    assert [p.status_code for p in pages] == [200, 200, 200]
    rows = [row for page in pages for row in page.json()]
    assert len(rows) == REGISTER_ROWS
    assert rows[0] == {
        "task_id": "西青教查〔2023〕1号",
        "uscc": QIHANG,
        "inspected_on": "2023-03-14",
        "result": "findings",
        "note": rows[0]["note"],
        "recorded_at": rows[0]["recorded_at"],
        "recorded_by": "test supervisor",
    }
    assert [r["inspected_on"] for r in rows] == sorted(r["inspected_on"] for r in rows)
    assert http.get("/v1/inspections", params={"year": 2024}, headers=analyst).json() == []
    assert http.get("/v1/inspections").status_code == 401
    assert http.get("/v1/inspections", headers=live.as_("sharing")).status_code == 403
    assert http.get("/v1/inspections", params={"year": 1999}, headers=analyst).status_code == 422


def test_api_coverage_of_the_sample_year_matches_the_seed_report(
    live: Live, http: httpx.Client
) -> None:
    sample_register(http, live)
    again = sample_register(http, live)
    assert (again["inspections_added"], again["inspections_unchanged"]) == (0, REGISTER_ROWS)
    response = http.get("/v1/coverage/2023", headers=live.as_("analyst"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (len(body["tasks"]), len(body["covered"]), body["institutions"]) == (8, 15, 16)
    assert (len(body["rectify"]), len(body["penalty"])) == (2, 1)
    assert [i["name"] for i in body["not_covered"]] == ["天津市西青区思齐文化培训学校"]
    assert http.get("/v1/coverage/2023").status_code == 401
    assert http.get("/v1/coverage/2023", headers=live.as_("supervisor")).status_code == 200


def test_api_import_with_a_bad_register_stores_nothing(live: Live, http: httpx.Client) -> None:
    code = "52120111MJ0700003M"  # valid, used by no other test of this module
    people = (
        "uscc,name,district_code,licence_no\n"
        f"{code},天津市西青区启明培训学校,120111,教民11201117000098号\n"
    ).encode()
    register = (HEADER + f"西青教查〔2025〕2号,{code},2025-04-01,rectified,\n").encode()
    response = upload(http, live, ("机构.csv", people), ("台账.csv", register))
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [(e["file"], e["row"], e["column"]) for e in errors] == [("台账.csv", 2, "result")]
    missing = http.get(f"/v1/institutions/{code}", headers=live.as_("analyst"))
    assert missing.status_code == 404
