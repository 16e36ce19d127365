"""Scenario 3: steady state. Every binding in sync; a full resync must write nothing.

Two full resyncs are counted, both by a fresh operator process started with
``--resync-interval`` of ``steady_resync_seconds``:

* **restart**: the resync a (re)started operator does once its caches are synced,
  over a cluster that is already in sync: the case of every deploy, node drain or
  crash. It also shows the memory of a cold start over 10,000 copies.
* **periodic**: the next resync on the timer, in a warm process.

Writes are counted by the API server (``apiserver_request_total``, every resource
but the API server's own Lease renewals) and by the operator itself
(``certauto_api_writes_total``). Cloud calls over a resync are scenario 5's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.context import METRICS_POLL, Bench, settle
from benchmarks.metrics import RequestCounts, api_requests
from benchmarks.procs import KIB, RssSampler
from benchmarks.scenarios.convergence import start_profiler, stop_profiler

API_SERVER_OWN = frozenset({"leases"})
"""Resources the API server writes itself (its identity Lease), excluded from the count."""


def operator_writes(counted: RequestCounts) -> dict[str, int]:
    by_resource = {
        resource: count
        for resource, count in counted.writes_by_resource().items()
        if resource.split("/")[0] not in API_SERVER_OWN
    }
    return by_resource


async def _wait_reconciled(bench: Bench, at_least: float, timeout: float) -> tuple[float, float]:
    """Wait until the operator completed ``at_least`` reconciles and its queue is idle.

    Returns the reconcile count once settled, and the moment the count was first seen
    reached (within one ``/metrics`` poll).
    """
    operator = bench.operator
    assert operator is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = await operator.metrics()
        if metrics.reconciles >= at_least and metrics.queue_depth == 0:
            reached = time.monotonic()
            await settle(bench, quiet=1.0)
            return (await operator.metrics()).reconciles, reached
        await asyncio.sleep(METRICS_POLL)
    raise TimeoutError(f"the operator did not reach {at_least:.0f} reconciles in {timeout:.0f}s")


async def run(bench: Bench) -> None:
    sizes, layout = bench.sizes, bench.layout
    if bench.operator is not None:
        await settle(bench)
        await bench.operator.stop()
    bench.say(
        f"scenario 3: restarting the operator (--resync-interval {sizes.steady_resync_seconds}s) "
        "over converged bindings"
    )
    before = await api_requests(bench.kube)
    operator = bench.operator = bench.new_operator(
        "steady", resync_interval=f"{sizes.steady_resync_seconds}s"
    )
    await operator.start()
    cpu = bench.cpu().start()
    cpu.started = operator.started_at
    sampler = RssSampler(operator.pid).start(origin=operator.started_at)
    profiler = await start_profiler(bench, operator.pid, "steady")
    ready_after = await operator.wait_ready()
    restart_reconciles, restart_done = await _wait_reconciled(bench, layout.bindings, timeout=300)
    restart_cpu = cpu.stop()
    restart_counted = await api_requests(bench.kube) - before
    restart_own = await operator.metrics()
    memory = operator.memory_kib()

    bench.say("scenario 3: waiting for the periodic resync")
    before = await api_requests(bench.kube)
    cpu = bench.cpu().start()
    periodic_reconciles, _ = await _wait_reconciled(
        bench, restart_reconciles + layout.bindings, timeout=sizes.steady_resync_seconds + 300
    )
    periodic_cpu = cpu.stop()
    periodic_counted = await api_requests(bench.kube) - before
    periodic_own = await operator.metrics()
    await stop_profiler(profiler)
    await sampler.stop()

    restart_writes = operator_writes(restart_counted)
    periodic_writes = operator_writes(periodic_counted)
    result: dict[str, Any] = {
        "bindings": layout.bindings,
        "copies": layout.copies,
        "restart": {
            "seconds_to_caches_synced": round(ready_after, 2),
            "seconds_to_resync_done": round(restart_done - operator.started_at, 2),
            "reconciles": restart_reconciles,
            "api_writes": sum(restart_writes.values()),
            "api_writes_by_resource": restart_writes,
            "operator_api_writes": restart_own.api_writes,
            "operator_api_requests": restart_own.api_requests,
            "cpu_seconds": restart_cpu,
        },
        "periodic": {
            "reconciles": periodic_reconciles - restart_reconciles,
            "api_writes": sum(periodic_writes.values()),
            "api_writes_by_resource": periodic_writes,
            "operator_api_writes": periodic_own.api_writes - restart_own.api_writes,
            "operator_api_requests": periodic_own.api_requests - restart_own.api_requests,
            "cpu_seconds": periodic_cpu,
            "operator_cpu_ms_per_reconcile": round(
                1000
                * periodic_cpu.get("operator", 0.0)
                / max(1.0, periodic_reconciles - restart_reconciles),
                2,
            ),
        },
    }
    bench.results["steady"] = result
    bench.results.setdefault("memory", {}).update(
        {
            "restart_rss_mib": round(memory.get("VmRSS", 0) / KIB, 1),
            "restart_peak_rss_mib": round(memory.get("VmHWM", 0) / KIB, 1),
            "restart_series_mib": sampler.series_mib(),
        }
    )
    bench.say(
        f"scenario 3: restart resync wrote {result['restart']['api_writes']}, periodic resync "
        f"wrote {result['periodic']['api_writes']} (target 0)"
    )
