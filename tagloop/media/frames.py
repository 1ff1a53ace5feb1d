"""Pick the frames on screen at evenly spaced times, and turn them into model input.

Candidates are kept as decoded ``av.VideoFrame`` references and converted only once the clip
is complete, so only the ``T`` chosen frames ever go through a full-resolution conversion.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import VideoReformatter


def sample_times(start_s: float, end_s: float, *, count: int) -> list[float]:
    """``count`` times at the centres of equal slices of ``[start_s, end_s)``."""
    step = (end_s - start_s) / count
    return [start_s + (i + 0.5) * step for i in range(count)]


class FramesAt:
    """For each target time, the frame on screen then: the last one shown at or before it.

    A target before the first frame gets the first frame (nearest in time), so every target
    has a frame as soon as one frame was offered. Frames may arrive in any order.
    """

    def __init__(self, targets: list[float]) -> None:
        self.targets = targets
        self._best: list[tuple[float, av.VideoFrame] | None] = [None] * len(targets)

    def offer(self, frame: av.VideoFrame, *, time_s: float) -> None:
        """Consider ``frame`` (shown from ``time_s``) for every target."""
        for i, target in enumerate(self.targets):
            best = self._best[i]
            if best is None:
                better = True
            elif time_s <= target:  # on screen at the target if no later frame is
                better = best[0] > target or time_s > best[0]
            else:  # after the target: only useful while nothing precedes the target
                better = best[0] > target and time_s < best[0]
            if better:
                self._best[i] = (time_s, frame)

    def chosen(self) -> list[av.VideoFrame] | None:
        """The chosen frame per target, or None when no frame was offered at all."""
        if any(best is None for best in self._best):
            return None
        return [best[1] for best in self._best if best is not None]


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counterclockwise quarter turns that make ``frame`` upright (phone videos store a
    display matrix instead of rotating the pixels)."""
    return round(frame.rotation / 90) % 4


def display_size(frame: av.VideoFrame) -> tuple[int, int]:
    """``(width, height)`` of ``frame`` as it is meant to be shown."""
    if quarter_turns(frame) % 2:
        return frame.height, frame.width
    return frame.width, frame.height


def scale_upright(
    frame: av.VideoFrame,
    *,
    width: int,
    height: int,
    format: str,
    scaler: VideoReformatter | None = None,
) -> av.VideoFrame:
    """``frame`` scaled to ``width x height`` as displayed (rotation applied), in ``format``."""
    turns = quarter_turns(frame)
    scaler = scaler or VideoReformatter()
    if turns == 0:
        # AREA is the better filter for a 4x shrink and is faster than bilinear here.
        return scaler.reformat(
            frame, width=width, height=height, format=format, interpolation="AREA"
        )
    stored_w, stored_h = (height, width) if turns % 2 else (width, height)
    rgb = scaler.reformat(
        frame, width=stored_w, height=stored_h, format="rgb24", interpolation="AREA"
    )
    upright = np.ascontiguousarray(np.rot90(rgb.to_ndarray(), turns)).astype(np.uint8, copy=False)
    return av.VideoFrame.from_ndarray(upright, format="rgb24").reformat(format=format)


def to_model_array(frame: av.VideoFrame, *, size: int) -> np.ndarray:
    """``(3, size, size)`` uint8 RGB, upright: short side scaled to ``size``, centre crop."""
    width, height = frame.width, frame.height
    if width >= height:
        new_h, new_w = size, max(size, round(width * size / height))
    else:
        new_w, new_h = size, max(size, round(height * size / width))
    # AREA averages over the source pixels: a 1080p frame shrunk to 32 px would alias badly
    # with bilinear sampling.
    rgb = frame.reformat(width=new_w, height=new_h, format="rgb24", interpolation="AREA")
    array = rgb.to_ndarray()
    top, left = (new_h - size) // 2, (new_w - size) // 2
    crop = array[top : top + size, left : left + size]
    # A centre square crop commutes with the rotation, so rotate only the small crop.
    crop = np.rot90(crop, quarter_turns(frame))
    return np.ascontiguousarray(crop.transpose(2, 0, 1))


def stack_model_frames(frames: list[av.VideoFrame], *, size: int) -> np.ndarray:
    """``(T, 3, size, size)`` uint8; a frame chosen for several targets is converted once."""
    converted: dict[int, np.ndarray] = {}
    out = np.empty((len(frames), 3, size, size), dtype=np.uint8)
    for i, frame in enumerate(frames):
        key = id(frame)
        if key not in converted:
            converted[key] = to_model_array(frame, size=size)
        out[i] = converted[key]
    return out
