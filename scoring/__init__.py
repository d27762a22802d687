"""The scorer: the Tianjin credit measure as rules, and the pure engine that applies them.

The public API, all a notebook or a script needs::

    import scoring

    rules = scoring.load_rules()  # the shipped measure, or load_rules(Path("my-rules"))
    institutions, findings = scoring.read_inputs(
        scoring.SAMPLE_INSTITUTIONS, scoring.SAMPLE_FINDINGS, rules=rules
    )
    grades = scoring.rate(institutions, findings, rules, 2023)
    why = scoring.explain(institutions, findings, rules, 2023, "52120111MJ0627485A")

Errors are `scoring.ScoringError` and its subclasses (see `scoring.errors`).
"""

from scoring.engine import rate
from scoring.errors import InputError, Problem, RulesError, ScoringError, UnknownInstitution
from scoring.explain import Explanation, explain, explain_all
from scoring.input_files import read_inputs, read_table
from scoring.inputs import validate
from scoring.rules import RuleSet, RulesInForce
from scoring.shipped import (
    RULES_DIR,
    SAMPLE_DIR,
    SAMPLE_FINDINGS,
    SAMPLE_INSTITUTIONS,
    load_rules,
)

__all__ = [
    "RULES_DIR",
    "SAMPLE_DIR",
    "SAMPLE_FINDINGS",
    "SAMPLE_INSTITUTIONS",
    "Explanation",
    "InputError",
    "Problem",
    "RuleSet",
    "RulesError",
    "RulesInForce",
    "ScoringError",
    "UnknownInstitution",
    "explain",
    "explain_all",
    "load_rules",
    "rate",
    "read_inputs",
    "read_table",
    "validate",
]
