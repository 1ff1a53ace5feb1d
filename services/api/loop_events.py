"""What the API does after an event that changes what annotators should see: ask the loop
(``tagloop.pipeline.loop``) which jobs are due, commit them, send their tasks.

The event itself is already committed, so a broker that cannot be reached never fails the
request: the jobs it could not send are ended ``failed`` (``tagloop.pipeline.dispatch``) and
the next beat tick retries.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.api.deps import TaskSender
from tagloop.config import Settings
from tagloop.pipeline import loop
from tagloop.pipeline.dispatch import dispatch


def after_queue_change(
    session: Session,
    settings: Settings,
    sender: TaskSender,
    *,
    trigger: str,
    caller_starved: bool = False,
) -> None:
    """A label, a skip or an empty answer: refill the queue if it ran low."""
    plan = loop.plan_refill_if_low(
        session, settings=settings, trigger=trigger, caller_starved=caller_starved
    )
    dispatch(session, sender, plan)


def after_promotion(session: Session, settings: Settings, sender: TaskSender) -> None:
    """A promote or roll back by hand: score what that version has not scored, refill."""
    dispatch(session, sender, loop.plan_score(session, settings=settings, trigger="promote"))
