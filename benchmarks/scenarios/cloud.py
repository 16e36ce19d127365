"""Scenario 5: cloud destinations. Calls per binding on the first sync and on a resync.

``cloud_bindings`` bindings to AWS ACM (moto behind the recording proxy of
:mod:`certauto_core.testing.aws`) and as many to Azure Key Vault (the fake of
:mod:`certauto_core.testing.keyvault`), each with its own certificate. Every call
that reaches the proxy or the fake is counted, by operation; a call per binding is
a call divided by the bindings of that type.

The operator runs in this process, restricted to the scenario's namespace: the Key
Vault plugin needs test settings (the fake's CA and credential) that ``certauto
run`` cannot take. Its timings share this process with moto and the fake, so only
the counts are figures here; scenario 1 is the one for speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from benchmarks.context import Bench, wait_all_ready
from benchmarks.kube import create_namespaces, run_pool
from benchmarks.scenarios.convergence import install_crds
from benchmarks.workload import binding_body, source_secret_body, tls_data
from certauto_core.kube.resources import CERTIFICATE_BINDINGS, SECRETS
from certauto_core.operator import Operator, OperatorConfig
from certauto_core.plugins.contract import DestinationType
from certauto_core.plugins.hookspecs import hookimpl
from certauto_core.plugins.manager import PluginManager

NAMESPACE = "bench-cloud"
ACM_SET = "cloud-acm"
AKV_SET = "cloud-akv"
_KV_NAME = re.compile(r"^/(certificates|deletedcertificates|secrets|keys)/[^/]+(/[^/]+)?")


class _Registration:
    """A plugin object that registers one prepared destination type."""

    def __init__(self, registered: DestinationType) -> None:
        self._registered = registered

    @hookimpl
    def certauto_destination_types(self) -> list[DestinationType]:
        return [self._registered]


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _kv_operation(method: str, path: str) -> str:
    """``GET /certificates/{name}`` and the like: the path with names taken out."""
    match = _KV_NAME.match(path)
    if match is None:
        return f"{method} {path}"
    collection, version = match.group(1), match.group(2)
    rest = path[match.end() :]
    template = f"/{collection}/{{name}}" + ("/{version}" if version else "") + rest
    if version in ("/import", "/pending", "/recover"):
        template = f"/{collection}/{{name}}{version}{rest}"
    return f"{method} {template}"


def _per_binding(counts: Mapping[str, int], bindings: int) -> dict[str, Any]:
    total = sum(counts.values())
    return {
        "calls": total,
        "calls_per_binding": round(total / bindings, 2) if bindings else 0.0,
        "by_operation": dict(sorted(counts.items())),
    }


async def run(bench: Bench) -> None:
    sizes = bench.sizes
    count = sizes.cloud_bindings
    result: dict[str, Any] = {"bindings_per_type": count}
    bench.results["cloud"] = result
    try:
        from certauto_core.testing.aws import AcmProxy, MotoServer
        from certauto_core.testing.keyvault import FakeKeyVaultServer
        from certauto_core.testing.keyvault.credential import StaticTokenCredential
    except ImportError as error:  # the testing extra is not installed
        result["skipped"] = f"the testing extra is missing: {error}"
        bench.say(f"scenario 5 skipped: {result['skipped']}")
        return

    plugins = PluginManager()
    types: list[str] = []
    try:
        import certauto_acm.plugin as acm_plugin

        plugins.register(acm_plugin, name="bench-aws-acm")
        types.append("aws-acm")
    except ImportError as error:
        result["aws-acm"] = {"skipped": f"certauto-acm is not installed: {error}"}
    keyvault = FakeKeyVaultServer(tls_dir=bench.workdir / "fake-keyvault-tls")
    credential = StaticTokenCredential()
    await keyvault.start()
    try:
        from certauto_akv import AkvSettings
        from certauto_akv.plugin import destination_type

        settings = AkvSettings(
            credential_factory=lambda request: credential,
            client_options={
                "verify_challenge_resource": False,
                "connection_verify": str(keyvault.ca_path),
            },
            polling_interval=0.05,
        )
        plugins.register(_Registration(destination_type(settings)), name="bench-akv")
        types.append("azure-key-vault")
    except ImportError as error:
        result["azure-key-vault"] = {"skipped": f"certauto-akv is not installed: {error}"}
    if not types:
        await keyvault.stop()
        bench.say("scenario 5 skipped: no cloud destination plugin is installed")
        return

    moto = MotoServer()
    await asyncio.to_thread(moto.start)
    proxy = AcmProxy(moto.endpoint_url)
    await proxy.start()
    aws_env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # moto's dummy credentials
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(bench.workdir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(bench.workdir / "no-aws-credentials"),
    }
    try:
        with _environment(aws_env):
            await _measure(bench, plugins, types, proxy, keyvault, result)
    finally:
        await proxy.stop()
        await asyncio.to_thread(moto.stop)
        await keyvault.stop()


async def _measure(
    bench: Bench,
    plugins: PluginManager,
    types: list[str],
    proxy: Any,
    keyvault: Any,
    result: dict[str, Any],
) -> None:
    sizes = bench.sizes
    count = sizes.cloud_bindings
    await install_crds(bench)
    await create_namespaces(bench.kube, [NAMESPACE])
    bench.say(f"scenario 5 setup: {count} bindings per cloud type ({', '.join(types)})")
    leaves = await asyncio.to_thread(
        lambda: [tls_data(bench.certs.leaf(f"c{i}.bench.test")) for i in range(count)]
    )

    async def source(index: int) -> None:
        name = f"c-{index:04d}-tls"
        await bench.kube.create(
            SECRETS.path(NAMESPACE), source_secret_body(NAMESPACE, name, leaves[index])
        )

    await run_pool(range(count), source, concurrency=16)
    sets: dict[str, str] = {}
    bodies = []
    for index in range(count):
        source_name = f"c-{index:04d}-tls"
        if "aws-acm" in types:
            sets["aws-acm"] = ACM_SET
            destination = {
                "name": "acm",
                "type": "aws-acm",
                "config": {"region": "us-east-1", "endpointURL": proxy.endpoint_url},
            }
            bodies.append(
                binding_body(
                    NAMESPACE, f"acm-{index:04d}", source_name, [destination], set_name=ACM_SET
                )
            )
        if "azure-key-vault" in types:
            sets["azure-key-vault"] = AKV_SET
            destination = {
                "name": "kv",
                "type": "azure-key-vault",
                "config": {"vaultURL": keyvault.vault_url},
            }
            bodies.append(
                binding_body(
                    NAMESPACE, f"kv-{index:04d}", source_name, [destination], set_name=AKV_SET
                )
            )

    async def create(body: dict[str, Any]) -> None:
        await bench.kube.create(CERTIFICATE_BINDINGS.path(NAMESPACE), body)

    await run_pool(bodies, create, concurrency=16)
    proxy.reset()
    keyvault.calls.clear()

    config = OperatorConfig(
        kubeconfig=str(bench.control_plane.kubeconfig_path),
        namespaces=(NAMESPACE,),
        workers=sizes.workers,
        metrics_host="127.0.0.1",
        metrics_port=0,
        leader_election=False,
    )
    operator = Operator(config, plugins=plugins)
    with _logs_to(bench.workdir / "operator-cloud.log"):
        await _run_operator(bench, operator, types, sets, proxy, keyvault, result)


async def _run_operator(
    bench: Bench,
    operator: Operator,
    types: list[str],
    sets: dict[str, str],
    proxy: Any,
    keyvault: Any,
    result: dict[str, Any],
) -> None:
    count = bench.sizes.cloud_bindings
    task = asyncio.create_task(operator.run(), name="bench-cloud-operator")
    try:
        started = time.monotonic()
        await asyncio.wait_for(_ready_or_failed(operator, task), 120)
        for type_name, set_name in sets.items():
            done_at, _ = await wait_all_ready(
                bench, set_name, count, timeout=600, what=f"scenario 5 ({type_name})"
            )
            result.setdefault(type_name, {})["seconds_to_all_ready"] = round(done_at - started, 1)
        await _idle(operator)
        first = _counts(proxy, keyvault)
        proxy.reset()
        keyvault.calls.clear()
        bench.say("scenario 5: a no-change resync of every cloud binding")
        reconciles = _reconciles(operator)
        operator.resync_now()
        resync_started = time.monotonic()
        while True:
            if _reconciles(operator) >= reconciles + count * len(types):
                break
            await asyncio.sleep(0.1)
        await _idle(operator)
        resync_seconds = time.monotonic() - resync_started
        again = _counts(proxy, keyvault)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for type_name in types:
        entry = result.setdefault(type_name, {})
        entry["first_sync"] = _per_binding(first[type_name], count)
        entry["resync"] = _per_binding(again[type_name], count)
        entry["resync_seconds"] = round(resync_seconds, 1)
        bench.say(
            f"scenario 5: {type_name}: {entry['first_sync']['calls_per_binding']} calls per "
            f"binding on the first sync, {entry['resync']['calls_per_binding']} on a resync"
        )


@contextlib.contextmanager
def _logs_to(path: Path) -> Iterator[None]:
    """This process's logs (the in-process operator's) go to a file, as JSON."""
    from certauto_core.observability.logging import configure_logging

    with path.open("a") as stream:
        handler = configure_logging("info", "json", stream=stream)
        try:
            yield
        finally:
            logging.getLogger().removeHandler(handler)


async def _ready_or_failed(operator: Operator, task: asyncio.Task[None]) -> None:
    ready = asyncio.ensure_future(operator.ready.wait())
    done, _ = await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
        raise RuntimeError("the in-process operator stopped before its caches synced")


async def _idle(operator: Operator, quiet: float = 1.0) -> None:
    while True:
        await operator.queue.wait_idle()
        await asyncio.sleep(quiet)
        if operator.queue.processing() == 0 and operator.queue.ready() == 0:
            return


def _reconciles(operator: Operator) -> float:
    registry = operator.metrics.registry
    return sum(
        registry.get_sample_value("certauto_reconcile_total", {"result": result}) or 0.0
        for result in ("ok", "error")
    )


def _counts(proxy: Any, keyvault: Any) -> dict[str, Counter[str]]:
    acm: Counter[str] = Counter(
        record.operation or "(none)" for record in proxy.records if not record.injected
    )
    akv: Counter[str] = Counter(
        _kv_operation(call.method, call.path) + ("" if call.authorized else " (401 challenge)")
        for call in keyvault.calls
    )
    return {"aws-acm": acm, "azure-key-vault": akv}
