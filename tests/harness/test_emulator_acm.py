"""The ACM emulator is real: moto behind the recording proxy, driven by aiobotocore."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from certauto_core.testing.aws import AcmHandle


def _self_signed(common_name: str) -> tuple[bytes, bytes]:
    """A fresh self-signed RSA-2048 certificate and its PKCS#8 key, both PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


@pytest.fixture(scope="module")
def cert_and_key() -> tuple[bytes, bytes]:
    return _self_signed("app.example.test")


async def _import(client: Any, cert_pem: bytes, key_pem: bytes, **extra: Any) -> str:
    response = await client.import_certificate(Certificate=cert_pem, PrivateKey=key_pem, **extra)
    arn: str = response["CertificateArn"]
    return arn


async def test_import_describe_get_roundtrip(
    acm: AcmHandle, cert_and_key: tuple[bytes, bytes]
) -> None:
    cert_pem, key_pem = cert_and_key
    async with acm.client() as client:
        arn = await _import(
            client, cert_pem, key_pem, Tags=[{"Key": "managed-by", "Value": "certauto"}]
        )
        assert arn.startswith(f"arn:aws:acm:{acm.region}:")

        described = (await client.describe_certificate(CertificateArn=arn))["Certificate"]
        assert described["CertificateArn"] == arn
        assert described["DomainName"] == "app.example.test"
        assert described["Type"] == "IMPORTED"

        got = await client.get_certificate(CertificateArn=arn)
        assert x509.load_pem_x509_certificate(
            got["Certificate"].encode()
        ) == x509.load_pem_x509_certificate(cert_pem)

        tags = (await client.list_tags_for_certificate(CertificateArn=arn))["Tags"]
        assert tags == [{"Key": "managed-by", "Value": "certauto"}]


async def test_proxy_records_what_the_client_sent(
    acm: AcmHandle, cert_and_key: tuple[bytes, bytes]
) -> None:
    cert_pem, key_pem = cert_and_key
    async with acm.client() as client:
        arn = await _import(client, cert_pem, key_pem, Tags=[{"Key": "k", "Value": "v"}])
        # A re-import with Tags: real ACM rejects it, moto accepts it, so a test of the
        # plugin has to look at the request to catch it.
        await _import(
            client, cert_pem, key_pem, CertificateArn=arn, Tags=[{"Key": "k2", "Value": "v"}]
        )
        await client.describe_certificate(CertificateArn=arn)

    imports = acm.proxy.calls("ImportCertificate")
    assert len(imports) == 2
    assert acm.proxy.count("ImportCertificate") == 2
    assert acm.proxy.count("DescribeCertificate") == 1
    assert imports[0]["Tags"] == [{"Key": "k", "Value": "v"}]
    assert "CertificateArn" not in imports[0]
    assert imports[1]["CertificateArn"] == arn
    assert imports[1]["Tags"] == [{"Key": "k2", "Value": "v"}]
    # The body is the wire format: base64 of the PEM blobs.
    assert base64.b64decode(imports[0]["Certificate"]) == cert_pem
    assert [r.operation for r in acm.proxy.records] == [
        "ImportCertificate",
        "ImportCertificate",
        "DescribeCertificate",
    ]
    assert all(r.status == 200 and not r.injected for r in acm.proxy.records)


async def test_injected_throttling_then_success(
    acm: AcmHandle, cert_and_key: tuple[bytes, bytes]
) -> None:
    cert_pem, key_pem = cert_and_key
    acm.proxy.fail_next("ImportCertificate", count=2)
    async with acm.client() as client:
        # Other operations are not affected.
        listed = await client.list_certificates()
        assert listed["CertificateSummaryList"] == []
        for _ in range(2):
            with pytest.raises(ClientError) as caught:
                await _import(client, cert_pem, key_pem)
            error = caught.value.response["Error"]
            assert error["Code"] == "ThrottlingException"
            assert error["Message"] == "Rate exceeded"
            assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        arn = await _import(client, cert_pem, key_pem)
        assert arn

    assert acm.proxy.count("ImportCertificate") == 3
    assert acm.proxy.count("ImportCertificate", include_injected=False) == 1
    assert [r.injected for r in acm.proxy.records if r.operation == "ImportCertificate"] == [
        True,
        True,
        False,
    ]
    assert acm.proxy.faults.pending == 0


async def test_other_injected_error(acm: AcmHandle) -> None:
    acm.proxy.fail_next(
        None, error_code="ServiceUnavailableException", status=503, message="try later"
    )
    async with acm.client() as client:
        with pytest.raises(ClientError) as caught:
            await client.list_certificates()
        assert caught.value.response["Error"]["Code"] == "ServiceUnavailableException"
        await client.list_certificates()


async def test_botocore_retries_through_throttling_when_enabled(
    acm: AcmHandle, cert_and_key: tuple[bytes, bytes]
) -> None:
    from aiobotocore.config import AioConfig

    cert_pem, key_pem = cert_and_key
    acm.proxy.fail_next("ImportCertificate", count=1)
    config = AioConfig(retries={"total_max_attempts": 3, "mode": "standard"})
    async with acm.client(config=config) as client:
        assert await _import(client, cert_pem, key_pem)
    assert acm.proxy.count("ImportCertificate") == 2


async def test_reset_empties_acm(acm: AcmHandle, cert_and_key: tuple[bytes, bytes]) -> None:
    cert_pem, key_pem = cert_and_key
    async with acm.client() as client:
        await _import(client, cert_pem, key_pem)
        assert len((await client.list_certificates())["CertificateSummaryList"]) == 1
        acm.proxy.fail_next("ListCertificates", count=5)

        await acm.reset()

        assert acm.proxy.records == []
        assert acm.proxy.faults.pending == 0
        assert (await client.list_certificates())["CertificateSummaryList"] == []


async def test_each_test_starts_empty(acm: AcmHandle) -> None:
    # The tests above imported certificates; the fixture reset moto before this one.
    assert acm.proxy.records == []
    async with acm.client(direct=True) as client:
        assert (await client.list_certificates())["CertificateSummaryList"] == []
    assert acm.proxy.records == []  # direct=True bypassed the proxy


def test_moto_server_is_loopback_only(acm_proxy: object, moto_server: object) -> None:
    from certauto_core.testing.aws import AcmProxy, MotoServer

    assert isinstance(moto_server, MotoServer)
    assert isinstance(acm_proxy, AcmProxy)
    assert moto_server.endpoint_url.startswith("http://127.0.0.1:")
    assert acm_proxy.endpoint_url.startswith("http://127.0.0.1:")
