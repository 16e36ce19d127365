"""The operator process: watches feed indexes and the queue; workers reconcile.

Watches run on every replica, so a standby's caches stay warm; workers (the
only part that writes) run only on the replica that holds the Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from certauto_core.engine.indexes import (
    BINDING_ANNOTATION,
    COPY_LABEL_VALUE,
    SOURCE_LABEL_VALUE,
    WATCHED_LABEL,
    BindingStore,
    WatchedNamespaces,
    WatchedSecrets,
)
from certauto_core.engine.managed import MANAGED_BY_SELECTOR, owner_binding
from certauto_core.engine.reconciler import BindingKey, Reconciler
from certauto_core.engine.workqueue import WorkQueue, run_workers
from certauto_core.kube.client import KubeClient
from certauto_core.kube.errors import ApiError
from certauto_core.kube.events import EventRecorder
from certauto_core.kube.resources import (
    CERTIFICATE_BINDINGS,
    CERTIFICATES,
    NAMESPACES,
    SECRETS,
    Resource,
)
from certauto_core.kube.watch import Watcher, WatchEvent
from certauto_core.leader import LeaderConfig, LeaderElector
from certauto_core.observability.metrics import Metrics
from certauto_core.observability.server import FailureWindow, HealthChecks, HealthServer
from certauto_core.plugins.contract import PluginContext
from certauto_core.plugins.manager import PluginManager

log = logging.getLogger("certauto.operator")


@dataclass(frozen=True)
class OperatorConfig:
    """What ``certauto run`` takes."""

    kubeconfig: str | None = None
    context: str | None = None
    namespaces: tuple[str, ...] = ()
    """Namespaces whose CertificateBindings to reconcile; empty means all."""
    workers: int = 8
    metrics_host: str = "0.0.0.0"  # noqa: S104 - a pod serves its probes on all interfaces
    metrics_port: int = 8080
    resync_interval: timedelta = timedelta(minutes=10)
    leader_election: bool = True
    lease_namespace: str | None = None
    lease_name: str = "certauto-leader"
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    watch_read_timeout: float = 60.0


class Operator:
    """Owns every task of the process; ``run`` returns only when cancelled."""

    def __init__(self, config: OperatorConfig, *, plugins: PluginManager | None = None) -> None:
        self.config = config
        self.plugins = plugins
        self.metrics = Metrics()
        self.bindings = BindingStore()
        self.secrets = WatchedSecrets()
        self.namespaces = WatchedNamespaces()
        self.queue: WorkQueue[BindingKey] = WorkQueue(name="bindings")
        self.watchers: list[Watcher] = []
        self.certificate_watchers: list[Watcher] = []
        """The managed Certificates' watches, once cert-manager's API is served."""
        self.ready = asyncio.Event()
        self.reconciler: Reconciler | None = None
        self.elector: LeaderElector | None = None
        self.kube: KubeClient | None = None
        self.health: HealthServer | None = None
        self.watch_failures = FailureWindow(tolerance=600.0)
        """Liveness fails when a watch keeps failing for ten minutes: restart the pod."""

    # ------------------------------------------------------------------ event routing
    def _on_binding(self, event: WatchEvent) -> None:
        self.bindings.apply(event)
        meta = event.obj["metadata"]
        self.queue.add(BindingKey(meta["namespace"], meta["name"]))

    def _on_secret(self, event: WatchEvent) -> None:
        self.secrets.apply(event)
        meta = event.obj["metadata"]
        role = (meta.get("labels") or {}).get(WATCHED_LABEL)
        if role == SOURCE_LABEL_VALUE:
            for namespace, name in self.bindings.by_source_secret(meta["namespace"], meta["name"]):
                self.queue.add(BindingKey(namespace, name))
        elif role == COPY_LABEL_VALUE:
            owner = (meta.get("annotations") or {}).get(BINDING_ANNOTATION, "")
            namespace, _, name = owner.partition("/")
            if namespace and name and self._watches_namespace(namespace):
                self.queue.add(BindingKey(namespace, name))

    def _on_certificate(self, event: WatchEvent) -> None:
        """cert-manager reported on a Certificate we manage: reconcile its binding."""
        owner = owner_binding(event.obj)
        if owner is not None and self._watches_namespace(owner[0]):
            self.queue.add(BindingKey(*owner))

    def _on_namespace(self, event: WatchEvent) -> None:
        before = self.namespaces.labels(event.obj["metadata"]["name"])
        self.namespaces.apply(event)
        after = self.namespaces.labels(event.obj["metadata"]["name"])
        if before != after:
            # Selectors live in destination configs: any binding may care.
            self.resync_now()

    def _watches_namespace(self, namespace: str) -> bool:
        return not self.config.namespaces or namespace in self.config.namespaces

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        config = self.config
        self.kube = kube = await KubeClient.connect(
            kubeconfig=config.kubeconfig,
            context=config.context,
            pool_size=max(16, config.workers * 2),
        )
        plugins = self.plugins
        if plugins is None:
            plugins = PluginManager()
            plugins.load_entry_points()
        types = plugins.destination_types()  # duplicates fail here, loudly, at start
        log.info("destination types: %s", ", ".join(sorted(types)) or "none")
        self.metrics.track_api_client(kube)
        events = EventRecorder(kube, component="certauto", host=config.identity)
        context = PluginContext(
            kube=kube,
            secrets=self.secrets,
            namespaces=self.namespaces,
            logger=logging.getLogger("certauto.plugins"),
        )
        self.elector = (
            LeaderElector(
                kube,
                LeaderConfig(
                    namespace=config.lease_namespace or _own_namespace(),
                    name=config.lease_name,
                    identity=config.identity,
                    lease_duration=config.lease_duration,
                    renew_deadline=config.renew_deadline,
                    retry_period=config.retry_period,
                ),
                metrics=self.metrics,
            )
            if config.leader_election
            else None
        )
        elector = self.elector
        self.reconciler = reconciler = Reconciler(
            kube=kube,
            plugins=plugins,
            context=context,
            secrets=self.secrets,
            bindings=self.bindings,
            events=events,
            metrics=self.metrics,
            queue=self.queue,
            resync_interval=config.resync_interval,
            may_write=(elector.fencing if elector is not None else lambda: True),
        )
        self._make_watchers(kube)
        checks = HealthChecks()
        checks.add_readiness("caches", self._synced)
        checks.add_liveness("watches", self.watch_failures.check)
        self.health = HealthServer(
            self.metrics,
            host=config.metrics_host,
            port=config.metrics_port,
            checks=checks,
            is_leader=(lambda: elector.is_leader) if elector is not None else (lambda: True),
        )
        await self.health.start()
        await events.start()
        try:
            async with asyncio.TaskGroup() as group:
                for watcher in self.watchers:
                    group.create_task(watcher.run(), name=f"watch-{watcher.name}")
                group.create_task(self._await_synced(), name="synced")
                group.create_task(self._watch_certificates(kube), name="watch-certificates")
                group.create_task(self._queue_depth(), name="queue-depth")
                if elector is not None:
                    group.create_task(elector.run(), name="leader-election")
                group.create_task(self._lead(reconciler, elector), name="workers")
        finally:
            await self.queue.shutdown()
            await events.aclose()
            await reconciler.aclose()
            await self.health.aclose()
            await kube.aclose()

    def _make_watchers(self, kube: KubeClient) -> None:
        timeout = self.config.watch_read_timeout

        def restarted(name: str, resource: str) -> Callable[[str], None]:
            def count(reason: str) -> None:
                self.metrics.watch_restarts_total.labels(resource=resource, reason=reason).inc()
                if reason == "closed":  # the server ended a healthy watch on schedule
                    self.watch_failures.recovered(name)
                else:
                    self.watch_failures.failing(name)

            return count

        def healthy(
            name: str, handler: Callable[[WatchEvent], None]
        ) -> Callable[[WatchEvent], None]:
            def deliver(event: WatchEvent) -> None:
                self.watch_failures.recovered(name)
                handler(event)

            return deliver

        binding_namespaces: tuple[str | None, ...] = self.config.namespaces or (None,)
        for namespace in binding_namespaces:
            name = f"certificatebindings{'-' + namespace if namespace else ''}"
            self.watchers.append(
                Watcher(
                    kube,
                    CERTIFICATE_BINDINGS,
                    healthy(name, self._on_binding),
                    namespace=namespace,
                    read_timeout=timeout,
                    name=name,
                    on_restart=restarted(name, "certificatebindings"),
                )
            )
        self.watchers.append(
            Watcher(
                kube,
                SECRETS,
                healthy("secrets", self._on_secret),
                label_selector=WATCHED_LABEL,
                read_timeout=timeout,
                name="secrets",
                on_restart=restarted("secrets", "secrets"),
            )
        )
        self.watchers.append(
            Watcher(
                kube,
                NAMESPACES,
                healthy("namespaces", self._on_namespace),
                read_timeout=timeout,
                name="namespaces",
                on_restart=restarted("namespaces", "namespaces"),
            )
        )

    async def _watch_certificates(self, kube: KubeClient, probe_interval: float = 60.0) -> None:
        """Watch the Certificates CertAuto manages, once cert-manager's API is served.

        Managed mode is optional: a cluster without cert-manager must run the operator
        all the same. So this watch is not one of ``self.watchers``: the caches-synced
        gate does not wait for it and a missing API does not count as a failing watch
        (which would fail liveness and restart the pod forever). Instead the API is
        probed at start and then every ``probe_interval`` until it appears (cert-manager
        installed after CertAuto), logged once each way. Reconcile reads Certificates
        with a GET, so this watch is only a wake-up call; meanwhile managed bindings
        still progress on their retry interval.
        """
        announced = False
        while True:
            try:
                served = await _serves(kube, CERTIFICATES)
            except (ApiError, ValueError) as error:  # the API server is not answering well
                log.debug("probing for %s failed: %s", CERTIFICATES.api_version, error)
                await asyncio.sleep(min(5.0, probe_interval))
                continue
            if served:
                break
            if not announced:
                log.warning(
                    "cert-manager's %s Certificates are not served: managed bindings "
                    "(spec.certificate) wait for them; checking again every %.0fs",
                    CERTIFICATES.api_version,
                    probe_interval,
                )
                announced = True
            await asyncio.sleep(probe_interval)
        if announced:
            log.info(
                "cert-manager's %s is served now: watching Certificates", CERTIFICATES.api_version
            )

        def deliver(name: str) -> Callable[[WatchEvent], None]:
            def handle(event: WatchEvent) -> None:
                self.watch_failures.recovered(name)
                self._on_certificate(event)

            return handle

        def restarted(name: str) -> Callable[[str], None]:
            def count(reason: str) -> None:
                self.metrics.watch_restarts_total.labels(
                    resource="certificates", reason=reason
                ).inc()
                if reason == "closed":
                    self.watch_failures.recovered(name)
                else:
                    self.watch_failures.failing(name)

            return count

        # Like the bindings' watch: per namespace when the operator is namespace-scoped.
        for namespace in self.config.namespaces or (None,):
            name = f"certificates{'-' + namespace if namespace else ''}"
            self.certificate_watchers.append(
                Watcher(
                    kube,
                    CERTIFICATES,
                    deliver(name),
                    namespace=namespace,
                    label_selector=MANAGED_BY_SELECTOR,
                    read_timeout=self.config.watch_read_timeout,
                    name=name,
                    on_restart=restarted(name),
                )
            )
        await asyncio.gather(*(watcher.run() for watcher in self.certificate_watchers))

    async def _await_synced(self) -> None:
        await asyncio.gather(*(w.synced.wait() for w in self.watchers))
        self.ready.set()
        log.info(
            "caches synced: %d bindings, %d namespaces",
            len(self.bindings.keys()),
            len(self.namespaces.names()),
        )

    async def _lead(self, reconciler: Reconciler, elector: LeaderElector | None) -> None:
        """Run the workers while this replica leads; stop them the moment it does not."""
        await self.ready.wait()
        while True:
            if elector is not None:
                await elector.leading.wait()
            log.info("leading: starting %d workers", self.config.workers)
            self.resync_now()
            workers = asyncio.create_task(
                run_workers(self.queue, reconciler.reconcile, workers=self.config.workers)
            )
            resync = asyncio.create_task(self._resync())
            try:
                if elector is None:
                    await asyncio.gather(workers, resync)
                    return
                await elector.standby.wait()
                log.warning("lost leadership: stopping workers")
            finally:
                for task in (workers, resync):
                    task.cancel()
                for task in (workers, resync):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _resync(self) -> None:
        """A slow full resync: cheap by design (indexes, compare before write)."""
        while True:
            await asyncio.sleep(self.config.resync_interval.total_seconds())
            self.resync_now()

    async def _queue_depth(self) -> None:
        while True:
            self.metrics.queue_depth.set(self.queue.depth())
            await asyncio.sleep(1.0)

    def _synced(self) -> tuple[bool, str]:
        return self.ready.is_set(), "caches synced" if self.ready.is_set() else "listing"

    def resync_now(self) -> None:
        """Enqueue every binding (tests, benchmarks, a SIGHUP)."""
        keys = self.bindings.keys()
        for namespace, name in keys:
            self.queue.add(BindingKey(namespace, name))


async def _serves(kube: KubeClient, resource: Resource) -> bool:
    """Whether the API server's discovery lists ``resource``.

    ``/apis`` always answers JSON; a group it does not serve would get a plain-text 404.
    """
    groups = await kube.get("/apis")
    for group in groups.get("groups") or ():
        if group.get("name") == resource.group:
            if not any(v.get("version") == resource.version for v in group.get("versions") or ()):
                return False
            served = await kube.get(f"/apis/{resource.group}/{resource.version}")
            return any(r.get("name") == resource.plural for r in served.get("resources") or ())
    return False


def _own_namespace() -> str:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    with contextlib.suppress(OSError), open(path) as stream:
        return stream.read().strip()
    return os.environ.get("POD_NAMESPACE", "default")
