"""The FastAPI application factory: ``uvicorn --factory services.api.app:create_app``."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from services.api.deps import TaskSender
from services.api.errors import install_error_handlers
from services.api.limits import RequestGateMiddleware
from services.api.request_log import RequestLogMiddleware
from services.api.routes import (
    clips,
    export,
    health,
    holdout,
    jobs,
    labels,
    me,
    models,
    pseudo_labels,
    queue,
    stats,
    strategies,
    tags,
    videos,
)
from tagloop import __version__
from tagloop.auth import TokenCache
from tagloop.config import Settings, get_settings
from tagloop.storage import BlobStore

GZIP_MIN_BYTES = 1024


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="tagloop",
        version=__version__,
        description="Tag short videos with active learning. Every route but /healthz needs "
        "`Authorization: Bearer <token>` (`tagloop token create`), checked before the request's "
        "body is read.",
    )
    app.state.settings = settings
    app.state.store = BlobStore(settings.blob_url)
    app.state.sender = TaskSender(settings.broker_url)
    app.state.tokens = TokenCache(settings.auth_cache_seconds)
    install_error_handlers(app)
    # Innermost: JSON and CSV answers of 1 KB and more go gzip-compressed to clients that
    # accept it (a page of 1,000 tags: about 100 KB, 10 KB compressed). Starlette leaves
    # media alone: video/* and image/* are excluded, and so is every 206 (a Range answer's
    # offsets count the stored bytes). Inside the gate, so its refusals stay plain.
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=5)
    # The gate checks the token and the body's size before a route reads a byte; the request
    # log wraps it (the last added runs first), so its refusals are logged too.
    app.add_middleware(RequestGateMiddleware, settings=settings, tokens=app.state.tokens)
    app.add_middleware(RequestLogMiddleware)
    for module in (
        health,
        videos,
        clips,
        jobs,
        tags,
        labels,
        queue,
        holdout,
        models,
        pseudo_labels,
        stats,
        export,
        me,
        strategies,
    ):
        app.include_router(module.router)
    return app
