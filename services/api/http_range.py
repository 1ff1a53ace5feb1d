"""HTTP Range parsing (RFC 9110 section 14) for media previews: pure, so it is easy to test."""

from __future__ import annotations

from tagloop.errors import TagloopError


class RangeNotSatisfiable(TagloopError):
    code = "range_not_satisfiable"
    http_status = 416


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range ``(start, end)`` a ``Range`` header asks for, or None for all.

    Only single ranges are served (what browsers send for video); a multi-range request gets
    the whole file, which RFC 9110 allows.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":  # suffix range: the last N bytes
            n = int(last)
            if n <= 0:
                raise RangeNotSatisfiable("empty suffix range")
            return max(0, size - n), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None  # malformed: ignore the header, as RFC 9110 says
    if start >= size or start > end:
        raise RangeNotSatisfiable(f"range {header!r} is outside 0-{size - 1}")
    return start, min(end, size - 1)
