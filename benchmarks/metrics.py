"""Counting: the API server's ``apiserver_request_total`` and the operator's ``/metrics``."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from benchmarks.kube import Kube

WRITE_VERBS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)"
)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse_prometheus(text: str, names: Iterable[str] | None = None) -> list[Sample]:
    """The samples of a Prometheus text exposition (only those named, if ``names``)."""
    wanted = frozenset(names) if names is not None else None
    samples: list[Sample] = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        if wanted is not None and not line.startswith(tuple(wanted)):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name = match["name"]
        if wanted is not None and name not in wanted:
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        try:
            value = float(match["value"])
        except ValueError:
            continue
        samples.append(Sample(name, labels, value))
    return samples


RequestKey = tuple[str, str, str]
"""(resource, subresource, verb), e.g. ("secrets", "", "POST")."""


@dataclass(frozen=True)
class RequestCounts:
    """A snapshot of ``apiserver_request_total``, summed over codes and scopes."""

    counts: Mapping[RequestKey, int] = field(default_factory=dict)

    def __sub__(self, earlier: RequestCounts) -> RequestCounts:
        delta: Counter[RequestKey] = Counter(self.counts)
        delta.subtract(earlier.counts)
        return RequestCounts({key: value for key, value in delta.items() if value})

    def writes(self, resource: str | None = None, *, subresource: str | None = None) -> int:
        """Write requests, of one resource (and subresource) or of all."""
        return sum(
            value
            for (res, sub, verb), value in self.counts.items()
            if verb in WRITE_VERBS
            and (resource is None or res == resource)
            and (subresource is None or sub == subresource)
        )

    def by_verb(self, resource: str) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (res, sub, verb), value in self.counts.items():
            if res == resource:
                out[f"{verb}{'/' + sub if sub else ''}"] += value
        return dict(sorted(out.items()))

    def writes_by_resource(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (res, sub, verb), value in self.counts.items():
            if verb in WRITE_VERBS:
                out[f"{res}{'/' + sub if sub else ''}"] += value
        return dict(sorted(out.items()))


async def api_requests(kube: Kube) -> RequestCounts:
    """The API server's own request counters, now."""
    text = await kube.text("/metrics")
    counts: Counter[RequestKey] = Counter()
    for sample in parse_prometheus(text, ("apiserver_request_total",)):
        labels = sample.labels
        key = (labels.get("resource", ""), labels.get("subresource", ""), labels.get("verb", ""))
        counts[key] += int(sample.value)
    return RequestCounts(dict(counts))


@dataclass(frozen=True)
class OperatorMetrics:
    """The figures the benchmarks read from the operator's own ``/metrics``."""

    api_requests: float
    api_writes: float
    reconciles: float
    reconcile_errors: float
    queue_depth: float
    syncs: Mapping[str, float]
    """``certauto_sync_total`` by ``type/result``."""

    @classmethod
    def parse(cls, text: str) -> OperatorMetrics:
        samples = parse_prometheus(text)
        values: dict[str, float] = {}
        syncs: dict[str, float] = {}
        reconciles = 0.0
        for sample in samples:
            if sample.name == "certauto_sync_total":
                key = f"{sample.labels.get('type')}/{sample.labels.get('result')}"
                syncs[key] = syncs.get(key, 0.0) + sample.value
            elif sample.name == "certauto_reconcile_total":
                reconciles += sample.value
            else:
                values[sample.name] = sample.value
        return cls(
            api_requests=values.get("certauto_api_requests_total", 0.0),
            api_writes=values.get("certauto_api_writes_total", 0.0),
            reconciles=reconciles,
            reconcile_errors=values.get("certauto_reconcile_errors_total", 0.0),
            queue_depth=values.get("certauto_queue_depth", 0.0),
            syncs=syncs,
        )
