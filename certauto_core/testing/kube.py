"""Kubernetes helpers for tests: clients for any identity, CRD installation, waiting.

Everything here talks to a real API server through kubernetes-asyncio; nothing
is mocked.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from certauto_core.testing.controlplane.process import ControlPlane

CERT_MANAGER_VERSION = "v1.21.2"
T = TypeVar("T")


async def api_client_from_kubeconfig(path: Path) -> client.ApiClient:
    """A kubernetes-asyncio client for the kubeconfig at ``path`` (caller closes it)."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(path), client_configuration=configuration)
    return client.ApiClient(configuration=configuration)


class Identities:
    """Clients that act as other identities than the admin, for RBAC tests.

    Every client made here is closed when the owning fixture ends.
    """

    def __init__(self, control_plane: ControlPlane, admin: client.ApiClient) -> None:
        self._control_plane = control_plane
        self._admin = admin
        self._stack = AsyncExitStack()
        self._dir = Path(tempfile.mkdtemp(prefix="certauto-ids-"))

    async def user(self, name: str, groups: tuple[str, ...] = ()) -> client.ApiClient:
        """A client authenticated by a client certificate for ``name`` in ``groups``."""
        path = self._control_plane.write_kubeconfig(
            self._dir / f"user-{name}.kubeconfig", name, groups
        )
        return await self._own(await api_client_from_kubeconfig(path))

    async def service_account(
        self, namespace: str, name: str, *, create: bool = True, expiration_seconds: int = 3600
    ) -> client.ApiClient:
        """A client with a ServiceAccount token from the TokenRequest API."""
        core = client.CoreV1Api(self._admin)
        if create:
            try:
                await core.create_namespaced_service_account(
                    namespace, {"metadata": {"name": name}}
                )
            except ApiException as error:
                if error.status != 409:
                    raise
        token = await self.service_account_token(namespace, name, expiration_seconds)
        path = self._control_plane.write_kubeconfig(
            self._dir / f"sa-{namespace}-{name}.kubeconfig", f"sa-{name}", token=token
        )
        return await self._own(await api_client_from_kubeconfig(path))

    async def service_account_token(
        self, namespace: str, name: str, expiration_seconds: int = 3600
    ) -> str:
        core = client.CoreV1Api(self._admin)
        request = await core.create_namespaced_service_account_token(
            name,
            namespace,
            {"spec": {"audiences": [], "expirationSeconds": expiration_seconds}},
        )
        token: str = request.status.token
        return token

    async def _own(self, api: client.ApiClient) -> client.ApiClient:
        self._stack.push_async_callback(api.close)
        return api

    async def aclose(self) -> None:
        await self._stack.aclose()


async def apply_crds(api: client.ApiClient, documents: Iterable[Mapping[str, Any]]) -> None:
    """Create or replace each CRD, then wait until the API server serves it."""
    extensions = client.ApiextensionsV1Api(api)
    names = []
    for document in documents:
        name = document["metadata"]["name"]
        names.append(name)
        try:
            await extensions.create_custom_resource_definition(dict(document))
        except ApiException as error:
            if error.status != 409:
                raise
            current = await extensions.read_custom_resource_definition(name)
            body = dict(document)
            body["metadata"] = dict(body["metadata"])
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            await extensions.replace_custom_resource_definition(name, body)
    for name in names:
        await wait_for(
            functools.partial(_established, extensions, name),
            timeout=30,
            what=f"CRD {name} to be Established",
        )


async def _established(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    crd = await extensions.read_custom_resource_definition(name)
    conditions = crd.status.conditions or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def cert_manager_crd_dir(version: str = CERT_MANAGER_VERSION) -> Path:
    """``deploy/crds`` of cert-manager's Go module, fetched with ``go mod download``."""
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/cert-manager/cert-manager@{version}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tempfile.gettempdir(),
        env=dict(os.environ, GOFLAGS="-mod=mod", GOWORK="off"),
    )
    if done.returncode != 0:
        raise RuntimeError(f"go mod download of cert-manager {version} failed: {done.stderr}")
    return Path(json.loads(done.stdout)["Dir"]) / "deploy" / "crds"


def cert_manager_crds(version: str = CERT_MANAGER_VERSION) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted(cert_manager_crd_dir(version).glob("*.yaml")):
        documents += load_yaml_documents(path)
    return [doc for doc in documents if doc.get("kind") == "CustomResourceDefinition"]


async def wait_for(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 20.0,
    interval: float = 0.1,
    what: str = "a condition",
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: T | None = None
    while True:
        last = await check()
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


@asynccontextmanager
async def temporary_namespace(
    api: client.ApiClient, prefix: str = "t", labels: Mapping[str, str] | None = None
) -> AsyncIterator[str]:
    """Create a uniquely named namespace and delete it afterwards.

    The test control plane runs no kube-controller-manager, so a deleted
    namespace stays Terminating with its content; names never repeat.
    """
    core = client.CoreV1Api(api)
    created = await core.create_namespace(
        {"metadata": {"generateName": f"{prefix}-", "labels": dict(labels or {})}}
    )
    name: str = created.metadata.name
    try:
        yield name
    finally:
        try:
            await core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise
