"""CertAuto's Prometheus metrics, each set in its own registry.

Every :class:`Metrics` instance owns a ``CollectorRegistry``: nothing is registered in
prometheus-client's global ``REGISTRY``, so tests, benchmarks or two operators in one
process never collide on a metric name. The HTTP server renders one instance with
:meth:`Metrics.render`.

Labels carry names only (namespace, binding, destination, plugin type, reasons):
never key material, fingerprints or secret data. Per-binding series are removed with
:meth:`Metrics.forget_binding` when the binding goes, so a deleted binding leaves no
stale expiry series behind for alerts to fire on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["SYNC_RESULTS", "Metrics", "RequestCounting", "SyncResult"]

PREFIX: Final = "certauto"

SyncResult = Literal["synced", "unchanged", "retrying", "failed", "conflict", "removed"]
SYNC_RESULTS: Final[frozenset[str]] = frozenset(
    {"synced", "unchanged", "retrying", "failed", "conflict", "removed"}
)
"""The values of ``certauto_sync_total``'s ``result`` label."""

# Destination syncs are cloud calls: Key Vault and ACM answer in 0.1-2 s and throttle
# into tens of seconds, so the buckets reach further than prometheus-client's default.
SYNC_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
RECONCILE_BUCKETS: Final = SYNC_BUCKETS

_BINDING_LABELS: Final = ("namespace", "binding")
_DESTINATION_LABELS: Final = ("namespace", "binding", "destination")


class RequestCounting(Protocol):
    """What :class:`~certauto_core.kube.client.KubeClient` offers: two running counters."""

    @property
    def requests(self) -> int: ...

    @property
    def writes(self) -> int: ...


class _ApiRequestCollector(Collector):
    """``certauto_api_requests_total`` and ``certauto_api_writes_total``, read at scrape.

    The client counts its own requests (for tests and benchmarks); reading those
    counters at scrape time costs nothing on the request path and cannot drift.
    """

    def __init__(self) -> None:
        self.source: RequestCounting | None = None

    def describe(self) -> Iterable[Metric]:
        return self._families(0, 0)

    def collect(self) -> Iterable[Metric]:
        if self.source is None:
            return []
        return self._families(self.source.requests, self.source.writes)

    @staticmethod
    def _families(requests: int, writes: int) -> list[Metric]:
        return [
            CounterMetricFamily(
                f"{PREFIX}_api_requests",
                "Requests sent to the Kubernetes API server.",
                value=requests,
            ),
            CounterMetricFamily(
                f"{PREFIX}_api_writes",
                "Writes (POST, PUT, PATCH, DELETE) sent to the Kubernetes API server.",
                value=writes,
            ),
        ]


class Metrics:
    """The operator's metrics, registered in :attr:`registry` (one per instance).

    The attributes are prometheus-client metrics; callers use them directly, e.g.
    ``metrics.sync_total.labels(type="aws-acm", result="synced").inc()``.
    """

    def __init__(self, *, kube: RequestCounting | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry

        # Destinations.
        self.sync_total = Counter(
            "sync_total",
            "Destination syncs, by plugin type and result "
            "(synced, unchanged, retrying, failed, conflict, removed).",
            ["type", "result"],
            namespace=PREFIX,
            registry=registry,
        )
        self.sync_duration_seconds = Histogram(
            "sync_duration_seconds",
            "Time to bring one destination up to date, by plugin type.",
            ["type"],
            namespace=PREFIX,
            buckets=SYNC_BUCKETS,
            registry=registry,
        )
        self.validation_failures_total = Counter(
            "validation_failures_total",
            "Certificates refused before any destination was touched, by reason.",
            ["reason"],
            namespace=PREFIX,
            registry=registry,
        )
        self.certificate_expiry_timestamp_seconds = Gauge(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the certificate a binding's source holds, as a Unix timestamp.",
            _BINDING_LABELS,
            namespace=PREFIX,
            registry=registry,
        )
        self.destination_expiry_timestamp_seconds = Gauge(
            "destination_expiry_timestamp_seconds",
            "notAfter of the certificate a destination holds now, as a Unix timestamp.",
            _DESTINATION_LABELS,
            namespace=PREFIX,
            registry=registry,
        )

        # The controller.
        self.queue_depth = Gauge(
            "queue_depth",
            "Binding keys waiting in the work queue.",
            namespace=PREFIX,
            registry=registry,
        )
        self.reconcile_total = Counter(
            "reconcile_total",
            "Reconciles of a binding, by result.",
            ["result"],
            namespace=PREFIX,
            registry=registry,
        )
        self.reconcile_errors_total = Counter(
            "reconcile_errors_total",
            "Reconciles that ended in an error and were queued again.",
            namespace=PREFIX,
            registry=registry,
        )
        self.reconcile_duration_seconds = Histogram(
            "reconcile_duration_seconds",
            "Time to reconcile one binding, all its destinations included.",
            namespace=PREFIX,
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.watch_restarts_total = Counter(
            "watch_restarts_total",
            "Watches restarted, by resource and reason (expired, error, timeout, ...).",
            ["resource", "reason"],
            namespace=PREFIX,
            registry=registry,
        )
        self.events_dropped_total = Counter(
            "events_dropped_total",
            "Kubernetes Events that could not be recorded (rate-limited or rejected).",
            namespace=PREFIX,
            registry=registry,
        )
        self.leader = Gauge(
            "leader",
            "1 while this replica holds the leader Lease and may write, else 0.",
            namespace=PREFIX,
            registry=registry,
        )

        # The API client's own counters, read at scrape time.
        self._api_requests = _ApiRequestCollector()
        registry.register(self._api_requests)
        if kube is not None:
            self.track_api_client(kube)

    def track_api_client(self, kube: RequestCounting) -> None:
        """Export ``kube``'s request counters as ``certauto_api_requests_total`` and
        ``certauto_api_writes_total`` (replacing any client tracked before)."""
        self._api_requests.source = kube

    def forget_binding(self, namespace: str, binding: str) -> None:
        """Remove every series labelled with this binding (call when it is deleted)."""
        wanted = {"namespace": namespace, "binding": binding}
        _remove_matching(self.certificate_expiry_timestamp_seconds, _BINDING_LABELS, wanted)
        _remove_matching(self.destination_expiry_timestamp_seconds, _DESTINATION_LABELS, wanted)

    def forget_destination(self, namespace: str, binding: str, destination: str) -> None:
        """Remove the series of one destination (dropped from the binding's spec)."""
        wanted = {"namespace": namespace, "binding": binding, "destination": destination}
        _remove_matching(self.destination_expiry_timestamp_seconds, _DESTINATION_LABELS, wanted)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition body and its content type.

        ``accept`` is the scraper's ``Accept`` header: OpenMetrics when it asks for
        it, else the classic text format.
        """
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _remove_matching(gauge: Gauge, label_names: tuple[str, ...], wanted: dict[str, str]) -> None:
    """Remove the children of ``gauge`` whose labels include all of ``wanted``.

    Works from the public ``collect()`` view, so it needs no private state of
    prometheus-client (``remove_by_labels`` only exists in recent versions).
    """
    matching = [
        labels
        for family in list(gauge.collect())
        for labels in (dict(sample.labels) for sample in family.samples)
        if all(labels.get(key) == value for key, value in wanted.items())
    ]
    for labels in matching:
        gauge.remove(*(labels[name] for name in label_names))
