"""The summary of a leaf certificate shown in ``status.certificate``.

It carries only public facts about the certificate, so it is safe to log, to put
in status and to compare between reconciles.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

__all__ = [
    "CertificateInfo",
    "describe_certificate",
    "describe_key",
    "describe_name",
    "format_rfc3339",
    "format_serial",
    "is_supported_curve",
    "sha256_fingerprint",
]

_CURVE_NAMES: dict[str, str] = {
    "secp256r1": "P256",
    "secp384r1": "P384",
    "secp521r1": "P521",
}
"""Curves every destination accepts, by the short name used in ``keyAlgorithm``."""


def format_rfc3339(moment: datetime) -> str:
    """``2025-01-02T03:04:05Z``: the form Kubernetes uses for timestamps in status.

    Sub-second precision is dropped: certificate validity is whole seconds.
    """
    if moment.tzinfo is None:
        raise ValueError("cannot format a naive datetime as RFC 3339; pass a UTC datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_serial(serial: int) -> str:
    """Upper-case hex without colons, padded to whole bytes like ``openssl x509 -serial``.

    Matching openssl's form lets a user compare status with what they see locally.
    """
    digits = f"{abs(serial):X}"
    if len(digits) % 2:
        digits = "0" + digits
    return ("-" if serial < 0 else "") + digits


def sha256_fingerprint(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 over the certificate's DER encoding, without colons."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def describe_key(key: object) -> str:
    """A short algorithm name such as ``RSA-2048`` or ``ECDSA-P256``.

    Accepts public or private keys of any type, so that messages about keys we do
    not support (``Ed25519``, ``DSA-2048``, ``ECDSA-secp256k1``) still say what the
    key is.
    """
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ECDSA-{_CURVE_NAMES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        return f"DSA-{key.key_size}"
    return type(key).__name__


def is_supported_curve(curve: ec.EllipticCurve) -> bool:
    """Whether an ECDSA curve is one every destination accepts (P-256, P-384, P-521)."""
    return curve.name in _CURVE_NAMES


def describe_name(name: x509.Name) -> str:
    """A readable label for a subject or issuer in messages: ``CN=web.example.com``.

    Uses the common name when there is one (what people recognise), else the full
    RFC 4514 string, else ``<empty subject>``.
    """
    common_names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if common_names:
        value = common_names[0].value
        return f"CN={value.decode() if isinstance(value, bytes) else value}"
    return name.rfc4514_string() or "<empty subject>"


def describe_certificate(cert: x509.Certificate) -> str:
    """How messages name a certificate: its subject, or its first DNS name, or its serial.

    ACME certificates may have an empty subject, so fall back to what a user would
    search for.
    """
    if len(cert.subject):
        return describe_name(cert.subject)
    names = _dns_names(cert)
    if names:
        return f"DNS:{names[0]}"
    return f"serial {format_serial(cert.serial_number)}"


def _dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.value.get_values_for_type(x509.DNSName))


@dataclass(frozen=True, repr=False)
class CertificateInfo:
    """Public facts about a leaf certificate, for ``status.certificate`` and metrics."""

    serial_number: str
    """Upper-case hex, no colons (see :func:`format_serial`)."""
    not_before: datetime
    """Start of validity, timezone-aware UTC."""
    not_after: datetime
    """End of validity, timezone-aware UTC."""
    sha256_fingerprint: str
    """Lower-case hex SHA-256 of the leaf's DER, no colons: the identity destinations compare."""
    dns_names: tuple[str, ...]
    """DNS names from the subjectAltName extension, in certificate order."""
    issuer: str
    """The issuer's distinguished name as an RFC 4514 string."""
    key_algorithm: str
    """``RSA-2048``, ``ECDSA-P256``, ... (see :func:`describe_key`)."""

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> CertificateInfo:
        """Summarise ``cert``; never fails for a certificate cryptography could load."""
        return cls(
            serial_number=format_serial(cert.serial_number),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            sha256_fingerprint=sha256_fingerprint(cert),
            dns_names=_dns_names(cert),
            issuer=cert.issuer.rfc4514_string(),
            key_algorithm=describe_key(cert.public_key()),
        )

    def to_status(self) -> dict[str, object]:
        """The camelCase mapping stored in ``CertificateBinding.status.certificate``."""
        return {
            "serialNumber": self.serial_number,
            "notBefore": format_rfc3339(self.not_before),
            "notAfter": format_rfc3339(self.not_after),
            "sha256Fingerprint": self.sha256_fingerprint,
            "dnsNames": list(self.dns_names),
            "issuer": self.issuer,
            "keyAlgorithm": self.key_algorithm,
        }

    def __repr__(self) -> str:
        return (
            f"CertificateInfo(serialNumber={self.serial_number}, "
            f"fingerprint={self.sha256_fingerprint}, dnsNames={list(self.dns_names)}, "
            f"notAfter={format_rfc3339(self.not_after)}, keyAlgorithm={self.key_algorithm})"
        )
