"""A snapshot stores explanations in parts (`scoring.explain_parts`): joined again, they are the
models `explain_all` gives, equal field for field and byte for byte as JSON; and the content hash
taken row by row as the rows are made is `integrity.content_hash` of the finished rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pandas as pd
import pytest

from scoring.explain import Explanation, explain_all
from scoring.explain_parts import Explainer
from scoring.input_files import read_inputs
from scoring.lift import lift
from scoring.shipped import SAMPLE_FINDINGS, SAMPLE_INSTITUTIONS, load_rules
from scoring.synthetic import synthetic_district
from service.ratings import integrity
from service.ratings.publishing import rate_rows, rated_rows

RULES = load_rules()


def stored_explanations(
    institutions: pd.DataFrame, findings: pd.DataFrame, year: int
) -> Iterator[Explanation]:
    """Each rated institution's explanation as a snapshot stores it and serves it again: joined
    into the model, and written as text (checked to be the model's JSON)."""
    header, rows = rate_rows(institutions, findings, RULES, year, "four")
    explainer = Explainer(header["explanation_parts"])
    force = RULES.in_force(year, "four")
    for row in rows:
        explanation = explainer.explanation(row, row["explanation"])
        assert explainer.json(row, row["explanation"]) == explanation.model_dump_json()
        assert lift(explainer.figures(row, row["explanation"]), force.bands) == lift(
            explanation, force.bands
        )
        yield explanation


def _both(institutions: pd.DataFrame, findings: pd.DataFrame, year: int) -> None:
    force = RULES.in_force(year, "four")
    models = {e.uscc: e for e in explain_all(institutions, findings, force, year)}
    joined = list(stored_explanations(institutions, findings, year))
    closed = set(institutions.loc[institutions["status"] == "closed", "uscc"])
    assert sorted(e.uscc for e in joined) == sorted(set(models) - closed)  # closed: not rated
    for explanation in joined:
        model = models[explanation.uscc]
        assert explanation == model
        assert explanation.model_dump_json() == model.model_dump_json()


@pytest.mark.parametrize("year", [2022, 2023, 2024])
def test_explanations_are_the_models_json_on_a_synthetic_district(year: int) -> None:
    institutions, findings = synthetic_district(1_500, 6_000, year=year, seed=year, rules=RULES)
    assert (findings["status"] != "active").any()  # revoked findings: listed as not counted
    _both(institutions, findings, year)


def test_explanations_are_the_models_json_on_the_sample() -> None:
    institutions, findings = read_inputs(SAMPLE_INSTITUTIONS, SAMPLE_FINDINGS, rules=RULES)
    _both(institutions, findings, 2023)


def test_text_that_must_be_escaped_is_escaped_as_pydantic_escapes_it() -> None:
    institutions, findings = synthetic_district(40, 200, year=2023, seed=5, rules=RULES)
    awkward = ['引号"与\\反斜杠', "换行\n制表\t回车\r", "控制\x01\x1f\x7f字符", "emoji 🎓 ü"]
    institutions["name"] = [awkward[i % len(awkward)] + str(i) for i in range(len(institutions))]
    findings["note"] = [awkward[i % len(awkward)] for i in range(len(findings))]
    findings["source"] = [awkward[(i + 1) % len(awkward)] for i in range(len(findings))]
    _both(institutions, findings, 2023)


def test_findings_dated_before_the_measure_are_listed_as_not_counted() -> None:
    force = RULES.in_force(2022, "four")
    assert force.counts_from > date(2022, 1, 1)  # in force from December 2022
    institutions, findings = synthetic_district(200, 2_000, year=2022, seed=9, rules=RULES)
    assert (findings["occurred_on"].dt.date < force.counts_from).any()
    _both(institutions, findings, 2022)


def test_the_hash_taken_row_by_row_is_the_content_hash() -> None:
    institutions, findings = synthetic_district(2_000, 3_000, year=2023, seed=1, rules=RULES)
    institutions.loc[institutions.index[:30], "status"] = "closed"  # listed as not rated
    institutions.loc[institutions.index[30:60], "status"] = "suspended"  # rows marked
    header, rows = rate_rows(institutions, findings, RULES, 2023, "four")
    assert header["not_rated"] and any(r["status"] for r in rows)
    hasher = integrity.ContentHasher(header)
    for row in rows:
        hasher.add(row)
    assert hasher.hexdigest() == integrity.content_hash(header, rows)


def test_rows_out_of_order_are_refused() -> None:
    header, rows = rated_rows(
        *synthetic_district(20, 10, year=2023, seed=2, rules=RULES), RULES, 2023, "four"
    )
    hasher = integrity.ContentHasher(header)
    first, second, *_ = list(rows)
    hasher.add(second)
    with pytest.raises(ValueError, match="out of uscc order"):
        hasher.add(first)


def test_lifts_scores_are_those_of_a_full_recount() -> None:
    """`scoring.lift` corrects only the indicators a revocation touches: each set it lists
    scores what recounting every indicator gives."""
    from scoring.lift import _score_without, lift

    force = RULES.in_force(2023, "four")
    institutions, findings = synthetic_district(300, 1_000, year=2023, seed=11, rules=RULES)
    checked = 0
    for explanation in stored_explanations(institutions, findings, 2023):
        for revocation in lift(explanation, force.bands).revocations:
            recount = _score_without(explanation.indicators, set(revocation.finding_ids))
            assert revocation.score == recount
            checked += 1
    assert checked > 50
