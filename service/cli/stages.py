"""Progress of a long command on a terminal: which step it is at, and a bar where it can count.

Shown on stderr, and only when stderr is a terminal: never on a pipe, in a file or in a
captured run (tests, scripts), so what a program reads is never mixed with it. Transient:
the lines vanish when the command ends, leaving the output as it would be without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Steps:
    """One line per step; `step` starts the next one (the previous one is done)."""

    def __init__(self, bar: Progress | None) -> None:
        self._bar = bar
        self._task: TaskID | None = None

    def step(self, description: str, total: int | None = None) -> None:
        if self._bar is None:
            return
        self._done()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, rows: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, rows)

    def _done(self) -> None:
        if self._bar is not None and self._task is not None:
            task = self._bar.tasks[-1]
            self._bar.update(self._task, total=task.total or 1, completed=task.total or 1)


@contextmanager
def steps(console: Console) -> Iterator[Steps]:
    """Steps shown on `console` when it is a terminal; a silent `Steps` otherwise."""
    if not console.is_terminal:
        yield Steps(None)
        return
    with Progress(
        SpinnerColumn(finished_text="✓"),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        shown = Steps(bar)
        yield shown
        shown._done()
