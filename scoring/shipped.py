"""What ships with the package: the measure as YAML (`rules/`) and the sample district
(`data/`); and reading a rules directory from disk.

Both folders sit at the top of the repository, where supervisors edit them, and travel inside
the wheel (as `scoring/_shipped/rules` and `scoring/_shipped/data`, see pyproject.toml), so an
installed `credit-rating` rates the sample from any directory. The checking itself is
`scoring.rules.parse_rules`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from scoring.errors import RulesError
from scoring.rules import RULE_FILES, RuleSet, parse_rules

_PACKAGE = Path(__file__).resolve().parent


def _shipped(folder: str) -> Path:
    """`folder` inside an installed wheel, or at the top of the checkout this runs from."""
    inside = _PACKAGE / "_shipped" / folder
    return inside if inside.is_dir() else _PACKAGE.parent / folder


RULES_DIR = _shipped("rules")
SAMPLE_DIR = _shipped("data")
SAMPLE_INSTITUTIONS = SAMPLE_DIR / "institutions.csv"
SAMPLE_FINDINGS = SAMPLE_DIR / "findings.csv"
SAMPLE_INSPECTIONS = SAMPLE_DIR / "inspections.csv"
"""The 2023 inspection register of the sample district (scoring.inspections)."""


def load_rules(directory: Path = RULES_DIR) -> RuleSet:
    """Read and check every rules file; RulesError names the file, rule and reason."""
    documents: dict[str, Any] = {}
    for name in RULE_FILES:
        path = directory / name
        if not path.is_file():
            raise RulesError(str(path), "-", "file is missing from the rules directory")
        try:
            documents[name] = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise RulesError(str(path), "-", f"not valid UTF-8 YAML: {exc}") from None
    try:
        return parse_rules(documents)
    except RulesError as exc:
        raise RulesError(str(directory / exc.file), exc.rule, exc.reason) from None


@cache
def scale_names(directory: Path = RULES_DIR) -> tuple[str, ...]:
    """The grade scales a rules directory defines (`four`, `five` in the shipped measure):
    what settings, requests and the command line may name."""
    return tuple(scale.code for scale in load_rules(directory).scales)


def known_scale(name: str, directory: Path = RULES_DIR) -> str:
    """`name` when it is a grade scale of the rules in `directory`; else ValueError saying which
    scales there are (for request models, settings and command-line options alike)."""
    names = scale_names(directory)
    if name not in names:
        raise ValueError(f"a grade scale of the rules: {', '.join(names)} (not {name!r})")
    return name
