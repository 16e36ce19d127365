"""The in-memory indexes reconcile reads: what they keep, what they never keep, ordering."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from certauto_core.engine.indexes import (
    BINDING_ANNOTATION,
    COPY_LABEL_VALUE,
    DESTINATION_ANNOTATION,
    SOURCE_LABEL_VALUE,
    WATCHED_LABEL,
    BindingStore,
    WatchedNamespaces,
    WatchedSecrets,
    is_newer_or_same,
)
from certauto_core.kube.watch import EventType, WatchEvent
from certauto_core.plugins.contract import (
    BindingRef,
    NamespaceIndex,
    SecretIndex,
    secret_content_hash,
)

CERT = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nMIGH...\n-----END PRIVATE KEY-----\n"


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def secret(
    name: str,
    *,
    namespace: str = "apps",
    version: str = "10",
    uid: str = "uid-1",
    watched: str | None = COPY_LABEL_VALUE,
    binding: str | None = "apps/web",
    destination: str | None = "mirror",
    data: dict[str, bytes] | None = None,
    extra_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    labels = {"app": "web"}
    if watched is not None:
        labels[WATCHED_LABEL] = watched
    annotations = dict(extra_annotations or {})
    if binding is not None:
        annotations[BINDING_ANNOTATION] = binding
    if destination is not None:
        annotations[DESTINATION_ANNOTATION] = destination
    content = {"tls.crt": CERT, "tls.key": KEY} if data is None else data
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": uid,
            "resourceVersion": version,
            "labels": labels,
            "annotations": annotations,
        },
        "data": {key: b64(value) for key, value in content.items()},
    }


def event(kind: EventType, obj: dict[str, Any]) -> WatchEvent:
    return WatchEvent(kind, obj)


WEB_MIRROR = BindingRef("apps", "web", "uid-b", "mirror")


# ---------------------------------------------------------------------------- Secrets
def test_the_indexes_implement_the_plugin_contract() -> None:
    secrets: SecretIndex = WatchedSecrets()
    namespaces: NamespaceIndex = WatchedNamespaces()
    assert secrets.get("a", "b") is None
    assert namespaces.names() == []


def test_a_copy_keeps_metadata_and_a_content_hash_but_no_data() -> None:
    index = WatchedSecrets()
    obj = secret("web-tls", namespace="team-a")
    index.apply(event("ADDED", obj))

    record = index.get("team-a", "web-tls")
    assert record is not None
    assert (record.uid, record.resource_version, record.type) == (
        "uid-1",
        "10",
        "kubernetes.io/tls",
    )
    assert record.labels[WATCHED_LABEL] == COPY_LABEL_VALUE
    assert record.annotations[DESTINATION_ANNOTATION] == "mirror"
    assert record.content_hash == secret_content_hash({"tls.crt": CERT, "tls.key": KEY})
    assert index.source_data("team-a", "web-tls") is None
    # Nothing reachable from the record holds the key material, encoded or not.
    assert KEY not in repr(record).encode()
    assert b64(KEY) not in repr(record)


def test_kubectl_last_applied_configuration_is_not_kept() -> None:
    index = WatchedSecrets()
    applied = f'{{"data": {{"tls.key": "{b64(KEY)}"}}}}'
    index.apply(
        event(
            "ADDED",
            secret(
                "web-tls",
                extra_annotations={
                    "kubectl.kubernetes.io/last-applied-configuration": applied,
                    "team": "payments",
                },
            ),
        )
    )
    record = index.get("apps", "web-tls")
    assert record is not None
    assert "kubectl.kubernetes.io/last-applied-configuration" not in record.annotations
    assert record.annotations["team"] == "payments"
    assert b64(KEY) not in repr(record)


def test_a_source_keeps_its_decoded_data_and_loses_it_when_it_stops_being_one() -> None:
    index = WatchedSecrets()
    data = {"tls.crt": CERT, "tls.key": KEY, "extra": b"\x00\x01"}
    index.apply(event("ADDED", secret("src", watched=SOURCE_LABEL_VALUE, binding=None, data=data)))

    assert index.source_data("apps", "src") == data
    record = index.get("apps", "src")
    assert record is not None
    assert record.content_hash == secret_content_hash(data)
    assert index.owned_by(WEB_MIRROR) == []

    # Relabelled as a copy: the data goes, the record stays.
    index.apply(event("MODIFIED", secret("src", version="11", data=data)))
    assert index.source_data("apps", "src") is None
    assert index.get("apps", "src") is not None

    index.apply(event("MODIFIED", secret("src", version="12", watched="true", data=data)))
    index.apply(event("DELETED", secret("src", version="13", watched="true", data=data)))
    assert index.source_data("apps", "src") is None
    assert index.get("apps", "src") is None


def test_owned_by_follows_annotation_and_label_changes_and_deletes() -> None:
    index = WatchedSecrets()
    index.apply(event("ADDED", secret("web-tls", namespace="team-a", uid="a")))
    index.apply(event("ADDED", secret("web-tls", namespace="team-b", uid="b")))
    index.apply(event("ADDED", secret("other", namespace="team-b", destination="kv")))
    index.apply(event("ADDED", secret("user", namespace="team-c", binding=None)))

    def owned(ref: BindingRef = WEB_MIRROR) -> list[tuple[str, str]]:
        return [(r.namespace, r.name) for r in index.owned_by(ref)]

    assert owned() == [("team-a", "web-tls"), ("team-b", "web-tls")]
    assert owned(BindingRef("apps", "web", "uid-b", "kv")) == [("team-b", "other")]
    assert owned(BindingRef("apps", "api", "uid-c", "mirror")) == []

    # Moved to another destination.
    index.apply(
        event(
            "MODIFIED",
            secret("web-tls", namespace="team-a", uid="a", version="11", destination="kv"),
        )
    )
    assert owned() == [("team-b", "web-tls")]
    assert owned(BindingRef("apps", "web", "uid-b", "kv")) == [
        ("team-a", "web-tls"),
        ("team-b", "other"),
    ]

    # No longer labelled as a copy (a user took it over): not ours any more.
    index.apply(
        event(
            "MODIFIED", secret("web-tls", namespace="team-b", uid="b", version="12", watched="mine")
        )
    )
    assert owned() == []

    index.apply(
        event("DELETED", secret("other", namespace="team-b", version="13", destination="kv"))
    )
    assert owned(BindingRef("apps", "web", "uid-b", "kv")) == [("team-a", "web-tls")]


def test_a_write_through_never_overwrites_a_newer_watch_event() -> None:
    index = WatchedSecrets()
    index.apply(event("ADDED", secret("web-tls", version="20", destination="new")))

    index.observe_write(secret("web-tls", version="19", destination="old"))

    record = index.get("apps", "web-tls")
    assert record is not None
    assert record.resource_version == "20"
    assert record.annotations[DESTINATION_ANNOTATION] == "new"
    assert [r.name for r in index.owned_by(BindingRef("apps", "web", "u", "new"))] == ["web-tls"]
    assert index.owned_by(BindingRef("apps", "web", "u", "old")) == []


def test_a_late_watch_event_never_overwrites_a_newer_write_through() -> None:
    index = WatchedSecrets()
    index.apply(event("ADDED", secret("web-tls", version="5")))
    index.observe_write(secret("web-tls", version="9", data={"tls.crt": b"renewed"}))

    index.apply(event("MODIFIED", secret("web-tls", version="7")))  # the watch lags behind

    record = index.get("apps", "web-tls")
    assert record is not None
    assert record.resource_version == "9"
    assert record.content_hash == secret_content_hash({"tls.crt": b"renewed"})

    index.apply(event("MODIFIED", secret("web-tls", version="9", data={"tls.crt": b"renewed"})))
    index.apply(event("MODIFIED", secret("web-tls", version="12")))  # then it catches up
    record = index.get("apps", "web-tls")
    assert record is not None
    assert record.resource_version == "12"


def test_resource_versions_compare_as_integers_not_strings() -> None:
    assert is_newer_or_same("10", "9")
    assert not is_newer_or_same("9", "10")
    assert is_newer_or_same("10", "10")
    # Not integers: the order of arrival is the only order there is.
    assert is_newer_or_same("a", "b")
    assert is_newer_or_same("b", "a")

    index = WatchedSecrets()
    index.apply(event("ADDED", secret("x", version="opaque-2")))
    index.observe_write(secret("x", version="opaque-1", destination="newest-arrival"))
    record = index.get("apps", "x")
    assert record is not None
    assert record.resource_version == "opaque-1"


def test_a_write_through_delete_is_not_undone_by_a_late_event() -> None:
    index = WatchedSecrets()
    index.apply(event("ADDED", secret("web-tls", version="5")))
    index.observe_delete("apps", "web-tls")
    assert index.get("apps", "web-tls") is None
    assert index.owned_by(WEB_MIRROR) == []

    index.apply(event("MODIFIED", secret("web-tls", version="5")))  # stale, already deleted
    assert index.get("apps", "web-tls") is None

    index.apply(event("DELETED", secret("web-tls", version="6")))
    # Re-created afterwards: a new object, and it is seen.
    index.apply(event("ADDED", secret("web-tls", version="8", uid="uid-2")))
    record = index.get("apps", "web-tls")
    assert record is not None
    assert record.uid == "uid-2"


def test_a_delete_of_an_older_incarnation_keeps_the_new_one() -> None:
    index = WatchedSecrets()
    # The caller re-created the Secret and recorded the answer before the watch
    # delivered the deletion of the old one.
    index.apply(event("ADDED", secret("web-tls", version="5", uid="old")))
    index.observe_write(secret("web-tls", version="9", uid="new"))
    index.apply(event("DELETED", secret("web-tls", version="7", uid="old")))
    record = index.get("apps", "web-tls")
    assert record is not None
    assert record.uid == "new"


def test_a_relist_deletion_at_the_list_version_applies_only_to_older_records() -> None:
    index = WatchedSecrets()
    index.apply(event("ADDED", secret("gone", version="5", uid="g")))
    index.apply(event("ADDED", secret("rewritten", version="6", uid="r")))
    index.observe_write(secret("rewritten", version="40", uid="r"))  # after the list

    # A re-list at version 30 no longer has either; the watcher says so with uid and
    # the list's version only.
    for name, uid in (("gone", "g"), ("rewritten", "r")):
        index.apply(
            event(
                "DELETED",
                {
                    "metadata": {
                        "namespace": "apps",
                        "name": name,
                        "uid": uid,
                        "resourceVersion": "30",
                    }
                },
            )
        )
    assert index.get("apps", "gone") is None
    assert index.get("apps", "rewritten") is not None


def test_a_write_through_of_an_unwatched_secret_is_not_recorded() -> None:
    index = WatchedSecrets()
    index.observe_write(secret("plain", watched=None))
    assert index.get("apps", "plain") is None

    index.observe_write(secret("web-tls", version="3"))
    assert index.get("apps", "web-tls") is not None
    index.observe_write(secret("web-tls", version="4", watched=None))  # label removed
    assert index.get("apps", "web-tls") is None
    assert index.owned_by(WEB_MIRROR) == []


def test_records_are_frozen() -> None:
    index = WatchedSecrets()
    index.apply(event("ADDED", secret("web-tls")))
    record = index.get("apps", "web-tls")
    assert record is not None
    with pytest.raises(AttributeError):
        record.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        record.labels["x"] = "y"  # type: ignore[index]


# ---------------------------------------------------------------------------- Namespaces
def namespace(
    name: str, labels: dict[str, str] | None = None, *, terminating: str | None = None
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels or {}},
        "status": {"phase": "Active"},
    }
    if terminating == "timestamp":
        obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    elif terminating == "phase":
        obj["status"]["phase"] = "Terminating"
    return obj


def test_namespaces_exclude_terminating_ones() -> None:
    index = WatchedNamespaces()
    index.apply(event("ADDED", namespace("team-b", {"inject": "true"})))
    index.apply(event("ADDED", namespace("team-a")))
    index.apply(event("ADDED", namespace("old", terminating="phase")))
    assert index.names() == ["team-a", "team-b"]
    assert index.labels("team-b") == {"inject": "true"}
    assert index.labels("old") is None

    index.apply(event("MODIFIED", namespace("team-b", {"inject": "true"}, terminating="timestamp")))
    assert index.names() == ["team-a"]
    assert index.labels("team-b") is None

    index.apply(event("MODIFIED", namespace("team-a", {"inject": "false"})))
    assert index.labels("team-a") == {"inject": "false"}
    index.apply(event("DELETED", namespace("team-a")))
    assert index.names() == []
    assert index.labels("team-a") is None


def test_names_is_a_copy() -> None:
    index = WatchedNamespaces()
    index.apply(event("ADDED", namespace("a")))
    index.names().append("b")
    assert index.names() == ["a"]


# ---------------------------------------------------------------------------- Bindings
def binding(
    name: str,
    *,
    version: str = "1",
    source: str | None = None,
    managed: str | None = None,
    namespace: str = "apps",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"destinations": []}
    if source is not None:
        spec["sourceSecretRef"] = {"name": source}
    if managed is not None:
        spec["certificate"] = {"secretName": managed, "issuerRef": {"name": "le"}}
    return {
        "apiVersion": "sanorg.in/v1alpha1",
        "kind": "CertificateBinding",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": version,
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": spec,
    }


def test_binding_reverse_index_follows_the_source_as_the_spec_changes() -> None:
    store = BindingStore()
    store.apply(event("ADDED", binding("web", source="web-tls")))
    store.apply(event("ADDED", binding("api", managed="web-tls")))
    store.apply(event("ADDED", binding("web", source="web-tls", namespace="other")))
    assert store.by_source_secret("apps", "web-tls") == {("apps", "web"), ("apps", "api")}
    assert store.by_source_secret("other", "web-tls") == {("other", "web")}

    store.apply(event("MODIFIED", binding("web", version="2", source="new-tls")))
    assert store.by_source_secret("apps", "web-tls") == {("apps", "api")}
    assert store.by_source_secret("apps", "new-tls") == {("apps", "web")}

    store.apply(event("MODIFIED", binding("api", version="3", managed="api-tls")))
    assert store.by_source_secret("apps", "web-tls") == set()
    assert store.by_source_secret("apps", "api-tls") == {("apps", "api")}

    store.apply(event("DELETED", binding("web", version="4", source="new-tls")))
    assert store.by_source_secret("apps", "new-tls") == set()
    assert store.get("apps", "web") is None
    assert sorted(store.keys()) == [("apps", "api"), ("other", "web")]


def test_binding_store_keeps_the_object_without_managed_fields() -> None:
    store = BindingStore()
    obj = binding("web", source="web-tls")
    store.apply(event("ADDED", obj))
    kept = store.get("apps", "web")
    assert kept is not None
    assert kept["spec"]["sourceSecretRef"] == {"name": "web-tls"}
    assert "managedFields" not in kept["metadata"]
    assert "managedFields" in obj["metadata"]  # the caller's object is left alone


def test_binding_write_through_and_watch_ordering() -> None:
    store = BindingStore()
    store.apply(event("ADDED", binding("web", version="5", source="a")))
    store.observe_write(binding("web", version="8", source="b"))
    store.apply(event("MODIFIED", binding("web", version="6", source="a")))  # late
    kept = store.get("apps", "web")
    assert kept is not None
    assert kept["metadata"]["resourceVersion"] == "8"
    assert store.by_source_secret("apps", "a") == set()
    assert store.by_source_secret("apps", "b") == {("apps", "web")}


def test_by_source_secret_returns_a_copy() -> None:
    store = BindingStore()
    store.apply(event("ADDED", binding("web", source="web-tls")))
    store.by_source_secret("apps", "web-tls").clear()
    assert store.by_source_secret("apps", "web-tls") == {("apps", "web")}
