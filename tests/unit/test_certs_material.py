"""Parsing a TLS Secret into CertificateMaterial, and the test-certificate factory.

Inputs are what users really put in Secrets: cert-manager output (PKCS#1 by
default), ``openssl`` output (SEC1 with an ``EC PARAMETERS`` block, ``subject=``
lines), Windows line endings, and the usual mistakes (fields swapped, DER, base64
applied twice, encrypted keys).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    pkcs12,
)

from certauto_core.certs.material import (
    CertificateMaterial,
    MaterialError,
    PrivateKeyEncoding,
    parse_tls_secret_data,
)
from certauto_core.certs.validation import ValidationReason
from certauto_core.testing.certs import (
    AnyPrivateKey,
    CertFactory,
    IssuedCert,
    KeyPool,
    KeyType,
    encode_private_key,
    tls_secret_manifest,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
EC_PARAMETERS_P256 = (
    b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
)


@pytest.fixture(scope="module")
def factory() -> CertFactory:
    return CertFactory(now=NOW)


@pytest.fixture(scope="module")
def root(factory: CertFactory) -> IssuedCert:
    return factory.root_ca()


@pytest.fixture(scope="module")
def intermediate(factory: CertFactory, root: IssuedCert) -> IssuedCert:
    return factory.intermediate_ca(root)


@pytest.fixture(scope="module")
def leaf(factory: CertFactory, intermediate: IssuedCert) -> IssuedCert:
    return factory.leaf(intermediate, ["web.example.test", "www.example.test"], serial=0xABC)


def key_material_lines(key: AnyPrivateKey) -> list[str]:
    """The base64 body lines of every PEM form of ``key``: none may appear in any output."""
    lines: list[str] = []
    for private_format in (PrivateFormat.PKCS8, PrivateFormat.TraditionalOpenSSL):
        pem = key.private_bytes(Encoding.PEM, private_format, NoEncryption()).decode()
        lines += [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return lines


def assert_no_key_material(text: str, key: AnyPrivateKey) -> None:
    assert "PRIVATE KEY-----" not in text
    for line in key_material_lines(key):
        assert line[:24] not in text


def parse_error(data: dict[str, bytes]) -> MaterialError:
    with pytest.raises(MaterialError) as caught:
        parse_tls_secret_data(data)
    return caught.value


# --- accepted inputs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "encoding", "begin_line"),
    [
        (KeyType.RSA_2048, PrivateKeyEncoding.PKCS1, b"-----BEGIN RSA PRIVATE KEY-----"),
        (KeyType.RSA_2048, PrivateKeyEncoding.PKCS8, b"-----BEGIN PRIVATE KEY-----"),
        (KeyType.ECDSA_P256, PrivateKeyEncoding.SEC1, b"-----BEGIN EC PRIVATE KEY-----"),
        (KeyType.ECDSA_P256, PrivateKeyEncoding.PKCS8, b"-----BEGIN PRIVATE KEY-----"),
        (KeyType.ECDSA_P384, PrivateKeyEncoding.SEC1, b"-----BEGIN EC PRIVATE KEY-----"),
        (KeyType.ECDSA_P521, PrivateKeyEncoding.PKCS8, b"-----BEGIN PRIVATE KEY-----"),
    ],
)
def test_accepts_pkcs1_pkcs8_and_sec1_keys(
    factory: CertFactory,
    intermediate: IssuedCert,
    key_type: KeyType,
    encoding: PrivateKeyEncoding,
    begin_line: bytes,
) -> None:
    leaf = factory.leaf(intermediate, ["api.example.test"], key_type=key_type)
    data = leaf.secret_data(key_encoding=encoding)
    assert data["tls.key"].startswith(begin_line)

    material = parse_tls_secret_data(data)

    assert material.info.key_algorithm == key_type.value
    assert material.private_key_encoding is encoding
    assert material.private_key_pem().startswith(begin_line)
    assert material.leaf == leaf.certificate


def test_accepts_openssl_ecparam_output_with_its_ec_parameters_block(
    factory: CertFactory,
) -> None:
    # `openssl ecparam -name prime256v1 -genkey` writes EC PARAMETERS before the key.
    leaf = factory.self_signed_leaf(key_type=KeyType.ECDSA_P256)
    data = leaf.secret_data(key_encoding=PrivateKeyEncoding.SEC1)
    data["tls.key"] = EC_PARAMETERS_P256 + data["tls.key"]

    assert parse_tls_secret_data(data).fingerprint == leaf.fingerprint


def test_accepts_windows_line_endings_and_openssl_text_around_pem(leaf: IssuedCert) -> None:
    data = leaf.secret_data()
    crlf = {name: value.replace(b"\n", b"\r\n") for name, value in data.items()}
    crlf["tls.crt"] = b"subject=CN=web.example.test\r\nissuer=CN=Intermediate\r\n" + crlf["tls.crt"]

    material = parse_tls_secret_data(crlf)

    assert material.fingerprint == leaf.fingerprint
    # What destinations receive is canonical, whatever the input looked like.
    assert material.certificate_pem() == data["tls.crt"]
    assert material.content_hash == parse_tls_secret_data(data).content_hash


def test_certificate_info_describes_the_leaf(leaf: IssuedCert, intermediate: IssuedCert) -> None:
    info = parse_tls_secret_data(leaf.secret_data()).info

    assert info.serial_number == "0ABC"  # upper-case, whole bytes, like `openssl x509 -serial`
    assert info.dns_names == ("web.example.test", "www.example.test")
    assert info.issuer == intermediate.subject.rfc4514_string()
    assert info.not_before == leaf.not_before
    assert info.not_before.tzinfo is not None
    assert info.not_after == leaf.not_after
    assert info.sha256_fingerprint == leaf.certificate.fingerprint(hashes.SHA256()).hex()
    assert info.key_algorithm == "RSA-2048"


def test_to_status_is_the_camel_case_shape_of_status_certificate(leaf: IssuedCert) -> None:
    status = parse_tls_secret_data(leaf.secret_data()).info.to_status()

    assert status == {
        "serialNumber": "0ABC",
        "notBefore": "2025-06-01T11:00:00Z",
        "notAfter": "2025-08-30T12:00:00Z",
        "sha256Fingerprint": leaf.fingerprint,
        "dnsNames": ["web.example.test", "www.example.test"],
        "issuer": "CN=CertAuto Test Intermediate CA,O=CertAuto Tests",
        "keyAlgorithm": "RSA-2048",
    }
    assert re.fullmatch(r"[0-9a-f]{64}", str(status["sha256Fingerprint"]))


def test_chain_is_kept_in_the_order_given(
    leaf: IssuedCert, intermediate: IssuedCert, root: IssuedCert
) -> None:
    material = parse_tls_secret_data(leaf.secret_data(include_root=True))

    assert material.chain == (intermediate.certificate, root.certificate)
    assert material.chain_pem() == intermediate.certificate_pem() + root.certificate_pem()
    assert material.certificate_pem() == (
        leaf.certificate_pem() + intermediate.certificate_pem() + root.certificate_pem()
    )


def test_self_signed_leaf_has_an_empty_chain(factory: CertFactory) -> None:
    material = parse_tls_secret_data(factory.self_signed_leaf().secret_data())

    assert material.chain == ()
    assert material.chain_pem() == b""


def test_ca_crt_is_kept_byte_for_byte_and_empty_means_absent(
    leaf: IssuedCert, root: IssuedCert
) -> None:
    with_ca = leaf.secret_data(ca=root)
    with_ca["ca.crt"] = b"# our root\n" + with_ca["ca.crt"]
    assert parse_tls_secret_data(with_ca).ca_pem == with_ca["ca.crt"]

    # cert-manager writes an empty ca.crt for ACME certificates.
    empty = leaf.secret_data() | {"ca.crt": b""}
    assert parse_tls_secret_data(empty).ca_pem is None
    assert parse_tls_secret_data(leaf.secret_data()).ca_pem is None


def test_key_pem_forms(leaf: IssuedCert, factory: CertFactory) -> None:
    rsa_material = parse_tls_secret_data(leaf.secret_data(key_encoding=PrivateKeyEncoding.PKCS1))
    assert rsa_material.private_key_pem_pkcs8().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert rsa_material.private_key_pem_traditional().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert rsa_material.private_key_pem() == rsa_material.private_key_pem_traditional()

    ec_material = factory.self_signed_leaf(key_type=KeyType.ECDSA_P384).material()
    assert ec_material.private_key_pem_traditional().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert ec_material.private_key_pem() == ec_material.private_key_pem_pkcs8()


@pytest.mark.parametrize("key_type", [KeyType.RSA_2048, KeyType.ECDSA_P256])
def test_pkcs12_round_trips_with_the_full_chain(
    factory: CertFactory, intermediate: IssuedCert, root: IssuedCert, key_type: KeyType
) -> None:
    leaf = factory.leaf(intermediate, ["kv.example.test"], key_type=key_type)
    material = leaf.material(leaf.secret_data(include_root=True))

    pfx = material.to_pkcs12(friendly_name=b"kv-example-test")
    loaded = pkcs12.load_pkcs12(pfx, None)

    assert loaded.cert is not None
    assert loaded.cert.certificate == leaf.certificate
    assert loaded.cert.friendly_name == b"kv-example-test"
    assert [c.certificate for c in loaded.additional_certs] == [
        intermediate.certificate,
        root.certificate,
    ]
    assert loaded.key is not None
    assert loaded.key.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    ) == leaf.private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_pkcs12_of_a_self_signed_leaf_has_no_extra_certificates(factory: CertFactory) -> None:
    loaded = pkcs12.load_pkcs12(factory.self_signed_leaf().material().to_pkcs12(), None)
    assert loaded.additional_certs == []


def test_repr_and_str_show_identity_but_never_the_key(leaf: IssuedCert) -> None:
    material = parse_tls_secret_data(leaf.secret_data(key_encoding=PrivateKeyEncoding.PKCS1))

    for text in (repr(material), str(material), f"{material}", repr(material.info)):
        assert_no_key_material(text, leaf.private_key)
    assert repr(material).startswith("CertificateMaterial(fingerprint=" + leaf.fingerprint)
    assert "notAfter=2025-08-30T12:00:00Z" in repr(material)
    assert "private_key" not in repr(material)


def test_content_hash_tracks_everything_a_destination_receives(
    leaf: IssuedCert, root: IssuedCert, factory: CertFactory
) -> None:
    base = parse_tls_secret_data(leaf.secret_data())
    same = parse_tls_secret_data(leaf.secret_data())
    with_root = parse_tls_secret_data(leaf.secret_data(include_root=True))
    with_ca = parse_tls_secret_data(leaf.secret_data(ca=root))
    as_pkcs1 = parse_tls_secret_data(leaf.secret_data(key_encoding=PrivateKeyEncoding.PKCS1))
    other_key = parse_tls_secret_data(leaf.secret_data(key=factory.self_signed_leaf()))

    assert same.content_hash == base.content_hash
    assert same == base
    assert hash(same) == hash(base)
    assert re.fullmatch(r"[0-9a-f]{64}", base.content_hash)
    # Same leaf, so the same fingerprint, but different bytes at the destination.
    for changed in (with_root, with_ca, as_pkcs1, other_key):
        assert changed.fingerprint == base.fingerprint
        assert changed.content_hash != base.content_hash
        assert changed != base


def test_material_is_immutable_and_derives_its_identity(leaf: IssuedCert) -> None:
    material = CertificateMaterial(
        leaf=leaf.certificate,
        chain=tuple(c.certificate for c in leaf.chain()),
        private_key=leaf.material().private_key,
    )
    assert material.fingerprint == material.info.sha256_fingerprint == leaf.fingerprint
    der = leaf.certificate.public_bytes(Encoding.DER)
    assert material.fingerprint == hashlib.sha256(der).hexdigest()
    with pytest.raises(dataclasses.FrozenInstanceError):
        material.fingerprint = "0" * 64  # type: ignore[misc]


# --- refused inputs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason", "words"),
    [
        ({"tls.crt": None}, ValidationReason.MissingCertificate, "tls.crt is missing or empty"),
        ({"tls.crt": b""}, ValidationReason.MissingCertificate, "tls.crt is missing or empty"),
        ({"tls.key": None}, ValidationReason.MissingPrivateKey, "tls.key is missing or empty"),
        ({"tls.key": b" \n"}, ValidationReason.MissingPrivateKey, "tls.key is missing or empty"),
    ],
)
def test_missing_fields(
    leaf: IssuedCert, change: dict[str, bytes | None], reason: ValidationReason, words: str
) -> None:
    data = leaf.secret_data()
    for name, value in change.items():
        if value is None:
            del data[name]
        else:
            data[name] = value

    error = parse_error(data)

    assert error.reason is reason
    assert words in error.message


def test_garbage_certificate(leaf: IssuedCert) -> None:
    error = parse_error(leaf.secret_data() | {"tls.crt": b"hello, this is not a certificate\n"})
    assert error.reason is ValidationReason.InvalidCertificatePEM
    assert "tls.crt does not contain a PEM certificate" in error.message


def test_der_certificate_gets_a_conversion_hint(leaf: IssuedCert) -> None:
    der = leaf.certificate.public_bytes(Encoding.DER)
    error = parse_error(leaf.secret_data() | {"tls.crt": der})
    assert error.reason is ValidationReason.InvalidCertificatePEM
    assert "DER" in error.message


def test_double_base64_is_recognised(leaf: IssuedCert) -> None:
    data = leaf.secret_data()
    error = parse_error(data | {"tls.crt": base64.b64encode(data["tls.crt"])})
    assert error.reason is ValidationReason.InvalidCertificatePEM
    assert "encoded twice" in error.message


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda pem: pem[:-200], "truncated"),  # the intermediate's END line is cut off
        (lambda pem: pem.replace(b"\n", b"\nAAAA", 1), "not a valid X.509 certificate"),
    ],
)
def test_damaged_chain_is_an_error_not_a_shorter_chain(
    leaf: IssuedCert, damage: Callable[[bytes], bytes], words: str
) -> None:
    data = leaf.secret_data()
    error = parse_error(data | {"tls.crt": damage(data["tls.crt"])})
    assert error.reason is ValidationReason.InvalidCertificatePEM
    assert words in error.message


def test_swapped_fields_are_named(leaf: IssuedCert) -> None:
    data = leaf.secret_data()
    error = parse_error({"tls.crt": data["tls.key"], "tls.key": data["tls.crt"]})
    assert error.reason is ValidationReason.InvalidCertificatePEM
    assert "swapped" in error.message
    assert_no_key_material(error.message, leaf.private_key)

    error = parse_error(data | {"tls.key": data["tls.crt"]})
    assert error.reason is ValidationReason.InvalidPrivateKeyPEM
    assert "swapped" in error.message


def test_invalid_ca_crt_is_named(leaf: IssuedCert) -> None:
    error = parse_error(leaf.secret_data() | {"ca.crt": b"not a CA bundle"})
    assert error.reason is ValidationReason.InvalidCertificatePEM
    assert "ca.crt" in error.message


def corrupt(pem: bytes) -> bytes:
    """Damage the base64 body of a PEM block in a way a bad copy-paste would."""
    lines = pem.splitlines(keepends=True)
    lines[3] = b"!!" + lines[3][2:]
    return b"".join(lines)


@pytest.mark.parametrize(
    ("make_key", "words"),
    [
        (lambda key_pem: b"garbage", "does not contain a PEM private key"),
        (corrupt, "cannot be parsed"),
        (lambda key_pem: key_pem + key_pem, "holds 2 private keys"),
        (
            lambda key_pem: (
                b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n"
                b"-----END OPENSSH PRIVATE KEY-----\n"
            ),
            "OpenSSH",
        ),
        (
            lambda key_pem: key_pem.replace(b"PRIVATE KEY", b"PUBLIC KEY"),
            "PUBLIC KEY, but no PRIVATE KEY",
        ),
    ],
)
def test_invalid_private_key_pem(
    leaf: IssuedCert, make_key: Callable[[bytes], bytes], words: str
) -> None:
    data = leaf.secret_data()
    error = parse_error(data | {"tls.key": make_key(data["tls.key"])})

    assert error.reason is ValidationReason.InvalidPrivateKeyPEM
    assert words in error.message
    assert_no_key_material(error.message, leaf.private_key)


@pytest.mark.parametrize("part", ["d", "dmp1", "iqmp"])
def test_damaged_rsa_key_is_refused(leaf: IssuedCert, part: str) -> None:
    # OpenSSL's slow key check is skipped for speed; our own one must still catch this.
    assert isinstance(leaf.private_key, rsa.RSAPrivateKey)
    good = leaf.private_key.private_numbers()
    parts = {
        "p": good.p,
        "q": good.q,
        "d": good.d,
        "dmp1": good.dmp1,
        "dmq1": good.dmq1,
        "iqmp": good.iqmp,
    }
    parts[part] += 2
    damaged = rsa.RSAPrivateNumbers(**parts, public_numbers=good.public_numbers).private_key(
        unsafe_skip_rsa_key_validation=True
    )
    pem = damaged.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    error = parse_error(leaf.secret_data() | {"tls.key": pem})

    assert error.reason is ValidationReason.InvalidPrivateKeyPEM
    assert "damaged RSA key" in error.message


@pytest.mark.parametrize(
    ("key_type", "encoding", "begin_line"),
    [
        (KeyType.RSA_2048, PrivateKeyEncoding.PKCS8, b"-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        (KeyType.RSA_2048, PrivateKeyEncoding.PKCS1, b"-----BEGIN RSA PRIVATE KEY-----"),
        (KeyType.ECDSA_P256, PrivateKeyEncoding.SEC1, b"-----BEGIN EC PRIVATE KEY-----"),
    ],
)
def test_encrypted_keys_are_refused_with_a_clear_reason(
    factory: CertFactory, key_type: KeyType, encoding: PrivateKeyEncoding, begin_line: bytes
) -> None:
    leaf = factory.self_signed_leaf(key_type=key_type)
    data = leaf.secret_data(key_encoding=encoding, key_password=b"hunter2")
    assert data["tls.key"].startswith(begin_line)

    error = parse_error(data)

    assert error.reason is ValidationReason.EncryptedPrivateKey
    assert "encrypted with a password" in error.message
    assert "hunter2" not in error.message
    # No chained exception that a traceback could print.
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None


def test_ed25519_key_is_unsupported(factory: CertFactory) -> None:
    error = parse_error(factory.self_signed_leaf(key_type=KeyType.ED25519).secret_data())
    assert error.reason is ValidationReason.UnsupportedKeyType
    assert "Ed25519" in error.message
    assert "RSA or ECDSA on P-256, P-384 or P-521" in error.message


def test_ecdsa_key_on_an_unusual_curve_is_unsupported(leaf: IssuedCert) -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    error = parse_error(leaf.secret_data() | {"tls.key": pem})
    assert error.reason is ValidationReason.UnsupportedKeyType
    assert "ECDSA-secp256k1" in error.message


def test_dsa_key_is_unsupported(leaf: IssuedCert) -> None:
    dsa_pem = b"-----BEGIN DSA PRIVATE KEY-----\nMIIBuw==\n-----END DSA PRIVATE KEY-----\n"
    error = parse_error(leaf.secret_data() | {"tls.key": dsa_pem})
    assert error.reason is ValidationReason.UnsupportedKeyType
    assert "DSA" in error.message


def test_material_error_carries_reason_and_message() -> None:
    error = parse_error({})
    assert str(error) == error.message
    assert error.to_failure().reason is ValidationReason.MissingCertificate
    assert error.to_failure().message == error.message


# --- the test-certificate factory -----------------------------------------------------


def public_der(key: AnyPrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_key_pool_reuses_keys_round_robin_and_gives_fresh_ones_on_request() -> None:
    pool = KeyPool(size=2)
    first, second, third = (pool.get(KeyType.ECDSA_P256) for _ in range(3))

    assert public_der(first) != public_der(second)
    assert third is first
    fresh = pool.get(KeyType.ECDSA_P256, fresh=True)
    assert public_der(fresh) not in {public_der(first), public_der(second)}
    assert pool.get(KeyType.ECDSA_P256) is second  # fresh keys do not enter the pool


def test_certificate_never_shares_its_issuers_key() -> None:
    factory = CertFactory(now=NOW, key_pool=KeyPool(size=2), key_type=KeyType.ECDSA_P256)
    root = factory.root_ca()
    for _ in range(5):
        leaf = factory.leaf(root)
        assert public_der(leaf.private_key) != public_der(root.private_key)


@pytest.mark.parametrize(
    "key_type",
    [
        KeyType.RSA_2048,
        KeyType.RSA_3072,
        KeyType.ECDSA_P256,
        KeyType.ECDSA_P384,
        KeyType.ECDSA_P521,
    ],
)
def test_factory_key_types_match_the_reported_key_algorithm(
    factory: CertFactory, root: IssuedCert, key_type: KeyType
) -> None:
    leaf = factory.leaf(root, key_type=key_type)
    assert leaf.material(leaf.secret_data()).info.key_algorithm == key_type


def test_factory_chain_walks_up_to_the_root(factory: CertFactory) -> None:
    leaf = factory.chain(["deep.example.test"], intermediates=2)
    issuers = leaf.issuers()

    assert [i.common_name for i in issuers] == [
        "CertAuto Test Intermediate CA 2",
        "CertAuto Test Intermediate CA 1",
        "CertAuto Test Root CA",
    ]
    assert issuers[-1].is_self_signed
    assert leaf.chain() == issuers[:2]
    assert leaf.chain(include_root=True) == issuers
    assert leaf.common_name == "deep.example.test"


def test_encode_private_key_refuses_impossible_encodings(factory: CertFactory) -> None:
    ec_leaf = factory.self_signed_leaf(key_type=KeyType.ECDSA_P256)
    with pytest.raises(ValueError, match="PKCS#1"):
        encode_private_key(ec_leaf.private_key, PrivateKeyEncoding.PKCS1)
    with pytest.raises(ValueError, match="SEC1"):
        encode_private_key(factory.self_signed_leaf().private_key, PrivateKeyEncoding.SEC1)


def test_secret_manifest_is_a_kubernetes_tls_secret(leaf: IssuedCert, root: IssuedCert) -> None:
    data = leaf.secret_data(ca=root)
    manifest = tls_secret_manifest(
        "web-tls", "apps", data, labels={"certauto.sanorg.in/watched": "true"}
    )

    assert manifest["type"] == "kubernetes.io/tls"
    assert manifest["metadata"] == {
        "name": "web-tls",
        "namespace": "apps",
        "labels": {"certauto.sanorg.in/watched": "true"},
    }
    encoded = manifest["data"]
    assert isinstance(encoded, dict)
    assert {name: base64.b64decode(value) for name, value in encoded.items()} == data
    assert (
        leaf.secret_manifest("web-tls", "apps")["data"]
        == tls_secret_manifest("web-tls", "apps", leaf.secret_data())["data"]
    )


def test_issued_cert_repr_has_no_key(leaf: IssuedCert) -> None:
    assert_no_key_material(repr(leaf), leaf.private_key)
    assert "web.example.test" in repr(leaf)
