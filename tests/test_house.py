"""The shape of the code: no import cycles, the scorer independent of the service, a small
public API, and the wheel carrying the measure and the sample district."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import scoring
from tests.servers import ROOT

PACKAGES = ("scoring", "service")


def modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The project modules `path` imports anywhere in it, `if TYPE_CHECKING:` blocks included."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            # `from pkg import module` names the module; `from module import name` the module
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                yield name


def graph(group: bool) -> dict[str, set[str]]:
    """Who imports whom: modules, or (group=True) subpackages such as service.ratings."""
    known = modules()

    def node(name: str) -> str:
        if not group:
            return name
        parts = name.split(".")
        return ".".join(parts[:2]) if parts[0] == "service" else parts[0]

    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = {node(t) for t in imports_of(path, known)} - {node(name)}
        # a package's __init__ importing its own modules is not a cycle
        targets = {t for t in targets if not t.startswith(name + ".")}
        edges.setdefault(node(name), set()).update(targets)
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the path round it, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "open"
        path.append(name)
        for target in sorted(edges.get(name, ())):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[name] = "done"
        return None

    for name in sorted(edges):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_no_module_imports_itself_round_a_cycle() -> None:
    assert cycle(graph(group=False)) is None


def test_no_subpackage_imports_itself_round_a_cycle() -> None:
    edges = graph(group=True)
    assert {"service.core", "service.records", "service.ratings", "service.sharing"} <= set(edges)
    assert cycle(edges) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_scorer_never_imports_the_service() -> None:
    edges = graph(group=False)
    leaks = {
        (name, target)
        for name, targets in edges.items()
        if name.startswith("scoring")
        for target in targets
        if target.startswith("service")
    }
    assert not leaks


LAYERS = (
    "service.core",
    "service.records",
    "service.sharing",
    "service.ratings",
    "service.api",
    "service.cli",
)
"""The service's parts, each importing only parts before it (as service/__init__.py says)."""


def test_each_part_of_the_service_imports_only_the_parts_before_it() -> None:
    edges = graph(group=True)
    assert set(LAYERS) == {name for name in edges if name.startswith("service.")}
    for position, layer in enumerate(LAYERS):
        allowed = set(LAYERS[:position]) | {"scoring"}
        assert edges[layer] <= allowed, (layer, edges[layer] - allowed)


def test_the_public_api_rates_and_explains_the_sample() -> None:
    assert all(hasattr(scoring, name) for name in scoring.__all__)
    rules = scoring.load_rules()
    institutions, findings = scoring.read_inputs(
        scoring.SAMPLE_INSTITUTIONS, scoring.SAMPLE_FINDINGS, rules=rules
    )
    rating = scoring.rate(institutions, findings, rules, 2023)
    assert len(rating) == 16
    penalised = "52120111MJ06185738"
    why = scoring.explain(institutions, findings, rules, 2023, penalised)
    assert why.score == int(rating.set_index("uscc").loc[penalised, "score"])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel (not editable) and installed into a folder of its own."""
    work = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = work.glob("*.whl")
    target = work / "site"
    done = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return target


def test_the_installed_wheel_rates_the_sample_from_another_directory(
    installed: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run(
        [sys.executable, "-c", "import scoring, service; print(scoring.RULES_DIR)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()) == installed / "scoring" / "_shipped" / "rules"
    rated = subprocess.run(
        [sys.executable, "-m", "service.cli", "rate", "--year", "2023", "--format", "json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert rated.returncode == 0, rated.stderr
    from_wheel = {r["uscc"]: r["grade"] for r in json.loads(rated.stdout)}
    rules = scoring.load_rules()
    institutions, findings = scoring.read_inputs(
        scoring.SAMPLE_INSTITUTIONS, scoring.SAMPLE_FINDINGS, rules=rules
    )
    rating = scoring.rate(institutions, findings, rules, 2023)
    assert from_wheel == dict(zip(rating["uscc"], rating["grade"], strict=True))
    assert "天津市西青区博文培训学校" in rated.stdout
    migrations = installed / "service" / "core" / "migrations"
    assert (migrations / "script.py.mako").is_file()
    assert len(list((migrations / "versions").glob("*.py"))) >= 2
    # what the page and the messages need travels too: templates, stylesheet, catalogue
    public = installed / "service" / "api" / "public"
    assert (public / "templates" / "page.html").is_file()
    assert (public / "static" / "public.css").is_file()
    assert (
        installed / "scoring" / "locale" / "zh_CN" / "LC_MESSAGES" / "credit_rating.po"
    ).is_file()
    explained = subprocess.run(
        [sys.executable, "-m", "service.cli", "explain", "52120111MJ0642473E", "--year", "2023",
         "--institutions", "missing.csv"],
        cwd=elsewhere,
        env={k: v for k, v in env.items() if k != "CREDIT_LANG"},
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert explained.returncode == 1 and "错误" in explained.stderr  # Chinese by default
