"""Widgets and helpers the pages share. Everything goes through the REST API with the user's
token (ui/api_client.py); nothing here touches the database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import streamlit as st

from tagloop.client import TagloopClient
from ui.api_client import ApiError, get_client

MEDIA_CACHE_ENTRIES = 256


def require_client() -> TagloopClient:
    """The signed-in user's client; stops the page (with the sign-in form) until sign-in."""
    client = get_client()
    if client is None:
        st.stop()
    return client


def show_error(exc: ApiError, *, what: str = "") -> None:
    """One readable line per API error; 403 says plainly that an admin token is needed."""
    prefix = f"{what}: " if what else ""
    if exc.http_status == 403:
        st.error(f"{prefix}this needs an admin token ({exc.code}).")
    elif exc.http_status == 401:
        st.error(f"{prefix}the token was not accepted ({exc.code}); sign out and in again.")
    else:
        st.error(f"{prefix}{exc.message}")


def get_json(client: TagloopClient, path: str, **params: Any) -> Any:
    """GET ``path`` as JSON; an API error is shown and stops the page."""
    try:
        return client.request("GET", path, params=params or None).json()
    except ApiError as exc:
        show_error(exc)
        st.stop()
    except httpx.HTTPError as exc:
        st.error(f"cannot reach the API at {client.http.base_url}: {exc}")
        st.stop()


@st.cache_data(max_entries=MEDIA_CACHE_ENTRIES, show_spinner=False)
def _fetch_bytes(base_url: str, token: str, path: str) -> bytes | None:
    # Cached per (API, token, path): clip previews and thumbnails never change once made.
    with TagloopClient(base_url, token, timeout=60) as client:
        try:
            return client.request("GET", path).content
        except ApiError as exc:
            if exc.code == "media_not_found":
                return None
            raise


def fetch_media(client: TagloopClient, clip_id: int, *, kind: str = "media") -> bytes | None:
    """The clip's mp4 preview (``kind="media"``) or jpeg thumbnail (``"thumbnail"``) as bytes,
    None while it has none. Browsers cannot send the bearer header to the API, so the bytes
    come through this process and Streamlit serves them."""
    token = str(client.http.headers["Authorization"]).removeprefix("Bearer ")
    return _fetch_bytes(str(client.http.base_url), token, f"/api/v1/clips/{clip_id}/{kind}")


def format_tags(tags: Sequence[dict[str, Any]], *, limit: int = 5) -> str:
    """``[{"tag", "p"}]`` as ``cat 91% · dog 7%``."""
    return " · ".join(f"{t['tag']} {float(t['p']):.0%}" for t in tags[:limit])


def show_clip_detail(client: TagloopClient, clip_id: int) -> None:
    """A clip's preview, its labels and its latest prediction."""
    clip = get_json(client, f"/api/v1/clips/{clip_id}")
    st.caption(
        f"clip {clip['id']} · video {clip['video_id']} · "
        f"{clip['start_s']:.1f}-{clip['end_s']:.1f} s · audio: {clip['has_audio']}"
    )
    data = fetch_media(client, clip_id)
    if data is None:
        st.warning("This clip has no preview yet.")
    else:
        st.video(data, format="video/mp4", muted=True, loop=True)
    st.markdown("**Labels**")
    if clip["labels"]:
        st.dataframe(
            [
                {
                    "tags": ", ".join(lb["tags"]),
                    "annotator": lb["annotator"],
                    "seconds": lb["seconds_spent"],
                    "at": lb["created_at"],
                }
                for lb in clip["labels"]
            ],
            hide_index=True,
        )
    else:
        st.write("not labeled yet")
    st.markdown("**Prediction**")
    pred = clip.get("prediction")
    if pred:
        st.write(format_tags(pred.get("top_tags", [])))
        st.caption(f"model v{pred.get('model_version_id')} · uncertainty {pred.get('uncertainty')}")
    else:
        st.write("no prediction yet")


def show_jobs(jobs: Sequence[dict[str, Any]]) -> None:
    """A progress bar per queued or running job."""
    if not jobs:
        st.caption("No jobs running.")
    for job in jobs:
        st.progress(
            float(job["progress"]),
            text=f"job {job['id']} · {job['kind']} · {job['status']} · {job['message']}",
        )
