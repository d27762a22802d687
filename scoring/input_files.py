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

Reading costs bounded work whatever a file declares or contains (`scoring.limits.ReadLimits`:
rows, columns, a workbook's uncompressed size, JSON nesting): a file over a limit, a zip bomb,
XML with entities (parsed by defusedxml, never expanded), a damaged workbook, JSON nested
beyond Python's parser, a number too long to convert, each is one problem naming the file,
and the limit where there is one. A file read on behalf of someone else (an upload kept in a
temporary folder) is named by its own name in every message, never by where it was kept.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import openpyxl
import openpyxl.xml.functions
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._reader import WorkSheetParser
from openpyxl.xml.constants import SHEET_MAIN_NS

from scoring.errors import InputError, Problem
from scoring.i18n import N_, _
from scoring.inputs import ENGLISH_NAMES, Raw, RawColumns, validate
from scoring.limits import ReadLimits
from scoring.problems import ProblemList, raise_problems
from scoring.rules import RuleSet

EXTENSIONS = (".csv", ".json", ".xlsx", ".parquet")
"""The file types accepted, by extension (case-insensitive)."""

_BLOCK = 1 << 20  # bytes Arrow parses at a time
_COMMAS_PER_COLUMN = 64  # commas one CSV record may hold per column it may have (quoted too)

SAVE_AS_UTF8 = N_(
    "save it as UTF-8: in Excel 另存为 → “CSV UTF-8（逗号分隔）(*.csv)”, "
    "or convert it with `iconv -f GBK -t UTF-8 old.csv > new.csv`"
)
"""How to re-save a CSV as UTF-8 (an msgid: shown through `_()`)."""

Read = tuple[pd.DataFrame | None, ProblemList]
"""A raw frame (None when the file could not be read at all) and the problems reading it."""

DEFAULT_LIMITS = ReadLimits()


class _Refused(Exception):
    """A file that cannot be read, or is over a limit: what was expected of it."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def read_table(
    path: Path, limits: ReadLimits = DEFAULT_LIMITS, *, name: str | None = None
) -> pd.DataFrame:
    """The raw frame of one input file; InputError when it cannot be read."""
    frame, problems = read_raw(path, limits, name=name)
    raise_problems(problems)
    if frame is None:  # readers always say why there is no frame; this is a safety net
        file = str(path) if name is None else name
        raise InputError([Problem(file, None, None, None, _("a file that can be read"))])
    return frame


def read_inputs(
    institutions_path: Path,
    findings_path: Path,
    *,
    rules: RuleSet,
    keep: tuple[Collection[str] | None, Collection[str] | None] = (None, None),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and check both input files: normalised frames, or one InputError with every
    problem of both files (reading and content alike).

    `keep` names the columns of the institutions and of the findings to return (None: all).
    A Parquet or CSV file is then handed to the checks a column at a time (`read_columns`)
    and only the columns kept outlive their check, so a city's findings are never held whole
    beside the checks' temporaries; should a column fail to read, both files are read and
    checked again the usual way, so that the failure is reported as any unreadable file is.
    """

    def checked(
        read: Callable[[Path], tuple[Raw | None, ProblemList]],
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        institutions, institution_problems = read(institutions_path)
        findings, finding_problems = read(findings_path)
        return validate(
            institutions,
            findings,
            rules=rules,
            institutions_file=str(institutions_path),
            findings_file=str(findings_path),
            reading=(institution_problems, finding_problems),
            keep=keep,
        )

    if keep != (None, None):
        try:
            return checked(read_columns)
        except (pa.ArrowException, OSError):
            pass
    return checked(read_raw)


def read_columns(path: Path) -> tuple[Raw | None, ProblemList]:
    """`read_raw(path)`, but as `RawColumns` where that is the same table: a Parquet file of
    flat, uniquely named columns (and no stored pandas index), each column read when it is
    checked; a CSV file Arrow reads (named, unique columns, no ragged row), parsed once and
    each column handed out once, its few-valued columns (codes, dates, counts) held
    dictionary-encoded until then. Anything else is `read_raw`'s frame.

    With the default limits only (the command line's own files): a Parquet column that cannot
    be read raises `pa.ArrowException` when it is asked for (`read_inputs` then reads again).
    """
    if path.suffix.lower() == ".csv":
        try:
            return _read_csv_columns(path, str(path), DEFAULT_LIMITS, by_column=True)
        except (OSError, _Refused):
            return read_raw(path)  # says why, as for any file that cannot be read
    if path.suffix.lower() != ".parquet" or DEFAULT_LIMITS.max_decoded_bytes is not None:
        return read_raw(path)
    try:
        schema = pq.read_schema(path)
        handle = pq.ParquetFile(path)
    except (pa.ArrowException, ValueError, OSError):
        return read_raw(path)  # says why, as for any file that cannot be read
    stored = (schema.pandas_metadata or {}).get("index_columns", [])
    names = schema.names
    if (
        len(set(names)) < len(names)
        or any(not isinstance(index, dict) for index in stored)
        or any(pa.types.is_nested(field.type) for field in schema)
        or handle.metadata.num_columns > DEFAULT_LIMITS.max_columns
        or (
            DEFAULT_LIMITS.max_rows is not None
            and handle.metadata.num_rows > DEFAULT_LIMITS.max_rows
        )
    ):
        return read_raw(path)

    def read(position: int) -> pd.Series:  # a handle of its own: read on another thread too
        table = pq.ParquetFile(path).read(columns=[names[position]], use_pandas_metadata=True)
        frame = table.to_pandas(date_as_object=False)
        return frame.iloc[:, 0].reset_index(drop=True)

    rows = np.arange(1, handle.metadata.num_rows + 1)
    return RawColumns(names, rows, read), ProblemList()


def read_raw(path: Path, limits: ReadLimits = DEFAULT_LIMITS, *, name: str | None = None) -> Read:
    """The raw frame of `path` and the problems met reading it; never raises for bad input.

    Problems call the file `name` (an upload's own name) when given, else its path: nothing
    in them names where an upload was kept meanwhile. Reading costs bounded work whatever
    the file declares or contains (`limits`); a file over a limit is a problem naming it.
    """
    file = str(path) if name is None else name
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        return None, ProblemList([_unknown_extension(file, path.suffix)])
    try:
        return reader(path, file, limits)
    except OSError as exc:  # strerror only: str(exc) names the path
        return None, ProblemList.whole_file(
            file,
            _("a file that can be opened ({reason})").format(
                reason=exc.strerror or type(exc).__name__
            ),
        )
    except _Refused as refused:
        return None, ProblemList.whole_file(file, _scrub(refused.expected, path, file))


# CSV -------------------------------------------------------------------------------------


def _read_csv(path: Path, file: str, limits: ReadLimits) -> Read:
    """CSV with a header row, UTF-8 with or without BOM; every cell read as text.

    Arrow parses the file (fast, keeps quoted line breaks); when some row has more or fewer
    cells than the header, Python's csv module reads it again to name those rows exactly.
    """
    frame, problems = _read_csv_columns(path, file, limits)
    if isinstance(frame, RawColumns):  # only when asked for `by_column`
        raise TypeError(frame)
    return frame, problems


def _read_csv_columns(
    path: Path, file: str, limits: ReadLimits, *, by_column: bool = False
) -> tuple[Raw | None, ProblemList]:
    """`_read_csv`; with `by_column`, a file read by Arrow (every name given) as `RawColumns`
    handing out each column once and forgetting it once checked.

    The file's bytes are let go once checked (encoding, header) and Arrow parses the file
    itself, block by block: a city's 1.3 GB of findings is never held beside its columns.
    """
    data = path.read_bytes()
    if not _is_utf8(data):
        return None, ProblemList([_encoding_problem(file, data)])
    if not data or data.isspace():
        return None, ProblemList.whole_file(
            file, _("a header row naming the columns (the file is empty)")
        )
    _check_header_width(data, limits)
    ragged: list[Any] = []

    def skip(row: Any) -> str:
        ragged.append(row)  # Arrow ignores what a handler raises: checked once it is done
        return "skip"

    # Arrow splits big files into blocks at line breaks; only a quoted value can hold one, and
    # looking for them inside quotes halves the speed, so that is done only when needed.
    quoted_breaks = len(data) > _BLOCK and b'"' in data
    del data  # read again by the exact reader, should it be needed
    parse = pacsv.ParseOptions(
        newlines_in_values=quoted_breaks, ignore_empty_lines=False, invalid_row_handler=skip
    )
    try:
        read = pacsv.ReadOptions(block_size=_BLOCK)
        with pa.OSFile(str(path)) as source:
            names = pacsv.open_csv(source, read_options=read, parse_options=parse).schema.names
        kinds = {
            name: _CODED if by_column and _coded(name) else pa.large_string() for name in names
        }
        convert = pacsv.ConvertOptions(
            column_types=kinds, strings_can_be_null=False, quoted_strings_can_be_null=False
        )
        with pa.OSFile(str(path)) as source:
            table = pacsv.read_csv(
                source, read_options=read, parse_options=parse, convert_options=convert
            )
    except pa.ArrowInvalid:
        return _read_csv_exactly(path.read_bytes(), file, limits)
    for row in ragged:  # Arrow counted the cells of each ragged row without making them
        if row.actual_columns > _COMMAS_PER_COLUMN * limits.max_columns:  # as the exact reader
            raise _Refused(
                _too_wide(limits)
                + _("; a row has {cells:,} cells").format(cells=row.actual_columns)
            )
    _check_columns(len(names), limits)
    _check_rows(table.num_rows, limits)
    if ragged or len(set(names)) < len(names):
        return _read_csv_exactly(path.read_bytes(), file, limits)
    rows = np.arange(2, table.num_rows + 2)
    blank = np.ones(table.num_rows, dtype=bool)
    for column in table.columns:
        blank &= _empty_cells(column)
    if blank.any():
        table, rows = table.filter(pa.array(~blank)), rows[~blank]
    if by_column and all(str(name).strip() for name in names):  # no unnamed column to drop
        columns: list[pa.ChunkedArray | None] = list(table.columns)
        del table

        def hand_out(position: int) -> pd.Series:
            column = columns[position]
            if column is None:
                raise RuntimeError(f"column {position} was asked for after it was let go")
            return column.cast(pa.large_string()).to_pandas()  # coded ones decoded

        def forget(position: int) -> None:
            columns[position] = None

        return RawColumns(names, rows, hand_out, forget), ProblemList()
    frame = table.to_pandas()
    frame.index = rows
    return _drop_unnamed(frame, file), ProblemList()


_CODED = pa.dictionary(pa.int32(), pa.large_string())
"""How a column of few distinct values is parsed when read by column: each value once."""


def _coded(name: str) -> bool:
    """Whether the column `name` (either language) holds few distinct values: coded values,
    dates, counts (a city's findings: a fifth of their memory as text)."""
    shown = name.strip().lstrip("\ufeff").strip()
    return ENGLISH_NAMES.get(shown, shown) in (
        "indicator",
        "occurred_on",
        "count",
        "source",
        "status",
    )


def _empty_cells(column: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    """Which cells of a text column (plain or dictionary-encoded) are empty."""
    empty = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            lengths = pc.binary_length(chunk.dictionary).take(chunk.indices)
        else:
            lengths = pc.binary_length(chunk)
        empty.append(np.asarray(pc.equal(lengths, 0).to_numpy(zero_copy_only=False), dtype=bool))
    return np.concatenate(empty) if empty else np.zeros(0, dtype=bool)


def _check_header_width(data: bytes, limits: ReadLimits) -> None:
    """Refuse a header of more than max_columns names before any parser makes them objects:
    its commas outside quotes, counted on the bytes (a quoted line break in a header only
    makes the count larger)."""
    end = data.find(b"\n")
    line = data if end < 0 else data[:end]
    if line.count(b",") < limits.max_columns:
        return
    if b'"' in line:
        line = re.sub(rb'"[^"]*"', b"", line)
    if line.count(b",") + 1 > limits.max_columns:
        raise _Refused(
            _too_wide(limits)
            + _("; the header names {columns:,}").format(columns=line.count(b",") + 1)
        )


def _read_csv_exactly(data: bytes, file: str, limits: ReadLimits) -> Read:
    """The slow, exact reading: every record numbered as a spreadsheet shows it.

    A row with fewer cells than the header is padded with empty cells (some tools leave
    trailing empty cells out); a row with more non-empty cells than the header is a problem.
    The csv module builds a whole record before it can be counted, so the commas fed to it
    for one record are counted first: a record of millions of cells is refused before it
    becomes millions of strings (quoted commas count too, hence the generous bound).
    """
    problems = ProblemList()
    most = _COMMAS_PER_COLUMN * limits.max_columns
    commas = 0

    def lines() -> Iterator[str]:
        nonlocal commas
        for line in io.StringIO(data.decode("utf-8-sig"), newline=""):
            commas += line.count(",")
            if commas > most:
                raise _Refused(
                    _too_wide(limits) + _("; a row has more than {most:,} commas").format(most=most)
                )
            yield line

    records = csv.reader(lines())
    try:
        header = next(records, [])
        width = len(header)
        _check_columns(width, limits)
        rows: list[list[str]] = []
        numbers: list[int] = []
        commas = 0
        for number, record in enumerate(records, start=2):
            commas = 0
            _check_rows(number - 1, limits)
            if not any(record):
                continue
            if len(record) > width and any(record[width:]):
                problems.add(
                    Problem(
                        file,
                        number,
                        None,
                        None,
                        _(
                            "at most {width} cells, as many as the header row names "
                            "(this row has {cells})"
                        ).format(width=width, cells=len(record)),
                    ),
                )
                continue
            rows.append((record + [""] * width)[:width])
            numbers.append(number)
    except csv.Error as exc:
        line = records.line_num
        return None, ProblemList.whole_file(
            file, _("well-formed CSV (line {line}: {reason})").format(line=line, reason=exc)
        )
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
        guess = _("the file looks like UTF-16 (Excel's “Unicode text”)")
    elif _decodes(data, "gb18030"):
        guess = _("the file looks like GBK/GB18030 (what Excel saves on Chinese Windows)")
    else:
        guess = _("the file is in some other encoding")
    return Problem(
        file,
        None,
        None,
        None,
        _(
            "UTF-8 text, but byte {offset} (0x{byte:02X}, line {line}) is not UTF-8 "
            "and {guess}; {fix}"
        ).format(offset=offset, byte=data[offset], line=line, guess=guess, fix=_(SAVE_AS_UTF8)),
    )


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


# JSON ------------------------------------------------------------------------------------


def _read_json(path: Path, file: str, limits: ReadLimits) -> Read:
    """A JSON list of objects, one per row; values text, numbers or null (= empty).

    Nesting is limited (`max_json_depth`): Python's parser stops deep input with a
    RecursionError, which is reported as the limit, and anything nested within the parser's
    reach is measured without recursion. A number too long to convert (Python refuses
    integers of more than 4300 digits) is a problem too.
    """
    data = path.read_bytes()
    try:
        document = json.loads(data)
    except UnicodeDecodeError:
        return None, ProblemList([_encoding_problem(file, data)])
    except json.JSONDecodeError as exc:
        return None, ProblemList.whole_file(
            file,
            _("valid JSON (line {line}, column {column}: {reason})").format(
                line=exc.lineno, column=exc.colno, reason=exc.msg.lower()
            ),
        )
    except RecursionError:
        return None, ProblemList.whole_file(file, _too_deep(limits))
    except ValueError as exc:  # int() refuses numbers of more than sys.get_int_max_str_digits()
        return None, ProblemList.whole_file(
            file,
            _("JSON whose numbers can be read ({reason})").format(
                reason=str(exc).split(":")[0].lower()
            ),
        )
    if not isinstance(document, list):
        return None, ProblemList.whole_file(
            file, _('a JSON list of objects, one per row: [{{"uscc": …}}, …]').format()
        )
    _check_rows(len(document), limits)
    if any(_nesting(item) + 1 > limits.max_json_depth for item in document):
        return None, ProblemList.whole_file(file, _too_deep(limits))
    problems = ProblemList()
    names: dict[str, None] = {}
    rows: list[dict[str, str]] = []
    numbers: list[int] = []
    for number, item in enumerate(document, start=1):
        if not isinstance(item, dict):
            problems.add(
                Problem(file, number, None, None, _("an object {{…}} for each row").format())
            )
            continue
        names.update(dict.fromkeys(item))
        _check_columns(len(names), limits)
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
    problems.add(Problem(file, number, key, _shortened(text), _("text or a number")))
    return text


def _nesting(value: Any) -> int:
    """How deep lists and objects nest in `value` (a scalar: 0, `[]`: 1), without recursion;
    a row object costs one step per value, as only nested values are looked into."""
    if not isinstance(value, list | dict):
        return 0
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, list | dict))
    return deepest


def _too_deep(limits: ReadLimits) -> str:
    return _(
        "JSON nested at most {depth} levels deep (the max_json_depth limit; "
        "a file of rows needs 2: a list of objects)"
    ).format(depth=limits.max_json_depth)


def _shortened(text: str, length: int = 200) -> str:
    return text if len(text) <= length else text[:length] + "…"


# Excel -----------------------------------------------------------------------------------


_ROW_TAG = f"{{{SHEET_MAIN_NS}}}row"
_CELL_TAG = f"{{{SHEET_MAIN_NS}}}c"
EXCEL_ROWS = 1_048_576
"""The last row of an Excel sheet: row numbers beyond it are damage, not data."""
_MAX_ZIP_DIRECTORY = 1 << 20
"""Bytes of a workbook's zip directory (some 10,000 parts; a workbook has a few dozen)."""
_ELEMENTS_PER_CELL = 64
"""XML elements a row may hold per cell it may have (value, formula, rich-text runs)."""


def _read_xlsx(path: Path, file: str, limits: ReadLimits) -> Read:
    """The first sheet of an .xlsx workbook, header in row 1; cell values as text.

    Dates become ISO dates, whole numbers are written without ".0", formulas give their last
    computed value. What Excel shows is what is read: every row and cell in the sheet's XML,
    whatever its `<dimension>` element says (a stale one must not hide rows, a huge one must
    not cost work). The work is bounded whatever the file declares: the zip's declared
    uncompressed sizes against `max_workbook_bytes` before anything is opened (zipfile stops
    reading an entry at its declared size), cells per row against `max_columns` and rows
    against `max_rows` while the XML streams in. XML is parsed by defusedxml (entities off).
    """
    if not openpyxl.DEFUSEDXML:  # openpyxl parses with defusedxml only when it is installed
        raise _Refused(
            _("an .xlsx workbook, but workbooks cannot be read safely here (no defusedxml)")
        )
    with path.open("rb") as handle:
        _check_archive(handle, limits)
        handle.seek(0)
        try:
            workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
        except Exception as exc:  # whatever openpyxl meets in a damaged file
            raise _Refused(_damaged(exc)) from None
        try:
            header, table, numbers = _sheet_table(workbook, limits)
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


def _check_archive(handle: BinaryIO, limits: ReadLimits) -> None:
    """Refuse a file that is not a zip, whose directory is too big to list (zipfile makes an
    object of every entry), or whose parts declare more than max_workbook_bytes."""
    directory = _zip_directory_size(handle)
    if directory > _MAX_ZIP_DIRECTORY:
        raise _Refused(
            _(
                "an .xlsx workbook whose zip directory is at most {most:,} bytes "
                "(a workbook has a few dozen parts); this one's is {size:,}"
            ).format(most=_MAX_ZIP_DIRECTORY, size=directory)
        )
    try:
        with zipfile.ZipFile(handle) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise _Refused(_damaged(exc)) from None
    if declared > limits.max_workbook_bytes:
        raise _Refused(
            _(
                "an .xlsx workbook of at most {most:,} bytes uncompressed "
                "(the max_workbook_bytes limit); this one declares {size:,}"
            ).format(most=limits.max_workbook_bytes, size=declared)
        )


def _zip_directory_size(handle: BinaryIO) -> int:
    """The size of the zip's central directory as its end record gives it (0 without one:
    zipfile then says the file is not a zip)."""
    end = handle.seek(0, io.SEEK_END)
    start = max(0, end - 22 - 0xFFFF)  # the end record (22 bytes) and its comment
    handle.seek(start)
    tail = handle.read(end - start)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return 0
    return int.from_bytes(tail[at + 12 : at + 16], "little")


def _damaged(exc: BaseException) -> str:
    return _("an Excel .xlsx workbook; this file is not one or is damaged ({reason})").format(
        reason=f"{exc!s:.80}"
    )


def _sheet_table(workbook: Any, limits: ReadLimits) -> tuple[list[str], list[list[str]], list[int]]:
    """The header, the data rows with a cell, and their row numbers, of the first sheet."""
    header: list[str] = []
    table: list[list[str]] = []
    numbers: list[int] = []
    sheets = workbook.worksheets
    if not sheets:
        raise _Refused(_("an .xlsx workbook with a worksheet (this one has none)"))
    for number, values in _sheet_rows(sheets[0], limits):
        cells = [_cell_text(value) for value in values]
        if number == 1:
            header = cells
            continue
        while cells and not cells[-1] and len(cells) > len(header):
            cells.pop()
        if any(cells):
            table.append(cells)
            numbers.append(number)
    return header, table, numbers


def _sheet_rows(sheet: Any, limits: ReadLimits) -> Iterator[tuple[int, list[Any]]]:
    """(row number, cell values) of each row in the sheet's XML, streamed.

    openpyxl's read-only sheet pads every row to the declared dimension (or drops what lies
    outside it) and builds a whole row before anyone can count its cells; here the XML is
    streamed with defusedxml, cells are counted as they open, each finished row is parsed by
    openpyxl's own cell parser (shared strings, dates, booleans) and then dropped.
    """
    workbook = sheet.parent
    try:
        source = sheet._get_source()
    except Exception as exc:
        raise _Refused(_damaged(exc)) from None
    last = 0
    with source:
        parser = WorkSheetParser(
            source,
            sheet._shared_strings,
            data_only=True,
            epoch=workbook.epoch,
            date_formats=workbook._date_formats,
            timedelta_formats=workbook._timedelta_formats,
        )
        open_elements: list[Any] = []
        in_row = cells = elements = 0
        events = openpyxl.xml.functions.iterparse(source, events=("start", "end"))
        while True:
            try:
                event, element = next(events)
                if event == "start":
                    open_elements.append(element)
                    if element.tag == _ROW_TAG:
                        in_row, cells, elements = in_row + 1, 0, 0
                    elif in_row:
                        elements += 1
                        cells += element.tag == _CELL_TAG
                        if cells > limits.max_columns:
                            raise _Refused(_too_wide(limits))
                        if elements > _ELEMENTS_PER_CELL * limits.max_columns:
                            raise _Refused(
                                _(
                                    "at most {most:,} XML elements in a row ({each} per "
                                    "column of the max_columns limit)"
                                ).format(
                                    most=_ELEMENTS_PER_CELL * limits.max_columns,
                                    each=_ELEMENTS_PER_CELL,
                                )
                            )
                    continue
                open_elements.pop()
                row = None
                if element.tag == _ROW_TAG:
                    in_row -= 1
                    row = parser.parse_row(element)
                if not in_row and open_elements:  # done with it: keep memory flat
                    open_elements[-1].remove(element)
            except StopIteration:
                break
            except _Refused:
                raise
            except Exception as exc:  # whatever the XML or openpyxl's parser meets
                raise _Refused(_damaged(exc)) from None
            if row is None:
                continue
            number, found = row
            if number <= last or number > EXCEL_ROWS:
                raise _Refused(
                    _(
                        "rows numbered in increasing order from 1 to at most {most:,} "
                        "(row {row} comes after row {last})"
                    ).format(most=EXCEL_ROWS, row=number, last=last)
                )
            _check_rows(number - 1, limits)
            last = number
            width = max((cell["column"] for cell in found), default=0)
            if width > limits.max_columns:
                raise _Refused(_too_wide(limits, get_column_letter(min(width, 18_278))))
            values: list[Any] = [None] * width
            for cell in found:
                values[cell["column"] - 1] = cell["value"]
            yield number, values


def _too_wide(limits: ReadLimits, column: str | None = None) -> str:
    reaches = _("; a row reaches column {column}").format(column=column) if column else ""
    return (
        _("at most {most:,} columns (the max_columns limit)").format(most=limits.max_columns)
        + reaches
    )


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


def _read_parquet(path: Path, file: str, limits: ReadLimits) -> Read:
    """A Parquet file with its column types kept (dates as datetime64, counts as integers).

    Rows and columns are checked against the limits in the file's metadata, before reading.
    A small Parquet file can hold gigabytes once decoded (a long text repeated by dictionary
    and run-length encoding), so the decoded size is bounded by `max_decoded_bytes`:
    fixed-width columns from the schema before reading, text columns read dictionary-encoded
    and measured before they are decoded.
    """
    try:
        schema = pq.read_schema(path)
        metadata = pq.read_metadata(path)
        _check_columns(metadata.num_columns, limits)
        _check_rows(metadata.num_rows, limits)
        nested = [field.name for field in schema if pa.types.is_nested(field.type)]
        if nested:
            raise _Refused(
                _("a Parquet file of flat columns; {column} holds lists or records").format(
                    column=nested[0]
                )
            )
        if limits.max_decoded_bytes is None:  # the command line's own files: read at full speed
            table = pq.read_table(path)
        else:
            table = _read_parquet_within(path, schema, metadata.num_rows, limits)
    except (pa.ArrowException, ValueError) as exc:
        return None, ProblemList.whole_file(
            file, _("a Parquet file that can be read ({reason})").format(reason=type(exc).__name__)
        )
    frame = table.to_pandas(date_as_object=False)
    frame = frame.reset_index(drop=frame.index.names == [None])
    frame.index = np.arange(1, len(frame) + 1)
    return frame, ProblemList()


def _read_parquet_within(path: Path, schema: pa.Schema, rows: int, limits: ReadLimits) -> pa.Table:
    """The table, its decoded size checked first: fixed-width columns from the schema, text
    read dictionary-encoded and measured before it is decoded (slower than a plain read)."""
    texts = [field.name for field in schema if _is_text(field.type)]
    fixed = sum(field.type.bit_width // 8 for field in schema if _is_fixed_width(field.type))
    _check_decoded(rows * fixed, limits)
    table = pq.ParquetFile(path, read_dictionary=texts).read()
    _check_decoded(sum(_decoded_size(column) for column in table.columns), limits)
    for position, field in enumerate(schema):  # back to the types written, their size known
        if _is_text(field.type):
            table = table.set_column(position, field, table.column(position).cast(field.type))
    return table


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def _is_fixed_width(kind: pa.DataType) -> bool:
    try:
        return bool(kind.bit_width)
    except ValueError:  # not a fixed-width type
        return False


def _decoded_size(column: pa.ChunkedArray) -> int:
    """Bytes `column` takes once decoded: a dictionary's values counted once per use."""
    size = 0
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type) and _is_text(chunk.type.value_type):
            lengths = pc.binary_length(chunk.dictionary)
            used = pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
            size += used + 8 * len(chunk)  # the values and their offsets
        else:
            size += chunk.nbytes
    return size


def _check_decoded(size: int, limits: ReadLimits) -> None:
    if limits.max_decoded_bytes is not None and size > limits.max_decoded_bytes:
        raise _Refused(
            _(
                "a Parquet file of at most {most:,} bytes of data once "
                "decoded (the max_decoded_bytes limit); this one holds at least {size:,}"
            ).format(most=limits.max_decoded_bytes, size=size)
        )


# Shared ----------------------------------------------------------------------------------

_READERS: dict[str, Callable[[Path, str, ReadLimits], Read]] = {
    ".csv": _read_csv,
    ".json": _read_json,
    ".xlsx": _read_xlsx,
    ".parquet": _read_parquet,
}


def _check_rows(count: int, limits: ReadLimits) -> None:
    """Refuse a file over `max_rows` data rows (checked as they are read, where possible)."""
    if limits.max_rows is not None and count > limits.max_rows:
        raise _Refused(
            _("at most {most:,} data rows in one file (the max_rows limit); split the file").format(
                most=limits.max_rows
            )
        )


def _check_columns(count: int, limits: ReadLimits) -> None:
    if count > limits.max_columns:
        raise _Refused(_too_wide(limits) + _("; this file has {columns:,}").format(columns=count))


def _scrub(text: str, path: Path, file: str) -> str:
    """`text` with the path a file was read from replaced by the file's own name."""
    if file != str(path):
        for where in (str(path.resolve()), str(path), path.name):
            text = text.replace(where, file)
    return text


def _drop_unnamed(frame: pd.DataFrame, file: str) -> pd.DataFrame:
    """Drop unnamed columns with no data; name the others after their spreadsheet letter."""
    keep: list[int] = []
    names: list[str] = []
    for position, name in enumerate(frame.columns):
        label = str(name).strip()
        if not label:
            if not (frame.iloc[:, position] != "").any():
                continue
            label = _("(unnamed column {letter})").format(letter=get_column_letter(position + 1))
        keep.append(position)
        names.append(label)
    if len(keep) == len(frame.columns):
        return frame
    return frame.iloc[:, keep].set_axis(names, axis=1)


def _unknown_extension(file: str, suffix: str) -> Problem:
    accepted = ", ".join(EXTENSIONS)
    hint = _(" (save old .xls workbooks as .xlsx)") if suffix.lower() == ".xls" else ""
    found = f"'{suffix}'" if suffix else _("no extension")
    expected = _("a file ending in {accepted}, not {found}").format(accepted=accepted, found=found)
    return Problem(file, None, None, None, expected + hint)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
