"""The Celery app: queues ``media`` (decode), ``ml`` (train, score) and ``loop`` (the tick,
refills), beat schedule.

Run workers with ``celery -A workers.celery_app worker -Q media,ml`` and ``... -Q loop``.
Scaling out is more of these processes on more machines against the same broker, database
and blob store.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init
from kombu import Queue

from tagloop.broker import declare_queues
from tagloop.config import Settings, ensure_data_dir, get_settings, make_files_private
from tagloop.task_names import (
    ALL_QUEUES,
    LOOP_TICK,
    QUEUE_LOOP,
    QUEUE_MEDIA,
    QUEUE_ML,
    RECOVER_STALE,
    SWEEP_BLOBS,
)


def broker_options(settings: Settings) -> dict[str, Any]:
    """Transport options per broker. The SQLAlchemy transport hands its options to
    ``create_engine``, so Redis-only options (visibility_timeout...) must not reach it."""
    if settings.broker_url.startswith("sqla+"):
        return {"connect_args": {"timeout": 30}} if "sqlite" in settings.broker_url else {}
    if settings.broker_url.startswith(("redis", "rediss")):
        # An unacked task of a killed worker comes back after this many seconds.
        return {"visibility_timeout": settings.broker_visibility_timeout}
    return {}


def tune_sqlalchemy_transport(poll_seconds: float) -> None:
    """Poll the SQLAlchemy broker more often than kombu's default 1 s.

    With prefetch 1 a worker asks for one message per poll, so the default costs up to a
    second per task on short videos. The usual ``polling_interval`` transport option can't
    be used: this transport hands every option to ``create_engine``, which rejects it.
    """
    from kombu.transport import sqlalchemy as sqla_transport

    sqla_transport.Transport.polling_interval = poll_seconds


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    if settings.broker_url.startswith("sqla+"):
        tune_sqlalchemy_transport(settings.broker_poll_seconds)
    ensure_data_dir(settings)
    app = Celery("tagloop", broker=settings.broker_url, include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # results live in the job table, not a result backend
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # a killed child's task goes back to the queue
        worker_prefetch_multiplier=1,  # long tasks: don't hoard messages on one worker
        task_queues=[Queue(q) for q in ALL_QUEUES],
        task_default_queue=QUEUE_MEDIA,
        task_routes={
            "tagloop.media.*": {"queue": QUEUE_MEDIA},
            "tagloop.ml.*": {"queue": QUEUE_ML},
            "tagloop.loop.*": {"queue": QUEUE_LOOP},
        },
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        beat_schedule={
            "loop-tick": {
                "task": LOOP_TICK,
                "schedule": settings.loop_tick_seconds,
                # A tick that waited longer than its interval is superseded by the next.
                "options": {"queue": QUEUE_LOOP, "expires": settings.loop_tick_seconds},
            },
            "recover-stale-jobs": {
                "task": RECOVER_STALE,
                "schedule": settings.recover_every_seconds,
                "options": {"queue": QUEUE_MEDIA},
            },
            "sweep-orphan-blobs": {
                "task": SWEEP_BLOBS,
                "schedule": settings.blob_sweep_every_minutes * 60,
                # Sweeps that piled up behind long videos are superseded by the next one.
                "options": {
                    "queue": QUEUE_MEDIA,
                    "expires": settings.blob_sweep_every_minutes * 60,
                },
            },
        },
    )
    return app


app = create_celery()


@worker_init.connect
def _declare_queues(**_: Any) -> None:
    declare_queues(app.conf.broker_url, list(ALL_QUEUES))


@worker_init.connect
@beat_init.connect
def _private_files(**_: Any) -> None:
    # Blobs, tensors, models and the beat schedule are the data dir owner's only; set at
    # start (pool children inherit it), not at import, so importing this module changes
    # nothing in the importing process.
    make_files_private()
