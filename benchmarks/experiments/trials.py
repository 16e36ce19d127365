"""Monkeypatches that try one proposed product fix each, in the operator process only."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final

TRIALS_ENV: Final = "CERTAUTO_BENCH_TRIALS"


def no_trust_env() -> None:
    """aiohttp sessions with ``trust_env=False``.

    kubernetes-asyncio opens its session with ``trust_env=True``; aiohttp then looks up
    ``~/.netrc`` and the proxy environment *in the default thread pool, on every
    request* (two ``run_in_executor`` hops per request, competing for the GIL).
    """
    import aiohttp

    original = aiohttp.ClientSession.__init__

    def init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        kwargs["trust_env"] = False
        original(self, *args, **kwargs)

    aiohttp.ClientSession.__init__ = init  # type: ignore[method-assign]


def trace_requests() -> None:
    """Not a fix, an instrument: log API request concurrency and latency every 5 s.

    Writes one JSON line per period to stderr (the operator's log): requests by
    method, mean and max latency, and the mean and peak number in flight.
    """
    import asyncio
    import json
    import sys
    import time

    from certauto_core.kube.client import KubeClient

    original = KubeClient.request
    state: dict[str, Any] = {"inflight": 0, "peak": 0, "area": 0.0, "since": 0.0, "ops": {}}

    def account() -> None:
        now = time.monotonic()
        if state["since"]:
            state["area"] += state["inflight"] * (now - state["since"])
        state["since"] = now

    async def request(self: KubeClient, method: str, path: str, **kwargs: Any) -> Any:
        account()
        state["inflight"] += 1
        state["peak"] = max(state["peak"], state["inflight"])
        started = time.monotonic()
        try:
            return await original(self, method, path, **kwargs)
        finally:
            account()
            state["inflight"] -= 1
            took = time.monotonic() - started
            ops = state["ops"].setdefault(method, [0, 0.0, 0.0])
            ops[0] += 1
            ops[1] += took
            ops[2] = max(ops[2], took)

    async def report() -> None:
        period = 5.0
        while True:
            await asyncio.sleep(period)
            account()
            line = {
                "trace": "requests",
                "mean_inflight": round(state["area"] / period, 2),
                "peak_inflight": state["peak"],
                "ops": {
                    method: {
                        "n": n,
                        "mean_ms": round(1000 * total / n, 1),
                        "max_ms": round(1000 * worst, 1),
                    }
                    for method, (n, total, worst) in state["ops"].items()
                    if n
                },
            }
            if state["ops"]:
                sys.stderr.write(json.dumps(line) + "\n")
            state.update(area=0.0, peak=state["inflight"], ops={})

    original_run = asyncio.run

    def run(main: Any, **kwargs: Any) -> Any:
        async def wrapped() -> Any:
            task = asyncio.create_task(report())
            try:
                return await main
            finally:
                task.cancel()

        return original_run(wrapped(), **kwargs)

    KubeClient.request = request  # type: ignore[method-assign]
    asyncio.run = run


def lean_kubernetes_client() -> None:
    """Import none of kubernetes-asyncio's ~860 generated API and model modules.

    CertAuto only uses the library's kubeconfig loading and ``ApiClient.call_api`` with
    raw responses, yet ``import kubernetes_asyncio`` imports every generated module
    (about 65 MiB of RSS and 1.5 s of start-up). This finder answers those imports with
    empty stand-ins: what it saves is what a client without kubernetes-asyncio at run
    time would save.
    """
    import importlib.abc
    import importlib.machinery
    import sys
    import types

    heavy = ("kubernetes_asyncio.client.api.", "kubernetes_asyncio.client.models.")

    class Stub(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            stand_in = type(name, (), {"__module__": self.__name__})
            setattr(self, name, stand_in)
            return stand_in

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(
            self, fullname: str, path: Any = None, target: Any = None
        ) -> importlib.machinery.ModuleSpec | None:
            if fullname.startswith(heavy) and fullname.count(".") == 3:
                return importlib.machinery.ModuleSpec(fullname, self)
            return None

        def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
            return Stub(spec.name)

        def exec_module(self, module: types.ModuleType) -> None:
            return None

    sys.meta_path.insert(0, Finder())


def trace_memory() -> None:
    """Not a fix, an instrument: on SIGUSR1, log the 30 biggest live allocation sites.

    Starts :mod:`tracemalloc` (slow: for finding what holds memory, not for timing).
    """
    import signal
    import sys
    import tracemalloc

    tracemalloc.start(4)

    def dump(signum: int, frame: Any) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        stats = snapshot.statistics("traceback")
        total = sum(stat.size for stat in stats)
        sys.stderr.write(f"tracemalloc: {total / 2**20:.1f} MiB live in {len(stats)} sites\n")
        for stat in stats[:30]:
            where = " <- ".join(
                f"{frame.filename.rsplit('site-packages/', 1)[-1]}:{frame.lineno}"
                for frame in stat.traceback
            )
            sys.stderr.write(f"  {stat.size / 2**20:7.2f} MiB {stat.count:8d} {where}\n")

    signal.signal(signal.SIGUSR1, dump)


def pool64() -> None:
    """64 pooled connections to the API server, whatever ``--workers`` says.

    ``Operator.run`` sizes the pool ``max(16, workers * 2)`` while every worker's
    reflector writes up to ``MAX_CONCURRENT_WRITES`` (8) copies at once: with the
    default 8 workers, 64 writes queue for 16 connections.
    """
    from certauto_core.kube.client import KubeClient

    original = KubeClient.connect.__func__  # type: ignore[attr-defined]

    async def connect(cls: type[KubeClient], /, **kwargs: Any) -> KubeClient:
        kwargs["pool_size"] = max(64, int(kwargs.get("pool_size", 0)))
        client: KubeClient = await original(cls, **kwargs)
        return client

    KubeClient.connect = classmethod(connect)  # type: ignore[method-assign, assignment]


def direct_session() -> None:
    """Requests straight on the pooled aiohttp session, bodies serialised with orjson.

    ``KubeClient._send`` goes through ``ApiClient.call_api``, which deep-copies every
    body (``sanitize_for_serialization``) and serialises it with the standard
    library's ``json``; the response is already read raw. Same counters, same errors.
    """
    import aiohttp
    import orjson

    from certauto_core.kube import client as kube_client
    from certauto_core.kube.errors import ApiError

    async def send(
        self: Any,
        method: str,
        path: str,
        query: Any,
        body: Any,
        content_type: str,
        timeout: aiohttp.ClientTimeout | None,
    ) -> aiohttp.ClientResponse:
        params = {
            key: ("true" if value is True else "false" if value is False else str(value))
            for key, value in (query or {}).items()
        }
        if method in ("POST", "PUT", "PATCH"):
            params.setdefault("fieldManager", self.field_manager)
        self.requests += 1
        if method != "GET":
            self.writes += 1
        configuration = self.api.configuration
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        bearer = (await configuration.auth_settings()).get("BearerToken")
        if bearer and bearer.get("value"):
            headers[bearer["key"]] = bearer["value"]
        session: aiohttp.ClientSession = self.api.rest_client.pool_manager
        try:
            response: aiohttp.ClientResponse = await session.request(
                method,
                configuration.host + path,
                params=params,
                data=orjson.dumps(body) if body is not None else None,
                headers=headers,
                timeout=timeout or kube_client.DEFAULT_TIMEOUT,
            )
        except (TimeoutError, aiohttp.ClientError) as error:
            raise ApiError(0, type(error).__name__, str(error) or type(error).__name__) from error
        return response

    kube_client.KubeClient._send = send  # type: ignore[method-assign]


def reflector_concurrency32() -> None:
    """The reflector writes up to 32 copies of one binding at once (instead of 8)."""
    from certauto_reflector import destination

    destination.MAX_CONCURRENT_WRITES = 32  # type: ignore[misc]


def reflector_patch_update() -> None:
    """Update a copy with one conditional merge patch instead of a GET and a PUT.

    The index already holds the copy's resourceVersion: a merge patch that carries it
    fails with 409 if the copy changed meanwhile (then the original GET-and-replace
    path runs), and leaves every key it does not name (other tools' labels,
    finalizers) alone. A trial only: it ignores ``config.labels``/``annotations``
    removals, which the real fix would send as ``null``.
    """
    from certauto_reflector import destination as reflector

    from certauto_core.kube.errors import ApiError
    from certauto_core.kube.resources import SECRETS
    from certauto_core.plugins.contract import SECRET_CONTENT_KEYS

    original = reflector.ReflectorDestination._ensure_copy

    async def ensure_copy(
        self: Any,
        report: Any,
        binding: Any,
        namespace: str,
        name: str,
        shape: Any,
        content: Any,
    ) -> None:
        record = self._secrets.get(namespace, name)
        if (
            record is None
            or record.type != reflector.TLS_SECRET_TYPE
            or not reflector.is_ours(binding, record.labels, record.annotations)
            or (
                record.content_hash == content.hash
                and shape.holds(record.labels, record.annotations)
                and reflector._describes(record.annotations, content)
            )
        ):
            await original(self, report, binding, namespace, name, shape, content)
            return
        data: dict[str, Any] = dict.fromkeys(SECRET_CONTENT_KEYS)
        data.update(content.encoded())
        patch = {
            "metadata": {
                "resourceVersion": record.resource_version,
                "labels": dict(shape.labels),
                "annotations": {**shape.annotations, **content.annotations},
            },
            "data": data,
        }
        report.writes += 1
        try:
            patched = await self._kube.merge_patch(SECRETS.path(namespace, name), patch)
        except ApiError:
            await original(self, report, binding, namespace, name, shape, content)
            return
        self._secrets.observe_write(patched)
        report.written.append(namespace)

    reflector.ReflectorDestination._ensure_copy = ensure_copy  # type: ignore[method-assign]


def malloc_trim() -> None:
    """Return freed heap to the OS every 2 s (glibc ``malloc_trim(0)``).

    Not a fix either: it shows how much of the RSS is memory the process freed but
    the allocator kept (fragmentation after decoding thousands of objects), as
    opposed to what the caches hold.
    """
    import asyncio
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    original_run = asyncio.run

    async def trim() -> None:
        while True:
            await asyncio.sleep(2.0)
            libc.malloc_trim(0)

    def run(main: Any, **kwargs: Any) -> Any:
        async def wrapped() -> Any:
            task = asyncio.create_task(trim())
            try:
                return await main
            finally:
                task.cancel()

        return original_run(wrapped(), **kwargs)

    asyncio.run = run


TRIALS: Final[dict[str, Callable[[], None]]] = {
    "malloc_trim": malloc_trim,
    "direct_session": direct_session,
    "pool64": pool64,
    "reflector_concurrency32": reflector_concurrency32,
    "reflector_patch_update": reflector_patch_update,
    "trace_memory": trace_memory,
    "lean_kubernetes_client": lean_kubernetes_client,
    "no_trust_env": no_trust_env,
    "trace_requests": trace_requests,
}


def apply_from_env() -> None:
    for name in filter(None, (part.strip() for part in os.environ.get(TRIALS_ENV, "").split(","))):
        TRIALS[name]()
