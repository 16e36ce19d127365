"""Unit tests for the work queue and the worker pool (pure asyncio, no sleeps > ~50 ms)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import NamedTuple

import pytest

from certauto_core.engine.workqueue import ShutDown, WorkQueue, run_workers


class ObjectKey(NamedTuple):
    namespace: str
    name: str


TIMEOUT = 2.0  # generous upper bound for anything that should happen "soon"


def seeded(seed: int) -> random.Random:
    """Reproducible randomness for interleavings (not a secret)."""
    return random.Random(seed)  # noqa: S311


@pytest.fixture
async def queue() -> AsyncIterator[WorkQueue[str]]:
    q: WorkQueue[str] = WorkQueue(name="test")
    yield q
    await q.shutdown()


@asynccontextmanager
async def workers(
    q: WorkQueue[str], handler: Callable[[str], Awaitable[None]], count: int = 1
) -> AsyncIterator[asyncio.Task[None]]:
    """Run a pool for the body, then stop it gracefully and make sure it ended."""
    task = asyncio.create_task(run_workers(q, handler, workers=count))
    try:
        yield task
    finally:
        await q.shutdown()
        async with asyncio.timeout(TIMEOUT):
            await task


async def get_soon(q: WorkQueue[str]) -> str:
    async with asyncio.timeout(TIMEOUT):
        return await q.get()


async def assert_nothing_ready(q: WorkQueue[str], within: float = 0.02) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(within):
            await q.get()


# -- add, dedup, FIFO -------------------------------------------------------------------


async def test_add_deduplicates_waiting_keys(queue: WorkQueue[str]) -> None:
    for _ in range(3):
        queue.add("a")
    queue.add("b")
    assert queue.depth() == 2
    assert await get_soon(queue) == "a"
    assert await get_soon(queue) == "b"
    assert queue.depth() == 0
    assert queue.processing() == 2
    queue.done("a")
    queue.done("b")
    assert queue.processing() == 0
    await assert_nothing_ready(queue)


async def test_ready_keys_are_fifo(queue: WorkQueue[str]) -> None:
    keys = [f"k{i}" for i in range(20)]
    for key in keys:
        queue.add(key)
    queue.add("k0")  # a duplicate does not move a key to the back
    assert [await get_soon(queue) for _ in keys] == keys


async def test_key_added_while_processing_is_requeued_once_after_done(
    queue: WorkQueue[str],
) -> None:
    queue.add("a")
    queue.add("b")
    assert await get_soon(queue) == "a"
    for _ in range(3):
        queue.add("a")  # dirty: must not be handed out while processing
    assert queue.depth() == 2  # "b" ready, "a" dirty
    assert await get_soon(queue) == "b"
    await assert_nothing_ready(queue)
    queue.done("a")
    assert await get_soon(queue) == "a"
    queue.done("a")
    queue.done("b")
    await assert_nothing_ready(queue)


async def test_done_of_unknown_key_is_an_error(queue: WorkQueue[str]) -> None:
    with pytest.raises(ValueError, match="not being processed"):
        queue.done("nope")


async def test_cancelled_get_loses_no_key(queue: WorkQueue[str]) -> None:
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    getter.cancel()
    queue.add("a")  # the wake-up went to the cancelled getter
    with pytest.raises(asyncio.CancelledError):
        await getter
    assert await get_soon(queue) == "a"


# -- add_after, forget ------------------------------------------------------------------


async def test_add_after_delays_the_key(queue: WorkQueue[str]) -> None:
    start = time.monotonic()
    queue.add_after("a", 0.03)
    assert queue.depth() == 1
    await assert_nothing_ready(queue, within=0.01)
    assert await get_soon(queue) == "a"
    assert time.monotonic() - start >= 0.025
    assert queue.depth() == 0


async def test_non_positive_delay_adds_now(queue: WorkQueue[str]) -> None:
    queue.add_after("a", 0)
    queue.add_after("b", -1.0)
    assert await get_soon(queue) == "a"
    assert await get_soon(queue) == "b"


@pytest.mark.parametrize("delay", [float("nan"), float("inf")])
async def test_non_finite_delay_is_rejected(queue: WorkQueue[str], delay: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        queue.add_after("a", delay)


async def test_later_add_after_does_not_postpone_an_earlier_one(queue: WorkQueue[str]) -> None:
    start = time.monotonic()
    queue.add_after("a", 0.02)
    queue.add_after("a", 10.0)
    assert queue.depth() == 1
    assert await get_soon(queue) == "a"
    assert time.monotonic() - start < 1.0
    queue.done("a")
    assert queue.depth() == 0  # the 10 s add was dropped, not kept alongside


async def test_earlier_add_after_replaces_a_later_one(queue: WorkQueue[str]) -> None:
    start = time.monotonic()
    queue.add_after("a", 10.0)
    queue.add_after("a", 0.02)
    assert queue.depth() == 1
    assert await get_soon(queue) == "a"
    assert time.monotonic() - start < 1.0
    queue.done("a")
    assert queue.depth() == 0


async def test_delayed_keys_become_ready_in_due_order(queue: WorkQueue[str]) -> None:
    queue.add_after("c", 0.03)
    queue.add_after("a", 0.01)
    queue.add_after("b", 0.02)
    assert [await get_soon(queue) for _ in range(3)] == ["a", "b", "c"]


async def test_add_beats_a_pending_add_after(queue: WorkQueue[str]) -> None:
    queue.add_after("a", 0.03)
    queue.add("a")
    assert queue.depth() == 1
    assert await get_soon(queue) == "a"
    queue.done("a")
    await asyncio.sleep(0.05)
    assert queue.depth() == 0
    await assert_nothing_ready(queue)  # the delayed add did not fire later


async def test_add_after_is_a_no_op_for_a_key_already_ready(queue: WorkQueue[str]) -> None:
    queue.add("a")
    queue.add_after("a", 0.01)
    assert queue.depth() == 1
    assert await get_soon(queue) == "a"
    queue.done("a")
    await assert_nothing_ready(queue, within=0.03)


async def test_add_after_while_processing_runs_again_later(queue: WorkQueue[str]) -> None:
    queue.add("a")
    assert await get_soon(queue) == "a"
    queue.add_after("a", 0.01)  # the handler scheduling its own retry
    queue.done("a")
    assert await get_soon(queue) == "a"


async def test_delayed_key_due_while_processing_waits_for_done(queue: WorkQueue[str]) -> None:
    queue.add("a")
    assert await get_soon(queue) == "a"
    queue.add_after("a", 0.01)
    await assert_nothing_ready(queue, within=0.03)  # due, but "a" is still processing
    assert queue.depth() == 1
    queue.done("a")
    assert await get_soon(queue) == "a"


async def test_forget_drops_a_pending_delayed_add(queue: WorkQueue[str]) -> None:
    queue.add_after("a", 0.01)
    queue.add_after("b", 0.02)
    queue.forget("a")
    queue.forget("missing")  # harmless
    assert queue.depth() == 1
    assert await get_soon(queue) == "b"
    await assert_nothing_ready(queue, within=0.03)


async def test_forget_does_not_touch_a_ready_key(queue: WorkQueue[str]) -> None:
    queue.add("a")
    queue.forget("a")
    assert await get_soon(queue) == "a"


async def test_many_delayed_keys_need_no_tasks(queue: WorkQueue[str]) -> None:
    rng = seeded(0)
    tasks_before = len(asyncio.all_tasks())
    keys = [f"k{i}" for i in range(10_000)]
    for key in keys:
        queue.add_after(key, 0.01 + rng.random() * 0.03)
    assert len(asyncio.all_tasks()) == tasks_before
    assert queue.depth() == 10_000

    seen: list[str] = []
    all_seen = asyncio.Event()

    async def handler(key: str) -> None:
        seen.append(key)
        if len(seen) == len(keys):
            all_seen.set()

    async with workers(queue, handler, count=8):
        async with asyncio.timeout(TIMEOUT):
            await all_seen.wait()
            await queue.wait_idle()
    assert sorted(seen) == sorted(keys)
    assert queue.depth() == 0


async def test_forget_and_readd_churn_keeps_the_heap_bounded(queue: WorkQueue[str]) -> None:
    for _ in range(50):
        for i in range(200):
            queue.add_after(f"k{i}", 5.0)
        for i in range(200):
            queue.forget(f"k{i}")
    assert queue.depth() == 0
    assert len(queue._heap) <= 2_048  # stale entries are compacted away


# -- shutdown ---------------------------------------------------------------------------


async def test_shutdown_wakes_waiting_getters() -> None:
    q: WorkQueue[str] = WorkQueue()
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.add_after("later", 10.0)
    q.add("now")  # taken by the first getter
    await asyncio.sleep(0)
    await q.shutdown()
    results = await asyncio.gather(*getters, return_exceptions=True)
    assert results[0] == "now"
    assert all(isinstance(r, ShutDown) for r in results[1:])
    assert q.depth() == 0
    assert q._timer is None  # the delayed add's timer is gone
    with pytest.raises(ShutDown):
        await q.get()
    q.add("ignored")
    q.add_after("ignored", 0.01)
    assert q.depth() == 0
    q.done("now")  # in-flight work may still finish after shutdown
    await q.shutdown()  # idempotent


async def test_shutdown_stops_workers_and_leaves_no_task_behind() -> None:
    tasks_before = asyncio.all_tasks()
    q: WorkQueue[str] = WorkQueue()
    handled: list[str] = []
    release = asyncio.Event()

    async def handler(key: str) -> None:
        await release.wait()
        handled.append(key)

    pool = asyncio.create_task(run_workers(q, handler, workers=4))
    q.add("a")
    q.add_after("b", 10.0)
    await asyncio.sleep(0.01)
    assert q.processing() == 1
    await q.shutdown()
    assert not pool.done()  # the in-flight handler is allowed to finish
    release.set()
    async with asyncio.timeout(TIMEOUT):
        await pool
        await q.wait_idle()
    assert handled == ["a"]
    assert asyncio.all_tasks() == tasks_before


async def test_cancelling_run_workers_cancels_and_awaits_every_worker() -> None:
    tasks_before = asyncio.all_tasks()
    q: WorkQueue[str] = WorkQueue()
    started = asyncio.Event()
    cancelled: list[str] = []

    async def handler(key: str) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(key)
            raise

    pool = asyncio.create_task(run_workers(q, handler, workers=3))
    q.add("a")
    async with asyncio.timeout(TIMEOUT):
        await started.wait()
    pool.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pool
    assert cancelled == ["a"]
    assert q.processing() == 0  # done() ran in the worker's finally
    assert asyncio.all_tasks() == tasks_before
    await q.shutdown()


async def test_run_workers_rejects_an_empty_pool(queue: WorkQueue[str]) -> None:
    async def handler(key: str) -> None:
        pass

    with pytest.raises(ValueError, match="workers"):
        await run_workers(queue, handler, workers=0)


# -- the worker pool --------------------------------------------------------------------


async def test_failing_handler_is_logged_and_the_worker_survives(
    queue: WorkQueue[str], caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[str] = []

    async def handler(key: str) -> None:
        if key == "bad":
            raise RuntimeError("boom")
        handled.append(key)

    caplog.set_level(logging.ERROR, logger="certauto_core.engine.workqueue")
    async with workers(queue, handler, count=1):
        queue.add("bad")
        queue.add("good")
        async with asyncio.timeout(TIMEOUT):
            await queue.wait_idle()
        assert handled == ["good"]
        queue.add("bad")  # the key is not stuck in "processing"
        async with asyncio.timeout(TIMEOUT):
            await queue.wait_idle()
    failures = [r for r in caplog.records if getattr(r, "key", None) == "bad"]
    assert len(failures) == 2
    assert failures[0].exc_info is not None
    assert "'bad'" in failures[0].getMessage()


async def test_stray_cancelled_error_does_not_kill_the_worker(queue: WorkQueue[str]) -> None:
    handled: list[str] = []

    async def handler(key: str) -> None:
        if key == "stray":
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.cancel()
            await fut  # raises CancelledError although the worker is not cancelled
        handled.append(key)

    async with workers(queue, handler, count=1):
        queue.add("stray")
        queue.add("next")
        async with asyncio.timeout(TIMEOUT):
            await queue.wait_idle()
    assert handled == ["next"]


async def test_handler_scheduled_retry_runs_again(queue: WorkQueue[str]) -> None:
    attempts: Counter[str] = Counter()
    finished = asyncio.Event()

    async def handler(key: str) -> None:
        attempts[key] += 1
        if attempts[key] < 3:
            queue.add_after(key, 0.005)
        else:
            finished.set()

    async with workers(queue, handler, count=2):
        queue.add("flaky")
        async with asyncio.timeout(TIMEOUT):
            await finished.wait()
    assert attempts["flaky"] == 3


async def test_adds_during_processing_coalesce_into_one_more_run(queue: WorkQueue[str]) -> None:
    runs: Counter[str] = Counter()
    entered = asyncio.Event()
    release = asyncio.Event()

    async def handler(key: str) -> None:
        runs[key] += 1
        if runs[key] == 1:
            entered.set()
            await release.wait()

    async with workers(queue, handler, count=4):
        queue.add("a")
        async with asyncio.timeout(TIMEOUT):
            await entered.wait()
        for _ in range(5):
            queue.add("a")
        await asyncio.sleep(0.01)
        assert runs["a"] == 1  # no other worker picked it up
        release.set()
        async with asyncio.timeout(TIMEOUT):
            await queue.wait_idle()
    assert runs["a"] == 2


async def test_no_key_is_processed_by_two_workers_at_once(queue: WorkQueue[str]) -> None:
    rng = seeded(1234)
    keys = [f"k{i}" for i in range(10)]
    in_flight: Counter[str] = Counter()
    runs: Counter[str] = Counter()
    adds: Counter[str] = Counter()
    max_parallel = 0

    async def handler(key: str) -> None:
        nonlocal max_parallel
        in_flight[key] += 1
        assert in_flight[key] == 1, f"{key} processed concurrently"
        max_parallel = max(max_parallel, sum(in_flight.values()))
        runs[key] += 1
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        in_flight[key] -= 1

    errors: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record)

    collector = Collect(level=logging.ERROR)
    log = logging.getLogger("certauto_core.engine.workqueue")
    log.addHandler(collector)
    try:
        async with workers(queue, handler, count=8):
            for _ in range(3_000):
                key = rng.choice(keys)
                queue.add(key)
                adds[key] += 1
                if rng.random() < 0.5:
                    await asyncio.sleep(0)
            async with asyncio.timeout(TIMEOUT):
                await queue.wait_idle()
    finally:
        log.removeHandler(collector)

    assert errors == []  # a failed assertion in the handler would be logged here
    assert max_parallel > 1  # the pool really ran keys in parallel
    assert set(runs) == set(adds)
    for key in keys:
        assert 1 <= runs[key] <= adds[key]
    assert queue.processing() == 0
    assert queue.depth() == 0


# -- wait_idle --------------------------------------------------------------------------


async def test_wait_idle_ignores_delayed_keys(queue: WorkQueue[str]) -> None:
    async def handler(key: str) -> None:
        queue.add_after(key, 10.0)  # e.g. a periodic resync

    async with workers(queue, handler, count=2):
        queue.add("a")
        async with asyncio.timeout(TIMEOUT):
            await queue.wait_idle()
        assert queue.depth() == 1
        assert queue.processing() == 0


async def test_wait_idle_returns_at_once_on_an_empty_queue(queue: WorkQueue[str]) -> None:
    async with asyncio.timeout(0.1):
        await queue.wait_idle()


async def test_object_keys_work_and_failures_log_the_namespace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    q: WorkQueue[ObjectKey] = WorkQueue()

    async def handler(key: ObjectKey) -> None:
        raise RuntimeError(key.name)

    caplog.set_level(logging.ERROR, logger="certauto_core.engine.workqueue")
    pool = asyncio.create_task(run_workers(q, handler, workers=2))
    q.add(ObjectKey("apps", "web"))
    q.add(ObjectKey("apps", "web"))
    async with asyncio.timeout(TIMEOUT):
        await q.wait_idle()
    await q.shutdown()
    await pool
    [record] = caplog.records
    assert getattr(record, "namespace", None) == "apps"
    assert getattr(record, "workqueue", None) == "bindings"
