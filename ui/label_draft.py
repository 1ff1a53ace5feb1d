"""What the annotator checked on the clip in front of them, kept per lease until it is labeled,
skipped or handed back.

Streamlit drops a widget's state whenever a page without that widget runs, so a visit to the
Dashboard used to empty the tag box (and re-check the suggestions the annotator had
unchecked). The choice lives here instead, in plain session keys keyed by lease id, and the
tag box is filled from it on every run. A browser reload starts a new session with nothing in
it, so a choice made by hand is also written to the page's address (``?draft=<digest of the
lease id>&tag=cat&tag=music``): the reloaded page reads it back for the same lease, which the
API gives back to the same annotator. The address carries a digest, never the lease id, and a
draft made by nobody's hand (the pre-checked suggestions) is not written at all, so it keeps
following the threshold controls.

Leases this session took are remembered too: signing out hands them back (``release_held``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import streamlit as st

from tagloop.client import ApiError, TagloopClient

DRAFTS = "label_drafts"  # lease id -> {"tags": [...], "by_hand": bool}
HELD = "label_held"  # lease ids this session was given and has not closed
URL_LEASE = "draft"
URL_TAG = "tag"


def lease_digest(lease_id: str) -> str:
    """What the address shows for a lease: enough to recognise it, useless to anyone else."""
    return hashlib.sha256(lease_id.encode()).hexdigest()[:16]


def _drafts() -> dict[str, dict[str, Any]]:
    drafts: dict[str, dict[str, Any]] = st.session_state.setdefault(DRAFTS, {})
    return drafts


def _from_url(lease_id: str) -> list[str] | None:
    """The tags the address keeps for ``lease_id`` (after a reload), or None."""
    params = st.query_params
    if params.get(URL_LEASE) != lease_digest(lease_id):
        return None
    return [t for t in params.get_all(URL_TAG) if t]


def draft_tags(lease_id: str, *, prechecked: list[str]) -> list[str]:
    """The tags to show checked for ``lease_id``: the annotator's own choice (this session's,
    else the address's after a reload), else ``prechecked``."""
    drafts = _drafts()
    draft = drafts.get(lease_id)
    if draft is None:
        restored = _from_url(lease_id)
        draft = {"tags": restored or [], "by_hand": restored is not None}
        drafts[lease_id] = draft
    if not draft["by_hand"]:
        # Follow the threshold controls until the annotator changes the selection by hand.
        draft["tags"] = list(prechecked)
    return list(draft["tags"])


def choose_tags(lease_id: str, tags: list[str]) -> None:
    """The annotator set the selection of ``lease_id`` by hand."""
    _drafts()[lease_id] = {"tags": list(dict.fromkeys(tags)), "by_hand": True}


def toggle_tag(lease_id: str, tag: str) -> None:
    """Check ``tag`` on ``lease_id``, or uncheck it when it is checked."""
    chosen = list(_drafts().get(lease_id, {}).get("tags", []))
    choose_tags(lease_id, [t for t in chosen if t != tag] if tag in chosen else [*chosen, tag])


def write_url(lease_id: str) -> None:
    """Put a by-hand draft of ``lease_id`` in the address (so a reload keeps it); clear the
    address of any other. Touches the address only when it changes."""
    draft = _drafts().get(lease_id)
    if draft is None or not draft["by_hand"]:
        clear_url()
        return
    params = st.query_params
    digest, tags = lease_digest(lease_id), list(draft["tags"])
    if params.get(URL_LEASE) == digest and params.get_all(URL_TAG) == tags:
        return
    params[URL_LEASE] = digest
    if tags:
        params[URL_TAG] = tags
    else:  # unchecked everything on purpose: the digest alone says so
        params.pop(URL_TAG, None)


def clear_url() -> None:
    params = st.query_params
    for key in (URL_LEASE, URL_TAG):
        if key in params:
            del params[key]


def hold_lease(lease_id: str) -> None:
    """This session was given ``lease_id`` (signing out hands it back)."""
    held: list[str] = st.session_state.setdefault(HELD, [])
    if lease_id not in held:
        held.append(lease_id)


def forget_lease(lease_id: str) -> None:
    """``lease_id`` was labeled, skipped or released: its draft goes, and so does the address's."""
    _drafts().pop(lease_id, None)
    held: list[str] = st.session_state.get(HELD, [])
    if lease_id in held:
        held.remove(lease_id)
    clear_url()


def release_held(client: TagloopClient) -> list[str]:
    """Hand every lease this session holds back to the queue (``POST /queue/{id}/release``),
    so the clips go to others now instead of when the leases run out. A lease that already
    ended, or an API that cannot be reached, is left to expire. Returns the released ids."""
    released = []
    for lease_id in list(st.session_state.get(HELD, [])):
        try:
            client.request("POST", f"/api/v1/queue/{lease_id}/release")
        except (ApiError, httpx.HTTPError):
            continue
        released.append(lease_id)
    for lease_id in list(st.session_state.get(HELD, [])):
        forget_lease(lease_id)
    return released
