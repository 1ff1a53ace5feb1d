"""Clips: a grid of thumbnails with labels and predicted tags; open one for its detail.
Parked clips (skipped by several annotators) can be listed on their own and un-parked by an
admin (the button shows for admins only); each card says the clip's split (pool or holdout)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui.api_client import ApiError, is_admin
from ui.components import (
    fetch_media,
    format_tags,
    get_json,
    require_client,
    show_clip_detail,
    show_error,
)

COLUMNS = 4
state = st.session_state

st.title("Clips")
client = require_client()

which = st.sidebar.radio("Show", ["All", "Unlabeled", "Labeled"], horizontal=True)
parked_only = st.sidebar.checkbox(
    "Only parked (needs review)",
    help="Clips skipped by several annotators: no queue offers them until an admin un-parks them.",
)
split = st.sidebar.radio("Split", ["All", "pool", "holdout"], horizontal=True)
page_size = st.sidebar.select_slider("Per page", options=[8, 12, 24, 48], value=12)
tag_filter = st.sidebar.text_input("Label or predicted tag contains")
min_uncertainty = st.sidebar.number_input("Min uncertainty", min_value=0.0, value=0.0, step=0.05)

# Cursor pagination: a stack of the cursors of the pages seen so far.
filters = (which, page_size, parked_only, split)
if state.get("clips_filters") != filters:
    state["clips_filters"], state["clips_cursors"] = filters, [None]
cursors: list[str | None] = state["clips_cursors"]
params: dict[str, Any] = {"limit": page_size}
if which != "All":
    params["labeled"] = which == "Labeled"
if parked_only:
    params["needs_review"] = True
if split != "All":
    params["split"] = split
if cursors[-1]:
    params["cursor"] = cursors[-1]
page = get_json(client, "/api/v1/clips", **params)
# The list has no labels or predictions; each shown clip's detail has both.
details = [get_json(client, f"/api/v1/clips/{c['id']}") for c in page["items"]]


def _keep(clip: dict[str, Any]) -> bool:
    pred = clip.get("prediction") or {}
    if min_uncertainty > 0 and float(pred.get("uncertainty") or 0.0) < min_uncertainty:
        return False
    if not tag_filter:
        return True
    names = [t for lb in clip["labels"] for t in lb["tags"]]
    names += [t["tag"] for t in pred.get("top_tags", [])]
    return any(tag_filter.lower() in n.lower() for n in names)


def _unpark(clip_id: int) -> None:
    try:
        client.request("POST", f"/api/v1/clips/{clip_id}/review")
    except ApiError as exc:
        state["clips_error"] = exc
    else:
        state["clips_flash"] = f"Clip {clip_id} is un-parked; the queues may offer it again."


shown = [c for c in details if _keep(c)]
if flash := state.pop("clips_flash", None):
    st.success(flash)
if (error := state.pop("clips_error", None)) is not None:
    show_error(error, what="un-park")
st.caption(f"{len(shown)} of {len(details)} clips on this page match.")
for start in range(0, len(shown), COLUMNS):
    for col, clip in zip(st.columns(COLUMNS), shown[start : start + COLUMNS], strict=False):
        with col.container(border=True):
            thumb = fetch_media(client, clip["id"], kind="thumbnail")
            if thumb is not None:
                st.image(thumb, width="stretch")
            latest = clip["labels"][-1]["tags"] if clip["labels"] else None
            st.markdown(
                f"**clip {clip['id']}** · " + (", ".join(latest) if latest else "_unlabeled_")
            )
            pred = clip.get("prediction")
            st.caption(format_tags(pred["top_tags"], limit=3) if pred else "no prediction yet")
            parked = bool(clip.get("needs_review"))
            st.caption(
                f"split: {clip.get('split', 'pool')} · "
                + ("**parked: needs review**" if parked else "not parked")
            )
            if st.button("Open", key=f"open_{clip['id']}"):
                state["open_clip"] = clip["id"]
            if parked and is_admin():  # POST /clips/{id}/review is an admin's
                st.button(
                    "Un-park",
                    key=f"unpark_{clip['id']}",
                    on_click=_unpark,
                    args=(int(clip["id"]),),
                    help="Admin: send the clip back to the queues.",
                )

prev_col, next_col = st.columns(2)
if len(cursors) > 1 and prev_col.button("Previous page"):
    cursors.pop()
    st.rerun()
if page["next_cursor"] and next_col.button("Next page"):
    cursors.append(page["next_cursor"])
    st.rerun()

if state.get("open_clip") is not None:
    st.divider()
    st.subheader(f"Clip {state['open_clip']}")
    show_clip_detail(client, int(state["open_clip"]))
    if st.button("Close"):
        state["open_clip"] = None
        st.rerun()
