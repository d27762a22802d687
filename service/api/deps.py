"""Dependencies shared by the routes: the database, the rules, and access control.

Access is deny-by-default: every route must depend on `requires(...)` (named roles) or
`public_or(...)` (anyone; a key, if sent, must be valid). A test walks all routes and fails on
one without either, so a new route cannot be exposed by forgetting it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader
from sqlalchemy import Connection, Engine

from scoring.rules import RuleSet
from service import keys
from service.db import reading
from service.keys import Principal, Role
from service.settings import Settings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_rules(request: Request) -> RuleSet:
    rules: RuleSet = request.app.state.rules
    return rules


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def read_connection(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Connection]:
    with reading(engine) as conn:
        yield conn


EngineDep = Annotated[Engine, Depends(get_engine)]
RulesDep = Annotated[RuleSet, Depends(get_rules)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ReadDep = Annotated[Connection, Depends(read_connection)]


def _principal(engine: Engine, key: str | None) -> Principal | None:
    if key is None:
        return None
    with reading(engine) as conn:
        principal = keys.lookup(conn, key)
    if principal is None:
        raise HTTPException(401, "Invalid or revoked API key")
    return principal


def requires(*roles: Role) -> Callable[..., Principal]:
    """Admit only keys with one of `roles`: 401 without a valid key, 403 without the role."""

    def dependency(
        engine: EngineDep, key: Annotated[str | None, Depends(api_key_header)]
    ) -> Principal:
        principal = _principal(engine, key)
        if principal is None:
            raise HTTPException(401, "An API key is required (header X-API-Key)")
        if principal.role not in roles:
            raise HTTPException(403, f"Role {principal.role} may not do this")
        return principal

    dependency.access = tuple(roles)  # type: ignore[attr-defined]
    return dependency


def public_or() -> Callable[..., Principal | None]:
    """Admit anyone; a presented key must be valid and tells the route who is asking."""

    def dependency(
        engine: EngineDep, key: Annotated[str | None, Depends(api_key_header)]
    ) -> Principal | None:
        return _principal(engine, key)

    dependency.access = ("public",)  # type: ignore[attr-defined]
    return dependency


def access_of(dependency: Any) -> tuple[str, ...] | None:
    return getattr(dependency, "access", None)


Supervisor = Annotated[Principal, Depends(requires(Role.SUPERVISOR))]
Reader = Annotated[Principal, Depends(requires(Role.SUPERVISOR, Role.ANALYST))]
Anyone = Annotated[Principal | None, Depends(public_or())]
