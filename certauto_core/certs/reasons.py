"""Why certificate material was refused: the reason codes and the error type.

These live in their own module so that parsing (:mod:`.material`) and validation
(:mod:`.validation`) can both use them without importing each other. Import them
from :mod:`certauto_core.certs.validation` (``ValidationReason``,
``ValidationFailure``) or :mod:`certauto_core.certs.material` (``MaterialError``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["MaterialError", "ValidationFailure", "ValidationReason"]


class ValidationReason(enum.StrEnum):
    """Machine-readable reason a certificate was refused.

    The values are CamelCase because they are used verbatim as the ``reason`` of
    the binding's ``Validated`` condition (which Kubernetes requires to be
    CamelCase) and as the ``reason`` label of
    ``certauto_validation_failures_total``. Renaming a member is a breaking change
    for users' alerts: add new members instead. Member names equal their values,
    so ``ValidationReason.KeyMismatch == "KeyMismatch"``.
    """

    MissingCertificate = "MissingCertificate"
    """``tls.crt`` is absent or empty."""
    MissingPrivateKey = "MissingPrivateKey"
    """``tls.key`` is absent or empty."""
    InvalidCertificatePEM = "InvalidCertificatePEM"
    """``tls.crt`` (or ``ca.crt``) holds no parseable PEM certificate."""
    InvalidPrivateKeyPEM = "InvalidPrivateKeyPEM"
    """``tls.key`` holds no parseable PEM private key (or more than one)."""
    EncryptedPrivateKey = "EncryptedPrivateKey"
    """``tls.key`` is password protected; no destination can use it."""
    UnsupportedKeyType = "UnsupportedKeyType"
    """The key is not RSA or ECDSA on P-256/P-384/P-521 (e.g. Ed25519, DSA)."""
    KeyMismatch = "KeyMismatch"
    """``tls.key`` is not the private key of the leaf certificate."""
    ChainOrder = "ChainOrder"
    """``tls.crt`` is not ordered leaf first, then each issuer up to the root."""
    ChainSignature = "ChainSignature"
    """A certificate in the chain was not signed by the key of the next one."""
    Expired = "Expired"
    """The leaf (or an intermediate) is past its ``notAfter``."""
    NotYetValid = "NotYetValid"
    """The leaf (or an intermediate) is before its ``notBefore``."""
    InsufficientValidity = "InsufficientValidity"
    """The leaf expires sooner than ``validation.minRemainingValidity``."""


@dataclass(frozen=True)
class ValidationFailure:
    """A refusal: the reason code and a sentence for humans.

    ``message`` names what is wrong (subjects, dates, which Secret key) and never
    contains key material, so it is safe for conditions, events and logs.
    """

    reason: ValidationReason
    message: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class MaterialError(Exception):
    """Secret data that cannot be turned into :class:`CertificateMaterial` at all.

    Raised by :func:`certauto_core.certs.material.parse_tls_secret_data`. The
    message never contains key material, and the exception is raised without a
    chained cause from the key parser, so a traceback cannot leak it either.
    """

    reason: ValidationReason
    message: str

    def __init__(self, reason: ValidationReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"MaterialError({self.reason.value!r}, {self.message!r})"

    def to_failure(self) -> ValidationFailure:
        """The same refusal as a :class:`ValidationFailure` value."""
        return ValidationFailure(self.reason, self.message)
