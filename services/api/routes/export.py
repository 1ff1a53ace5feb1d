"""Export labels and predictions (streamed), and import a Label Studio export as labels."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.deps import AdminDep, CallerDep, SessionDep, SettingsDep
from services.api.errors import error_response
from services.api.signed_media import media_key
from tagloop.db import labels as label_repo
from tagloop.db import model_versions as version_repo
from tagloop.db import stats as stats_repo
from tagloop.db import tags as tag_repo
from tagloop.db.engine import make_session_factory
from tagloop.db.models import Clip
from tagloop.errors import InvalidInput, NotFound
from tagloop.export import (
    ImportedLabel,
    format_csv,
    format_jsonl,
    format_label_studio,
    parse_label_studio,
)
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
    """``labels`` in the file and the ``clips`` they name; of those labels, ``replaced``
    took the place of the annotator's different earlier label of the clip, ``unchanged``
    were stored as they are already (a re-imported export)."""

    labels: int
    clips: int
    replaced: int = 0
    unchanged: int = 0


# Per-label errors one answer lists at most (the count says how many there were).
MAX_REPORTED_ERRORS = 100


def _task_error(lb: ImportedLabel, code: str, message: str) -> dict[str, Any]:
    return {
        "task": lb.task,
        "annotation": lb.annotation,
        "clip_id": lb.clip_id,
        "code": code,
        "message": message,
    }


def check_imported(
    session: Session, imported: list[ImportedLabel]
) -> tuple[list[tuple[int, label_repo.CheckedLabel]], list[dict[str, Any]], list[str]]:
    """Each imported label through the label route's own check (``labels.check_label``),
    plus one label per (clip, annotator) within the file. Returns the checked labels, the
    per-label errors and the unknown tag names."""
    checked: list[tuple[int, label_repo.CheckedLabel]] = []
    errors: list[dict[str, Any]] = []
    unknown: list[str] = []
    seen: dict[tuple[int, str], ImportedLabel] = {}
    for lb in imported:
        try:
            label = label_repo.check_label(
                session, annotator=lb.annotator, tags=lb.tags, seconds_spent=lb.seconds_spent
            )
        except label_repo.UnknownTags as exc:
            unknown.extend(n for n in exc.names if n not in unknown)
            errors.append(_task_error(lb, exc.code, exc.message))
            continue
        except InvalidInput as exc:
            errors.append(_task_error(lb, exc.code, exc.message))
            continue
        first = seen.setdefault((lb.clip_id, label.annotator), lb)
        if first is not lb:
            errors.append(
                _task_error(
                    lb,
                    "duplicate_label",
                    f"{label.annotator!r} already labels clip {lb.clip_id} in task "
                    f"{first.task}; one label per annotator and clip",
                )
            )
            continue
        checked.append((lb.clip_id, label))
    return checked, errors, unknown


@router.post(
    "/import/label-studio", status_code=status.HTTP_201_CREATED, response_model=ImportResult
)
def import_label_studio(
    tasks: Annotated[Any, Body()], _: AdminDep, session: SessionDep, settings: SettingsDep
) -> ImportResult | JSONResponse:
    """Store the labels of a Label Studio export (tasks carrying ``data.clip_id``), at most
    ``TAGLOOP_IMPORT_MAX_TASKS`` tasks per request (422 ``too_many_tasks``). Each label passes
    the label route's checks; an annotator's label replaces their earlier one of that clip,
    and a file with two by one annotator for one clip is refused (``duplicate_label``).

    All or nothing: 404 ``clip_not_found``, or 422 with the first problem's code
    (``unknown_tag`` with ``tags``, ``invalid_annotator``, ``invalid_seconds_spent``,
    ``too_many_tags``, ``duplicate_label`` ...) and ``errors``: each bad label's ``task``,
    ``annotation``, ``clip_id``, ``code`` and ``message`` (the first 100), stores no label.
    Like labels from the label route, imported labels count towards the next training round
    by the loop's rule (``TAGLOOP_RETRAIN_MIN_LABELS``); the import starts nothing itself."""
    imported = parse_label_studio(tasks, max_tasks=settings.import_max_tasks)
    clip_ids = {lb.clip_id for lb in imported}
    found = (
        set(session.scalars(select(Clip.id).where(Clip.id.in_(clip_ids)))) if clip_ids else set()
    )
    missing = sorted(clip_ids - found)
    if missing:
        raise NotFound(
            f"clips {', '.join(map(str, missing[:20]))} do not exist", code="clip_not_found"
        )
    checked, errors, unknown = check_imported(session, imported)
    if errors:
        first = errors[0]
        message = (
            f"{len(errors)} of {len(imported)} labels cannot be imported, so none was; first: "
            f"task {first['task']} annotation {first['annotation']}: {first['message']}"
        )
        extra: dict[str, Any] = {"errors": errors[:MAX_REPORTED_ERRORS], "n_errors": len(errors)}
        if first["code"] == label_repo.UnknownTags.code:
            extra["tags"] = unknown
        return error_response(422, first["code"], message, **extra)
    outcomes = [
        label_repo.store_label(session, clip_id=clip_id, label=label)[1]
        for clip_id, label in checked
    ]
    session.commit()
    return ImportResult(
        labels=len(checked),
        clips=len(clip_ids),
        replaced=outcomes.count("replaced"),
        unchanged=outcomes.count("unchanged"),
    )
