"""A raw-JSON Kubernetes client over kubernetes-asyncio's pooled session.

kubernetes-asyncio's generated models are slow to build (18x ``json.loads`` on a
list of 10,000 Secrets), so hot paths use this client: it borrows the library's
authentication and its pooled aiohttp session, and reads bodies with orjson.
The generated API classes stay available through :attr:`KubeClient.api` for
rare, cold calls.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
from kubernetes_asyncio import client, config

from certauto_core.kube.errors import ApiError, error_for

log = logging.getLogger("certauto.kube")
JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)


class KubeClient:
    """Requests by path, JSON in and out, typed errors; one pooled HTTP session."""

    def __init__(self, api: client.ApiClient, *, field_manager: str = "certauto") -> None:
        self.api = api
        self.field_manager = field_manager
        self.requests = 0
        """How many requests this client sent (for benchmarks and tests)."""
        self.writes = 0
        """How many of them were writes (POST, PUT, PATCH, DELETE)."""

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool | None = None,
        pool_size: int = 32,
        field_manager: str = "certauto",
    ) -> KubeClient:
        """Load a kubeconfig (or the in-cluster config) and open a pooled client.

        ``in_cluster=None`` means: in-cluster when no kubeconfig is given and the
        service-account token is mounted, else the default kubeconfig.
        """
        configuration = client.Configuration()
        if in_cluster is None:
            in_cluster = kubeconfig is None and _token_mounted()
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            await config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
        configuration.connection_pool_maxsize = pool_size
        return cls(client.ApiClient(configuration=configuration), field_manager=field_manager)

    async def aclose(self) -> None:
        await self.api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON body or raise :class:`ApiError`."""
        response = await self._send(method, path, query, body, content_type, timeout)
        try:
            raw = await response.read()
        finally:
            response.release()
        if not 200 <= response.status < 300:
            raise error_for(response.status, _decode_error_body(raw))
        decoded: Any = orjson.loads(raw) if raw else None
        return decoded

    async def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str | int | bool] | None,
        body: Any,
        content_type: str,
        timeout: aiohttp.ClientTimeout | None,
    ) -> aiohttp.ClientResponse:
        params: dict[str, str] = {
            key: ("true" if value is True else "false" if value is False else str(value))
            for key, value in (query or {}).items()
        }
        if method in ("POST", "PUT", "PATCH"):
            params.setdefault("fieldManager", self.field_manager)
        self.requests += 1
        if method != "GET":
            self.writes += 1
            log.debug("%s %s", method, path)
        try:
            response: aiohttp.ClientResponse = await self.api.call_api(
                path,
                method,
                query_params=list(params.items()),
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout or DEFAULT_TIMEOUT,
            )
        except (TimeoutError, aiohttp.ClientError) as error:
            raise ApiError(0, type(error).__name__, str(error) or type(error).__name__) from error
        return response

    # ------------------------------------------------------------------ conveniences
    async def get(self, path: str, **query: str | int | bool) -> JSON:
        result: JSON = await self.request("GET", path, query=query)
        return result

    async def create(self, path: str, body: Mapping[str, Any]) -> JSON:
        result: JSON = await self.request("POST", path, body=dict(body))
        return result

    async def replace(self, path: str, body: Mapping[str, Any]) -> JSON:
        result: JSON = await self.request("PUT", path, body=dict(body))
        return result

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> JSON:
        result: JSON = await self.request("PATCH", path, body=dict(patch), content_type=MERGE_PATCH)
        return result

    async def json_patch(self, path: str, operations: list[JSON]) -> JSON:
        result: JSON = await self.request("PATCH", path, body=operations, content_type=JSON_PATCH)
        return result

    async def delete(
        self, path: str, *, uid: str | None = None, resource_version: str | None = None
    ) -> JSON | None:
        """Delete with optional preconditions (never delete a replacement by accident)."""
        preconditions: JSON = {}
        if uid:
            preconditions["uid"] = uid
        if resource_version:
            preconditions["resourceVersion"] = resource_version
        body: JSON = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if preconditions:
            body["preconditions"] = preconditions
        result: JSON | None = await self.request("DELETE", path, body=body)
        return result

    async def stream_lines(
        self,
        path: str,
        *,
        query: Mapping[str, str | int | bool],
        read_timeout: float,
    ) -> AsyncIterator[JSON]:
        """A watch stream: one decoded JSON object per line.

        ``read_timeout`` bounds the silence between two reads, so a dead
        connection ends the stream with :class:`ApiError` instead of hanging.
        """
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout)
        response = await self._send("GET", path, query, None, "application/json", timeout)
        try:
            if not 200 <= response.status < 300:
                raise error_for(response.status, _decode_error_body(await response.read()))
            try:
                async for line in response.content:
                    if line.strip():
                        yield orjson.loads(line)
            except (TimeoutError, aiohttp.ClientError) as error:
                raise ApiError(
                    0, type(error).__name__, str(error) or "watch stream broke"
                ) from error
        finally:
            response.release()


def _decode_error_body(raw: bytes) -> Any:
    """A ``Status`` object usually; plain text ("404 page not found") for an unserved group."""
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")


def _token_mounted() -> bool:
    from pathlib import Path

    return Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists()


__all__ = ["JSON", "MERGE_PATCH", "ApiError", "KubeClient"]
