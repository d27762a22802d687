"""Checking and normalising the two input tables (docs/measure.md, "Input data") before any rating.

Nothing may be rated from input with errors, and a supervisor fixing a file wants every
problem at once, each located by file, row, column and value with what was expected. So the
checks here never stop at the first problem: `validate` runs all of them on both tables and
raises one `InputError` listing everything found.

Raw frames come from `scoring.input_files` (or any caller): one row per data row, the index holding
the row number a person would look for (spreadsheet row, header = row 1; 1-based position for
JSON and Parquet). Cells are text with "" for empty, or already typed (Parquet: dates as
datetime64, counts as integers); typed columns are checked in their type, never turned into
text first.

Speed: a district has dozens of rows, a national benchmark ten million findings, so every
check is vectorised (pandas, Arrow compute, numpy over the bytes of credit codes): dates and
counts are dictionary-encoded and only their few distinct values parsed, credit codes are
matched against the institution list by exact integer keys, and rows are looked at one by
one only to build the Problems of bad rows, at most `MAX_PROBLEMS` of those per check.
Surrounding spaces in code-like cells are forgiven (stripped), checked only on cells that
fail, so clean columns pass through without a copy.

Report cap: a file with a wrong column in a million rows would otherwise list a million
lines. Each table's report and the combined report list at most `MAX_PROBLEMS` problems:
whole-file problems (columns) first, then bad cells by row. The count of everything found is
kept in `ProblemList.total` and `InputError.total`, and the message ends with
"… and N more".
"""

from __future__ import annotations

import calendar
import difflib
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring import uscc as credit_code
from scoring.errors import InputError, Problem
from scoring.i18n import _
from scoring.problems import MAX_PROBLEMS, ProblemList, raise_problems
from scoring.rules import RuleSet
from scoring.text_columns import duplicated as duplicated_text
from scoring.uscc_columns import listed, organisation_valid, registered_in
from scoring.uscc_columns import valid as valid_code

"""At most this many problems are listed per table and per report; the rest are counted."""

MAX_COUNT = 1_000_000
"""Largest `count` accepted: no finding has a million person-times, a larger number is a typo."""

ROW_ID = "#{row}"
"""Default `finding_id` of a finding without one: its row number, e.g. "#12"."""

DATE_DTYPE = "datetime64[us]"
"""dtype of `occurred_on` in normalised findings (pandas' own default resolution)."""


class InstitutionStatus(StrEnum):
    """Closed institutions are listed as not rated; suspended ones are rated and marked."""

    operating = "operating"
    suspended = "suspended"
    closed = "closed"


class FindingSource(StrEnum):
    """Where a finding came from."""

    inspection = "inspection"
    complaint = "complaint"
    penalty = "penalty"
    self_report = "self_report"
    platform = "platform"
    other = "other"


class FindingStatus(StrEnum):
    """A revoked finding (overturned on objection or review) stays on record, not counted."""

    active = "active"
    revoked = "revoked"


INSTITUTION_STATUSES = tuple(s.value for s in InstitutionStatus)
FINDING_SOURCES = tuple(s.value for s in FindingSource)
FINDING_STATUSES = tuple(s.value for s in FindingStatus)


@dataclass(frozen=True)
class Columns:
    """The columns of one input table.

    `optional` maps each optional column to the value an empty (or absent) cell takes, written
    as a cell would hold it. `order` is the column order of the normalised frame.
    """

    required: tuple[str, ...]
    optional: Mapping[str, str]
    order: tuple[str, ...]


INSTITUTION_COLUMNS = Columns(
    required=("uscc", "name", "district_code", "licence_no"),
    optional={"address": "", "status": InstitutionStatus.operating.value},
    order=("uscc", "name", "district_code", "licence_no", "address", "status"),
)
FINDING_COLUMNS = Columns(
    required=("uscc", "indicator", "occurred_on"),
    optional={
        "finding_id": ROW_ID,
        "count": "1",
        "source": FindingSource.other.value,
        "reference": "",
        "status": FindingStatus.active.value,
        "note": "",
    },
    order=(
        "finding_id",
        "uscc",
        "indicator",
        "occurred_on",
        "count",
        "source",
        "reference",
        "status",
        "note",
    ),
)

CHINESE_NAMES: Mapping[str, str] = {
    "uscc": "统一社会信用代码",
    "name": "机构名称",
    "district_code": "区划代码",
    "licence_no": "办学许可证号",
    "address": "地址",
    "status": "状态",
    "indicator": "指标",
    "occurred_on": "发生日期",
    "count": "次数",
    "source": "来源",
    "reference": "文号",
    "finding_id": "编号",
    "note": "备注",
    "task_id": "任务编号",
    "inspected_on": "检查日期",
    "result": "检查结果",
}
"""The Chinese name of every field of every input table (docs/inputs.md): a header row may
use these instead of the English names, one language per header row."""

ENGLISH_NAMES: Mapping[str, str] = {chinese: name for name, chinese in CHINESE_NAMES.items()}

# Near misses a supervisor may type; used only to suggest the right name, never accepted.
_HEADER_HINTS = {
    "信用代码": "uscc",
    "社会信用代码": "uscc",
    "名称": "name",
    "机构": "name",
    "行政区划代码": "district_code",
    "区划": "district_code",
    "办学许可证编号": "licence_no",
    "许可证号": "licence_no",
    "日期": "occurred_on",
    "数量": "count",
    "序号": "finding_id",
}

CHINESE_VALUES: Mapping[str, Mapping[str, str]] = {
    "institution_status": {"正常": "operating", "暂停": "suspended", "注销": "closed"},
    "finding_status": {"有效": "active", "撤销": "revoked"},
    "source": {
        "检查": "inspection",
        "投诉": "complaint",
        "处罚": "penalty",
        "自查": "self_report",
        "平台": "platform",
        "其他": "other",
    },
}
"""Chinese words accepted for the coded values of `status` and `source`, normalised to the
English code (the code is what is stored and shown)."""
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_WHOLE = r"[0-9]{1,9}"

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


class RawColumns:
    """A raw table whose columns are read one at a time, as each is checked.

    A city's findings file holds nine columns of ten million cells; read whole, they are held
    together with every check's temporaries (gigabytes). Here `read(position)` makes one
    column when it is checked, and `release` forgets it once checked, so only the columns a
    caller keeps (`validate`'s `keep`) outlive their check. Otherwise like the raw frame it
    stands for: `columns` the header as written, `index` the row numbers, `len` the rows.
    `forget(position)`, when given, is told when a column is released (so its source can let
    go of it too).

    Told the order the columns will be asked for (`expect`), it reads the next one on another
    thread while the current one is checked (Arrow reads without the interpreter's lock), so
    reading costs little more time than reading the whole file at once did; an error reading
    it is raised when that column is asked for.
    """

    def __init__(
        self,
        columns: Iterable[str],
        rows: IntArray,
        read: Callable[[int], pd.Series],
        forget: Callable[[int], None] | None = None,
    ) -> None:
        self.columns = pd.Index(list(columns), dtype=object)
        self.index = rows
        self._read = read
        self._forget = forget
        self._held: dict[int, pd.Series] = {}
        self._expected: list[int] = []
        self._coming: dict[int, Future[pd.Series]] = {}
        self._reader: ThreadPoolExecutor | None = None

    def expect(self, positions: Iterable[int]) -> None:
        """The positions of the columns that will be asked for, in that order."""
        self._expected = list(positions)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.index), len(self.columns)

    def column(self, position: int) -> pd.Series:
        """The column at `position` (read once, held until released), with a RangeIndex."""
        if position not in self._held:
            coming = self._coming.pop(position, None)
            self._held[position] = coming.result() if coming else self._read(position)
            self._read_next(after=position)
        return self._held[position]

    def release(self, position: int) -> None:
        self._held.pop(position, None)
        if self._forget is not None:
            self._forget(position)

    def _read_next(self, *, after: int) -> None:
        """Start reading the column expected after `after` (one at a time: memory)."""
        if after not in self._expected or self._coming:
            return
        rest = self._expected[self._expected.index(after) + 1 :]
        following = next((p for p in rest if p not in self._held), None)
        if following is None:
            return
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-column")
        self._coming[following] = self._reader.submit(self._read, following)


Raw = pd.DataFrame | RawColumns
"""A raw table: a frame, or columns read one at a time."""


class Checked(ProblemList):
    """The problems found in one table (they refuse it), and its `warnings` (they do not).

    A `ProblemList` like any other, so callers that only raise problems are unchanged;
    `warnings` is a `ProblemList` of its own (listed up to MAX_PROBLEMS, all counted), each a
    `Problem` located by file, row, column and value whose `expected` says what to check.
    """

    def __init__(
        self,
        problems: Iterable[Problem] = (),
        *,
        total: int | None = None,
        warnings: ProblemList | None = None,
    ) -> None:
        super().__init__(problems, total=total)
        self.warnings = warnings if warnings is not None else ProblemList()


def warnings_of(*groups: Iterable[Problem]) -> ProblemList:
    """The warnings of every `Checked` group, in order, capped and counted like problems."""
    found = ProblemList()
    for group in groups:
        if isinstance(group, Checked):
            found.extend(group.warnings[: max(MAX_PROBLEMS - len(found), 0)])
            found.total += group.warnings.total
    return found


def validate(
    institutions_raw: Raw | None,
    findings_raw: Raw | None,
    *,
    rules: RuleSet,
    institutions_file: str,
    findings_file: str,
    reading: Iterable[Iterable[Problem]] = (),
    warnings: ProblemList | None = None,
    keep: tuple[Collection[str] | None, Collection[str] | None] = (None, None),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Normalised institutions and findings, or one InputError listing every problem.

    A finding must name an institution of the institutions file; a code that is itself bad in
    the institutions file is reported there only, not again for each of its findings.
    `reading` holds problems met before (reading the files) so they are reported together; a
    raw frame is None when its file could not be read at all: the other is still checked.
    When `warnings` is given, what is worth a warning but refuses nothing (see
    `validate_institutions`) is added to it, whether or not the input has problems.
    `keep` names the columns of the institutions and of the findings to return (None: all):
    every column is checked all the same, and the others are let go as soon as they are.
    """
    groups = [*reading]
    known: pd.Series | None = None
    institutions = findings = None
    if institutions_raw is not None:
        institutions, found = validate_institutions(
            institutions_raw, file=institutions_file, keep=keep[0]
        )
        groups.append(found)
        if "uscc" in map(_contract_name, _header(institutions_raw)):
            known = institutions["uscc"]
    if findings_raw is not None:
        findings, found = validate_findings(
            findings_raw, file=findings_file, rules=rules, known_uscc=known, keep=keep[1]
        )
        del known
        groups.append(found)
    if warnings is not None:
        found_warnings = warnings_of(*groups)
        warnings.extend(found_warnings[: max(MAX_PROBLEMS - len(warnings), 0)])
        warnings.total += found_warnings.total
    raise_problems(*groups)
    if institutions is None or findings is None:
        unread = institutions_file if institutions is None else findings_file
        raise InputError([Problem(unread, None, None, None, _("a file that can be read"))])
    return institutions, findings


def validate_institutions(
    raw: Raw, *, file: str, keep: Collection[str] | None = None
) -> tuple[pd.DataFrame, Checked]:
    """The normalised institution list and the problems found in it.

    The frame is only meaningful when there are no problems. Its columns are
    `INSTITUTION_COLUMNS.order`, all text, with a RangeIndex. The problems' `warnings` list
    valid credit codes whose positions 3–8 differ from the row's `district_code`, or whose
    organisation code (positions 9–17) fails its GB 11714 check: worth a look, not a refusal.
    `keep`: the columns returned (None: all of them).
    """
    table = _Table(raw, file, INSTITUTION_COLUMNS)
    codes = table.check("uscc", valid_code, _code_expected)
    _check_unique(table, codes)
    districts = table.check("district_code", _six_digits, _district_expected)
    columns = {
        "uscc": codes,
        "name": table.free_text("name"),
        "district_code": districts,
        "licence_no": table.free_text("licence_no"),
        "address": table.free_text("address"),
        "status": _enum(table, "status", INSTITUTION_STATUSES, "institution_status"),
    }
    _warn_about_codes(table, codes, districts)
    return _kept(columns, keep), table.problems()


def validate_findings(
    raw: Raw,
    *,
    file: str,
    rules: RuleSet,
    known_uscc: Collection[str] | pd.Series | pd.Index | None,
    keep: Collection[str] | None = None,
) -> tuple[pd.DataFrame, Checked]:
    """The normalised findings and the problems found in them.

    `known_uscc` are the codes of the institution list: a finding for any other code is a
    problem, and codes in it are taken as already checked. None skips that check (only the
    check character is verified). The frame is only meaningful when there are no problems;
    its columns are `FINDING_COLUMNS.order` (`occurred_on` datetime64 at midnight, `count`
    int64, the rest text), with a RangeIndex; `keep` names the columns returned (None: all).
    Each column is checked in turn and let go once checked unless it is kept: the free texts
    first, so that they are gone before the credit codes' check makes its temporaries (the
    order of the checks changes nothing reported: problems are listed by row and column).
    """
    table = _Table(raw, file, FINDING_COLUMNS)
    checks: dict[str, Callable[[], pd.Series]] = {
        "finding_id": lambda: _finding_ids(table),
        "reference": lambda: table.free_text("reference"),
        "note": lambda: table.free_text("note"),
        "source": lambda: _enum(table, "source", FINDING_SOURCES, "source"),
        "uscc": lambda: _finding_codes(table, known_uscc),
        "indicator": lambda: _indicators(table, rules),
        "occurred_on": lambda: _dates(table),
        "count": lambda: _counts(table),
        "status": lambda: _enum(table, "status", FINDING_STATUSES, "finding_status"),
    }
    table.expect(checks)
    columns: dict[str, pd.Series] = {}
    for name, check in checks.items():
        column = check()
        table.release(name)
        if keep is None or name in keep:
            columns[name] = column
        del column
    return pd.DataFrame(
        {name: columns[name] for name in FINDING_COLUMNS.order if name in columns}
    ), table.problems()


def _kept(columns: Mapping[str, pd.Series], keep: Collection[str] | None) -> pd.DataFrame:
    """The normalised frame of the columns kept (all when `keep` is None)."""
    return pd.DataFrame({n: c for n, c in columns.items() if keep is None or n in keep})


Check = Callable[[pd.Series], BoolArray]
"""Which cells of a text column are good, as a boolean array (vectorised)."""
Explain = Callable[[str], str]
"""What was expected instead of one bad value: only called for the rows listed."""


class _Table:
    """One raw table being checked: its columns by contract name, and the problems found."""

    def __init__(self, raw: Raw, file: str, spec: Columns) -> None:
        self.file = file
        self.spec = spec
        self.rows: IntArray = np.asarray(raw.index, dtype=np.int64)
        self.size = len(raw)
        self._found: list[Problem] = []
        self._total = 0
        self._warnings: list[Problem] = []
        self._warning_total = 0
        # Per column checked by `check`: the rows it refused (bad, or empty when required).
        self.refused: dict[str, BoolArray] = {}
        # Contract name -> the column as the file names it; the file's language (Chinese when
        # most known names in its header are Chinese) names the columns it lacks.
        self.shown: dict[str, str] = {}
        self.chinese = False
        self._raw = raw.reset_index(drop=True) if isinstance(raw, pd.DataFrame) else raw
        self._at = self._check_header(raw)
        self.expect(self._at)  # checked in the contract's order unless told otherwise

    def _check_header(self, raw: Raw) -> dict[str, int]:
        """Each contract column's position in the raw table, in contract order; header problems
        noted.

        Each name may be English or Chinese (`CHINESE_NAMES`), one language per header row:
        a row mixing them is one problem naming the columns of each language (and the pairs
        that name one field twice). Problems name columns as the file writes them.
        """
        if raw.shape == (0, 0):  # no rows and so no header (an empty JSON list): nothing to check
            return {}
        written = _header(raw)
        known = set(self.spec.order)
        names = [_contract_name(n) if _contract_name(n) in known else n for n in written]
        english = [w for w, n in zip(written, names, strict=True) if n in known and w == n]
        chinese = [w for w, n in zip(written, names, strict=True) if n in known and w != n]
        self.chinese = len(chinese) > len(english)
        for name, as_written in zip(names, written, strict=True):
            self.shown.setdefault(name, as_written)
        if english and chinese:
            self.whole_file(None, _mixed_header(english, chinese))
        counts = Counter(names)  # not names.count per name: quadratic in a wide header
        spellings: dict[str, set[str]] = {}
        for name, as_written in zip(names, written, strict=True):
            spellings.setdefault(name, set()).add(as_written)
        for name in counts:
            if counts[name] > 1:
                if len(spellings[name]) == 1:  # two languages: reported as a mixed header
                    self.whole_file(
                        self.show(name), _("each column once (this header appears twice)")
                    )
            elif name not in known:
                self.whole_file(name, self._unknown_column(name))
        for name in self.spec.required:
            if name not in counts:
                self.whole_file(
                    self.show(name), _("this required column (it is missing from the header)")
                )
        keep = [n for n in self.spec.order if counts[n] == 1 or len(spellings.get(n, ())) > 1]
        # a field written in both languages: the first
        return {n: names.index(n) for n in keep}

    def show(self, name: str) -> str:
        """A contract column as this file names it (in the file's language when absent)."""
        if name in self.shown:
            return self.shown[name]
        return CHINESE_NAMES.get(name, name) if self.chinese else name

    def _unknown_column(self, name: str) -> str:
        listed = ", ".join(self.show(n) for n in self.spec.order)
        if not name:
            return _("a name in the header row for this column (known columns: {listed})").format(
                listed=listed
            )
        shown = [self.show(n) for n in self.spec.order]
        hint = _HEADER_HINTS.get(name)
        guess = self.show(hint) if hint in self.spec.order else _closest(name, shown)
        if guess is None and not self.chinese:
            guess = _closest(name, self.spec.order)
        if guess:
            return _("no such column (did you mean {guess!r}? known columns: {listed})").format(
                guess=guess, listed=listed
            )
        return _("no such column (known columns: {listed})").format(listed=listed)

    # Problems ------------------------------------------------------------------------------

    def whole_file(self, column: str | None, expected: str) -> None:
        self._found.append(Problem(self.file, None, column, None, expected))
        self._total += 1

    def report(self, bad: BoolArray, column: str, values: pd.Series, expected: Explain) -> None:
        """One problem per bad row (the first MAX_PROBLEMS built, all counted)."""
        positions = np.flatnonzero(bad)
        self._total += len(positions)
        for pos in positions[:MAX_PROBLEMS]:
            value = _display(values.iloc[pos])
            self._found.append(
                Problem(self.file, int(self.rows[pos]), self.show(column), value, expected(value))
            )

    def warn(
        self, column: str, values: pd.Series, found: Mapping[int, list[str]], *, total: int
    ) -> None:
        """Warnings about the cells of `column` at positions `found` (position -> messages).

        The caller builds messages for at most MAX_PROBLEMS rows; `total` counts them all.
        """
        positions = list(found)
        cells = values.iloc[positions].tolist()
        named = self.show(column)
        for pos, value in zip(positions, cells, strict=True):
            row = int(self.rows[pos])
            text = _display(value)
            self._warnings += [Problem(self.file, row, named, text, m) for m in found[pos]]
        self._warning_total += total

    def problems(self) -> Checked:
        """Whole-file problems first, then by row and column; at most MAX_PROBLEMS listed.

        The warnings come along in row order, capped and counted the same way.
        """
        place = {self.show(name): i for i, name in enumerate(self.spec.order)}
        ordered = sorted(
            self._found,
            key=lambda p: (p.row is not None, p.row or 0, place.get(p.column or "", -1)),
        )
        warnings = ProblemList(
            sorted(self._warnings, key=lambda p: p.row or 0)[:MAX_PROBLEMS],
            total=self._warning_total,
        )
        return Checked(ordered[:MAX_PROBLEMS], total=self._total, warnings=warnings)

    # Columns -------------------------------------------------------------------------------

    def column(self, name: str) -> pd.Series | None:
        if name not in self._at:
            return None
        if isinstance(self._raw, RawColumns):
            return self._raw.column(self._at[name])
        return self._raw.iloc[:, self._at[name]].rename(name)

    def expect(self, names: Iterable[str]) -> None:
        """The order the columns will be checked in (a table read column by column reads
        the next one meanwhile)."""
        if isinstance(self._raw, RawColumns):
            self._raw.expect(self._at[n] for n in names if n in self._at)

    def release(self, name: str) -> None:
        """Done with column `name`: a table read column by column forgets it."""
        if isinstance(self._raw, RawColumns) and name in self._at:
            self._raw.release(self._at[name])

    def default(self, name: str) -> str:
        return self.spec.optional.get(name, "")

    def constant(self, value: str) -> pd.Series:
        return _repeat(value, self.size)

    def check(self, name: str, good: Check, expected: Explain) -> pd.Series:
        """A code-like text column: bad cells reported, empty optional cells defaulted.

        Cells that fail only because of surrounding spaces are accepted, stripped. An empty
        cell is bad in a required column and takes the default in an optional one; `good`
        need not accept "" and `expected` is not asked about it.
        """
        raw = self.column(name)
        if raw is None:
            return self.constant(self.default(name))
        text = _as_text(raw)
        ok = np.array(good(text), dtype=bool)
        self.refused[name] = ~ok
        if ok.all():
            return text
        empty = ~ok & _mask(text == "")
        if (~ok & ~empty).any():
            text, fixed, blank = _strip_failed(text, ~ok & ~empty, good)
            ok |= fixed
            empty |= blank
        if name in self.spec.required:
            self.report(empty, name, raw, _required(self.show(name)))
        else:
            text = _fill(text, empty, self.default(name))
        bad = ~ok & ~empty
        self.report(bad, name, raw, expected)
        self.refused[name] = bad | empty if name in self.spec.required else bad
        return text

    def free_text(self, name: str) -> pd.Series:
        """A text column kept as written (names, notes); emptiness and NUL are checked.

        A NUL character is invisible in every viewer and PostgreSQL cannot store it.
        """
        if name in self.spec.required:
            text = self.check(name, _filled, _required(self.show(name)))
        else:
            raw = self.column(name)
            text = self.constant(self.default(name)) if raw is None else _as_text(raw)
        if _no_nul(text):  # one scan of the column's bytes: no cell to look at
            return text
        has_nul = _mask(text.str.contains("\x00", regex=False))
        if has_nul.any():
            self.report(has_nul, name, text, lambda value: _("text without NUL (\\x00) characters"))
        return text

    def coded(self, name: str) -> _Coded:
        """A low-cardinality text column as distinct (stripped) values and a code per row."""
        raw = self.column(name)
        text = _as_text(raw) if raw is not None else self.constant("")
        array = pa.array(text)
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        encoded = pc.dictionary_encode(array)
        uniques = pd.Index(encoded.dictionary.to_pylist(), dtype="str").str.strip()
        return _Coded(encoded.indices.to_numpy().astype(np.intp), uniques, raw)


@dataclass(frozen=True)
class _Coded:
    """A text column as distinct values (stripped) and, per row, the index of its value."""

    codes: npt.NDArray[np.intp]
    uniques: pd.Index
    raw: pd.Series | None  # as given, to show bad values as they are in the file

    def report(self, table: _Table, name: str, bad: BoolArray, expected: Explain) -> None:
        """Report the rows whose value is bad (`bad` is a mask over the distinct values)."""
        if self.raw is not None and bad.any():
            table.report(bad[self.codes], name, self.raw, expected)

    def empty(self) -> BoolArray:
        return _mask(self.uniques == "")


# Column checks ---------------------------------------------------------------------------


def _check_unique(table: _Table, codes: pd.Series) -> None:
    """Every later row with a code already listed is reported, naming the first row too."""
    repeated = _mask(codes.duplicated(keep="first")) & _filled(codes)
    if not repeated.any():
        return
    again = codes[repeated]
    firsts = codes[~_mask(codes.duplicated(keep="first")) & _mask(codes.isin(again.unique()))]
    first = dict(zip(firsts.tolist(), table.rows[firsts.index].tolist(), strict=True))
    table.report(
        repeated,
        "uscc",
        codes,
        lambda code: _("each institution listed once: this code is already on row {row}").format(
            row=first[code]
        ),
    )


def _warn_about_codes(table: _Table, codes: pd.Series, districts: pd.Series) -> None:
    """Warn of valid codes registered outside `district_code`, or with a bad organisation code.

    Rows whose code or district is itself refused are left to their problems. Vectorised:
    only the rows warned about (at most MAX_PROBLEMS of them) are looked at one by one.
    """
    if table.column("uscc") is None or len(codes) == 0:
        return
    good = ~table.refused["uscc"]  # valid codes (already checked: not checked again)
    elsewhere = np.zeros(len(codes), dtype=bool)
    if table.column("district_code") is not None:
        elsewhere = good & ~table.refused["district_code"] & ~registered_in(codes, districts)
    failing = good & ~organisation_valid(codes)
    warned = np.flatnonzero(elsewhere | failing)[:MAX_PROBLEMS]
    found: dict[int, list[str]] = {}
    listed = zip(
        warned.tolist(),
        codes.iloc[warned].tolist(),
        districts.iloc[warned].tolist(),
        elsewhere[warned].tolist(),
        failing[warned].tolist(),
        strict=True,
    )
    for pos, code, district, other_district, bad_organisation in listed:
        messages = [
            credit_code.district_problem(code, district) if other_district else None,
            credit_code.organisation_code_problem(code) if bad_organisation else None,
        ]
        found[pos] = [m for m in messages if m]
    table.warn("uscc", codes, found, total=int(elsewhere.sum() + failing.sum()))


def _finding_codes(
    table: _Table, known: Collection[str] | pd.Series | pd.Index | None
) -> pd.Series:
    """`uscc` of findings: a code of the institution list (or, without one, a valid code)."""
    if known is None:
        return table.check("uscc", valid_code, _code_expected)
    codes = pd.Series(known if isinstance(known, pd.Series | pd.Index) else list(known))
    codes = _as_text(codes.reset_index(drop=True))
    codes = codes[_mask(codes != "")].reset_index(drop=True)

    def expected(code: str) -> str:
        return credit_code.problem(code.strip()) or (
            _(
                "the credit code of an institution in the institutions file "
                "(no institution there has this code)"
            )
        )

    return table.check("uscc", lambda column: listed(column, codes), expected)


def _enum(table: _Table, name: str, choices: tuple[str, ...], kind: str) -> pd.Series:
    """A coded column: one of `choices`, or its Chinese word (`CHINESE_VALUES[kind]`)."""
    words = CHINESE_VALUES[kind]

    def expected(value: str) -> str:
        text = _("one of {choices} (or {words}; empty means {default})").format(
            choices=", ".join(choices), words="、".join(words), default=table.default(name)
        )
        guess = words.get(value.strip()) or _closest(value, choices)
        return (
            _("{text}; did you mean {guess!r}?").format(text=text, guess=guess) if guess else text
        )

    return _replace(table.check(name, _one_of([*choices, *words]), expected), words)


def _indicators(table: _Table, rules: RuleSet) -> pd.Series:
    """`indicator` as a code: given by its code, its annex number (`12` or `第12项`) or its
    exact Chinese title (an indicator's or a veto's)."""
    codes = [i.code for i in rules.indicators] + [v.code for v in rules.vetoes]
    names = indicator_names(rules)

    def expected(value: str) -> str:
        text = _(
            "an indicator or veto of rules {version}: its code, its annex number "
            "(12 or 第12项) or its exact Chinese title"
        ).format(version=rules.version)
        guess = _closest(value, codes) or _closest(value, list(names), cutoff=0.8)
        guess = names.get(guess or "", guess)
        if guess:
            return _("{text}; did you mean {guess!r}?").format(text=text, guess=guess)
        return _("{text} (listed in rules/)").format(text=text)

    return _replace(table.check("indicator", _one_of([*codes, *names]), expected), names)


def indicator_names(rules: RuleSet) -> dict[str, str]:
    """Other names of indicators and vetoes -> their code: annex numbers written `12` and
    `第12项`, and exact Chinese titles (a title two rules share names neither)."""
    names = {str(i.number): i.code for i in rules.indicators}
    names |= {f"第{i.number}项": i.code for i in rules.indicators}
    titled = [(i.title, i.code) for i in rules.indicators] + [
        (v.title, v.code) for v in rules.vetoes
    ]
    titles = Counter(title for title, _ in titled)
    names |= {title: code for title, code in titled if titles[title] == 1}
    codes = {i.code for i in rules.indicators} | {v.code for v in rules.vetoes}
    return {name: code for name, code in names.items() if name not in codes}


def _replace(text: pd.Series, words: Mapping[str, str]) -> pd.Series:
    """`text` with each cell that is a key of `words` replaced by its value, by distinct value
    (Arrow dictionary encoding: no Python per row)."""
    if not words or not _mask(text.isin(list(words))).any():
        return text
    array = pa.array(text, type=pa.large_string(), from_pandas=True)
    encoded = pc.dictionary_encode(array)
    values = [words.get(v, v) for v in encoded.dictionary.to_pylist()]
    replaced = pa.array(values, type=pa.large_string()).take(encoded.indices)
    return pd.Series(pd.array(replaced, dtype="str"))


def _finding_ids(table: _Table) -> pd.Series:
    """`finding_id` as given, or "#<row>" where it is absent or empty."""
    raw = table.column("finding_id")
    if raw is None:
        return _row_ids(table.rows)
    ids = _as_text(raw)
    empty, shaped = _id_shapes(ids)
    bad = ~empty & ~shaped
    table.report(bad, "finding_id", raw, lambda value: _("an id of 1-64 characters without spaces"))
    repeated = ~empty & ~bad & duplicated_text(ids)  # exactly ids.duplicated(keep=False)
    table.report(
        repeated,
        "finding_id",
        raw,
        lambda value: _("a {column} used once in the file").format(column=table.show("finding_id")),
    )
    if empty.any():
        ids = ids.copy()
        ids[empty] = _row_ids(table.rows[empty]).to_numpy()
    return ids


_ID_SPACES = np.zeros(256, dtype=bool)
_ID_SPACES[[0x00, 0x09, 0x0A, 0x0C, 0x0D, 0x20]] = True
"""Bytes an id may not hold: NUL and RE2's `\\s` (tab, LF, FF, CR, space); none of them is
ever part of a longer UTF-8 character, so they are found byte by byte."""


def _id_shapes(ids: pd.Series) -> tuple[BoolArray, BoolArray]:
    """Which ids are empty (`ids.str.strip() == ""`) and which are shaped like an id, that is
    match `^[^\\s\\x00]{1,64}$` (RE2), computed from the Arrow buffers' bytes and lengths:
    a regular expression over ten million ids took a second and a half, this a fifth."""
    array = pa.array(ids, type=pa.large_string(), from_pandas=True)
    arrow = isinstance(ids.dtype, pd.StringDtype) and ids.dtype.storage == "pyarrow"
    if array.null_count or not arrow:  # not the text this was checked against: as written
        empty = _mask(ids.str.strip() == "")
        shaped = pc.match_substring_regex(array, r"^[^\s\x00]{1,64}$")
        return empty, _mask(shaped.fill_null(False))
    lengths = np.asarray(pc.utf8_length(array), dtype=np.int64)
    # pandas strips Arrow text with Arrow's own whitespace (utf8_trim_whitespace), the same
    # characters utf8_is_space knows (checked for every code point in tests/test_inputs.py).
    empty = (lengths == 0) | _mask(pc.utf8_is_space(array))
    shaped = (lengths >= 1) & (lengths <= 64)
    start = 0
    for chunk in array.chunks if isinstance(array, pa.ChunkedArray) else [array]:
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64)[
            chunk.offset : chunk.offset + len(chunk) + 1
        ]
        data = chunk.buffers()[2]
        if data is not None and len(chunk) and offsets[-1] > offsets[0]:
            text = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
            if text.min() <= 0x20:  # only then look for the few bytes that are refused
                at = np.flatnonzero(_ID_SPACES[text]) + offsets[0]
                shaped[start + np.searchsorted(offsets, at, side="right") - 1] = False
        start += len(chunk)
    return empty, shaped


def _repeat(value: str, size: int) -> pd.Series:
    """A text column holding `value` in every row, built as one Arrow buffer."""
    encoded = np.frombuffer(value.encode("utf-8"), dtype=np.uint8)
    offsets = np.arange(size + 1, dtype=np.int64) * len(encoded)
    array = pa.LargeStringArray.from_buffers(
        size, pa.py_buffer(offsets), pa.py_buffer(np.tile(encoded, size))
    )
    return pd.Series(pd.array(array, dtype="str"))


def _row_ids(rows: IntArray) -> pd.Series:
    """ "#<row>" for each row number, made by Arrow (no Python string per row)."""
    digits = pc.cast(pa.array(rows, type=pa.int64()), pa.large_string())
    return pd.Series(pd.array(pc.binary_replace_slice(digits, 0, 0, "#"), dtype="str"))


def _dates(table: _Table) -> pd.Series:
    """`occurred_on` as datetime64 at midnight; text must be an ISO date that exists."""
    raw = table.column("occurred_on")
    if raw is None:
        return pd.Series(np.full(table.size, np.datetime64("NaT"), dtype=DATE_DTYPE))
    if raw.dtype == object and pd.api.types.infer_dtype(raw, skipna=True) in ("date", "datetime"):
        raw = pd.Series(pd.to_datetime(raw))
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        return _typed_dates(table, raw)
    coded = table.coded("occurred_on")
    parsed = pd.to_datetime(coded.uniques, format="%Y-%m-%d", errors="coerce")
    iso = _mask(coded.uniques.str.fullmatch(_ISO_DATE.pattern))
    empty = coded.empty()
    coded.report(table, "occurred_on", empty, _required(table.show("occurred_on")))
    exists = _mask(parsed.notna()) & _mask(parsed.year >= 1)  # numpy has a year 0, ISO not
    coded.report(table, "occurred_on", ~empty & ~(iso & exists), _date_expected)
    days = parsed.to_numpy().astype(DATE_DTYPE)
    return pd.Series(days[coded.codes])


def _typed_dates(table: _Table, raw: pd.Series) -> pd.Series:
    if getattr(raw.dt, "tz", None) is not None:
        raw = raw.dt.tz_localize(None)
    table.report(_mask(raw.isna()), "occurred_on", raw, _required(table.show("occurred_on")))
    days = raw.to_numpy().astype("datetime64[D]").astype(DATE_DTYPE)
    return pd.Series(days)


def _counts(table: _Table) -> pd.Series:
    """`count` as int64; empty means 1. Typed integers and floats are checked as numbers."""
    raw = table.column("count")
    if raw is None:
        return pd.Series(np.ones(table.size, dtype=np.int64))
    if pd.api.types.is_bool_dtype(raw.dtype) or not pd.api.types.is_numeric_dtype(raw.dtype):
        return _text_counts(table)
    numbers = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    numbers = np.where(np.isnan(numbers), 1.0, numbers)
    bad = (numbers != np.floor(numbers)) | (numbers < 1) | (numbers > MAX_COUNT)
    table.report(bad, "count", raw, _count_expected)
    return pd.Series(np.where(bad, 1, numbers).astype(np.int64))


def _text_counts(table: _Table) -> pd.Series:
    coded = table.coded("count")
    uniques = coded.uniques.where(~coded.empty(), "1")
    whole = _mask(uniques.str.fullmatch(_WHOLE))
    values = np.ones(len(uniques), dtype=np.int64)
    values[whole] = uniques[whole].astype(np.int64)
    bad = ~whole | (values < 1) | (values > MAX_COUNT)
    coded.report(table, "count", bad, _count_expected)
    return pd.Series(np.where(bad, 1, values)[coded.codes])


# Cell checks (vectorised) ----------------------------------------------------------------


def _filled(text: pd.Series) -> BoolArray:
    return _mask(text.str.strip() != "")


def _six_digits(text: pd.Series) -> BoolArray:
    return _mask(text.str.fullmatch(r"[0-9]{6}"))


def _one_of(choices: Iterable[str]) -> Check:
    allowed = list(choices)

    def good(text: pd.Series) -> BoolArray:
        return _mask(text.isin(allowed))

    return good


# Helpers ---------------------------------------------------------------------------------


def _strip_failed(
    text: pd.Series, failed: BoolArray, good: Check
) -> tuple[pd.Series, BoolArray, BoolArray]:
    """Strip the failed cells: those that then pass are fixed in the text; blank ones are empty.

    Returns the text, the mask of fixed cells and the mask of cells holding only spaces.
    """
    positions = np.flatnonzero(failed)
    original = text.iloc[positions]
    stripped = original.str.strip()
    blank, fixed = np.zeros(len(text), dtype=bool), np.zeros(len(text), dtype=bool)
    blank[positions] = _mask(stripped == "")
    fixed[positions] = np.array(good(stripped), dtype=bool) & _mask(stripped != original)
    if fixed.any():
        text = text.copy()
        text[fixed] = stripped[fixed[positions]].to_numpy()
    return text, fixed, blank


def _fill(text: pd.Series, where: BoolArray, value: str) -> pd.Series:
    if not where.any():
        return text
    filled = pc.if_else(pa.array(where), value, pa.array(text))
    return pd.Series(pd.array(filled, dtype="str"))


def _header(raw: Raw) -> list[str]:
    """Column names as the contract spells them: spaces and a stray BOM around them dropped."""
    return [str(c).strip().lstrip("\ufeff").strip() for c in raw.columns]


def _no_nul(text: pd.Series) -> bool:
    """True when no cell of `text` holds a NUL, by one pass over its Arrow text buffer
    (its smallest byte is not 0); False when one may (or the text is not held by Arrow),
    and then the cells are checked one by one."""
    if not isinstance(text.dtype, pd.StringDtype) or text.dtype.storage != "pyarrow":
        return False
    array = pa.array(text, from_pandas=True)
    for chunk in array.chunks if isinstance(array, pa.ChunkedArray) else [array]:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            return False
        data = chunk.buffers()[2]
        if data is not None and data.size and np.frombuffer(data, dtype=np.uint8).min() == 0:
            return False
    return True


def _mask(values: Any) -> BoolArray:
    """A boolean numpy array from a pandas, numpy or Arrow result."""
    return np.asarray(values, dtype=bool)


def _as_text(raw: pd.Series) -> pd.Series:
    """Cells as text, "" for missing; str columns pass through, typed ones are written out."""
    if isinstance(raw.dtype, pd.StringDtype):
        return raw.fillna("") if raw.hasnans else raw
    if pd.api.types.is_float_dtype(raw.dtype):
        return raw.map(_number_text, na_action="ignore").astype("str").fillna("")
    return raw.astype("str").fillna("")


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _display(value: Any) -> str:
    """A cell as shown in a Problem: text as is, numbers and dates written out, missing = ""."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return _number_text(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def _required(name: str) -> Explain:
    return lambda value: _("a value: {column} is required").format(column=name)


def _code_expected(code: str) -> str:
    return credit_code.problem(code.strip()) or _("a valid unified social credit code")


def _district_expected(value: str) -> str:
    return _("6 digits (GB/T 2260 district code, e.g. 120111 for 西青区)")


def _count_expected(value: str) -> str:
    return _("a whole number from 1 to {most:,} (empty means 1)").format(most=MAX_COUNT)


def _date_expected(value: str) -> str:
    text = value.strip()
    if not _ISO_DATE.fullmatch(text):
        return _("a date written YYYY-MM-DD (ISO 8601), e.g. 2023-05-17")
    year, month, day = (int(part) for part in text.split("-"))
    if year < 1:
        return _("a date that exists: the year must be 0001 or later")
    if not 1 <= month <= 12:
        return _("a date that exists: the month must be 01–12")
    days = calendar.monthrange(year, month)[1]
    return _(
        "a date that exists: {year:04d}-{month:02d} has days 01–{days:02d}, not {day:02d}"
    ).format(year=year, month=month, days=days, day=day)


def _closest(value: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    matches = difflib.get_close_matches(value.strip().lower(), list(choices), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def _contract_name(name: str) -> str:
    """The contract (English) name of a column named in either language."""
    return ENGLISH_NAMES.get(name, name)


def _mixed_header(english: list[str], chinese: list[str]) -> str:
    pairs = [(n, c) for n in english for c in chinese if _contract_name(c) == n]
    both = [_("{english} and {chinese}").format(english=n, chinese=c) for n, c in pairs]
    twice = _("; {pairs} name the same field").format(pairs=", ".join(both)) if both else ""
    return _(
        "a header row in one language, all English or all Chinese; this one mixes English "
        "({english}) with Chinese ({chinese}){twice}"
    ).format(english=", ".join(english), chinese=", ".join(chinese), twice=twice)
