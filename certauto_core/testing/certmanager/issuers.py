"""cert-manager issuers and Certificates for tests, through the real API.

SelfSigned and CA ClusterIssuers for cert-manager's real controller to sign with,
a CA it refuses to sign with, and :func:`trigger_renewal`, which asks for a
renewal exactly as ``cmctl renew`` does (an ``Issuing`` condition with reason
``ManuallyTriggered`` on the Certificate's status).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certauto_core.engine.managed import CLUSTER_ISSUERS
from certauto_core.kube.client import JSON, KubeClient
from certauto_core.kube.errors import ConflictError
from certauto_core.kube.resources import CERTIFICATES, SECRETS
from certauto_core.testing.certmanager.process import CLUSTER_RESOURCE_NAMESPACE
from certauto_core.testing.certs import IssuedCert, encode_secret_data
from certauto_core.testing.kube import wait_for

__all__ = [
    "ca_cluster_issuer",
    "ca_pems",
    "ca_without_cert_sign",
    "certificate_condition",
    "replace_ca_key_pair",
    "self_signed_cluster_issuer",
    "trigger_renewal",
    "wait_certificate",
    "wait_issuer_ready",
]


async def self_signed_cluster_issuer(kube: KubeClient, name: str) -> JSON:
    """A ``selfSigned`` ClusterIssuer, Ready once cert-manager has seen it."""
    return await _create_cluster_issuer(kube, name, {"selfSigned": {}})


async def ca_cluster_issuer(
    kube: KubeClient,
    name: str,
    certificate_pem: bytes,
    private_key_pem: bytes,
    *,
    secret_name: str | None = None,
) -> JSON:
    """A ``ca`` ClusterIssuer with its key pair in the cluster resource namespace."""
    secret_name = secret_name or f"{name}-ca"
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": secret_name, "namespace": CLUSTER_RESOURCE_NAMESPACE},
        "data": encode_secret_data({"tls.crt": certificate_pem, "tls.key": private_key_pem}),
    }
    try:
        await kube.create(SECRETS.path(CLUSTER_RESOURCE_NAMESPACE), body)
    except ConflictError:
        await kube.replace(SECRETS.path(CLUSTER_RESOURCE_NAMESPACE, secret_name), body)
    return await _create_cluster_issuer(kube, name, {"ca": {"secretName": secret_name}})


async def replace_ca_key_pair(
    kube: KubeClient, secret_name: str, certificate_pem: bytes, private_key_pem: bytes
) -> None:
    """Swap the key pair a CA ClusterIssuer signs with (its Secret in the resource namespace)."""
    path = SECRETS.path(CLUSTER_RESOURCE_NAMESPACE, secret_name)
    secret = await kube.get(path)
    secret["data"] = encode_secret_data({"tls.crt": certificate_pem, "tls.key": private_key_pem})
    await kube.replace(path, secret)


def ca_pems(ca: IssuedCert) -> tuple[bytes, bytes]:
    """A ``CertFactory`` CA's certificate and key PEM, for :func:`ca_cluster_issuer`."""
    return ca.certificate_pem(), ca.private_key_pem()


def ca_without_cert_sign() -> tuple[bytes, bytes]:
    """A CA (``basicConstraints: CA``) whose key usage lacks ``keyCertSign``.

    cert-manager's CA issuer accepts it (it checks only ``isCA``) and becomes Ready,
    but every request it signs then fails its own chain check: a real
    ``CertificateRequest`` failure, for tests of how failures surface.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CertAuto Test CA without certSign")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


async def _create_cluster_issuer(kube: KubeClient, name: str, spec: dict[str, Any]) -> JSON:
    body = {
        "apiVersion": CLUSTER_ISSUERS.api_version,
        "kind": CLUSTER_ISSUERS.kind,
        "metadata": {"name": name},
        "spec": spec,
    }
    return await kube.create(CLUSTER_ISSUERS.path(), body)


async def wait_issuer_ready(kube: KubeClient, name: str, *, timeout: float = 30) -> JSON:
    """Wait until cert-manager marks the ClusterIssuer ``Ready``."""

    async def check() -> JSON | None:
        issuer = await kube.get(CLUSTER_ISSUERS.path(name=name))
        ready = certificate_condition(issuer, "Ready")
        return issuer if ready is not None and ready.get("status") == "True" else None

    return await wait_for(check, timeout=timeout, what=f"ClusterIssuer {name} to be Ready")


def certificate_condition(obj: JSON, type_: str) -> JSON | None:
    """The condition of this type on a cert-manager object's status, if any."""
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition.get("type") == type_:
            found: JSON = condition
            return found
    return None


async def wait_certificate(
    kube: KubeClient,
    namespace: str,
    name: str,
    *,
    ready: bool = True,
    min_revision: int = 1,
    timeout: float = 30,
) -> JSON:
    """Wait until the Certificate is Ready for its generation (at ``min_revision``)."""

    async def check() -> JSON | None:
        certificate = await kube.get(CERTIFICATES.path(namespace, name))
        condition = certificate_condition(certificate, "Ready")
        status = certificate.get("status") or {}
        current = condition is not None and condition.get("observedGeneration") == (
            certificate["metadata"].get("generation")
        )
        if (
            current
            and condition is not None
            and (condition.get("status") == "True") == ready
            and int(status.get("revision") or 0) >= min_revision
        ):
            return certificate
        return None

    return await wait_for(
        check, timeout=timeout, what=f"Certificate {namespace}/{name} revision >= {min_revision}"
    )


async def trigger_renewal(kube: KubeClient, namespace: str, name: str) -> None:
    """Ask cert-manager to re-issue now, as ``cmctl renew`` does.

    ``cmctl renew`` sets the Certificate's ``Issuing`` condition to True with reason
    ``ManuallyTriggered`` through the status subresource; cert-manager's controllers
    take it from there.
    """
    while True:
        certificate = await kube.get(CERTIFICATES.path(namespace, name))
        status = dict(certificate.get("status") or {})
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [c for c in status.get("conditions") or () if c.get("type") != "Issuing"]
        conditions.append(
            {
                "type": "Issuing",
                "status": "True",
                "reason": "ManuallyTriggered",
                "message": "Certificate re-issuance manually triggered",
                "lastTransitionTime": now,
                "observedGeneration": certificate["metadata"].get("generation"),
            }
        )
        certificate["status"] = {**status, "conditions": conditions}
        try:
            await kube.replace(CERTIFICATES.path(namespace, name, "status"), certificate)
        except ConflictError:
            continue  # cert-manager wrote meanwhile: read again
        return
