"""The reflector through the real operator: what a platform team would check by hand.

The operator runs in-process against the real API server; the reflector is
loaded through its entry point, like any installed plugin.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from certauto_core.kube.errors import NotFoundError
from certauto_core.kube.resources import CERTIFICATE_BINDINGS, NAMESPACES, SECRETS
from certauto_core.plugins.manager import PluginManager
from certauto_core.testing.certs import CertFactory, IssuedCert
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.kube import wait_for
from certauto_core.testing.operator import OperatorHarness, api_writes, running_operator

SELECT = "certauto.sanorg.in/inject"


@pytest_asyncio.fixture(loop_scope="session")
async def harness(control_plane: ControlPlane) -> AsyncIterator[OperatorHarness]:
    plugins = PluginManager()
    plugins.load_entry_points()
    assert "reflector" in plugins.destination_types()
    async with running_operator(control_plane, plugins=plugins) as running:
        yield running


@pytest.fixture(scope="module")
def factory() -> tuple[CertFactory, IssuedCert]:
    certs = CertFactory()
    return certs, certs.intermediate_ca(certs.root_ca())


def _leaf(factory: tuple[CertFactory, IssuedCert]) -> IssuedCert:
    certs, issuer = factory
    return certs.leaf(issuer, ["web.example.test"])


class Namespaces:
    """Namespaces made for one test, deleted (as far as a test cluster can) afterwards."""

    def __init__(self, harness: OperatorHarness) -> None:
        self.harness = harness
        self.made: list[str] = []

    async def make(self, labels: dict[str, str] | None = None) -> str:
        created = await self.harness.kube.create(
            NAMESPACES.path(), {"metadata": {"generateName": "r-", "labels": labels or {}}}
        )
        self.made.append(created["metadata"]["name"])
        return str(created["metadata"]["name"])

    async def label(self, name: str, labels: dict[str, str | None]) -> None:
        await self.harness.kube.merge_patch(
            NAMESPACES.path(name=name), {"metadata": {"labels": labels}}
        )


@pytest_asyncio.fixture(loop_scope="session")
async def namespaces(harness: OperatorHarness, namespace: str) -> AsyncIterator[Namespaces]:
    made = Namespaces(harness)
    yield made
    # Bindings first (their finalizer clears the copies), then the namespaces.
    listing = await harness.kube.get(CERTIFICATE_BINDINGS.path(namespace))
    for item in listing["items"]:
        await harness.delete_binding(namespace, item["metadata"]["name"])
        await harness.wait_gone(namespace, item["metadata"]["name"])
    for name in made.made:
        await harness.kube.delete(NAMESPACES.path(name=name))


async def copy_of(
    harness: OperatorHarness, namespace: str, name: str = "web"
) -> dict[str, Any] | None:
    try:
        return await harness.kube.get(SECRETS.path(namespace, name))
    except NotFoundError:
        return None


async def wait_copy(
    harness: OperatorHarness, namespace: str, leaf: IssuedCert, name: str = "web"
) -> dict[str, Any]:
    expected = base64.b64encode(leaf.secret_data()["tls.crt"]).decode()

    async def check() -> dict[str, Any] | None:
        found = await copy_of(harness, namespace, name)
        if found is not None and found.get("data", {}).get("tls.crt") == expected:
            return found
        return None

    return await wait_for(
        check, timeout=30, what=f"the copy in {namespace} to hold {leaf.fingerprint[:12]}"
    )


async def wait_no_copy(harness: OperatorHarness, namespace: str, name: str = "web") -> None:
    async def check() -> bool:
        return await copy_of(harness, namespace, name) is None

    await wait_for(check, timeout=30, what=f"the copy in {namespace} to go")


def reflector(*listed: str, **config: Any) -> dict[str, Any]:
    return {
        "name": "mirror",
        "type": "reflector",
        "config": {
            "namespaces": list(listed),
            "namespaceSelector": {"matchLabels": {SELECT: "yes"}},
            **config,
        },
    }


async def test_list_and_selector_become_ready_with_traceable_copies(
    harness: OperatorHarness,
    namespace: str,
    namespaces: Namespaces,
    factory: tuple[CertFactory, IssuedCert],
) -> None:
    a, b = await namespaces.make(), await namespaces.make()
    selected = await namespaces.make({SELECT: "yes"})
    leaf = _leaf(factory)
    await harness.put_tls_secret(namespace, "web-tls", leaf.secret_data())
    await harness.create_binding(
        namespace,
        "web",
        {"sourceSecretRef": {"name": "web-tls"}, "destinations": [reflector(a, b)]},
    )
    obj = await harness.wait_condition(namespace, "web")
    [entry] = obj["status"]["destinations"]
    assert entry["state"] == "Synced"
    assert entry["syncedFingerprint"] == leaf.fingerprint
    assert entry["externalID"] == ",".join(sorted([a, b, selected]))
    source = await harness.kube.get(SECRETS.path(namespace, "web-tls"))
    for target in (a, b, selected):
        copy = await copy_of(harness, target)
        assert copy is not None, target
        assert copy["type"] == "kubernetes.io/tls"
        assert copy["data"]["tls.crt"] == source["data"]["tls.crt"]
        assert copy["data"]["tls.key"] == source["data"]["tls.key"]
        labels, annotations = copy["metadata"]["labels"], copy["metadata"]["annotations"]
        assert labels["app.kubernetes.io/managed-by"] == "certauto"
        assert annotations["certauto.sanorg.in/binding"] == f"{namespace}/web"
        assert annotations["certauto.sanorg.in/destination"] == "mirror"
        assert annotations["certauto.sanorg.in/source-secret"] == "web-tls"
        assert annotations["certauto.sanorg.in/fingerprint"] == leaf.fingerprint


async def test_rotation_labels_deletion_and_edits_are_followed(
    harness: OperatorHarness,
    namespace: str,
    namespaces: Namespaces,
    factory: tuple[CertFactory, IssuedCert],
) -> None:
    listed = await namespaces.make()
    first, second = _leaf(factory), _leaf(factory)
    await harness.put_tls_secret(namespace, "web-tls", first.secret_data())
    await harness.create_binding(
        namespace,
        "web",
        {"sourceSecretRef": {"name": "web-tls"}, "destinations": [reflector(listed)]},
    )
    await harness.wait_condition(namespace, "web")
    await wait_copy(harness, listed, first)

    # Rotating the source updates every copy.
    await harness.put_tls_secret(namespace, "web-tls", second.secret_data())
    await wait_copy(harness, listed, second)
    await harness.wait_destination(
        namespace, "web", "mirror", "Synced", fingerprint=second.fingerprint
    )

    # A namespace labelled to match gets a copy; removing the label removes it.
    late = await namespaces.make()
    await namespaces.label(late, {SELECT: "yes"})
    await wait_copy(harness, late, second)
    await namespaces.label(late, {SELECT: None})
    await wait_no_copy(harness, late)

    # A deleted copy comes back.
    await harness.kube.delete(SECRETS.path(listed, "web"))
    await wait_copy(harness, listed, second)

    # An edited copy is repaired.
    edited = await copy_of(harness, listed)
    assert edited is not None
    edited["data"]["tls.crt"] = base64.b64encode(first.secret_data()["tls.crt"]).decode()
    await harness.kube.replace(SECRETS.path(listed, "web"), edited)
    await wait_copy(harness, listed, second)
    await harness.wait_condition(namespace, "web")


async def test_a_secret_it_does_not_own_is_a_conflict_and_stays_untouched(
    harness: OperatorHarness,
    namespace: str,
    namespaces: Namespaces,
    factory: tuple[CertFactory, IssuedCert],
) -> None:
    theirs, ours = await namespaces.make(), await namespaces.make()
    foreign = await harness.kube.create(
        SECRETS.path(theirs),
        {
            "metadata": {"name": "web", "labels": {"team": "payments"}},
            "stringData": {"password": "x"},
        },
    )
    await harness.put_tls_secret(namespace, "web-tls", _leaf(factory).secret_data())
    await harness.create_binding(
        namespace,
        "web",
        {"sourceSecretRef": {"name": "web-tls"}, "destinations": [reflector(theirs, ours)]},
    )
    entry = await harness.wait_destination(namespace, "web", "mirror", "Conflict")
    assert f"{theirs}/web" in entry["message"]
    await harness.wait_condition(namespace, "web", "Ready", "False", reason="DestinationConflict")
    assert await copy_of(harness, ours) is not None  # the other namespace still got its copy
    await harness.settle()
    assert await harness.kube.get(SECRETS.path(theirs, "web")) == foreign  # byte for byte


async def test_unknown_type_and_invalid_reflector_config_fail_alone(
    harness: OperatorHarness,
    namespace: str,
    namespaces: Namespaces,
    factory: tuple[CertFactory, IssuedCert],
) -> None:
    target = await namespaces.make()
    await harness.put_tls_secret(namespace, "web-tls", _leaf(factory).secret_data())
    destinations = [
        {"name": "good", "type": "reflector", "config": {"namespaces": [target]}},
        {"name": "mystery", "type": "nginx-plus", "config": {}},
        {
            "name": "broken",
            "type": "reflector",
            "config": {
                "namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}
            },
        },
    ]
    await harness.create_binding(
        namespace, "web", {"sourceSecretRef": {"name": "web-tls"}, "destinations": destinations}
    )
    await harness.wait_destination(namespace, "web", "good", "Synced")
    mystery = await harness.wait_destination(namespace, "web", "mystery", "Failed")
    assert "nginx-plus" in mystery["message"]
    assert "reflector" in mystery["message"]
    broken = await harness.wait_destination(namespace, "web", "broken", "Failed")
    assert "operator" in broken["message"]
    assert await copy_of(harness, target, "web") is not None


@pytest.mark.parametrize(("policy", "kept"), [("Delete", False), ("Retain", True)])
async def test_deleting_a_binding_applies_its_deletion_policy(
    harness: OperatorHarness,
    namespace: str,
    namespaces: Namespaces,
    factory: tuple[CertFactory, IssuedCert],
    policy: str,
    kept: bool,
) -> None:
    target = await namespaces.make()
    await harness.put_tls_secret(namespace, "web-tls", _leaf(factory).secret_data())
    spec = {
        "sourceSecretRef": {"name": "web-tls"},
        "destinations": [
            {"name": "mirror", "type": "reflector", "config": {"namespaces": [target]}}
        ],
        "syncPolicy": {"deletionPolicy": policy},
    }
    await harness.create_binding(namespace, "web", spec)
    await harness.wait_condition(namespace, "web")
    await harness.delete_binding(namespace, "web")
    await harness.wait_gone(namespace, "web")
    assert (await copy_of(harness, target) is not None) is kept


async def test_steady_state_resync_makes_no_write(
    harness: OperatorHarness,
    namespace: str,
    namespaces: Namespaces,
    factory: tuple[CertFactory, IssuedCert],
    control_plane: ControlPlane,
) -> None:
    targets = [await namespaces.make() for _ in range(3)]
    await harness.put_tls_secret(namespace, "web-tls", _leaf(factory).secret_data())
    for index in range(4):
        spec = {
            "sourceSecretRef": {"name": "web-tls"},
            "destinations": [reflector(*targets, secretName=f"web-{index}")],
        }
        await harness.create_binding(namespace, f"web-{index}", spec)
    for index in range(4):
        await harness.wait_condition(namespace, f"web-{index}")
    await harness.settle()
    ours = ("secrets", "certificatebindings", "events")
    before = api_writes(control_plane, ours)
    await harness.resync()
    await harness.resync()
    assert api_writes(control_plane, ours) - before == 0


async def test_certauto_plugins_lists_the_installed_types() -> None:
    import asyncio
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "certauto_core.cli",
        "plugins",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    [row] = [line for line in output.decode().splitlines() if line.split()[:1] == ["reflector"]]
    assert "certauto-reflector" in row
    assert "0.1.0" in row
