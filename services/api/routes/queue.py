"""The labeling queue: lease the next clip, renew, skip or release the lease. Labels close
leases (routes/labels.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response, status
from sqlalchemy.orm import Session

from services.api.deps import CallerDep, SenderDep, SessionDep, SettingsDep
from services.api.schemas import (
    ClipOut,
    LeaseOut,
    LeaseRenewed,
    QueueNext,
    QueueReason,
    RenewRequest,
    SkipRequest,
)
from tagloop.db import queue as queue_repo
from tagloop.db import tags as tag_repo
from tagloop.pipeline import loop
from tagloop.pipeline.dispatch import dispatch
from tagloop.suggestions import trained_suggestions

router = APIRouter(prefix="/api/v1/queue", tags=["queue"])


def _aware(ts: datetime) -> datetime:
    # SQLite hands datetimes back naive; every stored time is UTC.
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _shown_suggestions(session: Session, found: queue_repo.Suggestions) -> list[dict[str, Any]]:
    """The stored top tags the predicting version knows (a positive label in its training
    data: of a tag it never saw it knows nothing), best first, each with its ``group``: the
    page pre-checks at most one tag per group and need not fetch the vocabulary for that."""
    shown = trained_suggestions(found.top_tags, trained=found.trained_tags)
    tags = tag_repo.find_tags(session, [str(s["tag"]) for s in shown])
    return [
        {**s, "group": tags[str(s["tag"])].group if str(s["tag"]) in tags else None} for s in shown
    ]


@router.get(
    "/next",
    response_model=QueueNext,
    responses={204: {"description": "the queue is empty"}},
)
def next_item(
    caller: CallerDep,
    session: SessionDep,
    settings: SettingsDep,
    sender: SenderDep,
    queue: Annotated[Literal["al", "holdout"], Query()] = "al",
    hold_seconds: Annotated[float | None, Query()] = None,
) -> QueueNext | Response:
    """Lease the best free clip to the caller (or give back the lease they already hold).

    200 with the clip, ``lease_id``, its end, suggestions from the latest prediction (with the
    thresholds fitted on the holdout at which to pre-check them, when there are) and why
    the clip was chosen; 204 when nothing is queued for the caller (then a refill is asked
    for). ``queue=holdout`` serves the audit sample's own queue instead of active learning.
    A clip the caller skipped is never offered to them again. ``hold_seconds``: how long a
    newly taken lease is held (10 to ``TAGLOOP_LEASE_SECONDS``, the default; 422
    ``invalid_hold_seconds`` otherwise); a client that asks for short holds renews them
    (``POST /queue/{lease_id}/renew``), so a client that goes away lets go of the clip soon.
    """
    hold = queue_repo.check_hold_seconds(hold_seconds, lease_seconds=settings.lease_seconds)
    item = queue_repo.lease_next(session, annotator=caller.name, lease_seconds=hold, lane=queue)
    if item is None:
        session.commit()
        if queue == "al":
            dispatch(session, sender, loop.on_queue_empty(session, settings=settings))
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    clip, suggestions = queue_repo.clip_with_suggestions(session, clip_id=item.clip_id)
    if item.lease_id is None or item.lease_expires_at is None:  # leased rows always have both
        raise RuntimeError(f"queue item {item.id} is leased without a lease id")
    out = QueueNext(
        clip=ClipOut.model_validate(clip),
        lease_id=item.lease_id,
        lease_expires_at=_aware(item.lease_expires_at),
        suggestions=_shown_suggestions(session, suggestions),
        decision_threshold=suggestions.decision_threshold,
        group_threshold=suggestions.group_threshold,
        reason=QueueReason(strategy=item.strategy, score=item.score, rank=item.rank),
    )
    # The lease must be durable before the client sees its id; the session dependency's
    # own commit runs after the response is sent.
    session.commit()
    return out


@router.post("/{lease_id}/renew", response_model=LeaseRenewed)
def renew_item(
    lease_id: str,
    caller: CallerDep,
    session: SessionDep,
    settings: SettingsDep,
    body: Annotated[RenewRequest | None, Body()] = None,
) -> LeaseRenewed:
    """Hold the caller's live lease ``seconds`` from now (default ``TAGLOOP_LEASE_SECONDS``;
    10 to that, else 422 ``invalid_hold_seconds``): the UI's heartbeat while its page is
    open. 409 ``lease_expired`` / ``lease_closed`` when the lease is no longer held (it is
    never revived), 404 ``lease_not_found`` for anyone else's."""
    seconds = queue_repo.check_hold_seconds(
        body.seconds if body else None, lease_seconds=settings.lease_seconds
    )
    row = queue_repo.renew(session, lease_id=lease_id, annotator=caller.name, seconds=seconds)
    if row.lease_expires_at is None:  # a live lease always has its end
        raise RuntimeError(f"queue item {row.id} is leased without an end")
    out = LeaseRenewed(
        lease_id=lease_id,
        clip_id=row.clip_id,
        status=row.status,
        lease_expires_at=_aware(row.lease_expires_at),
    )
    session.commit()
    return out


@router.post("/{lease_id}/skip", response_model=LeaseOut)
def skip_item(
    lease_id: str,
    caller: CallerDep,
    session: SessionDep,
    settings: SettingsDep,
    sender: SenderDep,
    body: Annotated[SkipRequest | None, Body()] = None,
) -> LeaseOut:
    """Give the clip back unlabeled, optionally with a ``reason`` (``unclear``,
    ``not_applicable`` or free text). It is never offered to the caller again, goes back to
    others after ``TAGLOOP_SKIP_COOLDOWN_SECONDS``, and is parked as ``needs_review`` once
    ``TAGLOOP_SKIP_PARK_AFTER`` different annotators skipped it."""
    row, parked = queue_repo.skip(
        session,
        lease_id=lease_id,
        annotator=caller.name,
        reason=body.reason if body else None,
        park_after=settings.skip_park_after,
    )
    out = LeaseOut(
        lease_id=lease_id,
        clip_id=row.clip_id,
        status=row.status,
        skip_reason=row.skip_reason,
        needs_review=parked,
    )
    session.commit()
    dispatch(session, sender, loop.on_skip(session, settings=settings))
    return out


@router.post("/{lease_id}/release", response_model=LeaseOut)
def release_item(lease_id: str, caller: CallerDep, session: SessionDep) -> LeaseOut:
    """Hand the clip back unlabeled without skipping it (the UI calls this on sign-out): the
    lease ends now as if it had run out, the clip returns to its queue at its rank, and it is
    offered again to anyone, the caller included. No skip is recorded, so nothing is parked.
    """
    row = queue_repo.release(session, lease_id=lease_id, annotator=caller.name)
    out = LeaseOut(lease_id=lease_id, clip_id=row.clip_id, status=row.status)
    session.commit()
    return out
