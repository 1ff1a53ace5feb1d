"""The labeling queue: lease the next clip, skip it. Labels close leases (routes/labels.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response, status

from services.api.deps import CallerDep, SessionDep, SettingsDep
from services.api.schemas import ClipOut, LeaseOut, QueueNext, QueueReason
from tagloop.db import queue as queue_repo

router = APIRouter(prefix="/api/v1/queue", tags=["queue"])


def _aware(ts: datetime) -> datetime:
    # SQLite hands datetimes back naive; every stored time is UTC.
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


@router.get(
    "/next",
    response_model=QueueNext,
    responses={204: {"description": "the queue is empty"}},
)
def next_item(
    caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> QueueNext | Response:
    """Lease the best free clip to the caller (or give back the lease they already hold).

    200 with the clip, ``lease_id``, its end, suggestions from the latest prediction and why
    the clip was chosen; 204 when nothing is queued.
    """
    item = queue_repo.lease_next(
        session, annotator=caller.name, lease_seconds=settings.lease_seconds
    )
    if item is None:
        session.commit()
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    clip, suggestions = queue_repo.clip_with_suggestions(session, clip_id=item.clip_id)
    if item.lease_id is None or item.lease_expires_at is None:  # leased rows always have both
        raise RuntimeError(f"queue item {item.id} is leased without a lease id")
    out = QueueNext(
        clip=ClipOut.model_validate(clip),
        lease_id=item.lease_id,
        lease_expires_at=_aware(item.lease_expires_at),
        suggestions=suggestions,
        reason=QueueReason(strategy=item.strategy, score=item.score, rank=item.rank),
    )
    # The lease must be durable before the client sees its id; the session dependency's
    # own commit runs after the response is sent.
    session.commit()
    return out


@router.post("/{lease_id}/skip", response_model=LeaseOut)
def skip_item(lease_id: str, caller: CallerDep, session: SessionDep) -> LeaseOut:
    """Give the clip back unlabeled; it is not offered again until the next refill."""
    row = queue_repo.skip(session, lease_id=lease_id, annotator=caller.name)
    out = LeaseOut(lease_id=lease_id, clip_id=row.clip_id, status=row.status)
    session.commit()
    return out
