"""CertAuto's opt-in pytest plugin: a real control plane and cloud emulators.

Enable it in a root ``conftest.py``::

    pytest_plugins = ["certauto_core.testing.pytest_plugin"]

It needs the ``testing`` extra (``pip install certauto-core[testing]``) and a Go
toolchain the first time, to build etcd and kube-apiserver into the cache (see
``python -m certauto_core.testing.controlplane build``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from certauto_core.testing.aws import acm, acm_proxy, moto_server
from certauto_core.testing.certmanager.fixtures import cert_manager
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.keyvault import keyvault, keyvault_server
from certauto_core.testing.kube import (
    Identities,
    api_client_from_kubeconfig,
    apply_crds,
    cert_manager_crds,
    temporary_namespace,
)

__all__ = [
    "acm",
    "acm_proxy",
    "cert_manager",
    "cert_manager_crds_installed",
    "control_plane",
    "keyvault",
    "keyvault_server",
    "kube_api",
    "kube_identities",
    "moto_server",
    "namespace",
]


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver (RBAC on) on free 127.0.0.1 ports, for the whole session."""
    plane = ControlPlane().start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kube_api(control_plane: ControlPlane) -> AsyncIterator[client.ApiClient]:
    """A kubernetes-asyncio client acting as the cluster admin (``system:masters``)."""
    api = await api_client_from_kubeconfig(control_plane.kubeconfig_path)
    try:
        yield api
    finally:
        await api.close()


@pytest_asyncio.fixture(loop_scope="session")
async def namespace(kube_api: client.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace for one test."""
    async with temporary_namespace(kube_api) as name:
        yield name


@pytest_asyncio.fixture(loop_scope="session")
async def kube_identities(
    control_plane: ControlPlane, kube_api: client.ApiClient
) -> AsyncIterator[Identities]:
    """Make clients acting as restricted users or ServiceAccounts (RBAC tests)."""
    identities = Identities(control_plane, kube_api)
    try:
        yield identities
    finally:
        await identities.aclose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def cert_manager_crds_installed(kube_api: client.ApiClient) -> list[str]:
    """cert-manager's own CRDs (from its Go module's ``deploy/crds``), installed once."""
    documents = cert_manager_crds()
    await apply_crds(kube_api, documents)
    return [doc["metadata"]["name"] for doc in documents]
