"""What the benchmarks create: certificates, Secrets, CertificateBindings, namespaces.

Every certificate is a real one from :class:`~certauto_core.testing.certs.CertFactory`
(RSA-2048 leaf, what cert-manager issues by default, signed by an intermediate,
``tls.crt`` holding leaf and intermediate): the operator parses and validates each.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from certauto_core.engine.indexes import WATCHED_LABEL
from certauto_core.testing.certs import CertFactory, IssuedCert

BENCH_PREFIX: Final = "bench.certauto.sanorg.in/"
SET_LABEL: Final = BENCH_PREFIX + "set"
"""On every binding the benchmarks create: which scenario set it belongs to."""
REFLECTOR_SET: Final = "reflector"
BINDINGS_PER_SOURCE_NAMESPACE: Final = 100
TARGETS_PER_NAMESPACE_GROUP: Final = 10
"""Target namespaces are ``namespaces_per_binding * 10``: each holds a tenth of the copies."""

JSON = dict[str, Any]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class CertSource:
    """Leaf certificates on demand, all under one root and intermediate."""

    def __init__(self) -> None:
        self._factory = CertFactory()
        self._root = self._factory.root_ca("CertAuto Bench Root")
        self.intermediate = self._factory.intermediate_ca(self._root, "CertAuto Bench CA")

    def leaf(self, dns_name: str) -> IssuedCert:
        return self._factory.leaf(self.intermediate, [dns_name])


def tls_data(leaf: IssuedCert) -> dict[str, str]:
    """The base64 ``data`` of a ``kubernetes.io/tls`` Secret for ``leaf`` (and its chain)."""
    return {key: b64(value) for key, value in leaf.secret_data().items()}


def secret_body(
    namespace: str,
    name: str,
    data: Mapping[str, str],
    *,
    secret_type: str = "kubernetes.io/tls",  # noqa: S107 - a Secret type, not a password
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> JSON:
    metadata: JSON = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": secret_type,
        "metadata": metadata,
        "data": dict(data),
    }


def copy_equivalent_body(namespace: str, name: str, data: Mapping[str, str]) -> JSON:
    """A Secret the size and shape of a reflector copy, without CertAuto's labels.

    Same data, same number and length of labels and annotations as a copy the
    reflector writes (managed-by, watched; binding, destination, fingerprint,
    material hash, content hash, source secret), under the benchmark's own
    prefix, so that the operator never selects it.
    """
    digest = hashlib.sha256(name.encode()).hexdigest()
    return secret_body(
        namespace,
        name,
        data,
        labels={"app.kubernetes.io/part-of": "certauto", BENCH_PREFIX + "ceiling": "copy"},
        annotations={
            BENCH_PREFIX + "binding": f"bench-src-0/{name}",
            BENCH_PREFIX + "destination": "mirror",
            BENCH_PREFIX + "fingerprint": digest,
            BENCH_PREFIX + "material-hash": digest,
            BENCH_PREFIX + "content-hash": digest,
            BENCH_PREFIX + "source-secret": f"{name}-tls",
        },
    )


@dataclass(frozen=True)
class ReflectorLayout:
    """Where scenario 1 puts its bindings, sources and copies."""

    bindings: int
    namespaces_per_binding: int

    @property
    def source_namespaces(self) -> list[str]:
        count = max(1, -(-self.bindings // BINDINGS_PER_SOURCE_NAMESPACE))
        return [f"bench-src-{index}" for index in range(count)]

    @property
    def target_namespaces(self) -> list[str]:
        count = self.namespaces_per_binding * TARGETS_PER_NAMESPACE_GROUP
        return [f"bench-dst-{index}" for index in range(count)]

    def binding(self, index: int) -> tuple[str, str]:
        """(namespace, name) of binding ``index``."""
        return (
            f"bench-src-{index // BINDINGS_PER_SOURCE_NAMESPACE}",
            f"b-{index:05d}",
        )

    def source_secret(self, index: int) -> str:
        return f"{self.binding(index)[1]}-tls"

    def targets(self, index: int) -> list[str]:
        """The ``namespaces_per_binding`` namespaces binding ``index`` reflects to."""
        group = index % TARGETS_PER_NAMESPACE_GROUP
        return [
            f"bench-dst-{group + TARGETS_PER_NAMESPACE_GROUP * j}"
            for j in range(self.namespaces_per_binding)
        ]

    @property
    def copies(self) -> int:
        return self.bindings * self.namespaces_per_binding


def source_secret_body(namespace: str, name: str, data: Mapping[str, str]) -> JSON:
    """A source Secret, labelled once for CertAuto's Secret watch (as the docs ask)."""
    return secret_body(namespace, name, data, labels={WATCHED_LABEL: "true"})


def binding_body(
    namespace: str,
    name: str,
    source_secret: str,
    destinations: list[JSON],
    *,
    set_name: str,
) -> JSON:
    return {
        "apiVersion": "sanorg.in/v1alpha1",
        "kind": "CertificateBinding",
        "metadata": {"name": name, "namespace": namespace, "labels": {SET_LABEL: set_name}},
        "spec": {
            "sourceSecretRef": {"name": source_secret},
            "destinations": destinations,
            "syncPolicy": {"retryInterval": "5s"},
        },
    }


def reflector_binding_body(layout: ReflectorLayout, index: int) -> JSON:
    namespace, name = layout.binding(index)
    destination = {
        "name": "mirror",
        "type": "reflector",
        "config": {"namespaces": layout.targets(index)},
    }
    return binding_body(
        namespace, name, layout.source_secret(index), [destination], set_name=REFLECTOR_SET
    )


def unrelated_payload(size: int) -> dict[str, str]:
    """``size`` random bytes under one key: an Opaque Secret CertAuto must not cache."""
    return {"payload": b64(os.urandom(size))}


def unrelated_namespace(index: int, per_namespace: int = 1000) -> str:
    return f"bench-noise-{index // per_namespace}"
