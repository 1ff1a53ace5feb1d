"""Ingest: upload videos (admins only: the form is not shown to annotators) and follow their
processing."""

from __future__ import annotations

import streamlit as st

from ui.api_client import ApiError, is_admin
from ui.components import require_client

st.title("Ingest")
client = require_client()

if is_admin():  # POST /videos is an admin's
    with st.form("upload", clear_on_submit=True):
        files = st.file_uploader("Upload videos", accept_multiple_files=True)
        if st.form_submit_button("Ingest") and files:
            for f in files:
                try:
                    v = client.request(
                        "POST",
                        "/api/v1/videos",
                        files={"file": (f.name, f, f.type or "video/mp4")},
                    ).json()
                    note = " (already ingested)" if v["duplicate"] else ""
                    st.success(f"{f.name}: video {v['id']} {v['status']}{note}")
                except ApiError as exc:
                    st.error(f"{f.name}: {exc.code}: {exc.message}")

try:
    videos = client.request("GET", "/api/v1/videos", params={"limit": 200}).json()["items"]
except ApiError as exc:
    st.error(f"{exc.code}: {exc.message}")
    st.stop()

counts = {
    s: sum(v["status"] == s for v in videos) for s in ("queued", "processing", "ready", "failed")
}
cols = st.columns(4)
for col, (status, n) in zip(cols, counts.items(), strict=True):
    col.metric(status, n)
st.dataframe(
    [
        {
            "id": v["id"],
            "file": v["filename"],
            "status": v["status"],
            "clips": v["n_clips"],
            "duration (s)": v["duration_s"],
            "audio": v["has_audio"],
            "error": f"{v['error_code']}: {v['error_message']}" if v["error_code"] else "",
        }
        for v in videos
    ],
    hide_index=True,
    width="stretch",
)
if counts["queued"] or counts["processing"]:
    st.button("Refresh")
