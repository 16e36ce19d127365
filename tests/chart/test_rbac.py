"""The chart's RBAC, proven on a real API server with the real operator.

The operator here authenticates only as the chart's ServiceAccount, with a token from
the TokenRequest API, and is authorised only by the RBAC the chart renders (applied
to the test control plane, whose authoriser is RBAC). Nothing runs as admin but the
test's own set-up and checks, and playing cert-manager (no cert-manager controller
runs here: the test writes the issued Secret and the Certificate's status itself).

* **Enough**: with the chart's RBAC the operator runs a full reflector scenario
  (cluster-wide and namespaced): it wins the Lease, adopts an unlabelled source
  Secret, copies it into two namespaces, updates an outdated copy, deletes a stale one,
  reports Ready=True with Events, repairs a deleted copy, follows a namespace created
  later, and cleans up on deletion. And managed mode: it creates and updates the
  Certificate, notices cert-manager's progress, explains a missing issuer or a failed
  request, and deletes the Certificate and the issued Secret on deletion.
* **Nothing more**: for every verb the chart grants the operator, the same RBAC with
  only that verb removed is applied; a SubjectAccessReview confirms that verb, and only
  it, is denied; and a short, targeted run shows the operator failing the way the code
  path that uses the verb says it must, with the API server's own Forbidden message for
  exactly that verb and resource as evidence, plus the consequence a user would see.
  ``certificatebindings/finalizers`` is proven on a second control plane with the
  OwnerReferencesPermissionEnforcement admission plugin, the only place it matters.
  A test fails when the chart grants a verb without a proof, or the operator's code
  names an API resource the chart does not grant.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from kubernetes_asyncio import client

from certauto_core.engine.indexes import (
    BINDING_ANNOTATION,
    COPY_LABEL_VALUE,
    DESTINATION_ANNOTATION,
    WATCHED_LABEL,
)
from certauto_core.engine.managed import CERTIFICATE_REQUESTS, CLUSTER_ISSUERS
from certauto_core.kube.client import KubeClient
from certauto_core.kube.errors import NotFoundError
from certauto_core.kube.events import EventRecorder
from certauto_core.kube.resources import (
    CERTIFICATE_BINDINGS,
    CERTIFICATES,
    EVENTS,
    LEASES,
    NAMESPACES,
    SECRETS,
)
from certauto_core.operator import Operator, OperatorConfig
from certauto_core.plugins.manager import PluginManager
from certauto_core.testing.certs import CertFactory, IssuedCert, encode_secret_data
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.helm import (
    RBAC_KINDS,
    Grant,
    Helm,
    KubeApplier,
    find,
    grants_to,
    wildcards,
    without_verb,
)
from certauto_core.testing.kube import (
    Identities,
    api_client_from_kubeconfig,
    apply_crds,
    cert_manager_crds,
    temporary_namespace,
    wait_for,
)

CHART = Path(__file__).resolve().parents[2] / "charts" / "certauto"
LEASE_NAME = "certauto-leader"  # the chart's default leaderElection.leaseName
BINDING = "web"
SOURCE = "web-tls"
DESTINATION = "mirror"
MANAGED_BY = {"app.kubernetes.io/managed-by": "certauto"}
FINGERPRINT_ANNOTATION = "certauto.sanorg.in/fingerprint"
EVIDENCE_TIMEOUT = 15.0
"""The Forbidden evidence shows on the first attempt; this only bounds a broken run."""
QUIET_PERIOD = 2.0
"""How long a negative run waits for something that must not happen. With the full
RBAC each of those things happens within a fraction of a second (the positive tests
wait for them with a 30 s timeout), so 2 s without it is a clear difference."""

CLUSTER_SCOPED = frozenset({"namespaces", "clusterissuers"})
ISSUED = "web-issued"
"""The Secret name a managed binding asks cert-manager for."""

_cases = itertools.count()


# ---------------------------------------------------------------------------- logs


class _Records(logging.Handler):
    """Every log record of the run, to find the API server's Forbidden messages in."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@pytest.fixture
def logs() -> Iterator[_Records]:
    handler = _Records()
    root = logging.getLogger()
    certauto = logging.getLogger("certauto")
    level = certauto.level
    certauto.setLevel(logging.DEBUG)  # the managed-mode diagnostics log at debug
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        certauto.setLevel(level)


# ---------------------------------------------------------------------------- a stage


@dataclass
class Stage:
    """The chart's RBAC (or a reduced copy) installed for one test, and its namespaces."""

    admin: KubeClient
    applier: KubeApplier
    release: str
    namespace: str
    """The release's namespace: the ServiceAccount and the Lease."""
    app: str
    """Where the CertificateBinding and its source Secret are."""
    targets: tuple[str, str]
    """The reflector's two target namespaces."""
    spare: str
    """A namespace that is not a target (for a stale copy to delete)."""
    documents: list[dict[str, Any]] = field(default_factory=list)
    service_account: str = ""
    """The chart's ServiceAccount (named by the chart: <release>-certauto)."""
    kubeconfig: Path | None = None
    certs: CertFactory = field(default_factory=CertFactory)
    cluster_scoped: list[str] = field(default_factory=list)
    """Paths of cluster-scoped objects to delete when the test ends."""

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    def forbidden(self, verb: str, resource: str, group: str = "") -> str:
        """The API server's message when RBAC denies this ServiceAccount ``verb``."""
        return f'User "{self.user}" cannot {verb} resource "{resource}" in API group "{group}"'

    # -------------------------------------------------------------- scenario objects
    async def put_source(self, *, labelled: bool = False) -> IssuedCert:
        """An unlabelled (by default) kubernetes.io/tls Secret, as users create one."""
        leaf = self.certs.leaf(self.certs.intermediate_ca(self.certs.root_ca()), ["web.test"])
        labels = {WATCHED_LABEL: "true"} if labelled else {}
        await self.admin.create(
            SECRETS.path(self.app), _secret(SOURCE, self.app, leaf.secret_data(), labels, {})
        )
        return leaf

    async def put_copy_of_ours(self, namespace: str) -> str:
        """A copy marked as this binding's (an outdated one, or one left behind); its uid."""
        other = self.certs.self_signed_leaf(["old.test"])
        annotations = {
            BINDING_ANNOTATION: f"{self.app}/{BINDING}",
            DESTINATION_ANNOTATION: DESTINATION,
        }
        labels = {**MANAGED_BY, WATCHED_LABEL: COPY_LABEL_VALUE}
        created = await self.admin.create(
            SECRETS.path(namespace),
            _secret(BINDING, namespace, other.secret_data(), labels, annotations),
        )
        return str(created["metadata"]["uid"])

    async def create_binding(self, namespaces: tuple[str, ...] | None = None) -> None:
        await self.admin.create(
            CERTIFICATE_BINDINGS.path(self.app),
            {
                "apiVersion": "sanorg.in/v1alpha1",
                "kind": "CertificateBinding",
                "metadata": {"name": BINDING, "namespace": self.app},
                "spec": {
                    "sourceSecretRef": {"name": SOURCE},
                    "destinations": [
                        {
                            "name": DESTINATION,
                            "type": "reflector",
                            "config": {"namespaces": list(namespaces or self.targets)},
                        }
                    ],
                    "syncPolicy": {"deletionPolicy": "Delete", "retryInterval": "1s"},
                },
            },
        )

    async def binding(self) -> dict[str, Any]:
        return await self.admin.get(CERTIFICATE_BINDINGS.path(self.app, BINDING))

    async def secret(self, namespace: str, name: str = BINDING) -> dict[str, Any] | None:
        try:
            return await self.admin.get(SECRETS.path(namespace, name))
        except NotFoundError:
            return None

    async def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        async def ready() -> dict[str, Any] | None:
            obj = await self.binding()
            status = obj.get("status") or {}
            if status.get("observedGeneration") != obj["metadata"]["generation"]:
                return None
            for condition in status.get("conditions") or []:
                if condition["type"] == "Ready" and condition["status"] == "True":
                    return obj
            return None

        return await wait_for(ready, timeout=timeout, what=f"{self.app}/{BINDING} Ready=True")

    async def destination_message(self, containing: str) -> str:
        """Wait until the destination's status message contains ``containing``."""

        async def message() -> str | None:
            status = (await self.binding()).get("status") or {}
            for entry in status.get("destinations") or []:
                if entry["name"] == DESTINATION and containing in (entry.get("message") or ""):
                    return str(entry["message"])
            return None

        return await wait_for(
            message, timeout=EVIDENCE_TIMEOUT, what=f"destination message with {containing!r}"
        )

    async def events(self) -> list[dict[str, Any]]:
        listing = await self.admin.get(EVENTS.path(self.app))
        return [e for e in listing.get("items") or [] if e["involvedObject"].get("name") == BINDING]

    # -------------------------------------------------------------- managed mode
    async def cluster_issuer(self) -> str:
        """A ClusterIssuer that exists (no cert-manager controller runs: nobody issues)."""
        name = f"{self.release}-issuer-{len(self.cluster_scoped)}"
        await self.admin.create(
            CLUSTER_ISSUERS.path(),
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "ClusterIssuer",
                "metadata": {"name": name},
                "spec": {"selfSigned": {}},
            },
        )
        self.cluster_scoped.append(CLUSTER_ISSUERS.path(name=name))
        return name

    async def create_managed_binding(
        self,
        issuer: str,
        *,
        kind: str = "ClusterIssuer",
        name: str = BINDING,
        dns_names: tuple[str, ...] = ("web.test",),
        retry_interval: str = "1h",
    ) -> dict[str, Any]:
        """A managed binding; a long retryInterval, so only watches wake it up."""
        return await self.admin.create(
            CERTIFICATE_BINDINGS.path(self.app),
            {
                "apiVersion": "sanorg.in/v1alpha1",
                "kind": "CertificateBinding",
                "metadata": {"name": name, "namespace": self.app},
                "spec": {
                    "certificate": {
                        "secretName": ISSUED,
                        "issuerRef": {"name": issuer, "kind": kind},
                        "dnsNames": list(dns_names),
                    },
                    "destinations": [
                        {
                            "name": DESTINATION,
                            "type": "reflector",
                            "config": {"namespaces": list(self.targets)},
                        }
                    ],
                    "syncPolicy": {"deletionPolicy": "Delete", "retryInterval": retry_interval},
                },
            },
        )

    async def certificate(self, name: str = BINDING) -> dict[str, Any] | None:
        try:
            return await self.admin.get(CERTIFICATES.path(self.app, name))
        except NotFoundError:
            return None

    async def issue(self, binding_uid: str) -> str:
        """Play cert-manager: write the issued Secret its secretTemplate asks for."""
        leaf = self.certs.leaf(self.certs.intermediate_ca(self.certs.root_ca()), ["web.test"])
        labels = {WATCHED_LABEL: "true", "certauto.sanorg.in/binding-uid": binding_uid}
        await self.admin.create(
            SECRETS.path(self.app), _secret(ISSUED, self.app, leaf.secret_data(), labels, {})
        )
        return leaf.material().fingerprint

    async def mark_certificate_ready(self, name: str = BINDING) -> None:
        """Play cert-manager: report the Certificate Ready for its current generation."""
        certificate = await self.certificate(name)
        assert certificate is not None
        await self.admin.merge_patch(
            CERTIFICATES.path(self.app, name, "status"),
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "Ready",
                            "message": "Certificate is up to date and has not expired",
                            "observedGeneration": certificate["metadata"]["generation"],
                            "lastTransitionTime": "2026-01-01T00:00:00Z",
                        }
                    ],
                    "revision": 1,
                }
            },
        )

    async def failed_request(self, binding_uid: str, name: str = BINDING) -> None:
        """Play cert-manager: a CertificateRequest for revision 1 that failed."""
        key = self.certs.leaf(self.certs.root_ca(), ["web.test"]).private_key
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("web.test")]), False)
            .sign(key, hashes.SHA256())
        )
        request = f"{name}-1"
        await self.admin.create(
            CERTIFICATE_REQUESTS.path(self.app),
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "CertificateRequest",
                "metadata": {
                    "name": request,
                    "namespace": self.app,
                    "labels": {"certauto.sanorg.in/binding-uid": binding_uid},
                    "annotations": {
                        "cert-manager.io/certificate-name": name,
                        "cert-manager.io/certificate-revision": "1",
                    },
                },
                "spec": {
                    "request": base64.b64encode(
                        csr.public_bytes(serialization.Encoding.PEM)
                    ).decode(),
                    "issuerRef": {"name": "any", "kind": "ClusterIssuer"},
                },
            },
        )
        await self.admin.merge_patch(
            CERTIFICATE_REQUESTS.path(self.app, request, "status"),
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "False",
                            "reason": "Failed",
                            "message": "the issuer refused: policy violation",
                            "lastTransitionTime": "2026-01-01T00:00:00Z",
                        }
                    ],
                    "failureTime": "2026-01-01T00:00:00Z",
                }
            },
        )

    async def validated_reason(self, name: str = BINDING) -> str | None:
        """The Validated condition's reason once status speaks of the current generation."""
        obj = await self.admin.get(CERTIFICATE_BINDINGS.path(self.app, name))
        status = obj.get("status") or {}
        if status.get("observedGeneration") != obj["metadata"]["generation"]:
            return None
        for condition in status.get("conditions") or []:
            if condition["type"] == "Validated":
                return str(condition["reason"])
        return None

    async def wait_reason(self, reason: str, name: str = BINDING, timeout: float = 30) -> None:
        async def reached() -> bool:
            return await self.validated_reason(name) == reason

        await wait_for(reached, timeout=timeout, what=f"{self.app}/{name} Validated {reason}")

    async def access(self, grant: Grant) -> bool:
        """A SubjectAccessReview: may this ServiceAccount do ``grant`` where the test needs it?"""
        resource, _, subresource = grant.resource.partition("/")
        attributes: dict[str, str] = {
            "verb": grant.verb,
            "group": grant.api_group,
            "resource": resource,
            "subresource": subresource,
        }
        if resource == "leases":
            attributes["namespace"] = self.namespace
            if grant.verb != "create":
                attributes["name"] = LEASE_NAME
        elif resource not in CLUSTER_SCOPED:
            attributes["namespace"] = self.app
        review = await self.admin.create(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": self.user,
                    "groups": [
                        "system:serviceaccounts",
                        f"system:serviceaccounts:{self.namespace}",
                        "system:authenticated",
                    ],
                    "resourceAttributes": attributes,
                },
            },
        )
        return bool(review["status"].get("allowed"))


def _secret(
    name: str,
    namespace: str,
    data: Mapping[str, bytes],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": dict(annotations),
        },
        "data": encode_secret_data(data),
    }


MakeStage = Callable[..., Awaitable[Stage]]


@pytest_asyncio.fixture(loop_scope="session")
async def admin(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    kube = await KubeClient.connect(kubeconfig=str(control_plane.kubeconfig_path))
    try:
        yield kube
    finally:
        await kube.aclose()


def stage_factory(
    stack: AsyncExitStack,
    plane: ControlPlane,
    api: client.ApiClient,
    identities: Identities,
    admin: KubeClient,
    helm: Helm,
    directory: Path,
) -> MakeStage:
    """``await make(values=..., reduce=(group, resource, verb))``: a Stage on ``plane``.

    Everything it creates is removed when ``stack`` closes: its bindings (finalizers
    cleared, so no later operator of this session finds them), the cluster-scoped RBAC
    and issuers, and its namespaces.
    """
    applier = KubeApplier(admin, field_manager="certauto-rbac-test")
    cluster_scoped: list[str] = []
    namespaces: list[str] = []

    async def cleanup() -> None:
        for namespace in namespaces:
            listing = await admin.get(CERTIFICATE_BINDINGS.path(namespace))
            for item in listing.get("items") or []:
                path = CERTIFICATE_BINDINGS.path(namespace, item["metadata"]["name"])
                with contextlib.suppress(NotFoundError):
                    await admin.merge_patch(path, {"metadata": {"finalizers": None}})
                    await admin.delete(path)
        for path in cluster_scoped:
            with contextlib.suppress(NotFoundError):
                await admin.delete(path)

    stack.push_async_callback(cleanup)

    async def make(
        values: Mapping[str, Any] | None = None,
        *,
        reduce: tuple[str, str, str] | None = None,
        watch_targets: bool = False,
    ) -> Stage:
        names = []
        for prefix in ("rel", "app", "tgt-a", "tgt-b", "spare"):
            names.append(await stack.enter_async_context(temporary_namespace(api, prefix)))
        namespaces.append(names[1])
        release = f"ca-rbac-{next(_cases)}-{uuid.uuid4().hex[:6]}"
        stage = Stage(admin, applier, release, names[0], names[1], (names[2], names[3]), names[4])
        stage.cluster_scoped = cluster_scoped
        chosen: dict[str, Any] = {**(values or {})}
        if watch_targets:
            chosen["watchNamespaces"] = [stage.app, *stage.targets]
        documents = helm.template(CHART, values=chosen, release=release, namespace=stage.namespace)
        if reduce is not None:
            documents = without_verb(documents, *reduce)
        stage.documents = [d for d in documents if d["kind"] in RBAC_KINDS | {"ServiceAccount"}]
        [account] = find(documents, "ServiceAccount")
        stage.service_account = account["metadata"]["name"]
        for crd in find(documents, "CustomResourceDefinition"):
            await applier.apply(crd)  # the chart's own CRD
        for document in stage.documents:
            await applier.apply(document)
            if document["kind"].startswith("Cluster"):
                cluster_scoped.append(await applier.path(document))
        token = await identities.service_account_token(
            stage.namespace, stage.service_account, expiration_seconds=600
        )
        stage.kubeconfig = plane.write_kubeconfig(
            directory / f"{release}.kubeconfig", release, token=token
        )
        # RBAC takes effect through the API server's informers: wait for it.
        granted = grants_to(stage.documents, stage.service_account, stage.namespace)
        await wait_for(lambda: stage.access(granted[0]), what="the RBAC to take effect")
        return stage

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def make_stage(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    kube_identities: Identities,
    admin: KubeClient,
    helm: Helm,
    tmp_path: Path,
    cert_manager_crds_installed: list[str],
) -> AsyncIterator[MakeStage]:
    """Stages on the session's control plane (with cert-manager's CRDs installed)."""
    async with AsyncExitStack() as stack:
        yield stage_factory(stack, control_plane, kube_api, kube_identities, admin, helm, tmp_path)


# ---------------------------------------------------------------------------- the operator


@dataclass
class Running:
    operator: Operator
    task: asyncio.Task[None]

    def check_alive(self) -> None:
        if self.task.done():
            self.task.result()  # raises what ended the operator
            raise AssertionError("the operator stopped")

    def watcher(self, resource: str) -> Any:
        [found] = [w for w in self.operator.watchers if w.resource.plural == resource]
        return found

    @property
    def leader_identity(self) -> str:
        return self.operator.config.identity


@asynccontextmanager
async def operator_as(stage: Stage, *, namespaces: tuple[str, ...] = ()) -> AsyncIterator[Running]:
    """The real operator, authenticated as the stage's ServiceAccount, with short Lease timings."""
    assert stage.kubeconfig is not None
    plugins = PluginManager()
    plugins.load_entry_points()
    assert "reflector" in plugins.destination_types()
    config = OperatorConfig(
        kubeconfig=str(stage.kubeconfig),
        namespaces=namespaces,
        workers=4,
        metrics_host="127.0.0.1",
        metrics_port=0,
        resync_interval=timedelta(minutes=30),
        leader_election=True,
        lease_namespace=stage.namespace,
        lease_name=LEASE_NAME,
        identity=f"{stage.release}-0",
        lease_duration=3.0,
        renew_deadline=2.0,
        retry_period=0.5,
        watch_read_timeout=30,
    )
    operator = Operator(config, plugins=plugins)
    task = asyncio.create_task(operator.run(), name=f"operator-{stage.release}")
    try:
        yield Running(operator, task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def evidence(logs: _Records, running: Running, phrase: str) -> str:
    """Wait for a log message containing ``phrase`` (the API server's Forbidden text)."""

    async def found() -> str | None:
        running.check_alive()
        return next((m for m in logs.messages() if phrase in m), None)

    return await wait_for(found, timeout=EVIDENCE_TIMEOUT, what=f"a log with {phrase!r}")


async def leading(running: Running) -> bool:
    running.check_alive()
    elector = running.operator.elector
    return elector is not None and elector.is_leader


async def ready_and_leading(running: Running) -> None:
    await wait_for(
        lambda: _true(running.operator.ready.is_set() and running.operator.elector is not None),
        timeout=30,
        what="caches synced",
    )
    await wait_for(lambda: leading(running), timeout=30, what="leadership")


async def _true(value: bool) -> bool:
    return value


# ---------------------------------------------------------------------------- enough


@pytest.mark.timeout(180)
async def test_the_chart_rbac_is_enough_for_a_full_reflector_scenario(
    make_stage: MakeStage, logs: _Records
) -> None:
    stage = await make_stage()
    for grant in grants_to(stage.documents, stage.service_account, stage.namespace):
        assert await stage.access(grant), f"the chart should allow {grant.key}"
    assert wildcards(stage.documents) == []
    target_a, target_b = stage.targets
    leaf = await stage.put_source()  # unlabelled: the operator must get and label it
    fingerprint = leaf.material().fingerprint
    outdated_uid = await stage.put_copy_of_ours(target_a)  # must be updated in place
    await stage.put_copy_of_ours(stage.spare)  # left behind: must be deleted

    async with operator_as(stage) as running:
        await ready_and_leading(running)
        lease = await stage.admin.get(LEASES.path(stage.namespace, LEASE_NAME))
        assert lease["spec"]["holderIdentity"] == running.leader_identity

        await stage.create_binding()
        await stage.wait_ready()
        for namespace in stage.targets:
            copy = await stage.secret(namespace)
            assert copy is not None
            assert copy["metadata"]["annotations"][FINGERPRINT_ANNOTATION] == fingerprint
        updated = await stage.secret(target_a)
        assert updated is not None
        assert updated["metadata"]["uid"] == outdated_uid, "updated in place, not recreated"
        assert await stage.secret(stage.spare) is None, "the stale copy was deleted"
        source = await stage.secret(stage.app, SOURCE)
        assert source is not None
        assert source["metadata"]["labels"][WATCHED_LABEL] == "true"
        binding = await stage.binding()
        assert "certauto.sanorg.in/cleanup" in binding["metadata"]["finalizers"]
        events = await wait_for(stage.events, what="Events on the binding")
        assert "Synced" in {e["reason"] for e in events}

        # The Secret watch: a deleted copy is repaired.
        await stage.admin.delete(SECRETS.path(target_b, BINDING))
        await wait_for(lambda: stage.secret(target_b), timeout=30, what="the copy repaired")

        # The Namespace watch: a namespace created after start becomes a target.
        late = f"{stage.app}-late"
        await stage.admin.create(NAMESPACES.path(), {"metadata": {"name": late}})
        await wait_for(
            lambda: _true(late in running.operator.namespaces.names()),
            timeout=30,
            what="the new namespace in the operator's index",
        )
        await stage.admin.merge_patch(
            CERTIFICATE_BINDINGS.path(stage.app, BINDING),
            {
                "spec": {
                    "destinations": [
                        {
                            "name": DESTINATION,
                            "type": "reflector",
                            "config": {"namespaces": [*stage.targets, late]},
                        }
                    ]
                }
            },
        )
        await wait_for(lambda: stage.secret(late), timeout=30, what="a copy in the late namespace")
        await stage.wait_ready()

        # Deletion: copies removed (deletionPolicy Delete), then the finalizer released.
        await stage.admin.delete(CERTIFICATE_BINDINGS.path(stage.app, BINDING))

        async def gone() -> bool:
            try:
                await stage.binding()
            except NotFoundError:
                return True
            return False

        await wait_for(gone, timeout=30, what="the binding's finalizer released")
        for namespace in (*stage.targets, late):
            assert await stage.secret(namespace) is None
        await stage.admin.delete(NAMESPACES.path(name=late))

    forbidden = [m for m in logs.messages() if stage.user in m]
    assert forbidden == [], "the operator was denied something with the chart's RBAC"


@pytest.mark.timeout(120)
async def test_the_chart_rbac_lets_the_event_recorder_count_repeats(make_stage: MakeStage) -> None:
    """The positive side of the events:patch proof below: a repeat bumps ``count``."""
    stage = await make_stage()
    await stage.put_source()
    await stage.create_binding()
    assert stage.kubeconfig is not None
    kube = await KubeClient.connect(kubeconfig=str(stage.kubeconfig))
    try:
        binding = await stage.binding()
        async with EventRecorder(kube, component="certauto-rbac-test") as recorder:
            recorder.record(binding, "Warning", "Probe", "the same message twice")
            recorder.record(binding, "Warning", "Probe", "the same message twice")
        assert (recorder.created, recorder.bumped, recorder.failed) == (1, 1, 0)
    finally:
        await kube.aclose()
    [event] = [e for e in await stage.events() if e["reason"] == "Probe"]
    assert event["count"] == 2


@pytest.mark.timeout(180)
async def test_namespaced_mode_rbac_is_enough_and_stops_at_its_namespaces(
    make_stage: MakeStage, logs: _Records
) -> None:
    stage = await make_stage({"rbac": {"namespaced": True}}, watch_targets=True)
    assert find(stage.documents, "ClusterRole", stage.release) == []
    cluster = [
        g.key
        for g in grants_to(stage.documents, stage.service_account, stage.namespace)
        if g.namespace is None
    ]
    assert sorted(cluster) == [
        "certificates.cert-manager.io:list",
        "certificates.cert-manager.io:watch",
        "clusterissuers.cert-manager.io:get",
        "namespaces:list",
        "namespaces:watch",
        "secrets:list",
        "secrets:watch",
    ]
    await stage.put_source()
    watched = (stage.app, *stage.targets)
    async with operator_as(stage, namespaces=watched) as running:
        await ready_and_leading(running)
        await stage.create_binding()
        await stage.wait_ready()
        for namespace in stage.targets:
            assert await stage.secret(namespace) is not None
        assert [m for m in logs.messages() if stage.user in m] == []

        # A target outside watchNamespaces is refused by RBAC, and says so.
        await stage.admin.merge_patch(
            CERTIFICATE_BINDINGS.path(stage.app, BINDING),
            {
                "spec": {
                    "destinations": [
                        {
                            "name": DESTINATION,
                            "type": "reflector",
                            "config": {"namespaces": [*stage.targets, stage.spare]},
                        }
                    ]
                }
            },
        )
        message = await stage.destination_message(
            f"forbidden to create secrets in namespace {stage.spare}"
        )
        assert "RBAC" in message
        assert await stage.secret(stage.spare) is None


# ---------------------------------------------------------------------------- nothing more


@dataclass
class Proof:
    """What breaks without one verb, and how the test shows it."""

    grant: tuple[str, str, str]
    """(apiGroup, resource, verb)."""
    code_path: str
    """The code that uses the verb."""
    breaks: str
    """What a user notices when the verb is missing."""
    run: Callable[[Stage, _Records], Awaitable[None]]


async def _never_syncs(stage: Stage, logs: _Records, verb: str, resource: str, group: str) -> None:
    await stage.put_source()
    async with operator_as(stage) as running:
        await evidence(logs, running, stage.forbidden(verb, resource, group))
        await asyncio.sleep(QUIET_PERIOD)
        running.check_alive()
        assert running.watcher(resource.split("/")[0]).lists == 0
        assert not running.operator.ready.is_set(), "caches synced without the list"


async def _bindings_list(stage: Stage, logs: _Records) -> None:
    await _never_syncs(stage, logs, "list", "certificatebindings", "sanorg.in")


async def _secrets_list(stage: Stage, logs: _Records) -> None:
    await _never_syncs(stage, logs, "list", "secrets", "")


async def _namespaces_list(stage: Stage, logs: _Records) -> None:
    await _never_syncs(stage, logs, "list", "namespaces", "")


async def _bindings_watch(stage: Stage, logs: _Records) -> None:
    await stage.put_source()
    async with operator_as(stage) as running:
        await ready_and_leading(running)  # the list worked
        await evidence(logs, running, stage.forbidden("watch", "certificatebindings", "sanorg.in"))
        await stage.create_binding()  # created after the list: only a watch would bring it
        await asyncio.sleep(QUIET_PERIOD)
        assert running.operator.bindings.get(stage.app, BINDING) is None
        binding = await stage.binding()
        assert "finalizers" not in binding["metadata"]
        assert "status" not in binding


async def _secrets_watch(stage: Stage, logs: _Records) -> None:
    await stage.put_source()
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await evidence(logs, running, stage.forbidden("watch", "secrets"))
        await stage.create_binding()
        await stage.wait_ready()  # reads and its own writes do not need the watch...
        await stage.admin.delete(SECRETS.path(stage.targets[1], BINDING))
        await asyncio.sleep(QUIET_PERIOD)
        assert await stage.secret(stage.targets[1]) is None, "...but repairing a copy does"


async def _namespaces_watch(stage: Stage, logs: _Records) -> None:
    await stage.put_source()
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await evidence(logs, running, stage.forbidden("watch", "namespaces"))
        late = f"{stage.app}-late"
        await stage.admin.create(NAMESPACES.path(), {"metadata": {"name": late}})
        try:
            await stage.create_binding((stage.targets[0], late))
            message = await stage.destination_message("skipped missing or terminating namespaces")
            assert late in message
            assert await stage.secret(late) is None
            assert late not in running.operator.namespaces.names()
        finally:
            await stage.admin.delete(NAMESPACES.path(name=late))


async def _bindings_patch(stage: Stage, logs: _Records) -> None:
    await stage.put_source()
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await stage.create_binding()
        await evidence(logs, running, stage.forbidden("patch", "certificatebindings", "sanorg.in"))
        binding = await stage.binding()
        assert "finalizers" not in binding["metadata"], "no finalizer: deletion would orphan"
        assert "status" not in binding
        assert await stage.secret(stage.targets[0]) is None


async def _status_patch(stage: Stage, logs: _Records) -> None:
    await stage.put_source()
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await stage.create_binding()
        await evidence(
            logs, running, stage.forbidden("patch", "certificatebindings/status", "sanorg.in")
        )
        binding = await stage.binding()
        assert "certauto.sanorg.in/cleanup" in binding["metadata"]["finalizers"]
        assert "status" not in binding, "the work may be done, but nobody is told"


async def _secrets_get(stage: Stage, logs: _Records) -> None:
    await stage.put_source()  # unlabelled: the operator must read it to adopt it
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await stage.create_binding()
        await status_evidence(stage, running, stage.forbidden("get", "secrets"))
        await _not_adopted(stage)


async def _secrets_patch(stage: Stage, logs: _Records) -> None:
    await stage.put_source()
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await stage.create_binding()
        await status_evidence(stage, running, stage.forbidden("patch", "secrets"))
        await _not_adopted(stage)


async def status_evidence(stage: Stage, running: Running, phrase: str) -> str:
    """Wait for the binding's Validated condition to say Forbidden, quoting ``phrase``.

    A source the operator may not read or label is reported where the user looks:
    the binding's status, not only the operator's logs.
    """

    async def found() -> str | None:
        running.check_alive()
        obj = await stage.admin.get(CERTIFICATE_BINDINGS.path(stage.app, BINDING))
        for condition in (obj.get("status") or {}).get("conditions") or []:
            if condition["type"] == "Validated" and condition.get("reason") == "Forbidden":
                message = str(condition.get("message", ""))
                if phrase in message:
                    return message
        return None

    return await wait_for(
        found, timeout=EVIDENCE_TIMEOUT, what=f"Validated=False Forbidden with {phrase!r}"
    )


async def _not_adopted(stage: Stage) -> None:
    source = await stage.secret(stage.app, SOURCE)
    assert source is not None
    assert WATCHED_LABEL not in (source["metadata"].get("labels") or {})
    status = (await stage.binding()).get("status") or {}
    assert not [d for d in status.get("destinations") or [] if d.get("state") == "Synced"]
    assert await stage.secret(stage.targets[0]) is None


async def _secrets_create(stage: Stage, logs: _Records) -> None:
    await stage.put_source()
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await stage.create_binding()
        await stage.destination_message(
            f"forbidden to create secrets in namespace {stage.targets[0]}"
        )
        for namespace in stage.targets:
            assert await stage.secret(namespace) is None
        assert not await _is_ready(stage)


async def _secrets_update(stage: Stage, logs: _Records) -> None:
    await stage.put_source()
    uid = await stage.put_copy_of_ours(stage.targets[0])
    before = await stage.secret(stage.targets[0])
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await stage.create_binding()
        await stage.destination_message(
            f"forbidden to update secrets in namespace {stage.targets[0]}"
        )
        after = await stage.secret(stage.targets[0])
        assert before is not None
        assert after is not None
        assert (after["metadata"]["uid"], after["data"]) == (uid, before["data"]), "still outdated"
        assert not await _is_ready(stage)


async def _secrets_delete(stage: Stage, logs: _Records) -> None:
    await stage.put_source()
    await stage.put_copy_of_ours(stage.spare)
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await stage.create_binding()
        await stage.destination_message(f"forbidden to delete secrets in namespace {stage.spare}")
        assert await stage.secret(stage.spare) is not None, "the stale copy stays"
        assert not await _is_ready(stage)


async def _is_ready(stage: Stage) -> bool:
    conditions = ((await stage.binding()).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def _events_create(stage: Stage, logs: _Records) -> None:
    await stage.put_source()
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await stage.create_binding()
        await stage.wait_ready()  # events never block reconciling...
        await evidence(logs, running, stage.forbidden("create", "events"))
        assert await stage.events() == [], "...but nothing tells `kubectl describe` readers"


async def _events_patch(stage: Stage, logs: _Records) -> None:
    """The recorder bumps a repeat's ``count`` with a merge patch (kube/events.py).

    Repeats of one event within ten minutes do not happen in a short operator run, so
    this drives the operator's own EventRecorder, as the ServiceAccount, directly.
    """
    await stage.put_source()
    await stage.create_binding()
    assert stage.kubeconfig is not None
    kube = await KubeClient.connect(kubeconfig=str(stage.kubeconfig))
    try:
        binding = await stage.binding()
        async with EventRecorder(kube, component="certauto-rbac-test") as recorder:
            recorder.record(binding, "Warning", "Probe", "the same message twice")
            recorder.record(binding, "Warning", "Probe", "the same message twice")
        assert (recorder.created, recorder.bumped, recorder.failed) == (1, 0, 1)
    finally:
        await kube.aclose()
    assert [m for m in logs.messages() if stage.forbidden("patch", "events") in m]
    [event] = [e for e in await stage.events() if e["reason"] == "Probe"]
    assert event["count"] == 1, "the repeat was lost"


async def _never_leads(stage: Stage, logs: _Records, verb: str) -> None:
    await stage.put_source()
    async with operator_as(stage) as running:
        await evidence(logs, running, stage.forbidden(verb, "leases", "coordination.k8s.io"))
        await stage.create_binding()
        await asyncio.sleep(QUIET_PERIOD)
        assert not await leading(running)
        assert "finalizers" not in (await stage.binding())["metadata"], "nobody reconciles"


async def _leases_create(stage: Stage, logs: _Records) -> None:
    await _never_leads(stage, logs, "create")


async def _leases_get(stage: Stage, logs: _Records) -> None:
    await _never_leads(stage, logs, "get")


async def _leases_update(stage: Stage, logs: _Records) -> None:
    async with operator_as(stage) as running:
        # Creating the Lease makes it the leader once...
        await wait_for(lambda: leading(running), timeout=EVIDENCE_TIMEOUT, what="leadership")
        await evidence(logs, running, stage.forbidden("update", "leases", "coordination.k8s.io"))
        # ...and without renewals it stops leading within renew_deadline (2 s).
        await wait_for(
            lambda: _true(not running.operator.elector or not running.operator.elector.is_leader),
            timeout=EVIDENCE_TIMEOUT,
            what="stepping down",
        )
        assert any("could not renew the Lease" in m for m in logs.messages())
        await asyncio.sleep(QUIET_PERIOD)
        assert not await leading(running), "it never leads again"


PROOFS: list[Proof] = [
    Proof(
        ("sanorg.in", "certificatebindings", "list"),
        "operator.py: the CertificateBinding watch lists first",
        "the operator never becomes ready and reconciles nothing",
        _bindings_list,
    ),
    Proof(
        ("sanorg.in", "certificatebindings", "watch"),
        "operator.py: the CertificateBinding watch",
        "bindings created after start are never reconciled",
        _bindings_watch,
    ),
    Proof(
        ("sanorg.in", "certificatebindings", "patch"),
        "engine/reconciler.py: _add_finalizer / _finalize",
        "no finalizer, so nothing is synced and deletion cannot clean up",
        _bindings_patch,
    ),
    Proof(
        ("sanorg.in", "certificatebindings/status", "patch"),
        "engine/reconciler.py: _write_status",
        "status is never written (no Ready, no per-destination truth)",
        _status_patch,
    ),
    Proof(
        ("", "secrets", "get"),
        "engine/reconciler.py: _adopt_source reads an unlabelled source",
        "a sourceSecretRef Secret is never adopted: nothing syncs, status says Forbidden",
        _secrets_get,
    ),
    Proof(
        ("", "secrets", "list"),
        "operator.py: the label-selected Secret watch lists first",
        "the operator never becomes ready",
        _secrets_list,
    ),
    Proof(
        ("", "secrets", "watch"),
        "operator.py: the label-selected Secret watch",
        "deleted or edited copies (and source rotations) are never noticed",
        _secrets_watch,
    ),
    Proof(
        ("", "secrets", "create"),
        "certauto_reflector: _create",
        "no copies; the destination is Failed with a Forbidden message",
        _secrets_create,
    ),
    Proof(
        ("", "secrets", "update"),
        "certauto_reflector: _repair replaces an outdated copy",
        "outdated copies stay outdated (renewals never reach them)",
        _secrets_update,
    ),
    Proof(
        ("", "secrets", "patch"),
        "engine/reconciler.py: _adopt_source labels the source for the watch",
        "a sourceSecretRef Secret is never adopted: nothing syncs, status says Forbidden",
        _secrets_patch,
    ),
    Proof(
        ("", "secrets", "delete"),
        "certauto_reflector: _remove_copy (and retract with deletionPolicy Delete)",
        "copies in namespaces no longer selected are never removed",
        _secrets_delete,
    ),
    Proof(
        ("", "events", "create"),
        "kube/events.py: EventRecorder._create",
        "no Events on bindings",
        _events_create,
    ),
    Proof(
        ("", "events", "patch"),
        "kube/events.py: EventRecorder bumps the count of a repeat",
        "repeats within ten minutes are lost (count stays 1)",
        _events_patch,
    ),
    Proof(
        ("", "namespaces", "list"),
        "operator.py: the Namespace watch lists first",
        "the operator never becomes ready",
        _namespaces_list,
    ),
    Proof(
        ("", "namespaces", "watch"),
        "operator.py: the Namespace watch",
        "namespaces created after start are never targets",
        _namespaces_watch,
    ),
    Proof(
        ("coordination.k8s.io", "leases", "create"),
        "leader.py: _create",
        "no leader is ever elected; nothing is reconciled",
        _leases_create,
    ),
    Proof(
        ("coordination.k8s.io", "leases", "get"),
        "leader.py: _try_acquire_or_renew reads the Lease",
        "no leader is ever elected; nothing is reconciled",
        _leases_get,
    ),
    Proof(
        ("coordination.k8s.io", "leases", "update"),
        "leader.py: renewals and takeovers are a PUT",
        "the first leader steps down after renew_deadline and nobody leads again",
        _leases_update,
    ),
]


# ---------------------------------------------------------------------------- managed mode


async def _settled(running: Running) -> None:
    """The queue is idle and stayed idle for a moment: the last wake-up was handled."""
    queue = running.operator.queue
    for _ in range(100):
        await queue.wait_idle()
        await asyncio.sleep(0.3)
        if queue.processing() == 0 and queue.ready() == 0:
            return
    raise AssertionError("the operator never settled")


async def _issued_while_certificate_pending(stage: Stage, running: Running) -> None:
    """A managed binding whose Secret exists before its Certificate is reported Ready.

    The Secret watch has woken the binding (and found the Certificate not Ready) by the
    time this returns, so only the Certificate watch can wake it again afterwards.
    """
    issuer = await stage.cluster_issuer()
    binding = await stage.create_managed_binding(issuer)
    await wait_for(stage.certificate, what="the managed Certificate")
    await stage.wait_reason("WaitingForCertManager")
    await stage.issue(binding["metadata"]["uid"])
    await wait_for(
        lambda: _true(running.operator.secrets.source_data(stage.app, ISSUED) is not None),
        what="the issued Secret in the operator's index",
    )
    await _settled(running)
    assert await stage.validated_reason() == "WaitingForCertManager"


async def _certificates_get(stage: Stage, logs: _Records) -> None:
    issuer = await stage.cluster_issuer()
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await stage.create_managed_binding(issuer)
        await evidence(logs, running, stage.forbidden("get", "certificates", "cert-manager.io"))
        assert await stage.certificate() is None
        assert "status" not in await stage.binding()


async def _certificates_create(stage: Stage, logs: _Records) -> None:
    issuer = await stage.cluster_issuer()
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await stage.create_managed_binding(issuer)
        await evidence(logs, running, stage.forbidden("create", "certificates", "cert-manager.io"))
        assert await stage.certificate() is None, "no Certificate: nothing is ever issued"
        assert "status" not in await stage.binding()


async def _certificates_update(stage: Stage, logs: _Records) -> None:
    issuer = await stage.cluster_issuer()
    binding = await stage.create_managed_binding(issuer, dns_names=("new.test",))
    meta = binding["metadata"]
    # A Certificate this binding owns, from an older spec: the operator must replace it.
    await stage.admin.create(
        CERTIFICATES.path(stage.app),
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {
                "name": BINDING,
                "namespace": stage.app,
                "labels": {**MANAGED_BY, "certauto.sanorg.in/binding-uid": meta["uid"]},
                "ownerReferences": [
                    {
                        "apiVersion": "sanorg.in/v1alpha1",
                        "kind": "CertificateBinding",
                        "name": BINDING,
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "secretName": ISSUED,
                "issuerRef": {"name": issuer, "kind": "ClusterIssuer"},
                "dnsNames": ["old.test"],
            },
        },
    )
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await evidence(logs, running, stage.forbidden("update", "certificates", "cert-manager.io"))
        certificate = await stage.certificate()
        assert certificate is not None
        assert certificate["spec"]["dnsNames"] == ["old.test"], "the spec change never reaches it"


async def _certificates_delete(stage: Stage, logs: _Records) -> None:
    issuer = await stage.cluster_issuer()
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await stage.create_managed_binding(issuer)
        await wait_for(stage.certificate, what="the managed Certificate")
        await stage.admin.delete(CERTIFICATE_BINDINGS.path(stage.app, BINDING))
        await evidence(logs, running, stage.forbidden("delete", "certificates", "cert-manager.io"))
        binding = await stage.binding()
        assert binding["metadata"].get("deletionTimestamp")
        assert "certauto.sanorg.in/cleanup" in binding["metadata"]["finalizers"], "stuck deleting"
        assert await stage.certificate() is not None


async def _certificates_list_or_watch(stage: Stage, logs: _Records, verb: str) -> None:
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await evidence(logs, running, stage.forbidden(verb, "certificates", "cert-manager.io"))
        await _issued_while_certificate_pending(stage, running)
        await stage.mark_certificate_ready()
        await asyncio.sleep(QUIET_PERIOD)
        assert await stage.validated_reason() == "WaitingForCertManager", (
            "cert-manager's Ready is not noticed (until retryInterval, here 1h)"
        )


async def _certificates_list(stage: Stage, logs: _Records) -> None:
    await _certificates_list_or_watch(stage, logs, "list")


async def _certificates_watch(stage: Stage, logs: _Records) -> None:
    await _certificates_list_or_watch(stage, logs, "watch")


async def _missing_issuer(stage: Stage, logs: _Records, kind: str, resource: str) -> None:
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        await stage.create_managed_binding(f"{stage.release}-missing", kind=kind)
        await evidence(logs, running, stage.forbidden("get", resource, "cert-manager.io"))
        await stage.wait_reason("WaitingForCertManager")
        # With the verb: IssuerNotFound, naming the issuer (the positive test).


async def _issuers_get(stage: Stage, logs: _Records) -> None:
    await _missing_issuer(stage, logs, "Issuer", "issuers")


async def _clusterissuers_get(stage: Stage, logs: _Records) -> None:
    await _missing_issuer(stage, logs, "ClusterIssuer", "clusterissuers")


async def _certificaterequests_list(stage: Stage, logs: _Records) -> None:
    issuer = await stage.cluster_issuer()
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        binding = await stage.create_managed_binding(issuer, retry_interval="1s")
        await wait_for(stage.certificate, what="the managed Certificate")
        await stage.failed_request(binding["metadata"]["uid"])
        await evidence(
            logs, running, stage.forbidden("list", "certificaterequests", "cert-manager.io")
        )
        await asyncio.sleep(QUIET_PERIOD)  # two retries, each blind to the failed request
        assert await stage.validated_reason() == "WaitingForCertManager"


PROOFS += [
    Proof(
        ("cert-manager.io", "certificates", "get"),
        "engine/managed.py: _ensure reads the Certificate (and release on cleanup)",
        "no Certificate is ever made; the binding has no status",
        _certificates_get,
    ),
    Proof(
        ("cert-manager.io", "certificates", "create"),
        "engine/managed.py: _ensure creates the Certificate",
        "no Certificate, so nothing is ever issued",
        _certificates_create,
    ),
    Proof(
        ("cert-manager.io", "certificates", "update"),
        "engine/managed.py: _ensure replaces a Certificate that differs from the spec",
        "spec.certificate changes never reach the Certificate",
        _certificates_update,
    ),
    Proof(
        ("cert-manager.io", "certificates", "delete"),
        "engine/managed.py: release, on deletion",
        "a deleted binding is stuck on its finalizer; the Certificate stays",
        _certificates_delete,
    ),
    Proof(
        ("cert-manager.io", "certificates", "list"),
        "operator.py: the label-selected Certificate watch lists first",
        "cert-manager's progress is noticed only every retryInterval",
        _certificates_list,
    ),
    Proof(
        ("cert-manager.io", "certificates", "watch"),
        "operator.py: the label-selected Certificate watch",
        "cert-manager's progress is noticed only every retryInterval",
        _certificates_watch,
    ),
    Proof(
        ("cert-manager.io", "issuers", "get"),
        "engine/managed.py: _issuer_problem",
        "a missing Issuer reads as WaitingForCertManager instead of IssuerNotFound",
        _issuers_get,
    ),
    Proof(
        ("cert-manager.io", "clusterissuers", "get"),
        "engine/managed.py: _issuer_problem",
        "a missing ClusterIssuer reads as WaitingForCertManager instead of IssuerNotFound",
        _clusterissuers_get,
    ),
    Proof(
        ("cert-manager.io", "certificaterequests", "list"),
        "engine/managed.py: _current_request",
        "a failed CertificateRequest reads as WaitingForCertManager, not its failure",
        _certificaterequests_list,
    ),
]

FINALIZERS_UPDATE = ("sanorg.in", "certificatebindings/finalizers", "update")
"""Proven on its own control plane (test_blocking_owner_deletion_needs_finalizers_update)."""


def _key(grant: tuple[str, str, str]) -> str:
    return Grant(*grant).key


@pytest.mark.parametrize("proof", PROOFS, ids=lambda p: _key(p.grant))
@pytest.mark.timeout(90)
async def test_without_this_verb_the_operator_breaks(
    make_stage: MakeStage, logs: _Records, proof: Proof
) -> None:
    stage = await make_stage(reduce=proof.grant)
    removed = Grant(*proof.grant)
    assert not await stage.access(removed), f"{removed.key} should be denied now"
    for grant in grants_to(stage.documents, stage.service_account, stage.namespace):
        assert await stage.access(grant), f"only {removed.key} may be missing, not {grant.key}"
    try:
        await proof.run(stage, logs)
    except AssertionError as error:
        raise AssertionError(
            f"without {removed.key} ({proof.code_path}) expected: {proof.breaks}: {error}"
        ) from error


def test_every_granted_verb_has_a_proof(helm: Helm) -> None:
    documents = helm.template(CHART, release="certauto", namespace="certauto")
    granted = {g.key for g in grants_to(documents, "certauto", "certauto")}
    proven = {_key(p.grant) for p in PROOFS} | {_key(FINALIZERS_UPDATE)}
    assert len(PROOFS) + 1 == len(proven), "a verb is proven twice"
    assert granted == proven, (
        f"granted without a proof: {sorted(granted - proven)}; "
        f"proven but not granted: {sorted(proven - granted)}"
    )


def test_every_api_resource_the_operator_names_is_granted(helm: Helm) -> None:
    """A tripwire for new code: a Resource the operator talks to needs a rule (and a proof)."""
    import importlib
    import pkgutil

    import certauto_core
    from certauto_core.kube.resources import Resource

    named: set[str] = set()
    for module_info in pkgutil.walk_packages(certauto_core.__path__, "certauto_core."):
        if ".testing" in module_info.name:
            continue
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if isinstance(value, Resource):
                named.add(f"{value.plural}.{value.group}" if value.group else value.plural)
    documents = helm.template(CHART, release="certauto", namespace="certauto")
    granted = {g.key.partition(":")[0] for g in grants_to(documents, "certauto", "certauto")}
    assert named - granted == set(), "the operator's code names resources the chart never grants"


# ---------------------------------------------------------------------------- managed, enough


@pytest.mark.timeout(180)
async def test_the_chart_rbac_is_enough_for_managed_mode(
    make_stage: MakeStage, logs: _Records
) -> None:
    stage = await make_stage()
    async with operator_as(stage) as running:
        await ready_and_leading(running)
        # The Certificate watch wakes the binding when cert-manager reports Ready.
        await _issued_while_certificate_pending(stage, running)
        certificate = await stage.certificate()
        assert certificate is not None
        assert certificate["metadata"]["ownerReferences"][0]["kind"] == "CertificateBinding"
        await stage.mark_certificate_ready()
        await stage.wait_ready()
        for namespace in stage.targets:
            assert await stage.secret(namespace) is not None

        # A spec change replaces the Certificate's spec.
        await stage.admin.merge_patch(
            CERTIFICATE_BINDINGS.path(stage.app, BINDING),
            {"spec": {"certificate": {"dnsNames": ["web.test", "www.web.test"]}}},
        )

        async def replaced() -> bool:
            current = await stage.certificate()
            return current is not None and current["spec"]["dnsNames"] == [
                "web.test",
                "www.web.test",
            ]

        await wait_for(replaced, what="the Certificate's spec replaced")

        # Why a Certificate is not issued: a missing Issuer, a missing ClusterIssuer...
        await stage.create_managed_binding("missing", kind="Issuer", name="no-issuer")
        await stage.wait_reason("IssuerNotFound", "no-issuer")
        await stage.create_managed_binding(
            f"{stage.release}-missing", kind="ClusterIssuer", name="no-cluster-issuer"
        )
        await stage.wait_reason("IssuerNotFound", "no-cluster-issuer")
        # ...and a failed CertificateRequest.
        issuer = await stage.cluster_issuer()
        failing = await stage.create_managed_binding(issuer, name="failing", retry_interval="1s")
        await wait_for(lambda: stage.certificate("failing"), what="the Certificate of 'failing'")
        await stage.failed_request(failing["metadata"]["uid"], name="failing")
        await stage.wait_reason("CertificateRequestFailed", "failing")

        # Deletion: the Certificate and (deletionPolicy Delete) the issued Secret go.
        await stage.admin.delete(CERTIFICATE_BINDINGS.path(stage.app, BINDING))

        async def cleaned_up() -> bool:
            try:
                await stage.binding()
            except NotFoundError:
                return await stage.certificate() is None
            return False

        await wait_for(cleaned_up, timeout=30, what="the binding and its Certificate gone")
        assert await stage.secret(stage.app, ISSUED) is None
    assert [m for m in logs.messages() if stage.user in m] == []


# ---------------------------------------------------------------------------- finalizers


@pytest.mark.timeout(180)
async def test_blocking_owner_deletion_needs_finalizers_update(
    helm: Helm, logs: _Records, tmp_path: Path
) -> None:
    """certificatebindings/finalizers update, on a control plane that enforces it.

    The managed Certificate's ownerReference sets ``blockOwnerDeletion``. The
    OwnerReferencesPermissionEnforcement admission plugin (off in a default
    kube-apiserver, on in OpenShift and hardened clusters) then requires update on the
    owner's finalizers subresource. This starts a control plane with the plugin on: with
    the chart's RBAC the Certificate is created; without that one verb it is refused.
    """
    plane = ControlPlane(
        apiserver_args=("--enable-admission-plugins=OwnerReferencesPermissionEnforcement",)
    )
    await asyncio.to_thread(plane.start)
    try:
        api = await api_client_from_kubeconfig(plane.kubeconfig_path)
        admin = await KubeClient.connect(kubeconfig=str(plane.kubeconfig_path))
        identities = Identities(plane, api)
        try:
            await apply_crds(api, await asyncio.to_thread(cert_manager_crds))
            async with AsyncExitStack() as stack:
                make = stage_factory(stack, plane, api, identities, admin, helm, tmp_path)

                reduced = await make(reduce=FINALIZERS_UPDATE)
                assert not await reduced.access(Grant(*FINALIZERS_UPDATE))
                issuer = await reduced.cluster_issuer()
                async with operator_as(reduced) as running:
                    await ready_and_leading(running)
                    await reduced.create_managed_binding(issuer)
                    await evidence(logs, running, "cannot set blockOwnerDeletion")
                    assert await reduced.certificate() is None

                full = await make()
                issuer = await full.cluster_issuer()
                async with operator_as(full) as running:
                    await ready_and_leading(running)
                    await full.create_managed_binding(issuer)
                    await wait_for(full.certificate, what="the Certificate, with the chart's RBAC")
        finally:
            await identities.aclose()
            await admin.aclose()
            await api.close()
    finally:
        await asyncio.to_thread(plane.stop)
