"""Scenario 2: renewal propagation under the scenario-1 load.

After convergence, sources are rotated (a merge patch of ``data`` with a newly
issued certificate) at ``rotation_rate`` per second for ``rotation_seconds``,
open loop: each rotation is sent on schedule whatever the previous ones are doing.
A raw watch on the copies (label ``watched=copy``) sees each copy change; a
rotation's latency runs from just before its patch is sent to the receipt of the
watch event of the last of its copies carrying the new fingerprint.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.context import Bench, settle
from benchmarks.metrics import api_requests
from benchmarks.workload import tls_data
from certauto_core.engine.indexes import BINDING_ANNOTATION, COPY_LABEL_VALUE, WATCHED_LABEL
from certauto_core.kube.resources import SECRETS

FINGERPRINT_ANNOTATION = "certauto.sanorg.in/fingerprint"
DRAIN_TIMEOUT = 120.0
"""How long to wait, after the last rotation, for its copies."""


@dataclass
class Rotation:
    fingerprint: str
    waiting: set[str]
    """Namespaces whose copy does not hold the new certificate yet."""
    sent: float = 0.0
    first_copy: float | None = None
    done: float | None = None


@dataclass
class Tracker:
    """Matches copy events to the rotations they complete."""

    rotations: dict[str, Rotation] = field(default_factory=dict)
    """``namespace/name`` of the binding -> its rotation in flight."""
    latencies: list[float] = field(default_factory=list)
    first_copy_latencies: list[float] = field(default_factory=list)
    events: int = 0
    all_done: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    def on_event(self, received: float, event: dict[str, Any]) -> None:
        if event.get("type") not in ("ADDED", "MODIFIED"):
            return
        self.events += 1
        metadata = (event.get("object") or {}).get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        rotation = self.rotations.get(annotations.get(BINDING_ANNOTATION, ""))
        if rotation is None or rotation.done is not None:
            return
        if annotations.get(FINGERPRINT_ANNOTATION) != rotation.fingerprint:
            return
        if rotation.first_copy is None:
            rotation.first_copy = received
            self.first_copy_latencies.append(received - rotation.sent)
        rotation.waiting.discard(str(metadata.get("namespace")))
        if not rotation.waiting:
            rotation.done = received
            self.latencies.append(received - rotation.sent)
            if len(self.latencies) >= self.expected:
                self.all_done.set()


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(1000 * percentile(values, 0.50), 1),
        "p95_ms": round(1000 * percentile(values, 0.95), 1),
        "p99_ms": round(1000 * percentile(values, 0.99), 1),
        "max_ms": round(1000 * max(values), 1) if values else math.nan,
        "mean_ms": round(1000 * sum(values) / len(values), 1) if values else math.nan,
    }


async def run(bench: Bench) -> None:
    sizes, layout = bench.sizes, bench.layout
    operator = bench.operator
    assert operator is not None, "scenario 2 runs on scenario 1's operator"
    wanted = max(1, round(sizes.rotation_rate * sizes.rotation_seconds))
    count = min(wanted, layout.bindings)
    rate = sizes.rotation_rate
    bench.say(f"scenario 2: {count} rotations at {rate:g}/s over {layout.bindings} bindings")
    # Spread the rotated bindings over every source namespace and target group.
    step = max(1, layout.bindings // count)
    chosen = [(k * step) % layout.bindings for k in range(count)]
    leaves = await asyncio.to_thread(
        lambda: [bench.certs.leaf(f"b{index}.bench.test") for index in chosen]
    )
    await settle(bench)

    tracker = Tracker(expected=count)
    selector = f"{WATCHED_LABEL}={COPY_LABEL_VALUE}"
    listed = await bench.kube.get_json(SECRETS.path(), labelSelector=selector, limit="1")
    version = str(listed["metadata"]["resourceVersion"])

    async def watch() -> None:
        async for received, event in bench.kube.watch(
            SECRETS.path(), resource_version=version, labelSelector=selector
        ):
            tracker.on_event(received, event)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.5)  # let the watch start before the first rotation
    before = await api_requests(bench.kube)
    own_before = await operator.metrics()
    cpu = bench.cpu().start()
    patches: list[asyncio.Task[Any]] = []
    started = time.monotonic()
    try:
        for k, (index, leaf) in enumerate(zip(chosen, leaves, strict=True)):
            due = started + k / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            namespace, name = layout.binding(index)
            rotation = Rotation(leaf.fingerprint, set(layout.targets(index)))
            tracker.rotations[f"{namespace}/{name}"] = rotation
            rotation.sent = time.monotonic()
            patches.append(
                asyncio.create_task(
                    bench.kube.merge_patch(
                        SECRETS.path(namespace, layout.source_secret(index)),
                        {"data": tls_data(leaf)},
                    )
                )
            )
        sent_seconds = time.monotonic() - started
        await asyncio.gather(*patches)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tracker.all_done.wait(), DRAIN_TIMEOUT)
        finished = time.monotonic()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    used = cpu.stop()
    counted = await api_requests(bench.kube) - before
    own = await operator.metrics()
    driver_writes = len(patches)
    latencies = tracker.latencies
    result: dict[str, Any] = {
        "bindings": layout.bindings,
        "copies_per_rotation": layout.namespaces_per_binding,
        "rotations": count,
        "rotation_rate": rate,
        "rotations_sent_per_second": round(count / sent_seconds, 2) if sent_seconds else rate,
        "completed": len(latencies),
        "incomplete": count - len(latencies),
        "latency_all_copies": summary_ms(latencies),
        "latency_first_copy": summary_ms(tracker.first_copy_latencies),
        "window_seconds": round(finished - started, 1),
        "copy_events_seen": tracker.events,
        "secret_writes_by_operator": counted.writes("secrets") - driver_writes,
        "secret_requests_by_verb": counted.by_verb("secrets"),
        "writes_by_resource": counted.writes_by_resource(),
        "operator_api_requests": own.api_requests - own_before.api_requests,
        "operator_api_writes": own.api_writes - own_before.api_writes,
        "cpu_seconds": used,
        "operator_cpu_ms_per_rotation": round(
            1000 * used.get("operator", 0.0) / max(1, len(latencies)), 1
        ),
        "series": [
            [round(rotation.sent - started, 2), round(1000 * (rotation.done - rotation.sent), 1)]
            for rotation in tracker.rotations.values()
            if rotation.done is not None
        ],
    }
    bench.results["renewal"] = result
    stats = result["latency_all_copies"]
    bench.say(
        f"scenario 2: {len(latencies)}/{count} rotations propagated; p50 {stats['p50_ms']} ms, "
        f"p95 {stats['p95_ms']} ms, p99 {stats['p99_ms']} ms"
    )
