"""The API's documentation pages, working with no internet: Swagger UI at /docs and ReDoc at
/redoc load their scripts and styles from this service, never from a CDN.

FastAPI's own pages load them from jsDelivr, which leaves them blank on a government intranet.
The files are those of the installed `fastapi-offline` package, served at /docs/assets/ by
name (only the four named here: no path from a request reaches the disk). ReDoc's bundle names
one outside file itself, the Redocly logo on its CDN: that address is rewritten to this
service's favicon as the bundle is served, so the page asks no other host for anything. The pages
themselves stay plain Starlette routes, as FastAPI's are; the assets route names its access
like every API route (anyone).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse, Response

from service.api.deps import Anyone
from service.core.errors import NotFound

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
PREFIX = "/docs/assets"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
REWRITES = {
    "redoc.standalone.js": [
        (b"https://cdn.redoc.ly/redoc/logo-mini.svg", PREFIX.encode() + b"/favicon.png")
    ]
}
"""Outside addresses inside the bundles, and what they are served as."""
SWAGGER_PARAMETERS = {"validatorUrl": None}
"""Swagger UI would otherwise send the schema to validator.swagger.io for its badge."""

router = APIRouter(include_in_schema=False)


@router.get(PREFIX + "/{name}")
def asset(name: str, who: Anyone) -> Response:
    if name not in FILES:
        raise NotFound(f"no documentation asset {name!r}")
    headers = {"Cache-Control": "public, max-age=86400"}
    if name in REWRITES:
        return Response(_rewritten(name), media_type=FILES[name], headers=headers)
    return FileResponse(ASSETS / name, media_type=FILES[name], headers=headers)


@cache
def _rewritten(name: str) -> bytes:
    """The bundle `name` with its outside addresses replaced (read once per process)."""
    content = (ASSETS / name).read_bytes()
    for outside, inside in REWRITES[name]:
        content = content.replace(outside, inside)
    return content


def install(app: FastAPI) -> None:
    """Add /docs, its OAuth2 redirect and /redoc to an app made with docs_url=None and
    redoc_url=None, and the route of their assets."""
    title = app.title
    schema = app.openapi_url or "/openapi.json"

    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + schema,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=root + OAUTH2_REDIRECT,
            swagger_js_url=f"{root}{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{PREFIX}/favicon.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + schema,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{PREFIX}/favicon.png",
            with_google_fonts=False,
        )

    app.add_route("/docs", swagger, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT, oauth2_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
    app.include_router(router)
