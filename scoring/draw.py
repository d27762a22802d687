"""The random-inspection draw (双随机): which institutions are inspected next, as a pure function
of the grades, the per-grade weights, the count and a seed.

The measure says lower grades are inspected more often (A and B less, C normally, D more, the
five-grade scale's E "as a key item, no upper limit") but gives no numbers, so the weights are
configuration. The draw must be checkable by anyone from what is published, without this
program or any particular library: so it uses nothing but exact fractions and SHA-256, and
`PROCEDURE` names the one version of it (docs/draws.md spells it out step by step):

1. Grades weighted `all` are drawn whole, first. They count towards `count`; when they alone
   reach it, the draw is exactly them.
2. The rest of `count` (at most the other institutions' number) is shared among the other
   grades in proportion to weight × institutions of the grade (exact fractions): a grade whose
   share reaches its size is drawn whole and the rest is shared again among the others, until
   no share exceeds its grade. Each grade then gets the whole part of its share, and the seats
   left go one each to the largest fractional parts (ties: the grade whose letter comes first
   in the alphabet, A first). A weight of 0 means never drawn. Grades are always taken in
   alphabetical order, so a rerun needs nothing but the published record.
3. Within a grade, institutions are ranked by `sha256(seed + ":" + uscc)` as lowercase hex,
   smallest first (ties impossible in practice; then by code), and the first k are drawn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

PROCEDURE = "sha256-largest-remainder-v1"
"""The name of the procedure above; a record states it, so a rerun knows which to follow."""

ALL = "all"
"""The weight of a grade drawn whole (the five-grade scale's E)."""

Weight = Fraction | str  # a fraction, or ALL


class DrawError(ValueError):
    """Weights that cannot be read, or a grade with no weight."""


@dataclass(frozen=True)
class Drawn:
    """One institution drawn: its code, grade, and the ranking key that chose it."""

    uscc: str
    grade: str
    key: str


@dataclass(frozen=True)
class Draw:
    """The result: who is drawn (grade by grade, in ranking order) and each grade's quota."""

    drawn: tuple[Drawn, ...]
    quotas: dict[str, int]
    sizes: dict[str, int]


def parse_weights(text: str) -> dict[str, Weight]:
    """`A=0.5,B=0.75,C=1,D=2,E=all` as {grade: Fraction or ALL} (decimals read exactly)."""
    weights: dict[str, Weight] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        grade, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not grade:
            raise DrawError(f"{part!r} is not GRADE=WEIGHT (e.g. A=0.5, or E=all)")
        if grade in weights:
            raise DrawError(f"grade {grade} is given twice")
        if value.lower() == ALL:
            weights[grade] = ALL
            continue
        try:
            weight = Fraction(value)
        except (ValueError, ZeroDivisionError):
            raise DrawError(f"the weight of {grade}, {value!r}, is not a number") from None
        if weight < 0:
            raise DrawError(f"the weight of {grade} is negative")
        weights[grade] = weight
    if not weights:
        raise DrawError("no weights given (e.g. A=0.5,B=0.75,C=1,D=2,E=all)")
    return weights


def format_weights(weights: Mapping[str, Weight]) -> dict[str, str]:
    """Weights as published: each a decimal or fraction string (`0.5`, `2`, `1/3`) or `all`."""
    return {g: w if isinstance(w, str) else _decimal(w) for g, w in weights.items()}


def _decimal(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    for places in range(1, 19):
        scaled = value * 10**places
        if scaled.denominator == 1:
            whole, frac = divmod(scaled.numerator, 10**places)
            return f"{whole}.{frac:0{places}d}"
    return str(value)


def ranking_key(seed: str, uscc: str) -> str:
    """sha256 of `seed:uscc` (UTF-8), lowercase hex: `printf '%s' "$SEED:$USCC" | sha256sum`."""
    return hashlib.sha256(f"{seed}:{uscc}".encode()).hexdigest()


def allocate(
    sizes: Mapping[str, int], weights: Mapping[str, Fraction], count: int
) -> dict[str, int]:
    """Share `count` seats among grades in proportion to weight × size, capped by size
    (largest remainder; the order of `sizes` breaks ties). Step 2 of the procedure."""
    quotas = dict.fromkeys(sizes, 0)
    open_ = [g for g in sizes if sizes[g] > 0 and weights[g] > 0]
    seats = min(count, sum(sizes[g] for g in open_))
    while True:  # grades whose share reaches their size are drawn whole, then share again
        total = sum(weights[g] * sizes[g] for g in open_)
        if not open_ or seats == 0 or total == 0:
            return quotas
        shares = {g: Fraction(seats) * weights[g] * sizes[g] / total for g in open_}
        full = [g for g in open_ if shares[g] >= sizes[g]]
        if not full:
            break
        for g in full:
            quotas[g] = sizes[g]
            seats -= sizes[g]
        open_ = [g for g in open_ if g not in full]
    for g in open_:
        quotas[g] = int(shares[g])  # floor: shares are not negative
    left = seats - sum(quotas[g] for g in open_)
    by_remainder = sorted(open_, key=lambda g: -(shares[g] - int(shares[g])))  # stable: order
    for g in by_remainder[:left]:
        quotas[g] += 1
    return quotas


def draw(
    population: Iterable[tuple[str, str]],
    *,
    weights: Mapping[str, Weight],
    count: int,
    seed: str,
) -> Draw:
    """Draw `count` institutions from `population` ((uscc, grade) pairs, each code once).

    Grades are taken in the alphabetical order of their letters (the measure's A, the best,
    first): it breaks ties in step 2 and orders the result, and a rerun needs nothing but the
    record. Raises DrawError for a grade of the population that has no weight.
    """
    if count < 0:
        raise DrawError("the count cannot be negative")
    members: dict[str, list[str]] = {}
    for uscc, grade in population:
        members.setdefault(grade, []).append(uscc)
    order = sorted(members)
    codes = [u for group in members.values() for u in group]
    if len(set(codes)) != len(codes):
        raise DrawError("an institution is listed twice")
    missing = [g for g in order if members[g] and g not in weights]
    if missing:
        raise DrawError(f"no draw weight for grade {', '.join(missing)}")
    sizes = {g: len(members[g]) for g in order}
    whole = [g for g in order if weights.get(g) == ALL]
    quotas = {g: sizes[g] for g in whole}
    rest = max(0, count - sum(quotas.values()))
    others = {g: sizes[g] for g in order if g not in quotas}
    fractions = {g: w for g, w in weights.items() if isinstance(w, Fraction)}
    quotas |= allocate(others, {g: fractions.get(g, Fraction(0)) for g in others}, rest)
    drawn: list[Drawn] = []
    for g in order:
        ranked = sorted((ranking_key(seed, u), u) for u in members[g])
        drawn.extend(Drawn(u, g, key) for key, u in ranked[: quotas[g]])
    return Draw(tuple(drawn), {g: quotas[g] for g in order}, sizes)
