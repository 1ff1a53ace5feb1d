"""What the annotator checked on the clip in front of them, kept per lease until it is labeled,
skipped or handed back.

Streamlit drops a widget's state whenever a page without that widget runs, so a visit to the
Dashboard used to empty the tag box (and re-check the suggestions the annotator had
unchecked). The choice lives here instead, in plain session keys keyed by lease id, and the
tag box is filled from it on every run. A browser reload starts a new session with nothing in
it, so a choice made by hand is also written to the page's address (``?draft=<digest of the
lease id>&tag=cat&tag=music``): the reloaded page reads it back for the same lease, which the
API gives back to the same annotator. The address carries a digest, never the lease id, and
tags checked by nobody's hand (the pre-checked suggestions) are not written, so they keep
following the threshold controls (``prechecked=1`` says so when the address holds only the
groups below).

The groups the annotator marked unsure (``unsure=scene``: not "none of these", just unknown)
belong to the draft the same way.

Leases this session took are remembered too: signing out hands them back (``release_held``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import streamlit as st

from tagloop.client import ApiError, TagloopClient

DRAFTS = "label_drafts"  # lease id -> {"tags": [...], "by_hand": bool, "unsure": [...]}
HELD = "label_held"  # lease ids this session was given and has not closed
URL_LEASE = "draft"
URL_TAG = "tag"
URL_UNSURE = "unsure"
URL_PRECHECKED = "prechecked"  # "1": the tags follow the pre-check (none chosen by hand)
_URL_KEYS = (URL_LEASE, URL_TAG, URL_UNSURE, URL_PRECHECKED)


def lease_digest(lease_id: str) -> str:
    """What the address shows for a lease: enough to recognise it, useless to anyone else."""
    return hashlib.sha256(lease_id.encode()).hexdigest()[:16]


def _drafts() -> dict[str, dict[str, Any]]:
    drafts: dict[str, dict[str, Any]] = st.session_state.setdefault(DRAFTS, {})
    return drafts


def _from_url(lease_id: str) -> dict[str, Any]:
    """The draft the address keeps for ``lease_id`` (after a reload); an untouched one when
    it keeps none."""
    params = st.query_params
    if params.get(URL_LEASE) != lease_digest(lease_id):
        return {"tags": [], "by_hand": False, "unsure": []}
    unsure = [g for g in params.get_all(URL_UNSURE) if g]
    if params.get(URL_PRECHECKED) == "1":
        return {"tags": [], "by_hand": False, "unsure": unsure}
    return {"tags": [t for t in params.get_all(URL_TAG) if t], "by_hand": True, "unsure": unsure}


def _draft(lease_id: str) -> dict[str, Any]:
    """The draft of ``lease_id``: this session's, else the address's."""
    drafts = _drafts()
    if lease_id not in drafts:
        drafts[lease_id] = _from_url(lease_id)
    return drafts[lease_id]


def draft_tags(lease_id: str, *, prechecked: list[str]) -> list[str]:
    """The tags to show checked for ``lease_id``: the annotator's own choice (this session's,
    else the address's after a reload), else ``prechecked``."""
    draft = _draft(lease_id)
    if not draft["by_hand"]:
        # Follow the threshold controls until the annotator changes the selection by hand.
        draft["tags"] = list(prechecked)
    return list(draft["tags"])


def choose_tags(lease_id: str, tags: list[str]) -> None:
    """The annotator set the selection of ``lease_id`` by hand."""
    draft = _draft(lease_id)
    draft["tags"], draft["by_hand"] = list(dict.fromkeys(tags)), True


def toggle_tag(lease_id: str, tag: str) -> None:
    """Check ``tag`` on ``lease_id``, or uncheck it when it is checked."""
    chosen = list(_draft(lease_id)["tags"])
    choose_tags(lease_id, [t for t in chosen if t != tag] if tag in chosen else [*chosen, tag])


def draft_unsure(lease_id: str) -> list[str]:
    """The groups the annotator marked unsure on ``lease_id``."""
    return list(_draft(lease_id)["unsure"])


def choose_unsure(lease_id: str, groups: list[str]) -> None:
    """The annotator marked ``groups`` unsure on ``lease_id`` (and no others)."""
    _draft(lease_id)["unsure"] = list(dict.fromkeys(groups))


def conflicting_groups(
    tags: Sequence[str], unsure: Sequence[str], *, groups: Mapping[str, str | None]
) -> list[str]:
    """The groups of ``unsure`` that a tag of ``tags`` belongs to (``groups``: tag -> its
    group, as far as the page knows): the API refuses a label that chooses a tag of a group
    and calls that group unsure (``conflicting_unsure_group``)."""
    chosen = {groups.get(t) for t in tags}
    return [g for g in unsure if g in chosen]


def write_url(lease_id: str) -> None:
    """Put the annotator's own part of ``lease_id``'s draft (tags checked by hand, unsure
    groups) in the address, so a reload keeps it; clear the address of any other. Touches the
    address only when it changes."""
    draft = _drafts().get(lease_id)
    if draft is None or not (draft["by_hand"] or draft["unsure"]):
        clear_url()
        return
    by_hand = bool(draft["by_hand"])
    # An empty tag list with by_hand: unchecked everything on purpose; the digest says so.
    want = {
        URL_TAG: list(draft["tags"]) if by_hand else [],
        URL_UNSURE: list(draft["unsure"]),
        URL_PRECHECKED: [] if by_hand else ["1"],
    }
    params = st.query_params
    digest = lease_digest(lease_id)
    if params.get(URL_LEASE) == digest and all(params.get_all(k) == v for k, v in want.items()):
        return
    params[URL_LEASE] = digest
    for key, values in want.items():
        if values:
            params[key] = values
        else:
            params.pop(key, None)


def clear_url() -> None:
    params = st.query_params
    for key in _URL_KEYS:
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
