"""Dashboard: counts, the learning curve, per-tag AP, CentralNet's alphas, jobs, retrain."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui.api_client import ApiError
from ui.components import get_json, require_client, show_error, show_jobs

st.title("Dashboard")
client = require_client()
stats: dict[str, Any] = get_json(client, "/api/v1/stats")
counts, rnd = stats["counts"], stats["round"]

cols = st.columns(6)
cols[0].metric("Videos", sum(counts["videos"].values()))
cols[1].metric("Clips", counts["clips"])
cols[2].metric("Labeled clips", counts["labeled_clips"])
cols[3].metric("Labels", counts["labels"])
cols[4].metric("Queued", counts["queue"]["queued"])
cols[5].metric("Tags", counts["tags"])
st.caption(
    "Videos by status: "
    + ", ".join(f"{status} {n}" for status, n in counts["videos"].items())
    + " · queue: "
    + ", ".join(f"{status} {n}" for status, n in counts["queue"].items())
)

st.subheader("Current round")
if rnd["promoted_version_id"] is None:
    st.write(f"No model is promoted yet; {rnd['labels_since_trained']} labels so far.")
else:
    score = "-" if rnd["score"] is None else f"{rnd['score']:.3f}"
    st.write(
        f"Serving **v{rnd['promoted_version_id']}** (trained on {rnd['n_train']} clips, "
        f"score {score}); {rnd['labels_since_trained']} labels since it was trained."
    )
show_jobs(rnd["jobs"])
if stats["caller"]["role"] == "admin" and st.button(
    "Retrain now", icon=":material/model_training:"
):
    try:
        job = client.request("POST", "/api/v1/models/train").json()
        st.success(f"Training job {job['job_id']} queued.")
    except ApiError as exc:
        show_error(exc, what="retrain")

st.subheader("Learning curve")
curve = [p for p in stats["learning_curve"] if p["score"] is not None]
if curve:
    frame = pd.DataFrame(curve).sort_values("n_labels")
    st.line_chart(frame, x="n_labels", y="score", x_label="labels", y_label="validation score")
else:
    st.caption("No trained versions yet.")

promoted = next(
    (v for v in get_json(client, "/api/v1/models") if v["id"] == rnd["promoted_version_id"]), None
)
if promoted is not None:
    metrics = promoted["metrics"]
    ap_col, alpha_col = st.columns(2)
    with ap_col:
        st.subheader(f"AP per tag (v{promoted['id']})")
        ap = {t: v for t, v in (metrics.get("ap_per_tag") or {}).items() if v is not None}
        if ap:
            st.bar_chart(pd.DataFrame({"AP": ap}), horizontal=True)
        else:
            st.caption("No tag had validation clips to measure.")
    with alpha_col:
        st.subheader("Sight vs sound (fusion alphas)")
        weights = metrics.get("fusion_weights") or []
        if weights:
            frame = pd.DataFrame(weights)
            frame.index = [f"depth {i}" for i in range(len(frame))]
            st.bar_chart(frame, stack=True)
            st.dataframe(frame.round(3))
        else:
            st.caption("This model kind has no fusion weights.")
