"""End to end: the real operator reconciles CertificateBindings into the fake Key Vault.

A binding in the test API server, the operator running in-process with this plugin
(registered with test settings: the fake's credential and CA), the status read back.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy
from certauto_akv import AkvSettings, CredentialRequest
from certauto_akv.plugin import destination_type
from certauto_akv.tags import BINDING_TAG, DESTINATION_TAG, FINGERPRINT_TAG, MANAGED_BY_TAG
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from certauto_core.plugins.contract import DestinationType
from certauto_core.plugins.hookspecs import hookimpl
from certauto_core.plugins.manager import PluginManager
from certauto_core.testing.certs import CertFactory, IssuedCert
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.keyvault import KeyVaultHandle
from certauto_core.testing.operator import OperatorHarness, running_operator

CERTS = CertFactory()
ROOT = CERTS.root_ca()
INTERMEDIATE = CERTS.intermediate_ca(ROOT)


@dataclass(frozen=True)
class Exchange:
    method: str
    url: str
    status: int
    sent: float
    answered: float


@dataclass
class RequestClock(SansIOHTTPPolicy[Any, Any]):
    """An azure-core policy recording when each request left and its answer came back."""

    exchanges: list[Exchange] = field(default_factory=list)

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.context["certauto_sent"] = time.monotonic()

    def on_response(
        self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]
    ) -> None:
        http = request.http_request
        self.exchanges.append(
            Exchange(
                http.method,
                http.url,
                response.http_response.status_code,
                request.context["certauto_sent"],
                time.monotonic(),
            )
        )


class _Plugin:
    def __init__(self, registered: DestinationType) -> None:
        self._registered = registered

    @hookimpl
    def certauto_destination_types(self) -> list[DestinationType]:
        return [self._registered]


@pytest.fixture
def clock() -> RequestClock:
    return RequestClock()


@pytest_asyncio.fixture(loop_scope="session")
async def harness(
    control_plane: ControlPlane, keyvault: KeyVaultHandle, clock: RequestClock
) -> AsyncIterator[OperatorHarness]:
    def credential(request: CredentialRequest) -> AsyncTokenCredential:
        return keyvault.credential

    settings = AkvSettings(
        credential_factory=credential,
        client_options={**keyvault.client_kwargs(), "per_call_policies": [clock]},
        polling_interval=0.05,
        operation_timeout=10.0,
    )
    plugins = PluginManager()
    plugins.register(_Plugin(destination_type(settings)), name="akv-under-test")
    async with running_operator(control_plane, plugins=plugins) as running:
        yield running


def leaf(name: str = "web.example.test") -> IssuedCert:
    return CERTS.leaf(INTERMEDIATE, [name])


def spec(**config: Any) -> dict[str, Any]:
    return {
        "sourceSecretRef": {"name": "web-tls"},
        "destinations": [{"name": "kv", "type": "azure-key-vault", "config": config}],
        "syncPolicy": {"retryInterval": "1s", "deletionPolicy": "Delete"},
    }


def imports(keyvault: KeyVaultHandle, name: str) -> int:
    return keyvault.server.count("POST", rf"/certificates/{name}/import", include_injected=False)


async def test_a_binding_syncs_to_key_vault_with_version_tags_and_full_chain(
    harness: OperatorHarness, keyvault: KeyVaultHandle, namespace: str
) -> None:
    source = leaf()
    await harness.put_tls_secret(namespace, "web-tls", source.secret_data(include_root=True))
    await harness.create_binding(
        namespace, "web", spec(vaultURL=keyvault.vault_url, certificateName="web")
    )

    entry = await harness.wait_destination(
        namespace, "web", "kv", "Synced", fingerprint=source.fingerprint
    )

    async with keyvault.client() as client:
        stored = await client.get_certificate("web")
    assert stored.properties is not None
    version = stored.properties.version
    assert entry["externalID"] == f"{keyvault.vault_url}/certificates/web/{version}"
    tags = stored.properties.tags or {}
    assert tags[MANAGED_BY_TAG] == "certauto"
    assert tags[BINDING_TAG] == f"{namespace}/web"
    assert tags[DESTINATION_TAG] == "kv"
    assert tags[FINGERPRINT_TAG] == source.fingerprint
    assert hashlib.sha256(bytes(stored.cer or b"")).hexdigest() == source.fingerprint
    secret = await keyvault.get_secret("web", version)
    _, cert, chain = pkcs12.load_key_and_certificates(base64.b64decode(secret["value"]), None)
    assert cert is not None
    assert cert.public_bytes(Encoding.DER) == source.certificate.public_bytes(Encoding.DER)
    assert chain == [INTERMEDIATE.certificate, ROOT.certificate]

    # Renewal: exactly one new version; a forced resync then imports nothing.
    renewed = leaf()
    await harness.put_tls_secret(namespace, "web-tls", renewed.secret_data())
    entry = await harness.wait_destination(
        namespace, "web", "kv", "Synced", fingerprint=renewed.fingerprint
    )
    assert imports(keyvault, "web") == 2
    assert entry["externalID"] != f"{keyvault.vault_url}/certificates/web/{version}"
    await harness.resync()
    await harness.resync()
    assert imports(keyvault, "web") == 2
    writes = [c for c in keyvault.server.calls if c.method != "GET" and c.authorized]
    assert len(writes) == 2

    # deletionPolicy Delete: the certificate goes with the binding.
    await harness.delete_binding(namespace, "web")
    await harness.wait_gone(namespace, "web")
    assert keyvault.server.state_of("web") == "deleted"


async def test_throttled_imports_sync_after_waiting_retry_after(
    harness: OperatorHarness, keyvault: KeyVaultHandle, namespace: str, clock: RequestClock
) -> None:
    keyvault.server.fail_next(
        2, status=429, retry_after_seconds=2, method="POST", path_regex=r".*/import"
    )
    source = leaf()
    await harness.put_tls_secret(namespace, "web-tls", source.secret_data())
    await harness.create_binding(
        namespace, "web", spec(vaultURL=keyvault.vault_url, certificateName="throttled")
    )

    await harness.wait_destination(
        namespace, "web", "kv", "Synced", fingerprint=source.fingerprint, timeout=60
    )

    attempts = [e for e in clock.exchanges if e.method == "POST" and "/import" in e.url]
    assert [e.status for e in attempts] == [429, 429, 200]
    assert imports(keyvault, "throttled") == 1
    for throttled, retry in itertools.pairwise(attempts):
        # Retry-After counts from the answer; allow the clock's own jitter only.
        assert retry.sent - throttled.answered >= 2.0 - 0.01


async def test_soft_deleted_certificate_recover_and_fail(
    harness: OperatorHarness, keyvault: KeyVaultHandle, namespace: str
) -> None:
    source = leaf()
    await harness.put_tls_secret(namespace, "web-tls", source.secret_data())
    await harness.create_binding(
        namespace, "web", spec(vaultURL=keyvault.vault_url, certificateName="recoverable")
    )
    await harness.wait_destination(namespace, "web", "kv", "Synced")
    async with keyvault.client() as client:
        await client.delete_certificate("recoverable", _polling_interval=0.05)

    # Recover (the default): the next reconcile brings it back.
    await harness.resync()
    await harness.wait_destination(namespace, "web", "kv", "Synced", fingerprint=source.fingerprint)
    assert keyvault.server.state_of("recoverable") == "active"
    assert imports(keyvault, "recoverable") == 1

    # Fail: reported, left deleted.
    async with keyvault.client() as client:
        await client.delete_certificate("recoverable", _polling_interval=0.05)
    await harness.patch_spec(
        namespace,
        "web",
        spec(vaultURL=keyvault.vault_url, certificateName="recoverable", onSoftDeleted="Fail"),
    )
    entry = await harness.wait_destination(namespace, "web", "kv", "Failed")
    assert "soft-deleted" in entry["message"]
    assert keyvault.server.state_of("recoverable") == "deleted"
