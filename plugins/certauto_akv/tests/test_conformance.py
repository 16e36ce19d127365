"""The azure-key-vault destination held to the plugin contract by the core's conformance kit.

The vault is the harness's fake Key Vault; writes are counted from its request log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

import pytest
from azure.core.credentials_async import AsyncTokenCredential
from certauto_akv import AkvConfig, AkvSettings, CredentialRequest
from certauto_akv.plugin import destination_type as akv_destination_type
from cryptography.hazmat.primitives.asymmetric import rsa

from certauto_core.certs.material import CertificateMaterial
from certauto_core.plugins.contract import DestinationType
from certauto_core.testing.certs import CertFactory, IssuedCert, KeyType
from certauto_core.testing.conformance import (
    BadConfig,
    ConformanceCase,
    DestinationConformance,
    MaterialRecipe,
)
from certauto_core.testing.keyvault import KeyVaultHandle

VAULT = "https://prod-certs.vault.azure.net"


def _rsa_1024(certs: CertFactory, issuer: IssuedCert) -> CertificateMaterial:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    return certs.leaf(issuer, ["weak.example.test"], key=key).material()


def _handle(case: ConformanceCase) -> KeyVaultHandle:
    handle: KeyVaultHandle = case.request.getfixturevalue("keyvault")
    return handle


def _name(case: ConformanceCase) -> str:
    config = case.config
    assert isinstance(config, AkvConfig)
    return config.name_for(case.binding)


class TestAzureKeyVaultConformance(DestinationConformance):
    exact_write_count = True
    stable_external_id = False  # every import is a new version: the versioned id changes
    supported_key_types: ClassVar[tuple[KeyType, ...]] = (
        KeyType.RSA_2048,
        KeyType.RSA_3072,
        KeyType.RSA_4096,
        KeyType.ECDSA_P256,
        KeyType.ECDSA_P384,
        KeyType.ECDSA_P521,
    )
    unsupported_materials: ClassVar[Mapping[str, MaterialRecipe]] = {"rsa-1024": _rsa_1024}
    bad_configs: ClassVar[Mapping[str, BadConfig]] = {
        "no-vault": BadConfig({}, field="config.vaultURL"),
        "http-vault": BadConfig({"vaultURL": "http://x.vault.azure.net"}, field="config.vaultURL"),
        "dotted-name": BadConfig(
            {"vaultURL": VAULT, "certificateName": "web.example.com"},
            field="config.certificateName",
        ),
        "long-name": BadConfig(
            {"vaultURL": VAULT, "certificateName": "a" * 128}, field="config.certificateName"
        ),
        "bad-soft-delete-policy": BadConfig(
            {"vaultURL": VAULT, "onSoftDeleted": "Ignore"}, field="config.onSoftDeleted"
        ),
        "reserved-tag": BadConfig(
            {"vaultURL": VAULT, "tags": {"certauto-fingerprint": "x"}}, field="config.tags"
        ),
        "secret-type-without-ref": BadConfig(
            {"vaultURL": VAULT, "credentials": {"type": "ClientSecret"}},
            field="config.credentials",
        ),
        "typo": BadConfig({"vaultURL": VAULT, "certName": "x"}, field="config.certName"),
    }

    @pytest.fixture
    def destination_type(self, keyvault: KeyVaultHandle) -> DestinationType:
        def credential(request: CredentialRequest) -> AsyncTokenCredential:
            return keyvault.credential

        return akv_destination_type(
            AkvSettings(
                credential_factory=credential,
                client_options=keyvault.client_kwargs(),
                polling_interval=0.05,
                operation_timeout=10.0,
            )
        )

    async def make_config(self, case: ConformanceCase) -> Mapping[str, Any]:
        # No certificateName: the default derived from the binding is part of the test.
        return {"vaultURL": _handle(case).vault_url, "tags": {"suite": "conformance"}}

    async def tamper(self, case: ConformanceCase) -> None:
        """Someone deletes the certificate in the portal: it is soft-deleted (and recovered)."""
        async with _handle(case).client() as client:
            await client.delete_certificate(_name(case), _polling_interval=0.05)

    async def count_writes(self, case: ConformanceCase) -> int:
        server = _handle(case).server
        return sum(
            server.count(method, include_injected=False) for method in ("POST", "PATCH", "DELETE")
        )

    async def plant_foreign(self, case: ConformanceCase) -> Callable[[], Awaitable[object]]:
        """Another team's certificate, untagged, under the name the entry would use."""
        handle, name = _handle(case), _name(case)
        other = case.certs.leaf(case.root, ["other.example.test"]).material()
        async with handle.client() as client:
            await client.import_certificate(name, other.to_pkcs12(), tags={"team": "theirs"})

        async def read() -> object:
            async with handle.client() as client:
                current = await client.get_certificate(name)
                versions = [
                    str(v.version)
                    async for v in client.list_properties_of_certificate_versions(name)
                ]
            assert current.properties is not None
            return (bytes(current.cer or b""), current.properties.tags, sorted(versions))

        return read
