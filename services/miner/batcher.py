"""Dynamic batching: concurrent requests share one model call, served in order of the caller's stake.

    batcher = Batcher(execute, max_batch=8, max_wait_ms=10, queue_limit=64)
    batcher.start()
    results = await batcher.submit(key, rows, priority=stake, deadline=loop_time_or_None)

`execute(key, rows) -> results` runs on one dedicated compute thread (so the event loop keeps
answering health and Info) with the rows of several requests that share `key` (the call and the
settings that must match within a batch); it returns one result per row.

- A batch closes when it holds `max_batch` rows or when the oldest waiting request has waited
  `max_wait_ms`; while the model is busy, requests simply accumulate for the next batch.
- The queue is ordered by priority (the caller's stake), then arrival. At most `queue_limit`
  requests, and at most `queue_rows` rows, wait: past that a request is refused at once with
  RESOURCE_EXHAUSTED, unless it outranks the lowest waiting requests, which are then refused in its
  place. Counting rows bounds the wait of an admitted request whatever the sizes of those ahead.
- A request whose caller went away (cancelled) or whose deadline passed is dropped before compute.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import Overloaded, Unavailable

log = logging.getLogger(__name__)


class QueueFull(Overloaded):
    pass


class DeadlineTooShort(Overloaded):
    """The request's deadline passed while it waited: the miner is too busy for that deadline."""


@dataclass(order=True)
class _Entry:
    order: tuple[int, int]                        # (-priority, arrival): smallest is served first
    key: Hashable = field(compare=False)
    rows: Sequence[Any] = field(compare=False)
    deadline: float | None = field(compare=False)  # loop time
    enqueued: float = field(compare=False)
    future: asyncio.Future = field(compare=False)


@dataclass
class BatchStats:
    """What the last batches looked like; the miner turns these into metrics."""

    batches: int = 0
    rows: int = 0
    dropped: int = 0
    refused: int = 0


Execute = Callable[[Hashable, list[Any]], Sequence[Any]]
OnBatch = Callable[[Hashable, int, float, list[float]], None]   # (key, rows, compute seconds, queue waits)


class Batcher:
    def __init__(
        self,
        execute: Execute,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 10.0,
        queue_limit: int = 64,
        queue_rows: int | None = None,
        executor: ThreadPoolExecutor | None = None,
        on_batch: OnBatch | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or queue_limit < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch >= 1, queue_limit >= 1, max_wait_ms >= 0; got "
                             f"{max_batch}, {queue_limit}, {max_wait_ms}")
        self.execute = execute
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.queue_limit = queue_limit
        self.queue_rows = queue_rows        # None: only the number of requests is bounded
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="miner-compute")
        self._own_executor = executor is None
        self.on_batch = on_batch
        self.on_depth = on_depth
        self.stats = BatchStats()
        self._queue: list[_Entry] = []      # sorted by `order`
        self._arrivals = itertools.count()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="miner-batcher")

    async def stop(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for entry in self._queue:
            if not entry.future.done():
                entry.future.set_exception(Unavailable("the miner is shutting down"))
        self._queue.clear()
        self._depth_changed()
        if self._own_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(
        self, key: Hashable, rows: Sequence[Any], *, priority: int = 0, deadline: float | None = None
    ) -> list[Any]:
        """Wait for the results of `rows` (one per row). Raises QueueFull when refused."""
        if self._closed:
            raise Unavailable("the miner is shutting down")
        loop = asyncio.get_running_loop()
        entry = _Entry((-priority, next(self._arrivals)), key, rows, deadline, loop.time(), loop.create_future())
        evicted = self._make_room(entry)
        if evicted is None:
            self.stats.refused += 1
            raise QueueFull(f"queue full ({self._fullness()}); retry later")
        for worst in evicted:
            self._queue.remove(worst)
            self.stats.refused += 1
            worst.future.set_exception(QueueFull(f"queue full ({self._fullness()}) and a caller with more "
                                                 "stake arrived; retry later"))
        bisect.insort(self._queue, entry)
        self._depth_changed()
        self._wakeup.set()
        try:
            return await entry.future
        finally:
            # If our caller was cancelled (the future with it), leave the queue now: never compute for nobody.
            entry.future.cancel()
            if self._remove(entry):
                self.stats.dropped += 1

    def _make_room(self, entry: _Entry) -> list[_Entry] | None:
        """The waiting requests to refuse so that `entry` fits (lowest priority first, each below
        `entry`), or None if it does not fit even so."""
        count, rows = len(self._queue) + 1, sum(len(e.rows) for e in self._queue) + len(entry.rows)
        victims: list[_Entry] = []
        for worst in reversed(self._queue):
            if count <= self.queue_limit and (self.queue_rows is None or rows <= self.queue_rows):
                break
            if worst.order < entry.order:
                return None
            victims.append(worst)
            count, rows = count - 1, rows - len(worst.rows)
        if count > self.queue_limit or (self.queue_rows is not None and rows > self.queue_rows):
            return None
        return victims

    def _fullness(self) -> str:
        rows = f", {sum(len(e.rows) for e in self._queue)} rows" if self.queue_rows is not None else ""
        return f"{len(self._queue)} waiting{rows}"

    def _remove(self, entry: _Entry) -> bool:
        i = bisect.bisect_left(self._queue, entry)
        if i < len(self._queue) and self._queue[i] is entry:
            del self._queue[i]
            self._depth_changed()
            return True
        return False

    def _depth_changed(self) -> None:
        if self.on_depth is not None:
            self.on_depth(len(self._queue))

    def _drop_dead(self, now: float) -> None:
        alive = []
        for e in self._queue:
            if e.future.done():
                self.stats.dropped += 1
            elif e.deadline is not None and e.deadline <= now:
                self.stats.dropped += 1
                e.future.set_exception(DeadlineTooShort(
                    f"the deadline passed after {now - e.enqueued:.3f}s in the queue, before any compute"))
            else:
                alive.append(e)
        if len(alive) != len(self._queue):
            self._queue = alive
            self._depth_changed()

    def _ready_rows(self) -> int:
        key = self._queue[0].key
        return sum(len(e.rows) for e in self._queue if e.key == key)

    def _take(self) -> list[_Entry]:
        """The head request and, in queue order, others with its key, up to max_batch rows."""
        head = self._queue[0]
        batch, rows, rest = [head], len(head.rows), []
        for e in self._queue[1:]:
            if e.key == head.key and rows + len(e.rows) <= self.max_batch:
                batch.append(e)
                rows += len(e.rows)
            else:
                rest.append(e)
        self._queue = rest
        self._depth_changed()
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            # Let the batch fill until it is full or the oldest request has waited max_wait.
            while True:
                self._drop_dead(loop.time())
                if not self._queue:
                    break
                oldest = min(e.enqueued for e in self._queue)
                remaining = oldest + self.max_wait - loop.time()
                if remaining <= 0 or self._ready_rows() >= self.max_batch:
                    break
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
            if not self._queue:
                continue
            batch = self._take()
            await self._compute(loop, batch)

    async def _compute(self, loop: asyncio.AbstractEventLoop, batch: list[_Entry]) -> None:
        key = batch[0].key
        rows = [r for e in batch for r in e.rows]
        waits = [loop.time() - e.enqueued for e in batch]
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self.executor, self.execute, key, rows)
            if len(results) != len(rows):
                raise RuntimeError(f"execute returned {len(results)} results for {len(rows)} rows")
        except asyncio.CancelledError:
            for e in batch:
                if not e.future.done():
                    e.future.set_exception(Unavailable("the miner is shutting down"))
            raise
        except Exception as exc:  # the model failed: every request of the batch gets the error
            for e in batch:
                if not e.future.done():
                    e.future.set_exception(exc)
            return
        seconds = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.rows += len(rows)
        if self.on_batch is not None:
            self.on_batch(key, len(rows), seconds, waits)
        offset = 0
        for e in batch:
            n = len(e.rows)
            if not e.future.done():
                e.future.set_result(list(results[offset:offset + n]))
            offset += n
