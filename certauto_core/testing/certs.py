"""Test certificates: CAs, intermediates and leaves, and the Secrets that carry them.

Used by CertAuto's own tests and meant for destination plugin authors, so it is
public, typed and stable. Typical use::

    from certauto_core.testing.certs import CertFactory, KeyType

    factory = CertFactory()
    root = factory.root_ca()
    intermediate = factory.intermediate_ca(root)
    leaf = factory.leaf(intermediate, ["web.example.test"], key_type=KeyType.ECDSA_P256)

    leaf.secret_data()                      # {"tls.crt": leaf+intermediate, "tls.key": PKCS#8}
    leaf.secret_data(include_root=True, ca=root)
    leaf.secret_data(chain=[root, intermediate])          # a chain out of order
    leaf.secret_data(key_encoding=PrivateKeyEncoding.PKCS1, key_password=b"pw")
    leaf.secret_manifest("web-tls", "apps")  # a Secret body with base64 data
    leaf.material()                         # a CertificateMaterial, as destinations get it

Every certificate is made to be realistic (basicConstraints, keyUsage,
extendedKeyUsage, subject and authority key identifiers, SANs) so that strict
consumers such as ACM and Key Vault emulators accept it, and every knob a test
might want to get wrong (dates, issuer, key, chain order, key encoding) is a
parameter.

Generating RSA keys is slow (tens of milliseconds for 2048 bits, up to a second
for 4096), so keys come from a per-process :class:`KeyPool` unless a fresh one is
requested. The factory never gives a certificate the same key as its issuer.
"""

from __future__ import annotations

import base64
import enum
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    KeySerializationEncryption,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certauto_core.certs.info import sha256_fingerprint
from certauto_core.certs.material import CertificateMaterial, parse_tls_secret_data
from certauto_core.certs.pem import PrivateKeyEncoding

__all__ = [
    "DEFAULT_KEY_POOL",
    "KUBERNETES_TLS_TYPE",
    "AnyPrivateKey",
    "CertFactory",
    "IssuedCert",
    "KeyPool",
    "KeyType",
    "PrivateKeyEncoding",
    "encode_private_key",
    "encode_secret_data",
    "generate_private_key",
    "tls_secret_manifest",
]

AnyPrivateKey: TypeAlias = (
    rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
)
"""Keys the factory can make. Ed25519 is here only to test that it is refused."""


class KeyType(enum.StrEnum):
    """Key algorithm and size; the values equal ``CertificateInfo.key_algorithm``."""

    RSA_2048 = "RSA-2048"
    RSA_3072 = "RSA-3072"
    RSA_4096 = "RSA-4096"
    ECDSA_P256 = "ECDSA-P256"
    ECDSA_P384 = "ECDSA-P384"
    ECDSA_P521 = "ECDSA-P521"
    ED25519 = "Ed25519"
    """Not supported by CertAuto's destinations: for tests of ``UnsupportedKeyType``."""


_CURVES: dict[KeyType, ec.EllipticCurve] = {
    KeyType.ECDSA_P256: ec.SECP256R1(),
    KeyType.ECDSA_P384: ec.SECP384R1(),
    KeyType.ECDSA_P521: ec.SECP521R1(),
}
_RSA_SIZES: dict[KeyType, int] = {
    KeyType.RSA_2048: 2048,
    KeyType.RSA_3072: 3072,
    KeyType.RSA_4096: 4096,
}


def generate_private_key(key_type: KeyType) -> AnyPrivateKey:
    """A brand-new key of ``key_type`` (slow for RSA; prefer :class:`KeyPool`)."""
    if key_type in _RSA_SIZES:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_SIZES[key_type])
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type])
    return ed25519.Ed25519PrivateKey.generate()


def _public_der(key: AnyPrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


class KeyPool:
    """A small, thread-safe, per-process cache of generated keys, ``size`` per key type.

    Keys are generated lazily and handed out round-robin, so any ``size``
    consecutive :meth:`get` calls for one type return pairwise distinct keys,
    while a whole test session generates at most ``size`` keys per type. Tests
    that need a key nobody else has (say, to prove a destination replaced a
    re-keyed certificate) ask for ``fresh=True``.
    """

    def __init__(self, size: int = 8) -> None:
        if size < 2:
            raise ValueError("a KeyPool needs at least 2 keys per type to hand out distinct keys")
        self.size = size
        self._keys: dict[KeyType, list[AnyPrivateKey]] = {}
        self._next: dict[KeyType, int] = {}
        self._lock = threading.Lock()

    def get(
        self,
        key_type: KeyType,
        *,
        fresh: bool = False,
        avoid: Iterable[AnyPrivateKey] = (),
    ) -> AnyPrivateKey:
        """A key of ``key_type``: the next pooled one, or a new one if ``fresh``.

        :param avoid: keys that must not be returned (the factory passes the
            issuer's key, so a certificate never shares its CA's key).
        """
        if fresh:
            return generate_private_key(key_type)
        avoided = {_public_der(key) for key in avoid}
        with self._lock:
            keys = self._keys.setdefault(key_type, [])
            for _ in range(self.size):
                index = self._next.get(key_type, 0)
                self._next[key_type] = (index + 1) % self.size
                if index == len(keys):
                    keys.append(generate_private_key(key_type))
                key = keys[index]
                if _public_der(key) not in avoided:
                    return key
        return generate_private_key(key_type)


KUBERNETES_TLS_TYPE = "kubernetes.io/tls"
"""The Secret ``type`` of TLS Secrets (the API server then requires tls.crt and tls.key)."""

DEFAULT_KEY_POOL = KeyPool()
"""The pool every :class:`CertFactory` uses unless given its own."""


def encode_private_key(
    key: AnyPrivateKey,
    encoding: PrivateKeyEncoding = PrivateKeyEncoding.PKCS8,
    *,
    password: bytes | None = None,
) -> bytes:
    """PEM for ``key`` in ``encoding``; encrypted with ``password`` if one is given.

    PKCS#1 is for RSA keys only and SEC1 for ECDSA keys only, as in the real world.
    An encrypted PKCS#8 key is ``BEGIN ENCRYPTED PRIVATE KEY``; an encrypted PKCS#1
    or SEC1 key carries the ``Proc-Type: 4,ENCRYPTED`` header.
    """
    if encoding is PrivateKeyEncoding.PKCS1 and not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("PKCS#1 encoding is for RSA keys only")
    if encoding is PrivateKeyEncoding.SEC1 and not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("SEC1 encoding is for ECDSA keys only")
    protection: KeySerializationEncryption = (
        NoEncryption() if password is None else BestAvailableEncryption(password)
    )
    private_format = (
        PrivateFormat.PKCS8
        if encoding is PrivateKeyEncoding.PKCS8
        else PrivateFormat.TraditionalOpenSSL
    )
    return key.private_bytes(Encoding.PEM, private_format, protection)


def encode_secret_data(data: Mapping[str, bytes]) -> dict[str, str]:
    """Base64 each value, as a Kubernetes Secret's ``data`` field wants it."""
    return {name: base64.b64encode(value).decode("ascii") for name, value in data.items()}


def tls_secret_manifest(
    name: str,
    namespace: str,
    data: Mapping[str, bytes],
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    secret_type: str = KUBERNETES_TLS_TYPE,
) -> dict[str, object]:
    """A complete Secret body (``apiVersion: v1``) for ``data``, ready to create.

    Use ``secret_type="Opaque"`` for data the API server would refuse as
    ``kubernetes.io/tls`` (it requires both ``tls.crt`` and ``tls.key`` keys).
    """
    metadata: dict[str, object] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": secret_type,
        "data": encode_secret_data(data),
    }


@dataclass(frozen=True, repr=False, eq=False)
class IssuedCert:
    """A certificate, its private key and the :class:`IssuedCert` that signed it.

    ``issuer`` is None for a self-signed certificate (a root CA or a self-signed
    leaf), so walking ``issuer`` always ends at a root.
    """

    certificate: x509.Certificate
    private_key: AnyPrivateKey
    issuer: IssuedCert | None = None

    @property
    def subject(self) -> x509.Name:
        """The certificate's subject (what its children name as their issuer)."""
        return self.certificate.subject

    @property
    def common_name(self) -> str | None:
        """The subject's first common name, if it has one."""
        attributes = self.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not attributes:
            return None
        value = attributes[0].value
        return value.decode() if isinstance(value, bytes) else value

    @property
    def fingerprint(self) -> str:
        """Lower-case hex SHA-256 of the DER, as ``CertificateMaterial.fingerprint``."""
        return sha256_fingerprint(self.certificate)

    @property
    def not_before(self) -> datetime:
        """Start of validity (UTC)."""
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        """End of validity (UTC)."""
        return self.certificate.not_valid_after_utc

    @property
    def is_self_signed(self) -> bool:
        """Whether the certificate signed itself."""
        return self.issuer is None

    def issuers(self) -> tuple[IssuedCert, ...]:
        """The issuer, its issuer, ... up to and including the root; empty if self-signed."""
        found: list[IssuedCert] = []
        current = self.issuer
        while current is not None:
            found.append(current)
            current = current.issuer
        return tuple(found)

    def chain(self, *, include_root: bool = False) -> tuple[IssuedCert, ...]:
        """The issuers a server sends after this certificate: intermediates, root optional."""
        issuers = self.issuers()
        if issuers and not include_root:
            return issuers[:-1]
        return issuers

    def certificate_pem(self) -> bytes:
        """This certificate alone as PEM."""
        return self.certificate.public_bytes(Encoding.PEM)

    def private_key_pem(
        self,
        encoding: PrivateKeyEncoding = PrivateKeyEncoding.PKCS8,
        *,
        password: bytes | None = None,
    ) -> bytes:
        """This certificate's key as PEM (see :func:`encode_private_key`)."""
        return encode_private_key(self.private_key, encoding, password=password)

    def secret_data(
        self,
        *,
        chain: Sequence[IssuedCert] | None = None,
        include_root: bool = False,
        certificates: Sequence[IssuedCert] | None = None,
        key: AnyPrivateKey | IssuedCert | None = None,
        key_encoding: PrivateKeyEncoding = PrivateKeyEncoding.PKCS8,
        key_password: bytes | None = None,
        ca: IssuedCert | Sequence[IssuedCert] | None = None,
    ) -> dict[str, bytes]:
        """Decoded ``kubernetes.io/tls`` Secret data for this certificate.

        :param chain: certificates to put after this one in ``tls.crt``, in that
            order (default: :meth:`chain`); pass them out of order for bad chains.
        :param include_root: with the default chain, end it with the root.
        :param certificates: the exact content of ``tls.crt``, in order, replacing
            this certificate and ``chain`` (to put the leaf somewhere else).
        :param key: the key to put in ``tls.key`` instead of this certificate's own
            (another certificate's key makes a ``KeyMismatch``).
        :param key_encoding: PKCS#1, PKCS#8 (default) or SEC1.
        :param key_password: encrypt ``tls.key`` with this password.
        :param ca: certificate(s) for ``ca.crt``; omitted when None.
        """
        if certificates is None:
            chain = self.chain(include_root=include_root) if chain is None else chain
            certificates = [self, *chain]
        private_key = self.private_key if key is None else key
        if isinstance(private_key, IssuedCert):
            private_key = private_key.private_key
        data = {
            "tls.crt": b"".join(cert.certificate_pem() for cert in certificates),
            "tls.key": encode_private_key(private_key, key_encoding, password=key_password),
        }
        if ca is not None:
            bundle = [ca] if isinstance(ca, IssuedCert) else list(ca)
            data["ca.crt"] = b"".join(cert.certificate_pem() for cert in bundle)
        return data

    def secret_manifest(
        self,
        name: str,
        namespace: str,
        *,
        data: Mapping[str, bytes] | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> dict[str, object]:
        """A ``kubernetes.io/tls`` Secret body; ``data`` defaults to :meth:`secret_data`."""
        return tls_secret_manifest(
            name,
            namespace,
            self.secret_data() if data is None else data,
            labels=labels,
            annotations=annotations,
        )

    def material(self, data: Mapping[str, bytes] | None = None) -> CertificateMaterial:
        """The :class:`CertificateMaterial` destinations would receive for this certificate.

        ``data`` defaults to :meth:`secret_data`; pass ``leaf.secret_data(...)`` to
        choose the chain or key encoding. Raises
        :class:`~certauto_core.certs.material.MaterialError` for data that does not
        parse (an encrypted or unsupported key, say).
        """
        return parse_tls_secret_data(self.secret_data() if data is None else data)

    def __repr__(self) -> str:
        return (
            f"IssuedCert(subject={self.subject.rfc4514_string()!r}, "
            f"fingerprint={self.fingerprint[:16]}..., notAfter={self.not_after.isoformat()})"
        )


def _signature_hash(key: AnyPrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """The hash real CAs pair with the key: SHA-256, or SHA-384/512 for P-384/P-521."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size >= 521:
            return hashes.SHA512()
        if key.curve.key_size >= 384:
            return hashes.SHA384()
    return hashes.SHA256()


class CertFactory:
    """Makes realistic test certificates relative to a fixed ``now``.

    Defaults: roots valid from a day ago for ten years, intermediates for five,
    leaves from an hour ago for 90 days, RSA-2048 keys (what cert-manager makes by
    default), random serials. Pass ``now`` to make dates reproducible and pass the
    same ``now`` to validation.
    """

    def __init__(
        self,
        *,
        now: datetime | None = None,
        key_type: KeyType = KeyType.RSA_2048,
        key_pool: KeyPool | None = None,
        organization: str = "CertAuto Tests",
    ) -> None:
        moment = datetime.now(UTC) if now is None else now
        if moment.tzinfo is None:
            raise ValueError("CertFactory needs a timezone-aware 'now'")
        self.now = moment.astimezone(UTC).replace(microsecond=0)
        """The reference time; default validity periods are relative to it."""
        self.key_type = key_type
        self.key_pool = DEFAULT_KEY_POOL if key_pool is None else key_pool
        self.organization = organization

    def root_ca(
        self,
        common_name: str = "CertAuto Test Root CA",
        *,
        key_type: KeyType | None = None,
        key: AnyPrivateKey | None = None,
        fresh_key: bool = False,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        serial: int | None = None,
    ) -> IssuedCert:
        """A self-signed root CA."""
        return self._issue(
            self._name(common_name),
            issuer=None,
            key=self._key(key, key_type, fresh_key, None),
            period=self._period(not_before, not_after, timedelta(days=1), timedelta(days=3651)),
            serial=serial,
            ca_path_length=None,
            dns_names=(),
        )

    def intermediate_ca(
        self,
        issuer: IssuedCert,
        common_name: str = "CertAuto Test Intermediate CA",
        *,
        key_type: KeyType | None = None,
        key: AnyPrivateKey | None = None,
        fresh_key: bool = False,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        serial: int | None = None,
        path_length: int = 0,
    ) -> IssuedCert:
        """An intermediate CA signed by ``issuer`` (a root or another intermediate).

        Two intermediates made with the same ``common_name`` share a subject but
        not a key: put the wrong one in a chain to get a signature failure.
        """
        return self._issue(
            self._name(common_name),
            issuer=issuer,
            key=self._key(key, key_type, fresh_key, issuer),
            period=self._period(not_before, not_after, timedelta(days=1), timedelta(days=1826)),
            serial=serial,
            ca_path_length=path_length,
            dns_names=(),
        )

    def leaf(
        self,
        issuer: IssuedCert,
        dns_names: Sequence[str] = ("example.test",),
        *,
        common_name: str | None = None,
        key_type: KeyType | None = None,
        key: AnyPrivateKey | None = None,
        fresh_key: bool = False,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        serial: int | None = None,
    ) -> IssuedCert:
        """A TLS server certificate for ``dns_names`` signed by ``issuer``.

        The common name defaults to the first DNS name (if it fits in 64 characters).
        """
        return self._issue(
            self._leaf_name(common_name, dns_names),
            issuer=issuer,
            key=self._key(key, key_type, fresh_key, issuer),
            period=self._period(
                not_before, not_after, timedelta(hours=1), timedelta(days=90, hours=1)
            ),
            serial=serial,
            ca_path_length=None,
            dns_names=tuple(dns_names),
            leaf=True,
        )

    def self_signed_leaf(
        self,
        dns_names: Sequence[str] = ("example.test",),
        *,
        common_name: str | None = None,
        key_type: KeyType | None = None,
        key: AnyPrivateKey | None = None,
        fresh_key: bool = False,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        serial: int | None = None,
    ) -> IssuedCert:
        """A self-signed TLS server certificate, as ``openssl req -x509`` makes."""
        return self._issue(
            self._leaf_name(common_name, dns_names),
            issuer=None,
            key=self._key(key, key_type, fresh_key, None),
            period=self._period(
                not_before, not_after, timedelta(hours=1), timedelta(days=90, hours=1)
            ),
            serial=serial,
            ca_path_length=None,
            dns_names=tuple(dns_names),
            leaf=True,
        )

    def chain(
        self,
        dns_names: Sequence[str] = ("example.test",),
        *,
        intermediates: int = 1,
        key_type: KeyType | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> IssuedCert:
        """A leaf under a new root and ``intermediates`` intermediate CAs; returns the leaf.

        The CAs use the factory's key type; ``key_type`` and the dates apply to the leaf.
        """
        issuer = self.root_ca()
        for level in range(intermediates):
            suffix = f" {level + 1}" if intermediates > 1 else ""
            issuer = self.intermediate_ca(
                issuer,
                f"CertAuto Test Intermediate CA{suffix}",
                path_length=intermediates - level - 1,
            )
        return self.leaf(
            issuer, dns_names, key_type=key_type, not_before=not_before, not_after=not_after
        )

    def _period(
        self,
        not_before: datetime | None,
        not_after: datetime | None,
        backdate: timedelta,
        length: timedelta,
    ) -> tuple[datetime, datetime]:
        """Validity from ``now - backdate`` for ``length``, keeping whichever end was given.

        Giving only one end moves the other with it when it has to, so
        ``not_after=now - 3 days`` alone makes an expired certificate rather than an
        impossible one, and ``not_before`` alone makes one valid for ``length``.
        """
        if not_before is None:
            not_before = self.now - backdate
            if not_after is not None and not_after <= not_before:
                not_before = not_after - length
        if not_after is None:
            not_after = not_before + length
        return not_before, not_after

    def _name(self, common_name: str | None) -> x509.Name:
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization)]
        if common_name:
            attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        return x509.Name(attributes)

    def _leaf_name(self, common_name: str | None, dns_names: Sequence[str]) -> x509.Name:
        if common_name is None and dns_names and len(dns_names[0]) <= 64:
            common_name = dns_names[0]
        return self._name(common_name)

    def _key(
        self,
        key: AnyPrivateKey | None,
        key_type: KeyType | None,
        fresh: bool,
        issuer: IssuedCert | None,
    ) -> AnyPrivateKey:
        if key is not None:
            return key
        avoid = () if issuer is None else (issuer.private_key,)
        return self.key_pool.get(key_type or self.key_type, fresh=fresh, avoid=avoid)

    def _issue(
        self,
        subject: x509.Name,
        *,
        issuer: IssuedCert | None,
        key: AnyPrivateKey,
        period: tuple[datetime, datetime],
        serial: int | None,
        ca_path_length: int | None,
        dns_names: tuple[str, ...],
        leaf: bool = False,
    ) -> IssuedCert:
        signing_key = key if issuer is None else issuer.private_key
        issuer_name = subject if issuer is None else issuer.subject
        public_key = key.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number() if serial is None else serial)
            .not_valid_before(period[0])
            .not_valid_after(period[1])
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
                critical=False,
            )
        )
        if leaf:
            builder = (
                builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                .add_extension(
                    _key_usage(ca=False, rsa_key=isinstance(key, rsa.RSAPrivateKey)), True
                )
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            )
            if dns_names:
                san = x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names])
                builder = builder.add_extension(san, critical=False)
        else:
            builder = builder.add_extension(
                x509.BasicConstraints(ca=True, path_length=ca_path_length), critical=True
            ).add_extension(_key_usage(ca=True, rsa_key=False), critical=True)
        certificate = builder.sign(signing_key, _signature_hash(signing_key))
        return IssuedCert(certificate=certificate, private_key=key, issuer=issuer)


def _key_usage(*, ca: bool, rsa_key: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=rsa_key and not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
