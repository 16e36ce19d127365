"""Managed mode end to end: the real operator, a real API server, cert-manager's real controller.

A binding with ``spec.certificate`` makes CertAuto own a ``cert-manager.io/v1``
Certificate (checked against cert-manager's real CRD schema); cert-manager's own
controller, built from its Go module, issues it from SelfSigned and CA
ClusterIssuers; the issued Secret goes to an in-test ``memory`` destination, so
what is tested here is the core (Certificate ownership and sync, failure reasons,
renewal, deletion), not a plugin.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field

from certauto_core.certs.info import sha256_fingerprint
from certauto_core.certs.material import CertificateMaterial
from certauto_core.engine.managed import CLUSTER_ISSUERS
from certauto_core.kube.client import KubeClient
from certauto_core.kube.errors import NotFoundError
from certauto_core.kube.resources import CERTIFICATE_BINDINGS, CERTIFICATES, EVENTS, SECRETS
from certauto_core.plugins.contract import (
    DestinationType,
    Observation,
    PluginContext,
    PublishResult,
    RetractResult,
    Target,
)
from certauto_core.plugins.hookspecs import hookimpl
from certauto_core.plugins.manager import PluginManager
from certauto_core.testing.certmanager.issuers import (
    ca_cluster_issuer,
    ca_pems,
    ca_without_cert_sign,
    replace_ca_key_pair,
    self_signed_cluster_issuer,
    trigger_renewal,
    wait_certificate,
    wait_issuer_ready,
)
from certauto_core.testing.certmanager.kubectl import get_wide
from certauto_core.testing.certmanager.process import CertManagerController
from certauto_core.testing.certs import CertFactory
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.kube import wait_for
from certauto_core.testing.operator import OperatorHarness, api_writes, running_operator


# ---------------------------------------------------------------------------- memory
class MemoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bucket: str = Field(min_length=1)


@dataclass
class MemoryWorld:
    held: dict[str, str] = field(default_factory=dict)
    """slot -> fingerprint"""
    publishes: int = 0


WORLD = MemoryWorld()


class MemoryDestination:
    async def check_material(self, material: CertificateMaterial, target: Target) -> None:
        return None

    async def observe(self, target: Target) -> Observation:
        fingerprint = WORLD.held.get(target.binding.key)
        return Observation(fingerprint=fingerprint, external_id=target.binding.key)

    async def publish(self, material: CertificateMaterial, target: Target) -> PublishResult:
        WORLD.publishes += 1
        WORLD.held[target.binding.key] = material.fingerprint
        return PublishResult(fingerprint=material.fingerprint, external_id=target.binding.key)

    async def retract(self, target: Target, *, delete: bool) -> RetractResult:
        if delete:
            WORLD.held.pop(target.binding.key, None)
        return RetractResult(removed=delete)

    async def aclose(self) -> None:
        return None


class MemoryPlugin:
    @hookimpl
    def certauto_destination_types(self) -> list[DestinationType]:
        def factory(context: PluginContext) -> MemoryDestination:
            return MemoryDestination()

        return [DestinationType(name="memory", config_model=MemoryConfig, factory=factory)]


# ---------------------------------------------------------------------------- fixtures
@pytest_asyncio.fixture(loop_scope="session")
async def harness(
    control_plane: ControlPlane, cert_manager: CertManagerController
) -> AsyncIterator[OperatorHarness]:
    WORLD.held.clear()
    WORLD.publishes = 0
    plugins = PluginManager()
    plugins.register(MemoryPlugin(), name="memory-test-plugin")
    async with running_operator(control_plane, plugins=plugins) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session", autouse=True)
async def delete_bindings_afterwards(
    harness: OperatorHarness, namespace: str
) -> AsyncIterator[None]:
    """Leave no binding (so no Certificate cert-manager would keep working on) behind."""
    yield
    listing = await harness.kube.get(CERTIFICATE_BINDINGS.path(namespace))
    for item in listing["items"]:
        await harness.delete_binding(namespace, item["metadata"]["name"])
    for item in listing["items"]:
        await harness.wait_gone(namespace, item["metadata"]["name"])


@pytest_asyncio.fixture(loop_scope="session")
async def self_signed(harness: OperatorHarness) -> AsyncIterator[str]:
    """A Ready SelfSigned ClusterIssuer (cluster-scoped: a fresh name per test)."""
    name = f"selfsigned-{uuid.uuid4().hex[:8]}"
    await self_signed_cluster_issuer(harness.kube, name)
    await wait_issuer_ready(harness.kube, name)
    yield name
    await harness.kube.delete(CLUSTER_ISSUERS.path(name=name))


def managed_spec(
    issuer: str,
    *dns_names: str,
    kind: str = "ClusterIssuer",
    destinations: tuple[str, ...] = ("a",),
    **certificate: Any,
) -> dict[str, Any]:
    return {
        "certificate": {
            "secretName": "web-tls",
            "issuerRef": {"name": issuer, "kind": kind},
            "dnsNames": list(dns_names or ("web.example.test",)),
            **certificate,
        },
        "destinations": [
            {"name": name, "type": "memory", "config": {"bucket": name}} for name in destinations
        ],
        # No polling: every step after the first must come from a watch event (the
        # Certificate's, the issued Secret's), which is what these tests prove.
        "syncPolicy": {"retryInterval": "1h"},
    }


async def issued_fingerprint(kube: KubeClient, namespace: str, name: str = "web-tls") -> str:
    secret = await kube.get(SECRETS.path(namespace, name))
    leaf = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    return sha256_fingerprint(leaf)


async def events_for(kube: KubeClient, namespace: str, reason: str) -> list[dict[str, Any]]:
    listing = await kube.get(EVENTS.path(namespace))
    return [
        e
        for e in listing["items"]
        if e["reason"] == reason and e["involvedObject"]["kind"] == "CertificateBinding"
    ]


# ---------------------------------------------------------------------------- tests
async def test_a_managed_binding_owns_its_certificate_and_syncs_what_cert_manager_issued(
    harness: OperatorHarness, namespace: str, self_signed: str
) -> None:
    spec = managed_spec(
        self_signed,
        "web.example.test",
        secretTemplate={"labels": {"team": "web"}, "annotations": {"owner": "platform"}},
        privateKey={"algorithm": "ECDSA", "size": 256},
        duration="2160h",
        renewBefore="360h",
    )
    created = await harness.create_binding(namespace, "web", spec)
    obj = await harness.wait_condition(namespace, "web", timeout=60)
    uid = created["metadata"]["uid"]
    assert [w.name for w in harness.operator.certificate_watchers] == ["certificates"]
    assert harness.operator.certificate_watchers[0].label_selector == (
        "app.kubernetes.io/managed-by=certauto"
    )

    certificate = await harness.kube.get(CERTIFICATES.path(namespace, "web"))
    [owner] = certificate["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "sanorg.in/v1alpha1",
        "kind": "CertificateBinding",
        "name": "web",
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    labels = certificate["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "certauto"
    assert labels["certauto.sanorg.in/binding-uid"] == uid
    cert_spec = certificate["spec"]
    assert cert_spec["secretName"] == "web-tls"
    assert cert_spec["issuerRef"] == {
        "name": self_signed,
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert cert_spec["dnsNames"] == ["web.example.test"]
    assert cert_spec["duration"] == "2160h"
    assert cert_spec["renewBefore"] == "360h"
    assert cert_spec["privateKey"] == {"algorithm": "ECDSA", "size": 256}
    assert cert_spec["secretTemplate"] == {
        "labels": {
            "team": "web",
            "certauto.sanorg.in/watched": "true",
            "certauto.sanorg.in/binding-uid": uid,
        },
        "annotations": {"owner": "platform"},
    }

    # cert-manager's Secret, as cert-manager wrote it, is the source.
    secret = await harness.kube.get(SECRETS.path(namespace, "web-tls"))
    assert secret["type"] == "kubernetes.io/tls"
    assert {"tls.crt", "tls.key", "ca.crt"} <= set(secret["data"])
    assert secret["metadata"]["labels"]["certauto.sanorg.in/watched"] == "true"
    assert secret["metadata"]["labels"]["team"] == "web"
    assert secret["metadata"]["annotations"]["owner"] == "platform"
    assert secret["metadata"]["annotations"]["cert-manager.io/certificate-name"] == "web"

    fingerprint = await issued_fingerprint(harness.kube, namespace)
    status = obj["status"]
    assert status["source"] == "certificate/web"
    assert status["certificate"]["sha256Fingerprint"] == fingerprint
    assert status["certificate"]["dnsNames"] == ["web.example.test"]
    assert status["certificate"]["keyAlgorithm"].startswith("ECDSA")
    assert [d["syncedFingerprint"] for d in status["destinations"]] == [fingerprint]
    assert WORLD.held[f"{namespace}/web/a"] == fingerprint


async def test_a_renewal_reaches_the_destinations_with_no_other_action(
    harness: OperatorHarness, namespace: str, self_signed: str
) -> None:
    await harness.create_binding(
        namespace, "web", managed_spec(self_signed, destinations=("a", "b"))
    )
    await harness.wait_condition(namespace, "web", timeout=60)
    first = await issued_fingerprint(harness.kube, namespace)

    await trigger_renewal(harness.kube, namespace, "web")  # what `cmctl renew` does
    await wait_certificate(harness.kube, namespace, "web", min_revision=2, timeout=60)
    second = await issued_fingerprint(harness.kube, namespace)
    assert second != first
    for destination in ("a", "b"):
        await harness.wait_destination(
            namespace, "web", destination, "Synced", fingerprint=second, timeout=30
        )
    assert WORLD.held[f"{namespace}/web/b"] == second


@pytest.mark.parametrize("kind", ["ClusterIssuer", "Issuer"])
async def test_an_issuer_that_does_not_exist_is_a_clear_not_ready_reason(
    harness: OperatorHarness, namespace: str, kind: str
) -> None:
    missing = f"no-such-issuer-{uuid.uuid4().hex[:6]}"
    await harness.create_binding(namespace, "web", managed_spec(missing, kind=kind))
    obj = await harness.wait_condition(
        namespace, "web", "Ready", "False", reason="IssuerNotFound", timeout=30
    )
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert f'{kind} "{missing}"' in ready["message"]
    assert "does not exist" in ready["message"]
    if kind == "Issuer":
        assert f"in namespace {namespace}" in ready["message"]

    # What `kubectl get cb -o wide` prints.
    row = await get_wide(harness.kube, CERTIFICATE_BINDINGS.path(namespace, "web"))
    assert row["Ready"] == "False"
    assert row["Reason"] == "IssuerNotFound"
    assert row["Source"] == "certificate/web"
    assert row["Synced"] == "0/1"

    async def warned() -> list[dict[str, Any]]:
        return await events_for(harness.kube, namespace, "IssuerNotFound")

    [event] = await wait_for(warned, what="an IssuerNotFound event")
    assert event["type"] == "Warning"

    # Creating the issuer is all it takes: cert-manager issues, the binding follows.
    if kind == "ClusterIssuer":
        await self_signed_cluster_issuer(harness.kube, missing)
    else:
        await harness.kube.create(
            f"/apis/cert-manager.io/v1/namespaces/{namespace}/issuers",
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "Issuer",
                "metadata": {"name": missing},
                "spec": {"selfSigned": {}},
            },
        )
    try:
        await harness.wait_condition(namespace, "web", timeout=60)
        await harness.wait_destination(namespace, "web", "a", "Synced")
    finally:
        if kind == "ClusterIssuer":
            await harness.kube.delete(CLUSTER_ISSUERS.path(name=missing))


async def test_cert_manager_failures_are_surfaced_in_its_words(
    harness: OperatorHarness, namespace: str
) -> None:
    suffix = uuid.uuid4().hex[:6]
    not_ready, refuses = f"ca-without-secret-{suffix}", f"ca-refusing-{suffix}"
    await harness.kube.create(
        CLUSTER_ISSUERS.path(),
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "ClusterIssuer",
            "metadata": {"name": not_ready},
            "spec": {"ca": {"secretName": f"missing-{suffix}"}},
        },
    )
    await ca_cluster_issuer(harness.kube, refuses, *ca_without_cert_sign())
    try:
        await wait_issuer_ready(harness.kube, refuses)
        await harness.create_binding(namespace, "unready", managed_spec(not_ready))
        failing = managed_spec(refuses)
        failing["certificate"]["secretName"] = "failing-tls"
        await harness.create_binding(namespace, "failing", failing)

        # The issuer's own condition, as cert-manager's issuer controller wrote it.
        obj = await harness.wait_condition(
            namespace, "unready", "Ready", "False", reason="IssuerNotReady", timeout=30
        )
        ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert "ErrGetKeyPair" in ready["message"]
        assert f"missing-{suffix}" in ready["message"]

        # A request cert-manager failed: its message, and its retry, reach the binding.
        obj = await harness.wait_condition(
            namespace, "failing", "Ready", "False", reason="IssuingFailed", timeout=30
        )
        ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert "certificate chain is malformed or broken" in ready["message"]
        assert "retried" in ready["message"]

        async def warned() -> list[dict[str, Any]]:
            return await events_for(harness.kube, namespace, "IssuingFailed")

        [event] = await wait_for(warned, what="an IssuingFailed event")
        assert event["type"] == "Warning"
        assert event["involvedObject"]["name"] == "failing"
        assert await events_for(harness.kube, namespace, "IssuerNotReady")
        assert WORLD.held.get(f"{namespace}/failing/a") is None
    finally:
        for name in (not_ready, refuses):
            await harness.kube.delete(CLUSTER_ISSUERS.path(name=name))


async def test_a_failed_renewal_keeps_the_good_certificate_and_says_so(
    harness: OperatorHarness, namespace: str
) -> None:
    """Ready stays True (the current certificate is good); the failure is told, once."""
    issuer = f"ca-{uuid.uuid4().hex[:8]}"
    factory = CertFactory()
    await ca_cluster_issuer(harness.kube, issuer, *ca_pems(factory.root_ca()))
    try:
        await wait_issuer_ready(harness.kube, issuer)
        await harness.create_binding(namespace, "web", managed_spec(issuer))
        await harness.wait_condition(namespace, "web", timeout=60)
        good = await issued_fingerprint(harness.kube, namespace)

        # From now on cert-manager's CA issuer fails every request it signs.
        await replace_ca_key_pair(harness.kube, f"{issuer}-ca", *ca_without_cert_sign())
        await trigger_renewal(harness.kube, namespace, "web")

        async def told() -> dict[str, Any] | None:
            obj = await harness.get_binding(namespace, "web")
            for condition in ((obj or {}).get("status") or {}).get("conditions") or ():
                if condition["type"] == "Validated" and "failed to renew" in condition["message"]:
                    return obj
            return None

        obj = await wait_for(told, timeout=30, what="the failed renewal in the binding's status")
        conditions = {c["type"]: c for c in obj["status"]["conditions"]}
        assert conditions["Ready"]["status"] == "True"
        assert "certificate chain is malformed or broken" in conditions["Validated"]["message"]
        assert obj["status"]["destinations"][0]["syncedFingerprint"] == good
        await harness.resync()

        async def warned() -> list[dict[str, Any]]:
            return await events_for(harness.kube, namespace, "RenewalFailed")

        [event] = await wait_for(warned, what="a RenewalFailed event")
        assert event["type"] == "Warning"
        assert event.get("count", 1) == 1  # not repeated on every reconcile
        assert WORLD.held[f"{namespace}/web/a"] == good
    finally:
        await harness.kube.delete(CLUSTER_ISSUERS.path(name=issuer))


async def test_changing_dns_names_updates_the_certificate_then_the_destination(
    harness: OperatorHarness, namespace: str, self_signed: str
) -> None:
    await harness.create_binding(namespace, "web", managed_spec(self_signed, "old.example.test"))
    await harness.wait_condition(namespace, "web", timeout=60)
    before = await harness.kube.get(CERTIFICATES.path(namespace, "web"))

    new_spec = managed_spec(self_signed, "new.example.test", "www.new.example.test")
    await harness.patch_spec(namespace, "web", {"certificate": new_spec["certificate"]})

    async def updated() -> dict[str, Any] | None:
        current = await harness.kube.get(CERTIFICATES.path(namespace, "web"))
        dns_names = current["spec"]["dnsNames"]
        return current if dns_names == ["new.example.test", "www.new.example.test"] else None

    after = await wait_for(updated, what="the Certificate to take the new dnsNames")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # updated, not replaced
    await wait_certificate(harness.kube, namespace, "web", min_revision=2, timeout=60)
    fingerprint = await issued_fingerprint(harness.kube, namespace)
    await harness.wait_destination(namespace, "web", "a", "Synced", fingerprint=fingerprint)
    obj = await harness.wait_condition(namespace, "web")
    assert obj["status"]["certificate"]["dnsNames"] == [
        "new.example.test",
        "www.new.example.test",
    ]


async def test_a_certificate_it_does_not_own_is_a_conflict_and_left_alone(
    harness: OperatorHarness, namespace: str, self_signed: str
) -> None:
    foreign_spec = {
        "secretName": "web-tls",
        "issuerRef": {"name": self_signed, "kind": "ClusterIssuer"},
        "dnsNames": ["theirs.example.test"],
    }
    foreign = await harness.kube.create(
        CERTIFICATES.path(namespace),
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": "web", "labels": {"team": "theirs"}},
            "spec": foreign_spec,
        },
    )
    try:
        spec = managed_spec(self_signed)
        spec["syncPolicy"]["deletionPolicy"] = "Delete"
        await harness.create_binding(namespace, "web", spec)
        obj = await harness.wait_condition(
            namespace, "web", "Ready", "False", reason="CertificateConflict"
        )
        ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert (
            f"Certificate {namespace}/web exists and is not owned by this binding"
            in (ready["message"])
        )
        await harness.settle()
        current = await harness.kube.get(CERTIFICATES.path(namespace, "web"))
        assert current["spec"] == foreign_spec
        assert current["metadata"]["labels"] == {"team": "theirs"}
        assert "ownerReferences" not in current["metadata"]
        assert current["metadata"].get("generation") == foreign["metadata"].get("generation")
        assert WORLD.held.get(f"{namespace}/web/a") is None

        # Deleting the binding (deletionPolicy Delete) leaves their Certificate and Secret.
        await wait_certificate(harness.kube, namespace, "web", timeout=60)
        await harness.delete_binding(namespace, "web")
        await harness.wait_gone(namespace, "web")
        await harness.kube.get(CERTIFICATES.path(namespace, "web"))
        await harness.kube.get(SECRETS.path(namespace, "web-tls"))
    finally:
        await harness.kube.delete(CERTIFICATES.path(namespace, "web"))


@pytest.mark.parametrize(("policy", "secret_kept"), [("Delete", False), ("Retain", True)])
async def test_deleting_the_binding_removes_the_certificate_and_per_policy_the_secret(
    harness: OperatorHarness, namespace: str, self_signed: str, policy: str, secret_kept: bool
) -> None:
    spec = managed_spec(self_signed)
    spec["syncPolicy"]["deletionPolicy"] = policy
    await harness.create_binding(namespace, "web", spec)
    await harness.wait_condition(namespace, "web", timeout=60)
    await harness.delete_binding(namespace, "web")
    await harness.wait_gone(namespace, "web")
    with pytest.raises(NotFoundError):
        await harness.kube.get(CERTIFICATES.path(namespace, "web"))
    try:
        await harness.kube.get(SECRETS.path(namespace, "web-tls"))
        kept = True
    except NotFoundError:
        kept = False
    assert kept is secret_kept


async def test_switching_to_source_secret_ref_releases_the_certificate_but_keeps_the_secret(
    harness: OperatorHarness, namespace: str, self_signed: str
) -> None:
    await harness.create_binding(namespace, "web", managed_spec(self_signed))
    await harness.wait_condition(namespace, "web", timeout=60)
    fingerprint = await issued_fingerprint(harness.kube, namespace)
    await harness.patch_spec(
        namespace, "web", {"certificate": None, "sourceSecretRef": {"name": "web-tls"}}
    )

    async def released() -> bool:
        try:
            await harness.kube.get(CERTIFICATES.path(namespace, "web"))
        except NotFoundError:
            return True
        return False

    await wait_for(released, what="the managed Certificate to be deleted")
    obj = await harness.wait_condition(namespace, "web")
    assert obj["status"]["source"] == "secret/web-tls"
    assert obj["status"]["certificate"]["sha256Fingerprint"] == fingerprint


async def test_a_steady_state_makes_no_writes(
    harness: OperatorHarness, namespace: str, self_signed: str, control_plane: ControlPlane
) -> None:
    for index in range(3):
        spec = managed_spec(self_signed)
        spec["certificate"]["secretName"] = f"web-{index}-tls"
        await harness.create_binding(namespace, f"web-{index}", spec)
    for index in range(3):
        await harness.wait_condition(namespace, f"web-{index}", timeout=60)
    await harness.settle()
    await asyncio.sleep(1.0)  # cert-manager's own post-issuance writes
    assert harness.operator.kube is not None
    client_writes = harness.operator.kube.writes
    bindings_writes = api_writes(control_plane, ("certificatebindings",))
    certificate_writes = api_writes(control_plane, ("certificates",))
    published = WORLD.publishes
    logging.getLogger("certauto.kube").setLevel(logging.DEBUG)
    await harness.resync()
    await harness.resync()
    assert harness.operator.kube.writes == client_writes
    assert api_writes(control_plane, ("certificatebindings",)) == bindings_writes
    assert api_writes(control_plane, ("certificates",)) == certificate_writes
    assert WORLD.publishes == published


async def test_without_cert_manager_the_operator_runs_and_managed_bindings_say_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cluster without cert-manager: sourceSecretRef bindings work, managed ones explain."""
    plane = await asyncio.to_thread(ControlPlane().start)
    try:
        plugins = PluginManager()
        plugins.register(MemoryPlugin(), name="memory-test-plugin")
        async with running_operator(plane, plugins=plugins) as bare:
            await bare.kube.create("/api/v1/namespaces", {"metadata": {"name": "apps"}})
            await bare.create_binding("apps", "web", managed_spec("anything"))
            obj = await bare.wait_condition(
                "apps", "web", "Ready", "False", reason="CertManagerNotInstalled"
            )
            ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
            assert "cert-manager.io/v1" in ready["message"]

            factory = CertFactory()
            leaf = factory.leaf(factory.root_ca(), ["plain.example.test"])
            await bare.put_tls_secret("apps", "plain-tls", leaf.secret_data())
            await bare.create_binding(
                "apps",
                "plain",
                {
                    "sourceSecretRef": {"name": "plain-tls"},
                    "destinations": [{"name": "a", "type": "memory", "config": {"bucket": "a"}}],
                },
            )
            await bare.wait_condition("apps", "plain")
            assert bare.operator.certificate_watchers == []

            # A managed binding can still be deleted: there is no Certificate to remove.
            await bare.delete_binding("apps", "web")
            await bare.wait_gone("apps", "web")
            assert "cert-manager's cert-manager.io/v1 Certificates are not served" in caplog.text
            assert bare.operator.watch_failures.check()[0]
    finally:
        await asyncio.to_thread(plane.stop)
