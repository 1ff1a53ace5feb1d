"""FastAPI dependencies: settings, a session per request, the blob store, auth, the task sender."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from tagloop.auth import Identity, TokenCache
from tagloop.broker import declare_queues
from tagloop.config import Settings
from tagloop.db.engine import make_session_factory
from tagloop.errors import Forbidden, TagloopError, TransientError
from tagloop.storage import BlobStore
from tagloop.task_names import ALL_QUEUES, TASK_QUEUES


class Unauthorized(TagloopError):
    code = "unauthorized"
    http_status = 401


# The trivial dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in its
# thread pool, a hop that costs more than the lookup itself on the hot queue routes.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """The request owns the transaction: commit when the route returns, roll back on error."""
    session = make_session_factory(request.app.state.settings.database_url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


async def get_store(request: Request) -> BlobStore:
    store: BlobStore = request.app.state.store
    return store


# Who is calling: the token's name (the annotator) and role.
Caller = Identity


# scope="function": commit (or roll back) before the response is sent, so a client never
# sees 2xx for a write that then failed to commit.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def bearer_token(header: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; 401 ``unauthorized``."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <token>' (tagloop token create)")
    return token.strip()


def identify(header: str, *, tokens: TokenCache, session: Session) -> Identity:
    """Who an ``Authorization`` header speaks for; 401 ``unauthorized`` without a bearer
    token, ``invalid_token`` for an unknown or revoked one. The request gate
    (``services.api.limits``) and ``get_caller`` both ask this."""
    identity = tokens.lookup(session, bearer_token(header))
    if identity is None:
        raise Unauthorized("unknown or revoked token", code="invalid_token")
    return identity


def get_caller(request: Request, session: SessionDep) -> Caller:
    # The request gate has checked the token before the body was read; ask again only when
    # it did not (a signed media URL lets a request through without one).
    identity = getattr(request.state, "identity", None)
    if not isinstance(identity, Identity):
        tokens: TokenCache = request.app.state.tokens
        identity = identify(
            request.headers.get("authorization", ""), tokens=tokens, session=session
        )
        request.state.identity = identity
    request.state.caller = identity.name  # for the request log line (request_log.py)
    return identity


async def require_admin(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    if caller.role != "admin":
        raise Forbidden("this needs an admin token", code="admin_required")
    return caller


class TaskSender:
    """Enqueues tasks by name so the API never imports worker code or torch."""

    def __init__(self, broker_url: str) -> None:
        self._app = Celery("tagloop-api", broker=broker_url, set_as_current=False)
        self._app.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)
        if broker_url.startswith("sqla+sqlite"):
            self._app.conf.broker_transport_options = {"connect_args": {"timeout": 30}}
        declare_queues(broker_url, list(ALL_QUEUES))

    def send_plan(self, plan: Any) -> None:
        """Send the tasks of a ``pipeline.loop.LoopPlan`` (jobs already committed)."""
        for name, job_id in plan.tasks:
            self.send(name, job_id)

    def send(self, name: str, *args: Any) -> str:
        try:
            result = self._app.send_task(name, args=list(args), queue=TASK_QUEUES[name])
        except Exception as exc:  # kombu raises many connection error types
            raise TransientError(
                f"could not reach the task broker: {exc}", code="broker_unavailable"
            ) from exc
        return str(result.id)


async def get_sender(request: Request) -> TaskSender:
    sender: TaskSender = request.app.state.sender
    return sender


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[BlobStore, Depends(get_store)]
CallerDep = Annotated[Caller, Depends(get_caller)]
AdminDep = Annotated[Caller, Depends(require_admin)]
SenderDep = Annotated[TaskSender, Depends(get_sender)]
