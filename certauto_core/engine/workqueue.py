"""A deduplicating, delay-capable work queue and its worker pool, in plain asyncio.

This is the controller's concurrency core, modelled on client-go's ``workqueue``:
watches call :meth:`WorkQueue.add` with an object key, a bounded pool of workers
(:func:`run_workers`) takes keys and reconciles them, and a failed reconcile schedules
its own retry with :meth:`WorkQueue.add_after`. The queue holds *keys*, never objects:
reconcile is level-based and reads the current state itself, so ten events for one
binding only need one reconcile. That gives the guarantees the reconciler builds on:

* **Deduplication.** A key waiting in the queue is not queued twice.
* **One worker per key.** A key being processed is never handed to another worker; an
  ``add`` meanwhile marks it *dirty* and it is queued again, once, when
  :meth:`WorkQueue.done` is called. No event is lost (the re-run sees the newer state)
  and no two workers race on the same binding's destinations.
* **FIFO** among ready keys, so a busy binding cannot starve the others.
* **Cheap delays.** Delayed adds live in one heap served by one ``loop.call_at`` timer
  handle owned by the queue, not a task or a timer per key: a cloud outage that puts
  10,000 bindings into backoff costs 10,000 heap entries, nothing more.

Everything here must be used from the event loop's thread; none of it is thread-safe,
and none of it needs to be, since the watches and workers are coroutines on one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["ShutDown", "WorkQueue", "run_workers"]

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

# Rebuild the heap once stale entries (superseded or forgotten delayed adds) outnumber
# the live ones by this factor, so forget/add churn cannot grow it without bound.
_HEAP_COMPACT_FACTOR = 2
_HEAP_COMPACT_MIN = 1024


class ShutDown(Exception):  # noqa: N818 - mirrors asyncio.QueueShutDown (3.13) / client-go
    """Raised by :meth:`WorkQueue.get` once the queue is shut down.

    Workers treat it as "stop taking work", which is how :func:`run_workers` ends
    gracefully; it is an ordinary exception, not a cancellation, so code can tell a
    planned stop from an aborted one.
    """


class WorkQueue(Generic[K]):
    """Keys waiting to be reconciled, with per-key exclusivity and delayed re-adds.

    State, with the invariants that make the guarantees hold:

    * ``_dirty``: keys that need (another) run. A key in ``_dirty`` and not in
      ``_processing`` is in ``_ready`` exactly once; a key in both waits for
      :meth:`done` to put it in ``_ready``.
    * ``_processing``: keys handed out by :meth:`get` and not yet :meth:`done`.
    * ``_delayed`` + ``_heap``: at most one pending delayed add per key (the earliest).
      The heap may hold stale entries; an entry is live only while ``_delayed[key]`` is
      that very entry. ``_dirty`` and ``_delayed`` never share a key: an immediate add
      makes a pending delayed one pointless.
    """

    def __init__(self, *, name: str = "bindings") -> None:
        """Create an empty queue; ``name`` labels logs, metrics and worker tasks."""
        self._name = name
        self._ready: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._heap: list[tuple[float, int, K]] = []
        self._delayed: dict[K, tuple[float, int, K]] = {}
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._shutting_down = False

    @property
    def name(self) -> str:
        """The queue's name, as given to the constructor."""
        return self._name

    @property
    def is_shut_down(self) -> bool:
        """Whether :meth:`shutdown` has been called."""
        return self._shutting_down

    # -- adding -------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Queue ``key`` for processing now.

        A key already waiting is not queued twice; a key being processed is marked dirty
        and queued once when its worker calls :meth:`done`. A pending delayed add for the
        key is dropped: the run this add causes supersedes it, and if that run still
        needs a later retry it will schedule one itself. After :meth:`shutdown` this is a
        no-op, so late watch events during a stop are harmless.
        """
        if self._shutting_down:
            return
        if self._delayed.pop(key, None) is not None:
            self._maybe_compact()
            self._arm_timer()
        self._enqueue(key)

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds (immediately if ``delay <= 0``).

        Only the earliest pending due time per key is kept: a later ``add_after`` never
        postpones an earlier one (a watch-driven resync must not delay a retry that is
        already due sooner), while an earlier one replaces it. If the key is already
        waiting for an immediate run, this is a no-op: that run comes first and will
        reschedule if it still needs to. A no-op after :meth:`shutdown`.

        Raises:
            ValueError: ``delay`` is NaN or infinite.
            RuntimeError: called without a running event loop (the timer needs one).
        """
        if not math.isfinite(delay):
            raise ValueError(f"delay must be a finite number of seconds, got {delay!r}")
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        if key in self._dirty:
            return
        loop = self._bind_loop()
        due = loop.time() + delay
        current = self._delayed.get(key)
        if current is not None and current[0] <= due:
            return
        entry = (due, next(self._seq), key)
        self._delayed[key] = entry
        heapq.heappush(self._heap, entry)
        self._maybe_compact()
        self._arm_timer()

    def forget(self, key: K) -> None:
        """Drop a pending delayed add for ``key``, if any (e.g. the binding was deleted).

        A key already ready or being processed is unaffected: that run will see the
        current state, which is what level-based reconcile wants.
        """
        if self._delayed.pop(key, None) is not None:
            self._maybe_compact()
            self._arm_timer()

    # -- consuming ----------------------------------------------------------------------

    async def get(self) -> K:
        """Wait for the next ready key (FIFO), mark it processing and return it.

        The caller must call :meth:`done` with the key when finished, whatever happens,
        or the key is never processed again. Cancelling a waiting ``get`` loses no key.

        Raises:
            ShutDown: the queue is (or gets) shut down; ready keys are not drained.
        """
        while not self._ready:
            if self._shutting_down:
                raise ShutDown(self._name)
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                with contextlib.suppress(ValueError):  # already popped by a wake-up
                    self._getters.remove(waiter)
                # If we were woken for a key and then cancelled, pass the wake-up on.
                if self._ready and not waiter.cancelled():
                    self._wake_one()
                raise
        key = self._ready.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        """Mark ``key`` finished; queue it again if it was added while processing.

        Raises:
            ValueError: ``key`` is not being processed (a worker bug: double ``done``).
        """
        try:
            self._processing.remove(key)
        except KeyError:
            raise ValueError(f"{key!r} is not being processed by {self._name!r}") from None
        if key in self._dirty:
            self._ready.append(key)
            self._wake_one()
        self._update_idle()

    # -- observing ----------------------------------------------------------------------

    def depth(self) -> int:
        """Keys waiting: ready, dirtied while processing, or delayed (the depth gauge)."""
        return len(self._dirty) + len(self._delayed)

    def ready(self) -> int:
        """Keys ready to run now (delayed retries not included)."""
        return len(self._ready)

    def processing(self) -> int:
        """Keys currently handed out to workers."""
        return len(self._processing)

    async def wait_idle(self) -> None:
        """Wait until nothing is ready, dirty or processing.

        Pending delayed adds do not count, so a test can add keys, wait for the pool to
        settle and then assert on the outcome even when a handler scheduled a retry far
        in the future. After :meth:`shutdown` it waits only for in-flight handlers.
        """
        await self._idle.wait()

    # -- stopping -----------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop handing out keys: wake every waiting :meth:`get` with :class:`ShutDown`.

        Pending and delayed keys are dropped and the timer is cancelled (a new leader
        or the next start re-lists everything, so nothing is lost); handlers already
        running finish normally and their :meth:`done` calls are accepted. Idempotent.
        Await :meth:`wait_idle` (or the :func:`run_workers` task) afterwards to wait for
        in-flight handlers.
        """
        if self._shutting_down:
            return
        self._shutting_down = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()
        self._delayed.clear()
        self._ready.clear()
        self._dirty.clear()
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        self._update_idle()
        # Let the woken getters observe the shutdown before our caller moves on.
        await asyncio.sleep(0)

    # -- internals ----------------------------------------------------------------------

    def _enqueue(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._ready.append(key)
            self._wake_one()
        self._update_idle()

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _update_idle(self) -> None:
        if self._dirty or self._processing:
            self._idle.clear()
        else:
            self._idle.set()

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(f"work queue {self._name!r} is bound to another event loop")
        return loop

    def _arm_timer(self) -> None:
        """Point the single timer handle at the earliest live due time, or cancel it."""
        heap = self._heap
        while heap and self._delayed.get(heap[0][2]) is not heap[0]:
            heapq.heappop(heap)
        if not heap:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        when = heap[0][0]
        if self._timer is not None:
            if self._timer_when == when:
                return
            self._timer.cancel()
        assert self._loop is not None  # set by add_after before anything reaches the heap
        self._timer = self._loop.call_at(when, self._on_timer)
        self._timer_when = when

    def _on_timer(self) -> None:
        """Move every delayed key that is due to the ready queue, in due-time order."""
        assert self._loop is not None
        self._timer = None
        # The loop may run a handle up to its clock resolution early; everything due at
        # or before the time we asked for counts as due.
        now = max(self._loop.time(), self._timer_when)
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            key = entry[2]
            if self._delayed.get(key) is entry:
                del self._delayed[key]
                self._enqueue(key)
        self._arm_timer()

    def _maybe_compact(self) -> None:
        live = len(self._delayed)
        if len(self._heap) > max(_HEAP_COMPACT_MIN, _HEAP_COMPACT_FACTOR * live):
            self._heap = list(self._delayed.values())
            heapq.heapify(self._heap)


async def run_workers(
    queue: WorkQueue[K],
    handler: Callable[[K], Awaitable[None]],
    *,
    workers: int,
) -> None:
    """Process keys from ``queue`` with ``workers`` concurrent workers until it shuts down.

    Each worker loops ``key = await queue.get()``, ``await handler(key)``, and always
    ``queue.done(key)``. A handler exception is logged with the key and the worker
    carries on: one broken binding must not stop the others, and retries are the
    handler's own decision (it calls :meth:`WorkQueue.add_after` with a backoff).

    Returns once the queue is shut down and every in-flight handler has finished (a
    graceful stop). Cancelling the call cancels every worker, including running
    handlers, and waits for all of them: the workers live in an
    :class:`asyncio.TaskGroup`, so no task outlives this coroutine.

    Raises:
        ValueError: ``workers < 1``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    async with asyncio.TaskGroup() as group:
        for index in range(workers):
            group.create_task(_worker(queue, handler), name=f"workqueue-{queue.name}-{index}")


async def _worker(queue: WorkQueue[K], handler: Callable[[K], Awaitable[None]]) -> None:
    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return
        try:
            await handler(key)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # we are being cancelled: stop
            # A CancelledError nobody asked for (e.g. the handler awaited a future that
            # someone else cancelled). Letting it escape would end this worker silently
            # and shrink the pool, so treat it like any other handler failure.
            _log_failure(queue, key)
        except Exception:
            _log_failure(queue, key)
        finally:
            queue.done(key)


def _log_failure(queue: WorkQueue[K], key: K) -> None:
    extra: dict[str, object] = {"workqueue": queue.name, "key": str(key)}
    namespace = getattr(key, "namespace", None)
    if isinstance(namespace, str):
        extra["namespace"] = namespace
    logger.exception("handler for %r in work queue %r failed", key, queue.name, extra=extra)
