"""The one way tasks of jobs reach the broker: commit the jobs, send each task by name, and
end ``failed`` every job whose task could not be sent.

A job whose message never reached the broker would otherwise stay ``queued``: the loop's
state counts it live until its heartbeat window passes (so nothing of its kind starts), and a
manual retry is refused with 409 meanwhile. Every sender goes through here: the API's routes
and loop events, the workers' follow-ups, beat's tick and stale-job recovery.

The sender itself belongs to the caller (the API and the workers each hold their own Celery
app and enqueue by task name, ``tagloop.task_names``): this module imports no framework.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from tagloop.db import jobs as job_repo
from tagloop.errors import TransientError
from tagloop.pipeline.loop import LoopPlan

log = logging.getLogger(__name__)


class TaskSender(Protocol):
    def send(self, name: str, *args: Any) -> str:
        """Enqueue task ``name`` with ``args``; raise ``TransientError`` (code
        ``broker_unavailable``) when the broker cannot take it. Returns the task id."""
        ...


@dataclass(frozen=True)
class JobTask:
    """A job's task to send: its name, its job, and its arguments (``(job_id,)`` when empty)."""

    name: str
    job_id: int
    args: tuple[int, ...] = ()


def send_jobs(
    session: Session,
    sender: TaskSender,
    tasks: Sequence[JobTask],
    *,
    raise_unsent: bool = False,
) -> tuple[int, ...]:
    """Commit, then send each task; returns the ids of the jobs that could not be sent, each
    ended ``failed`` with the error's code (committed).

    ``raise_unsent``: raise the first send error after that (a request asking for this very
    job answers 503); otherwise the caller goes on, and the loop's next tick retries."""
    session.commit()  # the worker must find the rows its message points to
    unsent: list[int] = []
    first: TransientError | None = None
    for task in tasks:
        try:
            sender.send(task.name, *(task.args or (task.job_id,)))
        except TransientError as exc:
            log.warning("could not send %s for job %s: %s", task.name, task.job_id, exc)
            fail_unsent(session, job_id=task.job_id, error=exc)
            unsent.append(task.job_id)
            first = first or exc
    if first is not None and raise_unsent:
        raise first
    return tuple(unsent)


def dispatch(
    session: Session, sender: TaskSender, plan: LoopPlan, *, raise_unsent: bool = False
) -> tuple[int, ...]:
    """Send a loop plan's tasks (see ``send_jobs``)."""
    tasks = [JobTask(name, job_id) for name, job_id in plan.tasks]
    return send_jobs(session, sender, tasks, raise_unsent=raise_unsent)


def fail_unsent(session: Session, *, job_id: int, error: TransientError) -> None:
    """End a job whose task never reached the broker, so it blocks nothing of its kind."""
    job = job_repo.get_job(session, job_id)
    job_repo.finish_job(session, job, status="failed", message=f"{error.code}: {error.message}")
    session.commit()
