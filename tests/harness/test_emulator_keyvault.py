"""The fake Key Vault is faithful enough: the official aio CertificateClient works on it."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ssl
import time
from dataclasses import dataclass

import aiohttp
import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.rest import HttpRequest
from azure.keyvault.certificates import (
    CertificateContentType,
    CertificatePolicy,
    CertificateProperties,
    DeletedCertificate,
    KeyVaultCertificate,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from certauto_core.testing.keyvault.fake_server import FakeKeyVaultServer
from certauto_core.testing.keyvault.fixtures import KeyVaultHandle

FAST = {"_polling_interval": 0.05}


def props(cert: KeyVaultCertificate | DeletedCertificate) -> CertificateProperties:
    assert cert.properties is not None
    return cert.properties


def cer(cert: KeyVaultCertificate | DeletedCertificate) -> bytes:
    assert cert.cer is not None
    return bytes(cert.cer)


@dataclass(frozen=True)
class Material:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    leaf: x509.Certificate
    chain: list[x509.Certificate]

    @property
    def der(self) -> bytes:
        return self.leaf.public_bytes(serialization.Encoding.DER)

    @property
    def sha1(self) -> bytes:
        return hashlib.sha1(self.der, usedforsecurity=False).digest()

    def pfx(self, password: bytes | None = None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return pkcs12.serialize_key_and_certificates(
            b"certauto", self.key, self.leaf, self.chain or None, encryption
        )

    def pem(
        self, key_format: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8
    ) -> bytes:
        key = self.key.private_bytes(
            serialization.Encoding.PEM, key_format, serialization.NoEncryption()
        )
        certs = b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in [self.leaf, *self.chain]
        )
        return key + certs


def _issue(common_name: str, *, rsa_key: bool = False) -> Material:
    """A leaf for *common_name* issued by a fresh CA; the chain holds the CA."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "harness test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if rsa_key
        else ec.generate_private_key(ec.SECP256R1())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Material(key=key, leaf=leaf, chain=[ca])


@pytest.fixture(scope="module")
def material() -> Material:
    return _issue("app.example.test", rsa_key=True)


@pytest.fixture(scope="module")
def renewed() -> Material:
    return _issue("app.example.test")


async def test_import_pkcs12_and_get_it_back(keyvault: KeyVaultHandle, material: Material) -> None:
    async with keyvault.client() as client:
        imported = await client.import_certificate("app-cert", material.pfx())
        assert imported.name == "app-cert"
        assert len(props(imported).version or "") == 32
        assert props(imported).x509_thumbprint == material.sha1
        assert cer(imported) == material.der
        assert imported.policy is not None
        assert imported.policy.content_type == CertificateContentType.pkcs12
        assert imported.policy.key_type == "RSA"
        assert imported.policy.key_size == 2048
        assert imported.policy.subject == "CN=app.example.test"
        assert props(imported).enabled is True
        assert props(imported).recovery_level == "Recoverable+Purgeable"
        assert props(imported).expires_on == material.leaf.not_valid_after_utc.replace(
            microsecond=0
        )

        got = await client.get_certificate("app-cert")
        assert got.id == imported.id
        assert cer(got) == material.der
        assert props(got).x509_thumbprint == material.sha1
        assert got.secret_id == f"{keyvault.vault_url}/secrets/app-cert/{props(imported).version}"

    # The client ran Key Vault's challenge flow against the fake.
    assert keyvault.credential.requests
    assert keyvault.credential.requests[-1].scopes == ("https://vault.azure.net/.default",)
    assert keyvault.credential.requests[-1].tenant_id == keyvault.server.tenant_id
    assert keyvault.server.count("POST", r"/certificates/app-cert/import") == 1
    assert keyvault.server.count("GET", r"/certificates/app-cert/?") == 1
    assert all(call.api_version for call in keyvault.server.calls)


async def test_pfx_with_password(keyvault: KeyVaultHandle, material: Material) -> None:
    async with keyvault.client() as client:
        imported = await client.import_certificate(
            "with-password", material.pfx(b"s3cret"), password="s3cret"
        )
        assert cer(imported) == material.der
        with pytest.raises(HttpResponseError) as caught:
            await client.import_certificate(
                "with-password", material.pfx(b"s3cret"), password="wrong"
            )
        assert caught.value.status_code == 400


async def test_each_import_is_a_new_version(
    keyvault: KeyVaultHandle, material: Material, renewed: Material
) -> None:
    async with keyvault.client() as client:
        first = await client.import_certificate("rotating", material.pfx())
        second = await client.import_certificate("rotating", renewed.pfx())
        assert props(first).version != props(second).version

        versions = [v async for v in client.list_properties_of_certificate_versions("rotating")]
        assert len(versions) == 2
        assert {v.version for v in versions} == {
            props(first).version,
            props(second).version,
        }
        latest = await client.get_certificate("rotating")
        assert props(latest).version == props(second).version
        assert cer(latest) == renewed.der
        assert latest.policy is not None
        assert latest.policy.key_type == "EC"

        old = await client.get_certificate_version("rotating", str(props(first).version))
        assert cer(old) == material.der

        with pytest.raises(ResourceNotFoundError):
            await client.get_certificate_version("rotating", "0" * 32)


async def test_paging_follows_next_link(keyvault: KeyVaultHandle, material: Material) -> None:
    async with keyvault.client() as client:
        for _ in range(5):
            await client.import_certificate("paged", material.pfx())
        versions = [
            v
            async for v in client.list_properties_of_certificate_versions("paged", max_page_size=2)
        ]
        assert len(versions) == 5
        listed = [c async for c in client.list_properties_of_certificates()]
        assert [c.name for c in listed] == ["paged"]
    assert keyvault.server.count("GET", r"/certificates/paged/versions") == 3


async def test_tags_round_trip(keyvault: KeyVaultHandle, material: Material) -> None:
    async with keyvault.client() as client:
        imported = await client.import_certificate(
            "tagged", material.pfx(), tags={"managed-by": "certauto", "binding": "ns/name"}
        )
        assert props(imported).tags == {"managed-by": "certauto", "binding": "ns/name"}
        got = await client.get_certificate("tagged")
        assert props(got).tags == {"managed-by": "certauto", "binding": "ns/name"}

        updated = await client.update_certificate_properties(
            "tagged", tags={"managed-by": "certauto", "fingerprint": "abc"}, enabled=False
        )
        assert props(updated).tags == {"managed-by": "certauto", "fingerprint": "abc"}
        assert props(updated).enabled is False
        got = await client.get_certificate("tagged")
        assert props(got).tags == {"managed-by": "certauto", "fingerprint": "abc"}
        assert props(got).enabled is False

        with pytest.raises(HttpResponseError) as caught:
            await client.import_certificate(
                "tagged", material.pfx(), tags={f"k{i}": "v" for i in range(16)}
            )
        assert caught.value.status_code == 400


async def test_delete_get_deleted_recover(keyvault: KeyVaultHandle, material: Material) -> None:
    keyvault.server.recover_delay_seconds = 0.3
    async with keyvault.client() as client:
        imported = await client.import_certificate("doomed", material.pfx())

        deleted = await client.delete_certificate("doomed", **FAST)
        assert deleted.recovery_id == f"{keyvault.vault_url}/deletedcertificates/doomed"
        assert deleted.deleted_on is not None
        assert deleted.scheduled_purge_date is not None
        assert deleted.scheduled_purge_date - deleted.deleted_on == dt.timedelta(days=90)
        assert keyvault.server.state_of("doomed") == "deleted"

        with pytest.raises(ResourceNotFoundError) as caught:
            await client.get_certificate("doomed")
        assert caught.value.error is not None
        assert caught.value.error.code == "CertificateNotFound"

        got_deleted = await client.get_deleted_certificate("doomed")
        assert props(got_deleted).x509_thumbprint == material.sha1
        listed = [d async for d in client.list_deleted_certificates()]
        assert [d.name for d in listed] == ["doomed"]

        before = len(keyvault.server.calls)
        recovered = await client.recover_deleted_certificate("doomed", _polling_interval=0.1)
        assert recovered.id == imported.id
        polls = [
            call
            for call in keyvault.server.calls[before:]
            if call.method == "GET" and call.path == "/certificates/doomed/"
        ]
        # The poller had to wait for the recovery: 404s first, then a 200.
        assert len(polls) >= 2
        assert {call.status for call in polls[:-1]} == {404}
        assert polls[-1].status == 200

        got = await client.get_certificate("doomed")
        assert cer(got) == material.der
        assert [d async for d in client.list_deleted_certificates()] == []


async def test_delete_lag_makes_the_delete_poller_poll(
    keyvault: KeyVaultHandle, material: Material
) -> None:
    keyvault.server.delete_delay_seconds = 0.2
    async with keyvault.client() as client:
        await client.import_certificate("slow-delete", material.pfx())
        await client.delete_certificate("slow-delete", **FAST)
    statuses = [
        call.status
        for call in keyvault.server.calls
        if call.method == "GET" and call.path == "/deletedcertificates/slow-delete"
    ]
    assert statuses[0] == 404
    assert statuses[-1] == 200


async def test_soft_deleted_name_conflicts_until_purged(
    keyvault: KeyVaultHandle, material: Material
) -> None:
    async with keyvault.client() as client:
        await client.import_certificate("reused", material.pfx())
        await client.delete_certificate("reused", **FAST)

        with pytest.raises(ResourceExistsError) as caught:
            await client.import_certificate("reused", material.pfx())
        assert caught.value.status_code == 409
        assert caught.value.error is not None
        assert caught.value.error.code == "Conflict"
        assert "deleted but recoverable" in str(caught.value.error.message)

        await client.purge_deleted_certificate("reused")
        assert keyvault.server.state_of("reused") is None
        with pytest.raises(ResourceNotFoundError):
            await client.get_deleted_certificate("reused")

        again = await client.import_certificate("reused", material.pfx())
        versions = [v async for v in client.list_properties_of_certificate_versions("reused")]
        assert [v.version for v in versions] == [props(again).version]


async def test_purge_lag_conflicts(keyvault: KeyVaultHandle, material: Material) -> None:
    keyvault.server.purge_delay_seconds = 0.2
    async with keyvault.client() as client:
        await client.import_certificate("purging", material.pfx())
        await client.delete_certificate("purging", **FAST)
        await client.purge_deleted_certificate("purging")
        with pytest.raises(ResourceExistsError, match="being deleted"):
            await client.import_certificate("purging", material.pfx())
        await asyncio.sleep(0.25)
        await client.import_certificate("purging", material.pfx())


async def test_throttling_honours_retry_after(keyvault: KeyVaultHandle, material: Material) -> None:
    keyvault.server.fail_next(
        1, status=429, retry_after_seconds=1, method="POST", path_regex=r".*/import"
    )
    async with keyvault.client() as client:
        started = time.monotonic()
        imported = await client.import_certificate("throttled", material.pfx())
        elapsed = time.monotonic() - started
    assert cer(imported) == material.der
    assert elapsed >= 1.0
    imports = [c for c in keyvault.server.calls if c.path == "/certificates/throttled/import"]
    assert [(c.status, c.injected) for c in imports if c.authorized] == [(429, True), (200, False)]
    assert keyvault.server.count("POST", r"/certificates/throttled/import") == 2
    assert (
        keyvault.server.count("POST", r"/certificates/throttled/import", include_injected=False)
        == 1
    )
    assert keyvault.server.faults.pending == 0


async def test_throttling_error_reaches_caller_without_retries(
    keyvault: KeyVaultHandle, material: Material
) -> None:
    keyvault.server.fail_next(1, status=429, retry_after_seconds=7)
    async with keyvault.client(retry_total=0) as client:
        with pytest.raises(HttpResponseError) as caught:
            await client.import_certificate("throttled", material.pfx())
    assert caught.value.status_code == 429
    assert caught.value.error is not None
    assert caught.value.error.code == "Throttled"
    response = caught.value.response
    assert response is not None
    assert getattr(response, "headers", {}).get("Retry-After") == "7"


async def test_service_unavailable_is_retried(keyvault: KeyVaultHandle, material: Material) -> None:
    keyvault.server.fail_next(2, status=503, retry_after_seconds=None, method="GET")
    async with keyvault.client() as client:
        await client.import_certificate("flaky", material.pfx())
        got = await client.get_certificate("flaky")
    assert cer(got) == material.der
    assert [c.status for c in keyvault.server.calls if c.method == "GET"] == [503, 503, 200]


async def test_secret_holds_the_key_pkcs12(keyvault: KeyVaultHandle, material: Material) -> None:
    async with keyvault.client() as client:
        imported = await client.import_certificate("with-key", material.pfx(b"pw"), password="pw")
    secret = await keyvault.get_secret("with-key", props(imported).version)
    assert secret["contentType"] == "application/x-pkcs12"
    assert secret["kid"] == imported.key_id
    key, leaf, extra = pkcs12.load_key_and_certificates(base64.b64decode(secret["value"]), None)
    assert leaf == material.leaf
    assert extra == material.chain
    assert key is not None
    assert key.public_key() == material.key.public_key()
    latest = await keyvault.get_secret("with-key")
    assert latest["id"] == secret["id"]


async def test_pem_import_and_secret(keyvault: KeyVaultHandle, renewed: Material) -> None:
    policy = CertificatePolicy(issuer_name="Unknown", content_type=CertificateContentType.pem)
    async with keyvault.client() as client:
        imported = await client.import_certificate("pem-cert", renewed.pem(), policy=policy)
        assert cer(imported) == renewed.der
        assert imported.policy is not None
        assert imported.policy.content_type == CertificateContentType.pem
        assert imported.policy.key_curve_name == "P-256"

        # Key Vault accepts only PKCS#8 keys.
        with pytest.raises(HttpResponseError) as caught:
            await client.import_certificate(
                "pem-cert",
                renewed.pem(serialization.PrivateFormat.TraditionalOpenSSL),
                policy=policy,
            )
        assert caught.value.status_code == 400

    secret = await keyvault.get_secret("pem-cert")
    assert secret["contentType"] == "application/x-pem-file"
    value = secret["value"].encode()
    assert value.startswith(b"-----BEGIN PRIVATE KEY-----")
    certs = x509.load_pem_x509_certificates(value)
    assert certs == [renewed.leaf, *renewed.chain]
    key = serialization.load_pem_private_key(value, None)
    assert key.public_key() == renewed.key.public_key()


async def test_disabled_secret_is_forbidden(keyvault: KeyVaultHandle, material: Material) -> None:
    async with keyvault.client() as client:
        await client.import_certificate("off", material.pfx(), enabled=False)
        assert props(await client.get_certificate("off")).enabled is False
    with pytest.raises(HttpResponseError) as caught:
        await keyvault.get_secret("off")
    assert caught.value.status_code == 403


async def test_malformed_and_invalid_names_are_rejected(
    keyvault: KeyVaultHandle, material: Material
) -> None:
    async with keyvault.client() as client:
        with pytest.raises(HttpResponseError) as caught:
            await client.import_certificate("broken", b"not a pfx at all")
        assert caught.value.status_code == 400
        assert caught.value.error is not None
        assert caught.value.error.code == "BadParameter"

        # A certificate without its key.
        with pytest.raises(HttpResponseError) as caught:
            await client.import_certificate(
                "keyless",
                material.leaf.public_bytes(serialization.Encoding.PEM),
                policy=CertificatePolicy(
                    issuer_name="Unknown", content_type=CertificateContentType.pem
                ),
            )
        assert caught.value.status_code == 400

        for bad in ["under_score", "x" * 128]:
            with pytest.raises(HttpResponseError) as caught:
                await client.import_certificate(bad, material.pfx())
            assert caught.value.status_code == 400
            assert caught.value.error is not None
            assert caught.value.error.code == "BadParameter"

        ok = await client.import_certificate("x" * 127, material.pfx())
        assert ok.name == "x" * 127
        with pytest.raises(ResourceNotFoundError):
            await client.get_certificate("never-imported")
        with pytest.raises(ResourceNotFoundError):
            await client.delete_certificate("never-imported", **FAST)


async def test_challenge_on_unauthenticated_request(keyvault: KeyVaultHandle) -> None:
    context = await asyncio.to_thread(ssl.create_default_context, cafile=str(keyvault.ca_path))
    url = f"{keyvault.vault_url}/certificates/anything?api-version=7.4"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=context) as response:
            assert response.status == 401
            challenge = response.headers["WWW-Authenticate"]
            body = await response.json()
        async with session.get(
            f"{keyvault.vault_url}/certificates/anything",
            ssl=context,
            headers={"Authorization": "Bearer whatever"},
        ) as missing_version:
            assert missing_version.status == 400
        async with session.get(
            f"{keyvault.vault_url}/certificates/contacts?api-version=7.4",
            ssl=context,
            headers={"Authorization": "Bearer whatever"},
        ) as unimplemented:
            assert unimplemented.status == 501
    assert challenge == (
        f'Bearer authorization="https://login.microsoftonline.com/{keyvault.server.tenant_id}", '
        'resource="https://vault.azure.net"'
    )
    assert body["error"]["code"] == "Unauthorized"
    assert keyvault.server.count(include_unauthorized=True) == 3
    assert keyvault.server.count() == 2


async def test_each_test_starts_with_an_empty_vault(keyvault: KeyVaultHandle) -> None:
    assert keyvault.server.calls == []
    async with keyvault.client() as client:
        assert [c async for c in client.list_properties_of_certificates()] == []
        assert [c async for c in client.list_deleted_certificates()] == []


async def test_older_api_version_and_raw_pem_value(
    keyvault: KeyVaultHandle, renewed: Material
) -> None:
    # The SDK base64-encodes PEM; the REST API (and az CLI) also take the PEM text as is.
    body = {
        "value": renewed.pem().decode(),
        "policy": {"secret_props": {"contentType": "application/x-pem-file"}},
        "tags": {"via": "rest"},
    }
    async with keyvault.client(api_version="7.4") as client:
        response = await client.send_request(
            HttpRequest("POST", "/certificates/raw-pem/import", json=body)
        )
        assert response.status_code == 200
        assert base64.b64decode(response.json()["cer"]) == renewed.der
        got = await client.get_certificate("raw-pem")
        assert props(got).tags == {"via": "rest"}
    assert {c.api_version for c in keyvault.server.calls} == {"7.4"}


async def test_standalone_server_cleans_up() -> None:
    async with FakeKeyVaultServer(recover_delay_seconds=0) as server:
        ca_path = server.ca_path
        assert await asyncio.to_thread(ca_path.exists)
        context = await asyncio.to_thread(ssl.create_default_context, cafile=str(ca_path))
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"https://localhost:{server.port}/certificates", ssl=context) as resp,
        ):
            assert resp.status == 401  # the certificate is valid for DNS:localhost too
    assert not await asyncio.to_thread(ca_path.exists)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"https://127.0.0.1:{server.port}/", ssl=context)
