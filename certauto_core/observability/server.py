"""The operator's HTTP endpoints: ``/metrics``, ``/healthz`` and ``/readyz``.

* ``/healthz`` (liveness) answers 200 while every liveness check passes, else 503, so
  the kubelet restarts a process that is wedged: an event loop that stalls, or a
  watch that has been failing for longer than anyone should wait.
* ``/readyz`` (readiness) answers 200 when every readiness check passes (the caches
  are synced), else 503. Its JSON body lists each check's detail and whether this
  replica is the leader. Leadership is reported, never required: a standby with warm
  caches *is* ready, because it must be able to take over the moment the leader goes;
  gating readiness on leadership would leave a rolling update with no ready standby.
* ``/metrics`` is the Prometheus exposition of a :class:`~.metrics.Metrics` set
  (OpenMetrics when the scraper asks for it).

Checks are callables returning ``(ok, detail)``, sync or async, registered by name in
a :class:`HealthChecks`; components add theirs when they start. A check that raises
or takes longer than ``check_timeout`` counts as failing with that as its detail.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import orjson
from aiohttp import web

from certauto_core.observability.metrics import Metrics

__all__ = [
    "Check",
    "CheckResult",
    "FailureWindow",
    "HealthChecks",
    "HealthServer",
    "LoopLagMonitor",
]

log = logging.getLogger(__name__)

CheckResult = tuple[bool, str]
Check = Callable[[], CheckResult | Awaitable[CheckResult]]
JSON_CONTENT_TYPE: Final = "application/json"


class HealthChecks:
    """Named liveness and readiness checks; add to it at any time, from the loop."""

    def __init__(self) -> None:
        self.liveness: dict[str, Check] = {}
        self.readiness: dict[str, Check] = {}

    def add_liveness(self, name: str, check: Check) -> None:
        """A check whose failure means "restart me" (``/healthz``)."""
        _add(self.liveness, name, check)

    def add_readiness(self, name: str, check: Check) -> None:
        """A check whose failure means "do not count on me yet" (``/readyz``)."""
        _add(self.readiness, name, check)


def _add(checks: dict[str, Check], name: str, check: Check) -> None:
    if name in checks:
        raise ValueError(f"a check named {name!r} is already registered")
    checks[name] = check


class FailureWindow:
    """Tracks since when things (e.g. watches) have been failing: a liveness check.

    A watch calls :meth:`failing` on each error and :meth:`recovered` once it runs
    again; :meth:`check` fails when anything has been failing for longer than
    ``tolerance`` seconds without a recovery. Short outages (an API server restart)
    are tolerated; a watch that stays broken gets the process restarted.
    """

    def __init__(self, tolerance: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.tolerance = tolerance
        self._clock = clock
        self._since: dict[str, float] = {}

    def failing(self, name: str) -> None:
        self._since.setdefault(name, self._clock())

    def recovered(self, name: str) -> None:
        self._since.pop(name, None)

    def check(self) -> CheckResult:
        now = self._clock()
        too_long = sorted(
            name for name, since in self._since.items() if now - since > self.tolerance
        )
        if too_long:
            return False, f"failing for more than {self.tolerance:g}s: {', '.join(too_long)}"
        if self._since:
            return True, f"failing, within tolerance: {', '.join(sorted(self._since))}"
        return True, "ok"


class LoopLagMonitor:
    """Measures how late the event loop wakes a sleeping task: a liveness check.

    A loop blocked by synchronous work cannot answer probes at all; one that is
    merely starved (too much CPU work between awaits) answers slowly, and this
    check turns that into a failing ``/healthz`` with the measured lag.
    """

    def __init__(self, *, interval: float = 1.0, max_lag: float = 5.0) -> None:
        self.interval = interval
        self.max_lag = max_lag
        self.lag = 0.0
        """The lag measured last, in seconds."""
        self._task: asyncio.Task[None] | None = None
        self._expected = 0.0

    def start(self) -> None:
        if self._task is None:
            self._expected = time.monotonic() + self.interval
            self._task = asyncio.create_task(self._run(), name="certauto-loop-lag")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.lag = max(0.0, now - self._expected)
            self._expected = now + self.interval

    def check(self) -> CheckResult:
        # A tick that is overdue right now counts too (the monitor itself may starve).
        lag = max(self.lag, time.monotonic() - self._expected)
        return lag <= self.max_lag, f"event loop lag {lag:.3f}s (max {self.max_lag:g}s)"


class HealthServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``host``:``port``.

    ``port=0`` binds a free port; :attr:`port` tells which once :meth:`start` returned.
    ``is_leader`` feeds the ``leader`` field of ``/readyz``. It is reported, never
    required: a standby with warm caches is ready, since it must be able to take over.
    The server also runs a :class:`LoopLagMonitor` as the ``event_loop`` liveness
    check unless ``max_loop_lag`` is None.
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        host: str = "0.0.0.0",  # noqa: S104 - a pod's probes and scrapes come from outside
        port: int = 8080,
        checks: HealthChecks | None = None,
        is_leader: Callable[[], bool] | None = None,
        check_timeout: float = 5.0,
        max_loop_lag: float | None = 5.0,
    ) -> None:
        self.metrics = metrics
        self.host = host
        self.checks = checks if checks is not None else HealthChecks()
        self._requested_port = port
        self._is_leader = is_leader
        self._check_timeout = check_timeout
        self._loop_lag = LoopLagMonitor(max_lag=max_loop_lag) if max_loop_lag is not None else None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        """The bound port, once started."""

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the health server is already started")
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/livez", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        # No access log: the kubelet probes every few seconds and Prometheus scrapes.
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        if self._loop_lag is not None:
            self._loop_lag.start()
        log.info("health server listening", extra={"host": self.host, "port": self.port})

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if self._loop_lag is not None:
            await self._loop_lag.aclose()
        if runner is not None:
            await runner.cleanup()

    # ------------------------------------------------------------------ handlers
    async def _healthz(self, request: web.Request) -> web.Response:
        checks = dict(self.checks.liveness)
        if self._loop_lag is not None:
            checks.setdefault("event_loop", self._loop_lag.check)
        ok, results = await self._run_checks(checks)
        return _json_response(ok, {"ok": ok, "checks": results})

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, results = await self._run_checks(dict(self.checks.readiness))
        leader = bool(self._is_leader()) if self._is_leader is not None else None
        return _json_response(ok, {"ready": ok, "leader": leader, "checks": results})

    async def _metrics(self, request: web.Request) -> web.Response:
        # Rendering thousands of series is CPU work: keep it off the event loop.
        body, content_type = await asyncio.to_thread(
            self.metrics.render, request.headers.get("Accept")
        )
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def _run_checks(
        self, checks: Mapping[str, Check]
    ) -> tuple[bool, dict[str, dict[str, bool | str]]]:
        names = list(checks)
        outcomes = await asyncio.gather(*(self._run_check(checks[name]) for name in names))
        results: dict[str, dict[str, bool | str]] = {
            name: {"ok": ok, "detail": detail}
            for name, (ok, detail) in zip(names, outcomes, strict=True)
        }
        return all(ok for ok, _ in outcomes), results

    async def _run_check(self, check: Check) -> CheckResult:
        try:
            outcome = check()
            if inspect.isawaitable(outcome):
                outcome = await asyncio.wait_for(outcome, self._check_timeout)
            ok, detail = outcome
        except TimeoutError:
            return False, f"no answer within {self._check_timeout:g}s"
        except Exception as error:
            log.warning("health check raised", exc_info=True)
            return False, f"check raised {type(error).__name__}: {error}"
        return bool(ok), str(detail)


def _json_response(ok: bool, body: object) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=200 if ok else 503,
        content_type=JSON_CONTENT_TYPE,
    )
