"""`scoring.text_columns.duplicated` is exactly pandas' `duplicated(keep=False)`."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.text_columns import duplicated

# Short alphabets make repeats likely; lengths cross the 8-byte words the hash reads.
values = st.text(alphabet="ab中\x00 é1", max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=60), st.integers(0, 5))
def test_duplicated_is_pandas_duplicated(cells: list[str], cut: int) -> None:
    text = pd.Series(cells, dtype="str")
    for part in (text, text.iloc[cut:]):  # a slice shares the buffer with an offset
        assert duplicated(part).tolist() == part.duplicated(keep=False).tolist()


def test_missing_values_and_long_values_fall_back_to_pandas() -> None:
    for cells in (["a", None, None, "a"], ["x" * 200, "x" * 200, "y"], []):
        text = pd.Series(cells, dtype="str")
        assert duplicated(text).tolist() == text.duplicated(keep=False).tolist()


def test_values_in_increasing_order_are_distinct_without_hashing() -> None:
    for cells in (["a", "b", "c"], ["SY-1", "SY-2", "SY-3"], ["a", "a"], ["b", "a", "b"], ["x"]):
        text = pd.Series(cells, dtype="str")
        assert duplicated(text).tolist() == text.duplicated(keep=False).tolist()
