"""Scenario 1 (cold convergence) and 4 (memory).

Setup, before the operator starts: the CRD; with scenario 4, the unrelated
Secrets (Opaque, ``unrelated_secret_bytes`` each, in their own namespaces, no
CertAuto label); the source and target namespaces; one labelled source Secret and
one CertificateBinding per binding, each reflecting to ``namespaces_per_binding``
namespaces. Then ``certauto run`` starts as its own process, and the clock runs
from its spawn to the LIST that sees every binding Ready at its generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from typing import Any

from benchmarks.context import Bench, wait_all_ready
from benchmarks.kube import create_namespaces, run_pool
from benchmarks.metrics import api_requests
from benchmarks.procs import KIB, RssSampler, operator_environment
from benchmarks.workload import (
    REFLECTOR_SET,
    reflector_binding_body,
    secret_body,
    source_secret_body,
    tls_data,
    unrelated_namespace,
    unrelated_payload,
)
from certauto_core.api.crd import load_crd
from certauto_core.engine.indexes import COPY_LABEL_VALUE, WATCHED_LABEL
from certauto_core.kube.client import KubeClient
from certauto_core.kube.resources import CERTIFICATE_BINDINGS, SECRETS
from certauto_core.testing.kube import apply_crds, cert_manager_crds

SETUP_CONCURRENCY = 32


async def install_crds(bench: Bench) -> None:
    """CertAuto's CRD, and cert-manager's (a cluster CertAuto runs in has cert-manager)."""
    if bench.results.get("crds_installed"):
        return
    documents = [load_crd(), *await asyncio.to_thread(cert_manager_crds)]
    kube = await KubeClient.connect(kubeconfig=str(bench.control_plane.kubeconfig_path))
    try:
        await apply_crds(kube.api, documents)
    finally:
        await kube.aclose()
    bench.results["crds_installed"] = [doc["metadata"]["name"] for doc in documents]


async def create_unrelated(bench: Bench) -> dict[str, Any]:
    """Secrets the operator must neither watch nor cache."""
    count = bench.sizes.unrelated_secrets
    payload = unrelated_payload(bench.sizes.unrelated_secret_bytes)
    namespaces = sorted({unrelated_namespace(index) for index in range(count)})
    await create_namespaces(bench.kube, namespaces)
    started = time.monotonic()

    async def one(index: int) -> None:
        namespace = unrelated_namespace(index)
        name = f"unrelated-{index:06d}"
        body = secret_body(namespace, name, payload, secret_type="Opaque")  # noqa: S106
        await bench.kube.create(SECRETS.path(namespace), body, exist_ok=True)

    await run_pool(range(count), one, concurrency=64)
    seconds = time.monotonic() - started
    return {
        "count": count,
        "bytes_each": bench.sizes.unrelated_secret_bytes,
        "namespaces": len(namespaces),
        "create_seconds": round(seconds, 1),
    }


async def create_reflector_workload(bench: Bench) -> None:
    layout = bench.layout
    await create_namespaces(bench.kube, [*layout.source_namespaces, *layout.target_namespaces])
    leaves = await asyncio.to_thread(
        lambda: [tls_data(bench.certs.leaf(f"b{i}.bench.test")) for i in range(layout.bindings)]
    )

    async def source(index: int) -> None:
        namespace, _ = layout.binding(index)
        name = layout.source_secret(index)
        await bench.kube.create(
            SECRETS.path(namespace), source_secret_body(namespace, name, leaves[index])
        )

    async def binding(index: int) -> None:
        namespace, _ = layout.binding(index)
        await bench.kube.create(
            CERTIFICATE_BINDINGS.path(namespace), reflector_binding_body(layout, index)
        )

    await run_pool(range(layout.bindings), source, concurrency=SETUP_CONCURRENCY)
    await run_pool(range(layout.bindings), binding, concurrency=SETUP_CONCURRENCY)


async def list_copies(bench: Bench) -> list[dict[str, Any]]:
    """The metadata of every copy the reflector made (label ``watched=copy``)."""
    return await bench.kube.list_metadata(
        SECRETS.path(), labelSelector=f"{WATCHED_LABEL}={COPY_LABEL_VALUE}"
    )


async def run(bench: Bench, *, memory: bool) -> None:
    sizes, layout = bench.sizes, bench.layout
    await install_crds(bench)
    if memory:
        bench.say(
            f"scenario 4 setup: {sizes.unrelated_secrets:,} unrelated "
            f"{sizes.unrelated_secret_bytes}-byte Secrets"
        )
        bench.results["memory"] = {"unrelated": await create_unrelated(bench)}
    bench.say(
        f"scenario 1 setup: {layout.bindings} bindings x {layout.namespaces_per_binding} "
        f"namespaces ({layout.copies:,} copies to make)"
    )
    setup_started = time.monotonic()
    await create_reflector_workload(bench)
    setup_seconds = time.monotonic() - setup_started

    # Also writes the bytecode caches, so the operator's start is not a compile.
    baseline = await import_baseline()
    bench.say("scenario 1: starting the operator (its own process)")
    before = await api_requests(bench.kube)
    operator = bench.operator = bench.new_operator("convergence")
    await operator.start()
    cpu = bench.cpu().start()
    cpu.started = operator.started_at
    sampler = RssSampler(operator.pid).start(origin=operator.started_at)
    profiler = await start_profiler(bench, operator.pid, "convergence")
    try:
        ready_after = await operator.wait_ready()
        ready_rss = operator.memory_kib().get("VmRSS", 0)
        done_at, _ = await wait_all_ready(
            bench,
            REFLECTOR_SET,
            layout.bindings,
            timeout=max(600.0, layout.copies / 5),
            what="scenario 1",
        )
    finally:
        await stop_profiler(profiler)
    seconds = done_at - operator.started_at
    used = cpu.stop()
    counted = await api_requests(bench.kube) - before
    own = await operator.metrics()
    memory_now = operator.memory_kib()
    await sampler.stop()
    copies = len(await list_copies(bench))
    secret_writes = counted.writes("secrets")
    ceiling = float(bench.results["ceiling"]["before"]["writes_per_second"])
    rate = secret_writes / seconds
    active = done_at - operator.ready_at
    result: dict[str, Any] = {
        "bindings": layout.bindings,
        "namespaces_per_binding": layout.namespaces_per_binding,
        "copies_expected": layout.copies,
        "copies_found": copies,
        "workers": sizes.workers,
        "setup_seconds": round(setup_seconds, 1),
        "seconds_to_caches_synced": round(ready_after, 2),
        "seconds_to_all_ready": round(seconds, 2),
        "poll_interval": sizes.poll_interval,
        "secret_writes": secret_writes,
        "secret_writes_per_second": round(rate, 1),
        "secret_writes_per_second_after_sync": round(secret_writes / active, 1),
        "ceiling_writes_per_second": ceiling,
        "ratio_to_ceiling": round(rate / ceiling, 3),
        "writes_by_resource": counted.writes_by_resource(),
        "secret_requests_by_verb": counted.by_verb("secrets"),
        "operator_api_requests": own.api_requests,
        "operator_api_writes": own.api_writes,
        "operator_syncs": own.syncs,
        "operator_reconciles": own.reconciles,
        "cpu_seconds": used,
        "operator_cpu_ms_per_copy": round(1000 * used.get("operator", 0.0) / max(1, copies), 2),
        "apiserver_cpu_ms_per_copy": round(1000 * used["kube-apiserver"] / max(1, copies), 2),
        "etcd_cpu_ms_per_copy": round(1000 * used["etcd"] / max(1, copies), 2),
    }
    bench.results["convergence"] = result
    rss = {
        "import_baseline_mib": baseline,
        "rss_at_caches_synced_mib": round(ready_rss / KIB, 1),
        "rss_after_convergence_mib": round(memory_now.get("VmRSS", 0) / KIB, 1),
        "peak_rss_mib": round(memory_now.get("VmHWM", 0) / KIB, 1),
        "series_mib": sampler.series_mib(),
    }
    bench.results.setdefault("memory", {}).update(rss)
    bench.results["memory"]["with_unrelated_secrets"] = memory
    bench.say(
        f"scenario 1: {layout.bindings} Ready in {seconds:.1f}s, {secret_writes} Secret writes, "
        f"{rate:.0f}/s = {rate / ceiling:.0%} of the ceiling; "
        f"peak RSS {rss['peak_rss_mib']} MiB"
    )


BASELINE_SCRIPT = """
import sys
from certauto_core.operator import Operator
from certauto_core.plugins.manager import PluginManager
plugins = PluginManager()
plugins.load_entry_points()
print(",".join(sorted(plugins.destination_types())))
for line in open("/proc/self/status"):
    if line.startswith("VmRSS"):
        print(int(line.split()[1]))
"""


async def import_baseline() -> dict[str, Any]:
    """RSS of a process that only imports the operator and loads its plugins (MiB).

    With every installed plugin (as ``certauto run`` does), and with the reflector
    alone (the cloud plugins blocked with ``CERTAUTO_BLOCK_PLUGINS``).
    """
    out: dict[str, Any] = {}
    runs = (
        ("warmup", ""),  # writes the bytecode caches; not a figure
        ("all_plugins", ""),
        ("reflector_only", "certauto-acm,certauto-akv"),
    )
    for label, blocked in runs:
        env = operator_environment({"CERTAUTO_BLOCK_PLUGINS": blocked})
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            BASELINE_SCRIPT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        stdout, _ = await process.communicate()
        lines = stdout.decode().split()
        if process.returncode == 0 and len(lines) >= 2 and label != "warmup":
            out[label] = {"types": lines[0], "rss_mib": round(int(lines[1]) / KIB, 1)}
    return out


async def start_profiler(bench: Bench, pid: int, name: str) -> asyncio.subprocess.Process | None:
    """py-spy, sampling the operator process 100 times a second (with ``--profile``)."""
    if not bench.profile:
        return None
    output = bench.workdir / f"operator-{name}.speedscope.json"
    bench.results.setdefault("profiles", []).append(str(output))
    return await asyncio.create_subprocess_exec(
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--rate",
        "100",
        "--nonblocking",
        "--format",
        "speedscope",
        "--output",
        str(output),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def stop_profiler(profiler: asyncio.subprocess.Process | None) -> None:
    if profiler is None:
        return
    with contextlib.suppress(ProcessLookupError):
        profiler.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(profiler.wait(), 30)
    except TimeoutError:
        profiler.kill()
        await profiler.wait()


__all__ = [
    "create_reflector_workload",
    "install_crds",
    "list_copies",
    "run",
    "start_profiler",
    "stop_profiler",
]
