"""Schemathesis over the whole OpenAPI schema, against a live server on both databases.

Every operation gets generated requests, valid and invalid, with a supervisor's key and with
none. The service must never answer 5xx, and every answer must match the schema it publishes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks

from service import keys
from service.db import make_engine, writing
from service.importing import import_files
from service.keys import Role
from service.loading import load_rules
from service.migrate import upgrade
from tests.conftest import SAMPLE_FILES
from tests.servers import create_database, running_service


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if request.param == "sqlite":
        folder: Path = tmp_path_factory.mktemp("schema")
        url = f"sqlite:///{folder / 'credit-rating.db'}"
    else:
        url = create_database(request.getfixturevalue("postgres_admin"))
    engine = make_engine(url)
    upgrade(engine)
    import_files(engine, SAMPLE_FILES, rules=load_rules(), by="tests")
    with writing(engine) as conn:
        key = keys.create(conn, role=Role.SUPERVISOR, name="schemathesis")
    engine.dispose()
    with running_service(url) as base:
        yield base, key


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
def test_no_request_gets_a_5xx_or_an_answer_outside_the_schema(live: Any, with_key: bool) -> None:
    base, key = live
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    headers = {"X-API-Key": key} if with_key else {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, "the schema lost operations"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @EXAMPLES
            def check(case: Any) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS)

            check()
