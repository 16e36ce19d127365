"""The Watcher against a real kube-apiserver: deliveries, 410 re-lists, dead connections.

Two control planes: the session's (watch cache on, like production) and one started
here with ``--etcd-compaction-interval=2s --watch-cache=false``, so old resource
versions and continue tokens really expire and the API server really answers 410 (with
the watch cache on it would serve a recent old version from memory instead).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from certauto_core.kube.client import KubeClient
from certauto_core.kube.errors import GoneError
from certauto_core.kube.resources import NAMESPACES, SECRETS
from certauto_core.kube.watch import (
    RESTART_CLOSED,
    RESTART_ERROR,
    RESTART_GONE,
    RESTART_TIMEOUT,
    Watcher,
    WatchEvent,
)
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.tcpproxy import TcpProxy

LABEL = "certauto.sanorg.in/watched"


# ---------------------------------------------------------------------------- helpers
class Recorder:
    """A watch handler that records (type, name, resourceVersion) of every event."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.fail_on = fail_on

    def __call__(self, event: WatchEvent) -> None:
        metadata = event.obj["metadata"]
        if metadata["name"] == self.fail_on:
            raise RuntimeError(f"handler bug on {self.fail_on}")
        self.events.append((event.type, metadata["name"], metadata["resourceVersion"]))

    def of(self, name: str) -> list[str]:
        return [kind for kind, obj, _ in self.events if obj == name]

    def saw(self, kind: str, name: str) -> bool:
        return any(k == kind and n == name for k, n, _ in self.events)


async def until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(watcher: Watcher, *, sync_timeout: float = 20) -> AsyncIterator[Watcher]:
    """Run ``watcher`` until the block ends; fail if it ever stops on its own."""
    task = asyncio.create_task(watcher.run())
    try:
        await until(
            lambda: watcher.synced.is_set() or task.done(), timeout=sync_timeout, what="sync"
        )
        yield watcher
        assert not task.done(), "the watcher stopped on its own"
    finally:
        task.cancel()
        await asyncio.wait([task])
    if not task.cancelled():
        task.result()


def secret(name: str, labels: dict[str, str] | None = None, value: str = "v1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {LABEL: "true"} if labels is None else labels},
        "stringData": {"value": value},
    }


async def create_namespace(kube: KubeClient) -> str:
    created = await kube.create(NAMESPACES.path(), {"metadata": {"generateName": "w-"}})
    name: str = created["metadata"]["name"]
    return name


async def wait_compacted(kube: KubeClient, namespace: str, version: str) -> None:
    """Wait until etcd compacted ``version`` away (the API server answers 410 for it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        try:
            await kube.request(
                "GET",
                SECRETS.path(namespace),
                query={"resourceVersion": version, "resourceVersionMatch": "Exact", "limit": 1},
            )
        except GoneError:
            return
        assert loop.time() < deadline, f"version {version} was never compacted"
        await asyncio.sleep(0.5)


def kubeconfig_through(source: Path, proxy: TcpProxy, target: Path) -> Path:
    """A copy of ``source`` whose server is the proxy (TLS still verifies: IP SAN)."""
    config = yaml.safe_load(source.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://{proxy.address}"
    target.write_text(yaml.safe_dump(config))
    target.chmod(0o600)
    return target


# ---------------------------------------------------------------------------- fixtures
@pytest_asyncio.fixture(loop_scope="session")
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(kubeconfig=str(control_plane.kubeconfig_path))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def compacting_plane() -> Iterator[ControlPlane]:
    plane = ControlPlane(
        apiserver_args=("--etcd-compaction-interval=2s", "--watch-cache=false")
    ).start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def compacting_kube(compacting_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(kubeconfig=str(compacting_plane.kubeconfig_path))
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def proxied_client(
    plane: ControlPlane, tmp_path: Path
) -> AsyncIterator[tuple[TcpProxy, KubeClient]]:
    host, port = plane.server.removeprefix("https://").rsplit(":", 1)
    async with TcpProxy(host, int(port)) as proxy:
        path = kubeconfig_through(plane.kubeconfig_path, proxy, tmp_path / "proxied.kubeconfig")
        client = await KubeClient.connect(kubeconfig=str(path))
        try:
            yield proxy, client
        finally:
            proxy.thaw()
            await client.aclose()


# ---------------------------------------------------------------------------- tests
async def test_delivers_adds_updates_and_deletes(kube: KubeClient, namespace: str) -> None:
    await kube.create(SECRETS.path(namespace), secret("before"))
    recorder = Recorder()
    watcher = Watcher(kube, SECRETS, recorder, namespace=namespace, label_selector=LABEL)

    async with running(watcher):
        assert recorder.of("before") == ["ADDED"]
        assert watcher.last_resource_version
        await kube.create(SECRETS.path(namespace), secret("after"))
        await kube.merge_patch(SECRETS.path(namespace, "before"), {"stringData": {"value": "2"}})
        await kube.delete(SECRETS.path(namespace, "after"))
        await until(lambda: recorder.saw("DELETED", "after"), timeout=10, what="the delete")
        await until(lambda: recorder.saw("MODIFIED", "before"), timeout=10, what="the update")

    assert recorder.of("after") == ["ADDED", "DELETED"]
    assert recorder.of("before") == ["ADDED", "MODIFIED"]
    assert watcher.restarts == 0


async def test_label_selector_filters(kube: KubeClient, namespace: str) -> None:
    await kube.create(SECRETS.path(namespace), secret("plain", labels={}))
    await kube.create(SECRETS.path(namespace), secret("labelled"))
    recorder = Recorder()
    watcher = Watcher(kube, SECRETS, recorder, namespace=namespace, label_selector=LABEL)

    async with running(watcher):
        await kube.create(SECRETS.path(namespace), secret("plain-2", labels={"other": "x"}))
        # Losing the label takes it out of the watch; gaining it brings it in.
        await kube.merge_patch(
            SECRETS.path(namespace, "labelled"), {"metadata": {"labels": {LABEL: None}}}
        )
        await kube.merge_patch(
            SECRETS.path(namespace, "plain"), {"metadata": {"labels": {LABEL: "copy"}}}
        )
        await until(lambda: recorder.saw("ADDED", "plain"), timeout=10, what="the label to count")
        await until(lambda: recorder.saw("DELETED", "labelled"), timeout=10, what="the unlabel")

    assert recorder.of("plain-2") == []
    assert recorder.of("labelled") == ["ADDED", "DELETED"]
    assert recorder.of("plain") == ["ADDED"]


async def test_relist_after_410_delivers_only_differences(compacting_kube: KubeClient) -> None:
    kube = compacting_kube
    namespace = await create_namespace(kube)
    for name in ("same", "changed", "deleted"):
        await kube.create(SECRETS.path(namespace), secret(name))
    recorder = Recorder()
    restarts: list[str] = []
    watcher = Watcher(
        kube,
        SECRETS,
        recorder,
        namespace=namespace,
        label_selector=LABEL,
        page_size=2,
        on_restart=restarts.append,
    )
    async with running(watcher):
        assert sorted(recorder.of(n)[0] for n in ("same", "changed", "deleted")) == ["ADDED"] * 3
    stopped_at = watcher.last_resource_version
    assert stopped_at is not None

    # While the watcher is stopped: changes, and etcd compacts its version away.
    await kube.merge_patch(SECRETS.path(namespace, "changed"), {"stringData": {"value": "2"}})
    await kube.delete(SECRETS.path(namespace, "deleted"))
    await kube.create(SECRETS.path(namespace), secret("new"))
    await wait_compacted(kube, namespace, stopped_at)
    seen_before = len(recorder.events)

    async with running(watcher):  # resumes from the compacted version: 410, re-list
        await until(lambda: recorder.saw("ADDED", "new"), timeout=20, what="the re-list")
        await kube.create(SECRETS.path(namespace), secret("after-relist"))
        await until(lambda: recorder.saw("ADDED", "after-relist"), timeout=10, what="the watch")

    assert RESTART_GONE in restarts
    assert watcher.restart_reasons[RESTART_GONE] >= 1
    gap = [(kind, name) for kind, name, _ in recorder.events[seen_before:]]
    assert sorted(gap) == [
        ("ADDED", "after-relist"),
        ("ADDED", "new"),
        ("DELETED", "deleted"),
        ("MODIFIED", "changed"),
    ]
    assert recorder.of("same") == ["ADDED"]  # unchanged: not delivered again
    # The synthesized deletion says the object was gone at the re-list's version.
    (deleted_at,) = [rv for kind, name, rv in recorder.events if kind == "DELETED"]
    assert int(deleted_at) > int(stopped_at)


async def test_an_expired_continue_token_restarts_the_list(
    compacting_plane: ControlPlane, compacting_kube: KubeClient, tmp_path: Path
) -> None:
    kube = compacting_kube
    namespace = await create_namespace(kube)
    for name in ("a-deleted", "b-changed", "c-same"):
        await kube.create(SECRETS.path(namespace), secret(name))

    async with proxied_client(compacting_plane, tmp_path) as (proxy, slow_kube):
        recorder = Recorder()
        stalled = False

        def handler(event: WatchEvent) -> None:
            nonlocal stalled
            recorder(event)
            if not stalled:  # the network stalls right after the first page
                stalled = True
                proxy.freeze()

        watcher = Watcher(
            slow_kube, SECRETS, handler, namespace=namespace, label_selector=LABEL, page_size=1
        )
        task = asyncio.create_task(watcher.run())
        try:
            await until(lambda: proxy.frozen, timeout=20, what="the first page")
            assert recorder.of("a-deleted") == ["ADDED"]
            await kube.delete(SECRETS.path(namespace, "a-deleted"))
            await kube.merge_patch(
                SECRETS.path(namespace, "b-changed"), {"stringData": {"value": "2"}}
            )
            current = (await kube.get(SECRETS.path(namespace), limit=1))["metadata"]
            await wait_compacted(kube, namespace, current["resourceVersion"])
            proxy.thaw()
            await until(watcher.synced.is_set, timeout=30, what="the list to complete")
            assert not task.done()
        finally:
            task.cancel()
            await asyncio.wait([task])

    assert watcher.restart_reasons.get(RESTART_GONE, 0) >= 1
    assert recorder.of("a-deleted") == ["ADDED", "DELETED"]
    assert recorder.of("b-changed") == ["ADDED"]  # first seen in the new list, changed
    assert recorder.of("c-same") == ["ADDED"]
    (b_version,) = [rv for kind, name, rv in recorder.events if name == "b-changed"]
    live = await kube.get(SECRETS.path(namespace, "b-changed"))
    assert b_version == live["metadata"]["resourceVersion"]


async def test_a_frozen_connection_restarts_within_the_read_timeout(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    read_timeout = 2.0
    async with proxied_client(control_plane, tmp_path) as (proxy, proxied):
        recorder = Recorder()
        restarts: list[str] = []
        watcher = Watcher(
            proxied,
            SECRETS,
            recorder,
            namespace=namespace,
            label_selector=LABEL,
            read_timeout=read_timeout,
            on_restart=restarts.append,
        )
        async with running(watcher):
            proxy.freeze()
            loop = asyncio.get_running_loop()
            frozen_at = loop.time()
            await until(
                lambda: RESTART_TIMEOUT in restarts,
                timeout=read_timeout + 10,
                what="a read-timeout restart",
            )
            assert loop.time() - frozen_at < read_timeout + 10
            await kube.create(SECRETS.path(namespace), secret("during-the-outage"))
            proxy.thaw()
            await until(
                lambda: recorder.saw("ADDED", "during-the-outage"),
                timeout=20,
                what="the event after thaw",
            )
            await kube.create(SECRETS.path(namespace), secret("after-the-outage"))
            await until(
                lambda: recorder.saw("ADDED", "after-the-outage"), timeout=20, what="a later event"
            )
        assert watcher.restart_reasons[RESTART_TIMEOUT] >= 1
        assert RESTART_GONE not in restarts  # resumed, not re-listed


async def test_a_cut_connection_restarts_and_resumes(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    async with proxied_client(control_plane, tmp_path) as (proxy, proxied):
        recorder = Recorder()
        watcher = Watcher(
            proxied, SECRETS, recorder, namespace=namespace, label_selector=LABEL, read_timeout=30
        )
        async with running(watcher):
            await until(lambda: proxy.open_connections > 0, timeout=10, what="a connection")
            await proxy.cut()
            await until(lambda: watcher.restarts > 0, timeout=10, what="a restart")
            await kube.create(SECRETS.path(namespace), secret("after-the-cut"))
            await until(
                lambda: recorder.saw("ADDED", "after-the-cut"),
                timeout=20,
                what="the event after the cut",
            )
        assert watcher.restart_reasons.get(RESTART_ERROR, 0) >= 1


async def test_a_failing_handler_does_not_kill_the_watch(kube: KubeClient, namespace: str) -> None:
    recorder = Recorder(fail_on="poison")
    watcher = Watcher(kube, SECRETS, recorder, namespace=namespace, label_selector=LABEL)
    await kube.create(SECRETS.path(namespace), secret("poison"))
    async with running(watcher):
        await kube.create(SECRETS.path(namespace), secret("healthy"))
        await kube.merge_patch(SECRETS.path(namespace, "poison"), {"stringData": {"value": "2"}})
        await until(lambda: recorder.saw("ADDED", "healthy"), timeout=10, what="later events")
        await until(lambda: watcher.handler_errors >= 2, timeout=10, what="the second failure")
    assert watcher.restarts == 0
    assert recorder.of("poison") == []


async def test_a_watch_the_server_ends_is_resumed_without_a_relist(
    kube: KubeClient, namespace: str
) -> None:
    recorder = Recorder()
    watcher = Watcher(
        kube, SECRETS, recorder, namespace=namespace, label_selector=LABEL, server_timeout=1
    )
    async with running(watcher):
        await until(
            lambda: watcher.restart_reasons.get(RESTART_CLOSED, 0) >= 2,
            timeout=15,
            what="two server-side watch ends",
        )
        await kube.create(SECRETS.path(namespace), secret("later"))
        await until(lambda: recorder.saw("ADDED", "later"), timeout=10, what="the event")
    assert watcher.lists == 1
    assert set(watcher.restart_reasons) == {RESTART_CLOSED}
