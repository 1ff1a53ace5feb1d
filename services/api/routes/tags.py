"""Tags: the vocabulary annotators choose from (admins add tags)."""

from __future__ import annotations

from fastapi import APIRouter, status

from services.api.deps import AdminDep, CallerDep, SessionDep
from services.api.schemas import Page, TagCreate, TagOut
from tagloop.db import tags as tag_repo

router = APIRouter(prefix="/api/v1/tags", tags=["tags"])


@router.get("", response_model=Page[TagOut])
def list_tags(_: CallerDep, session: SessionDep) -> Page[TagOut]:
    """Every tag in creation order (the model's column order); tags are few, so one page."""
    tags = tag_repo.list_tags(session)
    return Page[TagOut](items=[TagOut.model_validate(t) for t in tags], next_cursor=None)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TagOut)
def create_tag(body: TagCreate, _: AdminDep, session: SessionDep) -> TagOut:
    """Add a tag; tags sharing a ``group`` are mutually exclusive. 409 ``tag_exists``."""
    tag = tag_repo.create_tag(
        session, name=body.name, description=body.description, group=body.group
    )
    out = TagOut.model_validate(tag)
    # Commit before answering: the session dependency's own commit runs after the response.
    session.commit()
    return out
