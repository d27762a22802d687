"""The public page's rows as files: CSV (UTF-8 with a BOM) and XLSX, exactly the rows the page
shows for the same query string, in the same order, with the same four columns.

Writing and formula neutralising are `service.ratings.exports`' (the one place that writes
spreadsheets); this module only says which columns and what the file is called.
"""

from __future__ import annotations

from service.api.public.view import View
from service.ratings.exports import CSV_TYPE, XLSX_TYPE, Sheet, attachment, csv_bytes, xlsx_bytes

HEADERS = ("机构名称", "统一社会信用代码", "信用等级", "等级说明")
TYPES = {"csv": CSV_TYPE, "xlsx": XLSX_TYPE}


def _rows(view: View) -> list[tuple[str, str, str, str]]:
    return [(e.name, e.uscc, e.grade, e.label) for e in view.rows]


def content(view: View, kind: str) -> bytes:
    """The file of `kind` (`csv` or `xlsx`) for the rows of `view`."""
    if kind == "csv":
        return csv_bytes(HEADERS, _rows(view))
    sheet = Sheet(title=f"{view.year}年度公示", headers=HEADERS, rows=_rows(view))
    return xlsx_bytes([sheet], created=view.published_at)


def disposition(view: View, kind: str) -> str:
    """`2024年度信用评价结果公示（第1版）.csv`, with an ASCII name for old clients."""
    name = f"{view.year}年度信用评价结果公示（第{view.revision}版）.{kind}"
    return attachment(name, f"credit-rating-{view.year}-r{view.revision}.{kind}")
