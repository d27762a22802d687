"""The unified social credit code (统一社会信用代码), GB 32100-2015: its structure and check.

A mistyped code must never rate the wrong institution, so every entry point checks the whole
code, not only its 18th character:

    position  1      registration department: 1–9, A, N or Y
    position  2      category of the registered body: a digit
    positions 3–8    administrative-division code (GB/T 2260) of the registering authority
    positions 9–17   organisation code (GB 11714), itself ending in a check character
    position  18     the check character of positions 1–17

A code that breaks the structure or the check character is refused (`problem` says which
position is wrong). Two things are only worth a warning (`warnings`): positions 3–8 differing
from the institution's `district_code` (a body may be registered by another authority than
the district's), and an organisation code failing its GB 11714 check (every real code passes,
so a failure most likely means a copying mistake). `scoring.uscc_columns` does the same
checks for a whole column at once.
"""

from __future__ import annotations

from scoring.i18n import _

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""The 31 characters a code may use; a character's value is its index (no I, O, S, V, Z)."""

WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
"""Weights of positions 1–17: 3^(i−1) mod 31."""

LENGTH = 18

DEPARTMENTS = "123456789ANY"
"""Position 1, the registration department (登记管理部门代码): 1–9, A, N, Y."""

DIGITS = "0123456789"

ORGANISATION_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
"""GB 11714 weights of the organisation code's 8 body characters (positions 9–16)."""

_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
_ORGANISATION = frozenset(DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def check_character(first17: str) -> str:
    """The check character for the first 17 characters of a code (uppercase expected)."""
    if len(first17) != LENGTH - 1 or any(ch not in _VALUE for ch in first17):
        raise ValueError(f"expected 17 characters from {ALPHABET!r}, got {first17!r}")
    total = sum(_VALUE[ch] * w for ch, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def organisation_value(ch: str) -> int:
    """A character's value in GB 11714: digits 0–9, letters A=10 … Z=35."""
    return int(ch) if ch in DIGITS else ord(ch) - ord("A") + 10


def organisation_check_character(body: str) -> str:
    """The GB 11714 check character of an organisation code's 8 body characters.

    11 − (Σ value × weight mod 11); 10 is written X and 11 is written 0.
    """
    if len(body) != len(ORGANISATION_WEIGHTS) or any(ch not in _ORGANISATION for ch in body):
        raise ValueError(f"expected 8 digits or uppercase letters, got {body!r}")
    total = sum(
        organisation_value(ch) * w for ch, w in zip(body, ORGANISATION_WEIGHTS, strict=True)
    )
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def is_valid(code: str) -> bool:
    """True when `code` has the structure of GB 32100-2015 and the right check character."""
    return problem(code) is None


def structure_problem(code: str) -> str | None:
    """Which position of an 18-character code of the alphabet breaks the structure, or None."""
    if code[0] not in DEPARTMENTS:
        return _(
            "position 1 (registration department) must be 1–9, A, N or Y, not {found!r}"
        ).format(found=code[0])
    if code[1] not in DIGITS:
        return _("position 2 (category) must be a digit, not {found!r}").format(found=code[1])
    for position in range(3, 9):
        if code[position - 1] not in DIGITS:
            return _(
                "position {position} must be a digit, not {found!r} "
                "(positions 3–8 are an administrative-division code)"
            ).format(position=position, found=code[position - 1])
    return None


def problem(code: str) -> str | None:
    """What is wrong with `code`, in words a supervisor can act on; None when it is valid."""
    if len(code) != LENGTH:
        return _("a credit code has {length} characters, this one has {found}").format(
            length=LENGTH, found=len(code)
        )
    bad = [(i, ch) for i, ch in enumerate(code, start=1) if ch not in _VALUE]
    if bad:
        at = _("{found!r} at position {position}")
        where = ", ".join(at.format(found=ch, position=i) for i, ch in bad)
        return _("characters not allowed: {where} (only {alphabet})").format(
            where=where, alphabet=ALPHABET
        )
    broken = structure_problem(code)
    if broken:
        return _("{broken} (GB 32100-2015)").format(broken=broken)
    expected = check_character(code[:17])
    if expected != code[17]:
        return _("check character should be {expected!r}, not {found!r} (GB 32100-2015)").format(
            expected=expected, found=code[17]
        )
    return None


def organisation_code_problem(code: str) -> str | None:
    """Why positions 9–17 of a valid code are worth a warning (GB 11714); None when they pass."""
    organisation = code[8:17]
    expected = organisation_check_character(organisation[:8])
    if organisation[8] == expected:
        return None
    return _(
        "positions 9–17 ({organisation}) to pass the organisation code check (GB 11714: "
        "position 17 would be {expected!r}, not {found!r}); every real code passes "
        "it, so check the code was copied right (accepted all the same)"
    ).format(organisation=organisation, expected=expected, found=organisation[8])


def district_problem(code: str, district_code: str) -> str | None:
    """Why a valid code whose positions 3–8 differ from `district_code` is worth a warning."""
    registered = code[2:8]
    if registered == district_code:
        return None
    return _(
        "positions 3–8 ({registered}, the registering authority's division) to equal "
        "district_code {district}: check the code or the district (accepted all the "
        "same: a body may be registered elsewhere)"
    ).format(registered=registered, district=district_code)


def warnings(code: str, district_code: str | None = None) -> list[str]:
    """What is worth a warning about a valid `code` (nothing that refuses it).

    Positions 3–8 differing from `district_code` (when given), and the organisation code
    (positions 9–17) failing its GB 11714 check.
    """
    found = [district_problem(code, district_code) if district_code is not None else None]
    found.append(organisation_code_problem(code))
    return [w for w in found if w]
