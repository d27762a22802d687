"""Whole-column operations on text held by Arrow, for ten million values at a time.

`duplicated` is exactly `pd.Series.duplicated(keep=False)` for a text column: hashing ten
million strings in a hash table of strings (pandas, Arrow) cost about as much as reading
them. Here each string's bytes are read eight at a time straight from the Arrow buffer and
mixed into a 64-bit hash (numpy, one gather per eight bytes of the longest value); rows whose
hash is unique (found by sorting the hashes) are not duplicates; the few others (true
duplicates, and any two values that share a hash) are decided by pandas on their text alone,
so the result is exact. Values already in strictly increasing order (ids numbered as the
file goes) are known to be distinct without hashing.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

BoolArray = npt.NDArray[np.bool_]

_MIX = np.uint64(0x9E3779B97F4A7C15)
_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [2**64 - 1], dtype=np.uint64)
"""The low n bytes of a word, n = 0..8."""
_MOST_WORDS = 16
"""Values longer than this many 8-byte words are left to pandas (ids are short)."""


def duplicated(text: pd.Series) -> BoolArray:
    """`text.duplicated(keep=False)` as a boolean array: every row whose value appears twice
    or more (missing values are equal to each other, as in pandas)."""
    if _strictly_ordered(text):  # ids numbered in file order: no value twice, nothing to hash
        return np.zeros(len(text), dtype=bool)
    hashes = _hashes(text)
    if hashes is None:
        return np.asarray(text.duplicated(keep=False), dtype=bool)
    ordered = np.sort(hashes)
    shared = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(shared):  # every hash once: no value twice
        return np.zeros(len(text), dtype=bool)
    candidates = np.isin(hashes, shared)
    result = np.zeros(len(text), dtype=bool)
    if candidates.any():
        rows = np.flatnonzero(candidates)
        result[rows] = np.asarray(
            text.iloc[rows].reset_index(drop=True).duplicated(keep=False), dtype=bool
        )
    return result


def _strictly_ordered(text: pd.Series) -> bool:
    """Whether every value is greater than the one before (so no value is there twice):
    one comparison of neighbours by Arrow, a twentieth of hashing them."""
    if not isinstance(text.dtype, pd.StringDtype) or text.dtype.storage != "pyarrow":
        return False
    array = pa.array(text, from_pandas=True)
    if array.null_count or len(array) < 2:
        return False
    return bool(pc.all(pc.less(array[:-1], array[1:])).as_py())


def _hashes(text: pd.Series) -> npt.NDArray[np.uint64] | None:
    """A 64-bit hash of each value's bytes and length (None: not Arrow text, or values too
    long, or nulls: left to pandas)."""
    if not isinstance(text.dtype, pd.StringDtype) or text.dtype.storage != "pyarrow":
        return None
    array = pa.array(text, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count or not (
        pa.types.is_large_string(array.type) or pa.types.is_string(array.type)
    ):
        return None
    size = len(array)
    kind = np.int64 if pa.types.is_large_string(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], dtype=kind)[
        array.offset : array.offset + size + 1
    ].astype(np.int64)
    lengths = np.diff(offsets)
    longest = int(lengths.max()) if size else 0
    words = (longest + 7) // 8
    if words > _MOST_WORDS:
        return None
    data = array.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    padded = np.zeros(len(raw) + 8, dtype=np.uint8)  # every 8-byte read stays inside
    padded[: len(raw)] = raw
    # Every byte position as the start of a little-endian 8-byte word (unaligned, no copy).
    word_at = np.ndarray(
        shape=(len(raw) + 1,), dtype="<u8", buffer=padded.data, offset=0, strides=(1,)
    )
    mixed = lengths.astype(np.uint64) * _MIX
    starts = offsets[:-1]
    for k in range(words):
        # The value's own bytes of this word only (the next value's are masked off).
        own = _MASKS[np.clip(lengths - 8 * k, 0, 8)]
        word = word_at[np.minimum(starts + 8 * k, len(raw))] & own
        mixed = (mixed ^ word) * _MIX
        mixed ^= mixed >> np.uint64(29)
    return mixed
