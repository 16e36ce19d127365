"""The ``aws-acm`` destination: one ACM certificate per destination entry, one ARN for life.

Finding "our" certificate, in order (status is a hint, tags are the record):

1. ``certificateArn`` in the config: that certificate, adopted even when untagged
   (it gets CertAuto's tags on the first publish), unless another binding's tags
   are on it;
2. the ARN status last recorded (``target.previous.external_id``), if it is in the
   configured region and still tagged for this binding and destination entry; a
   certificate CertAuto replaced points at its replacement;
3. a search of the region's imported certificates for this entry's tags.

Nothing found means "import a new certificate". A certificate found that
already serves the material's fingerprint is never imported again (ACM allows
about 5,000 imports a year); otherwise the certificate is re-imported under its
ARN, without tags, so load balancers and CloudFront keep working. What ACM
cannot re-import (another key type or size, dropped key usages) is imported as a
new certificate, and the old one is kept, tagged as superseded, or deleted when
the binding's ``deletionPolicy`` is ``Delete`` and nothing uses it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from certauto_acm import __version__
from certauto_acm import tags as tagging
from certauto_acm.acm import CREDENTIAL_ERRORS, AcmApi, Candidate, Held
from certauto_acm.auth import resolve
from certauto_acm.clients import ClientPool
from certauto_acm.config import AcmConfig, arn_region
from certauto_acm.rules import UnimportableMaterialError, check_importable, reimport_blockers
from certauto_core.certs.material import CertificateMaterial
from certauto_core.plugins.contract import (
    Observation,
    PluginContext,
    PublishResult,
    RetractResult,
    Target,
)
from certauto_core.plugins.errors import ConflictError, PermanentError


class AcmDestination:
    """The :class:`~certauto_core.plugins.contract.Destination` for ``type: aws-acm``."""

    def __init__(self, context: PluginContext) -> None:
        self._kube = context.kube
        self._log = context.logger
        self._clients = ClientPool(user_agent=f"certauto-acm/{__version__}")

    # -- the contract -----------------------------------------------------------------

    async def check_material(self, material: CertificateMaterial, target: Target) -> None:
        try:
            check_importable(material)
        except UnimportableMaterialError as refused:
            raise PermanentError(str(refused)) from None

    async def observe(self, target: Target) -> Observation:
        config = _config(target)
        async with self._api(target, config) as api:
            held = await _locate(api, target, config)
        if held is None:
            recorded = _usable_previous_arn(target, config)
            drift = (
                f"certificate {recorded} recorded in status is no longer in ACM "
                "(deleted outside CertAuto?)"
                if recorded
                else None
            )
            return Observation(fingerprint=None, drift=drift)
        status = target.previous
        if (
            status.external_id == held.arn
            and status.synced_fingerprint is not None
            and status.synced_fingerprint != held.fingerprint
        ):
            return Observation(
                fingerprint=None,
                external_id=held.arn,
                not_after=held.not_after,
                drift=(
                    f"certificate {held.arn} serves {held.fingerprint[:16]}…, not the "
                    "certificate CertAuto imported (re-imported outside CertAuto?)"
                ),
            )
        missing = tagging.missing_tags(held.tags, tagging.desired_tags(target.binding, config.tags))
        if missing:
            return Observation(
                fingerprint=None,
                external_id=held.arn,
                not_after=held.not_after,
                drift=f"certificate {held.arn} lacks tags {', '.join(sorted(missing))}",
            )
        return Observation(
            fingerprint=held.fingerprint, external_id=held.arn, not_after=held.not_after
        )

    async def publish(self, material: CertificateMaterial, target: Target) -> PublishResult:
        await self.check_material(material, target)
        config = _config(target)
        wanted = tagging.desired_tags(target.binding, config.tags)
        async with self._api(target, config) as api:
            held = await _locate(api, target, config)
            if held is None:
                arn = await api.import_certificate(material, tags=wanted)
                return _result(material, arn, f"imported as {arn}", api.writes)

            if held.fingerprint == material.fingerprint:
                # ACM already serves this certificate: never spend an import on it.
                await api.add_tags(held.arn, tagging.missing_tags(held.tags, wanted))
                message = f"{held.arn} already holds this certificate"
                if api.writes:
                    message += "; restored its tags"
                return _result(material, held.arn, message, api.writes)

            blockers = reimport_blockers(held.leaf, material.leaf)
            if config.certificate_arn is not None:
                await _check_adoptable(api, held.arn, blockers)
            if blockers:
                return await self._replace(api, held, material, target, wanted, blockers)

            await api.import_certificate(material, arn=held.arn)
            await _restore_tags(api, held, wanted)
            message = f"re-imported into {held.arn}"
            note = await _clean_up_superseded(api, held, target)
            return _result(material, held.arn, message + note, api.writes)

    async def retract(self, target: Target, *, delete: bool) -> RetractResult:
        recorded = target.previous.external_id
        if not delete:
            where = f"certificate {recorded}" if recorded else "the certificate"
            return RetractResult(
                removed=False,
                message=(
                    f"{where} left in ACM (deletionPolicy Retain) with its CertAuto tags, "
                    "so a binding of the same name takes it back"
                ),
            )
        if target.config is None:
            where = f"certificate {recorded}" if recorded else "its certificate"
            return RetractResult(
                removed=False,
                message=(
                    f"the entry was removed from the spec with its config, so CertAuto cannot "
                    f"tell which region and credentials hold {where}; it was left in ACM"
                ),
            )
        config = _config(target)
        async with self._api(target, config) as api:
            arns = {candidate.arn for candidate in await api.search(target.binding)}
            # Status's ARN too, in case the listing lags behind a fresh import.
            recorded_arn = _usable_previous_arn(target, config)
            if recorded_arn is not None and recorded_arn not in arns:
                tags = await api.tags_of(recorded_arn)
                if tags is not None and _is_ours(tags, target):
                    arns.add(recorded_arn)
            deleted: list[str] = []
            kept: list[str] = []
            for arn in sorted(arns):
                in_use = await api.delete(arn)
                if in_use is None:
                    deleted.append(arn)
                else:
                    kept.append(f"{arn} ({in_use})")
        if kept:
            done = f"deleted {', '.join(deleted)}; " if deleted else ""
            raise PermanentError(
                f"{done}could not delete {', '.join(kept)}: detach it from its load balancers "
                "or distributions; deletion is tried again on the next resync"
            )
        if not deleted:
            return RetractResult(removed=True, message="no certificate of this entry was in ACM")
        return RetractResult(removed=True, message=f"deleted {', '.join(deleted)}")

    async def aclose(self) -> None:
        await self._clients.aclose()

    # -- helpers ----------------------------------------------------------------------

    @asynccontextmanager
    async def _api(self, target: Target, config: AcmConfig) -> AsyncIterator[AcmApi]:
        source = await resolve(self._kube, target.binding.namespace, config.credentials)
        async with AsyncExitStack() as stack:
            try:
                client = await stack.enter_async_context(
                    self._clients.acm(
                        region=config.region,
                        endpoint_url=config.endpoint_url,
                        sts_endpoint_url=config.sts_endpoint_url,
                        source=source,
                    )
                )
            except CREDENTIAL_ERRORS as error:
                raise PermanentError(
                    f"ACM in {config.region}: no usable AWS credentials from "
                    f"{source.description} ({type(error).__name__})"
                ) from error
            yield AcmApi(client, region=config.region, source=source, log=self._log)

    async def _replace(
        self,
        api: AcmApi,
        old: Held,
        material: CertificateMaterial,
        target: Target,
        wanted: Mapping[str, str],
        blockers: list[str],
    ) -> PublishResult:
        """Import a new certificate for what ACM cannot re-import, and retire the old one.

        A replacement imported by an earlier attempt that crashed before status
        recorded it carries ``supersedes = <old ARN>``: it is reused, not duplicated.
        """
        replacement = await _earlier_replacement(api, old, target)
        if (
            replacement is not None
            and replacement.fingerprint != material.fingerprint
            and reimport_blockers(replacement.leaf, material.leaf)
        ):
            replacement = None  # it cannot take this material either: start afresh
        if replacement is None:
            new_arn = await api.import_certificate(
                material, tags={**wanted, tagging.SUPERSEDES: old.arn}
            )
        elif replacement.fingerprint == material.fingerprint:
            new_arn = replacement.arn
        else:
            new_arn = replacement.arn
            await api.import_certificate(material, arn=new_arn)
            await _restore_tags(api, replacement, wanted)
        if old.tags.get(tagging.SUPERSEDED_BY) != new_arn:
            await api.add_tags(old.arn, {tagging.SUPERSEDED_BY: new_arn})
        reason = "; ".join(blockers)
        message = f"ACM cannot re-import this certificate ({reason}): imported it as {new_arn}"
        if _deletes(target):
            in_use = await api.delete(old.arn)
            if in_use is None:
                await api.remove_tags(new_arn, [tagging.SUPERSEDES])
                message += f"; deleted the previous certificate {old.arn}"
            else:
                message += (
                    f"; kept the previous certificate {old.arn} ({in_use}): move its users "
                    "to the new ARN, it is deleted on a later renewal or with the binding"
                )
        else:
            message += (
                f"; kept the previous certificate {old.arn} (tagged superseded): move its "
                "users to the new ARN"
            )
        self._log.warning("%s", message)
        return _result(material, new_arn, message, api.writes)


# -- locating our certificate ---------------------------------------------------------


async def _locate(api: AcmApi, target: Target, config: AcmConfig) -> Held | None:
    """The certificate this entry manages, or ``None`` (see the module docstring)."""
    binding = target.binding
    if config.certificate_arn is not None:
        held = await api.read(config.certificate_arn)
        if held is None:
            raise PermanentError(
                f"certificateArn {config.certificate_arn} does not exist in {config.region} "
                "for the configured credentials"
            )
        if tagging.ownership(held.tags, binding) is tagging.Ownership.OTHER_BINDING:
            raise ConflictError(
                f"certificateArn {held.arn} is managed by CertAuto for "
                f"{tagging.describe_owner(held.tags)}; it was left untouched"
            )
        return held

    recorded = _usable_previous_arn(target, config)
    if recorded is not None:
        held = await api.read(recorded)
        if held is not None:
            owner = tagging.ownership(held.tags, binding)
            if owner is tagging.Ownership.UNMANAGED:
                raise ConflictError(
                    f"certificate {held.arn} recorded in status is no longer tagged as "
                    "CertAuto's; it was left untouched (tag it again, or adopt it with "
                    "certificateArn)"
                )
            if owner is tagging.Ownership.OTHER_BINDING:
                raise ConflictError(
                    f"certificate {held.arn} recorded in status belongs to "
                    f"{tagging.describe_owner(held.tags)}; it was left untouched"
                )
            successor = held.tags.get(tagging.SUPERSEDED_BY)
            if not successor:
                return held
            replacement = await api.read(successor)
            if replacement is not None and _is_ours(replacement.tags, target):
                return replacement
        # Deleted, or replaced by something gone: look for it by its tags.

    candidates = await api.search(binding)
    chosen = _current(candidates)
    if chosen is None:
        return None
    return await api.read(chosen.arn)


def _current(candidates: list[Candidate]) -> Candidate | None:
    """The live one among this entry's certificates: not superseded, newest first."""
    replaced = {c.tags[tagging.SUPERSEDES] for c in candidates if tagging.SUPERSEDES in c.tags}
    live = [c for c in candidates if tagging.SUPERSEDED_BY not in c.tags and c.arn not in replaced]
    if not live:
        return None
    return max(live, key=lambda c: (c.imported_at, c.arn))


async def _earlier_replacement(api: AcmApi, old: Held, target: Target) -> Held | None:
    successor = old.tags.get(tagging.SUPERSEDED_BY)
    if successor:
        held = await api.read(successor)
        if held is not None and _is_ours(held.tags, target):
            return held
    for candidate in await api.search(target.binding):
        if candidate.tags.get(tagging.SUPERSEDES) == old.arn:
            return await api.read(candidate.arn)
    return None


def _is_ours(tags: Mapping[str, str], target: Target) -> bool:
    return tagging.ownership(tags, target.binding) is tagging.Ownership.OURS


def _usable_previous_arn(target: Target, config: AcmConfig) -> str | None:
    """Status's ARN, when it is an ACM ARN in the configured region (else it is stale)."""
    recorded = target.previous.external_id
    if recorded and arn_region(recorded) == config.region:
        return recorded
    return None


async def _check_adoptable(api: AcmApi, arn: str, blockers: list[str]) -> None:
    """An adopted certificate must be an imported one, and re-importable."""
    described = await api.describe(arn)
    kind = (described or {}).get("Type", "IMPORTED")
    if kind != "IMPORTED":
        raise PermanentError(
            f"certificateArn {arn} is an ACM-issued certificate ({kind}): only imported "
            "certificates can be re-imported"
        )
    if blockers:
        raise PermanentError(
            f"cannot re-import into certificateArn {arn}: {'; '.join(blockers)}; remove "
            "certificateArn to let CertAuto import a new certificate"
        )


async def _restore_tags(api: AcmApi, before: Held, wanted: Mapping[str, str]) -> None:
    """After a re-import, make sure the tags survived.

    Real ACM keeps tags across a re-import; emulators (moto) drop them. One read
    per renewal buys the certainty that a lost status can still find the certificate.
    """
    keep = {
        key: value
        for key, value in before.tags.items()
        if key in (tagging.SUPERSEDES,) or key in wanted
    }
    present = await api.tags_of(before.arn) or {}
    await api.add_tags(before.arn, tagging.missing_tags(present, {**keep, **wanted}))


async def _clean_up_superseded(api: AcmApi, current: Held, target: Target) -> str:
    """Under ``deletionPolicy: Delete``, delete a certificate this one replaced once it is free."""
    previous = current.tags.get(tagging.SUPERSEDES)
    if not previous or not _deletes(target):
        return ""
    in_use = await api.delete(previous)
    if in_use is not None:
        return f"; the previous certificate {previous} is still {in_use}"
    await api.remove_tags(current.arn, [tagging.SUPERSEDES])
    return f"; deleted the previous certificate {previous}"


def _deletes(target: Target) -> bool:
    """Whether the binding's ``deletionPolicy`` is ``Delete`` (else replaced ones stay)."""
    # ``Target.deletion_policy`` is newer than contract version 1's first cut: on a core
    # without it, keep replaced certificates (Retain), which can never break a listener.
    return getattr(target, "deletion_policy", "Retain") == "Delete"


def _config(target: Target) -> AcmConfig:
    config = target.config
    if not isinstance(config, AcmConfig):
        raise PermanentError(
            f"destination {target.binding.destination}: expected an aws-acm config, got "
            f"{type(config).__name__}"
        )
    return config


def _result(material: CertificateMaterial, arn: str, message: str, writes: int) -> PublishResult:
    return PublishResult(
        fingerprint=material.fingerprint,
        external_id=arn,
        not_after=material.info.not_after,
        message=message,
        writes=writes,
    )
