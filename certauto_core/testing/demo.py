"""The demo: CertAuto end to end on this machine (``nox -s demo``).

``python -m certauto_core.testing.demo [--kubeconfig PATH] [--exit-when-ready]``

1. Builds (once, into the cache) and starts etcd + kube-apiserver on 127.0.0.1, unless
   ``--kubeconfig`` points it at an existing cluster.
2. Starts the emulators on 127.0.0.1: moto's ACM, and CertAuto's hand-written fake Key
   Vault (HTTPS with a throwaway CA; the Lowkey Vault app jar is not on Maven Central).
3. Installs the CertificateBinding CRD and cert-manager's CRDs.
4. Runs the operator in this process with every installed destination plugin.
5. Generates the source TLS Secrets the examples name (a private key is never committed)
   and applies ``examples/*.yaml`` in name order, with the emulators' addresses filled in
   for ``${ACM_ENDPOINT_URL}`` and ``${KEY_VAULT_URL}``.
6. Waits until every binding is Ready, checks each destination on its own (the copies'
   certificates, what ACM and the vault serve), prints where each certificate landed,
   then follows status changes until Ctrl-C; ``--exit-when-ready`` stops right there.
7. Tears everything down: no process it started outlives it. On an existing cluster it
   deletes the objects it created (bindings first, while the operator still runs).

The Key Vault plugin learns the fake vault's CA and gets a static token through its
embedding hook (:class:`certauto_akv.AkvSettings`): this process registers its own
``azure-key-vault`` record and blocks the entry point's production one with
``CERTAUTO_BLOCK_PLUGINS``. Nothing in a binding's config or the operator's deployment
can turn TLS verification off.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import importlib
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, TextIO, TypeVar

import yaml
from cryptography import x509

from certauto_core.certs.info import sha256_fingerprint
from certauto_core.kube.errors import ApiError, ConflictError, NotFoundError
from certauto_core.kube.resources import (
    CERTIFICATE_BINDINGS,
    NAMESPACES,
    SECRETS,
    Resource,
)

# The heavy modules (moto, the Azure and AWS SDKs, the Kubernetes client, the operator)
# are imported where they are first used, so the first progress line shows at once.
if TYPE_CHECKING:
    from certauto_core.kube.client import KubeClient
    from certauto_core.plugins.manager import PluginManager
    from certauto_core.testing.keyvault import FakeKeyVaultServer

JSON = dict[str, Any]
T = TypeVar("T")

_HEAVY_MODULES: Final = (
    "certauto_core.kube.client",
    "certauto_core.observability.logging",
    "certauto_core.operator",
    "certauto_core.plugins.manager",
    "certauto_core.testing.aws",
    "certauto_core.testing.certs",
    "certauto_core.testing.keyvault",
    "certauto_core.testing.kube",
    "certauto_core.testing.operator",
    "aiobotocore.session",
    "azure.keyvault.certificates.aio",
)
"""Imported in a step of their own, before the event loop runs (they take seconds)."""
__all__ = ["DemoError", "Progress", "main"]

DNS_SUFFIX: Final = "demo.certauto.test"
"""Generated source certificates are for ``<secret name without -tls>.demo.certauto.test``."""
MOTO_ACCESS_KEY: Final = "testing"  # moto's dummy key pair, as in examples/20-aws-acm.yaml
MOTO_SECRET_KEY: Final = "testing"  # noqa: S105 - a dummy credential for the emulator
READY_POLL: Final = 0.5
STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Each stops the demo cleanly (SIGHUP: the terminal went away)."""
_PLACEHOLDER: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_KINDS: Final[Mapping[tuple[str, str], Resource]] = {
    ("v1", "Namespace"): NAMESPACES,
    ("v1", "Secret"): SECRETS,
    (CERTIFICATE_BINDINGS.api_version, "CertificateBinding"): CERTIFICATE_BINDINGS,
}
_CERT_MANAGER_PROBE: Final = "certificates.cert-manager.io"
_CRDS: Final = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class DemoError(RuntimeError):
    """Something the person running the demo must fix; the message says what."""


# ---------------------------------------------------------------------------- progress
@dataclass
class Step:
    """One numbered step; set :attr:`detail` to show a result on its closing line."""

    number: str
    title: str
    started: float = field(default_factory=time.monotonic)
    detail: str = ""
    next_heartbeat: float = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Progress:
    """Numbered steps on ``stream``: a live spinner on a terminal, plain lines elsewhere.

    Plain lines (a pipe, CI, or a step that prints on its own, such as a build) say
    every ``heartbeat`` seconds that the step is still running.
    """

    SPINNER: Final = "|/-\\"

    def __init__(self, stream: TextIO, total: int, *, heartbeat: float = 20.0) -> None:
        self.stream = stream
        self.total = total
        self.heartbeat = heartbeat
        self.terminal = stream.isatty()
        self._index = 0
        self._lock = threading.Lock()
        self._live_line = False

    def say(self, text: str = "") -> None:
        """Print a whole line (ending any live spinner line first)."""
        with self._lock, contextlib.suppress(OSError):  # e.g. a closed pipe: output is best-effort
            self._end_live()
            self.stream.write(text + "\n")
            self.stream.flush()

    def _end_live(self) -> None:
        if self._live_line:
            self.stream.write("\r\x1b[2K")
            self._live_line = False

    def _begin(self, title: str, live: bool) -> Step:
        self._index += 1
        step = Step(f"[{self._index}/{self.total}]", title, next_heartbeat=self.heartbeat)
        if not live:
            self.say(f"{step.number} {title} ...")
        return step

    def _tick(self, step: Step, live: bool, count: int) -> None:
        elapsed = step.elapsed()
        detail = f" {step.detail}" if step.detail else ""
        if live:
            spin = self.SPINNER[count % len(self.SPINNER)]
            line = f"{step.number} {step.title} {spin} {elapsed:.0f}s{detail}"
            width = shutil.get_terminal_size().columns - 1  # never wrap: \r redraws one line
            with self._lock, contextlib.suppress(OSError):
                self.stream.write("\r\x1b[2K" + line[:width])
                self.stream.flush()
                self._live_line = True
        elif elapsed >= step.next_heartbeat:
            step.next_heartbeat += self.heartbeat
            self.say(f"{' ' * len(step.number)} ... still at it ({elapsed:.0f}s){detail}")

    def _end(self, step: Step, error: BaseException | None) -> None:
        took = f"({step.elapsed():.1f}s)"
        if error is None:
            detail = f": {step.detail}" if step.detail else ""
            self.say(f"{step.number} {step.title}{detail} {took}")
        elif isinstance(error, KeyboardInterrupt | asyncio.CancelledError):
            self.say(f"{step.number} {step.title}: interrupted {took}")
        else:
            self.say(f"{step.number} {step.title}: FAILED {took}")

    def _live(self, chatty: bool) -> bool:
        return self.terminal and not chatty

    @contextlib.contextmanager
    def step(self, title: str, *, chatty: bool = False) -> Iterator[Step]:
        """A blocking step (run from synchronous code); a thread keeps the display going.

        ``chatty``: the step prints lines of its own, so no spinner is drawn over them.
        """
        live = self._live(chatty)
        step = self._begin(title, live)
        stop = threading.Event()

        def ticker() -> None:
            count = 0
            while not stop.wait(0.1 if live else 1.0):
                count += 1
                self._tick(step, live, count)

        thread = threading.Thread(target=ticker, name="demo-progress", daemon=True)
        thread.start()
        error: BaseException | None = None
        try:
            yield step
        except BaseException as caught:
            error = caught
            raise
        finally:
            stop.set()
            thread.join()
            self._end(step, error)

    @contextlib.asynccontextmanager
    async def astep(self, title: str) -> AsyncIterator[Step]:
        """A step of the event loop; a task keeps the display going."""
        live = self._live(False)
        step = self._begin(title, live)

        async def ticker() -> None:
            count = 0
            while True:
                await asyncio.sleep(0.1 if live else 1.0)
                count += 1
                self._tick(step, live, count)

        task = asyncio.create_task(ticker(), name="demo-progress")
        error: BaseException | None = None
        try:
            yield step
        except BaseException as caught:
            error = caught
            raise
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._end(step, error)


# ---------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Options:
    kubeconfig: Path | None
    context: str | None
    examples: Path
    exit_when_ready: bool
    ready_timeout: float


def _default_examples() -> Path:
    """``./examples`` when run from the repository, else the one beside this package."""
    for candidate in (Path.cwd() / "examples", Path(__file__).resolve().parents[2] / "examples"):
        if candidate.is_dir():
            return candidate
    return Path.cwd() / "examples"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m certauto_core.testing.demo",
        description=(
            "CertAuto end to end: a local control plane (or --kubeconfig), the ACM and Key "
            "Vault emulators, the operator with every installed plugin, and the bindings in "
            "examples/. Runs until Ctrl-C."
        ),
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="use this existing cluster instead of starting a local control plane "
        "(it must not run CertAuto already; the demo deletes what it created on exit)",
    )
    parser.add_argument("--context", help="kubeconfig context (with --kubeconfig)")
    parser.add_argument(
        "--examples",
        type=Path,
        default=None,
        help="folder of example manifests (default: ./examples)",
    )
    parser.add_argument(
        "--exit-when-ready",
        action="store_true",
        help="print the table and stop once every binding is Ready (exit 1 if one is not)",
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=180.0,
        help="seconds to wait for every binding to be Ready (default 180)",
    )
    return parser


# ---------------------------------------------------------------------------- manifests
@dataclass(frozen=True)
class Manifest:
    """One document of an example file, placeholders filled in."""

    source: str
    body: JSON

    @property
    def resource(self) -> Resource:
        key = (str(self.body.get("apiVersion")), str(self.body.get("kind")))
        try:
            return _KINDS[key]
        except KeyError:
            known = ", ".join(f"{kind} ({api})" for api, kind in _KINDS)
            raise DemoError(
                f"{self.source}: the demo applies only {known}, not {key[1]} ({key[0]})"
            ) from None

    @property
    def namespace(self) -> str | None:
        value = self.body.get("metadata", {}).get("namespace")
        return str(value) if value else None

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def is_binding(self) -> bool:
        return self.body.get("kind") == "CertificateBinding"

    @property
    def rank(self) -> int:
        """Apply order: namespaces, then everything else, then bindings."""
        if self.body.get("kind") == "Namespace":
            return 0
        return 2 if self.is_binding else 1


def load_examples(directory: Path, values: Mapping[str, str]) -> list[Manifest]:
    """The documents of ``directory/*.yaml`` in name order, ``${NAME}`` filled from ``values``."""
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise DemoError(f"no example manifests (*.yaml) in {directory}")
    manifests: list[Manifest] = []
    for path in files:
        text = path.read_text()

        def fill(match: re.Match[str], path: Path = path) -> str:
            name = match.group(1)
            if name not in values:
                known = ", ".join(f"${{{key}}}" for key in sorted(values))
                raise DemoError(f"{path.name}: unknown placeholder ${{{name}}} (known: {known})")
            return values[name]

        for document in yaml.safe_load_all(_PLACEHOLDER.sub(fill, text)):
            if not document:
                continue
            if not isinstance(document, dict):
                raise DemoError(f"{path.name}: a document is not a mapping")
            manifest = Manifest(path.name, document)
            if manifest.resource.namespaced and not manifest.namespace:
                raise DemoError(f"{path.name}: {manifest.name} needs metadata.namespace")
            manifests.append(manifest)
    return manifests


@dataclass(frozen=True)
class Created:
    resource: Resource
    namespace: str | None
    name: str


async def apply(kube: KubeClient, manifest: Manifest) -> Created | None:
    """Create the object, or merge-patch it over an existing one; return it if created."""
    resource = manifest.resource
    namespace = manifest.namespace if resource.namespaced else None
    body = dict(manifest.body)
    try:
        await kube.create(resource.path(namespace), body)
        return Created(resource, namespace, manifest.name)
    except ConflictError:
        patch = {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
        await kube.merge_patch(resource.path(namespace, manifest.name), patch)
        return None


# ---------------------------------------------------------------------------- certificates
@dataclass(frozen=True)
class SourceCertificate:
    namespace: str
    name: str
    dns_name: str
    data: dict[str, bytes]
    fingerprint: str


def issue_source_certificates(refs: Sequence[tuple[str, str]]) -> list[SourceCertificate]:
    """A fresh key and certificate per source Secret, from one throwaway demo CA (blocking)."""
    from certauto_core.testing.certs import CertFactory

    factory = CertFactory(organization="CertAuto Demo")
    root = factory.root_ca("CertAuto Demo Root CA", fresh_key=True)
    intermediate = factory.intermediate_ca(root, "CertAuto Demo Issuing CA", fresh_key=True)
    issued: list[SourceCertificate] = []
    for namespace, name in refs:
        dns_name = f"{name.removesuffix('-tls')}.{DNS_SUFFIX}"
        leaf = factory.leaf(intermediate, [dns_name], fresh_key=True)
        issued.append(
            SourceCertificate(
                namespace, name, dns_name, leaf.secret_data(ca=root), leaf.fingerprint
            )
        )
    return issued


async def put_tls_secret(kube: KubeClient, source: SourceCertificate) -> Created | None:
    from certauto_core.testing.certs import tls_secret_manifest

    body = tls_secret_manifest(
        source.name,
        source.namespace,
        source.data,
        annotations={"certauto-demo/generated": "a throwaway demo certificate and key"},
    )
    try:
        await kube.create(SECRETS.path(source.namespace), body)
        return Created(SECRETS, source.namespace, source.name)
    except ConflictError:
        current = await kube.get(SECRETS.path(source.namespace, source.name))
        current["data"] = body["data"]
        await kube.replace(SECRETS.path(source.namespace, source.name), current)
        return None


def first_certificate_fingerprint(pem: bytes) -> str | None:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        return None
    return sha256_fingerprint(certificates[0]) if certificates else None


# ---------------------------------------------------------------------------- emulators
@dataclass
class Emulators:
    """Where the demo's ACM and Key Vault are, and how to check what they hold."""

    acm_endpoint: str
    vault: FakeKeyVaultServer

    @property
    def placeholders(self) -> dict[str, str]:
        return {"ACM_ENDPOINT_URL": self.acm_endpoint, "KEY_VAULT_URL": self.vault.vault_url}

    async def acm_fingerprint(self, arn: str) -> str | None:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import AioSession

        session = AioSession()
        config = AioConfig(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10)
        async with session.create_client(
            "acm",
            region_name=arn.split(":")[3],
            endpoint_url=self.acm_endpoint,
            aws_access_key_id=MOTO_ACCESS_KEY,
            aws_secret_access_key=MOTO_SECRET_KEY,
            config=config,
        ) as client:
            answer = await client.get_certificate(CertificateArn=arn)
        return first_certificate_fingerprint(str(answer["Certificate"]).encode())

    async def vault_fingerprint(self, certificate_id: str) -> str | None:
        from azure.keyvault.certificates.aio import CertificateClient

        from certauto_core.testing.keyvault import StaticTokenCredential

        vault_url, _, rest = certificate_id.partition("/certificates/")
        name, _, version = rest.partition("/")
        async with (
            StaticTokenCredential() as credential,
            CertificateClient(
                vault_url,
                credential,
                connection_verify=str(self.vault.ca_path),
                verify_challenge_resource=False,
                retry_total=0,
            ) as client,
        ):
            certificate = await client.get_certificate_version(name, version)
        return hashlib.sha256(bytes(certificate.cer)).hexdigest() if certificate.cer else None


def _demo_key_vault_plugin(emulators: Emulators) -> tuple[object, str] | None:
    """An in-process plugin registering ``azure-key-vault`` with the fake vault's CA and a
    static token, and the plugin's version; ``None`` when the plugin is not installed."""
    try:
        import certauto_akv
        from certauto_akv import AkvSettings, CredentialRequest
        from certauto_akv.plugin import destination_type
    except ImportError:
        return None
    from azure.core.credentials_async import AsyncTokenCredential

    from certauto_core.plugins.contract import DestinationType
    from certauto_core.plugins.hookspecs import hookimpl
    from certauto_core.testing.keyvault import StaticTokenCredential

    def credential(request: CredentialRequest) -> AsyncTokenCredential:
        return StaticTokenCredential()

    settings = AkvSettings(
        credential_factory=credential,
        client_options={
            "connection_verify": str(emulators.vault.ca_path),
            "verify_challenge_resource": False,
        },
        polling_interval=0.2,
    )
    record = destination_type(settings)

    class DemoKeyVault:
        @hookimpl
        def certauto_destination_types(self) -> list[DestinationType]:
            return [record]

    return DemoKeyVault(), certauto_akv.__version__


def load_plugins(emulators: Emulators) -> PluginManager:
    """Every installed plugin, the Key Vault one with the demo's settings."""
    from certauto_core.plugins.manager import BLOCK_PLUGINS_ENV, PluginManager

    manager = PluginManager()
    demo_akv = _demo_key_vault_plugin(emulators)
    previous = os.environ.get(BLOCK_PLUGINS_ENV)
    if demo_akv is not None:
        os.environ[BLOCK_PLUGINS_ENV] = ",".join(filter(None, (previous, "certauto-akv")))
    try:
        manager.load_entry_points()
    finally:
        if previous is None:
            os.environ.pop(BLOCK_PLUGINS_ENV, None)
        else:
            os.environ[BLOCK_PLUGINS_ENV] = previous
    if demo_akv is not None:
        plugin, version = demo_akv
        manager.register(
            plugin,
            name="certauto-akv (demo settings)",
            distribution="certauto-akv",
            version=version,
        )
    return manager


# ---------------------------------------------------------------------------- status
@dataclass(frozen=True)
class Row:
    binding: str
    ready: str
    destination: str
    type: str
    state: str
    landed: str
    checked: str


def _ready(binding: JSON) -> tuple[bool, str]:
    """(Ready, reason or message) for a binding read back from the API server."""
    status = binding.get("status") or {}
    current = status.get("observedGeneration") == binding["metadata"].get("generation")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            ok = condition.get("status") == "True" and current
            return ok, str(condition.get("message") or condition.get("reason") or "")
    return False, "not reconciled yet"


def where_it_landed(entry: JSON) -> str:
    """A destination's ``externalID`` told the way a person reads it."""
    external = str(entry.get("externalID") or "")
    if not external:
        return str(entry.get("message") or "-")[:100]
    kind = entry.get("type")
    if kind == "reflector":
        return "namespaces " + ", ".join(sorted(part for part in external.split(",") if part))
    if kind == "aws-acm":
        return external
    if kind == "azure-key-vault":
        _, _, rest = external.partition("/certificates/")
        name, _, version = rest.partition("/")
        return f"certificate {name}, version {version}"
    return external


async def check_destination(
    kube: KubeClient, emulators: Emulators, binding: str, entry: JSON
) -> str:
    """Look in the destination itself: does it hold the certificate status says it does?"""
    expected = entry.get("syncedFingerprint")
    external = str(entry.get("externalID") or "")
    if not expected or not external:
        return "-"
    kind = entry.get("type")
    try:
        async with asyncio.timeout(20):
            if kind == "reflector":
                namespaces = [part for part in external.split(",") if part]
                good = 0
                for namespace in namespaces:
                    found = await kube.get(
                        SECRETS.path(namespace), labelSelector="app.kubernetes.io/managed-by"
                    )
                    for item in found.get("items") or []:
                        annotations = item["metadata"].get("annotations") or {}
                        if (
                            annotations.get("certauto.sanorg.in/binding") == binding
                            and annotations.get("certauto.sanorg.in/destination") == entry["name"]
                        ):
                            crt = base64.b64decode((item.get("data") or {}).get("tls.crt", ""))
                            if first_certificate_fingerprint(crt) == expected:
                                good += 1
                if good == len(namespaces):
                    return f"yes, {good} copies"
                return f"NO: {good} of {len(namespaces)} copies hold it"
            if kind == "aws-acm":
                served = await emulators.acm_fingerprint(external)
                return "yes, ACM serves it" if served == expected else "NO: ACM serves another"
            if kind == "azure-key-vault":
                stored = await emulators.vault_fingerprint(external)
                return (
                    "yes, the vault has it" if stored == expected else "NO: the vault has another"
                )
    except Exception as error:  # a check that fails is reported, not fatal
        return f"could not check: {type(error).__name__}: {error}"[:120]
    return "-"


async def status_rows(
    kube: KubeClient, emulators: Emulators, bindings: Sequence[Manifest]
) -> tuple[list[Row], int]:
    """The table's rows, and how many bindings are Ready."""
    rows: list[Row] = []
    ready_count = 0
    for manifest in bindings:
        key = manifest.key
        try:
            obj = await kube.get(CERTIFICATE_BINDINGS.path(manifest.namespace, manifest.name))
        except NotFoundError:
            rows.append(Row(key, "Missing", "-", "-", "-", "-", "-"))
            continue
        ready, _ = _ready(obj)
        ready_count += ready
        entries = (obj.get("status") or {}).get("destinations") or []
        if not entries:
            rows.append(Row(key, str(ready), "-", "-", "-", "no destination status", "-"))
        for index, entry in enumerate(entries):
            rows.append(
                Row(
                    key if index == 0 else "",
                    str(ready) if index == 0 else "",
                    str(entry.get("name")),
                    str(entry.get("type")),
                    str(entry.get("state")),
                    where_it_landed(entry),
                    await check_destination(kube, emulators, key, entry),
                )
            )
    return rows, ready_count


def format_table(rows: Sequence[Row]) -> str:
    header = Row("BINDING", "READY", "DESTINATION", "TYPE", "STATE", "WHERE IT LANDED", "CHECKED")
    table = [header, *rows]
    columns = list(zip(*(tuple(vars(row).values()) for row in table), strict=True))
    widths = [max(len(str(cell)) for cell in column) for column in columns]
    lines = []
    for row in table:
        cells = [
            str(cell).ljust(width) for cell, width in zip(vars(row).values(), widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


async def wait_until_ready(
    kube: KubeClient, bindings: Sequence[Manifest], timeout: float, step: Step
) -> bool:
    """Poll until every binding is Ready (True) or ``timeout``; keep ``step.detail`` current."""
    deadline = time.monotonic() + timeout
    while True:
        ready: list[str] = []
        waiting: list[str] = []
        for manifest in bindings:
            try:
                obj = await kube.get(CERTIFICATE_BINDINGS.path(manifest.namespace, manifest.name))
            except NotFoundError:
                waiting.append(f"{manifest.key} (missing)")
                continue
            ok, why = _ready(obj)
            (ready if ok else waiting).append(manifest.key if ok else f"{manifest.key} ({why})")
        step.detail = f"{len(ready)}/{len(bindings)} Ready"
        if not waiting:
            return True
        if time.monotonic() > deadline:
            step.detail += "; not Ready: " + "; ".join(waiting)
            return False
        await asyncio.sleep(READY_POLL)


async def follow(kube: KubeClient, bindings: Sequence[Manifest], progress: Progress) -> None:
    """Print every change of a destination's state or place, until cancelled."""
    seen: dict[tuple[str, str], tuple[str, str, str]] = {}
    first = True
    while True:
        for manifest in bindings:
            try:
                obj = await kube.get(CERTIFICATE_BINDINGS.path(manifest.namespace, manifest.name))
            except ApiError:
                continue
            for entry in (obj.get("status") or {}).get("destinations") or []:
                key = (manifest.key, str(entry.get("name")))
                fingerprint = str(entry.get("syncedFingerprint") or "")[:16]
                now = (str(entry.get("state")), where_it_landed(entry), fingerprint)
                if not first and seen.get(key) != now:
                    stamp = time.strftime("%H:%M:%S")
                    progress.say(
                        f"{stamp} {key[0]} {key[1]}: {now[0]}, certificate sha256 "
                        f"{fingerprint or '-'}..., {now[1]}"
                    )
                seen[key] = now
        first = False
        await asyncio.sleep(2.0)


# ---------------------------------------------------------------------------- the run
@dataclass
class Cluster:
    """The cluster the demo talks to: its kubeconfig, and whether the demo owns it."""

    kubeconfig: Path
    context: str | None
    local: bool


async def install_crds(kube: KubeClient, *, local: bool, step: Step) -> None:
    from certauto_core.testing.kube import apply_crds, cert_manager_crds
    from certauto_core.testing.operator import install_certauto_crd

    await install_certauto_crd(kube)
    present = True
    try:
        await kube.get(f"{_CRDS}/{_CERT_MANAGER_PROBE}")
    except NotFoundError:
        present = False
    if present and not local:
        step.detail = "CertificateBinding; cert-manager's were there already"
        return
    documents = await asyncio.to_thread(cert_manager_crds)
    await apply_crds(kube.api, documents)
    step.detail = f"CertificateBinding and {len(documents)} of cert-manager"


async def start_operator(
    cluster: Cluster, plugins: PluginManager, stack: contextlib.AsyncExitStack
) -> asyncio.Task[None]:
    """Run the operator in this process (as a task) until its caches are synced."""
    from certauto_core.operator import Operator, OperatorConfig

    config = OperatorConfig(
        kubeconfig=str(cluster.kubeconfig),
        context=cluster.context,
        workers=4,
        metrics_host="127.0.0.1",
        metrics_port=0,
        leader_election=False,
        watch_read_timeout=60,
    )
    operator = Operator(config, plugins=plugins)
    task = asyncio.create_task(operator.run(), name="operator")

    async def stop() -> None:
        task.cancel()
        await asyncio.wait({task})  # never raises: a failure was reported where it happened
        if not task.cancelled():
            task.exception()

    stack.push_async_callback(stop)
    ready = asyncio.ensure_future(operator.ready.wait())
    done, _ = await asyncio.wait({ready, task}, timeout=90, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ready
        if task in done:
            task.result()
            raise DemoError("the operator stopped before its caches synced")
        raise DemoError("the operator's caches did not sync in 90 s")
    return task


async def delete_created(kube: KubeClient, created: Sequence[Created], progress: Progress) -> None:
    """On a cluster the demo does not own: delete what it created, bindings first.

    Bindings carry CertAuto's finalizer, so they go while the operator still runs. Best
    effort: what cannot be deleted is named, and the rest is still tried.
    """
    if not created:
        return
    progress.say(f"Deleting the {len(created)} objects the demo created in the cluster ...")
    bindings = [c for c in created if c.resource is CERTIFICATE_BINDINGS]
    others = [c for c in created if c.resource is not CERTIFICATE_BINDINGS]

    async def delete(item: Created) -> None:
        path = item.resource.path(item.namespace, item.name)
        try:
            await kube.delete(path)
        except NotFoundError:
            pass
        except ApiError as error:
            progress.say(f"      could not delete {path}: {error}")

    for item in bindings:
        await delete(item)
    deadline = time.monotonic() + 30
    for item in bindings:
        while time.monotonic() < deadline:
            try:
                await kube.get(item.resource.path(item.namespace, item.name))
            except ApiError:
                break
            await asyncio.sleep(0.25)
    for item in reversed(others):
        await delete(item)


async def while_operator_runs(operator: asyncio.Task[None], work: Awaitable[T]) -> T:
    """Await ``work`` unless the operator stops first, which is an error worth showing."""
    job = asyncio.ensure_future(work)
    try:
        await asyncio.wait({job, operator}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not job.done():
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
    if job.done():
        return job.result()
    error = operator.exception() if not operator.cancelled() else None
    raise DemoError(f"the operator stopped unexpectedly: {error!r}") from error


@dataclass
class RunState:
    running: bool = False
    """Startup is over: everything is Ready and the demo follows changes."""


async def run_demo(
    options: Options, cluster: Cluster, acm_endpoint: str, progress: Progress, state: RunState
) -> int:
    """Everything on the event loop: returns the exit code."""
    from certauto_core.kube.client import KubeClient
    from certauto_core.observability.logging import configure_logging
    from certauto_core.testing.keyvault import FakeKeyVaultServer

    logdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="certauto-demo-"))
    log_path = logdir / "operator.log"
    log_stream = await asyncio.to_thread(log_path.open, "a", encoding="utf-8")
    handler = configure_logging("info", "text", stream=log_stream)
    for noisy in ("azure", "aiobotocore", "botocore", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    created: list[Created] = []
    kube: KubeClient | None = None
    succeeded = False
    try:
        async with contextlib.AsyncExitStack() as stack:
            async with progress.astep("Starting the fake Azure Key Vault (HTTPS)") as step:
                vault = FakeKeyVaultServer()
                await vault.start()
                stack.push_async_callback(vault.stop)
                step.detail = vault.vault_url
            emulators = Emulators(acm_endpoint, vault)

            kube = await KubeClient.connect(
                kubeconfig=str(cluster.kubeconfig), context=cluster.context, in_cluster=False
            )
            stack.push_async_callback(kube.aclose)

            async with progress.astep("Installing CRDs") as step:
                await install_crds(kube, local=cluster.local, step=step)

            async with progress.astep("Starting the operator with every installed plugin") as step:
                plugins = await asyncio.to_thread(load_plugins, emulators)  # imports them
                types = sorted(plugins.destination_types())
                operator = await start_operator(cluster, plugins, stack)
                step.detail = ", ".join(types) or "no destination plugin installed"
                for failure in plugins.failures:
                    progress.say(
                        f"      plugin problem: {failure.origin.describe()}: {failure.error}"
                    )

            manifests = await asyncio.to_thread(
                load_examples, options.examples, emulators.placeholders
            )
            bindings = [m for m in manifests if m.is_binding]
            for manifest in bindings:
                for destination in manifest.body.get("spec", {}).get("destinations") or []:
                    if destination.get("type") not in types:
                        progress.say(
                            f"      note: {manifest.key} needs destination type "
                            f"{destination.get('type')!r}, which no installed plugin provides "
                            "(uv sync --all-packages)"
                        )

            if not cluster.local:
                # Bindings have CertAuto's finalizer: delete them while the operator runs.
                stack.push_async_callback(delete_created, kube, created, progress)

            async with progress.astep(f"Applying {options.examples}") as step:
                for manifest in sorted(manifests, key=lambda m: m.rank):
                    if manifest.is_binding:
                        continue
                    made = await apply(kube, manifest)
                    if made is not None:
                        created.append(made)
                refs = sorted(
                    {
                        (str(m.namespace), str(m.body["spec"]["sourceSecretRef"]["name"]))
                        for m in bindings
                        if (m.body.get("spec") or {}).get("sourceSecretRef")
                    }
                )
                sources = await asyncio.to_thread(issue_source_certificates, refs)
                for source in sources:
                    made = await put_tls_secret(kube, source)
                    if made is not None:
                        created.append(made)
                for manifest in bindings:
                    made = await apply(kube, manifest)
                    if made is not None:
                        created.append(made)
                step.detail = (
                    f"{len(manifests)} objects, {len(bindings)} bindings; generated "
                    + ", ".join(f"{s.namespace}/{s.name} ({s.dns_name})" for s in sources)
                )

            async with progress.astep("Waiting until every binding is Ready") as step:
                all_ready = await while_operator_runs(
                    operator, wait_until_ready(kube, bindings, options.ready_timeout, step)
                )

            rows, ready_count = await status_rows(kube, emulators, bindings)
            progress.say()
            progress.say(format_table(rows))
            progress.say()
            if all_ready:
                progress.say(f"All {len(bindings)} bindings are Ready.")
            else:
                progress.say(
                    f"{ready_count} of {len(bindings)} bindings are Ready: the messages above "
                    "say why, the operator's log says more"
                )
            if options.exit_when_ready:
                succeeded = all_ready
                return 0 if all_ready else 1

            progress.say()
            progress.say("CertAuto is running. In another terminal, with kubectl for example:")
            progress.say(f"  kubectl --kubeconfig {cluster.kubeconfig} get certificatebindings -A")
            progress.say(
                f"  kubectl --kubeconfig {cluster.kubeconfig} get secrets -A "
                "-l app.kubernetes.io/managed-by=certauto"
            )
            progress.say(f"The operator's log: {log_path}")
            progress.say("Changes are printed below. Press Ctrl-C to stop and clean up.")
            succeeded, state.running = all_ready, True
            await while_operator_runs(operator, follow(kube, bindings, progress))
            return 0  # pragma: no cover - follow() returns only when cancelled
    except asyncio.CancelledError:
        succeeded = succeeded or not state.running  # a stop asked for, not a failure
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        await asyncio.to_thread(log_stream.close)
        if succeeded:
            await asyncio.to_thread(shutil.rmtree, logdir, True)
        else:
            progress.say(f"The operator's log is kept: {log_path}")


async def _main_async(
    options: Options, cluster: Cluster, acm_endpoint: str, progress: Progress
) -> int:
    """Run the demo; a stop signal cancels it (once: later ones are ignored).

    A stop while the demo runs (everything Ready, following changes) exits 0; a stop
    while it starts exits 130, like an interrupted command.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    signalled: list[int] = []
    state = RunState()

    def on_signal(signum: int) -> None:
        first = not signalled
        signalled.append(signum)
        if first:
            task.cancel()
            progress.say("\nStopping: tearing everything down ...")

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await run_demo(options, cluster, acm_endpoint, progress, state)
    except asyncio.CancelledError:
        if not signalled:
            raise
        return 0 if state.running else 130
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _unwind_on_signals() -> None:
    """Outside the event loop, every stop signal unwinds like Ctrl-C, so cleanup runs.

    SIGINT too, even when it was inherited as ignored (a background job of a script):
    the event loop's handlers honour it, so start-up and teardown must as well.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, _interrupt)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = Options(
        kubeconfig=args.kubeconfig,
        context=args.context,
        examples=(args.examples or _default_examples()).resolve(),
        exit_when_ready=args.exit_when_ready,
        ready_timeout=args.ready_timeout,
    )
    if not options.examples.is_dir():
        print(f"demo: no examples folder at {options.examples} (use --examples)", file=sys.stderr)
        return 2
    if options.kubeconfig is not None and not options.kubeconfig.is_file():
        print(f"demo: no kubeconfig at {options.kubeconfig}", file=sys.stderr)
        return 2
    local = options.kubeconfig is None
    progress = Progress(sys.stdout, total=(9 if local else 7))
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    _unwind_on_signals()
    try:
        with contextlib.ExitStack() as stack:
            cluster = _start_cluster(options, progress, stack)
            with progress.step("Loading the operator, the Kubernetes client and the cloud SDKs"):
                for module in _HEAVY_MODULES:
                    importlib.import_module(module)
            acm_endpoint = _start_moto(progress, stack)
            # The event loop installs its own handlers and removes them on the way out.
            code = asyncio.run(_main_async(options, cluster, acm_endpoint, progress))
            _unwind_on_signals()
            return code
    except KeyboardInterrupt:
        progress.say("Interrupted; everything it started is stopped.")
        return 130
    except DemoError as error:
        progress.say(f"demo: {error}")
        return 1
    except Exception:
        progress.say("demo failed:\n" + traceback.format_exc())
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _start_cluster(options: Options, progress: Progress, stack: contextlib.ExitStack) -> Cluster:
    """The local control plane (built first if needed), or the cluster of ``--kubeconfig``.

    Runs on the main thread before the event loop: the control plane's processes die
    with the thread that started them (``PR_SET_PDEATHSIG``), so that must be this one.
    """
    if options.kubeconfig is not None:
        return Cluster(options.kubeconfig.resolve(), options.context, local=False)
    from certauto_core.testing.controlplane.build import binaries, ensure_built
    from certauto_core.testing.controlplane.process import ControlPlane

    target = binaries()
    title = f"Building etcd {target.etcd_version} and kube-apiserver {target.kubernetes_version}"
    if target.present():
        title = "Finding the control plane binaries"
    with progress.step(title, chatty=not target.present()) as step:
        ensure_built(target)
        step.detail = str(target.directory)
    with progress.step("Starting etcd and kube-apiserver on 127.0.0.1") as step:
        plane = ControlPlane(binaries=target)
        stack.callback(_stopping(progress, "control plane", plane.stop))
        plane.start()
        step.detail = (
            f"{plane.server} (etcd pid {plane.pids[0]}, kube-apiserver pid {plane.pids[1]})"
        )
    return Cluster(plane.kubeconfig_path, None, local=True)


def _start_moto(progress: Progress, stack: contextlib.ExitStack) -> str:
    from certauto_core.testing.aws import MotoServer

    with progress.step("Starting the AWS ACM emulator (moto)") as step:
        moto = MotoServer()
        moto.start()
        stack.callback(moto.stop)
        step.detail = moto.endpoint_url
    return moto.endpoint_url


def _stopping(progress: Progress, what: str, stop: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        progress.say(f"Stopping the {what} ...")
        stop()

    return run


if __name__ == "__main__":
    sys.exit(main())
