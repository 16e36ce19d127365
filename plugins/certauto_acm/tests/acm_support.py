"""Helpers shared by the aws-acm tests: configs, the core's calling sequence, moto reads.

Reads of moto's state go past the recording proxy (``direct=True``), so they never
show up in the call log the tests make assertions about.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from certauto_acm import tags as tagging
from certauto_acm.config import AcmConfig
from certauto_acm.destination import AcmDestination
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from certauto_core.certs.info import sha256_fingerprint
from certauto_core.certs.material import CertificateMaterial
from certauto_core.plugins.contract import (
    BindingRef,
    Observation,
    PreviousSync,
    PublishResult,
    Target,
    needs_publish,
)
from certauto_core.testing.aws import AcmHandle
from certauto_core.testing.certs import CertFactory, IssuedCert, KeyType

WRITE_OPERATIONS = (
    "ImportCertificate",
    "AddTagsToCertificate",
    "RemoveTagsFromCertificate",
    "DeleteCertificate",
)
ALL_KEY_TYPES = [
    "RSA_1024",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
]


def acm_config(acm: AcmHandle, **extra: Any) -> AcmConfig:
    return AcmConfig.model_validate(
        {"region": acm.region, "endpointURL": acm.endpoint_url, **extra}
    )


def target(binding: BindingRef, config: AcmConfig, previous: PreviousSync | None = None) -> Target:
    return Target(binding=binding, config=config, previous=previous or PreviousSync())


def material(
    certs: CertFactory, issuer: IssuedCert, key_type: KeyType = KeyType.RSA_2048
) -> CertificateMaterial:
    return certs.leaf(issuer, ["web.example.test"], key_type=key_type).material()


def material_from_objects(
    certs: CertFactory,
    issuer: IssuedCert,
    *,
    key_type: KeyType | None = None,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None,
    chain: tuple[IssuedCert, ...] | None = None,
) -> CertificateMaterial:
    """Material built from objects, past the Secret parser (which refuses some keys)."""
    leaf = certs.leaf(issuer, ["web.example.test"], key_type=key_type, key=key)
    private_key = leaf.private_key
    assert isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return CertificateMaterial(
        leaf=leaf.certificate,
        chain=tuple(cert.certificate for cert in (leaf.chain() if chain is None else chain)),
        private_key=private_key,
    )


async def sync(
    destination: AcmDestination, chosen: CertificateMaterial, where: Target
) -> tuple[Observation, PublishResult | None]:
    """What the core does on a reconcile."""
    await destination.check_material(chosen, where)
    observation = await destination.observe(where)
    if not needs_publish(observation, chosen):
        return observation, None
    return observation, await destination.publish(chosen, where)


def synced(where: Target, result: PublishResult | None, observation: Observation) -> Target:
    """The target of the next reconcile, with status updated as the core would."""
    if result is not None:
        return replace(where, previous=PreviousSync(result.fingerprint, result.external_id))
    return replace(where, previous=PreviousSync(observation.fingerprint, observation.external_id))


def writes(acm: AcmHandle) -> int:
    return sum(acm.proxy.count(op, include_injected=False) for op in WRITE_OPERATIONS)


async def arns_in(acm: AcmHandle) -> list[str]:
    """Every certificate in moto's region, of every key type (read past the proxy)."""
    async with acm.client(direct=True) as client:
        listed = await client.list_certificates(Includes={"keyTypes": ALL_KEY_TYPES})
    return sorted(summary["CertificateArn"] for summary in listed["CertificateSummaryList"])


async def tags_of(acm: AcmHandle, arn: str) -> dict[str, str]:
    async with acm.client(direct=True) as client:
        listed = await client.list_tags_for_certificate(CertificateArn=arn)
    return {tag["Key"]: tag.get("Value", "") for tag in listed["Tags"]}


async def served(acm: AcmHandle, arn: str) -> str:
    """The fingerprint of the leaf ACM serves under ``arn``."""
    async with acm.client(direct=True) as client:
        got = await client.get_certificate(CertificateArn=arn)
    return sha256_fingerprint(x509.load_pem_x509_certificate(got["Certificate"].encode()))


async def import_foreign(
    acm: AcmHandle, chosen: CertificateMaterial, tags: dict[str, str] | None = None
) -> str:
    """A certificate someone imported without CertAuto (past the proxy)."""
    params: dict[str, Any] = {
        "Certificate": chosen.leaf.public_bytes(Encoding.PEM),
        "PrivateKey": chosen.private_key_pem_pkcs8(),
        "CertificateChain": chosen.chain_pem(),
    }
    if tags:
        params["Tags"] = tagging.to_tag_list(tags)
    async with acm.client(direct=True) as client:
        arn: str = (await client.import_certificate(**params))["CertificateArn"]
    return arn
