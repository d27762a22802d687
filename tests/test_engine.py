"""Engine edge cases outside what validated input reaches, for direct callers of `rate`."""

from __future__ import annotations

import pandas as pd

from scoring.engine import rate
from scoring.shipped import load_rules

CODE = "52120116MJ0631127X"


def test_a_huge_count_still_takes_all_points_instead_of_overflowing() -> None:
    institutions = pd.DataFrame({"uscc": [CODE], "name": ["天津市西青区示例培训学校"]})
    findings = pd.DataFrame(
        {
            "uscc": [CODE, CODE],
            "indicator": ["licence_valid", "refunds_per_contract"],
            "occurred_on": pd.to_datetime(["2023-06-01", "2023-06-02"]),
            "count": [10**18, 2**62],
            "status": ["active", "active"],
        }
    )
    row = rate(institutions, findings, load_rules(), 2023).iloc[0]
    assert row["licence_valid"] == 0
    assert row["refunds_per_contract"] == 0
    assert row["score"] == 1000 - 30 - 100
    assert row["grade"] == "D"
