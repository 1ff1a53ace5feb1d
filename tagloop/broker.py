"""Broker housekeeping that both the API and the workers need (kombu only, no Celery).

The SQLAlchemy transport creates a queue's row on first use and does not survive two
processes doing that at once (a UNIQUE violation on ``kombu_queue.name`` kills the consumer).
So every process declares the queues once at start, retrying that race.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from kombu import Connection, Queue

log = logging.getLogger(__name__)


def declare_queues(broker_url: str, names: Iterable[str], *, attempts: int = 5) -> None:
    """Make sure the named queues exist; a no-op when another process made them first."""
    if not broker_url.startswith("sqla+"):
        return  # Redis and others declare idempotently
    options = {"connect_args": {"timeout": 30}} if "sqlite" in broker_url else {}
    for attempt in range(1, attempts + 1):
        try:
            with Connection(broker_url, transport_options=options) as conn:
                channel = conn.default_channel
                for name in names:
                    Queue(name, channel=channel).declare()
            return
        except Exception as exc:  # IntegrityError from the loser of the race, or a busy db
            if attempt == attempts:
                raise
            log.info("declaring queues raced another process (%s); retrying", exc)
            time.sleep(0.2 * attempt)
