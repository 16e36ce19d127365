"""Fixtures of the azure-key-vault plugin's tests.

The vault is the harness's hand-written fake Key Vault (``keyvault`` fixture), driven
by the official async ``CertificateClient``. The destination gets the fake's test
credential and CA through :class:`~certauto_akv.AkvSettings`, the way any embedder
would: the user-facing config has no test-only option.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from azure.core.credentials_async import AsyncTokenCredential
from certauto_akv import AkvDestination, AkvSettings, CredentialRequest
from kubernetes_asyncio import client

from certauto_core.kube.client import KubeClient
from certauto_core.plugins.contract import PluginContext
from certauto_core.testing.keyvault import KeyVaultHandle
from certauto_core.testing.plugin_context import live_plugin_context

pytest_plugins = ["certauto_core.testing.pytest_plugin"]


@pytest.fixture
def credential_requests() -> list[CredentialRequest]:
    """Every request the test credential factory received."""
    return []


@pytest.fixture
def akv_settings(
    keyvault: KeyVaultHandle, credential_requests: list[CredentialRequest]
) -> AkvSettings:
    """Settings pointing the destination at the fake vault, with fast polling."""

    def factory(request: CredentialRequest) -> AsyncTokenCredential:
        credential_requests.append(request)
        return keyvault.credential

    return AkvSettings(
        credential_factory=factory,
        client_options=keyvault.client_kwargs(),
        polling_interval=0.05,
        operation_timeout=10.0,
        request_timeout=10.0,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def plugin_context(kube_api: client.ApiClient) -> AsyncIterator[PluginContext]:
    """The context the factory gets in production: the core's watches over the test cluster."""
    async with live_plugin_context(KubeClient(kube_api)) as context:
        yield context


@pytest_asyncio.fixture(loop_scope="session")
async def destination(
    plugin_context: PluginContext, akv_settings: AkvSettings
) -> AsyncIterator[AkvDestination]:
    """An azure-key-vault destination talking to the fake vault, closed after the test."""
    made = AkvDestination(plugin_context, akv_settings)
    try:
        yield made
    finally:
        await made.aclose()
