"""The FastAPI application factory: ``uvicorn --factory services.api.app:create_app``."""

from __future__ import annotations

from fastapi import FastAPI

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
