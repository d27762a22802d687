"""Notebooks hold no logic, but they must keep running against the package as it changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(notebook: Path) -> None:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    namespace: dict[str, Any] = {}
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert code, f"{notebook.name} has no code"
    for source in code:
        exec(compile(source, str(notebook), "exec"), namespace)


def test_there_is_a_notebook() -> None:
    assert NOTEBOOKS
