"""Fixtures for the aws-acm tests: moto behind the recording proxy, a real API server."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from certauto_acm.destination import AcmDestination
from kubernetes_asyncio import client

from certauto_core.engine.indexes import WatchedNamespaces, WatchedSecrets
from certauto_core.kube.client import KubeClient
from certauto_core.plugins.contract import BindingRef, PluginContext
from certauto_core.testing.aws import AcmHandle
from certauto_core.testing.certs import CertFactory, IssuedCert

pytest_plugins = ["certauto_core.testing.pytest_plugin"]


@pytest.fixture
def aws_env(acm: AcmHandle, monkeypatch: pytest.MonkeyPatch) -> AcmHandle:
    """The operator's own identity (the default credential chain) holds moto's dummy keys."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", acm.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", acm.secret_access_key)
    return acm


@pytest.fixture
def kube(kube_api: client.ApiClient) -> KubeClient:
    return KubeClient(kube_api)


@pytest.fixture
def plugin_context(kube: KubeClient) -> PluginContext:
    """What the core hands the factory; the ACM plugin reads Secrets through ``kube`` only."""
    return PluginContext(
        kube=kube,
        secrets=WatchedSecrets(),
        namespaces=WatchedNamespaces(),
        logger=logging.getLogger("certauto.plugins.aws-acm.test"),
    )


@pytest_asyncio.fixture(loop_scope="session")
async def destination(plugin_context: PluginContext) -> AsyncIterator[AcmDestination]:
    built = AcmDestination(plugin_context)
    try:
        yield built
    finally:
        await built.aclose()


@pytest.fixture(scope="session")
def certs() -> CertFactory:
    return CertFactory()


@pytest.fixture(scope="session")
def issuer(certs: CertFactory) -> IssuedCert:
    return certs.intermediate_ca(certs.root_ca())


@pytest.fixture
def binding(namespace: str) -> BindingRef:
    return BindingRef(namespace=namespace, name="web", uid=str(uuid.uuid4()), destination="acm")
