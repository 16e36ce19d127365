"""The driver's own Kubernetes client: aiohttp, the admin's client certificate, orjson.

Deliberately not CertAuto's client: the driver sets up the workload, polls for
readiness and measures the ceiling, and must cost the API server and the two
cores as little as possible. Bodies are serialised once with orjson, responses
are read raw and decoded only when the caller needs them.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson

from certauto_core.testing.controlplane.process import ADMIN_USER, ControlPlane

T = TypeVar("T")
JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
PARTIAL_METADATA = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


class KubeError(RuntimeError):
    """A request the API server refused."""

    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:300]!r}")
        self.status = status


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


def admin_ssl_context(control_plane: ControlPlane) -> ssl.SSLContext:
    """TLS for the API server with the cluster admin's client certificate."""
    return control_plane.ssl_context(control_plane.pki.client(ADMIN_USER, ("system:masters",)))


class Kube:
    """A pooled HTTPS session to one API server (``limit`` connections at most)."""

    def __init__(self, control_plane: ControlPlane, *, limit: int = 64) -> None:
        self.server = control_plane.server
        self._ssl = admin_ssl_context(control_plane)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, ssl=self._ssl),
            timeout=aiohttp.ClientTimeout(total=120, sock_connect=10),
            read_bufsize=2**21,
        )

    @property
    def ssl_context(self) -> ssl.SSLContext:
        return self._ssl

    async def aclose(self) -> None:
        await self._session.close()

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Response:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        async with self._session.request(
            method, self.server + path, params=params, data=body, headers=headers
        ) as response:
            return Response(response.status, await response.read())

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        ok: Iterable[int] = (),
    ) -> Response:
        """Send; raise :class:`KubeError` unless 2xx or a status in ``ok``."""
        response = await self.send(
            method, path, params=params, body=body, content_type=content_type
        )
        if not 200 <= response.status < 300 and response.status not in ok:
            raise KubeError(method, path, response.status, response.body)
        return response

    async def get_json(self, path: str, **params: str) -> Any:
        return (await self.call("GET", path, params=params)).json()

    async def create(self, path: str, obj: Mapping[str, Any], *, exist_ok: bool = False) -> int:
        """POST ``obj``; return the status (409 allowed when ``exist_ok``)."""
        response = await self.call(
            "POST", path, body=orjson.dumps(obj), ok=(409,) if exist_ok else ()
        )
        return response.status

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> Response:
        return await self.call("PATCH", path, body=orjson.dumps(patch), content_type=MERGE_PATCH)

    async def text(self, path: str) -> str:
        return (await self.call("GET", path)).body.decode()

    async def count(self, path: str, **params: str) -> int:
        """How many objects a LIST would return, from one item and ``remainingItemCount``."""
        page = await self.get_json(path, limit="1", **params)
        items = len(page.get("items") or [])
        return items + int((page.get("metadata") or {}).get("remainingItemCount") or 0)

    async def list_items(self, path: str, *, page_size: int = 1000, **params: str) -> list[JSON]:
        """Every item of a LIST, page by page."""
        items: list[JSON] = []
        token = ""
        while True:
            query = dict(params, limit=str(page_size))
            if token:
                query["continue"] = token
            page = await self.get_json(path, **query)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    async def list_metadata(self, path: str, *, page_size: int = 2000, **params: str) -> list[JSON]:
        """Every item's ``metadata`` only (``PartialObjectMetadataList``): no data, no status.

        ``remainingItemCount`` is not served for selector queries, so counting copies
        by label needs a list; this one is a tenth of the bytes of a full one.
        """
        items: list[JSON] = []
        token = ""
        headers = {"Accept": PARTIAL_METADATA}
        while True:
            query = dict(params, limit=str(page_size))
            if token:
                query["continue"] = token
            async with self._session.get(
                self.server + path, params=query, headers=headers
            ) as response:
                body = await response.read()
                if response.status != 200:
                    raise KubeError("GET", path, response.status, body)
            page = orjson.loads(body)
            items.extend(item.get("metadata") or {} for item in page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    async def watch(
        self, path: str, *, resource_version: str, **params: str
    ) -> AsyncIterator[tuple[float, JSON]]:
        """A raw watch: ``(monotonic receipt time, decoded event)`` per line, until closed."""
        query = dict(params, watch="true", resourceVersion=resource_version)
        query.setdefault("timeoutSeconds", "3600")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        async with self._session.get(self.server + path, params=query, timeout=timeout) as response:
            if response.status != 200:
                raise KubeError("WATCH", path, response.status, await response.read())
            async for line in response.content:
                if line.strip():
                    yield time.monotonic(), orjson.loads(line)


async def run_pool(
    items: Iterable[T],
    work: Callable[[T], Awaitable[None]],
    *,
    concurrency: int,
) -> None:
    """Run ``work`` over ``items`` with exactly ``concurrency`` workers pulling from one iterator.

    Fails fast: the first exception cancels the other workers and propagates.
    """
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:
            await work(item)

    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, concurrency)):
            group.create_task(worker())


def namespace_body(name: str, labels: Mapping[str, str] | None = None) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": dict(labels or {})},
    }


async def create_namespaces(
    kube: Kube, names: Iterable[str], *, labels: Mapping[str, str] | None = None
) -> None:
    async def one(name: str) -> None:
        await kube.create("/api/v1/namespaces", namespace_body(name, labels), exist_ok=True)

    await run_pool(list(names), one, concurrency=16)
