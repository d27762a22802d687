"""Problem lists: every problem found in the input counted, at most `MAX_PROBLEMS` listed.

A file of ten million bad rows must not build ten million messages, yet the supervisor must
learn how many rows are wrong. So each reader and check collects a `ProblemList` (listed
problems plus a `total`), and `raise_problems` turns the lists of every file into one
`InputError`: whole-file problems first, then by row, capped, with the full count.
"""

from __future__ import annotations

from collections.abc import Iterable

from scoring.errors import InputError, Problem

MAX_PROBLEMS = 1000
"""At most this many problems are listed in one report (all of them are counted)."""


class ProblemList(list[Problem]):
    """Problems found in input, at most `MAX_PROBLEMS` listed; `total` counts all of them."""

    def __init__(self, problems: Iterable[Problem] = (), *, total: int | None = None) -> None:
        super().__init__(problems)
        self.total = len(self) if total is None else total

    @classmethod
    def whole_file(cls, file: str, expected: str) -> ProblemList:
        """The one problem of a file that cannot be read at all."""
        return cls([Problem(file, None, None, None, expected)])

    def add(self, problem: Problem) -> None:
        """Count every problem, list at most MAX_PROBLEMS."""
        self.total += 1
        if len(self) < MAX_PROBLEMS:
            self.append(problem)


def raise_problems(*groups: Iterable[Problem]) -> None:
    """Raise one InputError with the problems of every group; return when there are none.

    Groups are kept in order (one per file), whole-file problems of every group come first,
    and the list is capped at `MAX_PROBLEMS`; a `ProblemList` contributes its full `total`.
    """
    problems: list[Problem] = []
    total = 0
    for group in groups:
        listed = list(group)
        problems += listed
        total += group.total if isinstance(group, ProblemList) else len(listed)
    if total:
        ordered = sorted(problems, key=lambda p: p.row is not None)  # stable: files stay in order
        raise InputError(ordered[:MAX_PROBLEMS], total=total)
