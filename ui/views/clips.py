"""Clips: a grid of thumbnails with labels and predicted tags; open one for its detail."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui.components import fetch_media, format_tags, get_json, require_client, show_clip_detail

COLUMNS = 4
state = st.session_state

st.title("Clips")
client = require_client()

which = st.sidebar.radio("Show", ["All", "Unlabeled", "Labeled"], horizontal=True)
page_size = st.sidebar.select_slider("Per page", options=[8, 12, 24, 48], value=12)
tag_filter = st.sidebar.text_input("Label or predicted tag contains")
min_uncertainty = st.sidebar.number_input("Min uncertainty", min_value=0.0, value=0.0, step=0.05)

# Cursor pagination: a stack of the cursors of the pages seen so far.
filters = (which, page_size)
if state.get("clips_filters") != filters:
    state["clips_filters"], state["clips_cursors"] = filters, [None]
cursors: list[str | None] = state["clips_cursors"]
params: dict[str, Any] = {"limit": page_size}
if which != "All":
    params["labeled"] = which == "Labeled"
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


shown = [c for c in details if _keep(c)]
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
            if st.button("Open", key=f"open_{clip['id']}"):
                state["open_clip"] = clip["id"]

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
