"""Models: every version with its metrics (the holdout score beside the validation score);
promote or roll back (admin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from ui.api_client import ApiError, is_admin
from ui.components import get_json, require_client, show_error

st.title("Models")
client = require_client()
versions: list[dict[str, Any]] = get_json(client, "/api/v1/models")
runs: list[dict[str, Any]] = get_json(client, "/api/v1/models/pretrain")


def _pretraining(runs: list[dict[str, Any]]) -> None:
    """The pretraining runs (the next round starts from the newest finished one) and, for an
    admin, the button that starts one."""
    st.subheader("Pretraining on the pool")
    if runs:
        st.dataframe(
            [
                {
                    "job": r["job_id"],
                    "status": r["status"],
                    "progress": f"{r['progress']:.0%}",
                    "clips": r["params"].get("n_clips"),
                    "retrieval top-1": (r["params"].get("metrics") or {}).get("retrieval_top1"),
                    "message": r["message"],
                    "created": r["created_at"],
                }
                for r in runs
            ],
            hide_index=True,
            width="stretch",
        )
    st.caption(
        "Self-supervised: both branches learn which sound belongs to which picture on every "
        "ready clip, no labels needed. Training rounds then start from those weights, which "
        "helps most while there are few labels."
    )
    if is_admin() and st.button("Pretrain on the pool", icon=":material/school:"):
        try:
            job = client.request("POST", "/api/v1/models/pretrain").json()
            st.success(f"Pretraining job {job['job_id']} queued; follow it above.")
        except ApiError as exc:
            show_error(exc, what="pretrain")


if not versions:
    st.info("No model versions yet. Label some clips, then train (Dashboard → Retrain now).")
    _pretraining(runs)
    st.stop()


def _metric(v: dict[str, Any], name: str) -> float | None:
    value = v["metrics"].get(name)
    return round(float(value), 4) if isinstance(value, int | float) else None


def _holdout(v: dict[str, Any], name: str) -> float | None:
    """A metric on the holdout; None when the holdout had no labels at training time."""
    holdout = v["metrics"].get("holdout")
    return _metric({"metrics": holdout}, name) if isinstance(holdout, dict) else None


def _top(v: dict[str, Any], name: str) -> float | None:
    """A figure /models puts beside the metrics (macro-AP, micro-F1: holdout when measured)."""
    value = v.get(name)
    return round(float(value), 4) if isinstance(value, int | float) else None


def _started_from(v: dict[str, Any]) -> str:
    """Scratch, a warm start from an earlier version, and/or local branch weights."""
    config = v["config"]
    parts = [f"v{config['warm_start_from']}"] if config.get("warm_start_from") else []
    backbone = config.get("backbone") or {}
    if backbone.get("pretrain_job"):
        parts.append(f"pretrain job {backbone['pretrain_job']}")
    for branch in ("visual", "audio"):
        if backbone.get(branch):
            parts.append(f"{branch}: {Path(backbone[branch]).name}")
    if parts and backbone.get("frozen"):
        parts.append("frozen")
    return ", ".join(parts) or "scratch"


def _encoders(v: dict[str, Any]) -> str:
    """Which encoders made the version's features (a pretrained network names its weights)."""
    encoders = v["config"].get("encoders") or {}
    return ", ".join(f"{k}: {encoders[k]}" for k in ("visual", "audio") if encoders.get(k))


def _candidate(v: dict[str, Any]) -> str:
    """The probe candidate the folds chose, with its out-of-fold score and the best other's."""
    candidates = v["metrics"].get("candidates") or []
    chosen = next((c for c in candidates if c.get("chosen")), None)
    if chosen is None:
        return ""
    others = [c["oof_score"] for c in candidates if not c.get("chosen") and c.get("oof_score")]
    score = chosen.get("oof_score")
    text = chosen["name"] + (f" {score:.3f}" if score is not None else "")
    return text + (f" (next {max(others):.3f})" if others else "")


def _versus_promoted(v: dict[str, Any]) -> str:
    """How this round compared with the version serving then: the score difference and its
    95 % bootstrap interval, on which clips (so a coin toss reads as one)."""
    p = v["metrics"].get("promotion") or {}
    if p.get("delta") is None:
        return "first model" if p else ""
    lo, hi = p.get("ci95") or (None, None)
    ci = f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None else ""
    return f"{p['delta']:+.3f}{ci} on {p['n_clips']} {p['on']}"


st.dataframe(
    [
        {
            "version": v["id"],
            "status": v["status"],
            "kind": v["config"].get("kind", ""),
            "n_train": v["n_train"],
            "score": _metric(v, "score"),
            "holdout score": _holdout(v, "score"),
            "n holdout": (v["metrics"].get("holdout") or {}).get("n_clips"),
            "vs promoted": _versus_promoted(v),
            "started from": _started_from(v),
            "encoders": _encoders(v),
            "candidate (out-of-fold)": _candidate(v),
            "pseudo labels": (v["config"].get("cotrain") or {}).get("n_pseudo", 0),
            "mean accuracy": _metric(v, "mean_accuracy"),
            "mAP": _metric(v, "map"),
            "macro-AP": _top(v, "macro_ap"),
            "micro-F1": _top(v, "micro_f1"),
            "pre-check threshold": _top(v, "decision_threshold"),
            "micro-F1 there": _top(v, "micro_f1_fitted"),
            "group pre-check threshold": _top(v, "group_threshold"),
            "stop kappa": _top(v, "stop_kappa"),
            "ECE": _metric(v, "ece"),
            "created": v["created_at"],
        }
        for v in reversed(versions)
    ],
    hide_index=True,
    width="stretch",
)
st.caption(
    "score: on validation clips drawn from the actively chosen labels; holdout score: on the "
    "random holdout, never trained on, so the unbiased estimate (empty before it had labels). "
    "vs promoted: this round's score minus the serving version's on the same clips, with a "
    "95 % bootstrap interval; an interval spanning 0 means the data could not tell them apart. "
    "macro-AP (every tag's AP averaged, grouped tags one-vs-rest) and micro-F1: on the holdout "
    "when it measured the version, else on validation. pre-check threshold: fitted on the "
    "holdout, where the Label page pre-checks suggestions; micro-F1 there: at that threshold, "
    "each half of the holdout graded at the other half's. stop kappa: agreement with the previous "
    "version's predictions on the fixed stop set; near 1 means more labels changed little."
)

promoted = next((v["id"] for v in versions if v["status"] == "promoted"), None)
choice = st.selectbox(
    "Version", [v["id"] for v in reversed(versions)], format_func=lambda i: f"v{i}"
)
chosen = next(v for v in versions if v["id"] == choice)
# The version in full, per-tag metrics included (the list above has summaries): fetched only
# when asked for, since with 10,000 tags it is a megabyte.
if st.toggle(f"Show all of v{choice}'s metrics, per tag too", key="models_show_metrics"):
    st.json(get_json(client, f"/api/v1/models/{choice}")["metrics"], expanded=False)
if chosen["status"] == "promoted":
    st.caption(f"v{choice} is serving.")
elif chosen["status"] not in ("ready", "retired"):
    st.caption(f"v{choice} is {chosen['status']} and cannot be promoted.")
elif is_admin():  # POST /models/{id}/promote is an admin's: annotators get no button
    verb = "Roll back to" if promoted is not None and choice < promoted else "Promote"
    if st.button(f"{verb} v{choice}", type="primary"):
        try:
            client.request("POST", f"/api/v1/models/{choice}/promote")
            st.success(f"v{choice} is now serving.")
            st.rerun()
        except ApiError as exc:
            show_error(exc, what="promote")

_pretraining(runs)
