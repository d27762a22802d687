"""The unified social credit code (统一社会信用代码) check character, GB 32100-2015.

A mistyped code must never rate the wrong institution, so every entry point checks the
18th character. `scoring.uscc_columns.valid` does the same check for a whole column at once.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""The 31 characters a code may use; a character's value is its index (no I, O, S, V, Z)."""

WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
"""Weights of positions 1–17: 3^(i−1) mod 31."""

LENGTH = 18

_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}


def check_character(first17: str) -> str:
    """The check character for the first 17 characters of a code (uppercase expected)."""
    if len(first17) != LENGTH - 1 or any(ch not in _VALUE for ch in first17):
        raise ValueError(f"expected 17 characters from {ALPHABET!r}, got {first17!r}")
    total = sum(_VALUE[ch] * w for ch, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def is_valid(code: str) -> bool:
    """True when `code` has 18 allowed characters and the right check character."""
    if len(code) != LENGTH or any(ch not in _VALUE for ch in code):
        return False
    return check_character(code[:17]) == code[17]


def problem(code: str) -> str | None:
    """What is wrong with `code`, in words a supervisor can act on; None when it is valid."""
    if len(code) != LENGTH:
        return f"a credit code has {LENGTH} characters, this one has {len(code)}"
    bad = sorted({ch for ch in code if ch not in _VALUE})
    if bad:
        return f"characters {''.join(bad)!r} are not allowed (only {ALPHABET})"
    expected = check_character(code[:17])
    if expected != code[17]:
        return f"check character should be {expected!r}, not {code[17]!r} (GB 32100-2015)"
    return None
