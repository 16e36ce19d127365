"""The azure-key-vault destination against the fake Key Vault, method by method.

Writes are counted at the vault (its request log), never by the plugin's own
bookkeeping. ``sync`` below is the core's calling sequence.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from certauto_akv import AkvConfig, AkvDestination, AkvSettings, CredentialRequest
from certauto_akv.config import default_certificate_name
from certauto_akv.tags import (
    BINDING_TAG,
    CONTENT_HASH_TAG,
    DESTINATION_TAG,
    FINGERPRINT_TAG,
    MANAGED_BY_TAG,
)
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from certauto_core.certs.material import CertificateMaterial
from certauto_core.plugins.contract import (
    BindingRef,
    PluginContext,
    PreviousSync,
    PublishResult,
    Target,
    needs_publish,
)
from certauto_core.plugins.errors import ConflictError, PermanentError, RetryableError
from certauto_core.testing.certs import CertFactory, IssuedCert, KeyType, PrivateKeyEncoding
from certauto_core.testing.keyvault import KeyVaultHandle

CERTS = CertFactory()
ROOT = CERTS.root_ca()
INTERMEDIATE = CERTS.intermediate_ca(ROOT)
BINDING = BindingRef(namespace="apps", name="web", uid="uid-1", destination="kv-prod")
NAME = "web-example-test"
IMPORT_PATH = rf"/certificates/{NAME}/import"
WRITE_METHODS = ("POST", "PATCH", "DELETE")


# -- helpers ----------------------------------------------------------------------------


def leaf(
    key_type: KeyType = KeyType.RSA_2048, issuer: IssuedCert = INTERMEDIATE, **kw: Any
) -> IssuedCert:
    return CERTS.leaf(issuer, ["web.example.test", "www.example.test"], key_type=key_type, **kw)


def fresh(key_type: KeyType = KeyType.RSA_2048) -> CertificateMaterial:
    return leaf(key_type).material()


def config(keyvault: KeyVaultHandle, **extra: Any) -> AkvConfig:
    raw: dict[str, Any] = {"vaultURL": keyvault.vault_url, "certificateName": NAME, **extra}
    return AkvConfig.model_validate(raw)


def target(
    cfg: AkvConfig | None,
    *,
    binding: BindingRef = BINDING,
    previous: PreviousSync | None = None,
) -> Target:
    return Target(binding=binding, config=cfg, previous=previous or PreviousSync())


async def sync(
    destination: AkvDestination, item: CertificateMaterial, tgt: Target
) -> PublishResult | None:
    """The core's reconcile of one destination entry."""
    await destination.check_material(item, tgt)
    observation = await destination.observe(tgt)
    if not needs_publish(observation, item):
        return None
    return await destination.publish(item, tgt)


def writes(keyvault: KeyVaultHandle) -> int:
    """Writes the vault served (injected faults excluded)."""
    return sum(keyvault.server.count(m, include_injected=False) for m in WRITE_METHODS)


def imports(keyvault: KeyVaultHandle, name: str = NAME) -> int:
    return keyvault.server.count("POST", rf"/certificates/{name}/import", include_injected=False)


async def version_ids(keyvault: KeyVaultHandle, name: str = NAME) -> list[str]:
    async with keyvault.client() as client:
        return [
            str(props.version)
            async for props in client.list_properties_of_certificate_versions(name)
        ]


async def stored_tags(keyvault: KeyVaultHandle, name: str = NAME) -> dict[str, str]:
    async with keyvault.client() as client:
        cert = await client.get_certificate(name)
    assert cert.properties is not None
    return dict(cert.properties.tags or {})


def pfx_contents(
    secret: Mapping[str, Any],
) -> tuple[Any, x509.Certificate, list[x509.Certificate]]:
    assert secret["contentType"] == "application/x-pkcs12"
    key, cert, chain = pkcs12.load_key_and_certificates(base64.b64decode(secret["value"]), None)
    assert cert is not None
    return key, cert, chain


def sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


async def foreign_import(
    keyvault: KeyVaultHandle, name: str = NAME, tags: dict[str, str] | None = None
) -> None:
    """Someone else's certificate under the name (imported without CertAuto)."""
    other = leaf(issuer=ROOT)
    async with keyvault.client() as client:
        await client.import_certificate(name, other.material().to_pkcs12(), tags=tags)


async def delete_out_of_band(keyvault: KeyVaultHandle, name: str = NAME) -> None:
    async with keyvault.client() as client:
        await client.delete_certificate(name, _polling_interval=0.05)
    assert keyvault.server.state_of(name) == "deleted"


# -- publishing ---------------------------------------------------------------------------


async def test_publish_imports_one_version_tagged_with_the_full_chain(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    item = CERTS.chain(["web.example.test"], intermediates=2)
    data = item.secret_data(include_root=True)
    mat = item.material(data)
    assert len(mat.chain) == 3
    cfg = config(keyvault, tags={"team": "web"})

    result = await sync(destination, mat, target(cfg))

    assert result is not None
    versions = await version_ids(keyvault)
    assert len(versions) == 1
    assert result.external_id == f"{keyvault.vault_url}/certificates/{NAME}/{versions[0]}"
    assert result.fingerprint == mat.fingerprint
    assert result.not_after == mat.info.not_after
    assert result.writes == 1 == writes(keyvault) == imports(keyvault)
    assert versions[0] in result.message

    assert await stored_tags(keyvault) == {
        "team": "web",
        MANAGED_BY_TAG: "certauto",
        BINDING_TAG: "apps/web",
        DESTINATION_TAG: "kv-prod",
        FINGERPRINT_TAG: mat.fingerprint,
        CONTENT_HASH_TAG: mat.content_hash,
    }
    # Read back from the vault: the same leaf, the full chain in order, the key.
    async with keyvault.client() as client:
        stored = await client.get_certificate(NAME)
    assert stored.cer is not None
    assert hashlib.sha256(bytes(stored.cer)).hexdigest() == mat.fingerprint
    key, cert, chain = pfx_contents(await keyvault.get_secret(NAME, versions[0]))
    assert sha256(cert) == mat.fingerprint
    assert chain == list(mat.chain)
    assert key.public_key() == mat.private_key.public_key()

    observation = await destination.observe(target(cfg))
    assert observation.fingerprint == mat.fingerprint
    assert observation.content_hash == mat.content_hash
    assert observation.external_id == result.external_id
    assert observation.not_after == mat.info.not_after
    assert observation.drift is None


@pytest.mark.parametrize(
    ("key_type", "encoding"),
    [
        (KeyType.RSA_2048, PrivateKeyEncoding.PKCS1),
        (KeyType.ECDSA_P256, PrivateKeyEncoding.SEC1),
        (KeyType.ECDSA_P384, PrivateKeyEncoding.SEC1),
        (KeyType.RSA_3072, PrivateKeyEncoding.PKCS8),
    ],
)
async def test_traditional_keys_are_imported_as_pkcs8(
    destination: AkvDestination,
    keyvault: KeyVaultHandle,
    key_type: KeyType,
    encoding: PrivateKeyEncoding,
) -> None:
    source = leaf(key_type)
    mat = source.material(source.secret_data(key_encoding=encoding))
    assert mat.private_key_encoding is encoding

    result = await sync(destination, mat, target(config(keyvault)))

    assert result is not None
    key, cert, chain = pfx_contents(await keyvault.get_secret(NAME))
    assert sha256(cert) == mat.fingerprint
    assert chain == [INTERMEDIATE.certificate]
    assert key.public_key() == mat.private_key.public_key()


async def test_pem_content_type_stores_pkcs8_key_then_chain(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    source = leaf(KeyType.RSA_2048)
    mat = source.material(source.secret_data(key_encoding=PrivateKeyEncoding.PKCS1))
    cfg = config(keyvault, contentType="PEM")

    assert await sync(destination, mat, target(cfg)) is not None

    secret = await keyvault.get_secret(NAME)
    assert secret["contentType"] == "application/x-pem-file"
    value: str = secret["value"]
    assert value.startswith("-----BEGIN PRIVATE KEY-----")
    assert value.endswith(mat.certificate_pem().decode())
    assert await sync(destination, mat, target(cfg)) is None

    # Switching the content type is drift: one new version, stored as PKCS#12.
    pkcs12_cfg = config(keyvault)
    observation = await destination.observe(target(pkcs12_cfg))
    assert observation.fingerprint is None
    assert observation.drift is not None
    assert "PKCS12" in observation.drift
    assert await sync(destination, mat, target(pkcs12_cfg)) is not None
    assert len(await version_ids(keyvault)) == 2
    pfx_contents(await keyvault.get_secret(NAME))


async def test_renewal_adds_exactly_one_version_and_a_resync_none(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    tgt = target(config(keyvault))
    first, renewed = fresh(), fresh()

    published = await sync(destination, first, tgt)
    assert published is not None
    before = writes(keyvault)
    assert await sync(destination, first, tgt) is None
    assert await sync(destination, first, tgt) is None
    assert writes(keyvault) == before
    assert imports(keyvault) == 1

    renewal = await sync(destination, renewed, tgt)

    assert renewal is not None
    assert renewal.writes == 1
    assert imports(keyvault) == 2
    assert len(await version_ids(keyvault)) == 2
    assert renewal.external_id != published.external_id
    observation = await destination.observe(tgt)
    assert observation.fingerprint == renewed.fingerprint
    assert observation.external_id == renewal.external_id

    calls = len(keyvault.server.calls)
    for _ in range(3):
        assert await sync(destination, renewed, tgt) is None
    resync = keyvault.server.calls[calls:]
    assert imports(keyvault) == 2
    assert len(await version_ids(keyvault)) == 2
    assert [c.method for c in resync if c.authorized and c.path.startswith("/certificates")] == [
        "GET"
    ] * 3, "a steady-state resync must cost exactly one read"


async def test_observe_of_an_absent_certificate_reads_twice_and_writes_nothing(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    observation = await destination.observe(target(config(keyvault)))

    assert observation.fingerprint is None
    assert observation.drift is None
    assert keyvault.server.count("GET") == 2  # the certificate, then the deleted one
    assert writes(keyvault) == 0


async def test_repeated_publish_after_a_crash_imports_nothing(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    tgt, mat = target(config(keyvault)), fresh()
    first = await destination.publish(mat, tgt)

    # Status was never written: the core publishes again with an empty PreviousSync.
    again = await destination.publish(mat, tgt)

    assert again.writes == 0
    assert again.external_id == first.external_id
    assert "already holds" in again.message
    assert imports(keyvault) == 1


async def test_a_new_chain_behind_the_same_leaf_is_a_new_version(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    source = leaf()
    short = source.material(source.secret_data())
    full = source.material(source.secret_data(include_root=True))
    assert short.fingerprint == full.fingerprint
    assert short.content_hash != full.content_hash
    tgt = target(config(keyvault))

    assert await sync(destination, short, tgt) is not None
    result = await sync(destination, full, tgt)

    assert result is not None
    assert imports(keyvault) == 2
    _, _, chain = pfx_contents(await keyvault.get_secret(NAME))
    assert chain == [INTERMEDIATE.certificate, ROOT.certificate]
    assert await sync(destination, full, tgt) is None


async def test_changed_config_tags_are_retagged_without_a_new_version(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    mat = fresh()
    assert await sync(destination, mat, target(config(keyvault, tags={"env": "prod"}))) is not None
    retagged = target(config(keyvault, tags={"env": "prod", "owner": "web-team"}))

    observation = await destination.observe(retagged)
    assert observation.fingerprint is None
    assert observation.drift is not None
    assert "tags" in observation.drift
    result = await sync(destination, mat, retagged)

    assert result is not None
    assert result.writes == 1
    assert "tags updated" in result.message
    assert imports(keyvault) == 1
    assert keyvault.server.count("PATCH") == 1
    assert (await stored_tags(keyvault))["owner"] == "web-team"
    assert await sync(destination, mat, retagged) is None


async def test_removed_fingerprint_tag_is_repaired_by_retagging(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    mat, tgt = fresh(), target(config(keyvault))
    assert await sync(destination, mat, tgt) is not None
    tags = await stored_tags(keyvault)
    del tags[FINGERPRINT_TAG]
    async with keyvault.client() as client:
        await client.update_certificate_properties(NAME, tags=tags)

    result = await sync(destination, mat, tgt)

    assert result is not None
    assert result.writes == 1
    assert imports(keyvault) == 1
    assert (await stored_tags(keyvault))[FINGERPRINT_TAG] == mat.fingerprint


async def test_default_certificate_name_comes_from_the_binding(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    cfg = AkvConfig.model_validate({"vaultURL": keyvault.vault_url})
    binding = BindingRef(namespace="team.a", name="web", uid="u", destination="kv")
    name = default_certificate_name(binding)

    result = await sync(destination, fresh(), target(cfg, binding=binding))

    assert result is not None
    assert name.startswith("team-a-web-kv-")
    assert result.external_id is not None
    assert f"/certificates/{name}/" in result.external_id
    assert imports(keyvault, name) == 1


# -- ownership ----------------------------------------------------------------------------


async def test_an_untagged_certificate_of_that_name_is_a_conflict_left_untouched(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    await foreign_import(keyvault)
    versions = await version_ids(keyvault)
    tgt = target(config(keyvault))
    before = writes(keyvault)

    with pytest.raises(ConflictError) as observed:
        await destination.observe(tgt)
    with pytest.raises(ConflictError) as published:
        await destination.publish(fresh(), tgt)

    for error in (observed.value, published.value):
        assert NAME in error.message
        assert keyvault.vault_url in error.message
        assert "not managed by CertAuto" in error.message
    assert writes(keyvault) == before
    assert await version_ids(keyvault) == versions
    assert await stored_tags(keyvault) == {}


async def test_another_bindings_certificate_is_a_conflict_naming_it(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    other = BindingRef(namespace="shop", name="web", uid="u2", destination="kv-prod")
    assert await sync(destination, fresh(), target(config(keyvault), binding=other)) is not None

    with pytest.raises(ConflictError) as conflict:
        await sync(destination, fresh(), target(config(keyvault)))

    assert "shop/web" in conflict.value.message
    assert imports(keyvault) == 1


# -- soft delete --------------------------------------------------------------------------


async def test_soft_deleted_certificate_is_recovered_under_recover(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    keyvault.server.recover_delay_seconds = 0.3
    mat, tgt = fresh(), target(config(keyvault))
    first = await sync(destination, mat, tgt)
    assert first is not None
    await delete_out_of_band(keyvault)

    observation = await destination.observe(tgt)
    assert observation.fingerprint is None
    assert observation.drift is not None
    assert "soft-deleted" in observation.drift
    result = await sync(destination, mat, tgt)

    assert result is not None
    assert keyvault.server.state_of(NAME) == "active"
    assert result.writes == 1  # the recovery; the recovered version already holds it
    assert imports(keyvault) == 1
    assert result.external_id == first.external_id
    assert "recovered" in result.message
    assert keyvault.server.count("POST", rf"/deletedcertificates/{NAME}/recover") == 1
    polls = [c for c in keyvault.server.calls if c.method == "GET" and c.path.endswith(NAME + "/")]
    assert any(c.status == 404 for c in polls), "the recovery's completion was not awaited"
    assert await sync(destination, mat, tgt) is None


async def test_recovery_then_renewal_adds_a_version(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    tgt = target(config(keyvault))
    assert await sync(destination, fresh(), tgt) is not None
    await delete_out_of_band(keyvault)
    renewed = fresh()

    result = await sync(destination, renewed, tgt)

    assert result is not None
    assert result.writes == 2
    assert len(await version_ids(keyvault)) == 2
    assert (await destination.observe(tgt)).fingerprint == renewed.fingerprint


async def test_soft_deleted_certificate_is_reported_under_fail(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    mat, tgt = fresh(), target(config(keyvault, onSoftDeleted="Fail"))
    assert await sync(destination, mat, tgt) is not None
    await delete_out_of_band(keyvault)
    before = writes(keyvault)

    with pytest.raises(PermanentError) as failed:
        await sync(destination, mat, tgt)

    assert "soft-deleted" in failed.value.message
    assert "onSoftDeleted is Fail" in failed.value.message
    assert NAME in failed.value.message
    assert keyvault.server.state_of(NAME) == "deleted"
    assert writes(keyvault) == before


@pytest.mark.parametrize("purge_delay", [0.0, 0.3])
async def test_soft_deleted_certificate_is_purged_then_imported_under_purge(
    destination: AkvDestination, keyvault: KeyVaultHandle, purge_delay: float
) -> None:
    keyvault.server.purge_delay_seconds = purge_delay
    tgt = target(config(keyvault, onSoftDeleted="Purge"))
    assert await sync(destination, fresh(), tgt) is not None
    old_versions = await version_ids(keyvault)
    await delete_out_of_band(keyvault)
    renewed = fresh()

    result = await sync(destination, renewed, tgt)

    assert result is not None
    assert "purging" in result.message
    assert keyvault.server.count("DELETE", rf"/deletedcertificates/{NAME}") == 1
    versions = await version_ids(keyvault)
    assert len(versions) == 1
    assert versions != old_versions
    assert result.writes == 2
    assert (await destination.observe(tgt)).fingerprint == renewed.fingerprint


async def test_someone_elses_soft_deleted_certificate_is_never_recovered_or_purged(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    await foreign_import(keyvault)
    await delete_out_of_band(keyvault)
    before = writes(keyvault)

    for policy in ("Recover", "Purge"):
        tgt = target(config(keyvault, onSoftDeleted=policy))
        with pytest.raises(ConflictError) as conflict:
            await sync(destination, fresh(), tgt)
        assert "soft-deleted" in conflict.value.message

    assert keyvault.server.state_of(NAME) == "deleted"
    assert writes(keyvault) == before


async def test_a_recovery_slower_than_the_timeout_is_retried_later(
    plugin_context: PluginContext, akv_settings: AkvSettings, keyvault: KeyVaultHandle
) -> None:
    keyvault.server.recover_delay_seconds = 1.0
    settings = AkvSettings(
        credential_factory=akv_settings.credential_factory,
        client_options=akv_settings.client_options,
        polling_interval=0.05,
        operation_timeout=0.3,
    )
    destination = AkvDestination(plugin_context, settings)
    try:
        mat, tgt = fresh(), target(config(keyvault))
        assert await sync(destination, mat, tgt) is not None
        await delete_out_of_band(keyvault)

        with pytest.raises(RetryableError) as slow:
            await sync(destination, mat, tgt)
        assert "recover" in slow.value.message

        await asyncio.sleep(1.0)
        assert await sync(destination, mat, tgt) is None
        assert keyvault.server.state_of(NAME) == "active"
    finally:
        await destination.aclose()


# -- errors -------------------------------------------------------------------------------


async def test_throttling_is_retryable_with_the_servers_retry_after(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    tgt, mat = target(config(keyvault)), fresh()
    keyvault.server.fail_next(
        2, status=429, retry_after_seconds=2, method="POST", path_regex=IMPORT_PATH
    )

    # What the core does: retry no sooner than the error's retry_after.
    started = time.monotonic()
    for attempt in (1, 2):
        with pytest.raises(RetryableError) as throttled:
            await sync(destination, mat, tgt)
        retry_after = throttled.value.retry_after
        assert retry_after is not None
        assert retry_after >= timedelta(seconds=2)
        assert "throttled" in throttled.value.message
        assert keyvault.server.count("POST", IMPORT_PATH) == attempt, (
            "azure-core retried on its own instead of handing the 429 to the core"
        )
        await asyncio.sleep(retry_after.total_seconds())

    result = await sync(destination, mat, tgt)

    assert result is not None
    assert time.monotonic() - started >= 4.0
    assert imports(keyvault) == 1
    assert (await destination.observe(tgt)).fingerprint == mat.fingerprint


async def test_throttled_read_is_retryable(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    keyvault.server.fail_next(1, status=429, retry_after_seconds=1.5, method="GET")

    with pytest.raises(RetryableError) as throttled:
        await destination.observe(target(config(keyvault)))

    assert throttled.value.retry_after == timedelta(seconds=1.5)


async def test_server_errors_are_retryable(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    keyvault.server.fail_next(1, status=503, retry_after_seconds=None, method="POST")

    with pytest.raises(RetryableError) as failed:
        await sync(destination, fresh(), target(config(keyvault)))

    assert "503" in failed.value.message
    assert imports(keyvault) == 0


async def test_connection_errors_are_retryable(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    # A port nobody listens on (bound, then released).
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    cfg = AkvConfig.model_validate({"vaultURL": f"https://127.0.0.1:{port}"})

    with pytest.raises(RetryableError) as failed:
        await destination.observe(target(cfg))

    assert "could not reach Key Vault" in failed.value.message


@pytest.mark.parametrize("status", [401, 403])
async def test_unauthorized_and_forbidden_are_permanent_naming_the_identity(
    destination: AkvDestination,
    keyvault: KeyVaultHandle,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    action = "Microsoft.KeyVault/vaults/certificates/import/action"
    keyvault.server.fail_next(
        1,
        status=status,
        retry_after_seconds=None,
        method="POST",
        code="Forbidden" if status == 403 else "Unauthorized",
        message=(
            "Caller is not authorized to perform action on resource.\r\n"
            f"Action: '{action}'\r\nAssignment: (not found)"
        ),
    )

    with pytest.raises(PermanentError) as denied:
        await sync(destination, fresh(), target(config(keyvault)))

    message = denied.value.message
    assert "DefaultAzureCredential" in message
    assert "11111111-2222-3333-4444-555555555555" in message
    assert str(status) in message
    if status == 403:
        assert action in message
        assert "Key Vault Certificates Officer" in message
    assert "\n" not in message


async def test_a_refused_import_is_permanent_with_key_vaults_reason(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    keyvault.server.fail_next(
        1,
        status=400,
        retry_after_seconds=None,
        method="POST",
        code="BadParameter",
        message="The specified X.509 certificate content is invalid.",
    )

    with pytest.raises(PermanentError) as refused:
        await sync(destination, fresh(), target(config(keyvault)))

    assert "BadParameter" in refused.value.message
    assert "X.509 certificate content is invalid" in refused.value.message


async def test_check_material_refuses_rsa_keys_key_vault_cannot_hold(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    item = CERTS.leaf(INTERMEDIATE, ["weak.example.test"], key=weak).material()

    with pytest.raises(PermanentError) as refused:
        await destination.check_material(item, target(config(keyvault)))

    assert "1024" in refused.value.message
    assert "2048, 3072 or 4096" in refused.value.message
    await destination.check_material(fresh(KeyType.ECDSA_P521), target(config(keyvault)))


async def test_a_target_without_config_cannot_be_observed(destination: AkvDestination) -> None:
    with pytest.raises(PermanentError):
        await destination.observe(target(None))


# -- retract ------------------------------------------------------------------------------


async def test_retract_retain_leaves_the_certificate_without_a_call(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    tgt = target(config(keyvault))
    assert await sync(destination, fresh(), tgt) is not None
    calls = len(keyvault.server.calls)

    result = await destination.retract(tgt, delete=False)

    assert result.removed is False
    assert NAME in result.message
    assert len(keyvault.server.calls) == calls
    assert keyvault.server.state_of(NAME) == "active"


async def test_retract_delete_deletes_and_is_idempotent(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    keyvault.server.delete_delay_seconds = 0.2
    tgt = target(config(keyvault))
    assert await sync(destination, fresh(), tgt) is not None

    result = await destination.retract(tgt, delete=True)

    assert result.removed is True
    assert keyvault.server.state_of(NAME) == "deleted", "the delete was not awaited"
    again = await destination.retract(tgt, delete=True)
    assert again.removed is True
    assert "already" in again.message
    assert keyvault.server.count("DELETE") == 1


async def test_retract_delete_purges_when_configured(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    tgt = target(config(keyvault, purgeOnDelete=True))
    assert await sync(destination, fresh(), tgt) is not None

    result = await destination.retract(tgt, delete=True)

    assert result.removed is True
    assert "purged" in result.message
    assert keyvault.server.state_of(NAME) is None
    assert (await destination.retract(tgt, delete=True)).removed is True


async def test_retract_never_deletes_someone_elses_certificate(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    await foreign_import(keyvault)

    result = await destination.retract(target(config(keyvault, purgeOnDelete=True)), delete=True)

    assert result.removed is True
    assert "left untouched" in result.message
    assert keyvault.server.state_of(NAME) == "active"
    assert keyvault.server.count("DELETE") == 0


async def test_retract_of_a_removed_entry_finds_it_by_its_external_id(
    destination: AkvDestination, keyvault: KeyVaultHandle
) -> None:
    result = await sync(destination, fresh(), target(config(keyvault)))
    assert result is not None
    removed = target(None, previous=PreviousSync(result.fingerprint, result.external_id))

    retracted = await destination.retract(removed, delete=True)

    assert retracted.removed is True
    assert keyvault.server.state_of(NAME) == "deleted"
    unknown = await destination.retract(target(None), delete=True)
    assert unknown.removed is False


# -- lifecycle ----------------------------------------------------------------------------


async def test_bindings_share_one_session_per_vault_and_aclose_closes_it(
    plugin_context: PluginContext,
    akv_settings: AkvSettings,
    keyvault: KeyVaultHandle,
    credential_requests: list[CredentialRequest],
) -> None:
    destination = AkvDestination(plugin_context, akv_settings)
    bindings = [
        BindingRef(namespace="apps", name=f"web-{i}", uid=str(i), destination="kv")
        for i in range(4)
    ]
    cfg = AkvConfig.model_validate({"vaultURL": keyvault.vault_url})
    await asyncio.gather(*(destination.observe(target(cfg, binding=b)) for b in bindings))

    assert len(credential_requests) == 1
    await destination.aclose()
    assert keyvault.credential.closed
    with pytest.raises(RetryableError):
        await destination.observe(target(cfg))
