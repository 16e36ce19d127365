"""Lease-based leader election against a real API server, with short timings.

Timings: lease 2 s, renew deadline 1.5 s, retry period 0.3 s. The bounds asserted
below follow from those: a graceful release hands over within one (jittered) retry
period; a crash or a steal hands over no sooner than one lease duration after the
last change a standby saw.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from certauto_core.kube.client import JSON, KubeClient
from certauto_core.kube.errors import ForbiddenError
from certauto_core.kube.resources import LEASES
from certauto_core.leader import (
    LEASE_VERBS,
    LeaderConfig,
    LeaderElector,
    NotLeaderError,
    micro_time,
)
from certauto_core.observability.metrics import Metrics
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.kube import Identities

LEASE = 2.0
RENEW_DEADLINE = 1.5
RETRY = 0.3
MARGIN = 0.7
"""Slack for request latency and scheduling on a busy machine."""
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def config(namespace: str, identity: str, **overrides: Any) -> LeaderConfig:
    settings: dict[str, Any] = {
        "lease_duration": LEASE,
        "renew_deadline": RENEW_DEADLINE,
        "retry_period": RETRY,
        **overrides,
    }
    return LeaderConfig(namespace=namespace, identity=identity, **settings)


@dataclass
class Replica:
    """One elector and what its callbacks saw, with monotonic timestamps."""

    elector: LeaderElector = field(init=False)
    started: list[float] = field(default_factory=list)
    stopped: list[float] = field(default_factory=list)
    fencing_when_stopped: list[bool] = field(default_factory=list)
    work_cancelled: list[float] = field(default_factory=list)
    stopped_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def work(self) -> None:
        """The leader's work loop: runs while leading, cancelled when leading ends."""
        self.started.append(time.monotonic())
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.work_cancelled.append(time.monotonic())
            raise

    async def on_stopped(self) -> None:
        self.stopped.append(time.monotonic())
        self.fencing_when_stopped.append(self.elector.fencing())
        self.stopped_event.set()


def replica(kube: KubeClient, cfg: LeaderConfig, metrics: Metrics | None = None) -> Replica:
    made = Replica()
    made.elector = LeaderElector(
        kube,
        cfg,
        on_started_leading=made.work,
        on_stopped_leading=made.on_stopped,
        metrics=metrics,
    )
    return made


@asynccontextmanager
async def running(elector: LeaderElector) -> AsyncIterator[asyncio.Task[None]]:
    """Run the elector in a task owned by the test; cancel and await it at the end."""
    task = asyncio.create_task(elector.run(), name=f"elector-{elector.config.identity}")
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.wait({task})
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


async def stop(task: asyncio.Task[None]) -> float:
    """Cancel an elector's task, wait for it, and return when the cancel was sent."""
    cancelled_at = time.monotonic()
    task.cancel()
    await asyncio.wait({task})
    return cancelled_at


async def within(seconds: float, awaitable: Awaitable[Any]) -> float:
    """Await it within ``seconds`` and return the monotonic time it completed."""
    await asyncio.wait_for(awaitable, seconds)
    return time.monotonic()


async def until(predicate: Callable[[], bool], seconds: float) -> float:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {seconds}s")
        await asyncio.sleep(0.01)
    return time.monotonic()


@pytest_asyncio.fixture(loop_scope="session")
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    """An admin client for the electors and for inspecting (or stealing) the Lease."""
    made = await KubeClient.connect(kubeconfig=str(control_plane.kubeconfig_path))
    try:
        yield made
    finally:
        await made.aclose()


async def read_lease(kube: KubeClient, namespace: str, name: str = "certauto-leader") -> JSON:
    return await kube.get(LEASES.path(namespace, name))


# ---------------------------------------------------------------------- configuration
def test_config_refuses_unsafe_timings() -> None:
    with pytest.raises(ValueError, match="lease_duration must be greater"):
        LeaderConfig(namespace="n", identity="a", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="renew_deadline must be greater"):
        LeaderConfig(namespace="n", identity="a", renew_deadline=2.0, retry_period=2.0)
    with pytest.raises(ValueError, match="identity"):
        LeaderConfig(namespace="n", identity="")
    rounded = LeaderConfig(
        namespace="n", identity="a", lease_duration=1.5, renew_deadline=1.0, retry_period=0.2
    )
    assert rounded.lease_duration_seconds == 2


def test_micro_time_format() -> None:
    assert MICRO_TIME.match(micro_time())


# ---------------------------------------------------------------------- election
async def test_one_of_two_leads_and_renews(kube: KubeClient, namespace: str) -> None:
    metrics_a, metrics_b = Metrics(), Metrics()
    a = replica(kube, config(namespace, "replica-a"), metrics_a)
    b = replica(kube, config(namespace, "replica-b"), metrics_b)
    async with running(a.elector), running(b.elector):
        await within(5, _first_set(a.elector.leading, b.elector.leading))
        leader, standby = (a, b) if a.elector.is_leader else (b, a)
        first = await read_lease(kube, namespace)
        await asyncio.sleep(4 * RETRY)
        later = await read_lease(kube, namespace)

        assert leader.elector.is_leader
        assert leader.elector.fencing()
        assert not standby.elector.is_leader
        assert not standby.elector.fencing()
        assert standby.elector.standby.is_set()
        with pytest.raises(NotLeaderError):
            standby.elector.ensure_leading()
        leader.elector.ensure_leading()
        assert len(leader.started) == 1
        assert standby.started == []
        assert standby.elector.leader_identity == leader.elector.config.identity
        leader_metrics, standby_metrics = (
            (metrics_a, metrics_b) if leader is a else (metrics_b, metrics_a)
        )
        assert b"certauto_leader 1.0" in leader_metrics.render()[0]
        assert b"certauto_leader 0.0" in standby_metrics.render()[0]

    spec = later["spec"]
    assert spec["holderIdentity"] == leader.elector.config.identity
    assert spec["leaseDurationSeconds"] == 2
    assert spec["leaseTransitions"] == 0
    assert MICRO_TIME.match(spec["acquireTime"])
    assert MICRO_TIME.match(spec["renewTime"])
    assert spec["acquireTime"] == first["spec"]["acquireTime"]
    assert spec["renewTime"] > first["spec"]["renewTime"], "the leader renews"


async def test_graceful_release_hands_over_within_a_retry_period(
    kube: KubeClient, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="certauto.leader")
    a = replica(kube, config(namespace, "replica-a"))
    b = replica(kube, config(namespace, "replica-b"))
    async with running(a.elector) as task_a:
        await within(5, a.elector.leading.wait())
        async with running(b.elector):
            await asyncio.sleep(2 * RETRY)  # b has seen a's Lease
            assert not b.elector.is_leader

            cancelled_at = await stop(task_a)
            b_leads_at = await within(LEASE, b.elector.leading.wait())

            assert b_leads_at - cancelled_at < RETRY * 1.2 + MARGIN, "no wait for expiry"
            assert not a.elector.is_leader
            assert not a.elector.fencing()
            assert a.fencing_when_stopped == [False]
            assert a.work_cancelled, "the leader's work was cancelled when it stepped down"
            assert a.work_cancelled[0] <= a.stopped[0] <= b.started[0]
            lease = await read_lease(kube, namespace)

    assert lease["spec"]["holderIdentity"] == "replica-b"
    assert lease["spec"]["leaseTransitions"] == 1
    transitions = [
        (record.getMessage(), getattr(record, "identity", None))
        for record in caplog.records
        if record.name == "certauto.leader"
    ]
    assert ("became the leader", "replica-a") in transitions
    assert ("released the Lease", "replica-a") in transitions
    assert ("became the leader", "replica-b") in transitions


async def test_a_crashed_leader_is_replaced_once_its_lease_expires(
    kube: KubeClient, namespace: str
) -> None:
    a = replica(kube, config(namespace, "replica-a", release_on_cancel=False))
    b = replica(kube, config(namespace, "replica-b"))
    async with running(a.elector) as task_a:
        await within(5, a.elector.leading.wait())
        async with running(b.elector):
            await asyncio.sleep(2 * RETRY)

            killed_at = await stop(task_a)  # no release: as if the process died
            assert (await read_lease(kube, namespace))["spec"]["holderIdentity"] == "replica-a"
            b_leads_at = await within(LEASE + RETRY * 1.2 + MARGIN, b.elector.leading.wait())

            # b waits a whole lease duration after the last renewal it saw (at most
            # one retry period before the kill), never less.
            assert b_leads_at - killed_at >= LEASE - RETRY - 0.05
            lease = await read_lease(kube, namespace)

    assert a.stopped, "on_stopped_leading fires even without a release"
    assert lease["spec"]["holderIdentity"] == "replica-b"
    assert lease["spec"]["leaseTransitions"] == 1


@pytest.mark.parametrize(
    "renew_time",
    ["2001-01-01T00:00:00.000000Z", "2999-01-01T00:00:00.000000Z"],
    ids=["remote-clock-behind", "remote-clock-ahead"],
)
async def test_expiry_is_judged_by_observed_time_not_remote_timestamps(
    kube: KubeClient, namespace: str, renew_time: str
) -> None:
    """A Lease whose renewTime is far off (clock skew, or a long-dead holder) is taken
    exactly one lease duration after this replica first saw it unchanged."""
    await kube.create(
        LEASES.path(namespace),
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "certauto-leader"},
            "spec": {
                "holderIdentity": "ghost",
                "leaseDurationSeconds": 2,
                "acquireTime": renew_time,
                "renewTime": renew_time,
                "leaseTransitions": 4,
            },
        },
    )
    a = replica(kube, config(namespace, "replica-a"))
    started_at = time.monotonic()
    async with running(a.elector):
        leads_at = await within(LEASE + RETRY * 1.2 + MARGIN, a.elector.leading.wait())
        lease = await read_lease(kube, namespace)

    assert leads_at - started_at >= LEASE - 0.05
    assert lease["spec"]["leaseTransitions"] == 5


async def test_a_stolen_lease_stops_the_leader_at_its_next_renewal(
    kube: KubeClient, namespace: str
) -> None:
    a = replica(kube, config(namespace, "replica-a"))
    b = replica(kube, config(namespace, "replica-b"))
    async with running(a.elector):
        await within(5, a.elector.leading.wait())
        async with running(b.elector):
            await asyncio.sleep(2 * RETRY)

            stolen_at = await _steal(kube, namespace, "intruder")
            await within(RETRY + MARGIN, a.stopped_event.wait())

            assert a.fencing_when_stopped == [False], "no write allowed once the renew failed"
            assert not a.elector.fencing()
            # The intruder never renews; a standby takes over once its lease expires.
            new_leader_at = await within(
                LEASE + RETRY * 1.2 + MARGIN,
                _first_set(a.elector.leading, b.elector.leading),
            )
            assert new_leader_at - stolen_at >= LEASE - 0.05
            lease = await read_lease(kube, namespace)

    assert lease["spec"]["holderIdentity"] in ("replica-a", "replica-b")
    assert lease["spec"]["leaseTransitions"] == 2  # a -> intruder -> a standby


async def test_fencing_follows_the_clock_even_when_renewals_cannot_run(
    kube: KubeClient, namespace: str
) -> None:
    """A starved loop cannot renew; fencing must not wait for the renewal loop to say so."""
    a = replica(kube, config(namespace, "replica-a"))
    async with running(a.elector):
        await within(5, a.elector.leading.wait())
        await asyncio.sleep(RETRY)
        assert a.elector.fencing()

        _spin(RENEW_DEADLINE + 0.1)  # no await: the renewal loop gets no chance to run

        assert a.elector.is_leader, "the renewal loop has not noticed yet"
        assert not a.elector.fencing(), "but no write is allowed any more"
        with pytest.raises(NotLeaderError):
            a.elector.ensure_leading()


async def test_a_failing_leader_task_ends_run_and_releases(
    kube: KubeClient, namespace: str
) -> None:
    async def crashes() -> None:
        await asyncio.sleep(RETRY)
        raise RuntimeError("leader work crashed")

    stopped: list[bool] = []
    elector = LeaderElector(
        kube,
        config(namespace, "replica-a"),
        on_started_leading=crashes,
        on_stopped_leading=lambda: stopped.append(True),
    )
    with pytest.raises(RuntimeError, match="leader work crashed"):
        await asyncio.wait_for(elector.run(), 5)

    assert stopped == [True]
    assert not elector.is_leader
    assert (await read_lease(kube, namespace))["spec"]["holderIdentity"] == ""


# ---------------------------------------------------------------------- RBAC
async def test_the_documented_verbs_are_enough(
    kube_api: client.ApiClient, kube_identities: Identities, namespace: str, kube: KubeClient
) -> None:
    """A ServiceAccount with only get/create/update on leases (get/update narrowed to
    the Lease's name) can acquire, renew and release."""
    restricted = await _restricted_client(kube_api, kube_identities, namespace, "elector")
    a = replica(restricted, config(namespace, "replica-a"))
    async with running(a.elector) as task:
        await within(5, a.elector.leading.wait())
        await asyncio.sleep(3 * RETRY)
        assert a.elector.fencing(), "renewals succeed"
        await stop(task)

    assert a.stopped
    lease = await read_lease(kube, namespace)
    assert lease["spec"]["holderIdentity"] == "", "released with nothing but update"
    with pytest.raises(ForbiddenError):
        await restricted.get(LEASES.path(namespace, "some-other-lease"))


async def test_a_leader_that_cannot_renew_stops_before_anyone_takes_over(
    kube_api: client.ApiClient, kube_identities: Identities, namespace: str, kube: KubeClient
) -> None:
    restricted = await _restricted_client(kube_api, kube_identities, namespace, "elector")
    a = replica(restricted, config(namespace, "replica-a"))
    b = replica(kube, config(namespace, "replica-b"))
    async with running(a.elector):
        await within(5, a.elector.leading.wait())
        async with running(b.elector):
            await asyncio.sleep(2 * RETRY)

            revoked_at = time.monotonic()
            await client.RbacAuthorizationV1Api(kube_api).delete_namespaced_role_binding(
                "elector", namespace
            )
            unfenced_at = await until(lambda: not a.elector.fencing(), RENEW_DEADLINE + MARGIN)
            await within(RETRY + MARGIN, a.stopped_event.wait())
            b_leads_at = await within(LEASE + MARGIN, b.elector.leading.wait())

    assert unfenced_at - revoked_at <= RENEW_DEADLINE + 0.3
    assert a.fencing_when_stopped == [False]
    # No split brain: a stopped writing well before b could take over.
    assert b_leads_at - unfenced_at >= LEASE - RENEW_DEADLINE - 0.1
    assert a.stopped[0] < b.started[0]


# ---------------------------------------------------------------------- helpers
def _spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


async def _first_set(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def _steal(kube: KubeClient, namespace: str, holder: str) -> float:
    """Write the Lease as a third party would: a new holder, not expiring soon."""
    lease = await read_lease(kube, namespace)
    spec = lease["spec"]
    now = micro_time()
    lease["spec"] = {
        **spec,
        "holderIdentity": holder,
        "acquireTime": now,
        "renewTime": now,
        "leaseTransitions": spec["leaseTransitions"] + 1,
    }
    await kube.replace(LEASES.path(namespace, lease["metadata"]["name"]), lease)
    return time.monotonic()


async def _restricted_client(
    kube_api: client.ApiClient, identities: Identities, namespace: str, name: str
) -> KubeClient:
    """A client for ServiceAccount ``name`` bound to the documented least-privilege Role."""
    rbac = client.RbacAuthorizationV1Api(kube_api)
    assert set(LEASE_VERBS) == {"get", "create", "update"}
    await rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": name},
            "rules": [
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "resourceNames": ["certauto-leader"],
                    "verbs": ["get", "update"],
                },
            ],
        },
    )
    await rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    )
    # The identities fixture owns (and closes) the underlying API client.
    return KubeClient(await identities.service_account(namespace, name))
