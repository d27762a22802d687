"""Tables for spreadsheets: the one place that writes CSV and XLSX a supervisor opens in Excel.

Everything the project hands to a spreadsheet goes through here, so it is made safe once:

- a text cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to
  Excel and LibreOffice (CSV injection, OWASP); it is written with a leading `'` and stays
  text, in an institution's name as in a finding's note. Numbers stay numbers.
- CSV is UTF-8 with a byte order mark and CRLF line ends: without the BOM, Excel on a Chinese
  Windows reads UTF-8 as GBK and shows the names garbled.
- XLSX text cells are always strings (never formulas), Chinese as it is; characters XML cannot
  carry (control characters other than tab, LF and CR) are replaced by U+FFFD.

It also shapes a published year (a snapshot) as the supervisors' workbook: a summary, the
points each institution kept per indicator, and the findings that cost points. All of it comes
from the snapshot as stored (each row's explanation cites the findings it counted), so an
export always says what was published, whatever was imported or revoked since. The CLI
(`credit-rating export`), the API (`/v1/ratings/{year}/export.xlsx`) and the public page use it;
the ratings layer sits below them all.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from sqlalchemy import Connection

from scoring.errors import ScoringError
from scoring.explain import Explanation
from scoring.lift import Lift, lift
from scoring.rules import Band, RuleSet, Unit
from service.core.clock import BEIJING
from service.ratings import snapshots
from service.ratings.snapshots import Snapshot, get, published, rows_of

Cell = str | int | float | bool | None
"""What a cell may hold: text, a number, a truth value or nothing (dates are written as text)."""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection")."""

BOM = "\ufeff"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv; charset=utf-8"


# Neutralising ---------------------------------------------------------------------------------


def spreadsheet_text(cell: str) -> str:
    """One text cell as every export writes it: with a leading `'` if it could be a formula."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def neutralised(value: Cell) -> Cell:
    """A cell made safe: text through `spreadsheet_text`, anything else as it is."""
    return spreadsheet_text(value) if isinstance(value, str) else value


def neutralised_column(column: pd.Series) -> pd.Series:
    """A frame's column made safe, cell by cell (numbers, booleans and dates are never
    formulas)."""
    if pd.api.types.is_string_dtype(column.dtype) and column.dtype != object:
        formula = column.str.startswith(FORMULA_STARTS).fillna(False).astype(bool)
        return column.where(~formula, "'" + column)
    if column.dtype == object:
        return column.map(lambda cell: spreadsheet_text(cell) if isinstance(cell, str) else cell)
    return column


# CSV -------------------------------------------------------------------------------------------


def csv_text(frame: pd.DataFrame) -> str:
    """`frame` as CSV text for a terminal or a pipe (records end with LF, no BOM), every cell
    and header neutralised; other text, Chinese included, is written as it is."""
    out = frame.copy()
    for column in out.columns:
        out[column] = neutralised_column(out[column])
    out.columns = [spreadsheet_text(str(c)) for c in out.columns]
    # Written with CRLF, then each record ended with LF: Python's csv (3.11) quotes a field that
    # holds a carriage return only when the line terminator has one, and an unquoted CR would
    # start a new record in a spreadsheet, its first cell a formula again.
    crlf = out.to_csv(index=False, lineterminator="\r\n")
    return _lf_records(crlf)


def _lf_records(crlf: str) -> str:
    """CSV text whose records end with CRLF, with each record ending with LF instead (a CRLF
    within a quoted field, where the quotes so far are odd, is kept)."""
    records: list[str] = []
    record: list[str] = []
    quotes = 0
    for piece in crlf.split("\r\n"):
        record.append(piece)
        quotes += piece.count('"')
        if quotes % 2 == 0:
            records.append("\r\n".join(record))
            record, quotes = [], 0
    return "\n".join(records + record)


def csv_bytes(headers: Sequence[str], rows: Iterable[Sequence[Cell]]) -> bytes:
    """A file for Excel: UTF-8 with a BOM, CRLF after every record, every cell neutralised.

    None is an empty cell, a truth value 是/否. A field holding a comma, a quote, LF or CR is
    quoted (the CRLF line terminator makes Python's csv quote a lone CR too)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([spreadsheet_text(h) for h in headers])
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row])
    return (BOM + out.getvalue()).encode("utf-8")


def _csv_cell(value: Cell) -> Cell:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    return neutralised(value)


# XLSX ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sheet:
    """One worksheet: a title (at most 31 characters, none of `[]:*?/\\`), a header row and the
    rows under it. `widths` are column widths in characters (default: fitted to the text)."""

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    widths: Sequence[float] | None = None


def xlsx_bytes(sheets: Sequence[Sheet], *, created: datetime | None = None) -> bytes:
    """A workbook of `sheets`: bold frozen header rows, text always text (never a formula),
    numbers as numbers. `created` is recorded as the document's creation time."""
    book = Workbook(write_only=True)
    if created is not None:  # openpyxl writes naive times as UTC
        book.properties.created = created.astimezone(UTC).replace(tzinfo=None)
    for sheet in sheets:
        page = book.create_sheet(title=sheet.title)
        page.freeze_panes = "A2"
        widths = sheet.widths or _fitted(sheet)
        for n, width in enumerate(widths, start=1):
            page.column_dimensions[get_column_letter(n)].width = width
        page.append([_header(page, h) for h in sheet.headers])
        for row in sheet.rows:
            page.append([_xlsx_cell(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _header(page: Any, text: str) -> Any:
    cell = WriteOnlyCell(page, value=_xlsx_cell(text))
    cell.font = Font(bold=True)
    return cell


def _xlsx_cell(value: Cell) -> Cell:
    if isinstance(value, str):
        return ILLEGAL_CHARACTERS_RE.sub("\ufffd", spreadsheet_text(value))
    return value


def _fitted(sheet: Sheet, most: int = 200) -> list[float]:
    """Column widths that fit the header and the first `most` rows (a Chinese character is
    about two Latin ones wide), between 6 and 60."""
    columns = len(sheet.headers)
    widths = [_width(h) for h in sheet.headers]
    for row in sheet.rows[:most]:
        for n, value in enumerate(row[:columns]):
            widths[n] = max(widths[n], _width(value))
    return [min(60.0, max(6.0, w + 2)) for w in widths]


def _width(value: Cell) -> float:
    text = "" if value is None else str(value)
    return float(sum(2 if ord(c) > 0x2E7F else 1 for c in text))


# Downloads -------------------------------------------------------------------------------------


def attachment(filename: str, fallback: str | None = None) -> str:
    """A Content-Disposition header offering `filename` for download: an ASCII `filename` for
    old clients (`fallback`, or the name with other characters as `_`) and, when the name is
    not ASCII, the UTF-8 name as RFC 5987/6266 `filename*`."""
    plain = fallback or "".join(c if c.isascii() and c.isprintable() else "_" for c in filename)
    plain = plain.replace("\\", "_").replace('"', "_")
    header = f'attachment; filename="{plain}"'
    if plain != filename:
        header += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return header


# A snapshot as the supervisors' workbook -------------------------------------------------------

SUMMARY = "概况"
POINTS = "指标得分"
LIFT_COLUMN = "升级所需"
NOT_RATED = "不予评价"
"""The sheet of the closed institutions a snapshot lists as not rated (only when there are)."""
SUSPENDED_MARK = "（暂停办学）"
"""Added to a suspended institution's grade label: it is rated, and marked."""
"""The points sheet's last column: what lifts the institution to the next grade up."""
FINDINGS = "扣分记录"

POINT_COLUMNS = (
    "序号",
    "统一社会信用代码",
    "机构名称",
    "办学许可证号",
    "得分",
    "等级",
    "等级名称",
    "一票否决",
)
"""The points sheet's first columns; one column per indicator follows, headed by its annex
number and Chinese title ("12 教学管理…")."""

FINDING_COLUMNS = (
    "编号",
    "统一社会信用代码",
    "机构名称",
    "指标",
    "发生日期",
    "次数",
    "每次扣分",
    "扣分",
    "扣分计算",
    "该项实扣",
    "来源",
    "文号",
    "备注",
)
"""The findings sheet: each counted finding of an indicator that lost points (`扣分` is count ×
deduction, or the indicator's points when any finding takes them all; `该项实扣` what the
indicator lost in all, never more than its points), and each finding behind a veto."""

STATUS = {"published": "已公示", "draft": "草稿（未公示）"}


@dataclass(frozen=True)
class SnapshotExport:
    """A snapshot as sheets, ready to be written as XLSX or (its points sheet) CSV."""

    snapshot: Snapshot
    summary: Sheet
    points: Sheet
    findings: Sheet
    not_rated: Sheet | None = None  # closed institutions, listed with the reason

    @property
    def sheets(self) -> list[Sheet]:
        listed = [self.not_rated] if self.not_rated else []
        return [self.summary, self.points, self.findings, *listed]

    def xlsx(self) -> bytes:
        return xlsx_bytes(self.sheets, created=self.snapshot.published_at)

    def csv(self) -> bytes:
        """The points sheet: one row per institution, as in the workbook."""
        return csv_bytes(self.points.headers, self.points.rows)

    def filename(self, extension: str) -> str:
        s = self.snapshot
        return f"{s.year}年度学科类校外培训机构信用评价结果-第{s.revision}版.{extension}"

    def ascii_filename(self, extension: str) -> str:
        return f"credit-rating-{self.snapshot.year}-r{self.snapshot.revision}.{extension}"


def snapshot_export(
    conn: Connection, *, year: int, revision: int | None = None, rules: RuleSet | None = None
) -> SnapshotExport:
    """The year's published result (or revision `revision`, a draft included) as sheets.

    NotFound when the year has no published revision, or has no such revision. With `rules`
    whose values in force are the snapshot's own (same hash), the summary counts every grade of
    the scale, those no institution got included."""
    if revision is None:
        snap = published(conn, year=year)
        assert snap is not None
    else:
        snap = get(conn, year, revision)
    return shaped(snap, rows_of(conn, snap), bands=_bands(snap, rules))


def _bands(snap: Snapshot, rules: RuleSet | None) -> tuple[Band, ...] | None:
    """The snapshot's grade bands, when the rules in force are still the ones it was rated on."""
    if rules is None:
        return None
    try:
        force = rules.in_force(snap.year, snap.scale)
    except ScoringError:
        return None
    if force.content_hash != snap.rules_hash:
        return None
    return force.bands


def shaped(
    snap: Snapshot,
    rows: Sequence[dict[str, Any]],
    *,
    bands: Sequence[Band] | None = None,
) -> SnapshotExport:
    """The three sheets of a snapshot from its stored rows (in their stored order: best score
    first). `bands` (highest first) list grades no row has, and give each row what lifts it to
    the next grade (scoring.lift)."""
    explained = [snapshots.explained(snap, r) for r in rows]
    not_rated = json.loads(snap.not_rated or "[]")
    return SnapshotExport(
        snapshot=snap,
        summary=_summary(snap, explained, bands, not_rated=len(not_rated)),
        points=_points(rows, explained, bands),
        findings=_findings(explained),
        not_rated=Sheet(
            NOT_RATED,
            ("统一社会信用代码", "机构名称", "原因"),
            [[n["uscc"], n["name"], n["reason"]] for n in not_rated],
            widths=(22, 36, 60),
        )
        if not_rated
        else None,
    )


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def _summary(
    snap: Snapshot,
    explained: Sequence[Explanation],
    bands: Sequence[Band] | None,
    *,
    not_rated: int,
) -> Sheet:
    counts = Counter(e.grade for e in explained)
    labels = {b.grade: b.label for b in bands} if bands else {}
    for e in explained:
        labels.setdefault(e.grade, e.grade_label)
    order = [b.grade for b in bands] if bands else []
    order += sorted(g for g in labels if g not in order)
    rows: list[list[Cell]] = [
        ["评价年度", snap.year],
        ["版本", snap.revision],
        ["状态", STATUS.get(snap.status, snap.status)],
        ["公示时间（北京时间）", _when(snap.published_at)],
        ["公示人", snap.published_by or ""],
        ["更正的版本", snap.supersedes],
        ["更正原因", snap.reason or ""],
        ["等级划分", snap.scale],
        ["规则版本", snap.ruleset_version],
        ["规则哈希", snap.rules_hash],
        ["输入摘要", snap.input_digest],
        ["内容哈希", snap.content_hash],
        ["链哈希", snap.chain_hash or ""],
        ["机构总数", len(explained) + not_rated],
    ]
    if not_rated:
        rows.append(["不予评价（已注销）", not_rated])
    rows += [[f"等级 {g}（{labels[g]}）", counts.get(g, 0)] for g in order]
    return Sheet(SUMMARY, ("项目", "内容"), rows, widths=(22, 72))


def indicator_header(number: int, title: str) -> str:
    """A points column's header: the indicator's annex number and Chinese title."""
    return f"{number} {title}"


def _points(
    rows: Sequence[dict[str, Any]],
    explained: Sequence[Explanation],
    bands: Sequence[Band] | None,
) -> Sheet:
    indicators = sorted(
        {(i.number, i.title, i.code) for e in explained for i in e.indicators},
        key=lambda i: i[0],
    )
    headers = [*POINT_COLUMNS, *(indicator_header(n, t) for n, t, _ in indicators)]
    if bands:
        headers.append(LIFT_COLUMN)
    table: list[list[Cell]] = []
    for n, (row, e) in enumerate(zip(rows, explained, strict=True), start=1):
        points = json.loads(row["points"])
        table.append(
            [
                n,
                row["uscc"],
                row["name"],
                row["licence_no"],
                int(row["score"]),
                row["grade"],
                e.grade_label + (SUSPENDED_MARK if row.get("status") == "suspended" else ""),
                "；".join(v.title for v in e.vetoes),
                *(points.get(code) for _, _, code in indicators),
                *([_lift_text(lift(e, bands))] if bands else []),
            ]
        )
    widths = [6, 22, 36, 24, 8, 6, 10, 16, *([12] * len(indicators)), *([60] if bands else [])]
    return Sheet(POINTS, headers, table, widths=widths)


def _lift_text(lifted: Lift) -> str:
    """What lifts an institution, in one cell: the summary and the smallest sets."""
    sets = "；".join("、".join(r.finding_ids) for r in lifted.revocations)
    return lifted.summary + (f"可撤销：{sets}" if sets else "")


def _findings(explained: Sequence[Explanation]) -> Sheet:
    table: list[list[Cell]] = []
    for e in explained:
        for i in e.indicators:
            if i.lost <= 0:
                continue
            for f in i.findings:
                if i.mode == "per" and i.deduction is not None:
                    unit = _unit(i.unit)
                    amount, how = f.count * i.deduction, f"{f.count}{unit}×{i.deduction}分"
                    each: int | None = i.deduction
                else:
                    amount, how, each = i.points, "全扣", None
                table.append(
                    [
                        f.finding_id,
                        e.uscc,
                        e.name,
                        indicator_header(i.number, i.title),
                        _day(f.occurred_on),
                        f.count,
                        each,
                        amount,
                        how,
                        i.lost,
                        f.source,
                        f.reference,
                        f.note,
                    ]
                )
        for v in e.vetoes:
            for f in v.findings:
                table.append(
                    [
                        f.finding_id,
                        e.uscc,
                        e.name,
                        f"一票否决 {v.title}",
                        _day(f.occurred_on),
                        f.count,
                        None,
                        None,
                        "一票否决：等级为最低等级",
                        None,
                        f.source,
                        f.reference,
                        f.note,
                    ]
                )
    widths = [20, 22, 36, 40, 12, 6, 8, 6, 14, 8, 10, 28, 40]
    return Sheet(FINDINGS, FINDING_COLUMNS, table, widths=widths)


def _day(day: date) -> str:
    return day.isoformat()


def _unit(unit: str | None) -> str:
    return Unit(unit).chinese if unit else ""
