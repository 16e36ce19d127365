"""What reconcile reads without API calls: small records kept current by the watches.

Each index is fed by a :class:`~certauto_core.kube.watch.Watcher`'s handler
(``index.apply(event)``) and read by reconcile and the destination plugins. They keep
what reconcile needs and nothing more (DESIGN §3, performance notes):

* :class:`WatchedSecrets` keeps a :class:`~certauto_core.plugins.contract.SecretRecord`
  per watched Secret (metadata and a content hash, never the data), plus the decoded
  data of *source* Secrets only (label ``certauto.sanorg.in/watched=true``): sources
  are few, copies are many, and reconcile validates and distributes the source.
* :class:`WatchedNamespaces` keeps the labels of every namespace that is not
  terminating, for namespace selectors.
* :class:`BindingStore` keeps the CertificateBinding objects and which bindings read
  which source Secret, so a Secret event can enqueue exactly the bindings it affects.

Write-through: a caller that just wrote an object records the API server's answer
(``observe_write``) so a reconcile running before the watch catches up does not act on
stale state. Watch events and write-throughs race, so neither may replace a newer
record with an older one: resourceVersions are compared as integers when both parse
as integers (etcd revisions, which is what every kube-apiserver serves), and otherwise
the newer arrival wins.

Everything here runs on the event loop's thread, like the watches that feed it; there
is no locking and none is needed. Records are frozen and replaced, never mutated; the
maps are updated in place.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

from certauto_core.kube.watch import WatchEvent
from certauto_core.plugins.contract import (
    SECRET_CONTENT_KEYS,
    BindingRef,
    SecretRecord,
    secret_content_hash,
)

__all__ = [
    "BINDING_ANNOTATION",
    "COPY_LABEL_VALUE",
    "DESTINATION_ANNOTATION",
    "SOURCE_LABEL_VALUE",
    "WATCHED_LABEL",
    "BindingStore",
    "WatchedNamespaces",
    "WatchedSecrets",
    "is_newer_or_same",
]

logger = logging.getLogger(__name__)

WATCHED_LABEL: Final = "certauto.sanorg.in/watched"
"""The label the Secret watch selects on (``certauto.sanorg.in/watched``, any value)."""
SOURCE_LABEL_VALUE: Final = "true"
"""``WATCHED_LABEL`` value of a source Secret: its data is kept for reconcile."""
COPY_LABEL_VALUE: Final = "copy"
"""``WATCHED_LABEL`` value of a copy CertAuto wrote: only its record is kept."""
BINDING_ANNOTATION: Final = "certauto.sanorg.in/binding"
"""On a copy: ``<namespace>/<name>`` of the CertificateBinding it belongs to."""
DESTINATION_ANNOTATION: Final = "certauto.sanorg.in/destination"
"""On a copy: the name of the binding's destination entry that wrote it."""

# Never kept in a record: kubectl's last-applied-configuration holds the whole object
# as it was applied, so for a Secret applied with kubectl it holds the key material.
_DROPPED_ANNOTATIONS: Final = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})

_Key = tuple[str, str]
_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})


def is_newer_or_same(incoming: str, current: str) -> bool:
    """Whether an object at version ``incoming`` may replace one at ``current``.

    Integers (etcd revisions) compare numerically; anything else counts as newer,
    because then the order of arrival is the only order there is.
    """
    try:
        return int(incoming) >= int(current)
    except ValueError:
        return True


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else _EMPTY


def _key(obj: Mapping[str, Any]) -> _Key:
    metadata = _metadata(obj)
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


def _version(obj: Mapping[str, Any]) -> str:
    return str(_metadata(obj).get("resourceVersion") or "")


def _strings(value: Any, dropped: frozenset[str] = frozenset()) -> Mapping[str, str]:
    """A read-only view of a labels or annotations map (no copy unless keys are dropped)."""
    if not isinstance(value, dict) or not value:
        return _EMPTY
    if dropped and not dropped.isdisjoint(value):
        value = {k: v for k, v in value.items() if k not in dropped}
    return MappingProxyType(value)


class _Versions:
    """The newest-wins rule shared by the stores, with tombstones for write-through deletes.

    A tombstone remembers the version of an object the caller deleted, so a watch event
    for that version or an older one, arriving afterwards, does not bring the object
    back; the watch's own ``DELETED`` (or any newer version) clears it.
    """

    def __init__(self) -> None:
        self.tombstones: dict[_Key, str] = {}

    def accepts_update(self, key: _Key, incoming: str, current: str | None) -> bool:
        if current is not None and not is_newer_or_same(incoming, current):
            return False
        tombstone = self.tombstones.pop(key, None)
        if tombstone is not None and _strictly_older_or_same(incoming, tombstone):
            self.tombstones[key] = tombstone
            return False
        return True

    @staticmethod
    def accepts_delete(incoming: str, incoming_uid: str, current: str, current_uid: str) -> bool:
        """A deletion applies unless what we hold is another incarnation or newer."""
        if incoming_uid and current_uid and incoming_uid != current_uid:
            return False
        return not incoming or is_newer_or_same(incoming, current)


def _strictly_older_or_same(incoming: str, reference: str) -> bool:
    """``incoming <= reference`` when both are integers; False when order is unknown."""
    try:
        return int(incoming) <= int(reference)
    except ValueError:
        return False


# ---------------------------------------------------------------------------- Secrets
class WatchedSecrets:
    """The Secrets of the label-selected watch: records for all, data for sources only.

    Implements :class:`certauto_core.plugins.contract.SecretIndex`.
    """

    def __init__(self) -> None:
        self._records: dict[_Key, SecretRecord] = {}
        self._source_data: dict[_Key, Mapping[str, bytes]] = {}
        self._owned: dict[tuple[str, str], set[_Key]] = {}
        self._versions = _Versions()

    def __len__(self) -> int:
        return len(self._records)

    # ------------------------------------------------------------------ feeding
    def apply(self, event: WatchEvent) -> None:
        """Apply one watch event (the handler of the Secret watch calls this)."""
        if event.type == "DELETED":
            self._delete(event.obj)
        else:
            self._store(event.obj)

    def observe_write(self, obj: Mapping[str, Any]) -> None:
        """Record a Secret the caller just wrote (the API server's answer).

        A Secret without ``WATCHED_LABEL`` is not watched, so it is not recorded (the
        watch would never tell us when it goes); a write that removed the label drops
        the record, as the watch's ``DELETED`` will.
        """
        labels = _metadata(obj).get("labels")
        if isinstance(labels, Mapping) and WATCHED_LABEL in labels:
            self._store(obj)
        else:
            self._delete(obj)

    def observe_delete(self, namespace: str, name: str) -> None:
        """Record that the caller just deleted this Secret."""
        key = (namespace, name)
        record = self._records.get(key)
        if record is not None:
            self._versions.tombstones[key] = record.resource_version
            self._remove(key, record)

    # ------------------------------------------------------------------ reading
    def get(self, namespace: str, name: str) -> SecretRecord | None:
        return self._records.get((namespace, name))

    def owned_by(self, binding: BindingRef) -> list[SecretRecord]:
        """The copies annotated for this binding's destination, sorted by namespace, name."""
        keys = self._owned.get((f"{binding.namespace}/{binding.name}", binding.destination))
        if not keys:
            return []
        return [self._records[key] for key in sorted(keys)]

    def source_data(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        """The decoded ``data`` of a source Secret (``watched=true``), or ``None``."""
        return self._source_data.get((namespace, name))

    def keys(self) -> list[tuple[str, str]]:
        return list(self._records)

    # ------------------------------------------------------------------ internals
    def _store(self, obj: Mapping[str, Any]) -> None:
        key = _key(obj)
        version = _version(obj)
        current = self._records.get(key)
        if not self._versions.accepts_update(
            key, version, current.resource_version if current else None
        ):
            return
        metadata = _metadata(obj)
        labels = _strings(metadata.get("labels"))
        raw_data = obj.get("data")
        raw: Mapping[str, Any] = raw_data if isinstance(raw_data, Mapping) else _EMPTY
        is_source = labels.get(WATCHED_LABEL) == SOURCE_LABEL_VALUE
        decoded = _decode(raw, None if is_source else SECRET_CONTENT_KEYS, key)
        record = SecretRecord(
            namespace=key[0],
            name=key[1],
            uid=str(metadata.get("uid") or ""),
            resource_version=version,
            type=str(obj.get("type") or ""),
            labels=labels,
            annotations=_strings(metadata.get("annotations"), _DROPPED_ANNOTATIONS),
            content_hash=secret_content_hash(decoded),
        )
        if current is not None:
            self._unindex(key, current)
        self._records[key] = record
        self._index(key, record)
        if is_source:
            self._source_data[key] = MappingProxyType(decoded)
        else:
            self._source_data.pop(key, None)

    def _delete(self, obj: Mapping[str, Any]) -> None:
        key = _key(obj)
        self._versions.tombstones.pop(key, None)
        current = self._records.get(key)
        if current is None:
            return
        uid = str(_metadata(obj).get("uid") or "")
        if self._versions.accepts_delete(_version(obj), uid, current.resource_version, current.uid):
            self._remove(key, current)

    def _remove(self, key: _Key, record: SecretRecord) -> None:
        del self._records[key]
        self._source_data.pop(key, None)
        self._unindex(key, record)

    @staticmethod
    def _owner(record: SecretRecord) -> tuple[str, str] | None:
        if record.labels.get(WATCHED_LABEL) != COPY_LABEL_VALUE:
            return None
        binding = record.annotations.get(BINDING_ANNOTATION)
        destination = record.annotations.get(DESTINATION_ANNOTATION)
        if not binding or not destination:
            return None
        return (binding, destination)

    def _index(self, key: _Key, record: SecretRecord) -> None:
        owner = self._owner(record)
        if owner is not None:
            self._owned.setdefault(owner, set()).add(key)

    def _unindex(self, key: _Key, record: SecretRecord) -> None:
        owner = self._owner(record)
        if owner is None:
            return
        keys = self._owned.get(owner)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._owned[owner]


def _decode(data: Mapping[str, Any], only: Iterable[str] | None, key: _Key) -> dict[str, bytes]:
    """Base64-decode ``data`` (all of it, or only the keys in ``only``)."""
    names = data.keys() if only is None else [name for name in only if name in data]
    decoded: dict[str, bytes] = {}
    for name in names:
        value = data[name]
        if not isinstance(value, str):
            continue
        try:
            decoded[name] = base64.b64decode(value, validate=True)
        except binascii.Error:
            # The API server only serves valid base64; never log the value itself.
            logger.warning("Secret %s/%s: data key %r is not valid base64", *key, name)
    return decoded


# ---------------------------------------------------------------------------- Namespaces
class WatchedNamespaces:
    """Namespaces that exist and are not terminating, with their labels.

    Implements :class:`certauto_core.plugins.contract.NamespaceIndex`.
    """

    def __init__(self) -> None:
        self._labels: dict[str, Mapping[str, str]] = {}
        self._sorted: list[str] | None = None

    def __len__(self) -> int:
        return len(self._labels)

    def apply(self, event: WatchEvent) -> None:
        """Apply one watch event (the handler of the Namespace watch calls this)."""
        name = _key(event.obj)[1]
        if event.type == "DELETED" or _terminating(event.obj):
            if self._labels.pop(name, None) is not None:
                self._sorted = None
            return
        if name not in self._labels:
            self._sorted = None
        self._labels[name] = _strings(_metadata(event.obj).get("labels"))

    def names(self) -> list[str]:
        """All (non-terminating) namespace names, sorted."""
        if self._sorted is None:
            self._sorted = sorted(self._labels)
        return list(self._sorted)

    def labels(self, name: str) -> Mapping[str, str] | None:
        """The labels of a namespace; ``None`` when it does not exist or is terminating."""
        return self._labels.get(name)


def _terminating(obj: Mapping[str, Any]) -> bool:
    if _metadata(obj).get("deletionTimestamp"):
        return True
    status = obj.get("status")
    return isinstance(status, Mapping) and status.get("phase") == "Terminating"


# ---------------------------------------------------------------------------- Bindings
class BindingStore:
    """CertificateBinding objects by (namespace, name), and who reads which Secret."""

    def __init__(self) -> None:
        self._objects: dict[_Key, dict[str, Any]] = {}
        self._sources: dict[_Key, _Key] = {}
        self._by_source: dict[_Key, set[_Key]] = {}
        self._versions = _Versions()

    def __len__(self) -> int:
        return len(self._objects)

    def apply(self, event: WatchEvent) -> None:
        """Apply one watch event (the handler of the CertificateBinding watch calls this)."""
        if event.type == "DELETED":
            key = _key(event.obj)
            self._versions.tombstones.pop(key, None)
            current = self._objects.get(key)
            if current is not None and self._versions.accepts_delete(
                _version(event.obj),
                str(_metadata(event.obj).get("uid") or ""),
                _version(current),
                str(_metadata(current).get("uid") or ""),
            ):
                self._remove(key)
        else:
            self._store(event.obj)

    def observe_write(self, obj: dict[str, Any]) -> None:
        """Record a binding the caller just wrote (e.g. a status or finalizer patch)."""
        self._store(obj)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The binding as last seen (raw JSON; treat it as read-only)."""
        return self._objects.get((namespace, name))

    def keys(self) -> list[tuple[str, str]]:
        return list(self._objects)

    def by_source_secret(self, namespace: str, secret_name: str) -> set[tuple[str, str]]:
        """The bindings whose source is this Secret (a new set; callers may change it)."""
        return set(self._by_source.get((namespace, secret_name), ()))

    def _store(self, obj: dict[str, Any]) -> None:
        key = _key(obj)
        current = self._objects.get(key)
        if not self._versions.accepts_update(
            key, _version(obj), _version(current) if current is not None else None
        ):
            return
        metadata = obj.get("metadata")
        if isinstance(metadata, dict) and "managedFields" in metadata:
            # Often the biggest part of the object, and nobody here reads it. A shallow
            # copy: the caller's object stays as it was.
            metadata = {k: v for k, v in metadata.items() if k != "managedFields"}
            obj = {**obj, "metadata": metadata}
        self._objects[key] = obj
        source = _source_secret(obj)
        if self._sources.get(key) != source:
            self._unlink(key)
            if source is not None:
                self._sources[key] = source
                self._by_source.setdefault(source, set()).add(key)

    def _remove(self, key: _Key) -> None:
        del self._objects[key]
        self._unlink(key)

    def _unlink(self, key: _Key) -> None:
        source = self._sources.pop(key, None)
        if source is None:
            return
        keys = self._by_source.get(source)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_source[source]


def _source_secret(binding: Mapping[str, Any]) -> _Key | None:
    """(namespace, name) of the Secret a binding reads: its own or cert-manager's."""
    spec = binding.get("spec")
    if not isinstance(spec, Mapping):
        return None
    name: Any = None
    reference = spec.get("sourceSecretRef")
    if isinstance(reference, Mapping):
        name = reference.get("name")
    certificate = spec.get("certificate")
    if not name and isinstance(certificate, Mapping):
        name = certificate.get("secretName")
    if not isinstance(name, str) or not name:
        return None
    return (_key(binding)[0], name)
