"""Explanations as JSON text, at district or national scale: byte for byte what
`Explanation.model_dump_json()` writes (`scoring.explain`), without building the models.

A snapshot stores each institution's explanation as that JSON text, and its content hash covers
the text, so it must not change by a byte. Building ~30 pydantic models per institution and
serialising them dominates computing a city's year; here the parts every institution shares
(an indicator's code, title, reference, points…) are written once, and each institution only
adds its own numbers and findings. `tests/test_explain_json.py` compares the two on districts
with every kind of finding (vetoes, revoked, dated before the measure came into force).

Strings are escaped as pydantic writes them (UTF-8 as is; `"`, `\\` and control characters
escaped, the latter as `\\b \\t \\n \\f \\r` or `\\u00xx`), which is exactly the escaping of
`json`'s `ensure_ascii=False` encoder.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from json.encoder import encode_basestring
from typing import Any

import pandas as pd

from scoring.explain import FINDING_FIELDS, INSTITUTION_FIELDS, _digest, in_year, not_counted_reason
from scoring.rules import RulesInForce

CHUNK = 5_000
"""Institutions whose records are held as Python objects at once."""


def _s(value: Any) -> str:
    return str(encode_basestring(str(value)))


def _opt(value: Any) -> str:
    if value is None:
        return "null"
    return _s(value) if isinstance(value, str) else str(int(value))


def records_of(frame: pd.DataFrame, fields: Sequence[str]) -> list[dict[str, Any]]:
    """`scoring.explain`'s plain records (dates as ISO text, counts as int), column by column."""
    present = [f for f in fields if f in frame.columns]
    columns = []
    for field in present:
        column = frame[field]
        if field == "occurred_on":
            column = column.dt.strftime("%Y-%m-%d")
        elif field == "count":
            column = column.astype("int64")
        columns.append(column.tolist())
    return [dict(zip(present, values, strict=True)) for values in zip(*columns, strict=True)]


def findings_by_uscc(findings: pd.DataFrame, year: int) -> dict[str, list[dict[str, Any]]]:
    """The findings dated in `year` (any status), as records, by institution, in frame order."""
    by_uscc: dict[str, list[dict[str, Any]]] = {}
    for record in records_of(in_year(findings, year), FINDING_FIELDS):
        by_uscc.setdefault(record["uscc"], []).append(record)
    return by_uscc


class ExplanationWriter:
    """Writes one institution's explanation at a time, from its rated row and its findings."""

    def __init__(self, force: RulesInForce) -> None:
        self.force = force
        self.counts_from = force.counts_from
        self.labels = {b.grade: b.label for b in force.bands}
        self.indicators = [
            (
                i.code,
                i.points,
                "{"
                f'"code":{_s(i.code)},"number":{int(i.rule.number)},"title":{_s(i.rule.title)},'
                f'"reference":{_s(i.rule.reference)},"status":{_s(i.rule.status.value)},'
                f'"mode":{_s(i.rule.mode.value)},'
                f'"unit":{_opt(i.rule.unit.value if i.rule.unit else None)},'
                f'"deduction":{_opt(i.deduction)},"points":{int(i.points)},"kept":',
            )
            for i in force.indicators
        ]
        self.vetoes = [
            (
                v.code,
                "{"
                f'"code":{_s(v.code)},"title":{_s(v.title)},"reference":{_s(v.reference)},'
                f'"status":{_s(v.status.value)},"findings":[',
            )
            for v in force.vetoes
        ]
        self.tail = (
            f',"ruleset_version":{_s(force.version)},"rules_hash":{_s(force.content_hash)},'
            '"input_digest":'
        )
        self._indicator_cache: dict[tuple[int, int], tuple[str, str]] = {}
        self.head = f',"year":{int(force.year)},"scale":{_s(force.scale.code)},"score":'

    def write(
        self,
        row: dict[str, Any],
        institution: dict[str, Any],
        findings: list[dict[str, Any]],
    ) -> str:
        """The explanation's JSON: `row` of the rating (uscc, name, score, grade, vetoed and
        points kept per indicator code), `institution` its record, `findings` its records of
        the year."""
        return self.write_escaped(row, institution, findings)[0]

    def write_escaped(
        self,
        row: dict[str, Any],
        institution: dict[str, Any],
        findings: list[dict[str, Any]],
    ) -> tuple[str, str]:
        """`write`'s text, and the same text escaped as a JSON string escapes it (without the
        quotes): what a snapshot's content hash covers, made from pieces escaped once."""
        by_code: dict[str, list[str]] = {}
        not_counted = []
        for record in findings:
            cited = _cite(record)
            reason = not_counted_reason(
                str(record["status"]), date.fromisoformat(record["occurred_on"]), self.force
            )
            if reason is not None:
                not_counted.append('{"finding":' + cited + ',"reason":' + _s(reason) + "}")
            else:
                by_code.setdefault(record["indicator"], []).append(cited)
        grade = str(row["grade"])
        head = (
            f'{{"uscc":{_s(row["uscc"])},"name":{_s(row["name"])}{self.head}{int(row["score"])},'
            f'"grade":{_s(grade)},"grade_label":{_s(self.labels[grade])},'
            f'"vetoed":{"true" if row["vetoed"] else "false"},"vetoes":['
        )
        plain = [head]
        escaped = [_e(head)]
        if by_code:
            vetoes = ",".join(
                prefix + ",".join(by_code[code]) + "]}"
                for code, prefix in self.vetoes
                if code in by_code
            )
            plain.append(vetoes)
            escaped.append(_e(vetoes))
        plain.append('],"indicators":[')
        escaped.append(_e('],"indicators":['))
        cache = self._indicator_cache
        for index, (code, points, prefix) in enumerate(self.indicators):
            kept = int(row[code])
            comma = "," if index else ""
            found = by_code.get(code)
            if found is None:  # the common case: no finding, a piece written once
                key = (index, kept)
                pieces = cache.get(key)
                if pieces is None:
                    text = f'{comma}{prefix}{kept},"lost":{points - kept},"findings":[]}}'
                    pieces = cache[key] = (text, _e(text))
                plain.append(pieces[0])
                escaped.append(pieces[1])
            else:
                text = (
                    f'{comma}{prefix}{kept},"lost":{points - kept},"findings":['
                    + ",".join(found)
                    + "]}"
                )
                plain.append(text)
                escaped.append(_e(text))
        tail = (
            f'],"not_counted":[{",".join(not_counted)}]'
            f"{self.tail}{_s(_digest(self.force.year, [institution], findings))}}}"
        )
        plain.append(tail)
        escaped.append(_e(tail))
        return "".join(plain), "".join(escaped)


def _e(text: str) -> str:
    """`text` escaped as in a JSON string, without the quotes."""
    return str(encode_basestring(text))[1:-1]


def _cite(record: dict[str, Any]) -> str:
    return (
        f'{{"finding_id":{_s(record["finding_id"])},'
        f'"occurred_on":"{date.fromisoformat(record["occurred_on"]).isoformat()}",'
        f'"count":{int(record["count"])},"source":{_s(record["source"])},'
        f'"reference":{_s(record["reference"])},"status":{_s(record["status"])},'
        f'"note":{_s(record["note"])}}}'
    )


def explanation_texts(
    institutions: pd.DataFrame,
    findings: pd.DataFrame,
    rating: pd.DataFrame,
    force: RulesInForce,
) -> Iterator[str]:
    """Each institution's explanation as JSON text, in the order of `institutions` (see
    `escaped_explanation_texts`)."""
    for text, _escaped in escaped_explanation_texts(institutions, findings, rating, force):
        yield text


def escaped_explanation_texts(
    institutions: pd.DataFrame,
    findings: pd.DataFrame,
    rating: pd.DataFrame,
    force: RulesInForce,
) -> Iterator[tuple[str, str]]:
    """Each institution's explanation as JSON text, in the order of `institutions`, from
    `rating` (the engine's rating of exactly those institutions, in the same order):
    what `explain_all(...)[k].model_dump_json()` gives, `CHUNK` institutions at a time; each
    with the text escaped as a JSON string escapes it (`ExplanationWriter.write_escaped`)."""
    writer = ExplanationWriter(force)
    by_uscc = findings_by_uscc(findings, force.year)
    institutions = institutions.reset_index(drop=True)
    columns = ["uscc", "name", "score", "grade", "vetoed", *(i.code for i in force.indicators)]
    for start in range(0, len(institutions), CHUNK):
        part = institutions.iloc[start : start + CHUNK]
        rated = records_of(rating.iloc[start : start + CHUNK], columns)
        for row, institution in zip(rated, records_of(part, INSTITUTION_FIELDS), strict=True):
            yield writer.write_escaped(row, institution, by_uscc.get(institution["uscc"], []))
