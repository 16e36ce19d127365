"""ACM's import and re-import rules, checked without any call (pure, fast)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from acm_support import material_from_objects
from certauto_acm.rules import (
    ALL_ACM_KEY_TYPES,
    KEY_ALGORITHMS,
    UnimportableMaterialError,
    check_importable,
    reimport_blockers,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from certauto_core.certs.material import CertificateMaterial
from certauto_core.testing.certs import CertFactory, IssuedCert, KeyType


def test_the_table_is_acms_whole_list() -> None:
    """From "Prerequisites for importing ACM certificates": seven algorithms."""
    assert ALL_ACM_KEY_TYPES == (
        "RSA_1024",
        "RSA_2048",
        "RSA_3072",
        "RSA_4096",
        "EC_prime256v1",
        "EC_secp384r1",
        "EC_secp521r1",
    )
    refused = [a.acm_name for a in KEY_ALGORITHMS if not a.importable]
    assert refused == ["RSA_1024"], "only 1024-bit RSA is refused, by CertAuto's own policy"


@pytest.mark.parametrize(
    "key_type",
    [
        KeyType.RSA_2048,
        KeyType.RSA_3072,
        KeyType.RSA_4096,
        KeyType.ECDSA_P256,
        KeyType.ECDSA_P384,
        KeyType.ECDSA_P521,
    ],
)
def test_every_key_type_acm_imports_is_accepted(
    certs: CertFactory, issuer: IssuedCert, key_type: KeyType
) -> None:
    check_importable(material_from_objects(certs, issuer, key_type=key_type))


def test_rsa_1024_is_refused_with_the_reason(certs: CertFactory, issuer: IssuedCert) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - on purpose
    material = material_from_objects(certs, issuer, key=weak)

    with pytest.raises(UnimportableMaterialError) as refused:
        check_importable(material)

    assert "RSA-1024 key refused" in str(refused.value)
    assert "RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384, ECDSA-P521" in str(refused.value)


def test_a_key_acm_does_not_know_is_refused(certs: CertFactory, issuer: IssuedCert) -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    material = material_from_objects(certs, issuer, key=key)

    with pytest.raises(UnimportableMaterialError, match="ACM cannot import a ECDSA-secp256k1 key"):
        check_importable(material)


def test_a_ca_signed_certificate_needs_its_chain(certs: CertFactory, issuer: IssuedCert) -> None:
    leaf = certs.leaf(issuer, ["web.example.test"])
    material = leaf.material(leaf.secret_data(chain=[]))

    with pytest.raises(UnimportableMaterialError, match="needs the certificate chain"):
        check_importable(material)


def test_a_self_signed_certificate_needs_no_chain(certs: CertFactory) -> None:
    check_importable(certs.self_signed_leaf(["web.example.test"]).material())


def test_a_chain_out_of_order_is_refused(certs: CertFactory) -> None:
    root = certs.root_ca()
    intermediate = certs.intermediate_ca(root)
    leaf = certs.leaf(intermediate, ["web.example.test"])
    material = leaf.material(leaf.secret_data(chain=[root, intermediate]))

    with pytest.raises(UnimportableMaterialError, match="chain certificate 1 is not the issuer"):
        check_importable(material)


def test_a_chain_with_its_root_is_accepted(certs: CertFactory, issuer: IssuedCert) -> None:
    leaf = certs.leaf(issuer, ["web.example.test"])
    check_importable(leaf.material(leaf.secret_data(include_root=True)))


def test_a_chain_repeating_the_leaf_is_refused(certs: CertFactory) -> None:
    leaf = certs.self_signed_leaf(["web.example.test"])
    material = leaf.material(leaf.secret_data(chain=[leaf]))

    with pytest.raises(UnimportableMaterialError, match="must not repeat the leaf"):
        check_importable(material)


def _custom_leaf(
    *,
    ocsp_url: str | None = None,
    key_usage: x509.KeyUsage | None = None,
    extended: list[x509.ObjectIdentifier] | None = None,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None,
) -> x509.Certificate:
    """A self-signed leaf with exactly the extensions asked for."""
    signing = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web.example.test")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signing.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("web.example.test")]), critical=False
        )
    )
    if ocsp_url is not None:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
                    )
                ]
            ),
            critical=False,
        )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if extended is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    return builder.sign(signing, hashes.SHA256())


def _usage(*, key_encipherment: bool = False, key_agreement: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def test_an_ocsp_url_longer_than_1000_characters_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    long_url = "http://ocsp.example.test/" + "a" * 1000
    material = CertificateMaterial(
        leaf=_custom_leaf(ocsp_url=long_url, key=key), chain=(), private_key=key
    )

    with pytest.raises(UnimportableMaterialError, match="OCSP URL is longer than ACM's 1000"):
        check_importable(material)

    short = CertificateMaterial(
        leaf=_custom_leaf(ocsp_url="http://ocsp.example.test/", key=key), chain=(), private_key=key
    )
    check_importable(short)


# -- re-import ---------------------------------------------------------------------------


def test_a_renewal_with_the_same_key_type_can_be_reimported(
    certs: CertFactory, issuer: IssuedCert
) -> None:
    old = certs.leaf(issuer, ["web.example.test"]).certificate
    new = certs.leaf(issuer, ["web.example.test", "www.example.test"]).certificate
    assert reimport_blockers(old, new) == []


@pytest.mark.parametrize(
    ("old_type", "new_type", "expected"),
    [
        (KeyType.RSA_2048, KeyType.ECDSA_P256, "from RSA_2048 to EC_prime256v1"),
        (KeyType.RSA_2048, KeyType.RSA_4096, "from RSA_2048 to RSA_4096"),
        (KeyType.ECDSA_P256, KeyType.ECDSA_P384, "from EC_prime256v1 to EC_secp384r1"),
    ],
)
def test_the_key_type_and_size_cannot_change(
    certs: CertFactory, issuer: IssuedCert, old_type: KeyType, new_type: KeyType, expected: str
) -> None:
    old = certs.leaf(issuer, ["web.example.test"], key_type=old_type).certificate
    new = certs.leaf(issuer, ["web.example.test"], key_type=new_type).certificate
    assert reimport_blockers(old, new) == [f"the key type changes {expected}"]


def test_key_usage_values_cannot_be_dropped_but_keyencipherment_may_go_for_ecdsa() -> None:
    old = _custom_leaf(key_usage=_usage(key_encipherment=True, key_agreement=True))
    assert reimport_blockers(old, _custom_leaf(key_usage=_usage(key_encipherment=True))) == [
        "the new certificate drops Key Usage key_agreement"
    ]
    # RFC 5480: keyEncipherment does not belong on an ECDSA certificate; ACM lets it go.
    assert reimport_blockers(old, _custom_leaf(key_usage=_usage(key_agreement=True))) == []


def test_extended_key_usage_values_cannot_be_dropped_except_client_auth() -> None:
    server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    old = _custom_leaf(extended=[server, client])
    assert reimport_blockers(old, _custom_leaf(extended=[server])) == []
    assert reimport_blockers(old, _custom_leaf(extended=[client])) == [
        f"the new certificate drops Extended Key Usage {server.dotted_string}"
    ]


def test_key_usage_extensions_cannot_appear_on_a_reimport() -> None:
    bare = _custom_leaf()
    with_usages = _custom_leaf(key_usage=_usage(), extended=[ExtendedKeyUsageOID.SERVER_AUTH])
    assert reimport_blockers(bare, with_usages) == [
        "the new certificate adds a Key Usage extension",
        "the new certificate adds an Extended Key Usage extension",
    ]
