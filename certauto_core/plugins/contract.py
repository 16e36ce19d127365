"""The records and the protocol that a destination plugin implements.

A plugin's hook (see :mod:`certauto_core.plugins.hookspecs`) returns
:class:`DestinationType` records. Each record names a type (``reflector``,
``aws-acm``, ...), the pydantic model of its ``config`` and a factory. The core
calls the factory once per operator process with a :class:`PluginContext`, and
then drives the returned :class:`Destination` for every binding that uses the
type. pluggy hooks are synchronous, so the async work lives on the destination
object.

Contract version history (``HOOK_API_VERSION``):

* 1 (certauto-core 0.1): ``certauto_destination_types``; ``Destination`` with
  ``observe``, ``publish``, ``retract``, ``check_material``, ``aclose``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel

if TYPE_CHECKING:
    import logging

    from certauto_core.certs.material import CertificateMaterial
    from certauto_core.kube.client import KubeClient

HOOK_API_VERSION = 1
"""The contract version this core implements. Records declaring a newer one are refused."""


@dataclass(frozen=True)
class BindingRef:
    """Which binding and which of its destinations an operation is for."""

    namespace: str
    name: str
    uid: str
    destination: str

    @property
    def key(self) -> str:
        """``namespace/name/destination``: stable, unique, safe for tags and labels values."""
        return f"{self.namespace}/{self.name}/{self.destination}"


@dataclass(frozen=True)
class PreviousSync:
    """What the binding's status last recorded for this destination, if anything.

    It is a hint only: status can be lost (binding recreated, status wiped), so
    a destination must be able to find its own objects again without it, for
    example by tags.
    """

    synced_fingerprint: str | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class Target:
    """Everything a destination needs to act for one binding's destination entry."""

    binding: BindingRef
    config: BaseModel | None
    """The destination's ``config``, validated against the type's model.

    ``None`` only in ``retract`` for an entry that was removed from the spec
    (its config is gone with it): find your objects by your own labels or tags.
    """
    previous: PreviousSync = field(default_factory=PreviousSync)
    deleting: bool = False
    """True while the binding is being deleted (``retract`` follows ``deletionPolicy``)."""
    source_secret: str | None = None
    """The name of the Secret the certificate comes from, in the binding's namespace
    (for traceability labels); ``None`` in ``retract`` and before a source exists."""
    deletion_policy: str = "Retain"
    """The binding's ``syncPolicy.deletionPolicy`` (``Retain`` or ``Delete``): also what
    to do with an object a destination stops using in ``publish``, e.g. an ACM
    certificate replaced by a new one after a key-type change."""


@dataclass(frozen=True)
class Observation:
    """What a destination holds now, as cheaply as the destination can tell.

    ``fingerprint`` is the SHA-256 fingerprint of the leaf certificate the
    destination serves, or ``None`` when it holds nothing of ours or is not in
    the desired shape (``drift`` then says why, for example "copy in team-b was
    edited"). The core publishes only when ``fingerprint`` differs from the
    source's, which is how a steady state makes no writes.
    """

    fingerprint: str | None
    external_id: str | None = None
    not_after: datetime | None = None
    drift: str | None = None
    content_hash: str | None = None
    """The :attr:`CertificateMaterial.content_hash` the destination holds, when it can
    tell. When given, the core also compares it, so a changed chain or key
    encoding behind an unchanged leaf is published too."""


@dataclass(frozen=True)
class PublishResult:
    """What a successful publish left at the destination."""

    fingerprint: str
    external_id: str | None = None
    not_after: datetime | None = None
    message: str = ""
    writes: int = 1
    """How many write calls the publish made (for metrics and benchmarks)."""


@dataclass(frozen=True)
class RetractResult:
    """What a retract did: ``removed`` is False when the policy retained the objects."""

    removed: bool
    message: str = ""


@runtime_checkable
class Destination(Protocol):
    """One destination type's behaviour. Implementations must be idempotent.

    Every method raises :mod:`certauto_core.plugins.errors` types on failure.
    """

    async def check_material(self, material: CertificateMaterial, target: Target) -> None:
        """Refuse material this destination cannot take (key type or size, chain).

        Raise :class:`~certauto_core.plugins.errors.PermanentError` with a clear
        message. Called before ``observe``; must not perform I/O that writes.
        """
        ...

    async def observe(self, target: Target) -> Observation:
        """Report what the destination holds now. Must not write."""
        ...

    async def publish(self, material: CertificateMaterial, target: Target) -> PublishResult:
        """Make the destination hold ``material``. Called only when ``observe`` differs."""
        ...

    async def retract(self, target: Target, *, delete: bool) -> RetractResult:
        """Remove what this destination entry created (``delete=True``) or release it.

        Called when the binding is deleted (per ``deletionPolicy``) or when the
        destination entry is removed from the spec. With ``delete=False`` the
        destination must leave the objects in place, only dropping ownership
        markers it keeps for itself where that makes sense.
        """
        ...

    async def aclose(self) -> None:
        """Release sessions and connections. Called once at operator shutdown."""
        ...


class SecretIndex(Protocol):
    """Read-only view of the Secrets the operator watches (selected by label only).

    Records hold metadata and a content hash, never key material.
    """

    def get(self, namespace: str, name: str) -> SecretRecord | None:
        """The record of one watched Secret, or ``None``."""
        ...

    def owned_by(self, binding: BindingRef) -> list[SecretRecord]:
        """Every watched Secret labelled as a copy for this binding's destination."""
        ...

    def observe_write(self, obj: Mapping[str, Any]) -> None:
        """Record an object the caller just wrote (the API server's answer).

        The watch will deliver it too, a moment later; recording it now keeps a
        reconcile that runs before then from acting on stale state.
        """
        ...

    def observe_delete(self, namespace: str, name: str) -> None:
        """Record that the caller just deleted this Secret."""
        ...


class NamespaceIndex(Protocol):
    """Read-only view of the cluster's Namespaces and their labels."""

    def names(self) -> list[str]:
        """All namespace names, sorted."""
        ...

    def labels(self, name: str) -> Mapping[str, str] | None:
        """The labels of a namespace, or ``None`` when it does not exist (or is terminating)."""
        ...


@dataclass(frozen=True)
class SecretRecord:
    """A small record of a watched Secret: what reconcile needs, not the data."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    type: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    content_hash: str
    """SHA-256 hex over the Secret's ``tls.crt``, ``tls.key`` and ``ca.crt`` values."""


@dataclass(frozen=True)
class PluginContext:
    """What the core hands each destination factory."""

    kube: KubeClient
    """The operator's raw-JSON Kubernetes client (its identity, pooled connections);
    ``kube.api`` is the kubernetes-asyncio ``ApiClient`` for generated-model calls."""
    secrets: SecretIndex
    namespaces: NamespaceIndex
    logger: logging.Logger
    field_manager: str = "certauto"
    watched_label: str = "certauto.sanorg.in/watched"
    """The label the core's Secret watch selects on; copies must carry it to be seen."""


DestinationFactory = Callable[[PluginContext], Destination]


@dataclass(frozen=True)
class DestinationType:
    """A plugin's registration of one destination type."""

    name: str
    """The ``type`` users write in ``spec.destinations[]``, e.g. ``aws-acm``."""
    config_model: type[BaseModel]
    factory: DestinationFactory
    description: str = ""
    api_version: int = 1
    """The contract version the plugin was written against (see ``HOOK_API_VERSION``)."""


def needs_publish(observation: Observation, material: CertificateMaterial) -> bool:
    """The core's rule: publish only when the destination holds something else.

    A destination that reports ``content_hash`` is compared on it too, so a new
    chain behind the same leaf still reaches it.
    """
    if observation.fingerprint != material.fingerprint:
        return True
    return (
        observation.content_hash is not None and observation.content_hash != material.content_hash
    )


SECRET_CONTENT_KEYS = ("tls.crt", "tls.key", "ca.crt")


def secret_content_hash(data: Mapping[str, bytes]) -> str:
    """SHA-256 hex over a Secret's ``tls.crt``, ``tls.key`` and ``ca.crt`` values (decoded).

    The core's Secret index keeps this instead of the data, for every watched
    Secret; a destination that writes Secrets computes it for what it writes
    and compares.
    """
    digest = hashlib.sha256()
    for key in SECRET_CONTENT_KEYS:
        value = data.get(key)
        digest.update(key.encode())
        if value is None:
            digest.update(b"\x00absent")
        else:
            digest.update(len(value).to_bytes(8, "big"))
            digest.update(value)
    return digest.hexdigest()
