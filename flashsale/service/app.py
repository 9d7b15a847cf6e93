"""The Starlette application: routes, JSON errors, lifespan.

Every error leaves as JSON ``{"error", "detail", "field"}``: the documented
ApiErrors, Starlette's own 404/405, and (should one ever happen) an unexpected
exception as a 500 that says so without a traceback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flashsale.service.admin import admin_routes
from flashsale.service.bodies import ApiError, error_response
from flashsale.service.openapi import openapi_spec
from flashsale.service.routes import public_routes
from flashsale.service.runtime import Runtime

__all__ = ["create_app"]


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": code, "detail": str(exc.detail), "field": None},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _crash(_: Request, exc: Exception) -> Response:
    return JSONResponse(
        {"error": "internal", "detail": type(exc).__name__, "field": None}, status_code=500
    )


async def healthz(_: Request) -> Response:
    """Liveness, outside the worker pool: also the benchmark's trivial endpoint."""
    return JSONResponse({"ok": True})


def create_app(
    runtime: Runtime,
    on_started: Callable[[], None] | None = None,
    on_stopped: Callable[[], None] | None = None,
) -> Starlette:
    """The service around ``runtime`` (started and stopped by the app's lifespan)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        if on_started is not None:
            on_started()
        try:
            yield
        finally:
            await runtime.stop()
            if on_stopped is not None:
                on_stopped()

    routes = [*public_routes(), *admin_routes(), Route("/healthz", healthz, methods=["GET"])]
    spec = openapi_spec(routes)

    async def openapi(_: Request) -> Response:
        return JSONResponse(spec)

    app = Starlette(
        routes=[*routes, Route("/openapi.json", openapi, methods=["GET"])],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _crash},
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
