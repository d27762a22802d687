"""Notebooks hold no logic, but they must keep running against the package as it changes.

Each notebook in `notebooks/` is executed in a real Jupyter kernel (nbclient + ipykernel, this
interpreter's own kernel, whatever kernelspecs the machine has), so an error in any cell fails
the test, and so does a "Glyph … missing from font(s)" warning in any cell's output: the Chinese
labels must render. Notebooks are committed without outputs.

The Chinese font is Noto Sans CJK SC as the `mplfonts` package ships it (no system font, no
network); each notebook's first code cell registers it with matplotlib's font manager. The font
tests check that file covers every character the notebooks label with (fontTools cmap) and that
matplotlib draws those labels with it, with the missing-glyph warning turned into an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib as mpl
import nbclient
import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CJK_FONT_FILE = "NotoSansCJKsc-Regular.otf"
CJK_FAMILY = "Noto Sans CJK SC"
MISSING_GLYPH = "missing from font(s)"
CELL_TIMEOUT = 300  # seconds; the whole notebook takes a few


def read(notebook: Path) -> Any:
    return nbformat.read(notebook, as_version=4)


def execute(nb: Any) -> Any:
    """Run `nb` top to bottom in a fresh ipykernel of this interpreter; raise on a cell error."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    # No kernel directories: only ipykernel's native spec, which launches sys.executable, so a
    # "python3" kernelspec installed elsewhere on the machine can't swap the interpreter.
    km = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    client = nbclient.NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute()
    return nb


def output_texts(nb: Any) -> Iterator[tuple[int, str]]:
    """(cell index, text) for every stream and error output of an executed notebook."""
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                yield index, output.text
            elif output.output_type == "error":
                yield index, "\n".join([output.ename, output.evalue, *output.traceback])


def missing_glyphs(nb: Any) -> list[str]:
    return [
        f"cell {index}: {line.strip()}"
        for index, text in output_texts(nb)
        for line in text.splitlines()
        if MISSING_GLYPH in line
    ]


# --- the notebooks ------------------------------------------------------------------------


def test_there_is_a_notebook() -> None:
    assert NOTEBOOKS


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(notebook: Path) -> None:
    nb = read(notebook)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{notebook.name} has no code"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"{notebook.name}, cell {index}: clear its outputs"
        assert cell.execution_count is None, f"{notebook.name}, cell {index}: execution count"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_sets_up_the_cjk_font_first(notebook: Path) -> None:
    first = next(cell for cell in read(notebook).cells if cell.cell_type == "code")
    assert CJK_FONT_FILE in first.source and "use_font" in first.source, (
        f"{notebook.name}: the first code cell must register mplfonts' {CJK_FONT_FILE}"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_a_jupyter_kernel(notebook: Path) -> None:
    nb = execute(read(notebook))  # a cell that raises fails here (CellExecutionError)
    assert not missing_glyphs(nb), "\n".join(missing_glyphs(nb))
    images = [
        output
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    shown = sum("plt.show()" in cell.source for cell in nb.cells)
    assert len(images) >= shown, (
        f"{notebook.name}: {shown} cells show a figure, {len(images)} images"
    )


def test_kernel_check_catches_a_missing_glyph() -> None:
    """The check above is live: Chinese text without the CJK font shows up as missing glyphs."""
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(
        cells=[
            new_code_cell(
                "import matplotlib.pyplot as plt\n"
                "plt.rcParams['font.sans-serif'] = ['DejaVu Sans']\n"
                "plt.plot([1, 2]); plt.title('信用等级'); plt.show()"
            )
        ]
    )
    found = missing_glyphs(execute(nb))
    assert found and all("DejaVu Sans" in line for line in found)


# --- the Chinese font -----------------------------------------------------------------------


def notebook_labels() -> set[str]:
    """Every text the notebooks put on a figure or table: data, rules and the notebooks' own."""
    import scoring

    rules = scoring.load_rules()
    institutions, _ = scoring.read_inputs(
        scoring.SAMPLE_INSTITUTIONS, scoring.SAMPLE_FINDINGS, rules=rules
    )
    labels = set(institutions["name"])
    for year in (2022, 2023, 2024):
        force = rules.in_force(year)
        labels |= {f"{i.rule.number}. {i.rule.title}" for i in force.indicators}
        labels |= {f"{band.grade}（{band.label}）" for band in force.bands}
    for notebook in NOTEBOOKS:
        labels |= {cell.source for cell in read(notebook).cells if cell.cell_type == "code"}
    return labels


@pytest.fixture(scope="module")
def cjk_font() -> Iterator[Path]:
    """Register mplfonts' Noto Sans CJK SC as the notebooks do; restore matplotlib's settings."""
    import mplfonts
    from matplotlib import font_manager

    mpl.use("Agg")
    from mplfonts.conf import FONT_DIR

    path = Path(FONT_DIR) / CJK_FONT_FILE
    assert path.is_file(), f"mplfonts no longer ships {CJK_FONT_FILE}"
    with mpl.rc_context():
        font_manager.fontManager.addfont(str(path))
        mplfonts.use_font(CJK_FAMILY)
        yield path


def test_the_cjk_family_resolves_to_the_shipped_file(cjk_font: Path) -> None:
    from matplotlib import font_manager

    family = mpl.rcParams["font.sans-serif"][0]
    assert family == CJK_FAMILY
    found = font_manager.findfont(
        font_manager.FontProperties(family=family), fallback_to_default=False
    )
    assert Path(found).resolve() == cjk_font.resolve()


def test_the_cjk_font_covers_every_label_character(cjk_font: Path) -> None:
    from fontTools.ttLib import TTFont

    cmap = TTFont(cjk_font, lazy=True).getBestCmap()
    wanted = {ch for label in notebook_labels() for ch in label if ch.isprintable() and ch != " "}
    missing = sorted(ch for ch in wanted if ord(ch) not in cmap)
    assert not missing, f"{CJK_FAMILY} lacks {missing}"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in wanted)  # the labels are Chinese


def test_chinese_labels_render_without_missing_glyphs(cjk_font: Path) -> None:
    import matplotlib.pyplot as plt

    sources = {cell.source for notebook in NOTEBOOKS for cell in read(notebook).cells}
    labels = sorted(notebook_labels() - sources)
    # Every non-ASCII character of the notebooks' code: titles, axis labels, legends.
    own = "".join(sorted({ch for source in sources for ch in source if ord(ch) > 127}))
    fig, ax = plt.subplots(figsize=(4, 30))
    try:
        ax.set_yticks(range(len(labels)), labels)
        ax.set_title(own)
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*missing from font")
            fig.canvas.draw()
    finally:
        plt.close(fig)


def test_the_glyph_check_is_live(cjk_font: Path) -> None:
    """Without the CJK font the same drawing raises, so the test above does check something."""
    import matplotlib.pyplot as plt

    with mpl.rc_context({"font.sans-serif": ["DejaVu Sans"]}):
        fig, ax = plt.subplots()
        try:
            ax.set_title("天津市西青区")
            with (
                warnings.catch_warnings(),
                pytest.raises(UserWarning, match="missing from font"),
            ):
                warnings.filterwarnings("error", message=".*missing from font")
                fig.canvas.draw()
        finally:
            plt.close(fig)
