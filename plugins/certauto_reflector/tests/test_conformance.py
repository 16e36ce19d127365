"""The reflector held to the plugin contract by the core's conformance kit."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

import pytest
from certauto_reflector.config import ReflectorConfig
from certauto_reflector.plugin import REFLECTOR

from certauto_core.certs.material import CertificateMaterial
from certauto_core.kube.client import KubeClient
from certauto_core.kube.resources import SECRETS
from certauto_core.plugins.contract import DestinationType
from certauto_core.testing.certs import CertFactory, IssuedCert
from certauto_core.testing.conformance import (
    BadConfig,
    ConformanceCase,
    DestinationConformance,
    MaterialRecipe,
)
from certauto_core.testing.kube import temporary_namespace, wait_for


def _larger_than_a_secret(certs: CertFactory, issuer: IssuedCert) -> CertificateMaterial:
    """A CA bundle so big that no Kubernetes Secret (1 MiB) can hold the copy."""
    material = certs.leaf(issuer, ["big.example.test"]).material()
    return CertificateMaterial(
        leaf=material.leaf,
        chain=material.chain,
        private_key=material.private_key,
        ca_pem=issuer.certificate_pem() * 1000,
    )


def _config(case: ConformanceCase) -> ReflectorConfig:
    assert isinstance(case.config, ReflectorConfig)
    return case.config


class TestReflectorConformance(DestinationConformance):
    exact_write_count = True
    unsupported_materials: ClassVar[Mapping[str, MaterialRecipe]] = {
        "larger-than-a-secret": _larger_than_a_secret,
    }
    bad_configs: ClassVar[Mapping[str, BadConfig]] = {
        "no-targets": BadConfig({}, field="namespaces"),
        "empty-list-no-selector": BadConfig({"namespaces": []}, field="namespaceSelector"),
        "bad-operator": BadConfig(
            {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Like"}]}},
            field="config.namespaceSelector.matchExpressions[0].operator",
        ),
        "in-without-values": BadConfig(
            {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            field="config.namespaceSelector.matchExpressions[0]",
        ),
        "bad-namespace-name": BadConfig({"namespaces": ["Team_A"]}, field="config.namespaces[0]"),
        "bad-secret-name": BadConfig(
            {"namespaces": ["a"], "secretName": "Not A Name"}, field="config.secretName"
        ),
        "reserved-label": BadConfig(
            {"namespaces": ["a"], "labels": {"certauto.sanorg.in/watched": "true"}},
            field="config.labels",
        ),
        "bad-label-value": BadConfig(
            {"namespaces": ["a"], "labels": {"team": "not ok!"}}, field="config.labels.team"
        ),
        "typo": BadConfig({"namespace": ["a"]}, field="config.namespace"),
    }

    @pytest.fixture
    def destination_type(self) -> DestinationType:
        return REFLECTOR

    async def make_config(self, case: ConformanceCase) -> Mapping[str, Any]:
        names = [
            await case.cleanup.enter_async_context(
                temporary_namespace(case.context.kube.api, prefix="copy")
            )
            for _ in range(2)
        ]

        async def visible() -> bool:
            return all(case.context.namespaces.labels(name) is not None for name in names)

        # Return only once the destination can see the namespaces (the index lags a moment).
        await wait_for(visible, what="the namespace index to see the new namespaces")
        return {"namespaces": names}

    async def tamper(self, case: ConformanceCase) -> None:
        """Edit the copy in the first namespace and delete the one in the second."""
        config = _config(case)
        name = config.copy_name(case.binding.name)
        first, second = config.namespaces
        kube = case.context.kube
        garbage = base64.b64encode(b"not the certificate").decode()
        edited = await kube.merge_patch(SECRETS.path(first, name), {"data": {"tls.crt": garbage}})
        await kube.delete(SECRETS.path(second, name))

        async def both_seen() -> bool:
            record = case.context.secrets.get(first, name)
            return (
                record is not None
                and record.resource_version == edited["metadata"]["resourceVersion"]
                and case.context.secrets.get(second, name) is None
            )

        # Two changes: let the index see both, or the kit could repair only the first.
        await wait_for(both_seen, what="the index to see the edit and the deletion")

    async def count_writes(self, case: ConformanceCase) -> int:
        counter: Callable[[], Awaitable[int]] = case.request.getfixturevalue("secret_writes")
        return await counter()

    async def plant_foreign(self, case: ConformanceCase) -> Callable[[], Awaitable[object]]:
        """A user's own Secret under the copy's name in the first target namespace."""
        config = _config(case)
        namespace, name = config.namespaces[0], config.copy_name(case.binding.name)
        kube: KubeClient = case.context.kube
        await kube.create(
            SECRETS.path(namespace),
            {
                "metadata": {"name": name, "labels": {"team": "theirs"}},
                "type": "Opaque",
                "stringData": {"password": "hunter2"},
            },
        )

        async def read() -> object:
            return await kube.get(SECRETS.path(namespace, name))

        return read
