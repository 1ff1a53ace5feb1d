"""The labeling queue: ranked clips leased to one annotator at a time. Never commits.

A row moves queued -> leased -> done (labeled) or skipped; a lease that runs out, or that its
holder releases (signing out), becomes ``expired`` and a fresh ``queued`` copy of the row takes
its place, so the clip returns to the queue while the history keeps who let it lapse. Its
holder may renew a live lease (``renew``: the UI holds leases briefly and renews them while
its page is open, so a closed browser tab lets go of its clip soon). A clip is
never leased to two annotators at once: at most one queued-or-leased row exists per clip, and
taking a row is atomic:

- PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` on the queued rows, so concurrent
  requests take different rows without waiting on each other; a per-annotator advisory lock
  stops two concurrent requests of one annotator from taking two rows.
- SQLite: the first statement of ``lease_next`` is a write, which takes the database's single
  write lock, so the rest of the transaction runs alone.

Either way the row is taken by one ``UPDATE ... WHERE id = (best free row) AND
status = 'queued' RETURNING``, which cannot take a row another transaction already took.

Two lanes share the table: ``al`` (active learning, refilled by ``replace_queue``) and
``holdout`` (the audit sample's own queue). A clip an annotator skipped is never leased to
that annotator again, in either lane; after skips by ``park_after`` different annotators it
is parked (``clip.needs_review``) and leaves every queue.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session, aliased

from tagloop.db.model_versions import decision_threshold_of, group_threshold_of, trained_tags
from tagloop.db.models import Clip, Label, ModelVersion, Prediction, QueueItem, utcnow
from tagloop.db.tags import unstorable
from tagloop.errors import Conflict, InvalidInput, NotFound

QUEUE_STATUSES = ("queued", "leased", "done", "skipped", "expired")
LANES = ("al", "holdout")
SKIP_REASONS = ("unclear", "not_applicable")
MAX_SKIP_REASON = 500
# Rows a refill replaces; leased rows survive a refill so nobody loses the clip in front of them.
_REFILL_LOCK = "tagloop.queue.refill"
_TAKE_ATTEMPTS = 3
# The shortest hold a client may ask for (check_hold_seconds): a heartbeat that renews more
# often than this is the client's business, a shorter hold would only churn the queue.
MIN_HOLD_SECONDS = 10.0


def new_lease_id() -> str:
    """192 random bits, URL-safe: a lease handle nobody can guess from another."""
    return secrets.token_urlsafe(24)


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _advisory_lock(session: Session, key: str) -> None:
    """PostgreSQL: a transaction-scoped lock on ``key``; SQLite serialises writers already."""
    if not _is_postgres(session):
        return
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    session.execute(
        text("SELECT pg_advisory_xact_lock(:k)"),
        {"k": int.from_bytes(digest, "big", signed=True)},
    )


def replace_queue(
    session: Session,
    *,
    items: Sequence[tuple[int, str, float]],
    lane: str = "al",
    now: datetime | None = None,
) -> int:
    """Refill ``lane`` with ``items`` = (clip_id, strategy, score), best first.

    The rank is the position in ``items`` (0 = offered first). Queued rows of the lane's
    previous refill are dropped; leased rows are kept and their clips are not queued again, so
    no clip can be leased twice; labeled and parked clips are left out. Returns the number of
    rows queued.
    """
    if lane not in LANES:
        raise InvalidInput(
            f"unknown queue {lane!r}; one of {', '.join(LANES)}", code="invalid_queue"
        )
    seen: set[int] = set()
    for clip_id, strategy, _score in items:
        if clip_id in seen:
            raise InvalidInput(f"clip {clip_id} is listed twice", code="duplicate_clip")
        if not strategy:
            raise InvalidInput("every queue item needs a strategy name", code="invalid_strategy")
        seen.add(clip_id)
    _advisory_lock(session, _REFILL_LOCK)
    expire_leases(session, now=now)
    session.execute(delete(QueueItem).where(QueueItem.status == "queued", QueueItem.lane == lane))
    # Any queued row of another lane counts too: at most one open row per clip.
    leased = set(
        session.scalars(select(QueueItem.clip_id).where(QueueItem.status.in_(("leased", "queued"))))
    )
    # A clip labeled or parked while the batch was built (a refill that reads tensors takes
    # long enough for an annotator to lease and label one of its candidates) stays out.
    if seen:
        leased |= _closed_clips(session, sorted(seen))
    created = utcnow()
    rows = [
        {
            "clip_id": clip_id,
            "strategy": strategy,
            "score": float(score),
            "rank": rank,
            "status": "queued",
            "lane": lane,
            "created_at": created,
        }
        for rank, (clip_id, strategy, score) in enumerate(items)
        if clip_id not in leased
    ]
    if rows:
        session.execute(insert(QueueItem), rows)
    session.expire_all()
    return len(rows)


def expire_leases(session: Session, *, now: datetime | None = None) -> int:
    """Leases past their end become ``expired``; a queued copy returns each clip to its lane,
    unless the clip was labeled or parked meanwhile (then nobody should see it again).

    Rows another transaction is working on are skipped (PostgreSQL ``SKIP LOCKED``), so a
    sweep never waits; the next sweep catches them. Returns the number of leases expired.
    """
    now = now or utcnow()
    due = list(
        session.scalars(
            select(QueueItem)
            .where(QueueItem.status == "leased", QueueItem.lease_expires_at <= now)
            .order_by(QueueItem.id)
            .with_for_update(skip_locked=True)
        )
    )
    closed = _closed_clips(session, [row.clip_id for row in due]) if due else set()
    for row in due:
        row.status = "expired"
        if row.clip_id in closed:
            continue
        session.add(
            QueueItem(
                clip_id=row.clip_id,
                strategy=row.strategy,
                score=row.score,
                rank=row.rank,
                lane=row.lane,
                status="queued",
            )
        )
    if due:
        session.flush()
    return len(due)


def _closed_clips(session: Session, clip_ids: Sequence[int]) -> set[int]:
    """Those of ``clip_ids`` no queue should offer again: labeled or parked."""
    labeled = select(Label.clip_id).where(Label.clip_id.in_(clip_ids))
    parked = select(Clip.id).where(Clip.id.in_(clip_ids), Clip.needs_review.is_(True))
    return {int(c) for c in session.scalars(labeled.union(parked))}


def current_lease(
    session: Session, *, annotator: str, lane: str = "al", now: datetime | None = None
) -> QueueItem | None:
    """The annotator's unexpired lease in ``lane``, if any (the oldest one)."""
    now = now or utcnow()
    return session.scalar(
        select(QueueItem)
        .where(
            QueueItem.annotator == annotator,
            QueueItem.status == "leased",
            QueueItem.lane == lane,
            QueueItem.lease_expires_at > now,
        )
        .order_by(QueueItem.id)
        .limit(1)
    )


def _take_write_lock(session: Session, *, now: datetime) -> None:
    """SQLite only: begin with a write so this transaction holds the write lock from here on.

    pysqlite opens a transaction at the first write; until then reads see no lock at all.
    Touching no row is enough: an UPDATE takes the lock before it looks for rows.
    """
    session.execute(
        update(QueueItem)
        .where(QueueItem.id == -1)
        .values(lease_expires_at=now)
        .execution_options(synchronize_session=False)
    )


def check_hold_seconds(seconds: float | None, *, lease_seconds: float) -> float:
    """How long a client asks to hold a lease: ``lease_seconds`` when it does not say, else a
    finite number from ``MIN_HOLD_SECONDS`` (or ``lease_seconds`` when that is shorter) to
    ``lease_seconds``; ``invalid_hold_seconds`` otherwise. A client may hold a lease for
    less than the configured lease (and renew it), never for longer."""
    if seconds is None:
        return lease_seconds
    low = min(MIN_HOLD_SECONDS, lease_seconds)
    if not math.isfinite(seconds) or not low <= seconds <= lease_seconds:
        raise InvalidInput(
            f"a lease is held for {low:g} to {lease_seconds:g} seconds, got {seconds!r}",
            code="invalid_hold_seconds",
        )
    return float(seconds)


def lease_next(
    session: Session,
    *,
    annotator: str,
    lease_seconds: float,
    lane: str = "al",
    now: datetime | None = None,
) -> QueueItem | None:
    """Lease the best free item (lowest rank) of ``lane`` to ``annotator``, never a clip they
    skipped; None when nothing is queued for them.

    An annotator who already holds an unexpired lease gets that same item back, so a page
    reload never burns queue items. Expired leases are returned to the queue first.
    """
    if lease_seconds <= 0:
        raise InvalidInput("lease_seconds must be positive", code="invalid_lease_seconds")
    if lane not in LANES:
        raise InvalidInput(
            f"unknown queue {lane!r}; one of {', '.join(LANES)}", code="invalid_queue"
        )
    now = now or utcnow()
    if _is_postgres(session):
        _advisory_lock(session, f"tagloop.queue.annotator:{annotator}")
    else:
        _take_write_lock(session, now=now)
    expire_leases(session, now=now)
    held = current_lease(session, annotator=annotator, lane=lane, now=now)
    if held is not None:
        return held
    # One statement picks and takes the row. On PostgreSQL the subquery locks the best row
    # nobody else holds (SKIP LOCKED); the status check makes a lost race take nothing.
    skipped = aliased(QueueItem)
    skipped_by_me = (
        select(skipped.id)
        .where(
            skipped.clip_id == QueueItem.clip_id,
            skipped.status == "skipped",
            skipped.annotator == annotator,
        )
        .exists()
    )
    best_free = (
        select(QueueItem.id)
        .where(QueueItem.status == "queued", QueueItem.lane == lane, ~skipped_by_me)
        .order_by(QueueItem.rank, QueueItem.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    for _ in range(_TAKE_ATTEMPTS):
        taken = session.scalar(
            update(QueueItem)
            .where(QueueItem.id == best_free, QueueItem.status == "queued")
            .values(
                status="leased",
                annotator=annotator,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                lease_id=new_lease_id(),
            )
            .returning(QueueItem),
            execution_options={"synchronize_session": False, "populate_existing": True},
        )
        if taken is not None:
            return taken
        # Nothing taken: the queue is empty, or every queued row was locked by requests
        # that are taking them right now (then one may be left once they finish).
        free = select(QueueItem.id).where(
            QueueItem.status == "queued", QueueItem.lane == lane, ~skipped_by_me
        )
        if session.scalar(free.limit(1)) is None:
            return None
    return None


def _check_lease_id(lease_id: str) -> None:
    """A lease id no lease can have (too long, NUL) is unknown, before any query: PostgreSQL
    would refuse to compare it."""
    if len(lease_id) > 64 or unstorable(lease_id):
        raise NotFound("no such lease", code="lease_not_found")


def _own_lease(session: Session, *, lease_id: str, annotator: str) -> QueueItem:
    _check_lease_id(lease_id)
    row = session.scalar(select(QueueItem).where(QueueItem.lease_id == lease_id))
    # Someone else's lease reads as unknown: lease ids are secrets of their holder.
    if row is None or row.annotator != annotator:
        raise NotFound("no such lease", code="lease_not_found")
    return row


def clean_skip_reason(reason: str | None) -> str | None:
    """``unclear``, ``not_applicable`` or the annotator's own words (trimmed, at most
    ``MAX_SKIP_REASON`` characters); None when no reason was given."""
    if reason is None or not reason.strip():
        return None
    reason = " ".join(reason.split())
    if unstorable(reason):
        raise InvalidInput(
            "a skip reason must not hold NUL or lone surrogate characters",
            code="invalid_skip_reason",
        )
    if len(reason) > MAX_SKIP_REASON:
        raise InvalidInput(
            f"a skip reason is at most {MAX_SKIP_REASON} characters", code="invalid_skip_reason"
        )
    return reason


def skip(
    session: Session,
    *,
    lease_id: str,
    annotator: str,
    reason: str | None = None,
    park_after: int = 3,
    now: datetime | None = None,
) -> tuple[QueueItem, bool]:
    """Give a leased clip back unlabeled, with an optional reason.

    The row becomes ``skipped``: the clip is never offered to this annotator again, and a
    refill offers it to others after the cool-down. When ``park_after`` different annotators
    have skipped it, the clip is parked (``needs_review``). Returns the row and whether the
    clip was parked now. ``lease_expired`` / ``lease_closed`` (409) when it is no longer held.
    """
    now = now or utcnow()
    reason = clean_skip_reason(reason)
    _check_lease_id(lease_id)
    row = _update_live_lease(
        session,
        lease_id=lease_id,
        annotator=annotator,
        now=now,
        values={"status": "skipped", "skip_reason": reason, "skipped_at": now},
    )
    return row, _park_if_skipped_enough(session, clip_id=row.clip_id, park_after=park_after)


def release(
    session: Session, *, lease_id: str, annotator: str, now: datetime | None = None
) -> QueueItem:
    """Hand a leased clip back unlabeled without counting it as a skip (the annotator signed
    out): the lease ends now, exactly as if it had run out, so the row becomes ``expired``
    and a queued copy returns the clip to its lane, for this annotator too. Returns the
    ended row. ``lease_expired`` / ``lease_closed`` (409) when it is no longer held.
    """
    now = now or utcnow()
    _check_lease_id(lease_id)
    row = _update_live_lease(
        session, lease_id=lease_id, annotator=annotator, now=now, values={"lease_expires_at": now}
    )
    expire_leases(session, now=now)
    session.refresh(row)
    return row


def renew(
    session: Session,
    *,
    lease_id: str,
    annotator: str,
    seconds: float,
    now: datetime | None = None,
) -> QueueItem:
    """Hold a live lease ``seconds`` from now (the UI's heartbeat, while its page is open):
    the lease then ends at ``now + seconds``, earlier or later than before. Returns the row.
    ``lease_expired`` / ``lease_closed`` (409) when it is no longer held, so a lease that ran
    out stays with whoever has the clip now."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput(
            "a lease is held for a positive number of seconds", code="invalid_hold_seconds"
        )
    now = now or utcnow()
    _check_lease_id(lease_id)
    return _update_live_lease(
        session,
        lease_id=lease_id,
        annotator=annotator,
        now=now,
        values={"lease_expires_at": now + timedelta(seconds=seconds)},
    )


def _update_live_lease(
    session: Session, *, lease_id: str, annotator: str, now: datetime, values: dict[str, Any]
) -> QueueItem:
    """Write ``values`` on the caller's lease if it is still live (one conditional UPDATE, so
    two requests cannot both end it, and a renewal cannot revive a lease that ran out); the
    refreshed row. ``lease_expired`` / ``lease_closed`` (409) when it is no longer held."""
    taken = session.execute(
        update(QueueItem)
        .where(
            QueueItem.lease_id == lease_id,
            QueueItem.annotator == annotator,
            QueueItem.status == "leased",
            QueueItem.lease_expires_at > now,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    row = _own_lease(session, lease_id=lease_id, annotator=annotator)
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        session.refresh(row)
        return row
    if row.status in ("leased", "expired"):
        raise Conflict("this lease has expired; ask for the next clip", code="lease_expired")
    raise Conflict(f"this lease is already closed ({row.status})", code="lease_closed")


def _park_if_skipped_enough(session: Session, *, clip_id: int, park_after: int) -> bool:
    """Park the clip when ``park_after`` different annotators skipped it since an admin last
    un-parked it."""
    clip = session.get(Clip, clip_id)
    if clip is None or clip.needs_review:
        return False
    since = [QueueItem.skipped_at > clip.reviewed_at] if clip.reviewed_at is not None else []
    skippers = session.scalar(
        select(func.count(func.distinct(QueueItem.annotator))).where(
            QueueItem.clip_id == clip_id, QueueItem.status == "skipped", *since
        )
    )
    if int(skippers or 0) < max(1, park_after):
        return False
    # The skipped row was the clip's one open row, so no queue offers it from here on.
    clip.needs_review = True
    return True


def count_queued(session: Session, *, lane: str = "al") -> int:
    """Queued (not leased) rows of ``lane``: what the low-water mark is compared with."""
    return int(
        session.scalar(
            select(func.count(QueueItem.id)).where(
                QueueItem.status == "queued", QueueItem.lane == lane
            )
        )
        or 0
    )


def complete(
    session: Session, *, clip_id: int, annotator: str, lease_id: str | None = None
) -> bool:
    """A label for ``clip_id`` arrived: close the annotator's lease on it (-> done).

    Queued rows of the clip are closed too, since the clip is labeled now. A ``lease_id``
    that belongs to another clip is a client error (``lease_mismatch``). Returns whether the
    annotator's lease was closed.
    """
    if lease_id is not None:
        row = _own_lease(session, lease_id=lease_id, annotator=annotator)
        if row.clip_id != clip_id:
            raise InvalidInput(
                f"lease {lease_id} is for clip {row.clip_id}, not clip {clip_id}",
                code="lease_mismatch",
            )
    # One UPDATE closes the caller's lease and any queued row of the clip; the returned
    # annotators tell whether the caller's lease was among them (queued rows have none).
    closed = session.scalars(
        update(QueueItem)
        .where(
            QueueItem.clip_id == clip_id,
            or_(
                QueueItem.status == "queued",
                and_(QueueItem.status == "leased", QueueItem.annotator == annotator),
            ),
        )
        .values(status="done")
        .returning(QueueItem.annotator),
        execution_options={"synchronize_session": False},
    )
    return annotator in set(closed)


@dataclass(frozen=True)
class Suggestions:
    """A clip's latest prediction, as the labeling queue shows it."""

    top_tags: list[dict[str, Any]]  # as the scorer stored them, else []
    # Where the predicting version's probabilities should count as yes (fitted on the
    # holdout, ``training.thresholds``); None before one is fitted.
    decision_threshold: float | None
    # The same for a group's likeliest tag (groups only, ``fit_group_threshold``).
    group_threshold: float | None = None
    # Tags with a positive label in the predicting version's training data (None: the
    # version did not record them, or there is no prediction): the others are not suggested.
    trained_tags: frozenset[str] | None = None


def clip_with_suggestions(session: Session, *, clip_id: int) -> tuple[Clip, Suggestions]:
    """The clip and its latest prediction's suggestions, in one round trip: this runs on
    every ``GET /queue/next``."""

    # The latest prediction is found once; its top tags and its version's threshold are
    # joined to it.
    latest = (
        select(Prediction.id)
        .where(Prediction.clip_id == Clip.id)
        .order_by(Prediction.created_at.desc(), Prediction.id.desc())
        .limit(1)
        .correlate(Clip)
        .scalar_subquery()
    )
    row = session.execute(
        select(
            Clip,
            Prediction.top_tags,
            decision_threshold_of(),
            group_threshold_of(),
            ModelVersion.id,
            ModelVersion.created_at,
        )
        .outerjoin(Prediction, Prediction.id == latest)
        .outerjoin(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(Clip.id == clip_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"clip {clip_id} does not exist", code="clip_not_found")
    clip, top_tags, threshold, group_threshold, version_id, created_at = row
    trained = (
        None
        if version_id is None
        else trained_tags(session, version_id=int(version_id), created_at=created_at)
    )
    return clip, Suggestions(
        list(top_tags or []),
        None if threshold is None else float(threshold),
        None if group_threshold is None else float(group_threshold),
        trained,
    )


def count_by_status(session: Session) -> dict[str, int]:
    """Status -> number of rows, every status present (0 when none)."""
    rows = session.execute(
        select(QueueItem.status, func.count(QueueItem.id)).group_by(QueueItem.status)
    )
    counts = dict.fromkeys(QUEUE_STATUSES, 0)
    counts.update({status: n for status, n in rows})
    return counts
