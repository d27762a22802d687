"""Institution status through every path (docs/measure.md, "Institution status"): a closed
institution is listed as not rated, with the reason, and never graded, shared or explained;
a suspended one is rated and marked. On both databases, and on the command line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import openpyxl
import pytest
from sqlalchemy import Engine, select, update
from typer.testing import CliRunner

from scoring.shipped import SAMPLE_FINDINGS, SAMPLE_INSTITUTIONS, load_rules
from scoring.standing import CLOSED_REASON
from service.api import keys
from service.api.keys import Role
from service.cli import app
from service.core.database import reading, writing
from service.core.tables import institutions, snapshot_rows, snapshots
from service.ratings import exports, integrity, publishing
from tests.conftest import drop_guards
from tests.servers import running_service

YEAR = 2023
CLOSED = "52120111MJ0627485A"  # 启航
SUSPENDED = "52120111MJ0631902H"  # 明德


def set_status(engine: Engine) -> None:
    with writing(engine) as conn:
        conn.execute(
            update(institutions).where(institutions.c.uscc == CLOSED).values(status="closed")
        )
        conn.execute(
            update(institutions).where(institutions.c.uscc == SUSPENDED).values(status="suspended")
        )


def test_a_published_year_lists_closed_institutions_as_not_rated(
    loaded: Engine, database_url: str
) -> None:
    set_status(loaded)
    rules = load_rules()
    with writing(loaded) as conn:
        publishing.compute_draft(conn, rules=rules, year=YEAR, scale="four", by="tests")
        snap = publishing.publish(conn, year=YEAR, revision=None, reason=None, by="tests")
    with reading(loaded) as conn:
        rows = {r.uscc: r for r in conn.execute(select(snapshot_rows).where(
            snapshot_rows.c.snapshot_id == snap.id))}  # fmt: skip
    assert CLOSED not in rows and len(rows) == 15  # never graded (so never shared or drawn)
    assert rows[SUSPENDED].status == "suspended"
    assert {r.status for u, r in rows.items() if u != SUSPENDED} == {None}
    assert snap.not_rated is not None
    assert json.loads(snap.not_rated) == [
        {"uscc": CLOSED, "name": "天津市西青区启航文化培训学校", "reason": CLOSED_REASON}
    ]

    # The status is part of the content hash: verify notices when either is altered.
    with reading(loaded) as conn:
        assert integrity.check(conn).problems == []
    drop_guards(loaded)
    with writing(loaded) as conn:
        conn.execute(update(snapshots).where(snapshots.c.id == snap.id).values(not_rated=None))
    with reading(loaded) as conn:
        assert any(f"{YEAR}" in p for p in integrity.check(conn).problems)
    with writing(loaded) as conn:
        conn.execute(
            update(snapshots).where(snapshots.c.id == snap.id).values(not_rated=snap.not_rated)
        )
        conn.execute(
            update(snapshot_rows)
            .where(snapshot_rows.c.snapshot_id == snap.id, snapshot_rows.c.uscc == SUSPENDED)
            .values(status=None)
        )
    with reading(loaded) as conn:
        assert any(f"{YEAR}" in p for p in integrity.check(conn).problems)


def test_the_api_shows_the_mark_and_the_list(loaded: Engine, database_url: str) -> None:
    set_status(loaded)
    with writing(loaded) as conn:
        supervisor = keys.create(conn, role=Role.SUPERVISOR, name="test supervisor")
    with running_service(database_url) as base, httpx.Client(base_url=base, timeout=30) as http:
        head = {"X-API-Key": supervisor}
        assert http.post(f"/v1/ratings/{YEAR}", headers=head).status_code in (200, 201)
        assert http.post(f"/v1/ratings/{YEAR}/publish", headers=head).status_code == 200
        public = http.get(f"/v1/ratings/{YEAR}").json()
        assert public["snapshot"]["not_rated"] == [
            {"uscc": CLOSED, "name": "天津市西青区启航文化培训学校", "reason": CLOSED_REASON}
        ]
        marks = {r["uscc"]: r["status"] for r in public["institutions"]}
        assert CLOSED not in marks and marks[SUSPENDED] == "suspended"
        assert set(marks.values()) == {"operating", "suspended"}
        assert http.get(f"/v1/ratings/{YEAR}/{CLOSED}").status_code == 404
        one = http.get(f"/v1/ratings/{YEAR}/{SUSPENDED}", headers=head).json()
        assert one["rating"]["status"] == "suspended" and one["explanation"] is not None

        # The public page: the closed institution under 不予评价 with the reason, not in the
        # list of grades; the suspended one marked, in the page and in its download alike.
        page = http.get(f"/public/{YEAR}").text
        listing, _, after = page.partition("不予评价的机构")
        assert after and "天津市西青区启航文化培训学校" in after and CLOSED_REASON in after
        assert f'data-uscc="{CLOSED}"' not in listing
        assert f'data-uscc="{SUSPENDED}"' in listing and "（暂停办学）" in listing
        download = http.get(f"/public/{YEAR}.csv").content.decode("utf-8-sig")
        rows = {r["统一社会信用代码"]: r for r in csv.DictReader(io.StringIO(download))}
        assert CLOSED not in rows and rows[SUSPENDED]["等级说明"].endswith("（暂停办学）")


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    text = SAMPLE_INSTITUTIONS.read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        row["status"] = {CLOSED: "closed", SUSPENDED: "suspended"}.get(row["uscc"], row["status"])
    path = tmp_path / "institutions.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path, SAMPLE_FINDINGS


def test_the_command_line_lists_marks_and_refuses_to_explain(files: tuple[Path, Path]) -> None:
    given = ["--institutions", str(files[0]), "--findings", str(files[1])]
    runner = CliRunner()
    as_json = runner.invoke(app, ["rate", "--year", str(YEAR), *given, "--format", "json"])
    assert as_json.exit_code == 0, as_json.stderr
    records = {r["uscc"]: r for r in json.loads(as_json.stdout)}
    assert records[CLOSED] == {
        "uscc": CLOSED,
        "name": "天津市西青区启航文化培训学校",
        "year": YEAR,
        "scale": "four",
        "status": "closed",
        "score": None,
        "grade": None,
        "reason": CLOSED_REASON,
    }
    assert records[SUSPENDED]["status"] == "suspended" and records[SUSPENDED]["grade"]
    assert list(records)[-1] == CLOSED  # not rated: last

    as_csv = runner.invoke(app, ["rate", "--year", str(YEAR), *given, "--format", "csv"])
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    closed = next(r for r in table if r["uscc"] == CLOSED)
    assert (closed["status"], closed["score"], closed["grade"]) == ("closed", "", "")
    assert next(r for r in table if r["uscc"] == SUSPENDED)["status"] == "suspended"

    shown = runner.invoke(app, ["rate", "--year", str(YEAR), *given])
    assert "不予评价" in shown.stdout and "暂停办学" in shown.stdout

    refused = runner.invoke(app, ["explain", CLOSED, "--year", str(YEAR), *given])
    assert refused.exit_code == 1 and "not rated" in refused.stderr


def test_a_correction_keeps_who_was_rated_as_published(loaded: Engine) -> None:
    """An institution closed after the year was published stays rated in its corrections; one
    listed as not rated stays so, even if it reopened."""
    set_status(loaded)  # CLOSED closed, SUSPENDED suspended, before the first publication
    rules = load_rules()
    with writing(loaded) as conn:
        publishing.compute_draft(conn, rules=rules, year=YEAR, scale="four", by="tests")
        publishing.publish(conn, year=YEAR, revision=None, reason=None, by="tests")
        later = "52120111MJ06185738"  # 博文 closes, 启航 reopens, 明德 resumes, all since
        conn.execute(
            update(institutions).where(institutions.c.uscc == later).values(status="closed")
        )
        conn.execute(
            update(institutions)
            .where(institutions.c.uscc.in_([CLOSED, SUSPENDED]))
            .values(status="operating")
        )
        draft = publishing.compute_draft(conn, rules=rules, year=YEAR, scale="four", by="tests")
        rows = {r.uscc: r.status for r in conn.execute(select(snapshot_rows).where(
            snapshot_rows.c.snapshot_id == draft.id))}  # fmt: skip
    assert later in rows and CLOSED not in rows and rows[SUSPENDED] == "suspended"
    assert [e["uscc"] for e in json.loads(draft.not_rated or "[]")] == [CLOSED]
    with writing(loaded) as conn:  # the next year is rated with today's statuses
        nxt = publishing.compute_draft(conn, rules=rules, year=YEAR + 1, scale="four", by="t")
    assert [e["uscc"] for e in json.loads(nxt.not_rated or "[]")] == [later]


def test_the_export_lists_and_marks_them(loaded: Engine) -> None:
    set_status(loaded)
    with writing(loaded) as conn:
        publishing.compute_draft(conn, rules=load_rules(), year=YEAR, scale="four", by="tests")
        publishing.publish(conn, year=YEAR, revision=None, reason=None, by="tests")
    with reading(loaded) as conn:
        made = exports.snapshot_export(conn, year=YEAR, rules=load_rules())
    book = openpyxl.load_workbook(io.BytesIO(made.xlsx()))
    assert book.sheetnames == ["概况", "指标得分", "扣分记录", "不予评价"]
    assert list(book["不予评价"].iter_rows(values_only=True)) == [
        ("统一社会信用代码", "机构名称", "原因"),
        (CLOSED, "天津市西青区启航文化培训学校", CLOSED_REASON),
    ]
    summary = dict(book["概况"].iter_rows(min_row=2, values_only=True))
    assert (summary["机构总数"], summary["不予评价（已注销）"]) == (16, 1)
    points = list(book["指标得分"].iter_rows(values_only=True))
    label = {line[1]: line[6] for line in points[1:]}
    assert CLOSED not in label and label[SUSPENDED].endswith("（暂停办学）")
    assert sum(v.endswith("（暂停办学）") for v in label.values()) == 1
