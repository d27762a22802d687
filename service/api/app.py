"""The FastAPI application: settings checked, database migrated, rules loaded, routes mounted.

`create_app()` is also uvicorn's factory (`service.api.app:create_app`), so several worker
processes each build their own app from the same environment.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scoring.shipped import load_rules
from service.api import problems
from service.api.caches.memory import ReadCache
from service.api.caches.responses import ResponseCache
from service.api.guard import Guard
from service.api.published import LOOKUP_PATH, FastLookups, PublishedYears
from service.api.routes import (
    deliveries,
    docs,
    draws,
    evaluate,
    findings,
    health,
    imports,
    inspections,
    institutions,
    objections,
    public,
    ratings,
    rules,
)
from service.core.database import make_engine
from service.core.migrate import upgrade
from service.core.settings import Settings
from service.ratings.risk import load_risk

REQUESTS = Counter("credit_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("credit_http_request_seconds", "HTTP request latency", ["method", "route"])

DESCRIPTION = """
Credit ratings of Tianjin's subject-type off-campus training institutions
(《天津市学科类校外培训机构信用监管暂行办法》).

Send an API key in the `X-API-Key` header. Roles: `supervisor` (read, import, compute,
publish, revoke), `sharing` (published results), `analyst` (read only). Without a key, only
published grades are visible. Errors are RFC 9457 problems (`application/problem+json`).
"""


class Metrics:
    """Counts requests and times them per route template (plain ASGI: cheap on the hot path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)
            REQUESTS.labels(scope["method"], route, str(status)).inc()


_SETTLED = False


def settled() -> None:
    """Once per process, when the first app has started: what is alive by then (the modules,
    the rules, the app: hundreds of thousands of objects that live as long as the process) is
    moved out of the garbage collector's sight (`gc.freeze`). Each full collection would
    otherwise walk all of it, a pause of 0.1-0.2 s for every request under way; now it walks
    only what was made since."""
    global _SETTLED
    if not _SETTLED:
        _SETTLED = True
        gc.collect()  # nothing that is garbage already is frozen
        gc.freeze()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = make_engine(settings.database_url)
    ruleset = load_rules(settings.rules_dir)
    # Refused here, before anything else starts, when it does not match (service.ratings.risk).
    risk = (
        None if settings.calibration_dir is None else load_risk(settings.calibration_dir, ruleset)
    )

    cache = ReadCache(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upgrade(engine)
        settled()
        yield
        await cache.close()
        published.close()
        engine.dispose()

    app = FastAPI(
        title="credit-rating",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=problems.responses(400, 401, 408, 413, 422, 429),
        docs_url=None,  # served by routes.docs, from this service's own files (no CDN)
        redoc_url=None,
    )
    # Metrics outermost, so answers from the response cache are counted and timed too; the
    # guard around the cache, so that they are rate-limited and get the security headers.
    published = PublishedYears(engine, settings.published_memory)
    # Inside the response cache: a lookup of a published year kept in memory is answered
    # before routing (service.api.published), and the answer kept like the route's.
    lookup = next(r for r in ratings.router.routes if getattr(r, "path", "") == LOOKUP_PATH)
    app.add_middleware(FastLookups, cache=cache, years=published, route=lookup)
    app.add_middleware(ResponseCache, cache=cache)
    app.add_middleware(Guard, settings=settings, cache=cache, engine=engine)
    app.add_middleware(Metrics)
    app.state.settings = settings
    app.state.engine = engine
    app.state.cache = cache
    app.state.published = published
    app.state.rules = ruleset
    app.state.risk = risk
    problems.install(app)
    # Ratings first: routes are matched in order, and a rating lookup is the most frequent call.
    for module in (ratings, health, institutions, findings, imports, evaluate, rules, deliveries):
        app.include_router(module.router)
    app.include_router(inspections.router)  # register and coverage (docs/inspections.md)
    app.include_router(draws.router)  # 双随机 draws (docs/draws.md)
    app.include_router(objections.router)  # 公示期 objections (docs/objections.md)
    app.include_router(public.router)  # the public page (公示), outside the API's schema
    docs.install(app)

    return app
