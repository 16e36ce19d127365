"""Reconcile one CertificateBinding: level-based, idempotent, writes only on difference.

The reconciler reads the binding and its source from the in-memory indexes the
watches keep, validates the certificate before any destination is touched,
drives every destination concurrently, and patches ``status`` only when it
changed. A steady state therefore costs no API write and no cloud call beyond
what each destination's ``observe`` needs.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pydantic

from certauto_core.api.models import (
    CertificateBindingSpec,
    CertificateBindingStatus,
    CertificateStatus,
    DeletionPolicy,
    DestinationState,
    DestinationStatus,
)
from certauto_core.certs.material import CertificateMaterial, MaterialError, parse_tls_secret_data
from certauto_core.certs.validation import validate_material
from certauto_core.engine import managed
from certauto_core.engine.conditions_summary import VALIDATED, Verdict, summarize
from certauto_core.engine.destination_sync import (
    SyncOutcome,
    failed_before_sync,
    is_waiting,
    previous_sync,
    sync_destination,
)
from certauto_core.engine.indexes import BindingStore, WatchedSecrets
from certauto_core.engine.workqueue import WorkQueue
from certauto_core.kube.client import KubeClient
from certauto_core.kube.errors import ApiError, ConflictError, ForbiddenError, NotFoundError
from certauto_core.kube.events import EventRecorder
from certauto_core.kube.resources import CERTIFICATE_BINDINGS, SECRETS
from certauto_core.observability.logging import log_context
from certauto_core.observability.metrics import Metrics
from certauto_core.plugins.contract import (
    BindingRef,
    Destination,
    PluginContext,
    RetractResult,
    Target,
    secret_content_hash,
)
from certauto_core.plugins.errors import ConfigError, DestinationError, RetryableError
from certauto_core.plugins.manager import PluginManager, UnknownDestinationType

log = logging.getLogger("certauto.reconciler")

FINALIZER = "certauto.sanorg.in/cleanup"
WATCHED_LABEL = "certauto.sanorg.in/watched"


class BindingKey(NamedTuple):
    namespace: str
    name: str


class NotLeaderError(Exception):
    """This replica may not write any more; the reconcile stops where it is."""


@dataclass
class Reconciler:
    """Everything a reconcile needs; one instance per operator process."""

    kube: KubeClient
    plugins: PluginManager
    context: PluginContext
    secrets: WatchedSecrets
    bindings: BindingStore
    events: EventRecorder
    metrics: Metrics
    queue: WorkQueue[BindingKey]
    resync_interval: timedelta = timedelta(minutes=10)
    may_write: Callable[[], bool] = lambda: True
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _destinations: dict[str, Destination] = field(default_factory=dict)
    _parsed: dict[str, CertificateMaterial | MaterialError] = field(default_factory=dict)

    # ------------------------------------------------------------------ entry point
    async def reconcile(self, key: BindingKey) -> None:
        obj = self.bindings.get(key.namespace, key.name)
        if obj is None:
            self.metrics.forget_binding(key.namespace, key.name)
            return
        started = asyncio.get_running_loop().time()
        with log_context(namespace=key.namespace, certificatebinding=key.name):
            try:
                await self._reconcile(key, obj)
                self.metrics.reconcile_total.labels(result="ok").inc()
            except NotLeaderError:
                log.info("stopped reconciling: this replica is no longer the leader")
            except ApiError as error:
                self.metrics.reconcile_errors_total.inc()
                self.metrics.reconcile_total.labels(result="error").inc()
                log.warning("reconcile failed: %s", error)
                self.queue.add_after(key, 5.0 if error.status != 409 else 0.2)
            finally:
                self.metrics.reconcile_duration_seconds.observe(
                    asyncio.get_running_loop().time() - started
                )

    async def aclose(self) -> None:
        for destination in self._destinations.values():
            try:
                await destination.aclose()
            except Exception:
                log.exception("closing a destination failed")
        self._destinations.clear()

    def guard(self) -> None:
        if not self.may_write():
            raise NotLeaderError

    # ------------------------------------------------------------------ the flow
    async def _reconcile(self, key: BindingKey, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        now = self.clock().replace(microsecond=0)
        status = _read_status(obj)
        try:
            spec = CertificateBindingSpec.model_validate(obj.get("spec") or {})
        except pydantic.ValidationError as error:
            await self._invalid_spec(key, obj, status, error, now)
            return
        if meta.get("deletionTimestamp"):
            await self._finalize(key, obj, spec, status, now)
            return
        if FINALIZER not in (meta.get("finalizers") or []):
            await self._add_finalizer(key, obj)
            return  # the watch brings the updated object back
        if spec.sync_policy.suspend:
            await self._write_status(key, obj, status, _suspended(status, obj, now))
            return

        material, verdict, source = await self._source(key, spec, now)
        destinations: list[DestinationStatus] = []
        wake: list[datetime] = []
        if material is not None:
            outcomes = await self._sync_all(key, obj, spec, status, material, now)
            for outcome in outcomes:
                destinations.append(outcome.status)
                if outcome.retry_at is not None:
                    wake.append(outcome.retry_at)
        else:
            # Validation failed: every destination keeps its last good certificate.
            destinations = [
                status.destination(d.name)
                or DestinationStatus(name=d.name, type=d.type, state=DestinationState.PENDING)
                for d in spec.destinations
            ]
            wake.append(now + spec.sync_policy.retry_interval)
        await self._retract_removed(key, obj, spec, status, now)

        conditions, column = summarize(
            status.conditions,
            validation=verdict,
            destinations=destinations,
            generation=meta.get("generation"),
            now=now,
        )
        new_status = CertificateBindingStatus(
            observed_generation=meta.get("generation"),
            conditions=conditions,
            certificate=(
                CertificateStatus.model_validate(material.info.to_status())
                if material is not None
                else status.certificate
            ),
            destinations=tuple(destinations),
            source=source,
            synced_destinations=column,
            not_after=material.info.not_after if material is not None else status.not_after,
        )
        self._report(key, obj, status, new_status, verdict)
        await self._write_status(key, obj, status, new_status)
        for moment in wake:
            self.queue.add_after(key, max(0.0, (moment - self.clock()).total_seconds()))

    # ------------------------------------------------------------------ source
    async def _source(
        self, key: BindingKey, spec: CertificateBindingSpec, now: datetime
    ) -> tuple[CertificateMaterial | None, Verdict, str]:
        binding = self.bindings.get(key.namespace, key.name) or {}
        managed_mode = managed.ManagedCertificates(self.kube, self.secrets, self.events, self.guard)
        note = ""
        if spec.certificate is not None:
            # Managed mode: the Secret cert-manager issued for our Certificate is the source.
            source = f"{managed.SOURCE_PREFIX}{managed.certificate_name(key.name)}"
            issued = await managed_mode.issued(binding, spec.certificate)
            if issued.data is None:
                return None, issued.verdict, source
            data, note = issued.data, issued.note
        else:
            assert spec.source_secret_ref is not None  # exactly one source (the model checks)
            if managed.was_managed(binding):
                # Switched from spec.certificate: the Certificate goes, its Secret stays.
                # Until this succeeds the status keeps saying certificate/..., so an
                # ApiError here makes reconcile() retry rather than orphan the Certificate.
                await managed_mode.release(
                    key.namespace, key.name, binding["metadata"].get("uid", ""), delete_secret=None
                )
            secret_name = spec.source_secret_ref.name
            source = f"secret/{secret_name}"
            found = self.secrets.source_data(key.namespace, secret_name)
            if found is None:
                try:
                    found = await self._adopt_source(key.namespace, secret_name)
                except ForbiddenError as error:
                    # Say it where the user looks, not only in the operator's logs.
                    return (
                        None,
                        Verdict(
                            False,
                            "Forbidden",
                            f"the operator may not read or label Secret "
                            f"{key.namespace}/{secret_name}: {error.message}",
                        ),
                        source,
                    )
            if found is None:
                return (
                    None,
                    Verdict(
                        False,
                        "SourceNotFound",
                        f"Secret {key.namespace}/{secret_name} does not exist",
                    ),
                    source,
                )
            data = found
        material = self._parse(data)
        if isinstance(material, MaterialError):
            return None, Verdict(False, str(material.reason), material.message), source
        failure = validate_material(
            material, now=now, min_remaining_validity=spec.validation.min_remaining_validity
        )
        if failure is not None:
            return None, Verdict(False, str(failure.reason), failure.message), source
        message = (
            f"certificate {material.fingerprint[:16]} for "
            f"{', '.join(material.info.dns_names) or material.info.issuer} "
            f"is valid until {material.info.not_after:%Y-%m-%dT%H:%M:%SZ}"
        )
        if note:
            message = f"{message}; {note}"
        return material, Verdict(True, "Valid", message), source

    async def _adopt_source(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        """Read an unlabelled source Secret once and label it so the watch sees it."""
        try:
            secret = await self.kube.get(SECRETS.path(namespace, name))
        except NotFoundError:
            return None
        labels = secret["metadata"].get("labels") or {}
        if labels.get(WATCHED_LABEL) != "true":
            self.guard()
            patched = await self.kube.merge_patch(
                SECRETS.path(namespace, name), {"metadata": {"labels": {WATCHED_LABEL: "true"}}}
            )
            self.secrets.observe_write(patched)
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}

    def _parse(self, data: Mapping[str, bytes]) -> CertificateMaterial | MaterialError:
        digest = secret_content_hash(data)
        cached = self._parsed.get(digest)
        if cached is None:
            try:
                cached = parse_tls_secret_data(data)
            except MaterialError as error:
                cached = error
            if len(self._parsed) > 4096:
                self._parsed.clear()
            self._parsed[digest] = cached
        return cached

    # ------------------------------------------------------------------ destinations
    def _destination(self, type_name: str) -> Destination:
        destination = self._destinations.get(type_name)
        if destination is None:
            registered = self.plugins.destination_type(type_name)
            destination = registered.destination_type.factory(self.context)
            self._destinations[type_name] = destination
        return destination

    async def _sync_all(
        self,
        key: BindingKey,
        obj: Mapping[str, Any],
        spec: CertificateBindingSpec,
        status: CertificateBindingStatus,
        material: CertificateMaterial,
        now: datetime,
    ) -> list[SyncOutcome]:
        uid = obj["metadata"].get("uid", "")
        source_secret = (
            spec.source_secret_ref.name
            if spec.source_secret_ref is not None
            else spec.certificate.secret_name
            if spec.certificate is not None
            else None
        )

        async def one(entry_name: str, type_name: str, raw: Mapping[str, Any]) -> SyncOutcome:
            previous = status.destination(entry_name)
            if previous is not None and previous.type != type_name:
                previous = None  # a changed type starts over
            with log_context(destination=entry_name):
                try:
                    destination = self._destination(type_name)
                    config = self.plugins.validate_config(type_name, raw)
                except DestinationError as error:
                    failed = failed_before_sync(entry_name, type_name, previous, error.message, now)
                    return SyncOutcome(failed, "failed")
                waiting = is_waiting(previous, material.fingerprint, now, self.resync_interval)
                if (
                    waiting is not None
                    and previous is not None
                    and not self._spec_changed(obj, status)
                ):
                    return SyncOutcome(previous, "skipped", retry_at=waiting)
                target = Target(
                    binding=BindingRef(key.namespace, key.name, uid, entry_name),
                    config=config,
                    previous=previous_sync(previous),
                    deletion_policy=spec.sync_policy.deletion_policy.value,
                    source_secret=source_secret,
                )
                timer = asyncio.get_running_loop().time()
                outcome = await sync_destination(
                    destination,
                    material,
                    target,
                    previous=previous,
                    type_name=type_name,
                    policy=spec.sync_policy,
                    now=self.clock,
                    guard=self.guard,
                )
                self.metrics.sync_duration_seconds.labels(type=type_name).observe(
                    asyncio.get_running_loop().time() - timer
                )
                self.metrics.sync_total.labels(type=type_name, result=outcome.result).inc()
                if outcome.status.state is DestinationState.SYNCED:
                    # A destination that cannot tell its expiry holds what we gave it.
                    expiry = outcome.not_after or material.info.not_after
                    self.metrics.destination_expiry_timestamp_seconds.labels(
                        namespace=key.namespace, binding=key.name, destination=entry_name
                    ).set(expiry.timestamp())
                if outcome.result in ("retrying", "failed", "conflict"):
                    log.warning("destination %s: %s", entry_name, outcome.status.message)
                elif outcome.wrote:
                    log.info("destination %s: %s", entry_name, outcome.status.message)
                return outcome

        tasks: list[asyncio.Task[SyncOutcome]] = []
        async with asyncio.TaskGroup() as group:
            for entry in spec.destinations:
                tasks.append(group.create_task(one(entry.name, entry.type, entry.config)))
        return [task.result() for task in tasks]

    @staticmethod
    def _spec_changed(obj: Mapping[str, Any], status: CertificateBindingStatus) -> bool:
        return bool(obj["metadata"].get("generation") != status.observed_generation)

    async def _retract(
        self,
        key: BindingKey,
        uid: str,
        entry: DestinationStatus,
        raw_config: Mapping[str, Any] | None,
        delete: bool,
        deleting: bool,
    ) -> RetractResult:
        """Apply the deletion policy to one destination entry.

        An entry whose type is not installed, or that never held anything, has
        nothing CertAuto could remove: it must not block deletion forever.
        """
        try:
            destination = self._destination(entry.type)
        except UnknownDestinationType as error:
            log.warning("cannot clean up destination %s: %s", entry.name, error.message)
            return RetractResult(removed=False, message=error.message)
        config = None
        if raw_config is not None:
            try:
                config = self.plugins.validate_config(entry.type, raw_config)
            except ConfigError:
                config = None  # retract by the destination's own markers, as for a removed entry
        target = Target(
            binding=BindingRef(key.namespace, key.name, uid, entry.name),
            config=config,
            previous=previous_sync(entry),
            deleting=deleting,
        )
        self.guard()
        with log_context(destination=entry.name):
            result = await destination.retract(target, delete=delete)
            log.info("destination %s retracted: %s", entry.name, result.message or result.removed)
            self.metrics.sync_total.labels(type=entry.type, result="removed").inc()
            return result

    async def _retract_removed(
        self,
        key: BindingKey,
        obj: Mapping[str, Any],
        spec: CertificateBindingSpec,
        status: CertificateBindingStatus,
        now: datetime,
    ) -> None:
        """Destinations dropped from the spec: apply deletionPolicy to what they left."""
        wanted = {d.name for d in spec.destinations}
        delete = spec.sync_policy.deletion_policy is DeletionPolicy.DELETE
        for entry in status.destinations:
            if entry.name in wanted:
                continue
            try:
                await self._retract(key, obj["metadata"].get("uid", ""), entry, None, delete, False)
            except (DestinationError, Exception) as error:
                if isinstance(error, NotLeaderError):
                    raise
                log.warning("removing destination %s failed: %s", entry.name, error)
                self.queue.add_after(key, spec.sync_policy.retry_interval.total_seconds())

    # ------------------------------------------------------------------ deletion
    async def _finalize(
        self,
        key: BindingKey,
        obj: Mapping[str, Any],
        spec: CertificateBindingSpec,
        status: CertificateBindingStatus,
        now: datetime,
    ) -> None:
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if FINALIZER not in finalizers:
            return
        delete = spec.sync_policy.deletion_policy is DeletionPolicy.DELETE
        uid = obj["metadata"].get("uid", "")
        configs = {d.name: (d.type, d.config) for d in spec.destinations}
        entries = {d.name: d for d in status.destinations}
        for name, (type_name, _) in configs.items():
            entries.setdefault(
                name, DestinationStatus(name=name, type=type_name, state=DestinationState.PENDING)
            )
        failures: list[str] = []
        for entry in entries.values():
            raw = configs.get(entry.name, (entry.type, None))[1]
            try:
                await self._retract(key, uid, entry, raw, delete, True)
            except NotLeaderError:
                raise
            except DestinationError as error:
                failures.append(f"{entry.name}: {error.message}")
                retry_after = error.retry_after if isinstance(error, RetryableError) else None
                delay = max(spec.sync_policy.retry_interval, retry_after or timedelta(0))
                self.queue.add_after(key, delay.total_seconds())
            except Exception as error:
                failures.append(f"{entry.name}: unexpected {type(error).__name__}")
                log.exception("retract of %s failed", entry.name)
                self.queue.add_after(key, spec.sync_policy.retry_interval.total_seconds())
        if failures:
            self.events.record(obj, "Warning", "CleanupFailed", "; ".join(failures))
            return
        if spec.certificate is not None or managed.was_managed(obj):
            # Managed mode (now or until a switch not yet cleaned up): the Certificate
            # goes; the issued Secret per deletionPolicy. An ApiError propagates:
            # reconcile() retries, the finalizer stays meanwhile.
            issued = spec.certificate.secret_name if spec.certificate is not None else None
            await managed.ManagedCertificates(
                self.kube, self.secrets, self.events, self.guard
            ).release(key.namespace, key.name, uid, delete_secret=issued if delete else None)
        remaining = [f for f in finalizers if f != FINALIZER]
        self.guard()
        try:
            await self.kube.merge_patch(
                CERTIFICATE_BINDINGS.path(key.namespace, key.name),
                {
                    "metadata": {
                        "finalizers": remaining or None,
                        "resourceVersion": obj["metadata"]["resourceVersion"],
                    }
                },
            )
        except NotFoundError:
            pass
        except ConflictError:
            self.queue.add(key)
            return
        self.metrics.forget_binding(key.namespace, key.name)
        log.info("cleanup done (deletionPolicy %s)", spec.sync_policy.deletion_policy.value)

    async def _add_finalizer(self, key: BindingKey, obj: Mapping[str, Any]) -> None:
        finalizers = [*(obj["metadata"].get("finalizers") or []), FINALIZER]
        self.guard()
        try:
            patched = await self.kube.merge_patch(
                CERTIFICATE_BINDINGS.path(key.namespace, key.name),
                {
                    "metadata": {
                        "finalizers": finalizers,
                        "resourceVersion": obj["metadata"]["resourceVersion"],
                    }
                },
            )
        except ConflictError:
            self.queue.add(key)
            return
        except NotFoundError:
            return
        self.bindings.observe_write(patched)
        self.queue.add(key)

    # ------------------------------------------------------------------ status
    async def _invalid_spec(
        self,
        key: BindingKey,
        obj: Mapping[str, Any],
        status: CertificateBindingStatus,
        error: pydantic.ValidationError,
        now: datetime,
    ) -> None:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        verdict = Verdict(False, "InvalidSpec", f"spec is not valid: {problems}"[:2000])
        conditions, column = summarize(
            status.conditions,
            validation=verdict,
            destinations=status.destinations,
            generation=obj["metadata"].get("generation"),
            now=now,
        )
        new = status.model_copy(
            update={
                "conditions": conditions,
                "observed_generation": obj["metadata"].get("generation"),
                "synced_destinations": column,
            }
        )
        await self._write_status(key, obj, status, new)

    async def _write_status(
        self,
        key: BindingKey,
        obj: Mapping[str, Any],
        old: CertificateBindingStatus,
        new: CertificateBindingStatus,
    ) -> None:
        if new == old:
            return
        self.guard()
        try:
            patched = await self.kube.merge_patch(
                CERTIFICATE_BINDINGS.path(key.namespace, key.name, "status"), new.to_patch()
            )
        except NotFoundError:
            return
        self.bindings.observe_write(patched)

    def _report(
        self,
        key: BindingKey,
        obj: Mapping[str, Any],
        old: CertificateBindingStatus,
        new: CertificateBindingStatus,
        verdict: Verdict,
    ) -> None:
        """Events and metrics for what changed (not for what merely stayed)."""
        before = old.condition(VALIDATED)
        changed = before is None or before.reason != verdict.reason or before.status.value == "True"
        if not verdict.ok and not verdict.pending and changed:
            self.metrics.validation_failures_total.labels(reason=verdict.reason).inc()
            self.events.record(obj, "Warning", verdict.reason, verdict.message)
        if new.not_after is not None:
            self.metrics.certificate_expiry_timestamp_seconds.labels(
                namespace=key.namespace, binding=key.name
            ).set(new.not_after.timestamp())
        for entry in new.destinations:
            prior = old.destination(entry.name)
            changed_state = prior is None or prior.state is not entry.state
            new_cert = prior is None or prior.synced_fingerprint != entry.synced_fingerprint
            if entry.state is DestinationState.SYNCED and (changed_state or new_cert):
                self.events.record(
                    obj,
                    "Normal",
                    "Synced",
                    f"destination {entry.name} ({entry.type}) holds certificate "
                    f"{(entry.synced_fingerprint or '')[:16]}",
                )
            elif entry.state in (DestinationState.FAILED, DestinationState.CONFLICT) and (
                changed_state or (prior is not None and prior.message != entry.message)
            ):
                self.events.record(
                    obj,
                    "Warning",
                    f"Destination{entry.state.value}",
                    f"destination {entry.name} ({entry.type}): {entry.message or ''}",
                )


def _read_status(obj: Mapping[str, Any]) -> CertificateBindingStatus:
    try:
        return CertificateBindingStatus.model_validate(obj.get("status") or {})
    except pydantic.ValidationError:
        log.warning("ignoring a status this version cannot read")
        return CertificateBindingStatus()


def _suspended(
    status: CertificateBindingStatus, obj: Mapping[str, Any], now: datetime
) -> CertificateBindingStatus:
    generation = obj["metadata"].get("generation")
    previous_validation = status.condition(VALIDATED)
    verdict = Verdict(
        previous_validation is not None and previous_validation.status.value == "True",
        previous_validation.reason if previous_validation else "Suspended",
        previous_validation.message if previous_validation else "not validated while suspended",
    )
    conditions, column = summarize(
        status.conditions,
        validation=verdict,
        destinations=status.destinations,
        generation=generation,
        now=now,
        suspended=True,
    )
    return status.model_copy(
        update={
            "conditions": conditions,
            "observed_generation": generation,
            "synced_destinations": column,
        }
    )
