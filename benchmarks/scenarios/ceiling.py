"""The ceiling: how fast a plain concurrent client creates Secrets on this API server.

aiohttp, the admin's client certificate, ``concurrency`` connections each POSTing
pre-serialised bodies of the size and shape of a reflector copy into fresh
namespaces for ``ceiling_seconds``, one connection count after another; the
ceiling is the best count's rate. It is measured in the same run against the same
API server as the operator, before the workload and again after scenarios 1-3, so
the ratio between the two cancels out the machine (and, as far as it can, other
load on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import aiohttp
import orjson

from benchmarks.context import Bench
from benchmarks.kube import create_namespaces, run_pool
from benchmarks.metrics import api_requests
from benchmarks.workload import BENCH_PREFIX, copy_equivalent_body, tls_data
from certauto_core.kube.resources import SECRETS

NAMESPACES_PER_LEVEL = 10
WARMUP_SECONDS = 2.0


async def run(bench: Bench, tag: str) -> dict[str, Any]:
    """Measure every connection count of ``sizes.ceiling_concurrency``; ``tag`` names the round."""
    sizes = bench.sizes
    data = tls_data(bench.certs.leaf("ceiling.bench.test"))
    cpu = bench.cpu(operator=False).start()
    # An untimed first round: the API server's and etcd's first writes are slow.
    await _level(bench, data, f"{tag}-warmup", 32, WARMUP_SECONDS)
    levels: list[dict[str, Any]] = []
    for concurrency in sizes.ceiling_concurrency:
        level = await _level(
            bench, data, f"{tag}-c{concurrency}", concurrency, sizes.ceiling_seconds
        )
        bench.say(
            f"  ceiling ({tag}) at {concurrency} connections: "
            f"{level['writes_per_second']:.0f} Secret POSTs/s"
        )
        levels.append(level)
    best = max(levels, key=lambda level: float(level["writes_per_second"]))
    # Not the reference: the same client while something watches what it writes, as
    # the operator watches its copies. The difference is the API server's cost of
    # serving that watch.
    watched = await _level(
        bench,
        data,
        f"{tag}-w{best['concurrency']}",
        best["concurrency"],
        sizes.ceiling_seconds,
        watched=True,
    )
    bench.say(
        f"  ceiling ({tag}) at {best['concurrency']} connections, watched: "
        f"{watched['writes_per_second']:.0f} Secret POSTs/s"
    )
    return {
        "watched": watched,
        "writes_per_second": best["writes_per_second"],
        "best_concurrency": best["concurrency"],
        "apiserver_cpu_ms_per_write": best["apiserver_cpu_ms_per_write"],
        "levels": levels,
        "cpu_seconds": cpu.stop(),
    }


async def _level(
    bench: Bench,
    data: dict[str, str],
    tag: str,
    concurrency: int,
    seconds: float,
    *,
    watched: bool = False,
) -> dict[str, Any]:
    namespaces = [f"bench-ceil-{tag}-{k}" for k in range(NAMESPACES_PER_LEVEL)]
    await create_namespaces(bench.kube, namespaces)
    # Bodies are serialised up front (one per namespace) and renamed by a byte
    # replacement, so the client spends its time on the wire, not on JSON.
    templates = {
        namespace: orjson.dumps(copy_equivalent_body(namespace, "c-XXXXXXX", data))
        for namespace in namespaces
    }
    size = sum(len(body) for body in templates.values()) / len(templates)
    server = bench.control_plane.server
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=bench.kube.ssl_context)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    done = failures = 0
    counter = itertools.count()
    async with aiohttp.ClientSession(connector=connector) as session:
        # Open the connections first, so the TLS handshakes are not timed.
        async def warm(_: int) -> None:
            async with session.get(server + "/readyz") as response:
                await response.read()

        await run_pool(range(concurrency * 2), warm, concurrency=concurrency)
        watcher = asyncio.create_task(_watch(bench)) if watched else None
        await asyncio.sleep(0.2 if watched else 0)
        before = await api_requests(bench.kube)
        cpu = bench.cpu(operator=False).start()
        started = time.monotonic()
        deadline = started + seconds

        async def worker(_: int) -> None:
            nonlocal done, failures
            while time.monotonic() < deadline:
                index = next(counter)
                namespace = namespaces[index % NAMESPACES_PER_LEVEL]
                body = templates[namespace].replace(b"c-XXXXXXX", f"c-{index:07d}".encode())
                async with session.post(
                    server + SECRETS.path(namespace), data=body, headers=headers
                ) as response:
                    await response.read()
                    if response.status == 201:
                        done += 1
                    else:
                        failures += 1

        await run_pool(range(concurrency), worker, concurrency=concurrency)
        elapsed = time.monotonic() - started
        used = cpu.stop()
        events = 0
        if watcher is not None:
            await asyncio.sleep(0.5)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                events = await watcher
        counted = (await api_requests(bench.kube) - before).writes("secrets")
    if counted < done:
        bench.say(f"  warning: the API server counted {counted} Secret writes, not {done}")
    level: dict[str, Any] = {
        "concurrency": concurrency,
        "requests": done,
        "failures": failures,
        "seconds": round(elapsed, 2),
        "writes_per_second": round(done / elapsed, 1),
        "body_bytes": round(size),
        "cpu_seconds": used,
        "apiserver_cpu_ms_per_write": round(1000 * used["kube-apiserver"] / max(1, done), 2),
        "etcd_cpu_ms_per_write": round(1000 * used["etcd"] / max(1, done), 2),
        "client_cpu_ms_per_write": round(1000 * used["driver"] / max(1, done), 2),
    }
    if watched:
        level["watch_events"] = events
    return level


async def _watch(bench: Bench) -> int:
    """Watch the ceiling's Secrets on a connection of its own (lines read, not decoded)."""
    selector = f"{BENCH_PREFIX}ceiling=copy"
    listed = await bench.kube.get_json(SECRETS.path(), labelSelector=selector, limit="1")
    params = {
        "watch": "true",
        "labelSelector": selector,
        "resourceVersion": str(listed["metadata"]["resourceVersion"]),
        "allowWatchBookmarks": "true",
    }
    lines = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    connector = aiohttp.TCPConnector(limit=1, ssl=bench.kube.ssl_context)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.get(bench.control_plane.server + SECRETS.path(), params=params) as response,
        ):
            async for _ in response.content:
                lines += 1
    except asyncio.CancelledError:
        return lines
    return lines
