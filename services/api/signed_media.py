"""Clip media by bearer token or by a short-lived signed URL (``tagloop.media_urls``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from services.api.deps import Caller, SessionDep, get_caller
from services.api.schemas import PathId
from tagloop.media_urls import media_url_key, verify_media_signature


def media_key(request: Request) -> bytes:
    """The signing key, read (or made) once per process and kept on the app."""
    key: bytes | None = getattr(request.app.state, "media_url_key", None)
    if key is None:
        key = media_url_key(request.app.state.settings)
        request.app.state.media_url_key = key
    return key


def media_access(
    request: Request,
    session: SessionDep,
    clip_id: PathId,
    expires: Annotated[str | None, Query(description="signed URL: unix expiry")] = None,
    sig: Annotated[str | None, Query(description="signed URL: HMAC-SHA256, hex")] = None,
) -> Caller | None:
    """A signed URL (``expires`` and ``sig``) opens this clip's media without a token until
    it expires: 403 ``invalid_signature`` or ``signature_expired`` otherwise. Without them the
    bearer token is required as everywhere (401)."""
    if expires is None and sig is None:
        return get_caller(request, session)
    verify_media_signature(media_key(request), clip_id, expires, sig)
    return None


MediaAccessDep = Annotated[Caller | None, Depends(media_access)]
