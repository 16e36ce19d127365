"""pytest fixtures for cert-manager's real controller on the test control plane.

A pytest plugin on top of :mod:`certauto_core.testing.pytest_plugin` (which must be
loaded too, for ``control_plane``, ``kube_api`` and ``cert_manager_crds_installed``)::

    pytest_plugins = ["certauto_core.testing.certmanager.fixtures"]

The controller binary is built on first use (minutes, cold; see
``python -m certauto_core.testing.certmanager build``, which CI runs beforehand so
no test spends its timeout on a build).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from certauto_core.testing.certmanager.process import (
    CLUSTER_RESOURCE_NAMESPACE,
    CertManagerController,
)
from certauto_core.testing.controlplane.process import ControlPlane

__all__ = ["cert_manager"]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def cert_manager(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    cert_manager_crds_installed: list[str],
) -> AsyncIterator[CertManagerController]:
    """cert-manager's controller (SelfSigned and CA issuers) running as the cluster admin.

    Its ``cluster_resource_namespace`` (``cert-manager``) exists: put the key pairs of
    CA ClusterIssuers there.
    """
    try:
        await client.CoreV1Api(kube_api).create_namespace(
            {"metadata": {"name": CLUSTER_RESOURCE_NAMESPACE}}
        )
    except ApiException as error:
        if error.status != 409:
            raise
    controller = CertManagerController(control_plane.kubeconfig_path)
    await asyncio.to_thread(controller.start)
    try:
        yield controller
    finally:
        await asyncio.to_thread(controller.stop)
