"""Labels: an annotator's tags for a clip (annotator = the token's name)."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from services.api.deps import CallerDep, SenderDep, SessionDep, SettingsDep
from services.api.errors import error_response
from services.api.schemas import LabelCreate, LabelCreated, PathId
from tagloop.db import labels as label_repo
from tagloop.db import queue as queue_repo
from tagloop.errors import InvalidInput
from tagloop.pipeline import loop
from tagloop.pipeline.dispatch import dispatch

router = APIRouter(prefix="/api/v1/clips", tags=["labels"])


@router.post("/{clip_id}/labels", status_code=status.HTTP_201_CREATED, response_model=LabelCreated)
def create_label(
    clip_id: PathId,
    body: LabelCreate,
    caller: CallerDep,
    session: SessionDep,
    settings: SettingsDep,
    sender: SenderDep,
) -> LabelCreated | JSONResponse:
    """Store a label and close the caller's lease on the clip. Tags match the vocabulary
    ignoring case and are stored as the tag table spells them. An empty tag set needs
    ``none_apply: true`` (422 ``empty_label`` without it, ``conflicting_none_apply`` with
    tags). 422 ``unknown_tag`` (with ``tags`` listing them), ``conflicting_tags`` or
    ``too_many_tags``; 404 ``clip_not_found``."""
    if body.none_apply and body.tags:
        raise InvalidInput(
            "none_apply: true says no tag applies; send it with an empty tags list",
            code="conflicting_none_apply",
        )
    if not body.tags and not body.none_apply:
        raise InvalidInput(
            "a label needs at least one tag; send none_apply: true when no tag applies",
            code="empty_label",
        )
    try:
        label = label_repo.create_label(
            session,
            clip_id=clip_id,
            annotator=caller.name,
            tags=body.tags,
            seconds_spent=body.seconds_spent,
            unsure_groups=body.unsure_groups,
        )
    except label_repo.UnknownTags as exc:
        session.rollback()
        return error_response(422, exc.code, exc.message, tags=exc.names)
    closed = queue_repo.complete(
        session, clip_id=clip_id, annotator=caller.name, lease_id=body.lease_id
    )
    out = LabelCreated.model_validate(label)
    out.clip_id, out.lease_closed = clip_id, closed
    # Commit before answering: the session dependency's own commit runs after the response.
    session.commit()
    dispatch(session, sender, loop.on_label(session, settings=settings))
    return out
