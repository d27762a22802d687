"""The errors the scorer raises, in one tree so callers can catch at the right depth.

    ScoringError            anything the scorer refuses to do
    ├── RulesError          a rules file is incoherent: names the file, the rule and the reason
    ├── InputError          input files have problems: carries every Problem found, not just one
    └── UnknownInstitution  an explanation was asked for a code not in the institution list

The CLI prints these on stderr and exits non-zero; the service maps them to 4xx problems.
Messages are in the language of `CREDIT_LANG` (`scoring.i18n`): a Problem is put into words
when it is shown, an error's message when it is raised.
"""

from __future__ import annotations

from dataclasses import dataclass

from scoring.i18n import _


class ScoringError(Exception):
    """Base class: a request the scorer cannot honour, with a message a person can act on."""


class RulesError(ScoringError):
    def __init__(self, file: str, rule: str, reason: str) -> None:
        self.file, self.rule, self.reason = file, rule, reason
        super().__init__(
            _("{file}: rule {rule}: {reason}").format(file=file, rule=rule, reason=reason)
        )


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an input file, located precisely enough to fix it."""

    file: str
    # The row as a person finds it (spreadsheet row, header = row 1); None = the whole file.
    row: int | None
    column: str | None
    value: str | None
    expected: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += _(", row {row}").format(row=self.row)
        if self.column is not None:
            where += _(", column {column}").format(column=self.column)
        got = _(": got {value!r}").format(value=self.value) if self.value is not None else ""
        return _("{where}{got}; expected {expected}").format(
            where=where, got=got, expected=self.expected
        )


class InputError(ScoringError):
    """Problems in the input: `problems` lists them (see `scoring.problems` for the cap),
    `total` counts every one found, and the message says how many were left out."""

    def __init__(self, problems: list[Problem], *, total: int | None = None) -> None:
        self.problems = problems
        self.total = len(problems) if total is None else total
        lines = [_("{count} problem(s) in the input; nothing was rated:").format(count=self.total)]
        lines += [f"  - {p}" for p in problems]
        if self.total > len(problems):
            lines.append(_("  … and {count} more").format(count=self.total - len(problems)))
        super().__init__("\n".join(lines))


class UnknownInstitution(ScoringError):
    def __init__(self, uscc: str) -> None:
        self.uscc = uscc
        super().__init__(
            _("no institution with credit code {uscc} in the institution list").format(uscc=uscc)
        )
