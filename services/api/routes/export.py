"""Export labels and predictions (streamed), and import a Label Studio export as labels."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select

from services.api.deps import AdminDep, CallerDep, SessionDep, SettingsDep
from services.api.errors import error_response
from services.api.signed_media import media_key
from tagloop.db import labels as label_repo
from tagloop.db import model_versions as version_repo
from tagloop.db import stats as stats_repo
from tagloop.db import tags as tag_repo
from tagloop.db.engine import make_session_factory
from tagloop.db.models import Clip
from tagloop.errors import NotFound
from tagloop.export import format_csv, format_jsonl, format_label_studio, parse_label_studio
from tagloop.media_urls import signed_media_query

router = APIRouter(prefix="/api/v1", tags=["export"])

ExportFormat = Literal["jsonl", "csv", "label-studio"]
MEDIA_TYPES = {
    "jsonl": ("application/x-ndjson", "jsonl"),
    "csv": ("text/csv; charset=utf-8", "csv"),
    "label-studio": ("application/json", "json"),
}


def _stream(database_url: str, fmt: ExportFormat, media_url: Callable[[int], str]) -> Iterator[str]:
    # The request's session is closed before a streamed body is sent, so the body reads
    # through its own session for as long as the client keeps reading.
    session = make_session_factory(database_url)()
    try:
        rows = stats_repo.iter_export_rows(session)
        if fmt == "jsonl":
            yield from format_jsonl(rows)
        elif fmt == "csv":
            yield from format_csv(rows)
        else:
            vocab = tag_repo.load_vocabulary(session)
            tag_cuts, group_cuts = version_repo.precheck_thresholds(session)
            yield from format_label_studio(
                rows,
                media_url=media_url,
                thresholds=tag_cuts,
                groups=dict(zip(vocab.tags, vocab.groups, strict=True)),
                group_thresholds=group_cuts,
            )
    finally:
        session.close()


@router.get("/export")
def export_labels(
    request: Request,
    _: CallerDep,
    settings: SettingsDep,
    fmt: Annotated[ExportFormat, Query(alias="format")] = "jsonl",
    signed_urls: Annotated[bool, Query()] = False,
) -> StreamingResponse:
    """One record per clip that has labels or a prediction: the clip, its video, its labels
    and its latest prediction. ``label-studio`` gives Label Studio tasks whose ``data.video``
    is the clip's media URL, which needs this API's bearer token to fetch; with
    ``signed_urls=true`` it is a signed URL that needs none, valid for
    ``media_url_ttl_seconds`` (one hour by default) from the export."""
    media_type, ext = MEDIA_TYPES[fmt]
    base = str(request.base_url).rstrip("/")
    sign: tuple[bytes, int] | None = None
    if signed_urls and fmt == "label-studio":
        # One expiry for the whole export, counted from now.
        sign = (media_key(request), int(time.time()) + settings.media_url_ttl_seconds)

    def media_url(clip_id: int) -> str:
        url = f"{base}/api/v1/clips/{clip_id}/media"
        if sign is None:
            return url
        return f"{url}?{signed_media_query(sign[0], clip_id, expires=sign[1])}"

    return StreamingResponse(
        _stream(settings.database_url, fmt, media_url),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="tagloop-export.{ext}"'},
    )


class ImportResult(BaseModel):
    labels: int
    clips: int


@router.post(
    "/import/label-studio", status_code=status.HTTP_201_CREATED, response_model=ImportResult
)
def import_label_studio(
    tasks: Annotated[Any, Body()], _: AdminDep, session: SessionDep
) -> ImportResult | JSONResponse:
    """Store the labels of a Label Studio export (tasks carrying ``data.clip_id``). All or
    nothing: 422 ``unknown_tag`` (with ``tags``) or 404 ``clip_not_found`` stores no label."""
    imported = parse_label_studio(tasks)
    clip_ids = {lb.clip_id for lb in imported}
    found = (
        set(session.scalars(select(Clip.id).where(Clip.id.in_(clip_ids)))) if clip_ids else set()
    )
    missing = sorted(clip_ids - found)
    if missing:
        raise NotFound(
            f"clips {', '.join(map(str, missing[:20]))} do not exist", code="clip_not_found"
        )
    unknown: list[str] = []
    for lb in imported:
        try:
            label_repo.validate_tag_set(session, lb.tags)
        except label_repo.UnknownTags as exc:
            unknown.extend(n for n in exc.names if n not in unknown)
    if unknown:
        err = label_repo.UnknownTags(unknown)
        return error_response(422, err.code, err.message, tags=err.names)
    for lb in imported:
        label_repo.create_label(
            session,
            clip_id=lb.clip_id,
            annotator=lb.annotator,
            tags=lb.tags,
            seconds_spent=lb.seconds_spent,
        )
    session.commit()
    return ImportResult(labels=len(imported), clips=len(clip_ids))
