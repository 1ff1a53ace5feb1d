"""Co-training pseudo-labels a model version was trained with (read-only, any role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.api.deps import CallerDep, SessionDep
from services.api.schemas import (
    PathId,
    PseudoLabelOut,
    PseudoLabelPage,
    decode_cursor,
    encode_cursor,
)
from tagloop.db import model_versions as version_repo
from tagloop.db import pseudo_labels as pseudo_repo

router = APIRouter(prefix="/api/v1/models", tags=["models"])


@router.get("/{version_id}/pseudo-labels", response_model=PseudoLabelPage)
def list_pseudo_labels(
    version_id: PathId,
    _: CallerDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> PseudoLabelPage:
    """The pseudo-labels this version was trained with, by id; ``total`` counts them all.
    Every item has ``"kind": "pseudo"``: a head's answer, never a person's. 404
    ``model_not_found`` for an unknown version."""
    version_repo.get_version(session, version_id)
    rows = pseudo_repo.pseudo_labels_of(
        session, version_id, limit=limit, after_id=decode_cursor(cursor)
    )
    next_cursor = encode_cursor(rows[-1].id) if len(rows) == limit else None
    return PseudoLabelPage(
        items=[PseudoLabelOut.model_validate(r) for r in rows],
        next_cursor=next_cursor,
        total=pseudo_repo.count_pseudo_labels(session, version_id),
    )
