"""What ACM cannot re-import (a key type change), and what happens when the binding goes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from acm_support import (
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
from moto.acm.models import acm_backends

from certauto_core.certs.material import CertificateMaterial
from certauto_core.plugins.contract import BindingRef, PreviousSync, Target
from certauto_core.plugins.errors import PermanentError, RetryableError
from certauto_core.testing.aws import AcmHandle
from certauto_core.testing.certs import CertFactory, IssuedCert, KeyType

LOAD_BALANCER = (
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/0123456789abcdef"
)


@pytest.fixture
def in_use(acm: AcmHandle) -> Iterator[list[str]]:
    """ARNs to mark as used by a load balancer, in moto's in-process backend."""
    marked: list[str] = []
    yield marked
    for arn in marked:
        account = arn.split(":")[4]
        backend = acm_backends[account][acm.region]
        if arn in backend._certificates:
            backend._certificates[arn].in_use_by.clear()


def mark_in_use(acm: AcmHandle, arn: str, marked: list[str]) -> None:
    acm_backends[arn.split(":")[4]][acm.region].set_certificate_in_use_by(arn, LOAD_BALANCER)
    marked.append(arn)


def free(acm: AcmHandle, arn: str) -> None:
    acm_backends[arn.split(":")[4]][acm.region]._certificates[arn].in_use_by.clear()


@dataclass(frozen=True)
class Switch:
    """An RSA certificate synced, then an ECDSA one: what each left behind."""

    old: str
    new: str
    message: str
    target: Target
    rsa: CertificateMaterial
    ecdsa: CertificateMaterial


async def rsa_then_ecdsa(
    destination: AcmDestination, where: Target, certs: CertFactory, issuer: IssuedCert
) -> Switch:
    rsa = material(certs, issuer, KeyType.RSA_2048)
    observation, first = await sync(destination, rsa, where)
    assert first is not None
    assert first.external_id is not None
    where = synced(where, first, observation)
    ecdsa = material(certs, issuer, KeyType.ECDSA_P256)
    observation, switched = await sync(destination, ecdsa, where)
    assert switched is not None
    assert switched.external_id is not None
    return Switch(
        old=first.external_id,
        new=switched.external_id,
        message=switched.message,
        target=synced(where, switched, observation),
        rsa=rsa,
        ecdsa=ecdsa,
    )


# -- key type change ---------------------------------------------------------------------


async def test_key_type_change_imports_a_new_certificate_and_keeps_the_old_one(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    config = acm_config(acm)

    switch = await rsa_then_ecdsa(destination, target(binding, config), certs, issuer)
    old, new = switch.old, switch.new

    assert new != old
    assert set(await arns_in(acm)) == {old, new}
    _, second = acm.proxy.calls("ImportCertificate")
    assert "CertificateArn" not in second, "ACM cannot re-import another key type"
    assert {tag["Key"]: tag["Value"] for tag in second["Tags"]}[tagging.SUPERSEDES] == old
    assert "key type changes from RSA_2048 to EC_prime256v1" in switch.message
    assert f"imported it as {new}" in switch.message
    assert f"kept the previous certificate {old}" in switch.message
    assert (await tags_of(acm, old))[tagging.SUPERSEDED_BY] == new
    assert await served(acm, old) == switch.rsa.fingerprint
    assert await served(acm, new) == switch.ecdsa.fingerprint

    # Steady state on the new certificate.
    acm.proxy.reset()
    observation = await destination.observe(switch.target)
    assert observation.fingerprint == switch.ecdsa.fingerprint
    assert writes(acm) == 0

    # Lost status finds the new certificate, not the superseded one.
    assert (await destination.observe(target(binding, config))).external_id == new
    # Status still naming the old ARN (a crash before the status patch) follows it.
    stale = target(binding, config, PreviousSync(switch.rsa.fingerprint, old))
    assert (await destination.observe(stale)).external_id == new


async def test_key_type_change_interrupted_after_the_import_does_not_import_twice(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    config = acm_config(acm)
    rsa, ecdsa = material(certs, issuer), material(certs, issuer, KeyType.ECDSA_P256)
    observation, first = await sync(destination, rsa, target(binding, config))
    assert first is not None
    where = synced(target(binding, config), first, observation)
    acm.proxy.fail_next("AddTagsToCertificate")  # marking the old one fails

    with pytest.raises(RetryableError):
        await sync(destination, ecdsa, where)
    _, retried = await sync(destination, ecdsa, where)  # status still names the old ARN

    assert retried is not None
    assert acm.proxy.count("ImportCertificate", include_injected=False) == 2
    assert len(await arns_in(acm)) == 2
    assert (await tags_of(acm, str(first.external_id)))[tagging.SUPERSEDED_BY] == (
        retried.external_id
    )


async def test_key_type_change_under_delete_policy_deletes_the_old_certificate(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    where = Target(binding=binding, config=acm_config(acm), deletion_policy="Delete")

    switch = await rsa_then_ecdsa(destination, where, certs, issuer)

    assert await arns_in(acm) == [switch.new]
    assert f"deleted the previous certificate {switch.old}" in switch.message
    assert tagging.SUPERSEDES not in await tags_of(acm, switch.new)


async def test_an_old_certificate_in_use_is_kept_and_deleted_once_free(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
    in_use: list[str],
) -> None:
    acm = aws_env
    config = acm_config(acm)
    where: Target = Target(binding=binding, config=config, deletion_policy="Delete")
    rsa = material(certs, issuer)
    observation, first = await sync(destination, rsa, where)
    assert first is not None
    assert first.external_id is not None
    old = first.external_id
    mark_in_use(acm, old, in_use)
    where = synced(where, first, observation)

    _, switched = await sync(destination, material(certs, issuer, KeyType.ECDSA_P256), where)

    assert switched is not None
    assert f"kept the previous certificate {old} (in use by {LOAD_BALANCER})" in switched.message
    assert acm.proxy.count("DeleteCertificate") == 0, "a certificate in use is not deleted"
    assert len(await arns_in(acm)) == 2

    # The load balancer moved to the new ARN; the next renewal cleans up.
    free(acm, old)
    where = replace(where, previous=PreviousSync(switched.fingerprint, switched.external_id))
    _, renewal = await sync(destination, material(certs, issuer, KeyType.ECDSA_P256), where)
    assert renewal is not None
    assert renewal.external_id == switched.external_id
    assert f"deleted the previous certificate {old}" in renewal.message
    assert await arns_in(acm) == [switched.external_id]


async def test_a_refused_deletion_is_reported_not_retried(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    where = Target(binding=binding, config=acm_config(acm), deletion_policy="Delete")
    acm.proxy.fail_next("DeleteCertificate", error_code="ResourceInUseException", message="in use")

    switch = await rsa_then_ecdsa(destination, where, certs, issuer)

    assert "ResourceInUseException" in switch.message
    assert set(await arns_in(acm)) == {switch.old, switch.new}
    assert acm.proxy.count("DeleteCertificate") == 1


async def test_an_adopted_certificate_cannot_change_key_type(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    adopted = await import_foreign(acm, material(certs, issuer))
    where = target(binding, acm_config(acm, certificateArn=adopted))

    with pytest.raises(PermanentError) as refused:
        await sync(destination, material(certs, issuer, KeyType.ECDSA_P384), where)

    assert f"cannot re-import into certificateArn {adopted}" in refused.value.message
    assert "key type changes from RSA_2048 to EC_secp384r1" in refused.value.message
    assert writes(acm) == 0


# -- retract ---------------------------------------------------------------------------


async def test_retain_leaves_the_certificate_and_its_tags_and_calls_nothing(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    config = acm_config(acm)
    observation, first = await sync(destination, material(certs, issuer), target(binding, config))
    where = synced(target(binding, config), first, observation)
    acm.proxy.reset()

    result = await destination.retract(replace(where, deleting=True), delete=False)

    assert result.removed is False
    assert str(where.previous.external_id) in result.message
    assert acm.proxy.count() == 0
    assert await arns_in(acm) == [where.previous.external_id]
    # A binding created again under the same name takes the certificate back.
    recreated = target(replace(binding, uid="new-uid"), config)
    assert (await destination.observe(recreated)).external_id == where.previous.external_id


async def test_delete_removes_every_certificate_of_the_entry_and_only_those(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    config = acm_config(acm)
    switch = await rsa_then_ecdsa(destination, target(binding, config), certs, issuer)
    where = switch.target
    foreign = await import_foreign(acm, material(certs, issuer))
    neighbour = replace(binding, destination="acm-eu")
    _, theirs = await sync(destination, material(certs, issuer), target(neighbour, config))
    assert theirs is not None

    result = await destination.retract(replace(where, deleting=True), delete=True)

    assert result.removed is True
    assert switch.old in result.message
    assert switch.new in result.message
    assert set(await arns_in(acm)) == {foreign, theirs.external_id}
    again = await destination.retract(where, delete=True)
    assert again.removed is True
    observation = await destination.observe(where)
    assert observation.fingerprint is None


async def test_delete_of_a_certificate_in_use_is_reported(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
    in_use: list[str],
) -> None:
    acm = aws_env
    config = acm_config(acm)
    _, first = await sync(destination, material(certs, issuer), target(binding, config))
    assert first is not None
    assert first.external_id is not None
    mark_in_use(acm, first.external_id, in_use)

    with pytest.raises(PermanentError) as refused:
        await destination.retract(target(binding, config), delete=True)

    assert f"{first.external_id} (in use by {LOAD_BALANCER})" in refused.value.message
    assert acm.proxy.count("DeleteCertificate") == 0
    assert await arns_in(acm) == [first.external_id]


async def test_delete_refused_by_acm_is_reported(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    config = acm_config(acm)
    _, first = await sync(destination, material(certs, issuer), target(binding, config))
    assert first is not None
    acm.proxy.fail_next("DeleteCertificate", error_code="ResourceInUseException", message="x")

    with pytest.raises(PermanentError) as refused:
        await destination.retract(target(binding, config), delete=True)

    assert "ResourceInUseException" in refused.value.message
    assert await arns_in(acm) == [first.external_id]


async def test_retract_of_a_removed_entry_without_config_leaves_the_certificate(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    config = acm_config(acm)
    observation, first = await sync(destination, material(certs, issuer), target(binding, config))
    where = synced(target(binding, config), first, observation)
    acm.proxy.reset()

    result = await destination.retract(replace(where, config=None), delete=True)

    assert result.removed is False
    assert "cannot tell which region and credentials" in result.message
    assert acm.proxy.count() == 0
    assert await arns_in(acm) == [where.previous.external_id]
