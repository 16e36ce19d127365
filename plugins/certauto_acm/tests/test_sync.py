"""aws-acm against moto: import, renewal, idempotency, lost status, ownership, adoption.

Every assertion about what the plugin *sends* reads the recording proxy's log,
because moto accepts requests real ACM refuses (tags on a re-import).
"""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from acm_support import (
    ALL_KEY_TYPES,
    WRITE_OPERATIONS,
    acm_config,
    arns_in,
    import_foreign,
    material,
    served,
    sync,
    synced,
    tags_of,
    target,
    writes,
)
from certauto_acm import tags as tagging
from certauto_acm.destination import AcmDestination
from cryptography.hazmat.primitives.serialization import Encoding

from certauto_core.plugins.contract import BindingRef, Observation, PreviousSync
from certauto_core.plugins.errors import ConflictError, PermanentError
from certauto_core.testing.aws import AcmHandle
from certauto_core.testing.certs import CertFactory, IssuedCert, KeyType

# -- first import, steady state, renewal ------------------------------------------------


async def test_first_sync_imports_with_tags_and_observe_reports_it(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    config = acm_config(acm, tags={"team": "platform", "env": "prod"})
    first = material(certs, issuer)

    observation, result = await sync(destination, first, target(binding, config))

    assert observation.fingerprint is None
    assert observation.drift is None
    assert result is not None
    assert result.external_id is not None
    arn = result.external_id
    assert arn.startswith(f"arn:aws:acm:{acm.region}:")
    assert result.writes == 1 == writes(acm)
    assert result.not_after == first.info.not_after

    (sent,) = acm.proxy.calls("ImportCertificate")
    assert "CertificateArn" not in sent
    assert base64.b64decode(sent["Certificate"]) == first.leaf.public_bytes(Encoding.PEM)
    assert base64.b64decode(sent["CertificateChain"]) == first.chain_pem()
    assert base64.b64decode(sent["PrivateKey"]).startswith(b"-----BEGIN PRIVATE KEY-----")
    assert {tag["Key"]: tag["Value"] for tag in sent["Tags"]} == {
        "certauto.sanorg.in/managed-by": "certauto",
        "certauto.sanorg.in/binding": f"{binding.namespace}/web",
        "certauto.sanorg.in/destination": "acm",
        "team": "platform",
        "env": "prod",
    }
    assert await arns_in(acm) == [arn]
    assert (await tags_of(acm, arn))["certauto.sanorg.in/binding"] == f"{binding.namespace}/web"

    after = await destination.observe(target(binding, config, PreviousSync(first.fingerprint, arn)))
    assert after == Observation(
        fingerprint=first.fingerprint, external_id=arn, not_after=first.info.not_after
    )


async def test_resync_of_an_unchanged_certificate_imports_nothing(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    config = acm_config(acm)
    first = material(certs, issuer)
    observation, result = await sync(destination, first, target(binding, config))
    where = synced(target(binding, config), result, observation)
    acm.proxy.reset()

    for _ in range(3):
        observation, again = await sync(destination, first, where)
        assert again is None
        assert observation.fingerprint == first.fingerprint

    assert acm.proxy.count("ImportCertificate") == 0
    assert writes(acm) == 0
    # One observe is two cheap reads: the tags (ownership) and the served leaf.
    assert sorted({record.operation for record in acm.proxy.records}) == [
        "GetCertificate",
        "ListTagsForCertificate",
    ]
    assert acm.proxy.count() == 6


async def test_renewal_reimports_under_the_same_arn_without_tags(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    config = acm_config(acm, tags={"team": "platform"})
    first, renewed = material(certs, issuer), material(certs, issuer)
    observation, result = await sync(destination, first, target(binding, config))
    assert result is not None
    arn = result.external_id
    assert arn is not None
    where = synced(target(binding, config), result, observation)

    observation, renewal = await sync(destination, renewed, where)

    assert observation.fingerprint == first.fingerprint
    assert renewal is not None
    assert renewal.external_id == arn
    assert renewal.message == f"re-imported into {arn}"
    imports = acm.proxy.calls("ImportCertificate")
    assert len(imports) == 2
    assert imports[1]["CertificateArn"] == arn
    assert "Tags" not in imports[1], "real ACM refuses tags on a re-import"
    assert base64.b64decode(imports[1]["Certificate"]) == renewed.leaf.public_bytes(Encoding.PEM)
    assert await served(acm, arn) == renewed.fingerprint
    assert await arns_in(acm) == [arn]
    # moto drops tags on a re-import (real ACM keeps them): the plugin puts them back.
    assert (
        tagging.missing_tags(
            await tags_of(acm, arn), tagging.desired_tags(binding, {"team": "platform"})
        )
        == {}
    )
    assert renewal.writes == writes(acm) - 1

    where = synced(where, renewal, observation)
    acm.proxy.reset()
    observation, again = await sync(destination, renewed, where)
    assert again is None
    assert observation.fingerprint == renewed.fingerprint
    assert writes(acm) == 0


async def test_publish_twice_imports_once(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    """A crash after the import and before status was written repeats the publish."""
    acm = aws_env
    config = acm_config(acm)
    first = material(certs, issuer)
    one = await destination.publish(first, target(binding, config))

    two = await destination.publish(first, target(binding, config))

    assert two.external_id == one.external_id
    assert two.writes == 0
    assert acm.proxy.count("ImportCertificate") == 1
    assert two.message == f"{one.external_id} already holds this certificate"


# -- lost status --------------------------------------------------------------------------


async def test_lost_status_finds_the_certificate_by_its_tags(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    config = acm_config(acm)
    first = material(certs, issuer, KeyType.ECDSA_P256)
    _, result = await sync(destination, first, target(binding, config))
    assert result is not None
    # Someone else's certificates in the same region do not confuse the search.
    foreign = await import_foreign(acm, material(certs, issuer))
    acm.proxy.reset()

    recreated = replace(binding, uid="another-uid")  # binding deleted and created again
    observation, again = await sync(destination, first, target(recreated, config))

    assert again is None
    assert observation.external_id == result.external_id
    assert observation.fingerprint == first.fingerprint
    (listed,) = acm.proxy.calls("ListCertificates")
    assert sorted(listed["Includes"]["keyTypes"]) == sorted(ALL_KEY_TYPES), (
        "ListCertificates lists only RSA_2048 certificates unless asked for every key type"
    )
    assert writes(acm) == 0

    renewed = material(certs, issuer, KeyType.ECDSA_P256)
    _, renewal = await sync(destination, renewed, target(recreated, config))
    assert renewal is not None
    assert renewal.external_id == result.external_id
    assert set(await arns_in(acm)) == {result.external_id, foreign}
    assert await served(acm, foreign) != renewed.fingerprint


async def test_certificate_deleted_outside_certauto_is_imported_again(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    config = acm_config(acm)
    first = material(certs, issuer)
    observation, result = await sync(destination, first, target(binding, config))
    assert result is not None
    assert result.external_id is not None
    where = synced(target(binding, config), result, observation)
    async with acm.client(direct=True) as client:
        await client.delete_certificate(CertificateArn=result.external_id)

    observation, again = await sync(destination, first, where)

    assert observation.fingerprint is None
    assert observation.drift is not None
    assert result.external_id in observation.drift
    assert "no longer in ACM" in observation.drift
    assert again is not None
    assert again.external_id != result.external_id
    assert await arns_in(acm) == [again.external_id]


async def test_reimport_by_someone_else_is_drift_that_the_next_publish_repairs(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    config = acm_config(acm)
    first, other = material(certs, issuer), material(certs, issuer)
    observation, result = await sync(destination, first, target(binding, config))
    assert result is not None
    assert result.external_id is not None
    arn = result.external_id
    where = synced(target(binding, config), result, observation)
    kept = await tags_of(acm, arn)
    async with acm.client(direct=True) as client:
        await client.import_certificate(
            CertificateArn=arn,
            Certificate=other.leaf.public_bytes(Encoding.PEM),
            PrivateKey=other.private_key_pem_pkcs8(),
            CertificateChain=other.chain_pem(),
        )
        # Real ACM keeps tags across a re-import; moto does not.
        await client.add_tags_to_certificate(CertificateArn=arn, Tags=tagging.to_tag_list(kept))

    observation, repaired = await sync(destination, first, where)

    assert observation.fingerprint is None
    assert observation.external_id == arn
    assert observation.drift is not None
    assert "re-imported outside CertAuto" in observation.drift
    assert other.fingerprint[:16] in observation.drift
    assert repaired is not None
    assert repaired.external_id == arn
    assert await served(acm, arn) == first.fingerprint


async def test_changed_tags_in_config_are_applied_without_an_import(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    first = material(certs, issuer)
    observation, result = await sync(destination, first, target(binding, acm_config(acm)))
    assert result is not None
    retargeted = target(binding, acm_config(acm, tags={"cost-center": "42"}))
    where = synced(retargeted, result, observation)
    acm.proxy.reset()

    observation, retagged = await sync(destination, first, where)

    assert observation.fingerprint is None
    assert observation.drift is not None
    assert "cost-center" in observation.drift
    assert retagged is not None
    assert retagged.writes == 1
    assert acm.proxy.count("ImportCertificate") == 0
    assert acm.proxy.calls("AddTagsToCertificate") == [
        {"CertificateArn": result.external_id, "Tags": [{"Key": "cost-center", "Value": "42"}]}
    ]
    observation, _ = await sync(destination, first, synced(where, retagged, observation))
    assert observation.fingerprint == first.fingerprint


# -- ownership and adoption ----------------------------------------------------------------


async def test_a_foreign_certificate_in_status_is_a_conflict_and_untouched(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    theirs = material(certs, issuer)
    foreign = await import_foreign(acm, theirs, tags={"owner": "someone"})
    where = target(binding, acm_config(acm), PreviousSync(None, foreign))

    with pytest.raises(ConflictError) as conflict:
        await sync(destination, material(certs, issuer), where)

    assert foreign in conflict.value.message
    assert writes(acm) == 0
    assert await served(acm, foreign) == theirs.fingerprint
    assert await tags_of(acm, foreign) == {"owner": "someone"}


async def test_untagged_certificates_are_never_touched_without_adoption(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    theirs = material(certs, issuer)
    foreign = await import_foreign(acm, theirs)

    _, result = await sync(destination, material(certs, issuer), target(binding, acm_config(acm)))

    assert result is not None
    assert result.external_id != foreign
    assert await served(acm, foreign) == theirs.fingerprint
    assert await tags_of(acm, foreign) == {}
    assert not any(
        call.get("CertificateArn") == foreign
        for operation in WRITE_OPERATIONS
        for call in acm.proxy.calls(operation)
    )


async def test_another_bindings_certificate_is_a_conflict_even_when_adopted(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    other = replace(binding, name="other")
    theirs = material(certs, issuer)
    foreign = await import_foreign(acm, theirs, tags=tagging.identity_tags(other))
    config = acm_config(acm, certificateArn=foreign)

    with pytest.raises(ConflictError) as conflict:
        await sync(destination, material(certs, issuer), target(binding, config))

    assert f"binding {binding.namespace}/other" in conflict.value.message
    assert writes(acm) == 0
    assert await served(acm, foreign) == theirs.fingerprint


async def test_adopted_certificate_is_reimported_and_tagged(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    adopted = await import_foreign(acm, material(certs, issuer), tags={"owner": "ops"})
    config = acm_config(acm, certificateArn=adopted, tags={"team": "web"})
    ours = material(certs, issuer)

    observation, result = await sync(destination, ours, target(binding, config))

    assert observation.fingerprint is None
    assert observation.external_id == adopted
    assert observation.drift is not None
    assert "lacks tags" in observation.drift
    assert result is not None
    assert result.external_id == adopted
    (sent,) = acm.proxy.calls("ImportCertificate")
    assert sent["CertificateArn"] == adopted
    assert "Tags" not in sent
    assert await served(acm, adopted) == ours.fingerprint
    assert tagging.ownership(await tags_of(acm, adopted), binding) is tagging.Ownership.OURS
    assert await arns_in(acm) == [adopted]

    where = synced(target(binding, config), result, observation)
    again, none = await sync(destination, ours, where)
    assert none is None
    assert again.fingerprint == ours.fingerprint


async def test_adopting_a_certificate_that_already_holds_the_material_only_tags_it(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    ours = material(certs, issuer)
    adopted = await import_foreign(acm, ours)

    _, result = await sync(
        destination, ours, target(binding, acm_config(acm, certificateArn=adopted))
    )

    assert result is not None
    assert result.external_id == adopted
    assert acm.proxy.count("ImportCertificate") == 0
    assert result.writes == 1 == acm.proxy.count("AddTagsToCertificate")


async def test_adopting_a_missing_certificate_fails_clearly(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    missing = f"arn:aws:acm:{acm.region}:123456789012:certificate/{'0' * 8}-{'0' * 4}-0000"

    with pytest.raises(PermanentError) as failed:
        await sync(
            destination,
            material(certs, issuer),
            target(binding, acm_config(acm, certificateArn=missing)),
        )

    assert f"certificateArn {missing} does not exist" in failed.value.message
    assert writes(acm) == 0


async def test_status_from_another_region_is_ignored(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    """After ``region`` changed, the old region's certificate does not count."""
    acm = aws_env
    stale = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-1111-1111-1111-111111111111"
    where = target(binding, acm_config(acm), PreviousSync("ab" * 32, stale))

    observation = await destination.observe(where)

    assert observation == Observation(fingerprint=None)
    assert not any(call.get("CertificateArn") == stale for call in acm.proxy.calls())
