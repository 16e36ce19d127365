"""pytest fixtures for the fake Key Vault (see :mod:`.fake_server`).

``keyvault_server`` (session) starts one fake vault; ``keyvault`` (function) resets it
and yields a :class:`KeyVaultHandle`. Both run on the session-scoped event loop, so
tests that use them must run on it too (the project's pytest configuration makes that
the default).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from azure.core.rest import HttpRequest
from azure.keyvault.certificates.aio import CertificateClient

from certauto_core.testing.keyvault.credential import StaticTokenCredential
from certauto_core.testing.keyvault.fake_server import FakeKeyVaultServer

__all__ = ["KeyVaultHandle", "keyvault", "keyvault_server"]


@dataclass
class KeyVaultHandle:
    """What the ``keyvault`` fixture gives a test: an empty vault and ways to reach it."""

    server: FakeKeyVaultServer
    credential: StaticTokenCredential = field(default_factory=StaticTokenCredential)

    @property
    def vault_url(self) -> str:
        return self.server.vault_url

    @property
    def ca_path(self) -> Path:
        """The CA to trust: pass it as ``connection_verify`` to an azure-core client."""
        return self.server.ca_path

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments a Key Vault client needs to talk to the fake."""
        return {"verify_challenge_resource": False, "connection_verify": str(self.ca_path)}

    @asynccontextmanager
    async def client(self, **kwargs: Any) -> AsyncIterator[CertificateClient]:
        """The official async ``CertificateClient`` for this vault (extra *kwargs* go to
        its constructor, e.g. ``retry_total=0``), closed on exit."""
        options = {**self.client_kwargs(), **kwargs}
        async with CertificateClient(self.vault_url, self.credential, **options) as client:
            yield client

    async def get_secret(self, name: str, version: str | None = None) -> dict[str, Any]:
        """The certificate's backing secret (``GET /secrets/{name}/{version}``) as JSON:
        ``value`` holds the key and chain in the import's ``contentType``."""
        path = f"/secrets/{name}/{version or ''}"
        async with self.client() as client:
            response = await client.send_request(HttpRequest("GET", path))
            response.raise_for_status()
            body: dict[str, Any] = json.loads(response.text())
            return body


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def keyvault_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[FakeKeyVaultServer]:
    """The hand-written fake Key Vault on 127.0.0.1 over HTTPS, one per test session."""
    server = FakeKeyVaultServer(tls_dir=tmp_path_factory.mktemp("fake-keyvault-tls"))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def keyvault(keyvault_server: FakeKeyVaultServer) -> AsyncIterator[KeyVaultHandle]:
    """An empty fake vault (state, call log, faults and delays reset) for one test.

    Fails the test at teardown if the fake itself raised (a bug in the fake).
    """
    keyvault_server.reset()
    yield KeyVaultHandle(server=keyvault_server)
    errors = list(keyvault_server.internal_errors)
    keyvault_server.faults.clear()
    if errors:
        pytest.fail(f"the fake Key Vault raised internally: {errors!r}")
