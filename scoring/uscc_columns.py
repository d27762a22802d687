"""Credit codes as bytes and numbers, so millions of findings find their institution fast.

Matching ten million 18-character strings through a string hash table takes ten seconds or
more; reading the codes' bytes straight from their Arrow buffer and matching one 64-bit number
per code takes well under one. Every number match is confirmed byte for byte, so the result is
exactly that of matching the strings.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.uscc import ALPHABET, DEPARTMENTS, DIGITS, LENGTH, ORGANISATION_WEIGHTS, WEIGHTS

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]

# Odd 64-bit multipliers that spread the three parts of a code over a 64-bit hash.
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))


def code_matrix(
    codes: pd.Series | pd.Index | npt.ArrayLike,
) -> tuple[BoolArray, npt.NDArray[np.uint8]]:
    """Which codes are 18 bytes long (UTF-8), and those codes' bytes as an (m, 18) matrix.

    The matrix is read from the Arrow buffer of the column: no Python string per cell.
    """
    array = pa.array(codes, type=pa.large_string(), from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    fits = np.array(pc.equal(pc.binary_length(array), LENGTH).fill_null(False), dtype=bool)
    if not fits.any():
        return fits, np.empty((0, LENGTH), dtype=np.uint8)
    if not fits.all():
        array = array.filter(pa.array(fits))
    start = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)
    return fits, data[start : start + LENGTH * len(array)].reshape(-1, LENGTH)


_VALUE = np.full(256, -1, dtype=np.int8)  # byte -> character value, -1 outside the alphabet
_VALUE[[ord(ch) for ch in ALPHABET]] = np.arange(len(ALPHABET))
_WEIGHTS = np.array(WEIGHTS, dtype=np.int64)
_DEPARTMENT = np.zeros(256, dtype=bool)  # byte -> allowed in position 1
_DEPARTMENT[[ord(ch) for ch in DEPARTMENTS]] = True
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[[ord(ch) for ch in DIGITS]] = True
# byte -> GB 11714 value (digits 0-9, letters A=10 ... Z=35); -1 for anything else
_ORGANISATION_VALUE = np.full(256, -1, dtype=np.int64)
_ORGANISATION_VALUE[[ord(ch) for ch in DIGITS]] = np.arange(10)
_ORGANISATION_VALUE[ord("A") : ord("Z") + 1] = np.arange(10, 36)
_ORGANISATION_WEIGHTS = np.array(ORGANISATION_WEIGHTS, dtype=np.int64)
_ORGANISATION_CHECK = np.frombuffer(b"?123456789X0", dtype=np.uint8)  # 11 - sum % 11 -> byte


def valid(codes: pd.Series | npt.ArrayLike) -> BoolArray:
    """`scoring.uscc.is_valid` for a whole column at once: structure and check character.

    A code with a non-ASCII character is longer than 18 bytes or holds a byte outside the
    alphabet, so it is invalid here exactly as it is there.
    """
    ok, matrix = code_matrix(codes)
    values = _VALUE[matrix].astype(np.int64)
    check = (31 - (values[:, :17] @ _WEIGHTS) % 31) % 31
    ok[ok] = (
        (values >= 0).all(axis=1)
        & _DEPARTMENT[matrix[:, 0]]
        & _DIGIT[matrix[:, 1:8]].all(axis=1)
        & (check == values[:, 17])
    )
    return ok


def organisation_valid(codes: pd.Series | npt.ArrayLike) -> BoolArray:
    """For each code, whether positions 9–17 pass the GB 11714 organisation code check.

    `scoring.uscc.organisation_code_problem(code) is None` for a whole column; codes that are
    not 18 bytes long are False (check them with `valid` first).
    """
    ok, matrix = code_matrix(codes)
    values = _ORGANISATION_VALUE[matrix[:, 8:16]]
    check = 11 - (values @ _ORGANISATION_WEIGHTS) % 11
    ok[ok] = (values >= 0).all(axis=1) & (_ORGANISATION_CHECK[check] == matrix[:, 16])
    return ok


def registered_in(
    codes: pd.Series | npt.ArrayLike, districts: pd.Series | npt.ArrayLike
) -> BoolArray:
    """For each code, whether its positions 3–8 equal the district code of the same row."""
    array = pa.array(codes, type=pa.large_string(), from_pandas=True)
    division = pc.utf8_slice_codeunits(array, 2, 8)
    district = pa.array(districts, type=pa.large_string(), from_pandas=True)
    return np.asarray(pc.equal(division, district).fill_null(False), dtype=bool)


def listed(codes: pd.Series | npt.ArrayLike, known: pd.Series | npt.ArrayLike) -> BoolArray:
    """Exactly `codes.isin(known)`, fast for ten million codes against a million."""
    return positions(codes, pd.Series(known).drop_duplicates()) >= 0


_PARTS = np.dtype([("head", "<u8"), ("middle", "<u8"), ("tail", "<u2")])
"""An 18-byte code as three integers, read in place (unaligned fields are fine in numpy)."""


def _parts(matrix: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint64], ...]:
    """A code's 18 bytes as three integers (8 + 8 + 2 bytes): equal parts, equal codes.

    Views of the matrix, not copies: copying three columns of ten million codes cost more
    than hashing them.
    """
    words = np.ascontiguousarray(matrix).reshape(-1).view(_PARTS)
    return words["head"], words["middle"], words["tail"]


def _hash(parts: tuple[npt.NDArray[np.uint64], ...]) -> npt.NDArray[np.uint64]:
    mixed = parts[0] * _MIX[0]
    mixed ^= parts[1] * _MIX[1]
    mixed ^= parts[2].astype(np.uint64) * _MIX[2]
    return mixed


def positions(codes: pd.Series | npt.ArrayLike, within: pd.Series | npt.ArrayLike) -> IntArray:
    """For each code, its position in `within` (whose codes are unique), or -1 when absent.

    Exactly `pd.Index(within).get_indexer(codes)`, computed on 64-bit hashes of the codes'
    bytes and confirmed byte for byte; codes that are not 18 bytes long, and any hash that two
    different codes of `within` share, fall back to matching the text.
    """
    codes = pd.Series(codes) if not isinstance(codes, pd.Series) else codes
    within = pd.Series(within) if not isinstance(within, pd.Series) else within
    result = np.full(len(codes), -1, dtype=np.intp)
    if len(within) == 0:  # nothing to find: every code is absent
        return result
    fits_within, matrix_within = code_matrix(within)
    fits, matrix = code_matrix(codes)
    # Contiguous copies of the (smaller) list: it is gathered from at random below.
    parts_within = tuple(np.ascontiguousarray(p) for p in _parts(matrix_within))
    hashes_within = pd.Index(_hash(parts_within))
    if fits_within.all() and hashes_within.is_unique and fits.any():
        parts = _parts(matrix)
        found = hashes_within.get_indexer(pd.Index(_hash(parts)))
        hit = found >= 0
        candidate = np.maximum(found, 0)
        same = hit.copy()  # not `hit` itself: `&=` below would change `hit` too
        for mine, theirs in zip(parts, parts_within, strict=True):
            same &= mine == theirs[candidate]
        # Every listed code fits here, so a match's position in `within` is `found` itself.
        confirmed = np.where(same, found, -1)
        if fits.all():
            result = confirmed
            unsure = np.flatnonzero(hit & ~same)  # a hash shared by two codes: ask the text
        else:
            rows = np.flatnonzero(fits)
            result[rows] = confirmed
            unsure = rows[hit & ~same]
    else:
        unsure = np.flatnonzero(fits)
    rest = np.concatenate([np.flatnonzero(~fits), unsure])
    if len(rest):
        result[rest] = pd.Index(within).get_indexer(pd.Index(codes.iloc[rest]))
    return result
