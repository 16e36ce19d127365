"""The test control plane is a real kube-apiserver: schemas, RBAC, watches, CRDs."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from certauto_core.testing.controlplane.build import KUBERNETES_VERSION
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.kube import Identities, apply_crds, wait_for

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.harness.certauto.test"},
    "spec": {
        "group": "harness.certauto.test",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_version_is_the_built_one(control_plane: ControlPlane) -> None:
    assert control_plane.get_json("/version")["gitVersion"] == KUBERNETES_VERSION


async def test_custom_resource_violating_its_schema_is_rejected(
    kube_api: client.ApiClient, namespace: str
) -> None:
    await apply_crds(kube_api, [WIDGET_CRD])
    objects = client.CustomObjectsApi(kube_api)
    good = {"apiVersion": "harness.certauto.test/v1", "kind": "Widget"}
    await objects.create_namespaced_custom_object(
        "harness.certauto.test",
        "v1",
        namespace,
        "widgets",
        {**good, "metadata": {"name": "ok"}, "spec": {"size": 3}},
    )
    with pytest.raises(ApiException) as rejected:
        await objects.create_namespaced_custom_object(
            "harness.certauto.test",
            "v1",
            namespace,
            "widgets",
            {**good, "metadata": {"name": "bad"}, "spec": {"size": 0}},
        )
    assert rejected.value.status == 422
    assert "spec.size" in str(rejected.value.body)


async def test_rbac_forbids_until_a_role_binding_allows(
    kube_api: client.ApiClient, namespace: str, kube_identities: Identities
) -> None:
    alice = client.CoreV1Api(await kube_identities.user("alice"))
    with pytest.raises(ApiException) as forbidden:
        await alice.list_namespaced_secret(namespace)
    assert forbidden.value.status == 403

    rbac = client.RbacAuthorizationV1Api(kube_api)
    await rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "secret-reader"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
        },
    )
    await rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "alice-reads-secrets"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "secret-reader",
            },
            "subjects": [
                {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}
            ],
        },
    )

    async def allowed() -> bool:
        try:
            await alice.list_namespaced_secret(namespace)
        except ApiException as error:
            if error.status == 403:
                return False
            raise
        return True

    await wait_for(allowed, what="RBAC to allow alice")
    # Only what the role grants: reading another namespace stays forbidden.
    with pytest.raises(ApiException) as elsewhere:
        await alice.list_namespaced_secret("default")
    assert elsewhere.value.status == 403


async def test_service_account_token_authenticates(
    kube_api: client.ApiClient, namespace: str, kube_identities: Identities
) -> None:
    robot = await kube_identities.service_account(namespace, "robot")
    review = await client.AuthenticationV1Api(robot).create_self_subject_review({})
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:robot"


async def test_a_watch_sees_an_update(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    created = await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "watched"}, "data": {"v": "1"}}
    )
    seen: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def consume() -> None:
        stream = watch.Watch()
        async with stream:
            async for event in stream.stream(
                core.list_namespaced_config_map,
                namespace,
                resource_version=created.metadata.resource_version,
                timeout_seconds=30,
            ):
                obj = event["object"]
                await seen.put((event["type"], obj.data.get("v", "")))

    task = asyncio.create_task(consume())
    try:
        await asyncio.sleep(0.2)
        await core.patch_namespaced_config_map("watched", namespace, {"data": {"v": "2"}})
        assert await asyncio.wait_for(seen.get(), timeout=10) == ("MODIFIED", "2")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_cert_manager_crd_rejects_a_certificate_missing_a_required_field(
    kube_api: client.ApiClient, namespace: str, cert_manager_crds_installed: list[str]
) -> None:
    assert "certificates.cert-manager.io" in cert_manager_crds_installed
    objects = client.CustomObjectsApi(kube_api)
    spec: dict[str, Any] = {"secretName": "web-tls", "dnsNames": ["web.example.com"]}
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "web"},
        "spec": spec,
    }
    with pytest.raises(ApiException) as rejected:
        await objects.create_namespaced_custom_object(
            "cert-manager.io", "v1", namespace, "certificates", certificate
        )
    assert rejected.value.status == 422
    assert "issuerRef" in str(rejected.value.body)

    spec["issuerRef"] = {"name": "selfsigned", "kind": "ClusterIssuer"}
    created = await objects.create_namespaced_custom_object(
        "cert-manager.io", "v1", namespace, "certificates", certificate
    )
    assert created["spec"]["issuerRef"]["name"] == "selfsigned"
