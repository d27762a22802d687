"""Reading input files (CSV, JSON, .xlsx, Parquet) into the raw frames `scoring.inputs` checks.

Supervisors send what their tools write: a CSV saved from Excel (on Chinese Windows often GBK,
not UTF-8), an .xlsx workbook, JSON from another system, Parquet from analysts. Whatever the
format, a file that cannot be read becomes a Problem that names the file and says how to fix
it, never a traceback, and text (Chinese names, full-width punctuation) arrives unchanged.
Nothing in a message is ever decoded with a guessed encoding, so it never shows mangled text.

A raw frame has one row per data row and its index holds the row number a person would look
for: the spreadsheet row for CSV and .xlsx (header = row 1, so the first data row is 2), the
1-based position in the list for JSON and in the file for Parquet. Cells are text, "" when
empty, except in Parquet, whose column types are kept (`scoring.inputs` checks them as they
are). Rows with every cell empty, and unnamed columns with every cell empty (trailing commas,
formatted but unused spreadsheet cells), are dropped; an unnamed column with data is named
"(unnamed column F)" so validation reports it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException

from scoring.errors import InputError, Problem
from scoring.inputs import validate
from scoring.problems import ProblemList, raise_problems
from scoring.rules import RuleSet

EXTENSIONS = (".csv", ".json", ".xlsx", ".parquet")
"""The file types accepted, by extension (case-insensitive)."""

_BLOCK = 1 << 20  # bytes Arrow parses at a time

SAVE_AS_UTF8 = (
    "save it as UTF-8: in Excel 另存为 → “CSV UTF-8（逗号分隔）(*.csv)”, "
    "or convert it with `iconv -f GBK -t UTF-8 old.csv > new.csv`"
)

Read = tuple[pd.DataFrame | None, ProblemList]
"""A raw frame (None when the file could not be read at all) and the problems reading it."""


def read_table(path: Path) -> pd.DataFrame:
    """The raw frame of one input file; InputError when it cannot be read."""
    frame, problems = read_raw(path)
    raise_problems(problems)
    if frame is None:  # readers always say why there is no frame; this is a safety net
        raise InputError([Problem(str(path), None, None, None, "a file that can be read")])
    return frame


def read_inputs(
    institutions_path: Path, findings_path: Path, *, rules: RuleSet
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and check both input files: normalised frames, or one InputError with every
    problem of both files (reading and content alike)."""
    institutions, institution_problems = read_raw(institutions_path)
    findings, finding_problems = read_raw(findings_path)
    return validate(
        institutions,
        findings,
        rules=rules,
        institutions_file=str(institutions_path),
        findings_file=str(findings_path),
        reading=(institution_problems, finding_problems),
    )


def read_raw(path: Path) -> Read:
    """The raw frame of `path` and the problems met reading it; never raises for bad input."""
    file = str(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        return None, ProblemList([_unknown_extension(file, path.suffix)])
    try:
        return reader(path, file)
    except OSError as exc:
        return None, ProblemList.whole_file(
            file, f"a file that can be opened ({exc.strerror or exc})"
        )


# CSV -------------------------------------------------------------------------------------


def _read_csv(path: Path, file: str) -> Read:
    """CSV with a header row, UTF-8 with or without BOM; every cell read as text.

    Arrow parses the file (fast, keeps quoted line breaks); when some row has more or fewer
    cells than the header, Python's csv module reads it again to name those rows exactly.
    """
    data = path.read_bytes()
    if not _is_utf8(data):
        return None, ProblemList([_encoding_problem(file, data)])
    if not data or data.isspace():
        return None, ProblemList.whole_file(
            file, "a header row naming the columns (the file is empty)"
        )
    ragged: list[object] = []

    def skip(row: object) -> str:
        ragged.append(row)
        return "skip"

    # Arrow splits big files into blocks at line breaks; only a quoted value can hold one, and
    # looking for them inside quotes halves the speed, so that is done only when needed.
    quoted_breaks = len(data) > _BLOCK and b'"' in data
    parse = pacsv.ParseOptions(
        newlines_in_values=quoted_breaks, ignore_empty_lines=False, invalid_row_handler=skip
    )
    try:
        read = pacsv.ReadOptions(block_size=_BLOCK)
        names = pacsv.open_csv(
            pa.BufferReader(data), read_options=read, parse_options=parse
        ).schema.names
        convert = pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.large_string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        table = pacsv.read_csv(
            pa.BufferReader(data), read_options=read, parse_options=parse, convert_options=convert
        )
    except pa.ArrowInvalid:
        return _read_csv_exactly(data, file)
    if ragged or len(set(names)) < len(names):
        return _read_csv_exactly(data, file)
    rows = np.arange(2, table.num_rows + 2)
    blank = np.ones(table.num_rows, dtype=bool)
    for column in table.columns:
        blank &= np.asarray(pc.equal(pc.binary_length(column), 0).to_numpy(), dtype=bool)
    if blank.any():
        table, rows = table.filter(pa.array(~blank)), rows[~blank]
    frame = table.to_pandas()
    frame.index = rows
    return _drop_unnamed(frame, file), ProblemList()


def _read_csv_exactly(data: bytes, file: str) -> Read:
    """The slow, exact reading: every record numbered as a spreadsheet shows it.

    A row with fewer cells than the header is padded with empty cells (some tools leave
    trailing empty cells out); a row with more non-empty cells than the header is a problem.
    """
    problems = ProblemList()
    records = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    try:
        header = next(records, [])
        width = len(header)
        rows: list[list[str]] = []
        numbers: list[int] = []
        for number, record in enumerate(records, start=2):
            if not any(record):
                continue
            if len(record) > width and any(record[width:]):
                problems.add(
                    Problem(
                        file,
                        number,
                        None,
                        None,
                        f"at most {width} cells, as many as the header row names "
                        f"(this row has {len(record)})",
                    ),
                )
                continue
            rows.append((record + [""] * width)[:width])
            numbers.append(number)
    except csv.Error as exc:
        line = records.line_num
        return None, ProblemList.whole_file(file, f"well-formed CSV (line {line}: {exc})")
    frame = pd.DataFrame(rows, columns=header, index=numbers, dtype="str")
    if not rows:
        frame = pd.DataFrame({name: pd.Series([], dtype="str") for name in header})
    return _drop_unnamed(frame, file), problems


def _is_utf8(data: bytes) -> bool:
    """Strict UTF-8 check of the whole file, by Arrow, without making a Python string."""
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    text = pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data))
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _encoding_problem(file: str, data: bytes) -> Problem:
    """Where the first byte that is not UTF-8 is, what the encoding looks like, how to fix it."""
    try:
        data.decode("utf-8")
        offset = 0
    except UnicodeDecodeError as exc:
        offset = exc.start
    line = data.count(b"\n", 0, offset) + 1
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        guess = "the file looks like UTF-16 (Excel's “Unicode text”)"
    elif _decodes(data, "gb18030"):
        guess = "the file looks like GBK/GB18030 (what Excel saves on Chinese Windows)"
    else:
        guess = "the file is in some other encoding"
    return Problem(
        file,
        None,
        None,
        None,
        f"UTF-8 text, but byte {offset} (0x{data[offset]:02X}, line {line}) is not UTF-8 "
        f"and {guess}; {SAVE_AS_UTF8}",
    )


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


# JSON ------------------------------------------------------------------------------------


def _read_json(path: Path, file: str) -> Read:
    """A JSON list of objects, one per row; values text, numbers or null (= empty)."""
    data = path.read_bytes()
    try:
        document = json.loads(data)
    except UnicodeDecodeError:
        return None, ProblemList([_encoding_problem(file, data)])
    except json.JSONDecodeError as exc:
        return None, ProblemList.whole_file(
            file, f"valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg.lower()})"
        )
    if not isinstance(document, list):
        return None, ProblemList.whole_file(
            file, 'a JSON list of objects, one per row: [{"uscc": …}, …]'
        )
    problems = ProblemList()
    names: dict[str, None] = {}
    rows: list[dict[str, str]] = []
    numbers: list[int] = []
    for number, item in enumerate(document, start=1):
        if not isinstance(item, dict):
            problems.add(Problem(file, number, None, None, "an object {…} for each row"))
            continue
        names.update(dict.fromkeys(item))
        rows.append(
            {key: _json_text(file, number, key, value, problems) for key, value in item.items()}
        )
        numbers.append(number)
    columns = {name: [row.get(name, "") for row in rows] for name in names}
    frame = pd.DataFrame(columns, index=numbers, dtype="str")
    return frame, problems


def _json_text(file: str, number: int, key: str, value: Any, problems: ProblemList) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number_text(value)
    text = json.dumps(value, ensure_ascii=False)
    problems.add(Problem(file, number, key, text, "text or a number"))
    return text


# Excel -----------------------------------------------------------------------------------


def _read_xlsx(path: Path, file: str) -> Read:
    """The first sheet of an .xlsx workbook, header in row 1; cell values as text.

    Dates become ISO dates, whole numbers are written without ".0", formulas give their last
    computed value.
    """
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        return None, ProblemList.whole_file(
            file, f"an Excel .xlsx workbook; this file is not one or is damaged ({exc!s:.80})"
        )
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header = [_cell_text(value) for value in next(rows, ())]
        table, numbers = _xlsx_rows(rows, len(header))
    finally:
        workbook.close()
    width = max((len(row) for row in table), default=len(header))
    header += [""] * (width - len(header))
    frame = pd.DataFrame(
        [row + [""] * (width - len(row)) for row in table],
        columns=header,
        index=numbers,
        dtype="str",
    )
    if not table:
        frame = pd.DataFrame({name: pd.Series([], dtype="str") for name in header})
    return _drop_unnamed(frame, file), ProblemList()


def _xlsx_rows(rows: Iterator[tuple[Any, ...]], width: int) -> tuple[list[list[str]], list[int]]:
    table: list[list[str]] = []
    numbers: list[int] = []
    for number, values in enumerate(rows, start=2):
        cells = [_cell_text(value) for value in values]
        while cells and not cells[-1] and len(cells) > width:
            cells.pop()
        if any(cells):
            table.append(cells)
            numbers.append(number)
    return table, numbers


def _cell_text(value: Any) -> str:
    """A cell as text: dates as ISO dates, whole numbers without ".0", empty as ""."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return _number_text(value)
    return str(value)


# Parquet ---------------------------------------------------------------------------------


def _read_parquet(path: Path, file: str) -> Read:
    """A Parquet file with its column types kept (dates as datetime64, counts as integers)."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, ValueError) as exc:
        return None, ProblemList.whole_file(
            file, f"a Parquet file that can be read ({type(exc).__name__})"
        )
    frame = table.to_pandas(date_as_object=False)
    frame = frame.reset_index(drop=frame.index.names == [None])
    frame.index = np.arange(1, len(frame) + 1)
    return frame, ProblemList()


# Shared ----------------------------------------------------------------------------------

_READERS: dict[str, Callable[[Path, str], Read]] = {
    ".csv": _read_csv,
    ".json": _read_json,
    ".xlsx": _read_xlsx,
    ".parquet": _read_parquet,
}


def _drop_unnamed(frame: pd.DataFrame, file: str) -> pd.DataFrame:
    """Drop unnamed columns with no data; name the others after their spreadsheet letter."""
    keep: list[int] = []
    names: list[str] = []
    for position, name in enumerate(frame.columns):
        label = str(name).strip()
        if not label:
            if not (frame.iloc[:, position] != "").any():
                continue
            label = f"(unnamed column {get_column_letter(position + 1)})"
        keep.append(position)
        names.append(label)
    if len(keep) == len(frame.columns):
        return frame
    return frame.iloc[:, keep].set_axis(names, axis=1)


def _unknown_extension(file: str, suffix: str) -> Problem:
    accepted = ", ".join(EXTENSIONS)
    hint = " (save old .xls workbooks as .xlsx)" if suffix.lower() == ".xls" else ""
    found = f"'{suffix}'" if suffix else "no extension"
    return Problem(file, None, None, None, f"a file ending in {accepted}, not {found}{hint}")


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
