"""The rules a certificate must pass before CertAuto pushes it anywhere.

Each test builds the Secret a user could really have (a re-keyed intermediate, a
chain pasted in the wrong order, a certificate about to expire) and checks the
reason code and that the message names the culprit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from certauto_core.certs.material import CertificateMaterial, parse_tls_secret_data
from certauto_core.certs.validation import (
    ValidationFailure,
    ValidationReason,
    validate_material,
    validate_secret_data,
)
from certauto_core.testing.certs import CertFactory, IssuedCert, KeyType, PrivateKeyEncoding

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MIN_VALIDITY = timedelta(hours=24)


@pytest.fixture(scope="module")
def factory() -> CertFactory:
    return CertFactory(now=NOW)


@pytest.fixture(scope="module")
def root(factory: CertFactory) -> IssuedCert:
    return factory.root_ca("Example Root CA")


@pytest.fixture(scope="module")
def intermediate(factory: CertFactory, root: IssuedCert) -> IssuedCert:
    return factory.intermediate_ca(root, "Example Issuing CA")


@pytest.fixture(scope="module")
def leaf(factory: CertFactory, intermediate: IssuedCert) -> IssuedCert:
    return factory.leaf(intermediate, ["web.example.test"])


def check(
    data: dict[str, bytes], *, now: datetime = NOW, minimum: timedelta = MIN_VALIDITY
) -> CertificateMaterial | ValidationFailure:
    return validate_secret_data(data, now=now, min_remaining_validity=minimum)


def failure(
    data: dict[str, bytes], *, now: datetime = NOW, minimum: timedelta = MIN_VALIDITY
) -> ValidationFailure:
    result = check(data, now=now, minimum=minimum)
    assert isinstance(result, ValidationFailure), f"expected a failure, got {result!r}"
    return result


# --- every reason, from realistic input -----------------------------------------------

Scenario = Callable[[CertFactory], dict[str, bytes]]


def _chain_out_of_order(factory: CertFactory) -> dict[str, bytes]:
    root = factory.root_ca()
    intermediate = factory.intermediate_ca(root)
    leaf = factory.leaf(intermediate, ["shop.example.test"])
    return leaf.secret_data(chain=[root, intermediate])


def _chain_with_rekeyed_intermediate(factory: CertFactory) -> dict[str, bytes]:
    root = factory.root_ca()
    leaf = factory.leaf(factory.intermediate_ca(root), ["shop.example.test"])
    return leaf.secret_data(chain=[factory.intermediate_ca(root)])


SCENARIOS: dict[ValidationReason, Scenario] = {
    ValidationReason.MissingCertificate: lambda f: {
        "tls.key": f.self_signed_leaf().private_key_pem()
    },
    ValidationReason.MissingPrivateKey: lambda f: {
        "tls.crt": f.self_signed_leaf().certificate_pem()
    },
    ValidationReason.InvalidCertificatePEM: lambda f: (
        f.self_signed_leaf().secret_data()
        | {"tls.crt": b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"}
    ),
    ValidationReason.InvalidPrivateKeyPEM: lambda f: (
        f.self_signed_leaf().secret_data() | {"tls.key": b"please fill in\n"}
    ),
    ValidationReason.EncryptedPrivateKey: lambda f: f.self_signed_leaf().secret_data(
        key_password=b"s3cret"
    ),
    ValidationReason.UnsupportedKeyType: lambda f: f.self_signed_leaf(
        key_type=KeyType.ED25519
    ).secret_data(),
    ValidationReason.KeyMismatch: lambda f: f.self_signed_leaf().secret_data(
        key=f.self_signed_leaf()
    ),
    ValidationReason.ChainOrder: _chain_out_of_order,
    ValidationReason.ChainSignature: _chain_with_rekeyed_intermediate,
    ValidationReason.Expired: lambda f: f.self_signed_leaf(
        not_before=NOW - 90 * DAY, not_after=NOW - DAY
    ).secret_data(),
    ValidationReason.NotYetValid: lambda f: f.self_signed_leaf(
        not_before=NOW + DAY, not_after=NOW + 90 * DAY
    ).secret_data(),
    ValidationReason.InsufficientValidity: lambda f: f.self_signed_leaf(
        not_after=NOW + timedelta(hours=5)
    ).secret_data(),
}


def test_every_reason_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(ValidationReason)


@pytest.mark.parametrize("reason", list(ValidationReason))
def test_each_reason_is_produced_by_realistic_input(
    factory: CertFactory, reason: ValidationReason
) -> None:
    result = failure(SCENARIOS[reason](factory))

    assert result.reason is reason
    assert result.message
    assert "PRIVATE KEY-----" not in result.message
    assert "s3cret" not in result.message


@pytest.mark.parametrize("reason", list(ValidationReason))
def test_reasons_are_valid_kubernetes_condition_reasons(reason: ValidationReason) -> None:
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", reason.value)
    assert reason.name == reason.value
    assert ValidationReason(reason.value) is reason


# --- passing material -----------------------------------------------------------------


@pytest.mark.parametrize("include_root", [False, True])
def test_well_formed_chain_passes(leaf: IssuedCert, *, include_root: bool) -> None:
    result = check(leaf.secret_data(include_root=include_root))

    assert isinstance(result, CertificateMaterial)
    assert result.fingerprint == leaf.fingerprint


def test_lone_self_signed_leaf_passes(factory: CertFactory) -> None:
    assert isinstance(check(factory.self_signed_leaf().secret_data()), CertificateMaterial)


def test_leaf_without_its_intermediates_passes(leaf: IssuedCert, root: IssuedCert) -> None:
    # Clients may fetch intermediates themselves; CertAuto only checks what is there.
    assert isinstance(check(leaf.secret_data(chain=[])), CertificateMaterial)


def test_deep_chain_with_ecdsa_issuers_passes() -> None:
    factory = CertFactory(now=NOW, key_type=KeyType.ECDSA_P384)
    leaf = factory.chain(["deep.example.test"], intermediates=3, key_type=KeyType.ECDSA_P256)

    assert isinstance(check(leaf.secret_data(include_root=True)), CertificateMaterial)


def test_cert_manager_style_pkcs1_secret_with_ca_passes(leaf: IssuedCert, root: IssuedCert) -> None:
    data = leaf.secret_data(key_encoding=PrivateKeyEncoding.PKCS1, ca=root)
    assert isinstance(check(data), CertificateMaterial)


# --- key ------------------------------------------------------------------------------


def test_key_of_another_certificate_is_a_mismatch(
    factory: CertFactory, intermediate: IssuedCert, leaf: IssuedCert
) -> None:
    # A renewal that rotated the key but left the old tls.key behind.
    older = factory.leaf(intermediate, ["web.example.test"], fresh_key=True)
    result = failure(leaf.secret_data(key=older))

    assert result.reason is ValidationReason.KeyMismatch
    assert "is not the private key of the certificate CN=web.example.test" in result.message


def test_key_of_a_different_algorithm_is_a_mismatch(leaf: IssuedCert, factory: CertFactory) -> None:
    ec_key = factory.self_signed_leaf(key_type=KeyType.ECDSA_P256).private_key
    result = failure(leaf.secret_data(key=ec_key))

    assert result.reason is ValidationReason.KeyMismatch
    assert "ECDSA-P256" in result.message
    assert "RSA-2048" in result.message


def test_leaf_not_first_in_tls_crt_is_reported_as_chain_order(
    leaf: IssuedCert, intermediate: IssuedCert
) -> None:
    result = failure(leaf.secret_data(certificates=[intermediate, leaf]))

    assert result.reason is ValidationReason.ChainOrder
    assert "tls.key belongs to certificate #2 in tls.crt (CN=web.example.test)" in result.message


# --- chain ----------------------------------------------------------------------------


def test_chain_out_of_order(leaf: IssuedCert, intermediate: IssuedCert, root: IssuedCert) -> None:
    result = failure(leaf.secret_data(chain=[root, intermediate]))

    assert result.reason is ValidationReason.ChainOrder
    assert "certificate #1 (CN=web.example.test) is issued by CN=Example Issuing CA" in (
        result.message
    )
    assert "which is certificate #3" in result.message
    assert "the next certificate is CN=Example Root CA" in result.message


def test_missing_intermediate_with_root_present(leaf: IssuedCert, root: IssuedCert) -> None:
    result = failure(leaf.secret_data(chain=[root]))

    assert result.reason is ValidationReason.ChainOrder
    assert "which is not in tls.crt" in result.message


def test_nothing_may_follow_the_root(
    factory: CertFactory, leaf: IssuedCert, intermediate: IssuedCert, root: IssuedCert
) -> None:
    stray = factory.root_ca("Some Other Root")
    result = failure(leaf.secret_data(chain=[intermediate, root, stray]))

    assert result.reason is ValidationReason.ChainOrder
    assert "certificate #3 (CN=Example Root CA) is a self-signed root" in result.message


def test_same_named_but_rekeyed_intermediate_fails_the_signature_check(
    factory: CertFactory, root: IssuedCert, leaf: IssuedCert
) -> None:
    # The issuing CA was re-keyed; tls.crt still carries the new one for an old leaf.
    rekeyed = factory.intermediate_ca(root, "Example Issuing CA")
    assert rekeyed.subject == leaf.issuers()[0].subject

    result = failure(leaf.secret_data(chain=[rekeyed, root]))

    assert result.reason is ValidationReason.ChainSignature
    assert "does not verify with the key of certificate #2 (CN=Example Issuing CA)" in (
        result.message
    )


def test_bad_signature_higher_up_the_chain_is_found(
    factory: CertFactory, leaf: IssuedCert, intermediate: IssuedCert
) -> None:
    impostor_root = factory.root_ca("Example Root CA")
    result = failure(leaf.secret_data(chain=[intermediate, impostor_root]))

    assert result.reason is ValidationReason.ChainSignature
    assert "certificate #2 (CN=Example Issuing CA)" in result.message


# --- dates ----------------------------------------------------------------------------


def test_expired_leaf(factory: CertFactory, intermediate: IssuedCert) -> None:
    expired = factory.leaf(intermediate, ["old.example.test"], not_after=NOW - 3 * DAY)
    result = failure(expired.secret_data())

    assert result.reason is ValidationReason.Expired
    assert result.message == (
        "the certificate CN=old.example.test expired at 2025-05-29T12:00:00Z (3 days ago)"
    )


def test_certificate_expiring_exactly_now_is_expired(
    factory: CertFactory, intermediate: IssuedCert
) -> None:
    boundary = factory.leaf(intermediate, not_after=NOW)
    assert failure(boundary.secret_data(), minimum=timedelta(0)).reason is ValidationReason.Expired


def test_not_yet_valid_leaf(factory: CertFactory, intermediate: IssuedCert) -> None:
    # Issued by a CA whose clock runs ahead.
    early = factory.leaf(intermediate, ["early.example.test"], not_before=NOW + timedelta(hours=2))
    result = failure(early.secret_data())

    assert result.reason is ValidationReason.NotYetValid
    assert "CN=early.example.test is not valid until 2025-06-01T14:00:00Z (in 2h)" in (
        result.message
    )


def test_expired_intermediate_is_refused_even_with_a_valid_leaf(
    factory: CertFactory, root: IssuedCert
) -> None:
    old_ca = factory.intermediate_ca(
        root, "Retired Issuing CA", not_before=NOW - 400 * DAY, not_after=NOW - DAY
    )
    leaf = factory.leaf(old_ca, ["web.example.test"])
    result = failure(leaf.secret_data())

    assert result.reason is ValidationReason.Expired
    assert "intermediate certificate #2 CN=Retired Issuing CA expired" in result.message


def test_expired_root_at_the_end_of_the_chain_is_ignored(factory: CertFactory) -> None:
    # Clients trust roots from their own store, so an old root copy does no harm.
    old_root = factory.root_ca("Old Root", not_before=NOW - 4000 * DAY, not_after=NOW - DAY)
    leaf = factory.leaf(factory.intermediate_ca(old_root), ["web.example.test"])

    assert isinstance(check(leaf.secret_data(include_root=True)), CertificateMaterial)


# --- remaining validity -----------------------------------------------------------------


def test_remaining_validity_below_the_minimum(
    factory: CertFactory, intermediate: IssuedCert
) -> None:
    soon = factory.leaf(intermediate, ["soon.example.test"], not_after=NOW + timedelta(hours=20))
    result = failure(soon.secret_data(), minimum=timedelta(hours=24))

    assert result.reason is ValidationReason.InsufficientValidity
    assert result.message.startswith(
        "the certificate CN=soon.example.test expires at 2025-06-02T08:00:00Z, in 20h, "
        "less than the required minimum remaining validity of 24h"
    )


def test_remaining_validity_exactly_the_minimum_passes(
    factory: CertFactory, intermediate: IssuedCert
) -> None:
    exact = factory.leaf(intermediate, not_after=NOW + timedelta(hours=24))
    assert isinstance(check(exact.secret_data(), minimum=timedelta(hours=24)), CertificateMaterial)


def test_zero_minimum_accepts_any_unexpired_certificate(
    factory: CertFactory, intermediate: IssuedCert
) -> None:
    last_second = factory.leaf(intermediate, not_after=NOW + timedelta(seconds=1))
    assert isinstance(check(last_second.secret_data(), minimum=timedelta(0)), CertificateMaterial)


# --- order of checks and API ------------------------------------------------------------


def test_key_problems_are_reported_before_dates(
    factory: CertFactory, intermediate: IssuedCert, leaf: IssuedCert
) -> None:
    expired = factory.leaf(intermediate, not_after=NOW - DAY)
    assert failure(expired.secret_data(key=leaf)).reason is ValidationReason.KeyMismatch


def test_validate_material_returns_none_when_everything_passes(leaf: IssuedCert) -> None:
    material = parse_tls_secret_data(leaf.secret_data())
    assert validate_material(material, now=NOW, min_remaining_validity=MIN_VALIDITY) is None


def test_validate_material_needs_an_aware_clock(leaf: IssuedCert) -> None:
    material = parse_tls_secret_data(leaf.secret_data())
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_material(material, now=datetime(2025, 6, 1), min_remaining_validity=DAY)


def test_now_in_another_timezone_is_the_same_instant(
    factory: CertFactory, intermediate: IssuedCert
) -> None:
    soon = factory.leaf(intermediate, not_after=NOW + timedelta(hours=20))
    tokyo = NOW.astimezone(timezone(timedelta(hours=9)))
    assert failure(soon.secret_data(), now=tokyo).reason is ValidationReason.InsufficientValidity


def test_failure_str_names_reason_and_message() -> None:
    result = ValidationFailure(ValidationReason.Expired, "the certificate CN=x expired")
    assert str(result) == "Expired: the certificate CN=x expired"
