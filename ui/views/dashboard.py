"""Dashboard: counts (parked clips and the holdout too), the learning curve with the holdout
score beside the validation score, macro-AP/micro-F1, the stopping rule (stop-set kappa per
version), per-tag AP, CentralNet's alphas, jobs, retrain, and the admin's control to mark a
holdout sample."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui.api_client import ApiError
from ui.charts import curve_frame
from ui.components import get_json, require_client, show_error, show_jobs

# Bars in the AP-per-tag chart: past this many tags, the weakest and the strongest half each.
AP_SHOWN = 40

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
holdout = counts["holdout"]
cols = st.columns(6)
cols[0].metric(
    "Parked (needs review)",
    counts["needs_review"],
    help="Clips skipped by several annotators; no queue offers them until an admin un-parks "
    "them on the Clips page.",
)
cols[1].metric("Holdout clips", holdout["clips"])
cols[2].metric("Holdout labeled", holdout["labeled"])
cols[3].metric("Holdout queued", holdout["queued"])

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
curve = [
    p
    for p in stats["learning_curve"]
    if p["score"] is not None or p.get("holdout_score") is not None
]
if curve:
    frame = curve_frame(curve)
    frame = frame.rename(columns={"score": "validation score", "holdout_score": "holdout score"})
    has_holdout = frame["holdout score"].notna().any()
    lines = ["validation score", "holdout score"] if has_holdout else ["validation score"]
    st.line_chart(frame, x="n_labels", y=lines, x_label="labels", y_label="score")
    if has_holdout:
        st.caption(
            "Holdout score is the unbiased estimate: it is measured on a random sample that is "
            "never trained on, while the validation clips come from the actively chosen labels, "
            "which over-represent hard clips."
        )
    else:
        st.caption(
            "Validation score only: no version was trained while the holdout had labels. "
            "Mark a holdout sample and label it for an unbiased estimate."
        )
else:
    st.caption("No trained versions yet.")


def _multilabel_chart(points: list[dict[str, Any]]) -> None:
    """Macro-AP and micro-F1 against labels: on the holdout when versions were measured
    there, else on validation (never mixed on one line)."""
    measured = [p for p in points if p.get("macro_ap") is not None]
    on_holdout = [p for p in measured if p.get("metrics_on") == "holdout"]
    shown = on_holdout or measured
    if not shown:
        return
    where = "holdout" if on_holdout else "validation"
    st.subheader(f"Multi-label metrics ({where})")
    frame = curve_frame(shown)
    fitted = "micro-F1 at the fitted threshold"
    frame = frame.rename(
        columns={"macro_ap": "macro-AP", "micro_f1": "micro-F1", "micro_f1_fitted": fitted}
    )
    lines = ["macro-AP", "micro-F1"]
    if fitted in frame and frame[fitted].notna().any():
        lines.append(fitted)
    st.line_chart(frame, x="n_labels", y=lines, x_label="labels")
    st.caption(
        "macro-AP averages every tag's average precision (grouped tags one-vs-rest), so rare "
        "tags weigh as much as common ones; micro-F1 pools every tag decision at 0.5, and at "
        "the threshold fitted on the holdout (the one the Label page pre-checks at; each half "
        "of the holdout graded at the other half's threshold)."
    )


def _stopping(stopping: dict[str, Any]) -> None:
    """Stop-set kappa per version against the threshold, and whether labeling still pays."""
    st.subheader("When to stop labeling")
    threshold, window = stopping["threshold"], stopping["window"]
    points = [k for k in stopping["kappas"] if k["kappa"] is not None]
    rule = f"kappa ≥ {threshold:g} for {window} versions"
    if stopping["fired"]:
        st.success(
            f"Predictions have stabilised: labeling more is no longer changing the model ({rule})."
        )
    else:
        tail = 0
        for k in reversed(stopping["kappas"]):
            if k["kappa"] is None or k["kappa"] < threshold:
                break
            tail += 1
        latest = f"latest kappa {points[-1]['kappa']:.3f}" if points else "none compared yet"
        st.info(
            f"Predictions are still changing: {tail} of {window} consecutive versions at "
            f"kappa ≥ {threshold:g} on the stop set ({latest})."
        )
    if stopping["fired_at_version"] is not None and not stopping["fired"]:
        st.caption(
            f"The rule first fired at v{stopping['fired_at_version']} "
            f"({stopping['labels_at_fire']} labels); later versions moved again."
        )
    elif stopping["fired_at_version"] is not None:
        st.caption(
            f"It first fired at v{stopping['fired_at_version']}, "
            f"after {stopping['labels_at_fire']} labels."
        )
    if points:
        frame = pd.DataFrame(
            {
                "version": [k["version"] for k in points],
                "stop-set kappa": [k["kappa"] for k in points],
                "threshold": threshold,
            }
        )
        st.line_chart(
            frame,
            x="version",
            y=["stop-set kappa", "threshold"],
            x_label="version",
            y_label="kappa",
        )
    st.caption(
        "Each version predicts the same fixed set of pool clips; Cohen's kappa measures how "
        "much its decisions agree with the version before (Bloodgood and Vijay-Shanker 2009)."
    )


_multilabel_chart(stats["learning_curve"])
if "stopping" in stats:
    _stopping(stats["stopping"])

if stats["caller"]["role"] == "admin":
    with st.expander("Holdout sample (admin)"):
        st.caption(
            "Move a random share of the unlabeled pool into the holdout: it is never queued for "
            "active learning nor trained on, is labeled through its own queue, and measures "
            "every later version."
        )
        percent = st.number_input(
            "Holdout sample (% of the pool)", min_value=0.1, max_value=100.0, value=5.0, step=0.5
        )
        if st.button("Mark holdout sample", icon=":material/science:"):
            try:
                marked = client.request(
                    "POST", "/api/v1/holdout", json={"fraction": float(percent) / 100.0}
                ).json()
            except ApiError as exc:
                show_error(exc, what="holdout")
            else:
                st.success(
                    f"Marked {marked['marked']} clips; the holdout has {marked['clips']} clips, "
                    f"{marked['queued']} waiting to be labeled."
                )

# The promoted version in full (GET /models lists summaries, without per-tag metrics).
promoted = (
    None
    if rnd["promoted_version_id"] is None
    else get_json(client, f"/api/v1/models/{int(rnd['promoted_version_id'])}")
)
if promoted is not None:
    metrics = promoted["metrics"]
    ap_col, alpha_col = st.columns(2)
    with ap_col:
        st.subheader(f"AP per tag (v{promoted['id']})")
        ap = {t: v for t, v in (metrics.get("ap_per_tag") or {}).items() if v is not None}
        if len(ap) > AP_SHOWN:
            # Thousands of bars say nothing: the weakest and the strongest tags do.
            ranked = sorted(ap.items(), key=lambda kv: kv[1])
            half = AP_SHOWN // 2
            ap = dict(ranked[:half] + ranked[-half:])
            st.caption(f"The {half} weakest and {half} strongest of {len(ranked)} tags.")
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
