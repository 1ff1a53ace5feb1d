"""A resampled audio track that is filled while decoding and cut into clip windows.

Samples are kept on an absolute timeline (sample ``i`` is at ``i / rate`` seconds from the
start of the video), so a stream that starts late, has gaps or ends early still lines up
with the video: missing stretches come back as zeros, and everything before a cut is dropped,
which keeps memory bounded by the demuxer's interleaving skew.
"""

from __future__ import annotations

import av
import numpy as np

# A jump in input timestamps larger than this is a real gap (filled with zeros), not jitter.
_GAP_TOLERANCE_S = 0.1


class AudioTrack:
    """Resample decoded audio frames to ``rate`` Hz with ``layout``, planar float32.

    ``push`` takes frames in decode order; ``cut(start_s, end_s)`` returns ``(C, N)`` with
    ``N = round(end_s * rate) - round(start_s * rate)`` and forgets everything before
    ``end_s``.
    """

    def __init__(self, *, rate: int, layout: str) -> None:
        self.rate = rate
        self.channels = 1 if layout == "mono" else 2
        self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        self._chunks: list[np.ndarray] = []
        self._origin: int | None = None  # absolute index of the first buffered sample
        self._next_input_s: float | None = None
        self.end_s = 0.0  # how far the decoded input reaches, in seconds

    def push(self, frame: av.AudioFrame, *, time_s: float | None) -> None:
        """Add one decoded frame whose first sample plays at ``time_s`` (None: right after)."""
        if time_s is None:
            time_s = self._next_input_s if self._next_input_s is not None else 0.0
        if self._origin is None:
            self._origin = round(time_s * self.rate)
        elif self._next_input_s is not None and time_s - self._next_input_s > _GAP_TOLERANCE_S:
            gap = round((time_s - self._next_input_s) * self.rate)
            self._append(np.zeros((self.channels, gap), dtype=np.float32))
        duration = frame.samples / frame.sample_rate if frame.sample_rate else 0.0
        self._next_input_s = time_s + duration
        self.end_s = max(self.end_s, self._next_input_s)
        for out in self._resampler.resample(frame):
            self._append(out.to_ndarray().reshape(self.channels, -1))

    def flush(self) -> None:
        """Drain the resampler's delay line at the end of the stream."""
        if self._origin is None:
            return
        for out in self._resampler.resample(None):
            self._append(out.to_ndarray().reshape(self.channels, -1))

    def cut(self, start_s: float, end_s: float) -> np.ndarray:
        """``(C, N)`` float32 samples of ``[start_s, end_s)``, zeros where nothing was decoded."""
        first, last = round(start_s * self.rate), round(end_s * self.rate)
        out = np.zeros((self.channels, max(0, last - first)), dtype=np.float32)
        if self._origin is None or not self._chunks:
            return out
        buffer = np.concatenate(self._chunks, axis=1) if len(self._chunks) > 1 else self._chunks[0]
        lo, hi = max(first, self._origin), min(last, self._origin + buffer.shape[1])
        if hi > lo:
            out[:, lo - first : hi - first] = buffer[:, lo - self._origin : hi - self._origin]
        keep_from = max(0, last - self._origin)
        rest = buffer[:, keep_from:]
        self._chunks = [rest] if rest.shape[1] else []
        self._origin += min(keep_from, buffer.shape[1])
        return out

    def _append(self, samples: np.ndarray) -> None:
        if samples.shape[1]:
            self._chunks.append(samples.astype(np.float32, copy=False))
