"""The health server over real HTTP: /healthz, /readyz, /metrics, and their checks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from certauto_core.kube.client import KubeClient
from certauto_core.kube.resources import NAMESPACES
from certauto_core.observability.metrics import Metrics
from certauto_core.observability.server import (
    CheckResult,
    FailureWindow,
    HealthChecks,
    HealthServer,
    LoopLagMonitor,
)
from certauto_core.testing.controlplane.process import ControlPlane


@dataclass
class Switch:
    """A check whose answer the test flips."""

    ok: bool = True
    detail: str = "fine"

    def __call__(self) -> CheckResult:
        return self.ok, self.detail


@dataclass
class Served:
    server: HealthServer
    http: aiohttp.ClientSession
    metrics: Metrics
    checks: HealthChecks
    leading: list[bool]

    async def get(self, path: str, **headers: str) -> tuple[int, str, Any]:
        url = f"http://127.0.0.1:{self.server.port}{path}"
        async with self.http.get(url, headers=headers) as response:
            body: Any = (
                await response.json()
                if response.content_type == "application/json"
                else await response.text()
            )
            return response.status, response.headers["Content-Type"], body


@pytest_asyncio.fixture(loop_scope="session")
async def served() -> AsyncIterator[Served]:
    metrics = Metrics()
    checks = HealthChecks()
    leading = [False]
    server = HealthServer(
        metrics,
        host="127.0.0.1",
        port=0,
        checks=checks,
        is_leader=lambda: leading[0],
        check_timeout=0.3,
    )
    async with server, aiohttp.ClientSession() as http:
        yield Served(server, http, metrics, checks, leading)


async def test_port_zero_binds_a_free_port(served: Served) -> None:
    assert served.server.port is not None
    assert served.server.port > 0


async def test_healthz_is_ok_with_a_responsive_loop(served: Served) -> None:
    status, _, body = await served.get("/healthz")

    assert status == 200
    assert body["ok"] is True
    assert body["checks"]["event_loop"]["ok"] is True


async def test_readyz_reports_checks_and_leadership(served: Served) -> None:
    served.checks.add_readiness("caches", Switch(True, "3 caches synced"))

    status, _, body = await served.get("/readyz")
    assert status == 200
    assert body == {
        "ready": True,
        "leader": False,
        "checks": {"caches": {"ok": True, "detail": "3 caches synced"}},
    }

    served.leading[0] = True
    _, _, body = await served.get("/readyz")
    assert body["leader"] is True


async def test_a_standby_with_warm_caches_is_ready(served: Served) -> None:
    served.checks.add_readiness("caches", Switch(True))
    served.leading[0] = False

    status, _, body = await served.get("/readyz")

    assert status == 200
    assert body["leader"] is False


async def test_failing_readiness_check_gives_503(served: Served) -> None:
    caches = Switch(False, "secrets cache not synced")
    served.checks.add_readiness("caches", caches)

    status, _, body = await served.get("/readyz")
    assert status == 503
    assert body["ready"] is False
    assert body["checks"]["caches"] == {"ok": False, "detail": "secrets cache not synced"}

    caches.ok = True
    status, _, _ = await served.get("/readyz")
    assert status == 200


async def test_failing_liveness_check_gives_503_and_leaves_readiness(served: Served) -> None:
    watches = Switch(True)
    served.checks.add_liveness("watches", watches)
    served.checks.add_readiness("caches", Switch(True))
    assert (await served.get("/healthz"))[0] == 200

    watches.ok, watches.detail = False, "secrets watch failing for 6m"

    status, _, body = await served.get("/healthz")
    assert status == 503
    assert body["checks"]["watches"]["detail"] == "secrets watch failing for 6m"
    assert (await served.get("/readyz"))[0] == 200


async def test_async_raising_and_hanging_checks(served: Served) -> None:
    async def synced() -> CheckResult:
        await asyncio.sleep(0)
        return True, "async ok"

    def broken() -> CheckResult:
        raise RuntimeError("informer gone")

    async def hangs() -> CheckResult:
        await asyncio.sleep(60)
        return True, "never"

    served.checks.add_readiness("async", synced)
    assert (await served.get("/readyz"))[0] == 200

    served.checks.add_readiness("broken", broken)
    served.checks.add_readiness("hangs", hangs)
    started = time.monotonic()
    status, _, body = await served.get("/readyz")

    assert status == 503
    assert time.monotonic() - started < 5
    assert body["checks"]["async"] == {"ok": True, "detail": "async ok"}
    assert body["checks"]["broken"]["ok"] is False
    assert "RuntimeError: informer gone" in body["checks"]["broken"]["detail"]
    assert body["checks"]["hangs"] == {"ok": False, "detail": "no answer within 0.3s"}


async def test_duplicate_check_names_are_refused(served: Served) -> None:
    served.checks.add_liveness("watches", Switch())
    with pytest.raises(ValueError, match="already registered"):
        served.checks.add_liveness("watches", Switch())


async def test_metrics_exposition(served: Served) -> None:
    served.metrics.sync_total.labels(type="reflector", result="synced").inc()

    status, content_type, body = await served.get("/metrics")

    assert status == 200
    assert content_type.startswith("text/plain")
    assert 'certauto_sync_total{result="synced",type="reflector"} 1.0' in body


async def test_metrics_openmetrics_on_request(served: Served) -> None:
    status, content_type, body = await served.get(
        "/metrics", Accept="application/openmetrics-text; version=1.0.0"
    )

    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")


async def test_metrics_count_a_real_clients_requests(
    served: Served, control_plane: ControlPlane
) -> None:
    kube = await KubeClient.connect(kubeconfig=str(control_plane.kubeconfig_path))
    try:
        served.metrics.track_api_client(kube)
        await kube.get(NAMESPACES.path(name="default"))
        await kube.get(NAMESPACES.path(name="kube-system"))

        _, _, body = await served.get("/metrics")
    finally:
        await kube.aclose()

    assert "certauto_api_requests_total 2.0" in body
    assert "certauto_api_writes_total 0.0" in body


async def test_aclose_stops_serving() -> None:
    server = HealthServer(Metrics(), host="127.0.0.1", port=0)
    await server.start()
    port = server.port
    await server.aclose()

    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"http://127.0.0.1:{port}/healthz")


def test_failure_window_tolerates_short_failures() -> None:
    now = [100.0]
    window = FailureWindow(300, clock=lambda: now[0])
    assert window.check() == (True, "ok")

    window.failing("secrets")
    now[0] += 200
    window.failing("secrets")  # a repeated failure does not restart the clock
    assert window.check()[0] is True

    now[0] += 101
    ok, detail = window.check()
    assert not ok
    assert "secrets" in detail

    window.recovered("secrets")
    assert window.check() == (True, "ok")


async def test_loop_lag_monitor_sees_a_starved_loop() -> None:
    monitor = LoopLagMonitor(interval=0.05, max_lag=0.1)
    monitor.start()
    try:
        await asyncio.sleep(0.12)
        assert monitor.check()[0] is True

        _spin(0.3)  # CPU work without an await: the loop is starved meanwhile

        ok, detail = monitor.check()
        assert not ok
        assert "event loop lag" in detail
        await asyncio.sleep(0.15)
        assert monitor.check()[0] is True
    finally:
        await monitor.aclose()


def _spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
