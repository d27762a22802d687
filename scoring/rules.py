"""The measure as data: strict models of the YAML files in `rules/`, and the rules in force.

Every number a supervisor may question (points, deductions, grade bands) lives in `rules/`
with its reference and its `status`; this module only checks that the files make a coherent
measure and picks the values in force for a year. Values are dated: an amendment adds a new
dated value, so rating an old year still uses the values that were in force then.

`parse_rules` takes already-parsed documents (file name -> data), so it does no I/O and can be
fed by tests directly; `scoring.shipped.load_rules` reads the files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scoring.errors import RulesError
from scoring.hashing import json_sha256
from scoring.i18n import _

Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Points = Annotated[int, Field(ge=1, le=1000, strict=True)]
DatedPoints = dict[date, Points]
"""Values keyed by the day they came into force."""
T = TypeVar("T")

MIN_YEAR, MAX_YEAR = 2022, 2100
"""The rating years anything accepts: from the measure's first (in force from 2022-12-03)."""


class Mode(StrEnum):
    ALL = "all"  # any finding takes all the indicator's points
    PER = "per"  # a fixed deduction per unit, capped at the indicator's points (扣完为止)


class Unit(StrEnum):
    OCCURRENCE = "occurrence"  # 次
    PERSON_TIME = "person_time"  # 人次
    ITEM = "item"  # 项 (a missing item)

    @property
    def chinese(self) -> str:
        return {"occurrence": "次", "person_time": "人次", "item": "项"}[self.value]


class Status(StrEnum):
    CONFIRMED = "confirmed"
    PROVISIONAL = "provisional"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def value_on(values: Mapping[date, T], day: date) -> T | None:
    """The value in force on `day`: the latest one dated on or before it (None before the first)."""
    started = [d for d in values if d <= day]
    return values[max(started)] if started else None


class Indicator(_Strict):
    code: Code
    number: Annotated[int, Field(ge=1)]
    title: str
    reference: str
    status: Status
    points: DatedPoints
    mode: Mode
    unit: Unit | None = None
    deduction: DatedPoints | None = None

    @model_validator(mode="after")
    def _deduction_matches_mode(self) -> Self:
        if not self.points:
            raise ValueError("points needs at least one dated value")
        if self.mode is Mode.PER and (self.unit is None or not self.deduction):
            raise ValueError("mode 'per' needs a unit and a dated deduction")
        if self.mode is Mode.ALL and (self.unit is not None or self.deduction is not None):
            raise ValueError("mode 'all' takes all points: it has no unit or deduction")
        return self


class Veto(_Strict):
    code: Code
    title: str
    reference: str
    status: Status
    in_force_from: date


class Band(_Strict):
    grade: Annotated[str, Field(pattern=r"^[A-Z]$")]
    min: Annotated[int, Field(ge=0, le=1000)]
    max: Annotated[int, Field(ge=0, le=1000)]
    label: str


class Scale(_Strict):
    code: Code
    title: str
    reference: str
    status: Status
    bands: dict[date, list[Band]]

    @model_validator(mode="after")
    def _bands_cover_0_to_1000(self) -> Self:
        if not self.bands:
            raise ValueError("bands needs at least one dated list")
        for day, bands in self.bands.items():
            _check_bands(day, bands)
        return self


def _check_bands(day: date, bands: list[Band]) -> None:
    """Bands, highest first, must tile 0–1000 exactly: no gap, no overlap, unique grades."""
    where = f"bands of {day.isoformat()}"
    if len({b.grade for b in bands}) != len(bands):
        raise ValueError(f"{where}: a grade appears twice")
    expected_max = 1000
    for band in bands:
        if band.min > band.max:
            raise ValueError(f"{where}: grade {band.grade} has min {band.min} > max {band.max}")
        if band.max > expected_max:
            raise ValueError(
                f"{where}: grade {band.grade} ({band.min}–{band.max}) overlaps the band above it"
            )
        if band.max < expected_max:
            raise ValueError(
                f"{where}: no grade covers {band.max + 1}–{expected_max} (gap above {band.grade})"
            )
        expected_max = band.min - 1
    if expected_max != -1:
        raise ValueError(f"{where}: no grade covers 0–{expected_max}")


class Change(_Strict):
    version: str
    in_force_from: date
    note: str


class RulesetInfo(_Strict):
    version: str
    title: str
    issued_by: str
    issued_on: date
    reference: str
    total_points: Annotated[int, Field(ge=1)]
    default_scale: Code
    changes: list[Change] = []


class IndicatorsFile(_Strict):
    indicators: list[Indicator]


class VetoesFile(_Strict):
    vetoes: list[Veto]


class ScalesFile(_Strict):
    scales: list[Scale]


RULE_FILES: dict[str, type[_Strict]] = {
    "ruleset.yaml": RulesetInfo,
    "indicators.yaml": IndicatorsFile,
    "vetoes.yaml": VetoesFile,
    "scales.yaml": ScalesFile,
}
"""The files of a rules directory and the model each must satisfy."""


@dataclass(frozen=True)
class RuleSet:
    """The whole measure, every dated value included."""

    info: RulesetInfo
    indicators: tuple[Indicator, ...]
    vetoes: tuple[Veto, ...]
    scales: tuple[Scale, ...]

    @property
    def version(self) -> str:
        return self.info.version

    def scale(self, code: str | None = None) -> Scale:
        wanted = code or self.info.default_scale
        for scale in self.scales:
            if scale.code == wanted:
                return scale
        known = ", ".join(s.code for s in self.scales)
        raise RulesError(
            "scales.yaml", wanted, _("no such scale (known: {known})").format(known=known)
        )

    @property
    def last_change_on(self) -> date:
        """The day the newest version of the measure takes effect (a candidate's proposal)."""
        return max([self.info.issued_on, *(c.in_force_from for c in self.info.changes)])

    def in_force(
        self, year: int, scale: str | None = None, *, as_of: date | None = None
    ) -> RulesInForce:
        """The values that rate `year`: those in force on its last day (31 December), or on
        `as_of` to try a dated amendment (a candidate rule set) on a year's findings before
        it takes effect."""
        as_of = as_of or date(year, 12, 31)
        chosen = self.scale(scale)
        bands = value_on(chosen.bands, as_of)
        indicators = []
        for ind in self.indicators:
            points = value_on(ind.points, as_of)
            if points is None:
                continue
            deduction = value_on(ind.deduction, as_of) if ind.deduction else None
            indicators.append(IndicatorInForce(ind, points, deduction))
        if not indicators or bands is None:
            raise RulesError(
                "ruleset.yaml",
                self.info.version,
                (
                    _("no rules were in force on {day} (the measure applies from {since})")
                    if as_of.year != year
                    else _("no rules were in force in {year} (the measure applies from {since})")
                ).format(day=as_of, year=year, since=self.info.issued_on.isoformat()),
            )
        vetoes = tuple(v for v in self.vetoes if v.in_force_from <= as_of)
        return RulesInForce(self.info, year, tuple(indicators), vetoes, chosen, tuple(bands))


@dataclass(frozen=True)
class IndicatorInForce:
    """One indicator with the points and deduction in force for the year being rated."""

    rule: Indicator
    points: int
    deduction: int | None  # per unit; None for all-or-nothing indicators

    @property
    def code(self) -> str:
        return self.rule.code


@dataclass(frozen=True)
class RulesInForce:
    """Everything needed to rate one year on one scale, and nothing else."""

    info: RulesetInfo
    year: int
    indicators: tuple[IndicatorInForce, ...]
    vetoes: tuple[Veto, ...]
    scale: Scale
    bands: tuple[Band, ...]  # highest grade first

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def counts_from(self) -> date:
        """The first day whose findings count: 1 January, or the day the measure came into
        force in its first year (2022-12-03; it is not retroactive)."""
        return max(date(self.year, 1, 1), self.info.issued_on)

    @property
    def lowest_grade(self) -> Band:
        return self.bands[-1]

    def band_for(self, score: int) -> Band:
        return next(b for b in self.bands if b.min <= score <= b.max)

    def as_data(self) -> dict[str, Any]:
        """The rules in force as plain data: what `content_hash` covers and what APIs show."""
        return {
            "version": self.version,
            "year": self.year,
            "scale": self.scale.code,
            "indicators": [
                {
                    "code": i.code,
                    "number": i.rule.number,
                    "title": i.rule.title,
                    "reference": i.rule.reference,
                    "status": i.rule.status.value,
                    "points": i.points,
                    "mode": i.rule.mode.value,
                    "unit": i.rule.unit.value if i.rule.unit else None,
                    "deduction": i.deduction,
                }
                for i in self.indicators
            ],
            "vetoes": [
                {"code": v.code, "title": v.title, "reference": v.reference, "status": v.status}
                for v in self.vetoes
            ],
            "bands": [b.model_dump() for b in self.bands],
        }

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the values in force: equal hashes mean the same measure was applied."""
        return json_sha256(self.as_data(), "sorted")


def parse_rules(documents: Mapping[str, Any], *, max_values: int | None = None) -> RuleSet:
    """Check the documents of a rules directory (file name -> parsed YAML) and build the set.

    Raises RulesError naming the file, the rule (its code, or its position when the code itself
    is missing) and the reason, for the first problem found. Every check takes time linear in
    the size of the documents (n log n for sorting dates).

    `max_values` bounds the size of rules from outside (a candidate rule set sent to the
    service): indicators, vetoes, scales, dated values and bands are counted on the documents
    as given (`rules_size`) and more than `max_values` is refused before any model is built.
    """
    if max_values is not None:
        size = rules_size(documents)
        if size > max_values:
            raise RulesError(
                "-",
                "-",
                f"the rules hold {size:,} indicators, vetoes, scales, dated values and bands; "
                f"at most {max_values:,} are accepted (max_rule_values)",
            )
    models: dict[str, Any] = {}
    for file, model in RULE_FILES.items():
        if file not in documents:
            raise RulesError(file, "-", "file is missing from the rules directory")
        try:
            models[file] = model.model_validate(documents[file])
        except ValidationError as exc:
            raise _rules_error(file, documents[file], exc) from None
    info: RulesetInfo = models["ruleset.yaml"]
    rules = RuleSet(
        info=info,
        indicators=tuple(models["indicators.yaml"].indicators),
        vetoes=tuple(models["vetoes.yaml"].vetoes),
        scales=tuple(models["scales.yaml"].scales),
    )
    _check_consistency(rules)
    return rules


def rules_size(documents: Mapping[str, Any]) -> int:
    """How big a rule set is: its indicators, vetoes and scales, and their dated values and
    bands, counted on the documents as given (whatever their shape: the models judge that)."""
    return sum(1 for _ in _items(documents))


def _items(documents: Mapping[str, Any]) -> Iterator[object]:
    """One item per rule, dated value and band; odd shapes count what they hold, no more."""
    for file, key in (("indicators.yaml", "indicators"), ("vetoes.yaml", "vetoes")):
        yield from _entries(documents.get(file), key)
    for rule in _entries(documents.get("indicators.yaml"), "indicators"):
        if isinstance(rule, Mapping):
            for field in ("points", "deduction"):
                values = rule.get(field)
                yield from values if isinstance(values, Mapping | list) else ()
    for scale in _entries(documents.get("scales.yaml"), "scales"):
        yield scale
        bands = scale.get("bands") if isinstance(scale, Mapping) else None
        for listed in bands.values() if isinstance(bands, Mapping) else ():
            yield listed
            yield from listed if isinstance(listed, list) else ()


def _entries(document: Any, key: str) -> list[Any]:
    items = document.get(key) if isinstance(document, Mapping) else None
    return items if isinstance(items, list) else []


def _rules_error(file: str, document: Any, exc: ValidationError) -> RulesError:
    error = exc.errors()[0]
    loc = error["loc"]
    rule = "-"
    # loc is like ("indicators", 11, "points", ...): name the rule by its code when it has one.
    if len(loc) >= 2 and isinstance(loc[1], int) and isinstance(document, Mapping):
        items = document.get(str(loc[0])) or []
        item = items[loc[1]] if loc[1] < len(items) else None
        code = item.get("code") if isinstance(item, Mapping) else None
        rule = str(code) if code else f"{loc[0]}[{loc[1]}]"
        loc = loc[2:]
    field = ".".join(p.isoformat() if isinstance(p, date) else str(p) for p in loc)
    reason = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        reason = "unknown key (a typo?)"
    elif "input" in error and error["type"] not in ("missing", "value_error"):
        reason = f"{reason} (got {error['input']!r})"
    return RulesError(file, rule, f"{field}: {reason}" if field else reason)


def _check_consistency(rules: RuleSet) -> None:
    """Checks across rules, each linear in the number of rules and dated values (plus sorting).

    The first problem is the one the plain definitions would find first: rules in file order,
    days in date order.
    """
    seen: dict[str, str] = {}
    for file, code in [("indicators.yaml", i.code) for i in rules.indicators] + [
        ("vetoes.yaml", v.code) for v in rules.vetoes
    ]:
        if code in seen:
            raise RulesError(file, code, f"duplicate code (already used in {seen[code]})")
        seen[code] = file
    numbers = Counter(i.number for i in rules.indicators)
    for ind in rules.indicators:
        if numbers[ind.number] > 1:
            raise RulesError("indicators.yaml", ind.code, f"duplicate number {ind.number}")
        days = sorted({*ind.points, *(ind.deduction or {})})
        both = zip(
            days,
            _in_force_on(ind.points, days),
            _in_force_on(ind.deduction or {}, days),
            strict=True,
        )
        for day, points, deduction in both:
            if points is not None and deduction is not None and deduction > points:
                raise RulesError(
                    "indicators.yaml",
                    ind.code,
                    f"deduction {deduction} on {day.isoformat()} exceeds the points ({points})",
                )
    # The points in force must add up to the total on every day any of them changes: one pass
    # over every change of every indicator, in date order, keeping the running total.
    changes: dict[date, int] = {}
    for ind in rules.indicators:
        before = 0
        for day, points in sorted(ind.points.items()):
            changes[day] = changes.get(day, 0) + points - before
            before = points
    total = 0
    for day in sorted(changes):
        total += changes[day]
        if total != rules.info.total_points:
            raise RulesError(
                "indicators.yaml",
                "-",
                f"points in force on {day.isoformat()} add up to {total}, "
                f"not {rules.info.total_points}",
            )
    rules.scale(rules.info.default_scale)  # the default scale must exist


def _in_force_on(values: Mapping[date, T], days: list[date]) -> list[T | None]:
    """`value_on(values, day)` for each of the sorted `days`, in one merge of sorted dates."""
    dated = sorted(values.items())
    found: list[T | None] = []
    current: T | None = None
    next_change = 0
    for day in days:
        while next_change < len(dated) and dated[next_change][0] <= day:
            current = dated[next_change][1]
            next_change += 1
        found.append(current)
    return found
