"""Managed mode with the reflector: cert-manager issues, CertAuto copies into namespaces.

Everything is real: the API server with cert-manager's CRDs, cert-manager's own
controller (built from its Go module) signing from SelfSigned and CA
ClusterIssuers, the operator in-process, and the reflector loaded through its
entry point like any installed plugin.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from cryptography import x509

from certauto_core.certs.info import sha256_fingerprint
from certauto_core.engine.managed import CLUSTER_ISSUERS
from certauto_core.kube.client import KubeClient
from certauto_core.kube.errors import NotFoundError
from certauto_core.kube.resources import CERTIFICATE_BINDINGS, CERTIFICATES, SECRETS
from certauto_core.plugins.manager import PluginManager
from certauto_core.testing.certmanager.issuers import (
    ca_cluster_issuer,
    ca_pems,
    self_signed_cluster_issuer,
    wait_certificate,
    wait_issuer_ready,
)
from certauto_core.testing.certmanager.kubectl import get_wide
from certauto_core.testing.certmanager.process import CertManagerController
from certauto_core.testing.certs import CertFactory
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.kube import wait_for
from certauto_core.testing.operator import OperatorHarness, running_operator

MakeNamespace = Callable[..., Awaitable[str]]


@pytest_asyncio.fixture(loop_scope="session")
async def harness(
    control_plane: ControlPlane, cert_manager: CertManagerController
) -> AsyncIterator[OperatorHarness]:
    plugins = PluginManager()
    plugins.load_entry_points()
    assert "reflector" in plugins.destination_types()
    async with running_operator(control_plane, plugins=plugins) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session", autouse=True)
async def delete_bindings_afterwards(
    harness: OperatorHarness, namespace: str, make_namespace: MakeNamespace
) -> AsyncIterator[None]:
    """Bindings go first (so do their Certificates), then the test's namespaces."""
    yield
    listing = await harness.kube.get(CERTIFICATE_BINDINGS.path(namespace))
    for item in listing["items"]:
        await harness.delete_binding(namespace, item["metadata"]["name"])
    for item in listing["items"]:
        await harness.wait_gone(namespace, item["metadata"]["name"])


@pytest_asyncio.fixture(loop_scope="session", params=["SelfSigned", "CA"])
async def cluster_issuer(
    request: pytest.FixtureRequest, harness: OperatorHarness
) -> AsyncIterator[str]:
    """A Ready ClusterIssuer of each kind the test controller signs with."""
    name = f"{str(request.param).lower()}-{uuid.uuid4().hex[:8]}"
    if request.param == "CA":
        certs = CertFactory()
        await ca_cluster_issuer(harness.kube, name, *ca_pems(certs.root_ca()))
    else:
        await self_signed_cluster_issuer(harness.kube, name)
    await wait_issuer_ready(harness.kube, name)
    yield name
    await harness.kube.delete(CLUSTER_ISSUERS.path(name=name))


def managed(issuer: str, targets: list[str], *dns_names: str, **certificate: Any) -> dict[str, Any]:
    return {
        "certificate": {
            "secretName": "web-tls",
            "issuerRef": {"name": issuer, "kind": "ClusterIssuer"},
            "dnsNames": list(dns_names or ("web.example.test",)),
            **certificate,
        },
        "destinations": [
            {"name": "mirror", "type": "reflector", "config": {"namespaces": targets}}
        ],
        "syncPolicy": {"retryInterval": "1h"},  # no polling: watch events drive every step
    }


def _leaf(secret: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))


async def _secret(kube: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await kube.get(SECRETS.path(namespace, name))
    except NotFoundError:
        return None


async def copies_hold(
    kube: KubeClient, source: dict[str, Any], targets: list[str], name: str = "web"
) -> None:
    """Wait until every target's copy holds the source Secret's data, byte for byte."""
    for target in targets:

        async def same(target: str = target) -> bool:
            copy = await _secret(kube, target, name)
            return copy is not None and all(
                copy["data"].get(key) == source["data"][key]
                for key in ("tls.crt", "tls.key", "ca.crt")
            )

        await wait_for(same, timeout=30, what=f"the copy in {target} to match the issued Secret")


async def test_a_managed_binding_becomes_ready_and_reflects_to_two_namespaces(
    harness: OperatorHarness,
    namespace: str,
    make_namespace: MakeNamespace,
    cluster_issuer: str,
) -> None:
    targets = [await make_namespace("team-a"), await make_namespace("team-b")]
    await harness.create_binding(namespace, "web", managed(cluster_issuer, targets))
    obj = await harness.wait_condition(namespace, "web", timeout=60)

    issued = await harness.kube.get(SECRETS.path(namespace, "web-tls"))
    assert issued["metadata"]["annotations"]["cert-manager.io/issuer-name"] == cluster_issuer
    fingerprint = sha256_fingerprint(_leaf(issued))
    [entry] = obj["status"]["destinations"]
    assert entry["state"] == "Synced"
    assert entry["syncedFingerprint"] == fingerprint
    assert entry["externalID"] == ",".join(sorted(targets))
    assert obj["status"]["source"] == "certificate/web"
    await copies_hold(harness.kube, issued, targets)
    for target in targets:
        copy = await harness.kube.get(SECRETS.path(target, "web"))
        assert copy["type"] == "kubernetes.io/tls"
        assert copy["metadata"]["annotations"]["certauto.sanorg.in/source-secret"] == "web-tls"
        assert copy["metadata"]["annotations"]["certauto.sanorg.in/fingerprint"] == fingerprint

    row = await get_wide(harness.kube, CERTIFICATE_BINDINGS.path(namespace, "web"))
    assert (row["Ready"], row["Source"], row["Synced"]) == ("True", "certificate/web", "1/1")


async def test_a_renewal_reaches_the_copies_with_no_other_action(
    harness: OperatorHarness, namespace: str, make_namespace: MakeNamespace
) -> None:
    """cert-manager renews on its own schedule; nobody touches the binding or the copies."""
    issuer = f"selfsigned-{uuid.uuid4().hex[:8]}"
    await self_signed_cluster_issuer(harness.kube, issuer)
    try:
        await wait_issuer_ready(harness.kube, issuer)
        targets = [await make_namespace("team-a"), await make_namespace("team-b")]
        spec = managed(
            issuer,
            targets,
            # Renewal is due 15 s after each issuance.
            duration="1h",
            renewBefore="59m45s",
            privateKey={"algorithm": "ECDSA", "size": 256},
        )
        spec["validation"] = {"minRemainingValidity": "30m"}
        await harness.create_binding(namespace, "web", spec)
        await harness.wait_condition(namespace, "web", timeout=60)
        first = await harness.kube.get(SECRETS.path(namespace, "web-tls"))
        await copies_hold(harness.kube, first, targets)

        renewed = await wait_certificate(harness.kube, namespace, "web", min_revision=2, timeout=60)
        assert renewed["status"]["revision"] >= 2
        second = await harness.kube.get(SECRETS.path(namespace, "web-tls"))
        assert _leaf(second).serial_number != _leaf(first).serial_number

        async def renewed_copies() -> bool:
            for target in targets:
                copy = await _secret(harness.kube, target, "web")
                if copy is None or _leaf(copy).serial_number == _leaf(first).serial_number:
                    return False
            return True

        await wait_for(renewed_copies, timeout=30, what="both copies to hold a renewed cert")
    finally:
        await harness.kube.delete(CLUSTER_ISSUERS.path(name=issuer))


async def test_an_issuer_that_does_not_exist_is_a_clear_reason_in_kubectl_get(
    harness: OperatorHarness, namespace: str, make_namespace: MakeNamespace
) -> None:
    target = await make_namespace("team-a")
    missing = f"no-such-issuer-{uuid.uuid4().hex[:6]}"
    await harness.create_binding(namespace, "web", managed(missing, [target]))
    obj = await harness.wait_condition(
        namespace, "web", "Ready", "False", reason="IssuerNotFound", timeout=30
    )
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert f'ClusterIssuer "{missing}" does not exist' in ready["message"]

    row = await get_wide(harness.kube, CERTIFICATE_BINDINGS.path(namespace, "web"))
    assert row["Ready"] == "False"
    assert row["Reason"] == "IssuerNotFound"
    assert row["Source"] == "certificate/web"
    await harness.settle()
    assert await _secret(harness.kube, target, "web") is None


async def test_changing_dns_names_updates_the_certificate_and_after_reissue_the_copies(
    harness: OperatorHarness,
    namespace: str,
    make_namespace: MakeNamespace,
    cluster_issuer: str,
) -> None:
    targets = [await make_namespace("team-a"), await make_namespace("team-b")]
    await harness.create_binding(
        namespace, "web", managed(cluster_issuer, targets, "old.example.test")
    )
    await harness.wait_condition(namespace, "web", timeout=60)
    await copies_hold(
        harness.kube, await harness.kube.get(SECRETS.path(namespace, "web-tls")), targets
    )

    new_names = ["new.example.test", "www.new.example.test"]
    await harness.patch_spec(
        namespace,
        "web",
        {"certificate": managed(cluster_issuer, targets, *new_names)["certificate"]},
    )

    async def certificate_updated() -> bool:
        current = await harness.kube.get(CERTIFICATES.path(namespace, "web"))
        return bool(current["spec"]["dnsNames"] == new_names)

    await wait_for(certificate_updated, what="the Certificate to take the new dnsNames")
    await wait_certificate(harness.kube, namespace, "web", min_revision=2, timeout=60)
    reissued = await harness.kube.get(SECRETS.path(namespace, "web-tls"))
    sans = _leaf(reissued).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert sans.value.get_values_for_type(x509.DNSName) == new_names
    await copies_hold(harness.kube, reissued, targets)
    obj = await harness.wait_condition(namespace, "web")
    assert obj["status"]["certificate"]["dnsNames"] == new_names
