"""The holdout (audit sample): mark clips, see how far its labeling got."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.api.deps import AdminDep, CallerDep, SenderDep, SessionDep, SettingsDep
from services.api.schemas import BodyId, RequestBody
from tagloop.db import holdout as holdout_repo
from tagloop.errors import InvalidInput
from tagloop.pipeline import loop
from tagloop.pipeline.dispatch import dispatch

router = APIRouter(prefix="/api/v1/holdout", tags=["holdout"])


class HoldoutRequest(RequestBody):
    """Either ``fraction`` of the pool at random, or explicit ``clip_ids``."""

    fraction: float | None = Field(default=None, gt=0.0, le=1.0)
    clip_ids: list[BodyId] | None = Field(default=None, max_length=100_000)


class HoldoutOut(BaseModel):
    marked: int = 0
    clips: int
    labeled: int
    queued: int


@router.get("", response_model=HoldoutOut)
def get_holdout(_: CallerDep, session: SessionDep) -> HoldoutOut:
    return HoldoutOut(**holdout_repo.describe_holdout(session))


@router.post("", response_model=HoldoutOut)
def mark_holdout(
    body: HoldoutRequest,
    _: AdminDep,
    session: SessionDep,
    settings: SettingsDep,
    sender: SenderDep,
) -> HoldoutOut:
    """Move clips into the holdout: never queued for active learning, never trained on,
    labeled through ``GET /api/v1/queue/next?queue=holdout``, and every model version is
    measured on its labels (``metrics.holdout`` in /models)."""
    if (body.fraction is None) == (body.clip_ids is None):
        raise InvalidInput("send either fraction or clip_ids", code="invalid_holdout")
    ids = (
        body.clip_ids
        if body.clip_ids is not None
        else holdout_repo.sample_holdout(session, fraction=float(body.fraction or 0.0))
    )
    marked = holdout_repo.mark_holdout(session, clip_ids=ids)
    out = HoldoutOut(marked=marked, **holdout_repo.describe_holdout(session))
    session.commit()
    # Clips left the active-learning queue: it may have run low.
    dispatch(session, sender, loop.on_holdout_marked(session, settings=settings))
    return out
