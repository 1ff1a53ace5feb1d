"""Tables the Dashboard's charts draw (pure pandas: tested without a browser)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def curve_frame(points: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per label count, the newest version's when several share one (a round that
    was not promoted, a retrain on the same labels): a chart with two y values at one x drew
    nothing. Label counts as integers, so the axis reads 15, not 15.000000."""
    frame = pd.DataFrame(points)
    if "version_id" in frame:
        frame = frame.sort_values("version_id")
    frame = frame.drop_duplicates("n_labels", keep="last").sort_values("n_labels")
    return frame.astype({"n_labels": "int64"})
