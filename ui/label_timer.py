"""Seconds a person spends on a clip, for a label's ``seconds_spent``.

Counted from when the Label page first shows the clip (not from when it was leased), and
paused while the person is on another page: the lease outlives a visit to the dashboard.
"""

from __future__ import annotations

import time

import streamlit as st

KEY = "label_timer"


def start_timer(lease_id: str) -> None:
    """The clip of ``lease_id`` is on screen: start its clock, or resume it after a pause."""
    timer = st.session_state.get(KEY)
    if not isinstance(timer, dict) or timer.get("lease") != lease_id:
        st.session_state[KEY] = {"lease": lease_id, "spent": 0.0, "since": time.monotonic()}
    elif timer["since"] is None:
        timer["since"] = time.monotonic()


def pause_timer() -> None:
    """The person left the Label page: stop the clock until it shows the clip again."""
    timer = st.session_state.get(KEY)
    if isinstance(timer, dict) and timer["since"] is not None:
        timer["spent"] += time.monotonic() - timer["since"]
        timer["since"] = None


def seconds_on(lease_id: str) -> float:
    """Seconds the clip of ``lease_id`` has been on screen so far."""
    timer = st.session_state.get(KEY)
    if not isinstance(timer, dict) or timer.get("lease") != lease_id:
        return 0.0
    running = 0.0 if timer["since"] is None else time.monotonic() - timer["since"]
    return float(timer["spent"]) + running
