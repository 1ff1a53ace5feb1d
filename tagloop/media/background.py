"""One background thread that runs calls in order, so preview encoding overlaps decoding.

PyAV releases the GIL while it scales, encodes and decodes, so encoding previews on a second
thread lets a worker use a second core that FFmpeg's own decoder threads leave idle on small
videos. A bounded queue keeps memory flat: each queued call may hold a decoded frame.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class SerialWorker:
    """Run submitted calls one at a time, in submission order, on one thread.

    An exception raised by a call surfaces from a later :meth:`submit` (when the queue is
    drained past it) or from :meth:`call`; nothing is swallowed.
    """

    def __init__(self, *, max_pending: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagloop-media")
        self._pending: deque[Future[Any]] = deque()
        self._max_pending = max_pending

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Queue ``fn(*args, **kwargs)``; block while more than ``max_pending`` are queued."""
        self._pending.append(self._executor.submit(fn, *args, **kwargs))
        while self._pending and (len(self._pending) > self._max_pending or self._pending[0].done()):
            self._pending.popleft().result()

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` after everything queued before it and return its result."""
        future = self._executor.submit(fn, *args, **kwargs)
        while self._pending:
            self._pending.popleft().result()
        return future.result()

    def close(self) -> None:
        """Drop queued calls that have not started, wait for the running one, stop the thread."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
