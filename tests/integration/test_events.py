"""EventRecorder against a real kube-apiserver: Events on a CertificateBinding."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from kubernetes_asyncio import client

from certauto_core.api import crd
from certauto_core.kube.client import KubeClient
from certauto_core.kube.events import MAX_MESSAGE_BYTES, REDACTED, EventRecorder
from certauto_core.kube.resources import CERTIFICATE_BINDINGS, EVENTS
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.kube import apply_crds

PEM = (
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oZiEmhEpRZTkoAoGCCqGSM49\n"
    "-----END EC PRIVATE KEY-----\n"
)


@pytest_asyncio.fixture(loop_scope="session")
async def kube(
    control_plane: ControlPlane, kube_api: client.ApiClient
) -> AsyncIterator[KubeClient]:
    await apply_crds(kube_api, [crd.load_crd()])
    connected = await KubeClient.connect(kubeconfig=str(control_plane.kubeconfig_path))
    try:
        yield connected
    finally:
        await connected.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def recorder(kube: KubeClient) -> AsyncIterator[EventRecorder]:
    async with EventRecorder(kube, component="certauto-test", host="test-host") as started:
        yield started


async def create_binding(kube: KubeClient, namespace: str, name: str = "web") -> dict[str, Any]:
    body = {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {"name": name},
        "spec": {
            "sourceSecretRef": {"name": "web-tls"},
            "destinations": [
                {"name": "mirror", "type": "reflector", "config": {"namespaces": ["a"]}}
            ],
        },
    }
    return await kube.create(CERTIFICATE_BINDINGS.path(namespace), body)


async def events_in(kube: KubeClient, namespace: str) -> list[dict[str, Any]]:
    listed = await kube.get(EVENTS.path(namespace))
    items: list[dict[str, Any]] = listed["items"]
    return items


async def settled(recorder: EventRecorder, created: int, bumped: int = 0) -> None:
    """Wait until the recorder wrote what it was given (its task is asynchronous)."""
    for _ in range(200):
        if recorder.created >= created and recorder.bumped >= bumped:
            return
        assert recorder.failed == 0, "the API server refused an event"
        await asyncio.sleep(0.05)
    raise AssertionError(f"not written: created={recorder.created} bumped={recorder.bumped}")


async def test_an_event_lands_on_the_binding(
    kube: KubeClient, recorder: EventRecorder, namespace: str
) -> None:
    binding = await create_binding(kube, namespace)
    recorder.record(binding, "Warning", "ValidationFailed", "certificate expires in 2h")
    await settled(recorder, created=1)

    (event,) = await events_in(kube, namespace)
    assert event["involvedObject"] == {
        "apiVersion": "sanorg.in/v1alpha1",
        "kind": "CertificateBinding",
        "namespace": namespace,
        "name": "web",
        "uid": binding["metadata"]["uid"],
        "resourceVersion": binding["metadata"]["resourceVersion"],
    }
    assert (event["type"], event["reason"], event["message"]) == (
        "Warning",
        "ValidationFailed",
        "certificate expires in 2h",
    )
    assert event["count"] == 1
    assert event["source"] == {"component": "certauto-test", "host": "test-host"}
    assert event["reportingComponent"] == "certauto-test"

    # kubectl describe finds it by the involved object's fields.
    selected = await kube.get(
        EVENTS.path(namespace),
        fieldSelector=f"involvedObject.uid={binding['metadata']['uid']},involvedObject.kind=CertificateBinding",
    )
    assert [e["metadata"]["name"] for e in selected["items"]] == [event["metadata"]["name"]]


async def test_a_repeat_bumps_the_count_instead_of_creating_another(
    kube: KubeClient, recorder: EventRecorder, namespace: str
) -> None:
    binding = await create_binding(kube, namespace)
    for _ in range(3):
        recorder.record(binding, "Normal", "Synced", "all destinations in sync")
    recorder.record(binding, "Normal", "Synced", "1 of 2 destinations in sync")  # differs
    await settled(recorder, created=2, bumped=2)

    events = sorted(await events_in(kube, namespace), key=lambda e: e["message"])
    assert [(e["message"], e["count"]) for e in events] == [
        ("1 of 2 destinations in sync", 1),
        ("all destinations in sync", 3),
    ]
    repeated = events[1]
    assert repeated["lastTimestamp"] >= repeated["firstTimestamp"]


async def test_key_material_never_reaches_an_event(
    kube: KubeClient, recorder: EventRecorder, namespace: str
) -> None:
    binding = await create_binding(kube, namespace)
    recorder.record(binding, "Warning", "ValidationFailed", f"bad key:\n{PEM}")
    recorder.record(binding, "Warning", "PublishFailed", "x" * 5000)
    await settled(recorder, created=2)

    events = {e["reason"]: e for e in await events_in(kube, namespace)}
    assert events["ValidationFailed"]["message"] == REDACTED
    assert recorder.redacted == 1
    long = events["PublishFailed"]["message"]
    assert len(long.encode()) <= MAX_MESSAGE_BYTES
    assert long.startswith("xxx")


async def test_an_object_reference_works_and_close_flushes(
    kube: KubeClient, namespace: str
) -> None:
    binding = await create_binding(kube, namespace, "api")
    reference = {
        "apiVersion": binding["apiVersion"],
        "kind": binding["kind"],
        "namespace": namespace,
        "name": "api",
        "uid": binding["metadata"]["uid"],
    }
    recorder = EventRecorder(kube, host="flush-host")
    recorder.record(reference, "Normal", "Queued", "queued before start")
    await recorder.start()
    recorder.record(reference, "Normal", "Queued", "queued after start")
    await recorder.aclose()  # flushes both before it returns
    assert recorder.created == 2
    recorder.record(reference, "Normal", "Late", "after close")
    assert recorder.dropped == 1

    messages = sorted(e["message"] for e in await events_in(kube, namespace))
    assert messages == ["queued after start", "queued before start"]


async def test_a_full_queue_drops_and_counts(kube: KubeClient, namespace: str) -> None:
    reference = {"apiVersion": "v1", "kind": "Namespace", "name": namespace}
    recorder = EventRecorder(kube, queue_size=2)
    for number in range(5):
        recorder.record(reference, "Normal", "Burst", f"event {number}")
    assert recorder.dropped == 3
    await recorder.start()
    await recorder.aclose()
    assert (recorder.created, recorder.dropped) == (2, 3)
    # A cluster-scoped object's events live in "default".
    selected = await kube.get(
        EVENTS.path("default"), fieldSelector=f"involvedObject.name={namespace},reason=Burst"
    )
    assert sorted(e["message"] for e in selected["items"]) == ["event 0", "event 1"]


async def test_a_repeat_after_the_correlation_window_is_a_new_event(
    kube: KubeClient, namespace: str
) -> None:
    binding = await create_binding(kube, namespace)
    async with EventRecorder(kube, correlation_window=0.0) as recorder:
        recorder.record(binding, "Normal", "Synced", "in sync")
        await settled(recorder, created=1)
        await asyncio.sleep(0.01)
        recorder.record(binding, "Normal", "Synced", "in sync")
        await settled(recorder, created=2)
    assert recorder.bumped == 0
    assert [e["count"] for e in await events_in(kube, namespace)] == [1, 1]
