"""Hostile and damaged input files (issue 9): each attack a probe found, reproduced, and what
happens now.

Files are made small and fast: a workbook is saved by openpyxl and one part of its zip is
rewritten (a stale or huge `<dimension>`, a DTD with entities, a row of countless cells), or
its central directory is patched to declare a huge size; limits are lowered rather than files
made big. Reading is tested on `scoring.input_files.read_table`; what an upload gets back is
tested over HTTP, on a live service with the default limits and on one with low limits.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, create_engine

from scoring.errors import InputError, Problem
from scoring.input_files import read_raw, read_table
from scoring.limits import ReadLimits
from scoring.shipped import SAMPLE_DIR, load_rules
from scoring.uscc import check_character
from service.api import keys
from service.api.keys import Role
from service.core.database import make_engine, writing
from service.core.errors import Conflict, TooLarge
from service.core.migrate import upgrade
from service.core.settings import Settings
from service.records.importing import import_files, import_uploads
from tests.conftest import Live
from tests.servers import running_service

SHEET = "xl/worksheets/sheet1.xml"
STRINGS = "xl/sharedStrings.xml"
PROBLEM = "application/problem+json"


def code(n: int) -> str:
    first17 = f"52120111MJ08{n:05d}"
    return first17 + check_character(first17)


def institution_rows(*numbers: int) -> list[list[Any]]:
    header: list[Any] = ["uscc", "name", "district_code", "licence_no"]
    return [header] + [[code(n), f"天津市西青区第{n}培训学校", 120111, f"L{n}"] for n in numbers]


def finding_rows(uscc: str, count: int, *, year: int = 2028) -> list[list[Any]]:
    header: list[Any] = ["uscc", "indicator", "occurred_on", "count", "note"]
    return [header] + [
        [uscc, "refunds_per_contract", f"{year}-03-{day:02d}", 1, f"第{day}次"]
        for day in range(1, count + 1)
    ]


def workbook(rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def rewrite(data: bytes, part: str, change: Callable[[str], str]) -> bytes:
    """The workbook with one part's XML changed (every other part copied as it was)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            content = old.read(info)
            if info.filename == part:
                changed = change(content.decode("utf-8"))
                assert changed != content.decode("utf-8"), f"{part} was not changed"
                content = changed.encode("utf-8")
            new.writestr(info.filename, content, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def declare_size(data: bytes, part: str, size: int) -> bytes:
    """The zip with `part`'s uncompressed size in the central directory patched to `size`."""
    patched = bytearray(data)
    at = patched.find(b"PK\x01\x02")
    while at != -1:
        length = int.from_bytes(patched[at + 28 : at + 30], "little")
        if patched[at + 46 : at + 46 + length] == part.encode():
            patched[at + 24 : at + 28] = size.to_bytes(4, "little")
            return bytes(patched)
        at = patched.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{part} not in the zip")


def with_doctype(xml: str, entity_use: tuple[str, str]) -> str:
    """`xml` with a billion-laughs DTD, and one text replaced by a reference to its top entity."""
    levels = ['<!ENTITY l0 "lollollollollollollollollollol">'] + [
        f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10)
    ]
    doctype = f"<!DOCTYPE lolz [{''.join(levels)}]>"
    declaration_end = xml.index("?>") + 2 if xml.startswith("<?xml") else 0
    xml = xml[:declaration_end] + doctype + xml[declaration_end:]
    old, new = entity_use
    return xml.replace(old, new, 1)


def dimension(ref: str) -> Callable[[str], str]:
    def change(xml: str) -> str:
        start = xml.index('<dimension ref="') + len('<dimension ref="')
        return xml[:start] + ref + xml[xml.index('"', start) :]

    return change


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


DEFAULTS = ReadLimits()


def refused(path: Path, limits: ReadLimits = DEFAULTS, *, name: str | None = None) -> Problem:
    """The one whole-file problem reading `path` gives."""
    with pytest.raises(InputError) as caught:
        read_table(path, limits, name=name)
    problem = only(caught.value.problems)
    assert problem.row is None
    return problem


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# Rows silently dropped: a stale <dimension> --------------------------------------------------


def test_a_stale_dimension_hides_no_rows(tmp_path: Path) -> None:
    rows = finding_rows(code(1), 3)
    path = write(tmp_path / "f.xlsx", rewrite(workbook(rows), SHEET, dimension("A1")))
    # the attack: openpyxl's read-only mode trusts the element and sees one cell
    sheet = openpyxl.load_workbook(path, read_only=True).worksheets[0]
    assert (sheet.max_row, sheet.max_column) == (1, 1)
    assert [row for row in sheet.iter_rows(values_only=True)] == [("uscc",)]
    # what Excel (and openpyxl's normal mode) shows is what is read
    raw = read_table(path)
    assert list(raw.columns) == rows[0]
    assert raw.index.tolist() == [2, 3, 4]
    assert raw["note"].tolist() == ["第1次", "第2次", "第3次"]
    assert raw["occurred_on"].tolist() == ["2028-03-01", "2028-03-02", "2028-03-03"]


def test_a_dimension_naming_fewer_columns_drops_no_cells(tmp_path: Path) -> None:
    rows = finding_rows(code(1), 2)
    path = write(tmp_path / "f.xlsx", rewrite(workbook(rows), SHEET, dimension("A1:B3")))
    raw = read_table(path)
    assert list(raw.columns) == rows[0]
    assert raw["count"].tolist() == ["1", "1"]


# Excel amplification: a huge dimension, countless cells, zip bombs -----------------------------


def test_a_huge_declared_dimension_costs_no_work(tmp_path: Path) -> None:
    rows = finding_rows(code(1), 2)
    data = rewrite(workbook(rows), SHEET, dimension("A1:XFD1048576"))
    assert len(data) < 10_000
    path = write(tmp_path / "f.xlsx", data)
    started = time.perf_counter()
    raw = read_table(path)
    assert time.perf_counter() - started < 5  # padded to the dimension it took ~49 CPU minutes
    assert list(raw.columns) == rows[0]
    assert raw.index.tolist() == [2, 3]


def test_a_cell_beyond_the_column_limit_is_a_problem(tmp_path: Path) -> None:
    header_end = '<c r="XFD1" t="inlineStr"><is><t>x</t></is></c></row>'
    far = rewrite(
        workbook(finding_rows(code(1), 1)), SHEET, lambda xml: xml.replace("</row>", header_end, 1)
    )
    problem = refused(write(tmp_path / "far.xlsx", far))
    assert "max_columns" in problem.expected and "1,000 columns" in problem.expected
    assert "column XFD" in problem.expected


def test_a_row_of_countless_cells_stops_at_the_column_limit(tmp_path: Path) -> None:
    countless = "<c/>" * 2_000_000  # 8 MB of XML, a few KB zipped, no r= so no column letter
    data = rewrite(
        workbook(finding_rows(code(1), 1)),
        SHEET,
        lambda xml: xml.replace("</row>", countless + "</row>", 1),
    )
    assert len(data) < 100_000
    started = time.perf_counter()
    problem = refused(write(tmp_path / "wide.xlsx", data), ReadLimits(max_columns=50))
    assert time.perf_counter() - started < 5
    assert "at most 50 columns (the max_columns limit)" in problem.expected


@pytest.mark.parametrize(
    ("row", "says"),
    [('<row r="2000000">', "at most 1,048,576"), ('<row r="1">', "row 1 comes after row 2")],
)
def test_rows_beyond_excel_or_out_of_order_are_damage(tmp_path: Path, row: str, says: str) -> None:
    data = rewrite(
        workbook(finding_rows(code(1), 2)), SHEET, lambda xml: xml.replace('<row r="3"', row, 1)
    )
    assert says in refused(write(tmp_path / "rows.xlsx", data)).expected


def test_a_part_declaring_a_huge_size_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    data = declare_size(workbook(finding_rows(code(1), 1)), SHEET, 4_000_000_000)
    problem = refused(write(tmp_path / "bomb.xlsx", data))
    assert "max_workbook_bytes" in problem.expected
    assert "536,870,912 bytes" in problem.expected and "declares 4,000,0" in problem.expected


def test_a_part_understating_its_size_is_read_no_further_than_declared(tmp_path: Path) -> None:
    """Why the declared sizes bound the work: zipfile stops at them (then the CRC fails)."""
    padding = "<!--" + " " * 5_000_000 + "-->"
    big = rewrite(
        workbook(finding_rows(code(1), 1)),
        SHEET,
        lambda xml: xml.replace("<sheetData>", padding + "<sheetData>", 1),
    )
    problem = refused(write(tmp_path / "liar.xlsx", declare_size(big, SHEET, 1000)))
    assert "damaged" in problem.expected


def test_a_zip_of_countless_parts_is_refused_before_it_is_listed(tmp_path: Path) -> None:
    data, good = io.BytesIO(), io.BytesIO(workbook(finding_rows(code(1), 1)))
    with zipfile.ZipFile(good) as old, zipfile.ZipFile(data, "w") as new:
        for info in old.infolist():
            new.writestr(info, old.read(info))
        for n in range(20_000):  # 20,000 empty parts: a 2 MB directory
            new.writestr(f"x/{n}", b"")
    problem = refused(write(tmp_path / "parts.xlsx", data.getvalue()))
    assert "zip directory is at most 1,048,576 bytes" in problem.expected


def test_a_highly_compressible_sheet_over_the_limit_is_refused(tmp_path: Path) -> None:
    padding = "<!--" + " " * 2_000_000 + "-->"  # 2 MB of XML, a few KB zipped
    data = rewrite(
        workbook(finding_rows(code(1), 1)),
        SHEET,
        lambda xml: xml.replace("<sheetData>", padding + "<sheetData>", 1),
    )
    assert len(data) < 50_000
    path = write(tmp_path / "bomb.xlsx", data)
    problem = refused(path, ReadLimits(max_workbook_bytes=1_000_000))
    assert "at most 1,000,000 bytes uncompressed (the max_workbook_bytes limit)" in problem.expected
    assert len(read_table(path)) == 1  # under the default limit it is an ordinary workbook


# 500 instead of a problem: damaged workbooks, entity expansion, deep JSON, long numbers ---------


def damaged_workbooks() -> dict[str, bytes]:
    good = workbook(finding_rows(code(1), 2))
    without_workbook = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as old, zipfile.ZipFile(without_workbook, "w") as new:
        for info in old.infolist():
            if info.filename != "xl/workbook.xml":
                new.writestr(info, old.read(info))
    return {
        "truncated": good[: len(good) // 2],
        "no workbook part": without_workbook.getvalue(),
        "sheet not XML": rewrite(good, SHEET, lambda xml: xml.replace("</sheetData>", "", 1)),
        "bad row number": rewrite(good, SHEET, lambda xml: xml.replace('<row r="2"', '<row r="x"')),
        "bad shared string": rewrite(
            good,
            SHEET,
            lambda xml: re.sub(
                r'<c r="A2" t="inlineStr">.*?</c>', '<c r="A2" t="s"><v>9</v></c>', xml
            ),
        ),
        "bad number": rewrite(
            good, SHEET, lambda xml: xml.replace('<c r="D2" t="n"><v>1</v>', '<c r="D2"><v>1x</v>')
        ),
        "not a zip": b"PK\x03\x04 not really",
    }


@pytest.mark.parametrize("damage", sorted(damaged_workbooks()))
def test_a_damaged_workbook_is_a_problem_naming_the_upload(tmp_path: Path, damage: str) -> None:
    path = write(tmp_path / "0.xlsx", damaged_workbooks()[damage])
    problem = refused(path, name="检查.xlsx")
    assert problem.file == "检查.xlsx"
    assert str(tmp_path) not in str(problem) and "0.xlsx" not in str(problem)
    assert "damaged" in problem.expected or "at most" in problem.expected


def with_shared_strings(data: bytes, *strings: str) -> bytes:
    """The workbook with a shared-strings part holding `strings` (openpyxl writes inline
    strings), and cell A2 made a reference to the first of them."""
    items = "".join(f"<si><t>{text}</t></si>" for text in strings)
    sst = (
        f'<sst xmlns="{MAIN_NS}" count="{len(strings)}" uniqueCount="{len(strings)}">{items}</sst>'
    )
    override = (
        '<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'
    )
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            content = old.read(info)
            if info.filename == "[Content_Types].xml":
                content = content.replace(b"</Types>", override.encode())
            new.writestr(info.filename, content, zipfile.ZIP_DEFLATED)
        new.writestr(STRINGS, sst, zipfile.ZIP_DEFLATED)
    return rewrite(
        out.getvalue(),
        SHEET,
        lambda xml: re.sub(r'<c r="A2" t="inlineStr">.*?</c>', '<c r="A2" t="s"><v>0</v></c>', xml),
    )


MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
LAUGHS = {
    "sheet DTD": (SHEET, ("<sheetData>", "<sheetData>")),
    "shared strings": (STRINGS, ("<t>placeholder</t>", "<t>&l9;</t>")),
    "inline string": (SHEET, ("</row>", '<c r="Z1" t="inlineStr"><is><t>&l9;</t></is></c></row>')),
}


def laughing(where: str) -> bytes:
    part, use = LAUGHS[where]
    good = with_shared_strings(workbook(finding_rows(code(1), 1)), "placeholder")
    return rewrite(good, part, lambda xml: with_doctype(xml, use))


def test_shared_strings_are_read(tmp_path: Path) -> None:
    good = with_shared_strings(workbook(finding_rows(code(1), 1)), "共享的文本")
    assert read_table(write(tmp_path / "s.xlsx", good))["uscc"].tolist() == ["共享的文本"]


@pytest.mark.parametrize("where", sorted(LAUGHS))
def test_entities_in_a_workbook_are_never_expanded(tmp_path: Path, where: str) -> None:
    started = time.perf_counter()
    problem = refused(write(tmp_path / "lol.xlsx", laughing(where)))
    assert time.perf_counter() - started < 5
    assert "damaged" in problem.expected
    assert openpyxl.DEFUSEDXML


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "text",
    [
        nested(100_000),  # deeper than Python's parser goes: it raises RecursionError
        nested(100),  # within the parser's reach, deeper than the limit
        json.dumps([{"uscc": json.loads(nested(80))}]),
    ],
    ids=["100000 deep", "100 deep", "a value 80 deep"],
)
def test_deeply_nested_json_is_a_problem_naming_the_limit(tmp_path: Path, text: str) -> None:
    problem = refused(write(tmp_path / "deep.json", text))
    assert "nested at most 64 levels deep (the max_json_depth limit" in problem.expected


def test_json_nested_within_the_limit_is_a_value_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "f.json", json.dumps([{"uscc": json.loads(nested(10))}]))
    with pytest.raises(InputError) as caught:
        read_table(path, ReadLimits(max_json_depth=12))
    assert (only(caught.value.problems).row, only(caught.value.problems).column) == (1, "uscc")
    assert "nested" in refused(path, ReadLimits(max_json_depth=11)).expected


def test_a_5000_digit_number_in_json_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "f.json", '[{"uscc": ' + "9" * 5000 + "}]")
    problem = refused(path)
    assert "numbers can be read" in problem.expected
    assert "9999" not in problem.expected


# Limits on rows and columns, in every format ---------------------------------------------------


def frame_rows(count: int, width: int = 4) -> list[dict[str, Any]]:
    return [{f"c{c}": f"{r}-{c}" for c in range(width)} for r in range(count)]


def written(tmp_path: Path, fmt: str, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / f"t.{fmt}"
    if fmt == "csv":
        lines = [",".join(rows[0])] + [",".join(row.values()) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "ragged.csv":
        lines = [",".join(rows[0])] + [",".join(row.values()) for row in rows]
        lines[1] += ","  # one ragged row: read by the exact reader
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif fmt == "xlsx":
        path.write_bytes(workbook([list(rows[0])] + [list(row.values()) for row in rows]))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


FORMATS = ["csv", "ragged.csv", "json", "xlsx", "parquet"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_rows_over_max_rows_are_a_problem_naming_the_limit(tmp_path: Path, fmt: str) -> None:
    path = written(tmp_path, fmt, frame_rows(4))
    problem = refused(path, ReadLimits(max_rows=3), name=f"upload.{fmt}")
    assert problem.file == f"upload.{fmt}"
    assert "at most 3 data rows in one file (the max_rows limit)" in problem.expected
    assert len(read_table(path, ReadLimits(max_rows=4))) == 4


@pytest.mark.parametrize("fmt", FORMATS)
def test_columns_over_max_columns_are_a_problem_naming_the_limit(tmp_path: Path, fmt: str) -> None:
    path = written(tmp_path, fmt, frame_rows(2, width=5))
    problem = refused(path, ReadLimits(max_columns=4))
    assert "at most 4 columns (the max_columns limit)" in problem.expected
    assert list(read_table(path, ReadLimits(max_columns=5)).columns)[-1] == "c4"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a," * 50 + "z\n1\n", "the header names 51"),
        ('"x,y",' * 50 + "z\n1\n", "at most 10 columns"),  # quoted commas are not columns
        ("uscc\n" + "ab," * 700 + "\n", "a row has 701 cells"),  # Arrow counts the cells
        # a row longer than Arrow's block: read by the csv module, which would build it whole
        ("uscc\n" + "ab," * 1_000_000 + "\n", "more than 640 commas"),
        ("uscc\n" + '"a\n",' * 1000 + "\n", "a row has 1,001 cells"),  # one record, many lines
    ],
    ids=["header", "quoted header", "row", "row over a block", "row of quoted line breaks"],
)
def test_a_csv_row_of_countless_cells_is_refused_before_it_is_built(
    tmp_path: Path, text: str, says: str
) -> None:
    problem = refused(write(tmp_path / "wide.csv", text), ReadLimits(max_columns=10))
    assert "at most 10 columns (the max_columns limit)" in problem.expected
    assert says in problem.expected


def test_a_parquet_file_decoding_to_more_than_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.parquet"
    text = pa.array(["天津" * 500] * 20_000)  # 60 MB of text once decoded, a few KB written
    pq.write_table(pa.table({"uscc": text, "n": pa.array([7] * 20_000)}), path)
    assert path.stat().st_size < 50_000
    problem = refused(path, ReadLimits(max_decoded_bytes=10_000_000))
    assert "10,000,000 bytes of data once decoded (the max_decoded_bytes" in problem.expected
    raw = read_table(path)  # the command line's own files have no such limit, types kept
    assert raw["uscc"].iloc[0] == "天津" * 500 and raw["n"].tolist()[:3] == [7, 7, 7]


def test_fixed_width_parquet_columns_are_counted_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "wide.parquet"
    pq.write_table(pa.table({f"c{n}": pa.array([0] * 10_000) for n in range(20)}), path)
    problem = refused(path, ReadLimits(max_decoded_bytes=1_000_000))  # 20 × 8 × 10,000 bytes
    assert "holds at least 1,600,000" in problem.expected


def test_a_parquet_file_with_a_column_named_twice_is_a_problem_not_a_crash(
    tmp_path: Path,
) -> None:
    path = tmp_path / "twice.parquet"
    table = pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"])], names=["uscc", "uscc"])
    pq.write_table(table, path)
    for limits in (ReadLimits(), ReadLimits(max_decoded_bytes=10_000_000)):  # CLI and upload
        frame, problems = read_raw(path, limits)  # it used to raise KeyError (a 500) on uploads
        if frame is None:
            [problem] = problems
            assert "Parquet file that can be read" in problem.expected
        else:  # read as it is: the checks of the contract then say "each column once"
            assert list(frame.columns) == ["uscc", "uscc"] and not problems


def test_a_nested_parquet_column_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"uscc": pa.array([["a"] * 1000])}), path)
    assert "flat columns; uscc holds lists" in refused(path).expected


def test_an_os_error_names_the_upload_not_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "0.csv"
    folder.mkdir()  # reading a directory: IsADirectoryError, whose str() names the path
    problem = refused(folder, name="机构.csv")
    assert problem.file == "机构.csv"
    assert str(tmp_path) not in str(problem) and "opened" in problem.expected


# Uploads: files and bytes, streamed ------------------------------------------------------------


class Endless(io.RawIOBase):
    """An upload that never ends; counts what was read of it."""

    def __init__(self) -> None:
        self.taken = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = len(buffer)
        buffer[:size] = b"a" * size
        self.taken += size
        return size


def test_an_endless_upload_stops_at_the_byte_limit() -> None:
    settings = Settings(max_upload_bytes=300_000)
    endless = Endless()
    engine = create_engine("sqlite://")
    started = time.perf_counter()
    with pytest.raises(TooLarge) as caught:
        import_uploads(
            engine,
            [("a.csv", io.BytesIO(b"x" * 200_000)), ("b.csv", endless)],  # type: ignore[list-item]
            rules=load_rules(),
            by="tests",
            settings=settings,
        )
    assert time.perf_counter() - started < 5
    assert endless.taken <= 100_001  # what was left of the limit, and one byte to see it end
    assert "max_upload_bytes" in str(caught.value) and "b.csv" in str(caught.value)


def test_more_files_than_max_upload_files_are_too_large() -> None:
    uploads = [(f"{n}.csv", io.BytesIO(b"uscc\n")) for n in range(4)]
    with pytest.raises(TooLarge, match=r"at most 3 files per import .*max_upload_files"):
        import_uploads(
            create_engine("sqlite://"),
            uploads,
            rules=load_rules(),
            by="tests",
            settings=Settings(max_upload_files=3),
        )


# A failed import: a short message, no SQL --------------------------------------------------------


def test_a_self_conflicting_import_names_the_rows_not_the_sql(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    people = write(tmp_path / "i.csv", rows_csv(institution_rows(1)))
    twice = finding_rows(code(1), 1) + finding_rows(code(1), 1)[1:]  # identical, no finding_id
    found = write(tmp_path / "f.csv", rows_csv(twice))
    with pytest.raises(Conflict) as caught, caplog.at_level("DEBUG"):
        import_files(engine, [people, found], rules=load_rules(), by="tests", names=["i", "f"])
    message = str(caught.value)
    assert "f row 2 and f row 3" in message and "finding_id" in message
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    for said in (message, caplog.text):
        assert "INSERT" not in said and "parameters" not in said and "SQL" not in said


def rows_csv(rows: list[list[Any]]) -> str:
    return "".join(",".join(str(cell) for cell in row) + "\n" for row in rows)


# On the command line ----------------------------------------------------------------------------


def test_hostile_files_on_the_command_line_exit_1_with_one_report(tmp_path: Path) -> None:
    """Run as a real process: each file's problem is listed, status 1, no traceback."""
    files = {
        "deep.json": nested(100_000).encode(),
        "digits.json": b'[{"uscc": ' + b"9" * 5000 + b"}]",
        "lol.xlsx": laughing("inline string"),
        "bomb.xlsx": declare_size(workbook(finding_rows(code(1), 1)), SHEET, 4_000_000_000),
        "broken.xlsx": damaged_workbooks()["sheet not XML"],
    }
    paths = [str(write(tmp_path / name, data)) for name, data in files.items()]
    env = {**os.environ, "CREDIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "import", *paths],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
    assert "5 problem(s)" in result.stderr
    for path, says in zip(
        paths,
        ["max_json_depth", "numbers can be read", "damaged", "max_workbook_bytes", "damaged"],
        strict=True,
    ):
        assert f"{path}; expected" in result.stderr and says in result.stderr


# Over HTTP -------------------------------------------------------------------------------------


@pytest.fixture
def http(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, timeout=120) as client:
        yield client


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert "/tmp" not in response.text and "tmp" not in json.dumps(body.get("errors"))
    return body


def upload(name: str, data: bytes) -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (name, data, "application/octet-stream"))


def test_a_stale_dimension_imports_every_finding_over_http(live: Live, http: httpx.Client) -> None:
    people = upload("机构.xlsx", rewrite(workbook(institution_rows(11)), SHEET, dimension("A1")))
    found = upload(
        "发现.xlsx", rewrite(workbook(finding_rows(code(11), 3)), SHEET, dimension("A1:A1"))
    )
    response = http.post("/v1/imports", headers=live.as_("supervisor"), files=[people, found])
    assert response.status_code == 200, response.text
    assert response.json()["institutions_added"] == 1
    assert response.json()["findings_added"] == 3


def hostile_uploads() -> dict[str, tuple[str, bytes, str]]:
    """Name, content, and what the problem says, of each upload that used to get a 500."""
    damaged = damaged_workbooks()
    return {
        "malformed xlsx": ("坏.xlsx", damaged["sheet not XML"], "damaged"),
        "truncated xlsx": ("半.xlsx", damaged["truncated"], "damaged"),
        "billion laughs (sheet)": ("笑.xlsx", laughing("inline string"), "damaged"),
        "billion laughs (shared strings)": ("笑2.xlsx", laughing("shared strings"), "damaged"),
        "zip bomb": (
            "炸.xlsx",
            declare_size(workbook(finding_rows(code(12), 1)), SHEET, 4_000_000_000),
            "max_workbook_bytes",
        ),
        "deep json": ("深.json", nested(100_000).encode(), "max_json_depth"),
        "5000 digits": ("长.json", b'[{"uscc": ' + b"9" * 5000 + b"}]", "numbers can be read"),
    }


@pytest.mark.parametrize("attack", sorted(hostile_uploads()))
def test_hostile_uploads_are_problems_naming_the_upload(
    live: Live, http: httpx.Client, attack: str
) -> None:
    name, data, says = hostile_uploads()[attack]
    body = problem(
        http.post("/v1/imports", headers=live.as_("supervisor"), files=[upload(name, data)]), 422
    )
    [error] = body["errors"]
    assert error["file"] == name
    assert says in error["expected"]


def test_more_files_than_the_limit_are_413_over_http(live: Live, http: httpx.Client) -> None:
    files = [upload(f"{n}.csv", b"uscc\n") for n in range(21)]
    body = problem(http.post("/v1/imports", headers=live.as_("supervisor"), files=files), 413)
    assert "at most 20 files per import" in body["detail"] and "max_upload_files" in body["detail"]


def test_a_self_conflicting_import_is_409_without_sql(live: Live, http: httpx.Client) -> None:
    twice = finding_rows(code(13), 1) + finding_rows(code(13), 1)[1:]
    files = [
        upload("机构.csv", rows_csv(institution_rows(13)).encode()),
        upload("重复.csv", rows_csv(twice).encode()),
    ]
    body = problem(http.post("/v1/imports", headers=live.as_("supervisor"), files=files), 409)
    assert "重复.csv row 2 and 重复.csv row 3" in body["detail"]
    assert "INSERT" not in body["detail"] and "parameters" not in body["detail"]
    missing = http.get(f"/v1/institutions/{code(13)}", headers=live.as_("analyst"))
    assert missing.status_code == 404  # nothing was stored


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A live service (SQLite) with low upload limits: its base URL and a supervisor's header."""
    url = f"sqlite:///{tmp_path_factory.mktemp('tight') / 'credit-rating.db'}"
    engine = make_engine(url)
    upgrade(engine)
    import_files(
        engine,
        [SAMPLE_DIR / "institutions.csv", SAMPLE_DIR / "findings.csv"],
        rules=load_rules(),
        by="tests",
    )
    with writing(engine) as conn:
        key = keys.create(conn, role=Role.SUPERVISOR, name="tight supervisor")
    engine.dispose()
    limits = {"CREDIT_MAX_UPLOAD_BYTES": "65536", "CREDIT_MAX_ROWS": "3"}
    with running_service(url, extra_env=limits) as base:
        yield base, {"X-API-Key": key}


def test_uploads_over_max_upload_bytes_are_413(tight: tuple[str, dict[str, str]]) -> None:
    base, supervisor = tight
    files = [upload("a.csv", b"uscc\n" + b"x" * 40_000), upload("b.csv", b"uscc\n" + b"y" * 40_000)]
    body = problem(httpx.post(f"{base}/v1/imports", headers=supervisor, files=files), 413)
    # the request guard (service.api.guard) stops the body first; import_uploads' own count
    # (test_an_endless_upload_stops_at_the_byte_limit) is the same limit for any other caller
    assert "max_upload_bytes" in body["detail"]


def test_rows_over_max_rows_are_a_problem_over_http(tight: tuple[str, dict[str, str]]) -> None:
    base, supervisor = tight
    files = [upload("多.csv", rows_csv(finding_rows(code(14), 4)).encode())]
    body = problem(httpx.post(f"{base}/v1/imports", headers=supervisor, files=files), 422)
    [error] = body["errors"]
    assert error["file"] == "多.csv" and "(the max_rows limit)" in error["expected"]
