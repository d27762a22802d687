"""Why an institution got its grade: every point kept and lost, and the findings that cost them.

A supervisor must be able to defend each grade line by line, and an institution objecting to
its grade must see exactly which findings were counted. The numbers come from the engine
itself (the institution is rated with `scoring.engine.rate`), so an explanation can never
disagree with the rating it explains; this module only attaches the findings and references.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from scoring.engine import dated_in, rate
from scoring.errors import UnknownInstitution
from scoring.hashing import canonical_json, quoted, sha256_hex
from scoring.inputs import FINDING_COLUMNS, INSTITUTION_COLUMNS
from scoring.rules import RuleSet, RulesInForce

INSTITUTION_FIELDS = INSTITUTION_COLUMNS.order
FINDING_FIELDS = FINDING_COLUMNS.order


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FindingCited(_Model):
    finding_id: str
    occurred_on: date
    count: int
    source: str
    reference: str
    status: str
    note: str


class IndicatorExplanation(_Model):
    code: str
    number: int
    title: str
    reference: str
    status: str  # confirmed | provisional
    mode: str  # all | per
    unit: str | None
    deduction: int | None
    points: int
    kept: int
    lost: int
    findings: list[FindingCited]


class VetoExplanation(_Model):
    code: str
    title: str
    reference: str
    status: str
    findings: list[FindingCited]


class NotCounted(_Model):
    finding: FindingCited
    reason: str


class Explanation(_Model):
    uscc: str
    name: str
    year: int
    scale: str
    score: int
    grade: str
    grade_label: str
    vetoed: bool
    vetoes: list[VetoExplanation]
    indicators: list[IndicatorExplanation]
    not_counted: list[NotCounted]
    ruleset_version: str
    rules_hash: str
    input_digest: str


def in_year(findings: pd.DataFrame, year: int) -> pd.DataFrame:
    """Findings dated in `year`, whatever their status: the inputs of that year's rating."""
    return findings[dated_in(findings, year)]


def input_digest(institutions: pd.DataFrame, findings: pd.DataFrame, year: int) -> str:
    """sha256 of the inputs of `year`'s rating, independent of row order.

    Covers every institution field and every finding dated in `year` (revoked ones included:
    they are part of the record). Findings of other years are not inputs of this year, so
    adding next year's findings leaves this year's digest, and its snapshot, unchanged.
    """
    return digest_of_lines(
        year,
        record_lines(institutions, INSTITUTION_FIELDS),
        record_lines(in_year(findings, year), FINDING_FIELDS),
    )


def digest_of_lines(year: int, institutions: list[str], findings: list[str]) -> str:
    """sha256 of the "ordered" canonical JSON (`scoring.hashing`) of
    `{"year": year, "institutions": lines, "findings": lines}`, the lines sorted, each a
    record's own "ordered" JSON (`record_lines`): written directly, as a city's year takes one
    digest per institution besides the whole."""

    def listed(lines: list[str]) -> str:
        return ", ".join(map(quoted, sorted(lines)))

    text = (
        f'{{"year": {int(year)}, "institutions": [{listed(institutions)}], '
        f'"findings": [{listed(findings)}]}}'
    )
    return "sha256:" + sha256_hex(text)


def record_lines(frame: pd.DataFrame, fields: Iterable[str]) -> list[str]:
    """Each record of `frame` (`records`) as its "ordered" canonical JSON, column by column: a
    column of text or whole numbers is written at once, anything else as `json` writes it."""
    present = [f for f in fields if f in frame.columns]
    return _lines(present, _columns(frame, present))


def records(frame: pd.DataFrame, fields: Iterable[str]) -> list[dict[str, Any]]:
    """Plain records of the given fields (those `frame` has), dates as ISO text, counts as
    int, column by column."""
    present = [f for f in fields if f in frame.columns]
    return _records(present, _columns(frame, present))


def records_and_lines(
    frame: pd.DataFrame, fields: Iterable[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """`records` and `record_lines` of `frame`, its columns read once for both."""
    present = [f for f in fields if f in frame.columns]
    columns = _columns(frame, present)
    return _records(present, columns), _lines(present, columns)


def _records(present: list[str], columns: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(present, values, strict=True)) for values in zip(*columns, strict=True)]


def _lines(present: list[str], columns: list[list[Any]]) -> list[str]:
    written = []
    for values in columns:
        kinds = set(map(type, values))
        if kinds <= {str}:
            written.append(list(map(quoted, values)))
        elif kinds <= {int}:
            written.append(list(map(int.__repr__, values)))
        else:  # rare (a missing value): record by record
            return [canonical_json(r, "ordered") for r in _records(present, columns)]
    template = "{" + ", ".join(f"{quoted(f)}: %s" for f in present) + "}"
    return [template % values for values in zip(*written, strict=True)]


def _columns(frame: pd.DataFrame, present: list[str]) -> list[list[Any]]:
    """The columns of `records`, as lists of Python values."""
    columns = []
    for name in present:  # column by column: many times faster than to_dict("records")
        column = frame[name]
        if name == "occurred_on":
            column = column.dt.strftime("%Y-%m-%d")
        elif name == "count":
            column = column.astype("int64")
        values = column.tolist()  # Python values, but a column of objects may hold numpy's
        if column.dtype == object and any(
            issubclass(k, np.generic) for k in set(map(type, values))
        ):
            values = [_plain(v) for v in values]
        columns.append(values)
    return columns


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def explain(
    institutions: pd.DataFrame,
    findings: pd.DataFrame,
    rules: RuleSet | RulesInForce,
    year: int,
    uscc: str,
    *,
    scale: str | None = None,
) -> Explanation:
    """Explain one institution's rating for `year`."""
    mine = institutions[institutions["uscc"] == uscc]
    if mine.empty:
        raise UnknownInstitution(uscc)
    return explain_all(mine, findings[findings["uscc"] == uscc], rules, year, scale=scale)[0]


def explain_all(
    institutions: pd.DataFrame,
    findings: pd.DataFrame,
    rules: RuleSet | RulesInForce,
    year: int,
    *,
    scale: str | None = None,
) -> list[Explanation]:
    """Explain every institution, in the order of the institution list.

    The district is rated once by the engine; each explanation then reads its row and attaches
    the institution's own findings of the year.
    """
    force = rules if isinstance(rules, RulesInForce) else rules.in_force(year, scale)
    institutions = institutions.reset_index(drop=True)
    rating = rate(institutions, findings, force)
    of_year = in_year(findings, year)
    by_uscc: dict[str, list[dict[str, Any]]] = {}
    for record in records(of_year, FINDING_FIELDS):
        by_uscc.setdefault(record["uscc"], []).append(record)
    return [
        _explain(row, institution, by_uscc.get(row["uscc"], []), force)
        for row, institution in zip(
            rating.to_dict("records"),
            records(institutions, INSTITUTION_FIELDS),
            strict=True,
        )
    ]


def _explain(
    row: dict[Any, Any],
    institution: dict[str, Any],
    findings: list[dict[str, Any]],
    force: RulesInForce,
) -> Explanation:
    """One explanation from the institution's rated row and its findings dated in the year."""
    by_code: dict[str, list[FindingCited]] = {}
    not_counted = []
    for record in findings:
        finding = _cite(record)
        reason = not_counted_reason(finding.status, finding.occurred_on, force)
        if reason is not None:
            not_counted.append(NotCounted(finding=finding, reason=reason))
        else:
            by_code.setdefault(record["indicator"], []).append(finding)
    band = next(b for b in force.bands if b.grade == row["grade"])
    return Explanation(
        uscc=str(row["uscc"]),
        name=str(row["name"]),
        year=force.year,
        scale=force.scale.code,
        score=int(row["score"]),
        grade=str(row["grade"]),
        grade_label=band.label,
        vetoed=bool(row["vetoed"]),
        vetoes=[
            VetoExplanation(
                code=v.code,
                title=v.title,
                reference=v.reference,
                status=v.status.value,
                findings=by_code[v.code],
            )
            for v in force.vetoes
            if v.code in by_code
        ],
        indicators=[
            IndicatorExplanation(
                code=i.code,
                number=i.rule.number,
                title=i.rule.title,
                reference=i.rule.reference,
                status=i.rule.status.value,
                mode=i.rule.mode.value,
                unit=i.rule.unit.value if i.rule.unit else None,
                deduction=i.deduction,
                points=i.points,
                kept=int(row[i.code]),
                lost=i.points - int(row[i.code]),
                findings=by_code.get(i.code, []),
            )
            for i in force.indicators
        ],
        not_counted=not_counted,
        ruleset_version=force.version,
        rules_hash=force.content_hash,
        input_digest=digest_of_lines(
            force.year,
            [canonical_json(institution, "ordered")],
            [canonical_json(f, "ordered") for f in findings],
        ),
    )


def not_counted_reason(status: str, occurred_on: date, force: RulesInForce) -> str | None:
    """Why a finding of the year does not count (None: it counts). Shared with
    `scoring.explain_parts`, which stores the same explanations in parts."""
    if status != "active":
        return f"status {status}: kept on record, not counted"
    if occurred_on < force.counts_from:
        return (
            f"dated before the measure came into force on {force.info.issued_on}: "
            "not counted (not retroactive)"
        )
    return None


def _cite(record: dict[str, Any]) -> FindingCited:
    return FindingCited(
        finding_id=str(record["finding_id"]),
        occurred_on=date.fromisoformat(record["occurred_on"]),
        count=int(record["count"]),
        source=str(record["source"]),
        reference=str(record["reference"]),
        status=str(record["status"]),
        note=str(record["note"]),
    )
