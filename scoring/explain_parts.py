"""Explanations in parts: what every explanation of a year shares, stored once, and what is each
institution's own, stored with its row.

An explanation lists every indicator with its title, reference and points, so stored whole it
is several kilobytes per institution (145 MB for a year of 20,000), nearly all of it the same
text; writing, hashing and storing that text was most of the time of computing a city's year.
A snapshot therefore stores:

- once, `shared_parts(force)`: the year, scale, rules' version and hash, the grade labels, and
  each indicator's and veto's description;
- per row, `own_parts(...)`: the findings cited under each indicator or veto, the findings not
  counted and why, and the institution's input digest (its score, grade, vetoes and points
  kept are the row's own columns).

`Explainer(shared).explanation(row, own)` joins them into the `Explanation` that
`scoring.explain.explain_all` gives for the same institution: equal as a model, and so the same
JSON; `.json(row, own)` writes that JSON straight from the parts, and `.figures(row, own)` gives
what `scoring.lift` reads, as plain tuples (`tests/test_explain_parts.py` compares all three with
the models on districts with every kind of finding). The parts are built without a pydantic
model per finding and joined without validation: they are this module's own output, as stored
under the snapshot's content hash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

import pandas as pd

from scoring.explain import (
    FINDING_FIELDS,
    INSTITUTION_FIELDS,
    Explanation,
    FindingCited,
    IndicatorExplanation,
    NotCounted,
    VetoExplanation,
    digest_of_lines,
    in_year,
    not_counted_reason,
    record_lines,
    records_and_lines,
)
from scoring.hashing import canonical_json, quoted
from scoring.rules import RulesInForce


def shared_parts(force: RulesInForce) -> str:
    """What every explanation of a year rated under `force` shares, as canonical JSON: the
    indicators and vetoes as the rules' content hash covers them (`RulesInForce.as_data`)."""
    rules = force.as_data()
    return canonical_json(
        {
            "year": force.year,
            "scale": force.scale.code,
            "ruleset_version": force.version,
            "rules_hash": force.content_hash,
            "labels": {b.grade: b.label for b in force.bands},
            "indicators": rules["indicators"],
            "vetoes": rules["vetoes"],
        }
    )


Found = tuple[dict[str, Any], str]
"""A finding's record (`scoring.explain.records`) and its line (`record_lines`)."""


@dataclass(frozen=True)
class YearInputs:
    """A year's inputs as its digests take them, each record's line written once for both the
    snapshot's input digest and each institution's own."""

    year: int
    institutions: dict[str, str]  # each institution's line, by credit code
    findings: dict[str, list[Found]]  # the findings dated in the year, by institution

    @classmethod
    def of(cls, institutions: pd.DataFrame, findings: pd.DataFrame, year: int) -> YearInputs:
        of_year = in_year(findings, year)
        found: dict[str, list[Found]] = {}
        for record, line in zip(*records_and_lines(of_year, FINDING_FIELDS), strict=True):
            found.setdefault(record["uscc"], []).append((record, line))
        lines = record_lines(institutions, INSTITUTION_FIELDS)
        return cls(year, dict(zip(institutions["uscc"].tolist(), lines, strict=True)), found)

    def digest(self) -> str:
        """`scoring.explain.input_digest` of the year (the credit codes being unique)."""
        findings = [line for found in self.findings.values() for _record, line in found]
        return digest_of_lines(self.year, list(self.institutions.values()), findings)

    def own_parts(self, uscc: str, force: RulesInForce) -> str:
        """The institution's own parts of its explanation, as JSON."""
        return own_parts(self.institutions[uscc], self.findings.get(uscc, []), force)


def own_parts(institution: str, findings: list[Found], force: RulesInForce) -> str:
    """An institution's own parts of its explanation, as JSON: `institution` its record's line
    (`scoring.explain.record_lines`), `findings` those dated in the year, with their lines.

    `{"findings": {code: [finding, …]}, "not_counted": [{"finding": …, "reason": …}],
    "input_digest": …}`, each finding as `FindingCited` writes it; written as text directly (a
    city's year writes one per institution)."""
    cited: dict[str, list[str]] = {}
    not_counted = []
    for record, _line in findings:
        occurred_on = date.fromisoformat(record["occurred_on"])
        cite = _cite_text({**record, "occurred_on": occurred_on.isoformat()})
        reason = not_counted_reason(str(record["status"]), occurred_on, force)
        if reason is not None:
            not_counted.append(f'{{"finding":{cite},"reason":{quoted(reason)}}}')
        else:
            cited.setdefault(str(record["indicator"]), []).append(cite)
    digest = digest_of_lines(force.year, [institution], [line for _record, line in findings])
    found = ",".join(f"{quoted(code)}:[{','.join(cites)}]" for code, cites in cited.items())
    return (
        f'{{"findings":{{{found}}},"not_counted":[{",".join(not_counted)}],'
        f'"input_digest":{quoted(digest)}}}'
    )


@dataclass(frozen=True, slots=True)
class _Counted:
    finding_id: str
    count: int


class _Veto(NamedTuple):
    findings: list[_Counted]


class _Indicator(NamedTuple):
    code: str
    findings: list[_Counted]
    mode: str
    points: int
    deduction: int | None
    kept: int


class Figures(NamedTuple):
    """An explanation's figures `scoring.lift` reads (its `Explained`), as plain tuples."""

    grade: str
    score: int
    vetoed: bool
    vetoes: list[_Veto]
    indicators: list[_Indicator]


class _Piece(NamedTuple):
    text: str  # as in the explanation's JSON, after a comma but for the first indicator
    figures: _Indicator
    model: IndicatorExplanation


class Kept(NamedTuple):
    """A row's points kept by indicator code, and each indicator's text and figures for them
    with no finding (`Explainer._kept`): shared by the rows that keep the same points."""

    points: dict[str, int]
    texts: tuple[str, ...]
    figures: tuple[_Indicator, ...]


Own = str | Mapping[str, Any]
"""A row's own parts: as stored (`own_parts`), or already read (`json.loads` of that text)."""


def _parsed(own: Own) -> Mapping[str, Any]:
    return json.loads(own) if isinstance(own, str) else own


class Explainer:
    """Joins a snapshot's shared parts with a row's own parts into its `Explanation`, or
    straight into the JSON text the model would write (a supervisor's lookup answers with it).

    Made once per snapshot: an indicator with no finding (most of them) is the same model, and
    the same text, for every institution that kept the same points, so it is made once and
    shared (the models are frozen)."""

    def __init__(self, shared: str) -> None:
        parts = json.loads(shared)
        self.year: int = parts["year"]
        self.scale: str = parts["scale"]
        self.ruleset_version: str = parts["ruleset_version"]
        self.rules_hash: str = parts["rules_hash"]
        self.labels: dict[str, str] = parts["labels"]
        self.indicators: list[dict[str, Any]] = parts["indicators"]
        self.vetoes: list[dict[str, Any]] = parts["vetoes"]
        self._points: dict[str, Kept] = {}
        self._pieces: dict[tuple[int, int], _Piece] = {}
        self._index = {i["code"]: index for index, i in enumerate(self.indicators)}
        self._head = f',"year":{int(self.year)},"scale":{quoted(self.scale)},"score":'
        self._tail = (
            f',"ruleset_version":{quoted(self.ruleset_version)},"rules_hash":{quoted(self.rules_hash)},'
            '"input_digest":'
        )
        self._indicator_heads = [
            f'{{"code":{quoted(i["code"])},"number":{int(i["number"])},"title":{quoted(i["title"])},'
            f'"reference":{quoted(i["reference"])},"status":{quoted(i["status"])},'
            f'"mode":{quoted(i["mode"])},"unit":{_opt(i["unit"])},"deduction":{_opt(i["deduction"])},'
            f'"points":{int(i["points"])},"kept":'
            for i in self.indicators
        ]
        self._veto_heads = [
            f'{{"code":{quoted(v["code"])},"title":{quoted(v["title"])},'
            f'"reference":{quoted(v["reference"])},"status":{quoted(v["status"])},"findings":['
            for v in self.vetoes
        ]

    def explanation(self, row: Mapping[str, Any], own: Own) -> Explanation:
        """`row` a snapshot row (uscc, name, score, grade, vetoed, points), `own` its own parts
        (`own_parts`)."""
        kept = self._kept(row["points"]).points
        parts = _parsed(own)
        cited = {code: [_cited(c) for c in found] for code, found in parts["findings"].items()}
        grade = str(row["grade"])
        return Explanation.model_construct(
            uscc=str(row["uscc"]),
            name=str(row["name"]),
            year=self.year,
            scale=self.scale,
            score=int(row["score"]),
            grade=grade,
            grade_label=self.labels[grade],
            vetoed=bool(row["vetoed"]),
            vetoes=[
                VetoExplanation.model_construct(**v, findings=cited[v["code"]])
                for v in self.vetoes
                if v["code"] in cited
            ],
            indicators=[
                self._indicator(index, int(kept[i["code"]]), cited.get(i["code"]))
                for index, i in enumerate(self.indicators)
            ],
            not_counted=[
                NotCounted.model_construct(finding=_cited(n["finding"]), reason=n["reason"])
                for n in parts["not_counted"]
            ],
            ruleset_version=self.ruleset_version,
            rules_hash=self.rules_hash,
            input_digest=parts["input_digest"],
        )

    def json(self, row: Mapping[str, Any], own: Own) -> str:
        """`explanation(row, own).model_dump_json()`, written from the parts as text."""
        kept, unfound, _figures = self._kept(row["points"])
        parts = _parsed(own)
        found: dict[str, list[dict[str, Any]]] = parts["findings"]
        grade = str(row["grade"])
        vetoes = ",".join(
            head + ",".join(map(_cite_text, found[v["code"]])) + "]}"
            for v, head in zip(self.vetoes, self._veto_heads, strict=True)
            if v["code"] in found
        )
        written = [
            f'{{"uscc":{quoted(row["uscc"])},"name":{quoted(row["name"])}{self._head}{int(row["score"])},'
            f'"grade":{quoted(grade)},"grade_label":{quoted(self.labels[grade])},'
            f'"vetoed":{"true" if row["vetoed"] else "false"},"vetoes":[{vetoes}],"indicators":['
        ]
        indicators = list(unfound)
        for code, cited in found.items():
            index = self._index.get(code)
            if index is not None:  # else a veto's
                text = self._indicator_text(index, kept[code], cited)
                indicators[index] = "," + text if index else text
        written.append("".join(indicators))
        not_counted = ",".join(
            f'{{"finding":{_cite_text(n["finding"])},"reason":{quoted(n["reason"])}}}'
            for n in parts["not_counted"]
        )
        written.append(
            f'],"not_counted":[{not_counted}]{self._tail}{quoted(parts["input_digest"])}}}'
        )
        return "".join(written)

    def figures(self, row: Mapping[str, Any], own: Own) -> Figures:
        """What `scoring.lift` reads of `explanation(row, own)`, without building the models."""
        unfound = self._kept(row["points"]).figures
        found: dict[str, list[dict[str, Any]]] = _parsed(own)["findings"]
        cited = {
            code: [_Counted(c["finding_id"], int(c["count"])) for c in cites]
            for code, cites in found.items()
        }
        indicators = list(unfound)
        for code, counted in cited.items():
            index = self._index.get(code)
            if index is not None:  # else a veto's
                indicators[index] = indicators[index]._replace(findings=counted)
        return Figures(
            grade=str(row["grade"]),
            score=int(row["score"]),
            vetoed=bool(row["vetoed"]),
            vetoes=[_Veto(cited[v["code"]]) for v in self.vetoes if v["code"] in cited],
            indicators=indicators,
        )

    def _kept(self, points: str) -> Kept:
        """A row's points kept (its stored `points` JSON), with each indicator's text and
        figures with no finding for them. Rows share a few values of each indicator, and many
        rows the same points: each piece is made once, each row's points read once."""
        known = self._points.get(points)
        if known is None:
            kept = {code: int(value) for code, value in json.loads(points).items()}
            pieces = [
                self._piece(index, kept[i["code"]]) for index, i in enumerate(self.indicators)
            ]
            known = Kept(kept, tuple(p.text for p in pieces), tuple(p.figures for p in pieces))
            if len(self._points) < 10_000:
                self._points[points] = known
        return known

    def _piece(self, index: int, kept: int) -> _Piece:
        """Indicator `index` with no finding and `kept` points, as text, figures and model."""
        piece = self._pieces.get((index, kept))
        if piece is None:
            i = self.indicators[index]
            text = self._indicator_text(index, kept, [])
            piece = self._pieces[(index, kept)] = _Piece(
                "," + text if index else text,
                _Indicator(i["code"], [], i["mode"], int(i["points"]), i["deduction"], kept),
                self._made(index, kept, []),
            )
        return piece

    def _indicator_text(self, index: int, kept: int, cited: list[dict[str, Any]]) -> str:
        lost = int(self.indicators[index]["points"]) - kept
        findings = ",".join(map(_cite_text, cited))
        return f'{self._indicator_heads[index]}{kept},"lost":{lost},"findings":[{findings}]}}'

    def _indicator(
        self, index: int, kept: int, findings: list[FindingCited] | None
    ) -> IndicatorExplanation:
        if findings is None:
            return self._piece(index, kept).model
        return self._made(index, kept, findings)

    def _made(self, index: int, kept: int, findings: list[FindingCited]) -> IndicatorExplanation:
        i = self.indicators[index]
        return IndicatorExplanation.model_construct(
            **i, kept=kept, lost=i["points"] - kept, findings=findings
        )


def _opt(value: str | int | None) -> str:
    if value is None:
        return "null"
    return quoted(value) if isinstance(value, str) else str(int(value))


def _cite_text(cite: Mapping[str, Any]) -> str:
    """A cited finding as `FindingCited`'s JSON (its fields in the model's order)."""
    return (
        f'{{"finding_id":{quoted(str(cite["finding_id"]))},'
        f'"occurred_on":{quoted(str(cite["occurred_on"]))},"count":{int(cite["count"])},'
        f'"source":{quoted(str(cite["source"]))},"reference":{quoted(str(cite["reference"]))},'
        f'"status":{quoted(str(cite["status"]))},"note":{quoted(str(cite["note"]))}}}'
    )


def _cited(cite: dict[str, Any]) -> FindingCited:
    return FindingCited.model_construct(
        **{**cite, "occurred_on": date.fromisoformat(cite["occurred_on"])}
    )
