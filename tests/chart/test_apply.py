"""Every values file's render, server-side applied to a real kube-apiserver.

Strict field validation is on, so a field the API server does not know (a typo in a
template, a field of a newer Kubernetes) fails here instead of being dropped.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from certauto_core.kube.client import KubeClient
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.helm import (
    ChartCheckError,
    KubeApplier,
    find,
    namespaces_of,
    release_for,
    service_monitor_crd,
    values_files_of,
)

CHART = Path(__file__).resolve().parents[2] / "charts" / "certauto"
Render = Callable[..., list[dict[str, Any]]]


@pytest_asyncio.fixture(loop_scope="session")
async def applier(control_plane: ControlPlane) -> AsyncIterator[KubeApplier]:
    kube = await KubeClient.connect(kubeconfig=str(control_plane.kubeconfig_path))
    try:
        applier = KubeApplier(kube)
        await applier.apply(service_monitor_crd())
        yield applier
    finally:
        await kube.aclose()


@pytest.mark.parametrize("values_file", values_files_of(CHART), ids=lambda p: p.name)
async def test_each_render_applies_to_the_api_server(
    applier: KubeApplier, render: Render, values_file: Path
) -> None:
    release, namespace = release_for(values_file)
    documents = render([values_file], release=release, namespace=namespace)
    for name in namespaces_of(documents):
        await applier.ensure_namespace(name)
    applied = await applier.apply_all(documents)
    assert len(applied) == len(documents)
    # What the API server stored is what was rendered (nothing pruned or defaulted away).
    for document in documents:
        stored = await applier.kube.get(await applier.path(document))
        assert stored["metadata"]["name"] == document["metadata"]["name"]
        if document["kind"] == "Deployment":
            pod = stored["spec"]["template"]["spec"]
            rendered_pod = document["spec"]["template"]["spec"]
            assert pod["securityContext"] == rendered_pod["securityContext"]
            assert pod["containers"][0]["args"] == rendered_pod["containers"][0]["args"]


async def test_the_applier_refuses_an_unknown_field(applier: KubeApplier, render: Render) -> None:
    """The check above can fail: a misspelt field is an error, not silently dropped."""
    documents = render(release="typo", namespace="chart-typo")
    await applier.ensure_namespace("chart-typo")
    deployment = copy.deepcopy(dict(find(documents, "Deployment")[0]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(ChartCheckError, match="readOnlyRootFileSystem"):
        await applier.apply(deployment)


async def test_the_applier_refuses_a_namespaced_object_without_a_namespace(
    applier: KubeApplier, render: Render
) -> None:
    account = copy.deepcopy(dict(find(render(), "ServiceAccount")[0]))
    del account["metadata"]["namespace"]
    with pytest.raises(ChartCheckError, match=r"no metadata\.namespace"):
        await applier.apply(account)
