"""The metrics set: names, isolation between instances, no stale per-binding series."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from certauto_core.observability.metrics import SYNC_RESULTS, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the text exposition, by name and label set."""
    body, _ = metrics.render()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def series_names(metrics: Metrics) -> set[str]:
    return {name for name, _ in samples(metrics)}


@dataclass
class CountingClient:
    """Stands in for KubeClient's two counters (the metrics only read those)."""

    requests: int = 0
    writes: int = 0


def test_the_documented_metric_names_are_exposed() -> None:
    metrics = Metrics()
    metrics.sync_total.labels(type="aws-acm", result="synced").inc()
    metrics.sync_duration_seconds.labels(type="aws-acm").observe(0.3)
    metrics.validation_failures_total.labels(reason="Expired").inc()
    metrics.certificate_expiry_timestamp_seconds.labels(namespace="apps", binding="web").set(1)
    metrics.destination_expiry_timestamp_seconds.labels(
        namespace="apps", binding="web", destination="acm"
    ).set(1)
    metrics.reconcile_total.labels(result="ok").inc()
    metrics.watch_restarts_total.labels(resource="secrets", reason="expired").inc()

    names = series_names(metrics)

    assert {
        "certauto_sync_total",
        "certauto_sync_duration_seconds_bucket",
        "certauto_sync_duration_seconds_count",
        "certauto_validation_failures_total",
        "certauto_certificate_expiry_timestamp_seconds",
        "certauto_destination_expiry_timestamp_seconds",
        "certauto_queue_depth",
        "certauto_reconcile_total",
        "certauto_reconcile_errors_total",
        "certauto_reconcile_duration_seconds_count",
        "certauto_watch_restarts_total",
        "certauto_events_dropped_total",
        "certauto_leader",
    } <= names
    assert value(metrics, "certauto_sync_total", type="aws-acm", result="synced") == 1


def test_two_instances_do_not_share_series() -> None:
    first, second = Metrics(), Metrics()

    first.sync_total.labels(type="reflector", result="synced").inc(3)
    first.leader.set(1)

    assert value(first, "certauto_sync_total", type="reflector", result="synced") == 3
    assert value(second, "certauto_sync_total", type="reflector", result="synced") is None
    assert value(second, "certauto_leader") == 0


def test_forget_binding_removes_only_that_bindings_series() -> None:
    metrics = Metrics()
    for binding in ("web", "api"):
        metrics.certificate_expiry_timestamp_seconds.labels(namespace="apps", binding=binding).set(
            1_800_000_000
        )
        for destination in ("kv", "acm"):
            metrics.destination_expiry_timestamp_seconds.labels(
                namespace="apps", binding=binding, destination=destination
            ).set(1_800_000_000)
    # Same binding name in another namespace: a different binding.
    metrics.certificate_expiry_timestamp_seconds.labels(namespace="other", binding="web").set(1)

    metrics.forget_binding("apps", "web")

    left = {
        (labels["namespace"], labels["binding"])
        for labels in (dict(label_set) for _, label_set in samples(metrics))
        if "binding" in labels
    }
    assert left == {("apps", "api"), ("other", "web")}
    assert (
        value(
            metrics,
            "certauto_destination_expiry_timestamp_seconds",
            namespace="apps",
            binding="api",
            destination="kv",
        )
        == 1_800_000_000
    )


def test_forget_destination_removes_one_destination() -> None:
    metrics = Metrics()
    for destination in ("kv", "acm"):
        metrics.destination_expiry_timestamp_seconds.labels(
            namespace="apps", binding="web", destination=destination
        ).set(5)

    metrics.forget_destination("apps", "web", "kv")

    name = "certauto_destination_expiry_timestamp_seconds"
    assert value(metrics, name, namespace="apps", binding="web", destination="kv") is None
    assert value(metrics, name, namespace="apps", binding="web", destination="acm") == 5


def test_forgetting_an_unknown_binding_is_harmless() -> None:
    metrics = Metrics()
    metrics.forget_binding("apps", "never-seen")
    metrics.forget_destination("apps", "never-seen", "kv")


def test_api_request_counters_are_read_at_scrape_time() -> None:
    client = CountingClient()
    metrics = Metrics(kube=client)
    assert value(metrics, "certauto_api_requests_total") == 0

    client.requests, client.writes = 7, 2

    assert value(metrics, "certauto_api_requests_total") == 7
    assert value(metrics, "certauto_api_writes_total") == 2


def test_api_counters_absent_until_a_client_is_tracked() -> None:
    metrics = Metrics()
    assert "certauto_api_requests_total" not in series_names(metrics)

    metrics.track_api_client(CountingClient(requests=4, writes=1))

    assert value(metrics, "certauto_api_requests_total") == 4


def test_render_negotiates_openmetrics() -> None:
    metrics = Metrics()

    text_body, text_type = metrics.render()
    open_body, open_type = metrics.render("application/openmetrics-text; version=1.0.0")

    assert text_type.startswith("text/plain")
    assert open_type.startswith("application/openmetrics-text")
    assert open_body.endswith(b"# EOF\n")
    assert b"# EOF" not in text_body


@pytest.mark.parametrize("result", sorted(SYNC_RESULTS))
def test_every_sync_result_is_a_valid_label(result: str) -> None:
    metrics = Metrics()
    metrics.sync_total.labels(type="reflector", result=result).inc()
    assert value(metrics, "certauto_sync_total", type="reflector", result=result) == 1
