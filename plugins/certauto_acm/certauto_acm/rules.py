"""ACM's rules for imported certificates, in one place, checked before any call.

Sources: the ACM User Guide ("Prerequisites for importing ACM certificates",
"Reimport a certificate") and the ImportCertificate API reference. moto enforces
almost none of this, so these checks are what keeps a certificate that real ACM
would refuse (or worse, a re-import that would fail) from costing an API call and
a slot of the yearly import quota.

Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from certauto_core.certs.info import describe_key, sha256_fingerprint
from certauto_core.certs.material import CertificateMaterial


@dataclass(frozen=True)
class KeyAlgorithm:
    """One key algorithm ACM knows, and whether CertAuto will import it."""

    acm_name: str
    """ACM's API name (``DescribeCertificate.KeyAlgorithm``, ``ListCertificates`` keyTypes)."""
    certauto_name: str
    """The same key as :attr:`CertificateInfo.key_algorithm` names it (``RSA-2048``)."""
    importable: bool
    note: str = ""


KEY_ALGORITHMS: Final[tuple[KeyAlgorithm, ...]] = (
    KeyAlgorithm(
        "RSA_1024",
        "RSA-1024",
        importable=False,
        note=(
            "ACM accepts it, but 1024-bit RSA has been disallowed for TLS since 2013 and "
            "browsers reject it; CertAuto refuses it"
        ),
    ),
    KeyAlgorithm("RSA_2048", "RSA-2048", importable=True),
    KeyAlgorithm("RSA_3072", "RSA-3072", importable=True),
    KeyAlgorithm("RSA_4096", "RSA-4096", importable=True),
    KeyAlgorithm("EC_prime256v1", "ECDSA-P256", importable=True),
    KeyAlgorithm("EC_secp384r1", "ECDSA-P384", importable=True, note="CloudFront cannot use it"),
    KeyAlgorithm("EC_secp521r1", "ECDSA-P521", importable=True, note="CloudFront cannot use it"),
)
"""Every algorithm ACM accepts for import (its whole list), in ACM's order."""

ALL_ACM_KEY_TYPES: Final = tuple(algorithm.acm_name for algorithm in KEY_ALGORITHMS)
"""For ``ListCertificates(Includes={"keyTypes": ...})``: without it ACM lists RSA_2048 only."""

_BY_CERTAUTO_NAME: Final = {algorithm.certauto_name: algorithm for algorithm in KEY_ALGORITHMS}
_IMPORTABLE_NAMES: Final = ", ".join(
    algorithm.certauto_name for algorithm in KEY_ALGORITHMS if algorithm.importable
)

MAX_PRIVATE_KEY_BYTES: Final = 5120
"""ImportCertificate: "The private key must be no larger than 5 KB (5,120 bytes)"."""
MAX_CERTIFICATE_BYTES: Final = 32768
"""ImportCertificate's ``Certificate`` parameter: at most 32,768 bytes."""
MAX_CHAIN_BYTES: Final = 2097152
"""ImportCertificate's ``CertificateChain`` parameter: at most 2,097,152 bytes."""
MAX_OCSP_URL_CHARS: Final = 1000
"""ImportCertificate: "The OCSP authority URL, if present, must not exceed 1000 characters"."""


class UnimportableMaterialError(ValueError):
    """The material breaks an ACM rule; the message says which and what would be accepted."""


def key_algorithm(certificate: x509.Certificate) -> KeyAlgorithm | None:
    """ACM's view of the certificate's public key, or ``None`` when ACM cannot import it."""
    return _BY_CERTAUTO_NAME.get(describe_key(certificate.public_key()))


def acm_key_name(certificate: x509.Certificate) -> str:
    """ACM's name for the key (``EC_prime256v1``), or CertAuto's when ACM has none."""
    algorithm = key_algorithm(certificate)
    return algorithm.acm_name if algorithm else describe_key(certificate.public_key())


def check_importable(material: CertificateMaterial) -> None:
    """Raise :class:`UnimportableMaterialError` when real ACM would refuse to import ``material``.

    Dates are not checked here: the core refuses expired and not-yet-valid
    material before any destination sees it.
    """
    name = material.info.key_algorithm
    algorithm = _BY_CERTAUTO_NAME.get(name)
    if algorithm is None:
        raise UnimportableMaterialError(
            f"ACM cannot import a {name} key; use one of {_IMPORTABLE_NAMES}"
        )
    if not algorithm.importable:
        raise UnimportableMaterialError(
            f"{name} key refused: {algorithm.note}; use one of {_IMPORTABLE_NAMES}"
        )
    leaf = material.leaf
    if leaf.version is not x509.Version.v3:
        raise UnimportableMaterialError("ACM imports X.509 version 3 certificates only")
    if len(leaf.issuer) == 0:
        raise UnimportableMaterialError("ACM refuses a certificate whose Issuer field is empty")
    if len(material.private_key_pem_pkcs8()) > MAX_PRIVATE_KEY_BYTES:
        raise UnimportableMaterialError(
            f"the private key is larger than ACM's limit of {MAX_PRIVATE_KEY_BYTES} bytes"
        )
    if len(leaf.public_bytes(Encoding.PEM)) > MAX_CERTIFICATE_BYTES:
        raise UnimportableMaterialError(
            f"the certificate is larger than ACM's {MAX_CERTIFICATE_BYTES} bytes"
        )
    if len(material.chain_pem()) > MAX_CHAIN_BYTES:
        raise UnimportableMaterialError(f"the chain is larger than ACM's {MAX_CHAIN_BYTES} bytes")
    _check_chain(leaf, material.chain)
    _check_ocsp_urls(leaf)


def _check_chain(leaf: x509.Certificate, chain: Sequence[x509.Certificate]) -> None:
    """The chain starts at the leaf's issuer and each certificate certifies the one before."""
    if not chain:
        if leaf.issuer != leaf.subject:
            raise UnimportableMaterialError(
                "ACM needs the certificate chain for a certificate that is not self-signed: "
                "tls.crt must hold the leaf, then its intermediates"
            )
        return
    leaf_fingerprint = sha256_fingerprint(leaf)
    previous = leaf
    for position, certificate in enumerate(chain, start=1):
        if sha256_fingerprint(certificate) == leaf_fingerprint:
            raise UnimportableMaterialError("the chain must not repeat the leaf certificate")
        if previous.issuer != certificate.subject:
            raise UnimportableMaterialError(
                f"chain certificate {position} is not the issuer of the certificate before it: "
                "ACM needs the chain ordered leaf first, then each issuer up to the root"
            )
        previous = certificate


def _check_ocsp_urls(leaf: x509.Certificate) -> None:
    try:
        access = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return
    for description in access.value:
        if description.access_method != AuthorityInformationAccessOID.OCSP:
            continue
        location = description.access_location
        if isinstance(location, x509.UniformResourceIdentifier) and (
            len(location.value) > MAX_OCSP_URL_CHARS
        ):
            raise UnimportableMaterialError(
                f"the certificate's OCSP URL is longer than ACM's {MAX_OCSP_URL_CHARS} characters"
            )


# -- re-import ---------------------------------------------------------------------

_KEY_USAGE_FLAGS: Final = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def reimport_blockers(current: x509.Certificate, new: x509.Certificate) -> list[str]:
    """Why ACM would refuse to re-import ``new`` over ``current`` (empty when it would not).

    From "Reimport a certificate": the key type and size cannot change; Key Usage
    and Extended Key Usage values can be added but not removed (except
    keyEncipherment on an ECDSA certificate, and clientAuth), and neither
    extension can appear when the original lacked it; not every domain name can go.
    """
    blockers: list[str] = []
    old_key, new_key = acm_key_name(current), acm_key_name(new)
    if old_key != new_key:
        blockers.append(f"the key type changes from {old_key} to {new_key}")

    old_usage, new_usage = _key_usage(current), _key_usage(new)
    if old_usage is None and new_usage is not None:
        blockers.append("the new certificate adds a Key Usage extension")
    elif old_usage is not None:
        removable = (
            {"key_encipherment"}
            if isinstance(new.public_key(), ec.EllipticCurvePublicKey)
            else set()
        )
        lost = old_usage - (new_usage or set()) - removable
        if lost:
            blockers.append(f"the new certificate drops Key Usage {', '.join(sorted(lost))}")

    old_ext, new_ext = _extended_key_usage(current), _extended_key_usage(new)
    if old_ext is None and new_ext is not None:
        blockers.append("the new certificate adds an Extended Key Usage extension")
    elif old_ext is not None:
        lost_ext = old_ext - (new_ext or set()) - {ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string}
        if lost_ext:
            blockers.append(
                f"the new certificate drops Extended Key Usage {', '.join(sorted(lost_ext))}"
            )

    if _domain_names(current) and not _domain_names(new):
        blockers.append("the new certificate has no domain name")
    return blockers


def _key_usage(certificate: x509.Certificate) -> set[str] | None:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    values = {flag for flag in _KEY_USAGE_FLAGS if getattr(usage, flag)}
    if usage.key_agreement:
        values |= {flag for flag in ("encipher_only", "decipher_only") if getattr(usage, flag)}
    return values


def _extended_key_usage(certificate: x509.Certificate) -> set[str] | None:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return {oid.dotted_string for oid in usage}


def _domain_names(certificate: x509.Certificate) -> set[str]:
    names: set[str] = set()
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names.update(san.get_values_for_type(x509.DNSName))
        names.update(str(address) for address in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        pass
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        names.add(value.decode() if isinstance(value, bytes) else value)
    return names
