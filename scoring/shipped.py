"""Reading the rules directory from disk; the checking itself is `scoring.rules.parse_rules`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from scoring.errors import RulesError
from scoring.rules import RULE_FILES, RuleSet, parse_rules

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = PROJECT_ROOT / "rules"
SAMPLE_DIR = PROJECT_ROOT / "data"


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
