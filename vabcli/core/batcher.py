"""Feeding a model in batches gathered from many threads.

Batch workers (one per clip) submit requests and wait on futures; one service thread per model
takes whatever requests are waiting, up to a weight limit (frames, samples), runs the model once
on all of them and hands each caller its part. So decoding in the workers overlaps with encoding,
and the encoder sees batches across clips instead of one clip at a time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from vabcli.core import cancel
from vabcli.core.errors import CancelledError

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class _Request(Generic[In, Out]):
    item: In
    weight: int
    future: Future = field(default_factory=Future)


_STOP = object()


class BatchingService(Generic[In, Out]):
    """Runs `process(items) -> results` (same length, same order) on its own thread."""

    def __init__(
        self, process: Callable[[Sequence[In]], Sequence[Out]], max_weight: int, name: str
    ) -> None:
        self._process = process
        self._max_weight = max_weight
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        # On an interrupt, callers waiting on queued requests are released at once.
        self._unregister = cancel.on_cancel(self.cancel_pending)

    def submit(self, item: In, weight: int) -> Future:
        """Queue `item`; its result (or the exception `process` raised) arrives on the future."""
        request: _Request[In, Out] = _Request(item, weight)
        self._queue.put(request)
        return request.future

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        self._unregister()
        self._queue.put(_STOP)
        self._thread.join()

    def cancel_pending(self) -> None:
        """Fail every queued request at once (the run is being interrupted)."""
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if request is _STOP:
                self._queue.put(_STOP)
                return
            request.future.set_exception(CancelledError("interrupted"))

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                results = self._process([r.item for r in batch])
            except BaseException as exc:  # the callers get it, the service keeps serving
                for request in batch:
                    request.future.set_exception(exc)
                continue
            for request, result in zip(batch, results, strict=True):
                request.future.set_result(result)

    def _next_batch(self) -> list[_Request[In, Out]] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        batch, weight = [first], first.weight
        while weight < self._max_weight:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                break
            if request is _STOP:
                self._queue.put(_STOP)  # serve this batch, stop on the next round
                break
            batch.append(request)
            weight += request.weight
        return batch
