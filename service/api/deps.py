"""Dependencies shared by the routes, as named types: the database, the rules, access control,
and the path and query parameters several routes take (years, revisions, pages).

Access is deny-by-default: every route must depend on `requires(...)` (named roles) or
`public_or(...)` (anyone; a key, if sent, must be valid). A test walks all routes and fails on
one without either, so a new route cannot be exposed by forgetting it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.security import APIKeyHeader
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from scoring.rules import MAX_YEAR, MIN_YEAR, RuleSet
from service.api import keys
from service.api.caches.memory import ReadCache
from service.api.caches.responses import GENERATION
from service.api.keys import Principal, Role
from service.api.schemas import NO_NUL
from service.core.database import reading
from service.core.settings import Settings
from service.ratings.risk import RiskModel

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


# The dependencies that only read app.state are `async def`: FastAPI runs a plain `def`
# dependency in the thread pool, and each such hop costs more than the work it wraps.
# There is deliberately no connection dependency: one would be taken in one thread-pool hop
# and given back in another, after the response, so under load every pooled connection can be
# held by requests waiting for a thread while every thread waits for a connection (a stall
# until the pool's timeout, then 500s). Routes open `reading(engine)` or `writing(engine)`
# themselves, in the one hop that runs them.


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_rules(request: Request) -> RuleSet:
    rules: RuleSet = request.app.state.rules
    return rules


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_risk(request: Request) -> RiskModel | None:
    risk: RiskModel | None = request.app.state.risk
    return risk


EngineDep = Annotated[Engine, Depends(get_engine)]
RiskDep = Annotated[RiskModel | None, Depends(get_risk)]
RulesDep = Annotated[RuleSet, Depends(get_rules)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _lookup(engine: Engine, key: str) -> Principal | None:
    with reading(engine) as conn:
        return keys.lookup(conn, key)


LOOKED_UP = "credit.principal"
"""Scope entry where the guard leaves the key it looked up and its holder, so that the route's
access rule does not look the same key up again."""


async def find_principal(
    cache: ReadCache, engine: Engine, key: str, generation: Hashable | None = None
) -> Principal | None:
    """The holder of `key` (None: unknown or revoked), from memory unless the database changed.

    `generation`: one the response cache read for this very request (`GENERATION` in its scope:
    read after the request arrived, so a revocation committed before it is seen); without it,
    the generation is read here.

    The engine and cache are taken from app.state directly, not as sub-dependencies: each
    dependency costs FastAPI more to solve than this whole function on a cache hit.
    """
    if generation is None:
        generation = await cache.generation()
    principal: Principal | None = cache.get(("key", key))
    if principal is None:
        principal = await run_in_threadpool(_lookup, engine, key)
        if principal is not None:
            cache.put(generation, ("key", key), principal)
    return principal


async def _principal(request: Request, key: str | None) -> Principal | None:
    """None without a key; else the key's holder (401 for an unknown or revoked key)."""
    if key is None:
        return None
    known: tuple[str, Principal | None] | None = request.scope.get(LOOKED_UP)
    if known is not None and known[0] == key:
        principal = known[1]
    else:
        state = request.app.state
        generation = request.scope.get(GENERATION)
        principal = await find_principal(state.cache, state.engine, key, generation)
    if principal is None:
        raise HTTPException(401, "Invalid or revoked API key")
    return principal


def requires(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """Admit only keys with one of `roles`: 401 without a valid key, 403 without the role."""

    async def dependency(
        request: Request, key: Annotated[str | None, Depends(api_key_header)]
    ) -> Principal:
        principal = await _principal(request, key)
        if principal is None:
            raise HTTPException(401, "An API key is required (header X-API-Key)")
        if principal.role not in roles:
            raise HTTPException(403, f"Role {principal.role} may not do this")
        return principal

    dependency.access = tuple(roles)  # type: ignore[attr-defined]
    return dependency


def public_or() -> Callable[..., Awaitable[Principal | None]]:
    """Admit anyone; a presented key must be valid and tells the route who is asking."""

    async def dependency(
        request: Request, key: Annotated[str | None, Depends(api_key_header)]
    ) -> Principal | None:
        return await _principal(request, key)

    dependency.access = ("public",)  # type: ignore[attr-defined]
    return dependency


def access_of(dependency: Any) -> tuple[str, ...] | None:
    return getattr(dependency, "access", None)


Supervisor = Annotated[Principal, Depends(requires(Role.SUPERVISOR))]
Reader = Annotated[Principal, Depends(requires(Role.SUPERVISOR, Role.ANALYST))]
Anyone = Annotated[Principal | None, Depends(public_or())]
Sharer = Annotated[Principal, Depends(requires(Role.SHARING, Role.SUPERVISOR))]

# Parameters ---------------------------------------------------------------------------------

YearPath = Annotated[int, Path(ge=MIN_YEAR, le=MAX_YEAR, examples=[2023])]
YearQuery = Annotated[int, Query(ge=MIN_YEAR, le=MAX_YEAR, examples=[2023])]
OptionalYear = Annotated[int | None, Query(ge=MIN_YEAR, le=MAX_YEAR)]
Revision = Annotated[int | None, Query(ge=1, le=1_000_000, description="A revision number")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
FindingId = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL)]
