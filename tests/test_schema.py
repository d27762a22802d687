"""Schemathesis over the whole OpenAPI schema, against a live server on both databases.

Every operation gets generated requests, valid and invalid, with a supervisor's key and with
none. The service must never answer 5xx, and every answer must match the schema it publishes.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks

from tests.conftest import Live

EXAMPLES = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
CHECKS = [
    not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.mark.parametrize("with_key", [True, False], ids=["supervisor", "anonymous"])
def test_no_request_gets_a_5xx_or_an_answer_outside_the_schema(live: Live, with_key: bool) -> None:
    schema = schemathesis.openapi.from_url(f"{live.base}/openapi.json")
    headers = live.as_("supervisor") if with_key else {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, "the schema lost operations"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @EXAMPLES
            def check(case: Any) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS)

            check()
