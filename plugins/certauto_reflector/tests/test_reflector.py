"""The reflector's own behaviour on a real API server, beyond what the conformance kit checks."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from certauto_reflector.config import ReflectorConfig
from certauto_reflector.destination import (
    CONTENT_HASH_ANNOTATION,
    FINGERPRINT_ANNOTATION,
    MATERIAL_HASH_ANNOTATION,
    ReflectorDestination,
    to_destination_error,
)
from certauto_reflector.plugin import REFLECTOR
from kubernetes_asyncio import client

from certauto_core.certs.material import CertificateMaterial
from certauto_core.engine.indexes import WatchedNamespaces, WatchedSecrets
from certauto_core.kube.client import KubeClient
from certauto_core.kube.errors import NotFoundError, error_for
from certauto_core.kube.resources import NAMESPACES, SECRETS
from certauto_core.kube.watch import WatchEvent
from certauto_core.plugins.contract import (
    BindingRef,
    Observation,
    PluginContext,
    PublishResult,
    Target,
    needs_publish,
    secret_content_hash,
)
from certauto_core.plugins.errors import ConfigError, ConflictError, PermanentError, RetryableError
from certauto_core.plugins.manager import PluginManager
from certauto_core.testing.certs import CertFactory, KeyType
from certauto_core.testing.controlplane.process import free_port
from certauto_core.testing.kube import Identities, wait_for
from certauto_core.testing.plugin_context import live_plugin_context

MakeNamespace = Callable[..., Awaitable[str]]


@dataclass
class World:
    """A reflector over the core's live indexes, and a binding to drive it for."""

    kube: KubeClient
    context: PluginContext
    reflector: ReflectorDestination
    binding: BindingRef
    certs: CertFactory

    def target(self, **config: Any) -> Target:
        return Target(binding=self.binding, config=ReflectorConfig.model_validate(config))

    def material(self, *, with_ca: bool = True) -> CertificateMaterial:
        root = self.certs.root_ca()
        leaf = self.certs.leaf(self.certs.intermediate_ca(root), ["web.example.test"])
        return leaf.material(leaf.secret_data(ca=root) if with_ca else leaf.secret_data())

    async def sync(self, material: CertificateMaterial, target: Target) -> PublishResult | None:
        """What the core does: check, observe, publish only on difference."""
        await self.reflector.check_material(material, target)
        if needs_publish(await self.reflector.observe(target), material):
            return await self.reflector.publish(material, target)
        return None

    async def settled(
        self, target: Target, accept: Callable[[Observation], bool], what: str
    ) -> Observation:
        """Wait until the watches have delivered an out-of-band change to observe."""

        async def check() -> Observation | None:
            observation = await self.reflector.observe(target)
            return observation if accept(observation) else None

        observation = await wait_for(check, timeout=20, what=what)
        assert observation is not None
        return observation

    async def sees(self, *namespaces: str, labels: Mapping[str, str] | None = None) -> None:
        """Wait until the namespace index has every namespace (with ``labels``, if given)."""

        async def check() -> bool:
            for namespace in namespaces:
                seen = self.context.namespaces.labels(namespace)
                if seen is None or not all(seen.get(k) == v for k, v in (labels or {}).items()):
                    return False
            return True

        await wait_for(check, timeout=20, what=f"the namespace index to see {namespaces}")

    async def copy(self, namespace: str, name: str = "web") -> dict[str, Any] | None:
        try:
            return await self.kube.get(SECRETS.path(namespace, name))
        except NotFoundError:
            return None

    async def copies(self, name: str = "web") -> dict[str, dict[str, Any]]:
        """Every copy of this binding in the cluster, by namespace, straight from the API."""
        listed = await self.kube.get(
            SECRETS.path(), labelSelector="app.kubernetes.io/managed-by=certauto"
        )
        key = f"{self.binding.namespace}/{self.binding.name}"
        return {
            item["metadata"]["namespace"]: item
            for item in listed["items"]
            if item["metadata"]["name"] == name
            and item["metadata"].get("annotations", {}).get("certauto.sanorg.in/binding") == key
        }


@pytest_asyncio.fixture(loop_scope="session")
async def world(kube_api: client.ApiClient, namespace: str) -> AsyncIterator[World]:
    kube = KubeClient(kube_api)
    async with live_plugin_context(kube) as context:
        yield World(
            kube=kube,
            context=context,
            reflector=ReflectorDestination(context),
            binding=BindingRef(namespace, "web", str(uuid.uuid4()), "mirror"),
            certs=CertFactory(key_type=KeyType.ECDSA_P256),
        )


def _decoded(secret: Mapping[str, Any]) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


async def _set_labels(kube: KubeClient, namespace: str, labels: Mapping[str, str | None]) -> None:
    await kube.merge_patch(NAMESPACES.path(name=namespace), {"metadata": {"labels": labels}})


async def test_copies_go_to_listed_and_selected_namespaces_only(
    world: World, make_namespace: MakeNamespace, namespace: str
) -> None:
    listed = await make_namespace("listed")
    selected = await make_namespace("selected", {"inject": "yes"})
    other = await make_namespace("other", {"inject": "no"})
    await _set_labels(world.kube, namespace, {"inject": "yes"})  # the binding's own
    target = world.target(
        namespaces=[listed],
        namespaceSelector={
            "matchExpressions": [{"key": "inject", "operator": "In", "values": ["yes"]}]
        },
        labels={"team": "platform"},
        annotations={"note": "hello"},
    )
    await world.sees(listed, selected, other)
    await world.sees(namespace, labels={"inject": "yes"})
    material = world.material()

    result = await world.sync(material, target)

    assert result is not None
    assert result.external_id == ",".join(sorted([listed, selected]))
    copies = await world.copies()
    assert set(copies) == {listed, selected}, "not in the unselected one, nor the binding's own"
    assert other not in copies
    copy = copies[listed]
    assert copy["type"] == "kubernetes.io/tls"
    data = _decoded(copy)
    assert data == {
        "tls.crt": material.certificate_pem(),
        "tls.key": material.private_key_pem(),
        "ca.crt": material.ca_pem,
    }
    meta = copy["metadata"]
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "certauto",
        "certauto.sanorg.in/watched": "copy",
        "team": "platform",
    }
    annotations = meta["annotations"]
    assert annotations["certauto.sanorg.in/binding"] == f"{namespace}/web"
    assert annotations["certauto.sanorg.in/destination"] == "mirror"
    assert annotations["note"] == "hello"
    assert annotations[FINGERPRINT_ANNOTATION] == material.fingerprint
    assert annotations[MATERIAL_HASH_ANNOTATION] == material.content_hash
    assert annotations[CONTENT_HASH_ANNOTATION] == secret_content_hash(data)
    observation = await world.reflector.observe(target)
    assert observation.fingerprint == material.fingerprint
    assert observation.content_hash == material.content_hash
    assert observation.external_id == result.external_id


async def test_observe_makes_no_api_call(world: World, make_namespace: MakeNamespace) -> None:
    target = world.target(namespaces=[namespace := await make_namespace()])
    await world.sees(namespace)
    await world.sync(world.material(), target)
    requests = world.kube.requests

    for _ in range(5):
        await world.reflector.observe(target)

    assert world.kube.requests == requests


async def test_publish_counts_its_writes_honestly(
    world: World, make_namespace: MakeNamespace, secret_writes: Callable[[], Awaitable[int]]
) -> None:
    first, second = await make_namespace(), await make_namespace()
    target = world.target(namespaces=[first, second])
    await world.sees(first, second)
    before_server, before_client = await secret_writes(), world.kube.writes

    result = await world.sync(world.material(), target)

    assert result is not None
    assert result.writes == 2
    assert world.kube.writes - before_client == 2
    assert await secret_writes() - before_server == 2


async def test_a_newly_labelled_namespace_gets_a_copy_and_unlabelling_removes_it(
    world: World, make_namespace: MakeNamespace
) -> None:
    always = await make_namespace("always", {"mirror": "on"})
    later = await make_namespace("later")
    target = world.target(namespaceSelector={"matchLabels": {"mirror": "on"}})
    await world.sees(always, later)
    material = world.material()
    await world.sync(material, target)
    assert set(await world.copies()) == {always}

    await _set_labels(world.kube, later, {"mirror": "on"})
    drift = await world.settled(target, lambda o: o.fingerprint is None, "the new namespace")
    assert drift.drift is not None
    assert later in drift.drift
    await world.sync(material, target)
    assert set(await world.copies()) == {always, later}
    assert (await world.reflector.observe(target)).fingerprint == material.fingerprint

    await _set_labels(world.kube, later, {"mirror": None})
    drift = await world.settled(target, lambda o: o.fingerprint is None, "the unlabelling")
    assert drift.drift is not None
    assert "no longer selected" in drift.drift
    result = await world.sync(material, target)

    assert result is not None
    assert result.external_id == always
    assert set(await world.copies()) == {always}
    assert (await world.reflector.observe(target)).fingerprint == material.fingerprint


async def test_a_foreign_secret_is_a_conflict_and_stays_byte_for_byte(
    world: World, make_namespace: MakeNamespace
) -> None:
    theirs, ours = await make_namespace("theirs"), await make_namespace("ours")
    other = world.material()
    # Another team's TLS Secret, even watched by CertAuto as a source and claiming to be
    # managed by it, under the name the copy would take: not this destination's.
    await world.kube.create(
        SECRETS.path(theirs),
        {
            "metadata": {
                "name": "web",
                "labels": {
                    "certauto.sanorg.in/watched": "true",
                    "app.kubernetes.io/managed-by": "certauto",
                },
                "annotations": {"certauto.sanorg.in/binding": "elsewhere/web"},
            },
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": base64.b64encode(other.certificate_pem()).decode(),
                "tls.key": base64.b64encode(other.private_key_pem()).decode(),
            },
        },
    )
    before = await world.copy(theirs)
    target = world.target(namespaces=[theirs, ours])
    await world.sees(theirs, ours)
    observation = await world.settled(target, lambda o: theirs in (o.drift or ""), "theirs")
    assert observation.fingerprint is None

    with pytest.raises(ConflictError) as conflict:
        await world.sync(world.material(), target)

    assert f"{theirs}/web" in conflict.value.message
    assert await world.copy(theirs) == before, "the foreign Secret was modified"
    assert set(await world.copies()) == {ours}, "the other namespace was not synced"
    with pytest.raises(ConflictError):
        await world.sync(world.material(), target)
    assert await world.copy(theirs) == before


async def test_a_terminating_namespace_is_skipped(
    world: World, make_namespace: MakeNamespace, kube_api: client.ApiClient
) -> None:
    alive, doomed = await make_namespace("alive"), await make_namespace("doomed")
    target = world.target(namespaces=[alive, doomed])
    await world.sees(alive, doomed)
    material = world.material()
    await world.sync(material, target)
    assert set(await world.copies()) == {alive, doomed}

    # The test control plane runs no namespace controller: a deleted namespace stays
    # Terminating with its content, and the API server refuses new content in it.
    await client.CoreV1Api(kube_api).delete_namespace(doomed)

    async def gone() -> bool:
        return world.context.namespaces.labels(doomed) is None

    await wait_for(gone, what="the namespace index to drop the terminating namespace")
    steady = await world.reflector.observe(target)
    assert steady.fingerprint == material.fingerprint, "its copy goes with it: not drift"
    assert steady.external_id == alive

    renewed = world.material()
    result = await world.sync(renewed, target)

    assert result is not None
    assert result.writes == 1
    assert result.external_id == alive
    assert doomed in result.message
    copies = await world.copies()
    assert copies[alive]["metadata"]["annotations"][FINGERPRINT_ANNOTATION] == renewed.fingerprint
    assert copies[doomed]["metadata"]["annotations"][FINGERPRINT_ANNOTATION] == (
        material.fingerprint
    ), "nothing is written into a terminating namespace"
    assert (await world.reflector.observe(target)).fingerprint == renewed.fingerprint


async def test_a_namespace_terminating_before_the_index_knows_is_skipped(
    world: World, make_namespace: MakeNamespace, kube_api: client.ApiClient
) -> None:
    doomed = await make_namespace("doomed")
    await client.CoreV1Api(kube_api).delete_namespace(doomed)
    # An index that has not seen the deletion yet (the watch event is in flight): the
    # API server's refusal must be read as "terminating", not as an RBAC failure.
    stale = WatchedNamespaces()
    stale.apply(WatchEvent("ADDED", {"metadata": {"name": doomed}}))
    context = PluginContext(
        kube=world.kube,
        secrets=WatchedSecrets(),
        namespaces=stale,
        logger=world.context.logger,
    )
    reflector = ReflectorDestination(context)

    result = await reflector.publish(world.material(), world.target(namespaces=[doomed]))

    assert result.external_id is None
    assert doomed in result.message
    assert await world.copy(doomed) is None


async def test_edits_are_repaired_keeping_what_others_added(
    world: World, make_namespace: MakeNamespace
) -> None:
    namespace = await make_namespace()
    target = world.target(namespaces=[namespace], labels={"team": "a"})
    await world.sees(namespace)
    material = world.material()
    await world.sync(material, target)
    path = SECRETS.path(namespace, "web")
    # Another tool annotates the copy: that is not drift.
    await world.kube.merge_patch(path, {"metadata": {"annotations": {"backup": "yes"}}})
    untouched = await world.copy(namespace)
    await wait_for(
        lambda: _record_version(world, namespace, untouched), what="the annotation to be seen"
    )
    assert (await world.reflector.observe(target)).fingerprint == material.fingerprint

    # Someone edits the key: drift, repaired in place, the annotation kept.
    garbage = base64.b64encode(b"oops").decode()
    await world.kube.merge_patch(path, {"data": {"tls.key": garbage}})
    drift = await world.settled(target, lambda o: o.fingerprint is None, "the edit")
    assert drift.drift == f"copy edited in {namespace}"
    assert await world.sync(material, target) is not None

    repaired = await world.copy(namespace)
    assert repaired is not None
    assert untouched is not None
    assert repaired["metadata"]["uid"] == untouched["metadata"]["uid"], "replaced, not updated"
    assert _decoded(repaired)["tls.key"] == material.private_key_pem()
    assert repaired["metadata"]["annotations"]["backup"] == "yes"
    assert (await world.reflector.observe(target)).fingerprint == material.fingerprint

    # Dropping a label from the config drops it from the copy, and nothing else.
    relabelled = world.target(namespaces=[namespace])
    assert (await world.reflector.observe(relabelled)).fingerprint is None
    assert await world.sync(material, relabelled) is not None
    final = await world.copy(namespace)
    assert final is not None
    assert "team" not in final["metadata"]["labels"]
    assert final["metadata"]["annotations"]["backup"] == "yes"
    assert await world.sync(material, relabelled) is None


async def _record_version(world: World, namespace: str, obj: Mapping[str, Any] | None) -> bool:
    record = world.context.secrets.get(namespace, "web")
    return (
        obj is not None
        and record is not None
        and (record.resource_version == obj["metadata"]["resourceVersion"])
    )


async def test_a_new_secret_name_moves_the_copies(
    world: World, make_namespace: MakeNamespace
) -> None:
    namespace = await make_namespace()
    material = world.material()
    old = world.target(namespaces=[namespace])
    await world.sees(namespace)
    await world.sync(material, old)

    renamed = world.target(namespaces=[namespace], secretName="web-tls")
    observation = await world.reflector.observe(renamed)
    assert observation.fingerprint is None
    assert await world.sync(material, renamed) is not None

    assert await world.copy(namespace, "web") is None
    assert await world.copy(namespace, "web-tls") is not None
    assert (await world.reflector.observe(renamed)).fingerprint == material.fingerprint


async def test_a_chain_or_bundle_change_behind_the_same_leaf_is_published(
    world: World, make_namespace: MakeNamespace
) -> None:
    namespace = await make_namespace()
    target = world.target(namespaces=[namespace])
    await world.sees(namespace)
    root = world.certs.root_ca()
    leaf = world.certs.leaf(world.certs.intermediate_ca(root), ["web.example.test"])
    without_bundle = leaf.material(leaf.secret_data())
    with_bundle = leaf.material(leaf.secret_data(ca=root))
    assert without_bundle.fingerprint == with_bundle.fingerprint
    await world.sync(without_bundle, target)

    assert await world.sync(with_bundle, target) is not None

    copy = await world.copy(namespace)
    assert copy is not None
    assert _decoded(copy)["ca.crt"] == root.certificate_pem()
    assert await world.sync(with_bundle, target) is None


async def test_retract_keeps_or_deletes_every_copy(
    world: World, make_namespace: MakeNamespace
) -> None:
    first, second = await make_namespace(), await make_namespace()
    target = world.target(namespaces=[first, second])
    await world.sees(first, second)
    await world.sync(world.material(), target)

    kept = await world.reflector.retract(target, delete=False)
    assert kept.removed is False
    assert "kept 2 copies" in kept.message
    assert set(await world.copies()) == {first, second}

    removed_entry = Target(binding=world.binding, config=None, deleting=False)
    deleted = await world.reflector.retract(removed_entry, delete=True)
    assert deleted.removed is True
    assert await world.copies() == {}


async def test_forbidden_writes_are_permanent_and_name_the_namespace(
    world: World,
    make_namespace: MakeNamespace,
    kube_api: client.ApiClient,
    kube_identities: Identities,
) -> None:
    namespace = await make_namespace()
    user = f"reader-{uuid.uuid4().hex[:8]}"
    rbac = client.RbacAuthorizationV1Api(kube_api)
    await rbac.create_cluster_role(
        {
            "metadata": {"name": user},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets", "namespaces"],
                    "verbs": ["list", "watch"],
                }
            ],
        }
    )
    await rbac.create_cluster_role_binding(
        {
            "metadata": {"name": user},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": user,
            },
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
        }
    )
    try:
        reader = KubeClient(await kube_identities.user(user))

        async def can_list() -> bool:
            try:
                await reader.get(SECRETS.path(namespace))
            except Exception:
                return False
            return True

        await wait_for(can_list, what="RBAC to allow listing")
        async with live_plugin_context(reader) as context:
            reflector = ReflectorDestination(context)
            target = world.target(namespaces=[namespace])

            with pytest.raises(PermanentError) as forbidden:
                await reflector.publish(world.material(), target)

        message = forbidden.value.message
        assert f"secrets in namespace {namespace}" in message
        assert "'create'" in message
        assert "RBAC" in message
    finally:
        await rbac.delete_cluster_role_binding(user)
        await rbac.delete_cluster_role(user)


def test_config_errors_are_clear() -> None:
    manager = PluginManager()
    manager.load_entry_points()

    with pytest.raises(ConfigError) as empty:
        manager.validate_config("reflector", {})
    with pytest.raises(ConfigError) as operator:
        manager.validate_config(
            "reflector",
            {"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Equals"}]}},
        )

    assert "set 'namespaces', 'namespaceSelector' or both" in empty.value.message
    assert "config.namespaceSelector.matchExpressions[0].operator" in operator.value.message
    assert "'In', 'NotIn', 'Exists' or 'DoesNotExist'" in operator.value.message
    assert "Equals" not in operator.value.message, "config values are never echoed"


def test_the_type_is_registered() -> None:
    manager = PluginManager()
    manager.load_entry_points()

    registered = manager.destination_type("reflector")

    assert registered.destination_type is REFLECTOR
    assert registered.distribution == "certauto-reflector"


async def test_an_unreachable_api_server_is_retryable(
    world: World, make_namespace: MakeNamespace
) -> None:
    namespace = await make_namespace()
    await world.sees(namespace)
    configuration = client.Configuration()
    configuration.host = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    async with client.ApiClient(configuration=configuration) as dead:
        context = PluginContext(
            kube=KubeClient(dead),
            secrets=world.context.secrets,
            namespaces=world.context.namespaces,
            logger=world.context.logger,
        )

        with pytest.raises(RetryableError) as unreachable:
            await ReflectorDestination(context).publish(
                world.material(), world.target(namespaces=[namespace])
            )

    assert f"secret {namespace}/web" in unreachable.value.message
    assert "connection failed" in unreachable.value.message


def test_api_errors_become_typed_errors() -> None:
    throttled = to_destination_error(
        error_for(429, {"reason": "TooManyRequests", "details": {"retryAfterSeconds": 7}}),
        "create",
        "team-a",
        "web",
    )
    unavailable = to_destination_error(error_for(503, None), "update", "team-a", "web")
    invalid = to_destination_error(
        error_for(
            422,
            {
                "reason": "Invalid",
                "message": "Secret is invalid: data[tls.key]: Invalid value: secret-bytes",
                "details": {"causes": [{"field": "data[tls.key]", "message": "secret-bytes"}]},
            },
        ),
        "create",
        "team-a",
        "web",
    )
    moved = to_destination_error(error_for(409, {"reason": "Conflict"}), "update", "team-a", "web")

    assert isinstance(throttled, RetryableError)
    assert throttled.retry_after == timedelta(seconds=7)
    assert isinstance(unavailable, RetryableError)
    assert isinstance(invalid, PermanentError)
    assert invalid.message == (
        "the API server rejected secret team-a/web as invalid (fields: data[tls.key])"
    )
    assert "secret-bytes" not in invalid.message, "the server's text is not repeated"
    assert isinstance(moved, RetryableError)
