"""The certificate, chain and key a binding publishes, parsed once from its Secret.

:class:`CertificateMaterial` is what every destination receives. It re-serialises
the parsed objects in canonical forms (PEM chain, PKCS#8, traditional PEM,
PKCS#12) so that plugins do not each re-implement encoding, and it carries two
identities: ``fingerprint`` (which leaf certificate it is, what destinations
record and compare) and ``content_hash`` (every byte a destination could receive,
to detect a re-keyed or re-chained certificate with the same leaf).

Parsing does not judge the material (does the key match, is it expired): that is
:func:`certauto_core.certs.validation.validate_material`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)

from certauto_core.certs.info import CertificateInfo, format_rfc3339
from certauto_core.certs.pem import (
    PrivateKeyEncoding,
    SupportedPrivateKey,
    load_certificates,
    load_private_key,
)
from certauto_core.certs.reasons import MaterialError, ValidationReason

__all__ = [
    "CertificateInfo",
    "CertificateMaterial",
    "MaterialError",
    "PrivateKeyEncoding",
    "SupportedPrivateKey",
    "parse_tls_secret_data",
]

TLS_CERT_KEY = "tls.crt"
TLS_PRIVATE_KEY_KEY = "tls.key"
CA_CERT_KEY = "ca.crt"

_CONTENT_HASH_DOMAIN = b"certauto.sanorg.in/material/v1"
"""Prefix of the content hash input; bump it if the canonical form ever changes."""


@dataclass(frozen=True, repr=False)
class CertificateMaterial:
    """A parsed leaf certificate, its chain, its private key and the optional CA bundle.

    Construct it with :func:`parse_tls_secret_data`, or directly from objects
    (``info``, ``fingerprint`` and ``content_hash`` are derived, never passed, so
    they cannot disagree with the certificate). It is immutable and compares equal
    to another material with the same ``content_hash``. Its ``repr`` shows only
    public identifiers, so it is safe to log.
    """

    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    """Certificates after the leaf in ``tls.crt`` (intermediates, maybe the root), as given."""
    private_key: SupportedPrivateKey
    ca_pem: bytes | None = None
    """``ca.crt`` byte for byte, or None when absent or empty."""
    private_key_encoding: PrivateKeyEncoding = PrivateKeyEncoding.PKCS8
    """How ``tls.key`` was encoded, so copies can keep the encoding apps expect."""
    info: CertificateInfo = field(init=False)
    fingerprint: str = field(init=False)
    """Same as ``info.sha256_fingerprint``: the leaf's identity, what destinations record."""
    content_hash: str = field(init=False)
    """SHA-256 hex over everything a destination can receive (see :meth:`_compute_hash`)."""

    def __post_init__(self) -> None:
        # Accept any sequence for `chain` but store a tuple so the object stays hashable.
        object.__setattr__(self, "chain", tuple(self.chain))
        if self.ca_pem is not None and not self.ca_pem.strip():
            object.__setattr__(self, "ca_pem", None)
        info = CertificateInfo.from_certificate(self.leaf)
        object.__setattr__(self, "info", info)
        object.__setattr__(self, "fingerprint", info.sha256_fingerprint)
        object.__setattr__(self, "content_hash", self._compute_hash())

    def _compute_hash(self) -> str:
        """Hash the canonical certificate PEM, PKCS#8 key DER, key encoding and ca.crt.

        Each part is length-prefixed so that no two different inputs can produce
        the same byte stream. The key encoding is included because copies keep
        it: a switch from PKCS#1 to PKCS#8 changes what a copy holds.
        """
        key_der = self.private_key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        ca = b"" if self.ca_pem is None else b"\x01" + self.ca_pem
        digest = hashlib.sha256()
        for part in (
            _CONTENT_HASH_DOMAIN,
            self.certificate_pem(),
            key_der,
            self.private_key_encoding.value.encode("ascii"),
            ca,
        ):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.hexdigest()

    def certificate_pem(self) -> bytes:
        """The leaf followed by the chain, as canonical PEM (what goes in a copy's tls.crt)."""
        return self.leaf.public_bytes(Encoding.PEM) + self.chain_pem()

    def chain_pem(self) -> bytes:
        """The chain without the leaf, as PEM; ``b""`` when there is none (ACM's chain)."""
        return b"".join(cert.public_bytes(Encoding.PEM) for cert in self.chain)

    def private_key_pem_pkcs8(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM (``BEGIN PRIVATE KEY``), which Key Vault requires."""
        return self.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def private_key_pem_traditional(self) -> bytes:
        """The key as PKCS#1 (RSA) or SEC1 (ECDSA) PEM, for consumers that want the old form."""
        return self.private_key.private_bytes(
            Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption()
        )

    def private_key_pem(self) -> bytes:
        """The key in the encoding it came in (:attr:`private_key_encoding`)."""
        if self.private_key_encoding is PrivateKeyEncoding.PKCS8:
            return self.private_key_pem_pkcs8()
        return self.private_key_pem_traditional()

    def to_pkcs12(self, friendly_name: bytes | None = None) -> bytes:
        """An unencrypted PKCS#12 (PFX) with key, leaf and chain, for Key Vault imports.

        ``ca.crt`` is not included: it is a trust bundle, not necessarily this
        certificate's chain.
        """
        return pkcs12.serialize_key_and_certificates(
            friendly_name, self.private_key, self.leaf, list(self.chain) or None, NoEncryption()
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CertificateMaterial):
            return NotImplemented
        return self.content_hash == other.content_hash

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __repr__(self) -> str:
        return (
            f"CertificateMaterial(fingerprint={self.fingerprint}, "
            f"notAfter={format_rfc3339(self.info.not_after)}, "
            f"keyAlgorithm={self.info.key_algorithm}, chainLength={len(self.chain)})"
        )

    __str__ = __repr__


def parse_tls_secret_data(data: Mapping[str, bytes]) -> CertificateMaterial:
    """Parse decoded ``kubernetes.io/tls`` Secret data into :class:`CertificateMaterial`.

    ``data`` maps ``tls.crt``, ``tls.key`` and optionally ``ca.crt`` to their
    *decoded* bytes (not the base64 of the Secret's JSON). ``tls.crt`` holds the
    leaf first, then its chain; ``tls.key`` one unencrypted PKCS#1, PKCS#8 or SEC1
    key, RSA or ECDSA on P-256/P-384/P-521. An empty ``ca.crt`` counts as absent;
    a non-empty one must hold valid certificates.

    :raises MaterialError: with the reason and a message safe to show the user.
    """
    certificate_data = data.get(TLS_CERT_KEY, b"")
    key_data = data.get(TLS_PRIVATE_KEY_KEY, b"")
    if not certificate_data.strip():
        raise MaterialError(
            ValidationReason.MissingCertificate,
            "the Secret has no certificate: tls.crt is missing or empty",
        )
    if not key_data.strip():
        raise MaterialError(
            ValidationReason.MissingPrivateKey,
            "the Secret has no private key: tls.key is missing or empty",
        )
    certificates = load_certificates(certificate_data, field=TLS_CERT_KEY)
    private_key, encoding = load_private_key(key_data)
    ca_pem = data.get(CA_CERT_KEY)
    if ca_pem is not None and ca_pem.strip():
        load_certificates(ca_pem, field=CA_CERT_KEY)
    else:
        ca_pem = None
    return CertificateMaterial(
        leaf=certificates[0],
        chain=tuple(certificates[1:]),
        private_key=private_key,
        ca_pem=ca_pem,
        private_key_encoding=encoding,
    )
