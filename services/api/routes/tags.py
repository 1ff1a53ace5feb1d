"""Tags: the vocabulary annotators choose from (admins add tags, one by one or a whole
taxonomy at once). Listed a page at a time, or searched by name on the server."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.api.deps import AdminDep, CallerDep, SessionDep, SettingsDep
from services.api.errors import error_response
from services.api.schemas import Page, TagCreate, TagOut, decode_cursor, encode_cursor
from tagloop.db import tags as tag_repo
from tagloop.db import taxonomy as taxonomy_repo
from tagloop.db.models import MAX_ID
from tagloop.errors import InvalidInput
from tagloop.taxonomy import detect_format, parse_taxonomy, write_csv, write_json

router = APIRouter(prefix="/api/v1/tags", tags=["tags"])
# A page of tags; the default keeps the few-tag vocabularies of before in one page.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000
# Bad rows an import's 422 lists (n_errors counts them all).
MAX_REPORTED_ERRORS = 100


def tag_out(row: tag_repo.TagRow) -> TagOut:
    out = TagOut.model_validate(row.tag)
    out.parent = row.parent
    return out


def encode_search_cursor(pos: tag_repo.SearchPosition) -> str:
    raw = f"q:{pos.rank}:{pos.length}:{pos.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_search_cursor(cursor: str | None) -> tag_repo.SearchPosition | None:
    """A search's cursor (opaque to clients); 422 ``invalid_cursor`` when tampered with, or
    when it is a plain listing's."""
    if not cursor:
        return None
    try:
        kind, rank, length, last_id = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        pos = tag_repo.SearchPosition(rank=int(rank), length=int(length), id=int(last_id))
        if kind != "q" or not (0 <= pos.rank <= 2 and pos.length >= 0 and 0 <= pos.id <= MAX_ID):
            raise ValueError(cursor)
        return pos
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("invalid cursor", code="invalid_cursor") from exc


@router.get("", response_model=Page[TagOut])
def list_tags(
    _: CallerDep,
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=tag_repo.MAX_NAME)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query()] = None,
) -> Page[TagOut]:
    """Tags in creation order (the model's column order), ``limit`` at a time; pass
    ``next_cursor`` back as ``cursor`` for the next page (null: the last page).

    ``q``: only tags whose name holds it, ignoring case and spacing, the exact match first,
    then names that start with it, then the rest (shorter names first in each). A search's
    cursor works only with the same ``q``."""
    if q is not None and q.strip():
        found = tag_repo.search_tags(session, q, limit=limit, after=decode_search_cursor(cursor))
        next_cursor = encode_search_cursor(found[-1][1]) if len(found) == limit else None
        return Page[TagOut](items=[tag_out(row) for row, _ in found], next_cursor=next_cursor)
    rows = tag_repo.page_tags(session, limit=limit, after_id=decode_cursor(cursor))
    next_cursor = encode_cursor(rows[-1].tag.id) if len(rows) == limit else None
    return Page[TagOut](items=[tag_out(r) for r in rows], next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TagOut)
def create_tag(body: TagCreate, _: AdminDep, session: SessionDep, settings: SettingsDep) -> TagOut:
    """Add a tag; tags sharing a ``group`` are mutually exclusive; ``parent`` names a broader
    tag. 409 ``tag_exists``; 422 ``unknown_parent``, ``too_many_tags_in_vocabulary`` past
    ``TAGLOOP_MAX_TAGS``."""
    tag = tag_repo.create_tag(
        session,
        name=body.name,
        description=body.description,
        group=body.group,
        parent=body.parent,
        max_tags=settings.max_tags,
    )
    out = TagOut.model_validate(tag)
    if tag.parent_id is not None:  # the parent's own name, however the body spelled it
        out.parent = tag_repo.name_of(session, tag.parent_id)
    # Commit before answering: the session dependency's own commit runs after the response.
    session.commit()
    return out


class TaxonomyImported(BaseModel):
    """Rows read; tags created, updated (description or parent), and left as they were."""

    rows: int
    created: int
    updated: int
    unchanged: int


async def raw_body(request: Request) -> bytes:
    # The request gate (services/api/limits.py) has bounded it by TAGLOOP_REQUEST_MAX_BYTES.
    return await request.body()


TAXONOMY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            k: {"type": ["string", "null"]}
                            for k in ("name", "group", "parent", "description")
                        },
                        "required": ["name"],
                    },
                }
            },
        },
    }
}


@router.post(
    "/import",
    response_model=TaxonomyImported,
    openapi_extra=TAXONOMY_BODY,
    responses={422: {"description": "rows that cannot be imported; nothing was stored"}},
)
def import_tags(
    request: Request,
    body: Annotated[bytes, Depends(raw_body)],
    _: AdminDep,
    session: SessionDep,
    settings: SettingsDep,
    format: Annotated[Literal["csv", "json"] | None, Query()] = None,
) -> TaxonomyImported | JSONResponse:
    """Create or update a whole taxonomy in one request: CSV (``text/csv``, a header row
    naming ``name`` and any of ``group``, ``parent``, ``description``) or JSON (a list of
    such objects); ``format`` overrides the ``Content-Type``.

    All or nothing, and idempotent: a row naming an existing tag (ignoring case and
    spacing) updates its description and parent where they differ, so the same file
    imported twice changes nothing the second time. ``parent`` names a tag in the file or
    in the vocabulary. 422 with the first bad row's code and ``errors`` (each bad row's
    ``row``, ``name``, ``code``, ``message``; the first 100, ``n_errors`` counts all):
    ``invalid_tag_name``, ``invalid_tag_description``, ``invalid_row``, ``duplicate_tag``,
    ``unknown_parent``, ``invalid_parent``, ``parent_cycle``, ``tag_group_conflict`` (an
    import does not move a tag to another group); then nothing is stored. 422
    ``too_many_tags_in_vocabulary`` past ``TAGLOOP_MAX_TAGS``, ``invalid_taxonomy``,
    ``unsupported_format``, ``too_many_rows``."""
    fmt = detect_format(request.headers.get("content-type", ""), asked=format)
    rows, parse_errors = parse_taxonomy(body, fmt=fmt, max_rows=settings.max_tags)
    try:
        outcome = taxonomy_repo.import_taxonomy(
            session, rows, parse_errors=parse_errors, max_tags=settings.max_tags
        )
    except taxonomy_repo.TaxonomyRejected as exc:
        return error_response(
            422,
            exc.code,
            exc.message,
            errors=[e.to_dict() for e in exc.errors[:MAX_REPORTED_ERRORS]],
            n_errors=len(exc.errors),
        )
    session.commit()
    return TaxonomyImported(
        rows=outcome.rows,
        created=outcome.created,
        updated=outcome.updated,
        unchanged=outcome.unchanged,
    )


@router.get("/export", responses={200: {"content": {"text/csv": {}, "application/json": {}}}})
def export_tags(
    _: CallerDep,
    session: SessionDep,
    format: Annotated[Literal["csv", "json"], Query()] = "csv",
) -> Response:
    """Every tag in creation order with ``name``, ``group``, ``parent`` and ``description``:
    the file ``POST /tags/import`` reads back unchanged."""
    rows = taxonomy_repo.export_rows(session)
    if format == "csv":
        body, media = write_csv(rows), "text/csv; charset=utf-8"
    else:
        body, media = write_json(rows), "application/json"
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="tags.{format}"'},
    )
