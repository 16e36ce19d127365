"""Fixtures for the reflector's tests: a real control plane, real watches, real counts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from certauto_core.kube.client import KubeClient
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.kube import temporary_namespace

pytest_plugins = ["certauto_core.testing.pytest_plugin"]

_REQUESTS = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})


@pytest.fixture
def secret_writes(control_plane: ControlPlane) -> Callable[[], Awaitable[int]]:
    """Writes to Secrets the API server has served so far, read from its own metrics.

    Counted by the server, not the client, so a write the plugin made some other
    way (or forgot to count) shows up too.
    """

    async def count() -> int:
        text = await asyncio.to_thread(control_plane.get_json, "/metrics")
        assert isinstance(text, str)
        total = 0.0
        for match in _REQUESTS.finditer(text):
            labels = dict(_LABEL.findall(match["labels"]))
            if (
                labels.get("resource") == "secrets"
                and labels.get("group") == ""
                and labels.get("subresource", "") == ""
                and labels.get("verb") in _WRITE_VERBS
            ):
                total += float(match["value"])
        return int(total)

    return count


@pytest.fixture
def admin_kube(kube_api: client.ApiClient) -> KubeClient:
    """A raw-JSON client as the cluster admin, for arranging and inspecting."""
    return KubeClient(kube_api)


@pytest_asyncio.fixture(loop_scope="session")
async def make_namespace(
    kube_api: client.ApiClient,
) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Create fresh namespaces (optionally labelled); all deleted after the test."""
    async with AsyncExitStack() as exits:

        async def make(prefix: str = "ns", labels: dict[str, str] | None = None) -> str:
            return await exits.enter_async_context(
                temporary_namespace(kube_api, prefix=prefix, labels=labels)
            )

        yield make
