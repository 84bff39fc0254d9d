"""Dynamic batching: many concurrent single-item requests -> one batched model call.

Why: a model forward pass over 32 items costs little more than over one, so a service that gets
requests from many clients merges whatever arrives within ``max_wait_ms`` (up to ``max_batch``)
into one call. One worker thread owns the model, so the model is never called concurrently.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from prometheus_client import Histogram

__all__ = ["DynamicBatcher", "BatcherClosed"]

log = logging.getLogger(__name__)

BATCH_SIZE = Histogram(
    "mofi_batch_size", "Items per batched model call", ["batcher"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)


class BatcherClosed(RuntimeError):
    """Submitted after :meth:`DynamicBatcher.close`."""


class DynamicBatcher:
    """``submit(item) -> Future``; ``fn(list_of_items) -> list_of_results`` (same length, same order).

    An exception from ``fn`` fails every future of that batch; a cancelled future is skipped.
    """

    def __init__(self, fn: Callable[[list], Sequence[Any]], max_batch: int, max_wait_ms: float, name: str = ""):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.name = name or getattr(fn, "__qualname__", "batcher")
        self._queue: queue.Queue = queue.Queue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{self.name}", daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> Future:
        if self._closed.is_set():
            raise BatcherClosed("batcher is closed")
        fut: Future = Future()
        self._queue.put((item, fut))
        return fut

    def close(self, timeout: float | None = None) -> None:
        """Finish what was submitted, then stop the worker."""
        self._closed.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _collect(self, first) -> list:
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                entry = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is None:
                self._queue.put(None)  # keep the stop marker for the loop
                break
            batch.append(entry)
        return batch

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [(item, fut) for item, fut in self._collect(first) if fut.set_running_or_notify_cancel()]
            if not batch:
                continue
            BATCH_SIZE.labels(self.name).observe(len(batch))
            try:
                results = list(self.fn([item for item, _ in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"batched function returned {len(results)} results for {len(batch)} items")
            except Exception as e:  # the callers get the error; the worker keeps serving
                log.exception("batched call failed")
                for _, fut in batch:
                    fut.set_exception(e)
                continue
            for (_, fut), result in zip(batch, results):
                fut.set_result(result)
