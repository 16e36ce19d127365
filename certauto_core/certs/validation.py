"""The rules certificate material must pass before any destination is touched.

A failure is returned, not raised: it is an expected outcome that becomes the
binding's ``Validated=False`` condition (``reason`` = :class:`ValidationReason`),
a Warning event and a metric, while destinations keep their last good
certificate. Checks run from the most fundamental to the most time-dependent
(key, then chain, then dates), and the first failure is reported, so the message
points at the thing to fix first.

Intermediates are held to the same dates as the leaf (an expired intermediate
breaks clients just as an expired leaf does); a self-signed root at the end of
the chain is not, because clients use their own trust store for roots.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from itertools import pairwise

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from certauto_core.certs.info import (
    describe_certificate,
    describe_key,
    describe_name,
    format_rfc3339,
)
from certauto_core.certs.material import CertificateMaterial, parse_tls_secret_data
from certauto_core.certs.reasons import MaterialError, ValidationFailure, ValidationReason
from certauto_core.durations import format_duration

__all__ = [
    "ValidationFailure",
    "ValidationReason",
    "validate_material",
    "validate_secret_data",
]

_ORDER_HINT = "tls.crt must hold the leaf first, then each issuer in turn up to the root"


def validate_material(
    material: CertificateMaterial, *, now: datetime, min_remaining_validity: timedelta
) -> ValidationFailure | None:
    """Check ``material`` against every rule; return the first failure, or None if it passes.

    * the private key belongs to the leaf (``KeyMismatch``; ``ChainOrder`` when it
      belongs to another certificate of ``tls.crt``, i.e. the leaf is not first);
    * each certificate is followed by its issuer (``ChainOrder``) whose key
      verifies its signature (``ChainSignature``); a lone self-signed leaf passes;
    * ``now`` is within the validity of the leaf and intermediates
      (``NotYetValid``, ``Expired``);
    * the leaf is valid for at least ``min_remaining_validity`` more
      (``InsufficientValidity``).

    :param now: timezone-aware; passed in so callers and tests control the clock.
    :raises ValueError: if ``now`` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("validate_material needs a timezone-aware 'now' (e.g. datetime.now(UTC))")
    return (
        _check_key(material)
        or _check_chain(material)
        or _check_dates(material, now)
        or _check_remaining(material, now, min_remaining_validity)
    )


def validate_secret_data(
    data: Mapping[str, bytes], *, now: datetime, min_remaining_validity: timedelta
) -> CertificateMaterial | ValidationFailure:
    """Parse decoded Secret data and validate it: the material, or why it was refused.

    The reconciler's one call: parse errors (:class:`MaterialError`) and rule
    failures come back the same way, as a :class:`ValidationFailure`.
    """
    try:
        material = parse_tls_secret_data(data)
    except MaterialError as error:
        return error.to_failure()
    failure = validate_material(material, now=now, min_remaining_validity=min_remaining_validity)
    return material if failure is None else failure


def _spki(certificate: x509.Certificate) -> bytes | None:
    """The certificate's SubjectPublicKeyInfo, or None for an algorithm we cannot load."""
    try:
        return certificate.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
    except (UnsupportedAlgorithm, ValueError):
        return None


def _check_key(material: CertificateMaterial) -> ValidationFailure | None:
    key_spki = material.private_key.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    leaf = material.leaf
    leaf_spki = _spki(leaf)
    if leaf_spki is None:
        return ValidationFailure(
            ValidationReason.UnsupportedKeyType,
            f"the leaf certificate {describe_certificate(leaf)} has a public key of an "
            f"unsupported algorithm; use RSA or ECDSA on P-256, P-384 or P-521",
        )
    if leaf_spki == key_spki:
        return None
    for position, certificate in enumerate(material.chain, start=2):
        if _spki(certificate) == key_spki:
            return ValidationFailure(
                ValidationReason.ChainOrder,
                f"tls.key belongs to certificate #{position} in tls.crt "
                f"({describe_certificate(certificate)}), not to the first one "
                f"({describe_certificate(leaf)}); {_ORDER_HINT}",
            )
    return ValidationFailure(
        ValidationReason.KeyMismatch,
        f"tls.key ({describe_key(material.private_key)}) is not the private key of the "
        f"certificate {describe_certificate(leaf)} (serial {material.info.serial_number}, "
        f"key {material.info.key_algorithm}); the key was probably replaced or belongs to "
        f"an older certificate",
    )


def _check_chain(material: CertificateMaterial) -> ValidationFailure | None:
    certificates = [material.leaf, *material.chain]
    for index, (child, parent) in enumerate(pairwise(certificates)):
        child_label = f"certificate #{index + 1} ({describe_certificate(child)})"
        parent_label = f"certificate #{index + 2} ({describe_certificate(parent)})"
        if child.issuer != parent.subject:
            return ValidationFailure(
                ValidationReason.ChainOrder, _order_message(certificates, index)
            )
        try:
            child.verify_directly_issued_by(parent)
        except InvalidSignature:
            return ValidationFailure(
                ValidationReason.ChainSignature,
                f"{child_label} names {describe_name(child.issuer)} as its issuer, but its "
                f"signature does not verify with the key of {parent_label}: the chain holds a "
                f"different certificate with the same name (a re-keyed or replaced CA?)",
            )
        except (ValueError, TypeError, UnsupportedAlgorithm):
            return ValidationFailure(
                ValidationReason.ChainSignature,
                f"the signature of {child_label} by {parent_label} cannot be checked: it uses "
                f"an unsupported signature or key algorithm",
            )
    return None


def _order_message(certificates: list[x509.Certificate], index: int) -> str:
    child, parent = certificates[index], certificates[index + 1]
    child_label = f"certificate #{index + 1} ({describe_certificate(child)})"
    if child.issuer == child.subject:
        return (
            f"{child_label} is a self-signed root, but tls.crt continues with "
            f"{describe_certificate(parent)}; nothing may follow the root. {_ORDER_HINT}"
        )
    elsewhere = [
        position
        for position, candidate in enumerate(certificates, start=1)
        if position != index + 1 and candidate.subject == child.issuer
    ]
    where = f"which is certificate #{elsewhere[0]}" if elsewhere else "which is not in tls.crt"
    return (
        f"{child_label} is issued by {describe_name(child.issuer)} ({where}), but the next "
        f"certificate is {describe_certificate(parent)}; {_ORDER_HINT}"
    )


def _check_dates(material: CertificateMaterial, now: datetime) -> ValidationFailure | None:
    checked = [("the certificate", material.leaf)]
    checked += [
        (f"intermediate certificate #{position}", certificate)
        for position, certificate in enumerate(material.chain, start=2)
        if certificate.issuer != certificate.subject
    ]
    for role, certificate in checked:
        label = f"{role} {describe_certificate(certificate)}"
        not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
        if not_before > now:
            return ValidationFailure(
                ValidationReason.NotYetValid,
                f"{label} is not valid until {format_rfc3339(not_before)} "
                f"(in {_rounded(not_before - now)}); check the issuer's clock or wait",
            )
        if not_after <= now:
            return ValidationFailure(
                ValidationReason.Expired,
                f"{label} expired at {format_rfc3339(not_after)} ({_rounded(now - not_after)} ago)",
            )
    return None


def _check_remaining(
    material: CertificateMaterial, now: datetime, minimum: timedelta
) -> ValidationFailure | None:
    not_after = material.info.not_after
    remaining = not_after - now
    if remaining >= minimum:
        return None
    return ValidationFailure(
        ValidationReason.InsufficientValidity,
        f"the certificate {describe_certificate(material.leaf)} expires at "
        f"{format_rfc3339(not_after)}, in {_rounded(remaining)}, less than the required "
        f"minimum remaining validity of {format_duration(minimum)} "
        f"(spec.validation.minRemainingValidity); renew it first",
    )


def _rounded(delta: timedelta) -> str:
    """A duration for people: ``"90 days"``, ``"3 days 4h"``, or ``"5h30m"`` under two days.

    Rounded to the second, since certificate times have no fractions.
    """
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86_400)
    if days >= 2:
        hours = rest // 3_600
        return f"{days} days" + (f" {hours}h" if hours else "")
    return format_duration(timedelta(seconds=seconds))
