"""The reflector: one ``kubernetes.io/tls`` copy of the certificate per selected namespace.

How it keeps the contract's rules:

* **Reads cost nothing.** ``observe`` answers from the core's indexes only (the
  Secret index holds every copy, because copies carry the watched label; the
  namespace index holds every namespace's labels): no API call per reconcile.
* **A steady state writes nothing.** Each copy carries the fingerprint, the
  material's content hash and the hash of its own data in annotations; a copy
  is in order when its data still hashes to what was written and all copies
  agree. ``publish`` writes only the copies that are missing, edited or out of
  date, and deletes only copies in namespaces no longer selected.
* **Never touch what is not ours.** A copy is ours when it carries
  ``app.kubernetes.io/managed-by: certauto`` and the binding and destination
  annotations of this entry. Anything else at a target name is left byte for
  byte as it is and reported as a conflict, after the other namespaces are done.
* **The index learns of every write at once** (``observe_write`` /
  ``observe_delete``), so the reconcile that follows a publish does not act on
  the watch's slightly older view.

Updates re-read the copy (one GET) and replace it with its resourceVersion, so a
concurrent change fails the write instead of being overwritten, and whatever
other tools added to the copy's metadata (finalizers, Velero's restore labels)
is kept. Deletes carry a uid precondition, so a Secret recreated under the same
name by someone else is never deleted by mistake.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, Final, TypeVar

from certauto_core.certs.material import CertificateMaterial
from certauto_core.engine.indexes import (
    BINDING_ANNOTATION,
    COPY_LABEL_VALUE,
    DESTINATION_ANNOTATION,
    WATCHED_LABEL,
)
from certauto_core.kube import errors as kube_errors
from certauto_core.kube.client import JSON, KubeClient
from certauto_core.kube.errors import ApiError, ForbiddenError, InvalidError, NotFoundError
from certauto_core.kube.resources import SECRETS
from certauto_core.plugins.contract import (
    BindingRef,
    NamespaceIndex,
    Observation,
    PluginContext,
    PublishResult,
    RetractResult,
    SecretIndex,
    SecretRecord,
    Target,
    secret_content_hash,
)
from certauto_core.plugins.errors import (
    ConflictError,
    DestinationError,
    PermanentError,
    RetryableError,
)
from certauto_reflector.config import MANAGED_BY_LABEL, RESERVED_PREFIX, ReflectorConfig

MANAGED_BY_VALUE: Final = "certauto"
TLS_SECRET_TYPE: Final = "kubernetes.io/tls"  # noqa: S105 - a Secret type, not a password
SOURCE_SECRET_ANNOTATION: Final = RESERVED_PREFIX + "source-secret"
FINGERPRINT_ANNOTATION: Final = RESERVED_PREFIX + "fingerprint"
"""SHA-256 of the leaf certificate the copy holds."""
CONTENT_HASH_ANNOTATION: Final = RESERVED_PREFIX + "content-hash"
"""``secret_content_hash`` of the data as written: a copy whose data no longer hashes to
this was edited."""
MATERIAL_HASH_ANNOTATION: Final = RESERVED_PREFIX + "material-hash"
"""``CertificateMaterial.content_hash`` of what was written, reported as
``Observation.content_hash`` so a new chain or CA bundle behind the same leaf is published."""
ADDED_METADATA_ANNOTATION: Final = RESERVED_PREFIX + "added-metadata"
"""The keys of ``config.labels``/``config.annotations`` last written, so removing one from
the config removes it from the copies (and nothing another tool added)."""

MAX_SECRET_BYTES: Final = 1024 * 1024
"""The API server refuses a Secret larger than 1 MiB."""
MAX_CONCURRENT_WRITES: Final = 8
"""Copies written at once: enough for hundreds of namespaces, gentle on the API server."""
MAX_LISTED: Final = 5
"""Namespaces named in one message before the rest are counted."""

T = TypeVar("T")


# ---------------------------------------------------------------------------- what we want


@dataclass(frozen=True)
class _Plan:
    """Where the copies of one entry belong, from the indexes alone."""

    name: str
    namespaces: tuple[str, ...]
    """Namespaces that must hold a copy, sorted."""
    absent: tuple[str, ...]
    """Listed namespaces that do not exist (or are terminating): skipped."""
    stale: tuple[SecretRecord, ...]
    """Our copies that the config no longer covers."""

    @property
    def external_id(self) -> str | None:
        return ",".join(self.namespaces) or None


@dataclass(frozen=True)
class _Shape:
    """The metadata every copy of an entry carries, whatever the certificate."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    def holds(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> bool:
        """Metadata in order: ours are present; keys added by others do not matter."""
        return (
            all(labels.get(key) == value for key, value in self.labels.items())
            and all(annotations.get(key) == value for key, value in self.annotations.items())
            and annotations.get(ADDED_METADATA_ANNOTATION)
            == self.annotations.get(ADDED_METADATA_ANNOTATION)
        )


@dataclass(frozen=True)
class _Content:
    """What a copy of one certificate holds: data and the annotations that describe it."""

    data: Mapping[str, bytes]
    hash: str
    annotations: Mapping[str, str]

    @classmethod
    def of(cls, material: CertificateMaterial, source_secret: str | None) -> _Content:
        data = {"tls.crt": material.certificate_pem(), "tls.key": material.private_key_pem()}
        if material.ca_pem is not None:
            data["ca.crt"] = material.ca_pem
        content_hash = secret_content_hash(data)
        annotations = {
            FINGERPRINT_ANNOTATION: material.fingerprint,
            MATERIAL_HASH_ANNOTATION: material.content_hash,
            CONTENT_HASH_ANNOTATION: content_hash,
        }
        if source_secret is not None:
            annotations[SOURCE_SECRET_ANNOTATION] = source_secret
        return cls(data=data, hash=content_hash, annotations=annotations)

    def encoded(self) -> dict[str, str]:
        return {key: base64.b64encode(value).decode("ascii") for key, value in self.data.items()}

    def size(self) -> int:
        return sum(len(value) for value in self.data.values())


def _shape(binding: BindingRef, config: ReflectorConfig) -> _Shape:
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, WATCHED_LABEL: COPY_LABEL_VALUE}
    labels.update(config.labels)
    annotations = dict(config.annotations)
    annotations[BINDING_ANNOTATION] = f"{binding.namespace}/{binding.name}"
    annotations[DESTINATION_ANNOTATION] = binding.destination
    if config.labels or config.annotations:
        annotations[ADDED_METADATA_ANNOTATION] = json.dumps(
            {"annotations": sorted(config.annotations), "labels": sorted(config.labels)},
            separators=(",", ":"),
        )
    return _Shape(labels=labels, annotations=annotations)


def is_ours(binding: BindingRef, labels: Mapping[str, str], annotations: Mapping[str, str]) -> bool:
    """Whether a Secret is a copy made by this binding's destination entry."""
    return (
        labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
        and annotations.get(BINDING_ANNOTATION) == f"{binding.namespace}/{binding.name}"
        and annotations.get(DESTINATION_ANNOTATION) == binding.destination
    )


def _source_secret(target: Target) -> str | None:
    return target.source_secret or None


def _config(target: Target) -> ReflectorConfig:
    config = target.config
    if not isinstance(config, ReflectorConfig):
        raise PermanentError(
            f"the reflector got a config of type {type(config).__name__}, not ReflectorConfig"
        )
    return config


# ---------------------------------------------------------------------------- outcomes


@dataclass
class _Report:
    """What happened in each namespace of one publish or retract."""

    writes: int = 0
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    errors: list[DestinationError] = field(default_factory=list)

    def raise_failures(self, done: str) -> None:
        """Raise the most useful error for what failed; the message says everything.

        A transient failure wins (the next attempt may clear it and then show what
        else is wrong), then a permanent one, then conflicts, which need a person.
        """
        if not self.errors and not self.conflicts:
            return
        parts = [error.message for error in self.errors[:MAX_LISTED]]
        if len(self.errors) > MAX_LISTED:
            parts.append(f"and {len(self.errors) - MAX_LISTED} more failures")
        if self.conflicts:
            parts.append(
                "not managed by this destination, left untouched: " + _listing(self.conflicts)
            )
        if done:
            parts.append(done)
        message = "; ".join(parts)
        retryable = [error for error in self.errors if isinstance(error, RetryableError)]
        if retryable:
            hints = [error.retry_after for error in retryable if error.retry_after is not None]
            raise RetryableError(message, retry_after=max(hints) if hints else None)
        if any(isinstance(error, PermanentError) for error in self.errors):
            raise PermanentError(message)
        if self.errors:
            raise RetryableError(message)
        raise ConflictError(message)


def _listing(items: Sequence[str]) -> str:
    shown = sorted(items)[:MAX_LISTED]
    rest = len(items) - len(shown)
    return ", ".join(shown) + (f" and {rest} more" if rest > 0 else "")


# ---------------------------------------------------------------------------- the destination


class ReflectorDestination:
    """Copies a binding's certificate into other namespaces. One per operator process."""

    def __init__(self, context: PluginContext) -> None:
        self._kube: KubeClient = context.kube
        self._secrets: SecretIndex = context.secrets
        self._namespaces: NamespaceIndex = context.namespaces
        self._log: logging.Logger = context.logger

    async def check_material(self, material: CertificateMaterial, target: Target) -> None:
        """A Secret can hold any key type; only the API server's size limit can refuse."""
        size = _Content.of(material, None).size()
        # base64 grows the data by a third, and metadata needs room too.
        if size * 4 // 3 + 16 * 1024 > MAX_SECRET_BYTES:
            raise PermanentError(
                f"the certificate, chain and CA bundle take {size} bytes: too large for a "
                "Kubernetes Secret (1 MiB including base64 and metadata)"
            )

    # ------------------------------------------------------------------ observe
    async def observe(self, target: Target) -> Observation:
        """Answer from the indexes only: every selected namespace holds an intact copy."""
        config = _config(target)
        plan = self._plan(target.binding, config)
        shape = _shape(target.binding, config)
        missing: list[str] = []
        edited: list[str] = []
        outdated: list[str] = []
        foreign: list[str] = []
        held: list[SecretRecord] = []
        for namespace in plan.namespaces:
            record = self._secrets.get(namespace, plan.name)
            if record is None:
                missing.append(namespace)
            elif not is_ours(target.binding, record.labels, record.annotations):
                foreign.append(f"{namespace}/{plan.name}")
            elif (
                record.type != TLS_SECRET_TYPE
                or FINGERPRINT_ANNOTATION not in record.annotations
                or record.annotations.get(CONTENT_HASH_ANNOTATION) != record.content_hash
            ):
                edited.append(namespace)
            elif not shape.holds(record.labels, record.annotations):
                outdated.append(namespace)
            else:
                held.append(record)

        versions = {
            (
                record.annotations[FINGERPRINT_ANNOTATION],
                record.annotations.get(MATERIAL_HASH_ANNOTATION),
                record.content_hash,
            )
            for record in held
        }
        problems = []
        if missing:
            problems.append(f"copy missing in {_listing(missing)}")
        if edited:
            problems.append(f"copy edited in {_listing(edited)}")
        if outdated:
            problems.append(f"labels or annotations out of date in {_listing(outdated)}")
        if foreign:
            problems.append(f"not managed by this destination: {_listing(foreign)}")
        if plan.stale:
            stale = [f"{record.namespace}/{record.name}" for record in plan.stale]
            problems.append(f"copies no longer selected: {_listing(stale)}")
        if len(versions) > 1:
            problems.append("copies hold different certificates")
        holding = sorted({record.namespace for record in held})
        if problems:
            return Observation(
                fingerprint=None,
                external_id=",".join(holding) or None,
                drift="; ".join(problems),
            )
        if not versions:
            # Nothing is selected and nothing of ours is left: there is nothing to hold,
            # which is in order for any certificate, so answer with what status says was
            # published instead of making the core publish nothing on every reconcile.
            return Observation(fingerprint=target.previous.synced_fingerprint)
        ((fingerprint, material_hash, _),) = versions
        return Observation(
            fingerprint=fingerprint, external_id=plan.external_id, content_hash=material_hash
        )

    # ------------------------------------------------------------------ publish
    async def publish(self, material: CertificateMaterial, target: Target) -> PublishResult:
        """Create missing copies, repair edited ones, delete those no longer selected."""
        config = _config(target)
        binding = target.binding
        plan = self._plan(binding, config)
        shape = _shape(binding, config)
        content = _Content.of(material, _source_secret(target))
        report = _Report()
        jobs: list[Callable[[], Awaitable[None]]] = [
            partial(self._ensure_copy, report, binding, namespace, plan.name, shape, content)
            for namespace in plan.namespaces
        ]
        jobs += [partial(self._remove_copy, report, record) for record in plan.stale]
        await _run_bounded(jobs)

        parts = []
        if report.written:
            parts.append(f"wrote copies in {_listing(report.written)}")
        if report.removed:
            parts.append(f"removed copies from {_listing(report.removed)}")
        skipped = [*plan.absent, *report.skipped]
        if skipped:
            parts.append(f"skipped missing or terminating namespaces {_listing(skipped)}")
        report.raise_failures("; ".join(parts))
        held = [ns for ns in plan.namespaces if ns not in report.skipped]
        summary = f"{len(held)} cop{'y' if len(held) == 1 else 'ies'} up to date"
        return PublishResult(
            fingerprint=material.fingerprint,
            external_id=",".join(held) or None,
            not_after=material.info.not_after,
            message="; ".join([summary, *parts]),
            writes=report.writes,
        )

    async def _ensure_copy(
        self,
        report: _Report,
        binding: BindingRef,
        namespace: str,
        name: str,
        shape: _Shape,
        content: _Content,
    ) -> None:
        record = self._secrets.get(namespace, name)
        if record is not None and not is_ours(binding, record.labels, record.annotations):
            report.conflicts.append(f"{namespace}/{name}")
            return
        if record is not None and (
            record.type == TLS_SECRET_TYPE
            and record.content_hash == content.hash
            and shape.holds(record.labels, record.annotations)
            and _describes(record.annotations, content)
        ):
            return  # already right: no write
        try:
            if record is None and await self._create(report, namespace, name, shape, content):
                return
            # It exists (the index said so, or the create ran into it): decide on a
            # fresh read, never on the index alone, before replacing anything.
            current = await _api("get", self._kube.get(SECRETS.path(namespace, name)))
            await self._repair(report, binding, current, shape, content)
        except _ApiCallError as failure:
            if isinstance(failure.error, NotFoundError) or _namespace_terminating(failure.error):
                # The namespace is gone or going, or the copy vanished under us: the
                # indexes catch up and the next sync decides again.
                report.skipped.append(namespace)
            else:
                error = to_destination_error(failure.error, failure.verb, namespace, name)
                report.errors.append(error)
        except DestinationError as error:
            report.errors.append(error)

    async def _create(
        self, report: _Report, namespace: str, name: str, shape: _Shape, content: _Content
    ) -> bool:
        """POST a new copy; ``False`` when something already has the name."""
        body: JSON = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(shape.labels),
                "annotations": {**shape.annotations, **content.annotations},
            },
            "type": TLS_SECRET_TYPE,
            "data": content.encoded(),
        }
        report.writes += 1
        try:
            created = await _api("create", self._kube.create(SECRETS.path(namespace), body))
        except _ApiCallError as failure:
            if isinstance(failure.error, kube_errors.ConflictError):
                return False
            raise
        self._secrets.observe_write(created)
        report.written.append(namespace)
        self._log.info("created copy %s/%s", namespace, name)
        return True

    async def _repair(
        self,
        report: _Report,
        binding: BindingRef,
        current: JSON,
        shape: _Shape,
        content: _Content,
    ) -> None:
        meta: JSON = current.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        labels: dict[str, str] = dict(meta.get("labels") or {})
        annotations: dict[str, str] = dict(meta.get("annotations") or {})
        if not is_ours(binding, labels, annotations):
            report.conflicts.append(f"{namespace}/{name}")
            return
        if current.get("type") != TLS_SECRET_TYPE:
            # A Secret's type is immutable: replace the whole object.
            report.writes += 1
            path = SECRETS.path(namespace, name)
            await _api("delete", self._kube.delete(path, uid=meta.get("uid")))
            self._secrets.observe_delete(namespace, name)
            if not await self._create(report, namespace, name, shape, content):
                raise RetryableError(
                    f"copy {namespace}/{name} was recreated while it was being replaced; will retry"
                )
            return
        if (
            _data_hash(current) == content.hash
            and shape.holds(labels, annotations)
            and _describes(annotations, content)
        ):
            self._secrets.observe_write(current)  # the index was behind; nothing to write
            return
        for key in _added_keys(annotations, "labels"):
            labels.pop(key, None)
        for key in _added_keys(annotations, "annotations"):
            annotations.pop(key, None)
        annotations.pop(ADDED_METADATA_ANNOTATION, None)
        labels.update(shape.labels)
        annotations.update(shape.annotations)
        annotations.update(content.annotations)
        body = {key: value for key, value in current.items() if key != "stringData"}
        body["metadata"] = {
            **{key: value for key, value in meta.items() if key != "managedFields"},
            "labels": labels,
            "annotations": annotations,
        }
        body["data"] = content.encoded()
        report.writes += 1
        try:
            replaced = await _api("update", self._kube.replace(SECRETS.path(namespace, name), body))
        except _ApiCallError as failure:
            if isinstance(failure.error, kube_errors.ConflictError):
                raise RetryableError(
                    f"copy {namespace}/{name} changed while it was being updated; will retry"
                ) from None
            raise
        self._secrets.observe_write(replaced)
        report.written.append(namespace)
        self._log.info("updated copy %s/%s", namespace, name)

    async def _remove_copy(self, report: _Report, record: SecretRecord) -> None:
        report.writes += 1
        path = SECRETS.path(record.namespace, record.name)
        try:
            await _api("delete", self._kube.delete(path, uid=record.uid))
        except _ApiCallError as failure:
            if isinstance(failure.error, kube_errors.ConflictError):
                # The uid precondition failed: the name now belongs to another object,
                # which is not ours to delete. The watch brings the index up to date.
                return
            if not isinstance(failure.error, NotFoundError):
                report.errors.append(
                    to_destination_error(failure.error, "delete", record.namespace, record.name)
                )
                return
        self._secrets.observe_delete(record.namespace, record.name)
        report.removed.append(record.namespace)
        self._log.info("deleted copy %s/%s", record.namespace, record.name)

    # ------------------------------------------------------------------ retract
    async def retract(self, target: Target, *, delete: bool) -> RetractResult:
        """Delete every copy of this entry (found by its marks), or leave them all."""
        binding = target.binding
        copies = sorted(
            (
                record
                for record in self._secrets.owned_by(binding)
                if is_ours(binding, record.labels, record.annotations)
            ),
            key=lambda record: (record.namespace, record.name),
        )
        namespaces = [record.namespace for record in copies]
        if not delete:
            if not copies:
                return RetractResult(removed=False, message="no copies to keep")
            return RetractResult(
                removed=False,
                message=f"kept {len(copies)} cop{'y' if len(copies) == 1 else 'ies'} in "
                f"{_listing(namespaces)} (deletionPolicy Retain); they are no longer updated",
            )
        report = _Report()
        await _run_bounded([partial(self._remove_copy, report, record) for record in copies])
        removed = f"deleted copies in {_listing(report.removed)}" if report.removed else ""
        report.raise_failures(removed)
        return RetractResult(removed=True, message=removed or "no copies left to delete")

    async def aclose(self) -> None:
        """Nothing to release: the Kubernetes client belongs to the core."""

    # ------------------------------------------------------------------ helpers
    def _plan(self, binding: BindingRef, config: ReflectorConfig) -> _Plan:
        name = config.copy_name(binding.name)
        selected: set[str] = set()
        absent: list[str] = []
        for namespace in config.namespaces:
            if self._namespaces.labels(namespace) is None:
                absent.append(namespace)
            else:
                selected.add(namespace)
        selector = config.namespace_selector
        if selector is not None:
            for namespace in self._namespaces.names():
                labels = self._namespaces.labels(namespace)
                if labels is not None and selector.matches(labels):
                    selected.add(namespace)
        selected.discard(binding.namespace)
        stale = tuple(
            sorted(
                (
                    record
                    for record in self._secrets.owned_by(binding)
                    if is_ours(binding, record.labels, record.annotations)
                    and not (record.namespace in selected and record.name == name)
                    # A namespace on its way out takes its copy with it.
                    and self._namespaces.labels(record.namespace) is not None
                ),
                key=lambda record: (record.namespace, record.name),
            )
        )
        return _Plan(
            name=name,
            namespaces=tuple(sorted(selected)),
            absent=tuple(sorted(set(absent) - {binding.namespace})),
            stale=stale,
        )


# ---------------------------------------------------------------------------- plumbing


class _ApiCallError(Exception):
    """An API error inside a write step, with the verb that failed."""

    def __init__(self, error: ApiError, verb: str) -> None:
        super().__init__(verb)
        self.error = error
        self.verb = verb


async def _api(verb: str, call: Awaitable[T]) -> T:
    """Await one API call, tagging a failure with the verb for the error message."""
    try:
        return await call
    except ApiError as error:
        raise _ApiCallError(error, verb) from None


async def _run_bounded(jobs: Sequence[Callable[[], Awaitable[None]]]) -> None:
    """Await jobs, at most :data:`MAX_CONCURRENT_WRITES` at once, all owned by this call.

    Jobs record API failures in their report themselves; anything escaping one is
    a bug or a cancellation, and cancels the others.
    """
    limit = asyncio.Semaphore(MAX_CONCURRENT_WRITES)

    async def limited(job: Callable[[], Awaitable[None]]) -> None:
        async with limit:
            await job()

    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(limited(job))
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None


def _describes(annotations: Mapping[str, str], content: _Content) -> bool:
    return all(annotations.get(key) == value for key, value in content.annotations.items())


def _data_hash(obj: Mapping[str, Any]) -> str:
    encoded: Mapping[str, str] = obj.get("data") or {}
    decoded = {key: base64.b64decode(value) for key, value in encoded.items()}
    return secret_content_hash(decoded)


def _added_keys(annotations: Mapping[str, str], kind: str) -> list[str]:
    try:
        recorded = json.loads(annotations.get(ADDED_METADATA_ANNOTATION, "{}"))
        keys = recorded.get(kind, []) if isinstance(recorded, dict) else []
    except ValueError:
        return []
    return [key for key in keys if isinstance(key, str) and not key.startswith(RESERVED_PREFIX)]


def _namespace_terminating(error: ApiError) -> bool:
    if not isinstance(error, ForbiddenError) or not isinstance(error.body, dict):
        return False
    causes = (error.body.get("details") or {}).get("causes") or []
    return any(
        isinstance(cause, dict) and cause.get("reason") == "NamespaceTerminating"
        for cause in causes
    )


def to_destination_error(error: ApiError, verb: str, namespace: str, name: str) -> DestinationError:
    """The typed error for an API error; the API server's text is not repeated verbatim."""
    where = f"secret {namespace}/{name}"
    if error.retryable:
        retry_after = _retry_after(error)
        cause = (
            f"HTTP {error.status} {error.reason}".strip()
            if error.status
            else f"connection failed ({error.reason})"
        )
        return RetryableError(f"could not {verb} {where}: {cause}", retry_after=retry_after)
    if isinstance(error, ForbiddenError):
        return PermanentError(
            f"forbidden to {verb} secrets in namespace {namespace}: grant the operator's "
            f"ServiceAccount '{verb}' on 'secrets' there (RBAC)"
        )
    if isinstance(error, InvalidError):
        fields = sorted(
            {
                str(cause.get("field"))
                for cause in _causes(error)
                if isinstance(cause, dict) and cause.get("field")
            }
        )
        detail = f" (fields: {', '.join(fields)})" if fields else ""
        return PermanentError(f"the API server rejected {where} as invalid{detail}")
    if isinstance(error, kube_errors.ConflictError):
        return RetryableError(f"{where} changed while it was being written; will retry")
    if error.status == 401:
        return RetryableError(f"could not {verb} {where}: the operator's credentials were refused")
    return PermanentError(f"could not {verb} {where}: HTTP {error.status} {error.reason}".strip())


def _causes(error: ApiError) -> list[Any]:
    if not isinstance(error.body, dict):
        return []
    causes = (error.body.get("details") or {}).get("causes") or []
    return causes if isinstance(causes, list) else []


def _retry_after(error: ApiError) -> timedelta | None:
    if not isinstance(error.body, dict):
        return None
    seconds = (error.body.get("details") or {}).get("retryAfterSeconds")
    if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds > 0:
        return timedelta(seconds=seconds)
    return None
