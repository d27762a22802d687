"""`credit-rating rate --format csv|json` for a whole city: the same bytes as `render.as_csv`
and `render.as_json`, written in blocks by Arrow instead of a Python object per cell.

`render.as_csv` goes through pandas' `to_csv` (object columns, a neutralising lambda per cell)
and `render.as_json` through `json.dumps(..., indent=2)`, which runs Python's pure-Python
encoder: fine for a district, minutes and gigabytes for a million institutions (issue 13).
Here every column becomes text once, vectorised (Arrow compute), and the records are joined
block by block (`BLOCK` rows) straight into the output's bytes, so memory stays one block of
text whatever the size.

Exactly the same output, byte for byte (tests/test_cli_scale.py pins it):
- CSV: `service.ratings.exports.csv_text` — each text cell neutralised (`FORMULA_STARTS` ->
  a leading `'`), then quoted as Python's csv module quotes it with a CRLF terminator (a
  field holding `,`, `"`, CR or LF, quotes doubled), records ended with LF; missing values
  empty, truth values `True`/`False`, vetoes joined by `;`.
- JSON: `json.dumps(rating_records(...), ensure_ascii=False, indent=2)`: strings escaped as
  `json` escapes them (only `"`, `\\` and control characters; those few cells go through
  `json.dumps` itself).
A frame this module does not know how to write exactly (another column type) is written by
the renderers of `service.cli.render` as before.
"""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.rules import RulesInForce
from service.ratings.exports import FORMULA_STARTS

ENGINE_FINDING_COLUMNS = ("uscc", "indicator", "occurred_on", "count", "status")
"""The findings' columns `scoring.engine.rate` reads."""
RATED_COLUMNS = ("uscc", "name", "status")
"""The institutions' columns a year's result reads (the engine's two, and the status)."""

BLOCK = 100_000
"""Rows turned into text at a time: bounds the memory of the output to a block's text."""

_FORMULA = "^[" + "".join("\\" + c if c in "-\\]^" else c for c in FORMULA_STARTS) + "]"
_NEEDS_QUOTES = '[,"\r\n]'
_JSON_ESCAPED = '[\\x00-\\x1f"\\\\]'

Progress = Callable[[int], None]
"""Told how many more rows have been written."""


def order(rating: pd.DataFrame) -> npt.NDArray[np.intp]:
    """Positions of `rating`'s rows as `render.ranked` orders them (best score first, then
    credit code; no score last): Arrow's sort, stable like pandas'."""
    keys = pa.table(
        {
            "score": pa.array(rating["score"], type=pa.int64(), from_pandas=True),
            "uscc": pa.array(rating["uscc"], type=pa.large_string(), from_pandas=True),
        }
    )
    ranks = pc.sort_indices(
        keys, sort_keys=[("score", "descending", "at_end"), ("uscc", "ascending", "at_end")]
    )
    return np.asarray(ranks, dtype=np.intp)


def _text(column: pd.Series) -> pa.Array | None:
    """A string column as Arrow large strings, missing as null (None: not a text column)."""
    if isinstance(column.dtype, pd.StringDtype):
        try:
            array = pa.array(column, type=pa.large_string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
        return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    return None


Cells = Callable[[int, int], pa.Array]
"""The cells of one column for the rows ranked `start` to `stop` (excluded), as text."""

_MOST_NUMBERS = 1 << 16
"""Integer columns spanning fewer values than this are written from a table of their texts."""


def _csv_cells(column: pd.Series, name: str, ranks: npt.NDArray[np.intp]) -> Cells | None:
    """A column's cells as `csv_text` writes them, quoted, rows in the order of `ranks`
    (None: write it the old way).

    Each distinct value is made text once (a grade, a status, a number of points: a handful
    of values in a million rows) and each block of rows takes its cells from those texts by
    position, instead of neutralising, quoting or formatting every row of every block.
    """
    texts, codes = _distinct_cells(column, name)
    if texts is None:
        return None
    table = texts
    ranked = codes[ranks]

    def cells(start: int, stop: int) -> pa.Array:
        return table.take(pa.array(ranked[start:stop], type=pa.int64()))

    return cells


def _distinct_cells(column: pd.Series, name: str) -> tuple[pa.Array | None, npt.NDArray[np.int64]]:
    """The texts of a column's distinct values (the last: a missing value's, "") and, for
    each row, the position of its text (None: a column of a type written the old way)."""
    size = len(column)
    if name == "vetoes":
        return _encoded(_quoted(_joined_vetoes(column)))
    text = _text(column)
    if text is not None:
        texts, codes = _encoded(text)
        formula = pc.match_substring_regex(texts, _FORMULA)
        if pc.any(formula).as_py():
            texts = pc.if_else(
                formula, pc.binary_join_element_wise(_lit("'"), texts, _lit("")), texts
            )
        return _quoted(texts), codes
    if pd.api.types.is_bool_dtype(column.dtype):
        flags = pa.array(column, type=pa.bool_(), from_pandas=True)
        codes = np.asarray(pc.fill_null(pc.cast(flags, pa.int64()), 2), dtype=np.int64)
        return pa.array(["False", "True", ""], type=pa.large_string()), codes
    if pd.api.types.is_integer_dtype(column.dtype):
        numbers = pa.array(column, type=pa.int64(), from_pandas=True)
        low, high = pc.min_max(numbers).values()
        if low.as_py() is None or high.as_py() - low.as_py() >= _MOST_NUMBERS:
            whole = pc.fill_null(pc.cast(numbers, pa.large_string()), "")
            return whole, np.arange(size, dtype=np.int64)
        span = np.arange(low.as_py(), high.as_py() + 1, dtype=np.int64)
        texts = pa.concat_arrays(
            [pc.cast(pa.array(span), pa.large_string()), pa.array([""], pa.large_string())]
        )
        shifted = pc.subtract(numbers, low)
        codes = np.asarray(pc.fill_null(shifted, len(span)), dtype=np.int64)
        return texts, codes
    return None, np.zeros(0, dtype=np.int64)


def _encoded(text: pa.Array) -> tuple[pa.Array, npt.NDArray[np.int64]]:
    """`text`'s distinct values then "" (for missing values), and each row's position there."""
    encoded = pc.dictionary_encode(text)
    values = pa.concat_arrays(
        [encoded.dictionary.cast(pa.large_string()), pa.array([""], pa.large_string())]
    )
    codes = pc.fill_null(encoded.indices.cast(pa.int64()), len(encoded.dictionary))
    return values, np.asarray(codes, dtype=np.int64)


def _joined_vetoes(column: pd.Series) -> pa.Array:
    """Vetoes joined by ';' ("" for none, and for closed institutions, which have none)."""
    values = column.to_numpy(dtype=object)
    cells = np.full(len(values), "", dtype=object)
    for at in np.flatnonzero([isinstance(v, tuple | list) and len(v) > 0 for v in values]):
        cells[at] = ";".join(values[at])
    return pa.array(cells, type=pa.large_string())


def _quoted(cells: pa.Array) -> pa.Array:
    needs = pc.match_substring_regex(cells, _NEEDS_QUOTES)
    if not pc.any(needs).as_py():
        return cells
    doubled = pc.replace_substring(cells, '"', '""')
    return pc.if_else(
        needs, pc.binary_join_element_wise(_lit('"'), doubled, _lit('"'), _lit("")), cells
    )


def _write_lines(lines: pa.Array, out: BinaryIO) -> None:
    """Write the text of `lines` (each already ended with its separator), no copy."""
    if len(lines) == 0:
        return
    lines = lines.cast(pa.large_string())
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[
        lines.offset : lines.offset + len(lines) + 1
    ]
    data = lines.buffers()[2]
    out.write(memoryview(data)[int(offsets[0]) : int(offsets[-1])])


def csv_header(rating: pd.DataFrame) -> bytes:
    from service.ratings.exports import spreadsheet_text

    names = pa.array([spreadsheet_text(str(c)) for c in rating.columns], type=pa.large_string())
    return (",".join(_quoted(names).to_pylist()) + "\n").encode("utf-8")


def write_csv(rating: pd.DataFrame, out: BinaryIO, progress: Progress | None = None) -> bool:
    """Write `render.as_csv(rating)`'s bytes to `out`; False (nothing written) when a column
    is of a type written only the old way."""
    columns = list(rating.columns)
    if any(not isinstance(c, str) for c in columns) or len(set(columns)) < len(columns):
        return False
    ranks = order(rating)
    writers = [_csv_cells(rating[name], name, ranks) for name in columns]
    if any(w is None for w in writers):  # checked first: nothing is written unless all can be
        return False
    out.write(csv_header(rating))
    for start in range(0, len(ranks), BLOCK):
        stop = min(start + BLOCK, len(ranks))
        cells = [w(start, stop) for w in writers if w is not None]
        lines = pc.binary_join_element_wise(*cells, _lit(","))
        _write_lines(pc.binary_join_element_wise(lines, _lit("\n"), _lit("")), out)
        if progress is not None:
            progress(stop - start)
    return True


# JSON -------------------------------------------------------------------------------------


def _json_strings(column: pd.Series) -> pa.Array:
    """Each cell as a JSON string literal, as `json.dumps(cell, ensure_ascii=False)` writes it."""
    text = _text(column)
    if text is None or text.null_count:
        values = column.to_numpy(dtype=object)
        return pa.array([json.dumps(v, ensure_ascii=False) for v in values], type=pa.large_string())
    plain = pc.binary_join_element_wise(_lit('"'), text, _lit('"'), _lit(""))
    escaped = np.asarray(pc.match_substring_regex(text, _JSON_ESCAPED), dtype=bool)
    if not escaped.any():
        return plain
    cells = np.asarray(plain.to_numpy(zero_copy_only=False), dtype=object)
    for at in np.flatnonzero(escaped):
        cells[at] = json.dumps(str(text[at].as_py()), ensure_ascii=False)
    return pa.array(cells, type=pa.large_string())


def _lit(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _json_vetoes(column: pd.Series) -> pa.Array:
    values = column.to_numpy(dtype=object)
    cells = np.full(len(values), "[]", dtype=object)
    for at in np.flatnonzero([len(v) > 0 for v in values]):
        inner = ",\n".join("      " + json.dumps(c, ensure_ascii=False) for c in values[at])
        cells[at] = "[\n" + inner + "\n    ]"
    return pa.array(cells, type=pa.large_string())


def _json_rated(block: pd.DataFrame, force: RulesInForce, codes: list[str]) -> pa.Array:
    labels = {b.grade: json.dumps(b.label, ensure_ascii=False) for b in force.bands}
    grades = block["grade"].astype(str)
    if not set(grades.unique()) <= set(labels):
        raise KeyError("grade")
    head = (
        f',\n    "year": {json.dumps(force.year)},\n    "scale": '
        f'{json.dumps(force.scale.code, ensure_ascii=False)},\n    "status": '
    )
    status = block["status"] if "status" in block.columns else None
    parts: list[Any] = [
        _lit('  {\n    "uscc": '),
        _json_strings(block["uscc"]),
        _lit(',\n    "name": '),
        _json_strings(block["name"]),
        _lit(head),
        _json_strings(status) if status is not None else _lit('"operating"'),
        _lit(',\n    "score": '),
        pc.cast(pa.array(block["score"], type=pa.int64(), from_pandas=True), pa.large_string()),
        _lit(',\n    "grade": '),
        _json_strings(grades),
        _lit(',\n    "grade_label": '),
        pa.array(grades.map(labels).to_numpy(dtype=object), type=pa.large_string()),
        _lit(',\n    "vetoed": '),
        pc.if_else(
            pa.array(block["vetoed"], type=pa.bool_(), from_pandas=True), "true", "false"
        ).cast(pa.large_string()),
        _lit(',\n    "vetoes": '),
        _json_vetoes(block["vetoes"]),
        _lit(',\n    "points": {\n'),
    ]
    for n, code in enumerate(codes):
        separator = "" if n == 0 else ",\n"
        parts.append(_lit(f"{separator}      {json.dumps(code, ensure_ascii=False)}: "))
        parts.append(
            pc.cast(pa.array(block[code], type=pa.int64(), from_pandas=True), pa.large_string())
        )
    parts.append(_lit("\n    }\n  }"))
    return pc.binary_join_element_wise(*parts, _lit(""))


def _json_closed(block: pd.DataFrame, force: RulesInForce) -> pa.Array:
    head = (
        f',\n    "year": {json.dumps(force.year)},\n    "scale": '
        f'{json.dumps(force.scale.code, ensure_ascii=False)},\n    "status": '
    )
    parts = [
        _lit('  {\n    "uscc": '),
        _json_strings(block["uscc"]),
        _lit(',\n    "name": '),
        _json_strings(block["name"]),
        _lit(head),
        _json_strings(block["status"]),
        _lit(',\n    "score": null,\n    "grade": null,\n    "reason": '),
        _json_strings(block["reason"]),
        _lit("\n  }"),
    ]
    return pc.binary_join_element_wise(*parts, _lit(""))


def write_json(
    rating: pd.DataFrame,
    force: RulesInForce,
    out: BinaryIO,
    progress: Progress | None = None,
) -> bool:
    """Write `render.as_json(rating, force)` and a line end (as `print` does) to `out`;
    False (nothing written) when the frame is not one this writer knows exactly."""
    codes = [i.code for i in force.indicators]
    needed = {"uscc", "name", "score", "grade", "vetoed", "vetoes", *codes}
    if not codes or not needed <= set(rating.columns):
        return False
    ranks = order(rating)
    closed = (
        rating["status"].eq("closed").to_numpy(dtype=bool, na_value=False)
        if "status" in rating.columns
        else np.zeros(len(rating), dtype=bool)
    )
    ranked_closed = closed[ranks]
    rated = int((~ranked_closed).sum())
    # Closed rows have no score: ranked last. Anything else is written the old way.
    if ranked_closed[:rated].any() or (closed.any() and "reason" not in rating.columns):
        return False
    if rating["score"].iloc[ranks[:rated]].isna().any():
        return False
    try:  # every block checked before anything is written (a grade without a label)
        _json_rated(rating.iloc[ranks[:0]], force, codes)
        if not set(rating["grade"].iloc[ranks[:rated]].astype(str).unique()) <= {
            b.grade for b in force.bands
        }:
            return False
    except (KeyError, pa.ArrowException, TypeError, ValueError):
        return False
    if len(ranks) == 0:
        out.write(b"[]\n")
        return True
    out.write(b"[\n")
    for start in range(0, len(ranks), BLOCK):
        positions = ranks[start : start + BLOCK]
        split = max(0, min(rated - start, len(positions)))
        pieces = []
        if split:
            pieces.append(_json_rated(rating.iloc[positions[:split]], force, codes))
        if split < len(positions):
            pieces.append(_json_closed(rating.iloc[positions[split:]], force))
        records = pa.chunked_array(pieces).combine_chunks() if len(pieces) > 1 else pieces[0]
        last = start + len(positions) >= len(ranks)
        ends = np.full(len(records), ",\n", dtype=object)
        if last:
            ends[-1] = "\n]\n"
        _write_lines(
            pc.binary_join_element_wise(records, pa.array(ends, pa.large_string()), _lit("")), out
        )
        if progress is not None:
            progress(len(positions))
    return True


def write(rating: pd.DataFrame, force: RulesInForce, form: str, progress: Progress) -> bool:
    """`rating` as `form` ("csv" or "json") on stdout, as the renderers would print it; False
    (nothing written) when stdout is not UTF-8 text or the frame is not one written here."""
    stdout = sys.stdout
    buffer = getattr(stdout, "buffer", None)
    if buffer is None or codecs.lookup(stdout.encoding or "ascii").name != "utf-8":
        return False
    stdout.flush()
    if form == "csv":
        done = write_csv(rating, buffer, progress)
    elif form == "json":
        done = write_json(rating, force, buffer, progress)
    else:
        return False
    buffer.flush()
    return done
