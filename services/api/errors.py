"""Every error leaves the API as JSON ``{"error": {"code", "message"}}``, never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.request_log import quote, route_template
from tagloop.errors import TagloopError

log = logging.getLogger("tagloop.api")


def error_response(status: int, code: str, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TagloopError)
    async def _tagloop(_: Request, exc: TagloopError) -> JSONResponse:
        return error_response(exc.http_status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return error_response(422, "validation_error", "the request is not valid", details=details)

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        # The database refused a value (NUL in text, a number out of range, text too long):
        # input the routes should have checked, but it is still the client's, not a 500.
        log.warning("database refused a value: %s", exc.orig)
        return error_response(
            422, "invalid_value", "a value in the request cannot be stored or compared"
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log (logs/api.log under `tagloop up`), never to the client.
        log.exception(
            "unhandled error: method=%s route=%s",
            request.method,
            quote(route_template(request.scope) or request.url.path),
        )
        return error_response(
            500, "internal_error", f"{type(exc).__name__}: an internal error occurred"
        )
