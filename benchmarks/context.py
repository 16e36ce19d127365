"""What every scenario shares: sizes, the control plane, the driver's client, the results."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.kube import Kube
from benchmarks.procs import CpuMeter, OperatorProcess
from benchmarks.workload import SET_LABEL, CertSource, ReflectorLayout
from certauto_core.kube.resources import CERTIFICATE_BINDINGS
from certauto_core.testing.controlplane.process import ControlPlane, free_port


def trial_env(trials: tuple[str, ...]) -> dict[str, str]:
    """The environment that makes the operator apply ``trials`` (none: nothing)."""
    if not trials:
        return {}
    from benchmarks.experiments.trials import TRIALS_ENV

    root = Path(__file__).resolve().parent.parent
    paths = [str(root), str(root / "benchmarks" / "experiments")]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return {"PYTHONPATH": os.pathsep.join(paths), TRIALS_ENV: ",".join(trials)}


@dataclass(frozen=True)
class Sizes:
    """Every size a run takes; the defaults are the issue's, :data:`QUICK` a smoke run's."""

    bindings: int = 1000
    namespaces_per_binding: int = 10
    unrelated_secrets: int = 20_000
    unrelated_secret_bytes: int = 4096
    cloud_bindings: int = 200
    rotation_rate: float = 10.0
    """Source rotations per second in scenario 2."""
    rotation_seconds: float = 30.0
    ceiling_seconds: float = 5.0
    """How long each connection count of the ceiling measurement runs."""
    ceiling_concurrency: tuple[int, ...] = (16, 32, 64)
    workers: int = 8
    """The operator's ``--workers`` (its default)."""
    steady_resync_seconds: int = 20
    """``--resync-interval`` of the restarted operator in scenario 3."""
    poll_interval: float = 0.5
    """Seconds between the readiness LISTs."""


QUICK = Sizes(
    bindings=100,
    namespaces_per_binding=5,
    unrelated_secrets=2000,
    cloud_bindings=20,
    rotation_rate=5.0,
    rotation_seconds=10.0,
    ceiling_seconds=3.0,
    steady_resync_seconds=10,
)


@dataclass
class Bench:
    """One run: the scenarios fill :attr:`results`; the runner prints and saves them."""

    sizes: Sizes
    control_plane: ControlPlane
    kube: Kube
    workdir: Path
    """Logs of this run (operator output, profiles)."""
    results: dict[str, Any] = field(default_factory=dict)
    certs: CertSource = field(default_factory=CertSource)
    operator: OperatorProcess | None = None
    profile: bool = False
    """Record py-spy profiles of the operator in scenarios 1 and 3 (needs ``py-spy``)."""
    trials: tuple[str, ...] = ()
    """Trial fixes applied to the operator process (``--trial``, see ``experiments``)."""
    log: Callable[[str], None] = print
    _started: float = field(default_factory=time.monotonic)

    @property
    def layout(self) -> ReflectorLayout:
        return ReflectorLayout(self.sizes.bindings, self.sizes.namespaces_per_binding)

    def say(self, message: str) -> None:
        self.log(f"[{time.monotonic() - self._started:7.1f}s] {message}")

    def cpu(self, *, operator: bool = True) -> CpuMeter:
        """A meter over the API server, etcd, this driver and (if running) the operator."""
        etcd, apiserver = self.control_plane.pids[:2]
        pids = {"kube-apiserver": apiserver, "etcd": etcd, "driver": os.getpid()}
        if operator and self.operator is not None and self.operator.process is not None:
            pids["operator"] = self.operator.pid
        return CpuMeter(pids)

    def new_operator(self, name: str, *, resync_interval: str = "10m") -> OperatorProcess:
        return OperatorProcess(
            kubeconfig=self.control_plane.kubeconfig_path,
            metrics_port=free_port(),
            workers=self.sizes.workers,
            resync_interval=resync_interval,
            log_path=self.workdir / f"operator-{name}.log",
            extra_env=trial_env(self.trials),
        )


METRICS_POLL = 1.0
"""Seconds between reads of the operator's ``/metrics``: rendering ~3,000 series costs
the operator ~10 ms of CPU each time, so the driver reads them sparingly."""
SLOW_POLL = 2.0
"""Seconds between readiness LISTs while fewer than 90% of the bindings are Ready."""


@dataclass(frozen=True)
class Readiness:
    total: int
    ready: int


async def readiness(kube: Kube, set_name: str) -> Readiness:
    """One LIST of a binding set: how many are Ready at their current generation."""
    listed = await kube.get_json(
        CERTIFICATE_BINDINGS.path(), labelSelector=f"{SET_LABEL}={set_name}"
    )
    items = listed.get("items") or []
    ready = 0
    for item in items:
        metadata = item.get("metadata") or {}
        status = item.get("status") or {}
        if status.get("observedGeneration") != metadata.get("generation"):
            continue
        conditions = status.get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            ready += 1
    return Readiness(len(items), ready)


async def wait_all_ready(
    bench: Bench, set_name: str, expected: int, *, timeout: float, what: str
) -> tuple[float, Readiness]:
    """Poll until ``expected`` bindings of the set are Ready; return (monotonic time, state).

    The time is that of the poll that saw them all Ready: the true moment lies
    within one poll interval before it.
    """
    deadline = time.monotonic() + timeout
    last_report = time.monotonic()
    while True:
        state = await readiness(bench.kube, set_name)
        now = time.monotonic()
        if state.ready >= expected:
            return now, state
        if now > deadline:
            raise TimeoutError(
                f"{what}: {state.ready}/{expected} Ready after {timeout:.0f}s "
                f"(operator log: {bench.operator.log_path if bench.operator else 'in-process'})"
            )
        if now - last_report > 10:
            bench.say(f"  {what}: {state.ready}/{expected} Ready")
            last_report = now
        # A LIST of 1,000 bindings costs the API server tens of milliseconds: poll
        # slowly while far from done, at the full rate near the end.
        near = state.ready >= expected * 0.9
        await asyncio.sleep(bench.sizes.poll_interval if near else SLOW_POLL)


async def settle(bench: Bench, quiet: float = 2.0, timeout: float = 120.0) -> None:
    """Wait until the operator's queue has been empty for ``quiet`` seconds."""
    operator = bench.operator
    assert operator is not None
    deadline = time.monotonic() + timeout
    idle_since: float | None = None
    while time.monotonic() < deadline:
        metrics = await operator.metrics()
        now = time.monotonic()
        if metrics.queue_depth == 0:
            idle_since = idle_since or now
            if now - idle_since >= quiet:
                return
        else:
            idle_since = None
        await asyncio.sleep(METRICS_POLL)
    bench.say("  warning: the operator's queue did not settle")
