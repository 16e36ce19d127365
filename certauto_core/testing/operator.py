"""Run the real operator in-process against the test control plane.

Used by the core's end-to-end tests and by every plugin's: install the CRD,
start :class:`~certauto_core.operator.Operator` with the plugins you choose,
create bindings and wait for their status, count the writes a resync makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from certauto_core.api.crd import load_crd
from certauto_core.kube.client import KubeClient
from certauto_core.kube.errors import ConflictError, NotFoundError
from certauto_core.kube.resources import CERTIFICATE_BINDINGS, SECRETS
from certauto_core.operator import Operator, OperatorConfig
from certauto_core.plugins.manager import PluginManager
from certauto_core.testing.certs import encode_secret_data
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.kube import wait_for

_REQUEST_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M)
_WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"}


async def install_certauto_crd(kube: KubeClient) -> None:
    """Create or update the CertificateBinding CRD and wait until it is served."""
    from certauto_core.testing.kube import apply_crds

    await apply_crds(kube.api, [load_crd()])


def api_writes(control_plane: ControlPlane, resources: tuple[str, ...] | None = None) -> int:
    """Write requests the API server has counted so far (its own ``apiserver_request_total``).

    ``resources`` narrows the count (the API server's own background writes, such
    as its identity Lease, are not ours).
    """
    text = control_plane.get_json("/metrics")
    total = 0
    for match in _REQUEST_LINE.finditer(str(text)):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("verb") not in _WRITE_VERBS:
            continue
        if resources is not None and labels.get("resource") not in resources:
            continue
        total += int(float(match["value"]))
    return total


@dataclass
class OperatorHarness:
    """A running operator and the client the test acts with."""

    operator: Operator
    kube: KubeClient
    control_plane: ControlPlane

    async def create_binding(
        self, namespace: str, name: str, spec: Mapping[str, Any]
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "sanorg.in/v1alpha1",
            "kind": "CertificateBinding",
            "metadata": {"name": name, "namespace": namespace},
            "spec": dict(spec),
        }
        return await self.kube.create(CERTIFICATE_BINDINGS.path(namespace), body)

    async def get_binding(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.kube.get(CERTIFICATE_BINDINGS.path(namespace, name))
        except NotFoundError:
            return None

    async def patch_spec(self, namespace: str, name: str, spec: Mapping[str, Any]) -> None:
        await self.kube.merge_patch(
            CERTIFICATE_BINDINGS.path(namespace, name), {"spec": dict(spec)}
        )

    async def delete_binding(self, namespace: str, name: str) -> None:
        await self.kube.delete(CERTIFICATE_BINDINGS.path(namespace, name))

    async def wait_gone(self, namespace: str, name: str, timeout: float = 30) -> None:
        async def gone() -> bool:
            return await self.get_binding(namespace, name) is None

        await wait_for(gone, timeout=timeout, what=f"binding {namespace}/{name} to be deleted")

    async def put_tls_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, bytes],
        *,
        labels: Mapping[str, str] | None = None,
        secret_type: str = "kubernetes.io/tls",  # noqa: S107 - a Secret type, not a password
    ) -> dict[str, Any]:
        """Create the Secret, or replace its data when it exists (a rotation).

        ``secret_type="Opaque"`` lets a test store what ``kubernetes.io/tls`` refuses
        (a missing ``tls.key``), as users do.
        """
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": secret_type,
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
            "data": encode_secret_data(data),
        }
        try:
            return await self.kube.create(SECRETS.path(namespace), body)
        except ConflictError:
            current = await self.kube.get(SECRETS.path(namespace, name))
            current["data"] = body["data"]
            return await self.kube.replace(SECRETS.path(namespace, name), current)

    async def wait_condition(
        self,
        namespace: str,
        name: str,
        condition: str = "Ready",
        status: str = "True",
        *,
        reason: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """Wait until the binding's condition has this status (and reason); return the binding."""

        async def check() -> dict[str, Any] | None:
            obj = await self.get_binding(namespace, name)
            if obj is None:
                return None
            current = (obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get(
                "generation"
            )
            for item in (obj.get("status") or {}).get("conditions") or []:
                matches = item["type"] == condition and item["status"] == status
                if matches and current and reason in (None, item.get("reason")):
                    return obj
            return None

        return await wait_for(
            check,
            timeout=timeout,
            what=f"{namespace}/{name} {condition}={status}{' ' + reason if reason else ''}",
        )

    async def wait_destination(
        self,
        namespace: str,
        name: str,
        destination: str,
        state: str,
        *,
        fingerprint: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """Wait until ``status.destinations[destination].state`` is ``state``; return that entry."""

        async def check() -> dict[str, Any] | None:
            obj = await self.get_binding(namespace, name)
            for entry in ((obj or {}).get("status") or {}).get("destinations") or []:
                matches = entry["name"] == destination and entry["state"] == state
                if matches and fingerprint in (None, entry.get("syncedFingerprint")):
                    return dict(entry)
            return None

        return await wait_for(
            check, timeout=timeout, what=f"{namespace}/{name} destination {destination} {state}"
        )

    async def settle(self, quiet: float = 0.5, timeout: float = 30) -> None:
        """Wait until the queue is idle and has stayed idle for ``quiet`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            await self.operator.queue.wait_idle()
            await asyncio.sleep(quiet)
            if self.operator.queue.processing() == 0 and self.operator.queue.ready() == 0:
                return
        raise TimeoutError("the operator did not settle")

    async def resync(self) -> None:
        """A forced full resync: every binding reconciled once more, then settle."""
        self.operator.resync_now()
        await self.settle()


@asynccontextmanager
async def running_operator(
    control_plane: ControlPlane,
    *,
    plugins: PluginManager | None = None,
    workers: int = 4,
    resync_interval: timedelta = timedelta(minutes=30),
    leader_election: bool = False,
    log_level: int = logging.INFO,
    kubeconfig: Path | None = None,
    lease_namespace: str = "default",
) -> AsyncIterator[OperatorHarness]:
    """Start the operator and stop it, awaited, on exit.

    It acts as the cluster admin unless ``kubeconfig`` names another identity
    (e.g. a ServiceAccount token, to prove RBAC); the test's own client stays admin.
    """
    kube = await KubeClient.connect(kubeconfig=str(control_plane.kubeconfig_path))
    try:
        await install_certauto_crd(kube)
        config = OperatorConfig(
            kubeconfig=str(kubeconfig or control_plane.kubeconfig_path),
            workers=workers,
            metrics_host="127.0.0.1",
            metrics_port=0,
            resync_interval=resync_interval,
            leader_election=leader_election,
            lease_namespace=lease_namespace,
            watch_read_timeout=30,
        )
        operator = Operator(config, plugins=plugins)
        logging.getLogger("certauto").setLevel(log_level)
        task = asyncio.create_task(operator.run(), name="operator")
        try:
            ready = asyncio.ensure_future(operator.ready.wait())
            done, _ = await asyncio.wait(
                {ready, task}, timeout=60, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                ready.cancel()
                task.result()  # raises the operator's start-up error
                raise RuntimeError("the operator stopped before its caches synced")
            if ready not in done:
                ready.cancel()
                raise TimeoutError("the operator's caches did not sync in 60 s")
            yield OperatorHarness(operator, kube, control_plane)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await kube.aclose()
