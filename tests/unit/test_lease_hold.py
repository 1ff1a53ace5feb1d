"""Short lease holds and the UI's heartbeat (issue 20): which held leases a beat renews, the
UI's timing made consistent, and the bounds of a hold a client may ask for."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tagloop.config import Settings
from tagloop.db.queue import check_hold_seconds
from tagloop.errors import InvalidInput
from ui.lease_heartbeat import lease_timing, leases_to_renew


def test_only_leases_shown_recently_and_not_just_renewed_are_renewed() -> None:
    held = ["shown-now", "idle", "never-shown", "just-renewed", "renewed-long-ago"]
    shown = {
        "shown-now": 1000.0,
        "idle": 1000.0 - 601.0,  # the Label page last showed it past the lease: let it go
        "just-renewed": 990.0,
        "renewed-long-ago": 990.0,
        "not-held": 1000.0,  # handed back already: never renewed
    }
    renewed = {"just-renewed": 995.0, "renewed-long-ago": 980.0, "shown-now": 900.0}
    due = leases_to_renew(
        held, shown=shown, renewed=renewed, now=1000.0, idle_s=600.0, min_gap_s=15.0
    )
    assert due == ["shown-now", "renewed-long-ago"]


def test_idle_limit_is_inclusive_and_a_first_beat_always_renews() -> None:
    shown = {"a": 400.0}
    assert leases_to_renew(["a"], shown=shown, renewed={}, now=1000.0, idle_s=600.0, min_gap_s=1e9)
    assert not leases_to_renew(
        ["a"], shown=shown, renewed={}, now=1000.5, idle_s=600.0, min_gap_s=0
    )
    assert leases_to_renew([], shown=shown, renewed={}, now=1000.0, idle_s=600.0, min_gap_s=0) == []


def test_ui_timing_fits_the_api_lease(tmp_path: Path) -> None:
    default = lease_timing(Settings(data_dir=tmp_path))
    assert (default.hold_s, default.heartbeat_s, default.idle_s) == (120.0, 30.0, 600.0)
    # A hold longer than the API's lease is cut to it; a beat slower than a third of the hold
    # would let one late beat lose the clip.
    odd = lease_timing(
        Settings(
            data_dir=tmp_path,
            lease_seconds=60,
            ui_lease_hold_seconds=90,
            ui_lease_heartbeat_seconds=45,
        )
    )
    assert (odd.hold_s, odd.heartbeat_s, odd.idle_s) == (60.0, 20.0, 60.0)


def test_ui_settings_refuse_holds_the_api_would_refuse(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Settings(data_dir=tmp_path, ui_lease_hold_seconds=5)
    with pytest.raises(ValueError):
        Settings(data_dir=tmp_path, ui_lease_heartbeat_seconds=0)


@pytest.mark.parametrize(
    ("asked", "lease", "held"),
    [(None, 600.0, 600.0), (10.0, 600.0, 10.0), (600.0, 600.0, 600.0), (0.1, 0.1, 0.1)],
)
def test_a_hold_is_from_ten_seconds_to_the_lease(
    asked: float | None, lease: float, held: float
) -> None:
    assert check_hold_seconds(asked, lease_seconds=lease) == held


@pytest.mark.parametrize("asked", [9.99, 600.01, 0.0, -5.0, math.nan, math.inf, -math.inf])
def test_other_holds_are_refused_with_a_code(asked: float) -> None:
    with pytest.raises(InvalidInput) as exc:
        check_hold_seconds(asked, lease_seconds=600.0)
    assert exc.value.code == "invalid_hold_seconds"
