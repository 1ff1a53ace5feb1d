"""Hold the clips this browser session leased while its tab is open, and only then.

Streamlit has no hook for a closed tab, so the Label page asks the API for short holds
(``TAGLOOP_UI_LEASE_HOLD_SECONDS``, 120 s) instead of the whole ``TAGLOOP_LEASE_SECONDS``, and
ui/app.py runs ``keep_leases`` in a fragment every ``TAGLOOP_UI_LEASE_HEARTBEAT_SECONDS`` on
every page. The browser starts those runs, so they stop with the tab: the API then hands the
clip to others once the last hold runs out. A lease is renewed only while the Label page
showed it within ``TAGLOOP_LEASE_SECONDS``, so an open tab nobody looks at lets go after the
usual lease, as before. A reload keeps the lease: the new session asks for the next clip well
within the hold, and the API gives the same lease back to the same annotator.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
import streamlit as st

from tagloop.client import ApiError, TagloopClient
from tagloop.config import Settings, get_settings
from ui.api_client import TOKEN
from ui.label_draft import HELD, forget_lease

SHOWN = "label_lease_shown"  # lease id -> time.monotonic() when the Label page last showed it
RENEWED = "label_lease_renewed"  # lease id -> time.monotonic() of its last renewal
ITEM = "label_item"  # the Label page's leased clip (ui/views/label.py)
FLASH = "flash"
# What the API answers for a lease that is no longer the caller's (409, 404).
GONE = ("lease_expired", "lease_closed", "lease_not_found")


@dataclass(frozen=True)
class LeaseTiming:
    hold_s: float  # what the Label page asks for, and each renewal
    heartbeat_s: float  # how often the fragment runs
    idle_s: float  # renew only while the Label page showed the lease this recently


def lease_timing(settings: Settings) -> LeaseTiming:
    """The settings made consistent: a hold no longer than the API's lease, and at least three
    beats per hold, so one late or failed beat does not lose the clip."""
    hold = min(settings.ui_lease_hold_seconds, settings.lease_seconds)
    return LeaseTiming(
        hold_s=hold,
        heartbeat_s=min(settings.ui_lease_heartbeat_seconds, hold / 3),
        idle_s=settings.lease_seconds,
    )


def leases_to_renew(
    held: Sequence[str],
    *,
    shown: Mapping[str, float],
    renewed: Mapping[str, float],
    now: float,
    idle_s: float,
    min_gap_s: float,
) -> list[str]:
    """Those of ``held`` to renew at ``now`` (seconds on one clock): shown on the Label page
    within ``idle_s``, and not renewed within ``min_gap_s`` (every rerun of a page runs the
    heartbeat too, and need not call the API each time). Never shown: not renewed."""
    return [
        lease_id
        for lease_id in held
        if lease_id in shown
        and now - shown[lease_id] <= idle_s
        and now - renewed.get(lease_id, -math.inf) >= min_gap_s
    ]


def mark_shown(lease_id: str) -> None:
    """The Label page shows the clip of ``lease_id`` now."""
    st.session_state.setdefault(SHOWN, {})[lease_id] = time.monotonic()


def renew_held(client: TagloopClient, timing: LeaseTiming) -> list[str]:
    """Renew the held leases ``leases_to_renew`` picks (``POST /queue/{id}/renew`` for
    ``timing.hold_s``). A lease the API no longer has for us (409 ``lease_expired`` /
    ``lease_closed``, 404) is forgotten with its draft; an unreachable API is tried again
    at the next beat. Returns the forgotten lease ids."""
    state = st.session_state
    held = list(state.get(HELD, []))
    shown: dict[str, float] = state.setdefault(SHOWN, {})
    renewed: dict[str, float] = state.setdefault(RENEWED, {})
    for stale in [k for k in {*shown, *renewed} if k not in held]:
        shown.pop(stale, None)
        renewed.pop(stale, None)
    now = time.monotonic()
    due = leases_to_renew(
        held,
        shown=shown,
        renewed=renewed,
        now=now,
        idle_s=timing.idle_s,
        min_gap_s=timing.heartbeat_s / 2,
    )
    lost: list[str] = []
    for lease_id in due:
        try:
            client.request(
                "POST", f"/api/v1/queue/{lease_id}/renew", json={"seconds": timing.hold_s}
            )
        except ApiError as exc:
            if exc.code in GONE:
                forget_lease(lease_id)
                lost.append(lease_id)
            continue
        except httpx.HTTPError:
            continue
        renewed[lease_id] = now
    return lost


def keep_leases() -> None:
    """The heartbeat's body (ui/app.py runs it as a fragment): renew what this session holds.
    When the clip in front of the annotator was lost, the app reruns so the Label page asks
    for the next one instead of showing a clip that is no longer theirs."""
    state = st.session_state
    token = str(state.get(TOKEN) or "").strip()
    if not token or not state.get(HELD):
        return
    settings = get_settings()
    with TagloopClient(settings.api_url, token, timeout=10) as client:
        lost = renew_held(client, lease_timing(settings))
    item = state.get(ITEM)
    if isinstance(item, dict) and item.get("lease_id") in lost:
        state.pop(ITEM, None)
        state[FLASH] = f"Your hold on clip {item['clip']['id']} ran out; here is the next clip."
        st.rerun()
