"""Reading PEM certificates and private keys out of Secret fields, with useful errors.

cryptography's loaders say little more than "Unable to load PEM file". Users who
put a certificate in a Secret make a handful of recognisable mistakes (fields
swapped, DER instead of PEM, base64 applied twice, a password-protected or OpenSSH
key), so we look at the PEM block labels first and name the mistake.

Key material is never echoed: messages are built only from our own text, PEM block
labels (matched by ``[A-Z0-9 ]+``) and key algorithm names, and errors from the key
parser are raised ``from None`` so that no chained exception can carry them either.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from certauto_core.certs.info import describe_key, is_supported_curve
from certauto_core.certs.reasons import MaterialError, ValidationReason

__all__ = [
    "PrivateKeyEncoding",
    "SupportedPrivateKey",
    "load_certificates",
    "load_private_key",
    "pem_labels",
]

SupportedPrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
"""The private key types every destination (Kubernetes, Key Vault, ACM) accepts."""


class PrivateKeyEncoding(enum.StrEnum):
    """How a private key is written in PEM; the names match cert-manager's ``encoding``."""

    PKCS1 = "PKCS1"
    """``-----BEGIN RSA PRIVATE KEY-----`` (RSA only; cert-manager's default)."""
    PKCS8 = "PKCS8"
    """``-----BEGIN PRIVATE KEY-----`` (any algorithm; what Key Vault requires)."""
    SEC1 = "SEC1"
    """``-----BEGIN EC PRIVATE KEY-----`` (ECDSA only)."""


_KEY_LABELS: dict[str, PrivateKeyEncoding] = {
    "RSA PRIVATE KEY": PrivateKeyEncoding.PKCS1,
    "PRIVATE KEY": PrivateKeyEncoding.PKCS8,
    "EC PRIVATE KEY": PrivateKeyEncoding.SEC1,
}
_CERTIFICATE_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE"})
_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,64})-----")
_PROC_TYPE_ENCRYPTED = re.compile(rb"^Proc-Type:[ \t]*4,[ \t]*ENCRYPTED", re.M)
"""The RFC 1421 header of a password-protected traditional (PKCS#1/SEC1) key."""
_SUPPORTED = "RSA or ECDSA on P-256, P-384 or P-521"


def pem_labels(data: bytes) -> list[str]:
    """The labels of the PEM blocks in ``data``, in order (``["CERTIFICATE", ...]``)."""
    return [m.group(1).decode("ascii") for m in _BEGIN.finditer(data)]


def _not_pem_hint(data: bytes, field: str, what: str) -> str:
    """Explain why ``data`` (which has no PEM block at all) is not what we expect."""
    stripped = data.strip()
    if stripped[:1] == b"\x30":
        return (
            f"{field} looks like binary DER; Kubernetes TLS Secrets need PEM "
            f"(convert with 'openssl x509 -inform der' or 'openssl pkey -inform der')"
        )
    try:
        decoded = base64.b64decode(stripped, validate=False)
    except (binascii.Error, ValueError):
        decoded = b""
    if b"-----BEGIN " in decoded:
        return f"{field} is base64-encoded PEM; it was encoded twice, store the PEM text itself"
    return f"{field} does not contain a PEM {what} (no '-----BEGIN ...-----' line)"


def load_certificates(data: bytes, *, field: str) -> list[x509.Certificate]:
    """Parse every PEM certificate in ``data`` (``tls.crt`` or ``ca.crt``), in order.

    Text outside PEM blocks (such as the ``subject=`` lines openssl prints) is
    ignored, as are blocks of other types, but every ``CERTIFICATE`` block must
    parse: a truncated chain is an error, not a shorter chain.

    :raises MaterialError: ``InvalidCertificatePEM``.
    """
    labels = pem_labels(data)
    if not _CERTIFICATE_LABELS.intersection(labels):
        if not labels:
            message = _not_pem_hint(data, field, "certificate")
        elif any(label.endswith("PRIVATE KEY") for label in labels):
            message = (
                f"{field} holds a private key but no certificate; are tls.crt and tls.key swapped?"
            )
        else:
            found = ", ".join(sorted(set(labels)))
            message = f"{field} holds PEM blocks of type {found}, but no CERTIFICATE"
        raise MaterialError(ValidationReason.InvalidCertificatePEM, message)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise MaterialError(
            ValidationReason.InvalidCertificatePEM,
            f"{field} holds a CERTIFICATE block that is not a valid X.509 certificate "
            f"(truncated or corrupted PEM?)",
        ) from None
    expected = sum(1 for label in labels if label in _CERTIFICATE_LABELS)
    if len(certificates) != expected:
        # cryptography skips a block whose END line is missing: a chain cut short
        # by a bad copy-paste must not pass as a shorter chain.
        raise MaterialError(
            ValidationReason.InvalidCertificatePEM,
            f"{field} has {expected} BEGIN CERTIFICATE lines but only {len(certificates)} "
            f"complete certificates (truncated PEM?)",
        )
    return certificates


def _key_block(data: bytes, label: str) -> bytes:
    """Just the PEM block with ``label``: other blocks (``EC PARAMETERS``) are noise."""
    escaped = re.escape(label.encode("ascii"))
    begin, end = rb"-----BEGIN " + escaped + rb"-----", rb"-----END " + escaped + rb"-----"
    pattern = re.compile(begin + rb".*?" + end, re.S)
    match = pattern.search(data)
    return match.group(0) if match else data


def load_private_key(data: bytes) -> tuple[SupportedPrivateKey, PrivateKeyEncoding]:
    """Parse the one unencrypted PEM private key in ``tls.key`` and say how it was encoded.

    Accepts PKCS#1 (RSA), SEC1 (EC) and PKCS#8 (either). Tells apart the mistakes
    users make: an encrypted key, an OpenSSH key, a certificate in the key field,
    several keys, a key type destinations cannot import.

    :raises MaterialError: ``InvalidPrivateKeyPEM``, ``EncryptedPrivateKey`` or
        ``UnsupportedKeyType``.
    """
    labels = pem_labels(data)
    key_labels = [label for label in labels if label.endswith("PRIVATE KEY")]
    if not key_labels:
        if not labels:
            message = _not_pem_hint(data, "tls.key", "private key")
        elif _CERTIFICATE_LABELS.intersection(labels):
            message = (
                "tls.key holds a certificate but no private key; are tls.crt and tls.key swapped?"
            )
        else:
            found = ", ".join(sorted(set(labels)))
            message = f"tls.key holds PEM blocks of type {found}, but no PRIVATE KEY"
        raise MaterialError(ValidationReason.InvalidPrivateKeyPEM, message)
    if len(key_labels) > 1:
        raise MaterialError(
            ValidationReason.InvalidPrivateKeyPEM,
            f"tls.key holds {len(key_labels)} private keys; it must hold exactly one",
        )
    label = key_labels[0]
    block = _key_block(data, label)
    if label == "ENCRYPTED PRIVATE KEY" or _PROC_TYPE_ENCRYPTED.search(block):
        raise _encrypted()
    if label == "OPENSSH PRIVATE KEY":
        raise MaterialError(
            ValidationReason.InvalidPrivateKeyPEM,
            "tls.key is an OpenSSH private key; convert it to PEM PKCS#8 "
            "(ssh-keygen -p -m PKCS8 -f KEYFILE) before storing it in a TLS Secret",
        )
    if label in {"DSA PRIVATE KEY", "OPENSSL DSA PRIVATE KEY"}:
        raise MaterialError(
            ValidationReason.UnsupportedKeyType,
            f"tls.key is a DSA key; destinations accept only {_SUPPORTED} keys",
        )
    encoding = _KEY_LABELS.get(label)
    if encoding is None:
        raise MaterialError(
            ValidationReason.InvalidPrivateKeyPEM,
            f"tls.key holds a '{label}' block; expected 'RSA PRIVATE KEY' (PKCS#1), "
            f"'EC PRIVATE KEY' (SEC1) or 'PRIVATE KEY' (PKCS#8)",
        )
    try:
        # OpenSSL's RSA key check tests p and q for primality: ~40 ms per 2048-bit
        # key, paid on every reconcile. _rsa_is_consistent does the checks that
        # matter for a key we only pass on (do its parts fit together?) in microseconds.
        key = load_pem_private_key(block, password=None, unsafe_skip_rsa_key_validation=True)
    except TypeError:
        # cryptography signals "this key needs a password" with TypeError.
        raise _encrypted() from None
    except UnsupportedAlgorithm:
        raise MaterialError(
            ValidationReason.UnsupportedKeyType,
            f"tls.key uses a key algorithm that cannot be loaded; use {_SUPPORTED}",
        ) from None
    except ValueError:
        raise MaterialError(
            ValidationReason.InvalidPrivateKeyPEM,
            f"tls.key holds a '{label}' block that cannot be parsed (truncated or corrupted?)",
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if not _rsa_is_consistent(key):
            raise MaterialError(
                ValidationReason.InvalidPrivateKeyPEM,
                "tls.key is a damaged RSA key: its private and public parts do not fit together",
            )
        return key, encoding
    if isinstance(key, ec.EllipticCurvePrivateKey) and is_supported_curve(key.curve):
        return key, encoding
    raise MaterialError(
        ValidationReason.UnsupportedKeyType,
        f"tls.key is a key of type {describe_key(key)}; destinations accept only {_SUPPORTED} keys",
    )


def _rsa_is_consistent(key: rsa.RSAPrivateKey) -> bool:
    """Whether the RSA key's numbers agree: n = pq, e·d = 1 mod p-1 and q-1, CRT values.

    A key that passes signs and decrypts correctly with its public half. (It does
    not prove p and q prime; every real key generator makes them so.)
    """
    numbers = key.private_numbers()
    p, q, d = numbers.p, numbers.q, numbers.d
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    return (
        p > 1
        and q > 1
        and p * q == n
        and e > 2
        and (d * e) % (p - 1) == 1
        and (d * e) % (q - 1) == 1
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        and (numbers.iqmp * q) % p == 1
    )


def _encrypted() -> MaterialError:
    return MaterialError(
        ValidationReason.EncryptedPrivateKey,
        "tls.key is encrypted with a password; Kubernetes TLS Secrets and every destination "
        "need the unencrypted key (decrypt it with 'openssl pkey -in KEYFILE -out PLAINFILE')",
    )
