"""Deny by default: every route of the API names who may call it.

A route is admitted only through a dependency made by `requires(...)` or `public_or()` (they
carry an `access` attribute). This walks every route of the real app, so a new route without
an access rule fails here before it is ever served.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from service.api.app import create_app
from service.api.deps import Supervisor, access_of
from service.core.settings import Settings

# Routes FastAPI adds itself: the schema and the documentation pages, not the API.
NOT_API = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}

SUPERVISOR = ("supervisor",)
READER = ("supervisor", "analyst")
PUBLIC = ("public",)
EXPECTED = {  # the key routes; a route missing here is still checked above
    ("POST", "/v1/institutions"): SUPERVISOR,
    ("GET", "/v1/institutions"): READER,
    ("GET", "/v1/institutions/{uscc}"): READER,
    ("GET", "/v1/institutions/{uscc}/history"): PUBLIC,
    ("POST", "/v1/findings"): SUPERVISOR,
    ("GET", "/v1/findings"): READER,
    ("GET", "/v1/findings/{finding_id}"): READER,
    ("POST", "/v1/findings/{finding_id}/revoke"): SUPERVISOR,
    ("POST", "/v1/imports"): SUPERVISOR,
    ("GET", "/v1/inspections"): READER,
    ("GET", "/v1/coverage/{year}"): READER,
    ("POST", "/v1/draws"): SUPERVISOR,
    ("GET", "/v1/draws"): PUBLIC,
    ("GET", "/v1/draws/{draw_id}"): PUBLIC,
    ("POST", "/v1/objections"): SUPERVISOR,
    ("GET", "/v1/objections"): READER,
    ("GET", "/v1/objections/corrections"): PUBLIC,
    ("POST", "/v1/objections/{objection_id}/resolve"): SUPERVISOR,
    ("POST", "/v1/ratings/{year}"): SUPERVISOR,
    ("POST", "/v1/ratings/{year}/publish"): SUPERVISOR,
    ("GET", "/v1/ratings/{year}"): PUBLIC,
    ("GET", "/v1/ratings/{year}/revisions"): READER,
    ("GET", "/v1/ratings/{year}/export.xlsx"): READER,
    ("GET", "/v1/ratings/{year}/{uscc}"): PUBLIC,
    ("POST", "/v1/evaluate"): READER,
    ("GET", "/v1/rules"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    folder: Path = tmp_path_factory.mktemp("access")
    return create_app(Settings(database_url=f"sqlite:///{folder / 'unused.db'}"))


def served(app: FastAPI) -> list[Any]:
    """Every route as it is served: included routers flattened, with their prefixes and their
    own dependencies (FastAPI >= 0.16x keeps included routers nested in `app.routes`)."""
    flatten = getattr(routing, "iter_route_contexts", None)
    return list(flatten(app.routes)) if flatten else list(app.routes)


def is_api(route: Any) -> bool:
    return isinstance(getattr(route, "original_route", route), APIRoute)


def api_routes(app: FastAPI) -> list[Any]:
    return [r for r in served(app) if is_api(r)]


def calls(dependant: Dependant) -> Iterator[object]:
    """Every callable the route depends on, at any depth."""
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from calls(sub)


def access(route: Any) -> set[str]:
    """The roles admitted by the route's access rules; empty when it has none."""
    rules = [access_of(call) for call in calls(route.dependant)]
    return {role for rule in rules if rule is not None for role in rule}


def test_every_api_route_has_an_explicit_access_rule(app: FastAPI) -> None:
    unguarded = [f"{sorted(r.methods)} {r.path}" for r in api_routes(app) if not access(r)]
    assert unguarded == []


def test_only_the_schema_and_documentation_are_not_api_routes(app: FastAPI) -> None:
    others = {getattr(r, "path", repr(r)) for r in served(app) if not is_api(r)}
    assert others == NOT_API
    assert len(api_routes(app)) >= len(EXPECTED)


def test_key_routes_admit_exactly_the_expected_roles(app: FastAPI) -> None:
    found = {
        (method, route.path): tuple(sorted(access(route)))
        for route in api_routes(app)
        for method in route.methods
    }
    assert {key: found.get(key) for key in EXPECTED} == {
        key: tuple(sorted(roles)) for key, roles in EXPECTED.items()
    }


def test_the_walk_catches_a_route_without_an_access_rule(app: FastAPI) -> None:
    """The check above could fail: a route added without a rule is found, one with a rule not."""
    probe, nested = FastAPI(), APIRouter(prefix="/v1/probe")

    @nested.get("/open")
    def open_route() -> dict[str, str]:
        return {}

    @nested.get("/guarded")
    def guarded_route(who: Supervisor) -> dict[str, str]:
        return {}

    probe.include_router(nested)
    routes = {r.path: access(r) for r in api_routes(probe)}
    assert routes == {"/v1/probe/open": set(), "/v1/probe/guarded": {"supervisor"}}


def test_every_route_that_takes_a_body_requires_a_key(app: FastAPI) -> None:
    """The guard (`service.api.guard`) refuses a body without a valid key before reading it:
    right only while no route that anyone may call takes one."""
    with_body = [r for r in api_routes(app) if r.dependant.body_params]
    assert with_body, "the check could not fail"
    public = [f"{sorted(r.methods)} {r.path}" for r in with_body if "public" in access(r)]
    assert public == []
