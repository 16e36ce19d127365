"""End to end: the real operator reconciles CertificateBindings into ACM (moto).

The operator runs in-process against the real API server with this plugin loaded
through its entry point; ACM is moto behind the recording proxy, reached through
the config's ``endpointURL`` with credentials from a Secret in the binding's
namespace, as a user outside AWS would set it up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from certauto_core.kube.resources import CERTIFICATE_BINDINGS, SECRETS
from certauto_core.plugins.manager import PluginManager
from certauto_core.testing.aws import AcmHandle
from certauto_core.testing.certs import CertFactory, IssuedCert, KeyType
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.operator import OperatorHarness, running_operator

CERTS = CertFactory()
ISSUER = CERTS.intermediate_ca(CERTS.root_ca())


@pytest_asyncio.fixture(loop_scope="session")
async def harness(control_plane: ControlPlane) -> AsyncIterator[OperatorHarness]:
    plugins = PluginManager()
    plugins.load_entry_points()
    async with running_operator(control_plane, plugins=plugins) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session", autouse=True)
async def delete_bindings_afterwards(
    harness: OperatorHarness, namespace: str
) -> AsyncIterator[None]:
    """A binding left behind would keep importing into the next test's (reset) ACM."""
    yield
    listing = await harness.kube.get(CERTIFICATE_BINDINGS.path(namespace))
    for item in listing["items"]:
        await harness.delete_binding(namespace, item["metadata"]["name"])
        await harness.wait_gone(namespace, item["metadata"]["name"])


@pytest_asyncio.fixture(loop_scope="session")
async def credentials(harness: OperatorHarness, acm: AcmHandle, namespace: str) -> str:
    await harness.kube.create(
        SECRETS.path(namespace),
        {
            "metadata": {"name": "aws-acm"},
            "stringData": {
                "accessKeyID": acm.credentials["aws_access_key_id"],
                "secretAccessKey": acm.credentials["aws_secret_access_key"],
            },
        },
    )
    return "aws-acm"


def _spec(acm: AcmHandle, secret: str, **policy: Any) -> dict[str, Any]:
    return {
        "sourceSecretRef": {"name": "web-tls"},
        "destinations": [
            {
                "name": "acm-use1",
                "type": "aws-acm",
                "config": {
                    "region": acm.region,
                    "endpointURL": acm.endpoint_url,
                    "tags": {"team": "web"},
                    "credentials": {"secretRef": {"name": secret}},
                },
            }
        ],
        "syncPolicy": {"retryInterval": "1s", **policy},
    }


def _leaf(key_type: KeyType = KeyType.RSA_2048) -> IssuedCert:
    return CERTS.leaf(ISSUER, ["web.example.test"], key_type=key_type)


async def _certificates(acm: AcmHandle) -> list[dict[str, Any]]:
    key_types = ["RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1"]
    async with acm.client(direct=True) as client:
        listing = await client.list_certificates(Includes={"keyTypes": key_types})
    summaries: list[dict[str, Any]] = listing["CertificateSummaryList"]
    return summaries


async def _served_pem(acm: AcmHandle, arn: str) -> str:
    async with acm.client(direct=True) as client:
        got = await client.get_certificate(CertificateArn=arn)
    return str(got["Certificate"])


async def _tags(acm: AcmHandle, arn: str) -> dict[str, str]:
    async with acm.client(direct=True) as client:
        listed = await client.list_tags_for_certificate(CertificateArn=arn)
    return {tag["Key"]: tag.get("Value", "") for tag in listed["Tags"]}


async def test_a_binding_syncs_to_acm_and_renewals_keep_the_arn(
    harness: OperatorHarness, acm: AcmHandle, namespace: str, credentials: str
) -> None:
    first, second = _leaf(), _leaf()
    await harness.put_tls_secret(namespace, "web-tls", first.secret_data())
    await harness.create_binding(namespace, "web", _spec(acm, credentials))
    entry = await harness.wait_destination(namespace, "web", "acm-use1", "Synced", timeout=60)
    arn = entry["externalID"]
    assert arn.startswith("arn:aws:acm:us-east-1:")
    assert entry["syncedFingerprint"] == first.fingerprint
    tags = await _tags(acm, arn)
    assert tags["team"] == "web"
    assert any(f"{namespace}/web" in value for value in tags.values())

    # No change: a full resync imports nothing.
    await harness.settle()
    imports = acm.proxy.count("ImportCertificate")
    await harness.resync()
    await harness.resync()
    assert acm.proxy.count("ImportCertificate") == imports

    # Renewal: the same ARN, a re-import without tags, and ACM serves the new certificate.
    await harness.put_tls_secret(namespace, "web-tls", second.secret_data())
    renewed = await harness.wait_destination(
        namespace, "web", "acm-use1", "Synced", fingerprint=second.fingerprint, timeout=60
    )
    assert renewed["externalID"] == arn
    reimport = acm.proxy.calls("ImportCertificate")[-1]
    assert reimport["CertificateArn"] == arn
    assert "Tags" not in reimport
    assert second.certificate_pem().decode().strip() == (await _served_pem(acm, arn)).strip()
    assert len(await _certificates(acm)) == 1


async def test_a_lost_status_or_a_recreated_binding_reuses_the_arn(
    harness: OperatorHarness, acm: AcmHandle, namespace: str, credentials: str
) -> None:
    await harness.put_tls_secret(namespace, "web-tls", _leaf().secret_data())
    await harness.create_binding(namespace, "web", _spec(acm, credentials))
    entry = await harness.wait_destination(namespace, "web", "acm-use1", "Synced", timeout=60)
    arn = entry["externalID"]

    # Wipe the status: the operator finds its certificate by its tags.
    await harness.kube.merge_patch(
        f"/apis/sanorg.in/v1alpha1/namespaces/{namespace}/certificatebindings/web/status",
        {"status": None},
    )
    again = await harness.wait_destination(namespace, "web", "acm-use1", "Synced", timeout=60)
    assert again["externalID"] == arn

    # Delete (Retain) and recreate the binding: still the same certificate.
    await harness.delete_binding(namespace, "web")
    await harness.wait_gone(namespace, "web")
    await harness.create_binding(namespace, "web", _spec(acm, credentials))
    recreated = await harness.wait_destination(namespace, "web", "acm-use1", "Synced", timeout=60)
    assert recreated["externalID"] == arn
    assert [c["CertificateArn"] for c in await _certificates(acm)] == [arn]


async def test_rsa_to_ecdsa_makes_a_new_arn_and_deletes_the_old_under_delete(
    harness: OperatorHarness, acm: AcmHandle, namespace: str, credentials: str
) -> None:
    await harness.put_tls_secret(namespace, "web-tls", _leaf().secret_data())
    await harness.create_binding(namespace, "web", _spec(acm, credentials, deletionPolicy="Delete"))
    old = (await harness.wait_destination(namespace, "web", "acm-use1", "Synced", timeout=60))[
        "externalID"
    ]
    ecdsa = _leaf(KeyType.ECDSA_P256)
    await harness.put_tls_secret(namespace, "web-tls", ecdsa.secret_data())
    entry = await harness.wait_destination(
        namespace, "web", "acm-use1", "Synced", fingerprint=ecdsa.fingerprint, timeout=60
    )
    assert entry["externalID"] != old
    assert [c["CertificateArn"] for c in await _certificates(acm)] == [entry["externalID"]]

    # deletionPolicy Delete: the certificate goes with the binding.
    await harness.delete_binding(namespace, "web")
    await harness.wait_gone(namespace, "web")
    assert await _certificates(acm) == []


@pytest.mark.timeout(120)
async def test_throttling_is_retried_until_synced_with_attempts_in_status(
    harness: OperatorHarness, acm: AcmHandle, namespace: str, credentials: str
) -> None:
    acm.proxy.fail_next("ImportCertificate", 2)
    await harness.put_tls_secret(namespace, "web-tls", _leaf().secret_data())
    await harness.create_binding(namespace, "web", _spec(acm, credentials))
    retrying = await harness.wait_destination(namespace, "web", "acm-use1", "Retrying", timeout=60)
    assert retrying["attempts"] >= 1
    assert "Throttl" in retrying["message"] or "rate" in retrying["message"].lower()
    synced = await harness.wait_destination(namespace, "web", "acm-use1", "Synced", timeout=90)
    assert synced["attempts"] == 0
    assert acm.proxy.count("ImportCertificate") == 3
    assert len(await _certificates(acm)) == 1
