"""Split a video's duration into clip windows (pure)."""

from __future__ import annotations

import math

from tagloop.errors import InvalidInput

# Float slack so 20.0 / 10.0 counts as two whole clips even after rounding noise.
_EPS = 1e-9


def plan_clips(duration_s: float, *, clip_seconds: float) -> list[tuple[float, float]]:
    """Consecutive ``(start_s, end_s)`` windows of ``clip_seconds`` covering ``duration_s``.

    A video shorter than ``clip_seconds`` is one clip. A tail shorter than half a clip is
    merged into the previous clip (a sliver clip is too short to label or to learn from);
    a longer tail becomes a clip of its own. The last window always ends at ``duration_s``.
    """
    if not math.isfinite(clip_seconds) or clip_seconds <= 0:
        raise InvalidInput(f"clip_seconds must be > 0, got {clip_seconds}", code="invalid_clip")
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise InvalidInput(f"duration must be > 0, got {duration_s}", code="invalid_duration")
    n_full = max(1, math.floor(duration_s / clip_seconds + _EPS))
    tail = duration_s - n_full * clip_seconds
    n_clips = n_full + 1 if tail >= clip_seconds / 2 - _EPS else n_full
    windows = [(float(i * clip_seconds), float((i + 1) * clip_seconds)) for i in range(n_clips)]
    windows[-1] = (windows[-1][0], float(duration_s))
    return windows
