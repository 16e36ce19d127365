"""Helm for the chart checks: built from the Go module proxy, run against the test control plane.

* **Build.** ``helm.sh/helm/v4`` is a normal Go module, but building its ``cmd/helm``
  from the proxy needs a main module to resolve the graph: a throwaway wrapper module
  requires ``helm.sh/helm/v4`` and blank-imports ``helm.sh/helm/v4/cmd/helm`` from a
  ``tools``-tagged file, ``go mod tidy`` resolves it, and ``go build <package path>``
  builds the command. The binary lands in ``<cache>/helm/<version>/helm`` beside the
  control plane's (:func:`~certauto_core.testing.controlplane.build.cache_root`); a
  second build finds it and does nothing.
* **Checks.** :func:`chart_checks` is the body of the ``charts`` nox session: for every
  values file, ``helm lint --strict`` and ``helm template``, then every rendered
  manifest applied (server-side apply, strict field validation) to a real
  kube-apiserver, so a field the API server does not know fails the check.
* **The CRD template.** ``charts/certauto/templates/crd.yaml`` is generated from
  ``certauto_core/api/crd.yaml`` (the single source of truth) by
  :func:`crd_template`; ``python -m certauto_core.testing.helm sync-crd`` rewrites it
  and the chart tests fail when it differs.

Commands (``python -m certauto_core.testing.helm ...``): ``build`` (``--force``),
``where``, ``sync-crd``, ``check [VALUES ...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml

from certauto_core.testing.controlplane.build import BuildError, cache_root

if TYPE_CHECKING:
    from certauto_core.kube.client import KubeClient
    from certauto_core.testing.controlplane.process import ControlPlane

__all__ = [
    "HELM_VERSION",
    "RBAC_KINDS",
    "ChartCheckError",
    "Grant",
    "Helm",
    "KubeApplier",
    "chart_checks",
    "crd_template",
    "ensure_built",
    "find",
    "grants_to",
    "helm_binary",
    "main",
    "namespaces_of",
    "release_for",
    "service_monitor_crd",
    "sync_crd_template",
    "values_files_of",
    "wildcards",
    "without_verb",
]

HELM_VERSION: Final = "v4.3.2"
HELM_MODULE: Final = "helm.sh/helm/v4"
HELM_PACKAGE: Final = f"{HELM_MODULE}/cmd/helm"

DEFAULT_CHART: Final = Path("charts") / "certauto"
"""Where the chart lives, relative to the repository root (the nox session's cwd)."""
CRD_TEMPLATE: Final = Path("templates") / "crd.yaml"
"""The generated CRD template, relative to the chart."""
CI_VALUES: Final = Path("ci")
"""The chart's folder of values files the checks render (chart-testing's convention)."""
KEEP_ANNOTATION: Final = "helm.sh/resource-policy"


# ---------------------------------------------------------------------------- build


def helm_binary(version: str = HELM_VERSION) -> Path:
    """Where the helm binary of ``version`` lives (built or not)."""
    return cache_root() / "helm" / version / "helm"


def _go(args: Sequence[str], cwd: Path) -> str:
    env = dict(os.environ, GOFLAGS="-mod=mod", CGO_ENABLED="0", GOWORK="off")
    print(f"  $ go {' '.join(args)}", file=sys.stderr, flush=True)
    done = subprocess.run(
        ["go", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise BuildError(f"go {' '.join(args)} failed in {cwd}:\n{tail}")
    return done.stdout


def build_helm(target: Path, workdir: Path, version: str = HELM_VERSION) -> None:
    """Build ``helm.sh/helm/v4/cmd/helm`` at ``version`` into ``target`` via a wrapper module."""
    module_dir = workdir / "helm"
    module_dir.mkdir(parents=True, exist_ok=True)
    (module_dir / "go.mod").write_text(
        f"module certauto.test/helm\n\ngo 1.26.0\n\nrequire {HELM_MODULE} {version}\n"
    )
    # The tools-tagged blank import makes `go mod tidy` resolve the command's whole
    # graph; the binary is then built from its package path.
    (module_dir / "tools.go").write_text(
        f'//go:build tools\n\npackage tools\n\nimport _ "{HELM_PACKAGE}"\n'
    )
    _go(["mod", "tidy"], module_dir)
    stamps = {
        "version": version,
        "metadata": "",
        "gitTreeState": "clean",
    }
    ldflags = ["-s", "-w"]
    ldflags += [f"-X {HELM_MODULE}/internal/version.{key}={value}" for key, value in stamps.items()]
    partial = target.with_name(target.name + ".partial")
    _go(
        ["build", "-trimpath", "-ldflags", " ".join(ldflags), "-o", str(partial), HELM_PACKAGE],
        module_dir,
    )
    partial.replace(target)  # never leave a half-written binary where `present` looks


def ensure_built(version: str = HELM_VERSION, *, force: bool = False) -> Path:
    """Build helm unless it is cached; return its path."""
    target = helm_binary(version)
    if os.access(target, os.X_OK) and not force:
        return target
    if shutil.which("go") is None:
        raise BuildError("the `go` command is needed to build helm")
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"building helm {version} (a cold build takes minutes) ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="certauto-helm-build-") as tmp:
        build_helm(target, Path(tmp), version)
    print(f"built helm {version} in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return target


# ---------------------------------------------------------------------------- the CRD template

_GENERATED_HEADER: Final = (
    "{{- /* Generated from certauto_core/api/crd.yaml (the single source of truth) by\n"
    "`python -m certauto_core.testing.helm sync-crd`. Do not edit: tests/chart fails\n"
    "when this file differs from what that command writes. */}}\n"
)


def crd_template(source: str | None = None) -> str:
    """The chart's CRD template: ``source`` (default: the shipped ``crd.yaml``) behind
    ``crds.enabled``, annotated ``helm.sh/resource-policy: keep`` behind ``crds.keep``.

    The YAML is re-serialised (the source's comments are about editing the source, not
    this file), and any ``{{`` in it is escaped so that Helm renders it verbatim.
    """
    if source is None:
        from certauto_core.api.crd import crd_yaml

        source = crd_yaml()
    document = yaml.safe_load(source)
    if not isinstance(document, dict) or document.get("kind") != "CustomResourceDefinition":
        raise ValueError("the CRD source is not one CustomResourceDefinition")
    metadata = document["metadata"]
    if KEEP_ANNOTATION in (metadata.get("annotations") or {}):
        raise ValueError(f"the CRD source must not set {KEEP_ANNOTATION}: the chart does")
    had_annotations = bool(metadata.get("annotations"))
    marker = "certauto.chart/keep-marker"
    metadata["annotations"] = {**(metadata.get("annotations") or {}), marker: "keep"}
    body = yaml.safe_dump(document, sort_keys=False, width=10_000, allow_unicode=True)
    body = body.replace("{{", '{{ "{{" }}')
    marker_line = f"    {marker}: keep\n"
    if body.count(marker_line) != 1:
        raise ValueError("could not place the keep annotation in the CRD's metadata")
    keep = f"    {KEEP_ANNOTATION}: keep\n"
    if had_annotations:
        body = body.replace(marker_line, "{{- if .Values.crds.keep }}\n" + keep + "{{- end }}\n")
    else:
        body = body.replace(
            "  annotations:\n" + marker_line,
            "{{- if .Values.crds.keep }}\n  annotations:\n" + keep + "{{- end }}\n",
        )
    return f"{_GENERATED_HEADER}{{{{- if .Values.crds.enabled }}}}\n{body}{{{{- end }}}}\n"


def sync_crd_template(chart: Path = DEFAULT_CHART) -> bool:
    """Write the generated CRD template into ``chart``; return whether it changed."""
    path = chart / CRD_TEMPLATE
    wanted = crd_template()
    if path.exists() and path.read_text(encoding="utf-8") == wanted:
        return False
    path.write_text(wanted, encoding="utf-8")
    return True


# ---------------------------------------------------------------------------- helm


class ChartCheckError(RuntimeError):
    """helm failed, or a rendered manifest was refused; the message says which and why."""


@dataclass(frozen=True)
class Helm:
    """Runs the built helm with its config, cache and data kept under ``home``."""

    binary: Path
    home: Path

    @classmethod
    @contextmanager
    def temporary(cls, binary: Path | None = None) -> Iterator[Helm]:
        """A Helm whose home is a temporary directory, removed afterwards."""
        with tempfile.TemporaryDirectory(prefix="certauto-helm-") as home:
            yield cls(binary or ensure_built(), Path(home))

    def run(self, *args: str) -> str:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
            # Nothing here may reach a cluster by accident.
            "KUBECONFIG": str(self.home / "no-kubeconfig"),
        }
        done = subprocess.run(
            [str(self.binary), *args], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise ChartCheckError(
                f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stderr}{done.stdout}"
            )
        return done.stdout + done.stderr

    def version(self) -> str:
        return self.run("version", "--short").strip()

    def _values_args(
        self, values_files: Sequence[Path], values: Mapping[str, Any] | None
    ) -> list[str]:
        args: list[str] = []
        for path in values_files:
            args += ["--values", str(path)]
        if values:
            inline = self.home / f"inline-values-{time.monotonic_ns()}.yaml"
            self.home.mkdir(parents=True, exist_ok=True)
            inline.write_text(yaml.safe_dump(dict(values)))
            args += ["--values", str(inline)]
        return args

    def lint(
        self,
        chart: Path,
        values_files: Sequence[Path] = (),
        *,
        values: Mapping[str, Any] | None = None,
        namespace: str = "certauto",
    ) -> str:
        """``helm lint --strict``: warnings fail too."""
        return self.run(
            "lint",
            "--strict",
            "--namespace",
            namespace,
            str(chart),
            *self._values_args(values_files, values),
        )

    def template(
        self,
        chart: Path,
        values_files: Sequence[Path] = (),
        *,
        values: Mapping[str, Any] | None = None,
        release: str = "certauto",
        namespace: str = "certauto",
    ) -> list[dict[str, Any]]:
        """``helm template``: the rendered manifests, parsed, in helm's install order."""
        rendered = self.run(
            "template",
            release,
            str(chart),
            "--namespace",
            namespace,
            *self._values_args(values_files, values),
        )
        return [doc for doc in yaml.safe_load_all(rendered) if doc]


# ---------------------------------------------------------------------------- apply


@dataclass(frozen=True)
class _Kind:
    group: str
    version: str
    plural: str
    namespaced: bool


class KubeApplier:
    """Server-side applies manifests, as ``kubectl apply --server-side`` would.

    ``fieldValidation=Strict`` makes the API server refuse unknown or duplicate fields,
    so a misspelt field in a template fails here instead of being dropped silently.
    Resource types are found by discovery (cached per group/version; forgotten when a
    CRD is applied).
    """

    def __init__(self, kube: KubeClient, *, field_manager: str = "certauto-chart-check") -> None:
        self.kube = kube
        self.field_manager = field_manager
        self._discovered: dict[str, dict[str, _Kind]] = {}

    async def _kind(self, api_version: str, kind: str) -> _Kind:
        kinds = self._discovered.get(api_version)
        if kinds is None or kind not in kinds:
            group, _, version = api_version.rpartition("/")
            path = f"/apis/{api_version}" if group else f"/api/{api_version}"
            listing = await self.kube.get(path)
            kinds = {
                item["kind"]: _Kind(group, version, item["name"], bool(item["namespaced"]))
                for item in listing.get("resources", [])
                if "/" not in item["name"]
            }
            self._discovered[api_version] = kinds
        if kind not in kinds:
            raise ChartCheckError(f"the API server does not serve {kind} in {api_version}")
        return kinds[kind]

    async def path(self, document: Mapping[str, Any]) -> str:
        """The REST path of the object ``document`` describes."""
        from certauto_core.kube.resources import Resource

        found = await self._kind(str(document["apiVersion"]), str(document["kind"]))
        metadata = document.get("metadata") or {}
        namespace = metadata.get("namespace")
        if found.namespaced and not namespace:
            raise ChartCheckError(
                f"{document['kind']} {metadata.get('name')} is namespaced but has no "
                "metadata.namespace: the chart must set it (helm template does not)"
            )
        if not found.namespaced and namespace:
            raise ChartCheckError(
                f"{document['kind']} {metadata.get('name')} is cluster-scoped but sets "
                f"metadata.namespace {namespace}"
            )
        resource = Resource(found.group, found.version, found.plural, found.namespaced)
        return resource.path(namespace, str(metadata["name"]))

    async def apply(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply one object; raise :class:`ChartCheckError` naming it on refusal."""
        from certauto_core.kube.errors import ApiError

        path = await self.path(document)
        try:
            applied: dict[str, Any] = await self.kube.request(
                "PATCH",
                path,
                query={
                    "fieldManager": self.field_manager,
                    "force": True,
                    "fieldValidation": "Strict",
                },
                body=dict(document),
                content_type="application/apply-patch+yaml",
            )
        except ApiError as error:
            name = (document.get("metadata") or {}).get("name")
            raise ChartCheckError(
                f"the API server refused {document['kind']} {name}: {error}"
            ) from error
        if document["kind"] == "CustomResourceDefinition":
            await self._established(str(document["metadata"]["name"]))
            group = str(document["spec"]["group"])
            for served in document["spec"]["versions"]:
                self._discovered.pop(f"{group}/{served['name']}", None)
        return applied

    async def apply_all(self, documents: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Apply CRDs first (and wait until served), then everything else, in order."""
        crds = [d for d in documents if d.get("kind") == "CustomResourceDefinition"]
        others = [d for d in documents if d.get("kind") != "CustomResourceDefinition"]
        return [await self.apply(document) for document in [*crds, *others]]

    async def ensure_namespace(self, name: str) -> None:
        from certauto_core.kube.errors import ConflictError

        with suppress(ConflictError):
            await self.kube.create(
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            )

    async def _established(self, name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        while time.monotonic() < deadline:
            crd = await self.kube.get(path)
            conditions = (crd.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return
            await asyncio.sleep(0.1)
        raise ChartCheckError(f"CRD {name} not Established after {timeout:g}s")


def namespaces_of(documents: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every namespace the documents are in (to create before applying them)."""
    found = {
        str((d.get("metadata") or {}).get("namespace"))
        for d in documents
        if (d.get("metadata") or {}).get("namespace")
    }
    return sorted(found)


# ---------------------------------------------------------------------------- RBAC of a render

RBAC_KINDS: Final = frozenset({"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"})


@dataclass(frozen=True, order=True)
class Grant:
    """One verb on one resource, granted to a subject, cluster-wide or in one namespace."""

    api_group: str
    resource: str
    verb: str
    namespace: str | None = None
    """None: cluster-wide (a ClusterRoleBinding); else the RoleBinding's namespace."""
    resource_names: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """``resource[.group]:verb``, e.g. ``leases.coordination.k8s.io:update``."""
        group = f".{self.api_group}" if self.api_group else ""
        return f"{self.resource}{group}:{self.verb}"


def find(
    documents: Sequence[Mapping[str, Any]], kind: str, name: str | None = None
) -> list[Mapping[str, Any]]:
    """The documents of ``kind`` (and ``name``), in order."""
    return [
        d
        for d in documents
        if d.get("kind") == kind and name in (None, (d.get("metadata") or {}).get("name"))
    ]


def grants_to(
    documents: Sequence[Mapping[str, Any]], service_account: str, namespace: str
) -> list[Grant]:
    """Every verb the rendered (Cluster)RoleBindings grant to ServiceAccount ``namespace/name``."""
    roles: dict[tuple[str, str | None, str], Sequence[Mapping[str, Any]]] = {}
    for document in documents:
        if document.get("kind") in ("ClusterRole", "Role"):
            metadata = document["metadata"]
            scope = metadata.get("namespace") if document["kind"] == "Role" else None
            roles[(document["kind"], scope, metadata["name"])] = document.get("rules") or []
    found: set[Grant] = set()
    for document in documents:
        if document.get("kind") not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        subjects = document.get("subjects") or []
        if not any(
            s.get("kind") == "ServiceAccount"
            and s.get("name") == service_account
            and s.get("namespace") == namespace
            for s in subjects
        ):
            continue
        binding_namespace = (
            document["metadata"].get("namespace") if document["kind"] == "RoleBinding" else None
        )
        ref = document["roleRef"]
        role_scope = binding_namespace if ref["kind"] == "Role" else None
        rules = roles.get((ref["kind"], role_scope, ref["name"]))
        if rules is None:
            raise ChartCheckError(
                f"{document['kind']} {document['metadata']['name']} refers to "
                f"{ref['kind']} {ref['name']}, which the chart does not render"
            )
        for rule in rules:
            for group in rule.get("apiGroups") or [""]:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        found.add(
                            Grant(
                                group,
                                resource,
                                verb,
                                binding_namespace,
                                tuple(rule.get("resourceNames") or ()),
                            )
                        )
    return sorted(found)


def wildcards(documents: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every ``*`` in an apiGroup, resource, verb or resource name of a rendered role."""
    found = []
    for document in documents:
        if document.get("kind") not in ("ClusterRole", "Role"):
            continue
        for index, rule in enumerate(document.get("rules") or []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                for value in rule.get(field) or []:
                    if "*" in str(value):
                        name = document["metadata"]["name"]
                        found.append(f"{document['kind']} {name} rule {index} {field}: {value}")
    return found


def without_verb(
    documents: Sequence[Mapping[str, Any]], api_group: str, resource: str, verb: str
) -> list[dict[str, Any]]:
    """A deep copy of the render with ``verb`` on ``resource`` removed from every role.

    A rule that grants other resources or verbs too keeps them; a rule left without
    verbs is dropped. Raises when nothing was removed (a test must not prove nothing).
    """
    import copy

    result = [copy.deepcopy(dict(d)) for d in documents]
    removed = 0
    for document in result:
        if document.get("kind") not in ("ClusterRole", "Role"):
            continue
        rules: list[dict[str, Any]] = []
        for rule in document.get("rules") or []:
            groups = rule.get("apiGroups") or [""]
            resources = rule.get("resources") or []
            verbs = rule.get("verbs") or []
            if api_group not in groups or resource not in resources or verb not in verbs:
                rules.append(rule)
                continue
            removed += 1
            others = [r for r in resources if r != resource]
            if others:
                rules.append({**rule, "resources": others})
            other_groups = [g for g in groups if g != api_group]
            if other_groups:
                rules.append({**rule, "apiGroups": other_groups, "resources": [resource]})
            rest = [v for v in verbs if v != verb]
            if rest:
                rules.append(
                    {**rule, "apiGroups": [api_group], "resources": [resource], "verbs": rest}
                )
        document["rules"] = rules
    if not removed:
        raise ChartCheckError(f"no role of the render grants {verb} on {resource} ({api_group!r})")
    return result


# ---------------------------------------------------------------------------- ServiceMonitor CRD

PROMETHEUS_OPERATOR_VERSION: Final = "v0.85.0"
PROMETHEUS_OPERATOR_MODULE: Final = "github.com/prometheus-operator/prometheus-operator"


def service_monitor_crd(version: str = PROMETHEUS_OPERATOR_VERSION) -> dict[str, Any]:
    """The Prometheus Operator's ServiceMonitor CRD, from its Go module (``go mod download``)."""
    import json

    done = subprocess.run(
        ["go", "mod", "download", "-json", f"{PROMETHEUS_OPERATOR_MODULE}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tempfile.gettempdir(),
        env=dict(os.environ, GOFLAGS="-mod=mod", GOWORK="off"),
    )
    if done.returncode != 0:
        raise ChartCheckError(f"go mod download of the Prometheus Operator failed: {done.stderr}")
    path = (
        Path(json.loads(done.stdout)["Dir"])
        / "example"
        / "prometheus-operator-crd"
        / "monitoring.coreos.com_servicemonitors.yaml"
    )
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise ChartCheckError(f"{path} is not one YAML document")
    return document


# ---------------------------------------------------------------------------- the nox session


@dataclass(frozen=True)
class RenderedValues:
    """One values file's render: what was applied, for the report."""

    values_file: Path
    release: str
    namespace: str
    kinds: tuple[str, ...]


def values_files_of(chart: Path) -> list[Path]:
    """The chart's own values files for the checks: ``ci/*.yaml``, sorted."""
    return sorted((chart / CI_VALUES).glob("*.yaml"))


def release_for(values_file: Path) -> tuple[str, str]:
    """A release name and namespace per values file, so their renders never collide."""
    stem = values_file.stem.removesuffix("-values").replace("_", "-").lower()
    return f"ca-{stem}"[:40].rstrip("-"), f"chart-{stem}"[:63].rstrip("-")


def chart_checks(
    values_files: Sequence[Path] | None = None,
    *,
    chart: Path = DEFAULT_CHART,
    control_plane: ControlPlane | None = None,
) -> list[RenderedValues]:
    """The ``charts`` nox session: lint, render and apply the chart for every values file.

    1. The CRD template must be what ``sync-crd`` generates from ``crd.yaml``.
    2. ``helm lint --strict`` with the defaults and with each values file.
    3. ``helm template`` with each values file (release and namespace per file).
    4. Each render server-side applied, with strict field validation, to a real
       kube-apiserver (the test control plane, started here unless one is given),
       with the Prometheus Operator's ServiceMonitor CRD installed first.

    ``values_files`` default to the chart's ``ci/*.yaml``. Raises
    :class:`ChartCheckError` on the first failure.
    """
    chart = chart.resolve()
    files = [Path(p).resolve() for p in values_files] if values_files else values_files_of(chart)
    if not files:
        raise ChartCheckError(f"no values files to check (looked in {chart / CI_VALUES})")
    template = chart / CRD_TEMPLATE
    if not template.exists() or template.read_text(encoding="utf-8") != crd_template():
        raise ChartCheckError(
            f"{template} is not generated from certauto_core/api/crd.yaml: run "
            "`python -m certauto_core.testing.helm sync-crd`"
        )
    renders: list[tuple[Path, str, str, list[dict[str, Any]]]] = []
    with Helm.temporary() as helm:
        print(f"{helm.version()}, chart {chart}", flush=True)
        helm.lint(chart)
        for path in files:
            release, namespace = release_for(path)
            helm.lint(chart, [path], namespace=namespace)
            documents = helm.template(chart, [path], release=release, namespace=namespace)
            print(f"  {path.name}: lint ok, {len(documents)} manifests", flush=True)
            renders.append((path, release, namespace, documents))

    async def apply_everything(plane: ControlPlane) -> list[RenderedValues]:
        from certauto_core.kube.client import KubeClient

        kube = await KubeClient.connect(kubeconfig=str(plane.kubeconfig_path))
        try:
            applier = KubeApplier(kube)
            await applier.apply(service_monitor_crd())
            report = []
            for path, release, namespace, documents in renders:
                for name in namespaces_of(documents):
                    await applier.ensure_namespace(name)
                await applier.apply_all(documents)
                kinds = tuple(f"{d['kind']}/{d['metadata']['name']}" for d in documents)
                print(f"  {path.name}: {len(documents)} objects applied", flush=True)
                report.append(RenderedValues(path, release, namespace, kinds))
            return report
        finally:
            await kube.aclose()

    if control_plane is not None:
        return asyncio.run(apply_everything(control_plane))
    from certauto_core.testing.controlplane.process import ControlPlane

    with ControlPlane() as plane:
        return asyncio.run(apply_everything(plane))


# ---------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m certauto_core.testing.helm",
        description="Build helm (once) and check the CertAuto chart against a real API server.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build helm into the cache unless present")
    build.add_argument("--force", action="store_true", help="rebuild even when present")
    sub.add_parser("where", help="print the path of the helm binary")
    sync = sub.add_parser("sync-crd", help="regenerate the chart's CRD template from crd.yaml")
    sync.add_argument("--chart", type=Path, default=DEFAULT_CHART)
    check = sub.add_parser("check", help="lint, template and apply the chart (the nox session)")
    check.add_argument("--chart", type=Path, default=DEFAULT_CHART)
    check.add_argument("values", nargs="*", type=Path, help="values files (default: ci/*.yaml)")
    args = parser.parse_args(argv)
    try:
        if args.command == "where":
            print(helm_binary())
        elif args.command == "build":
            target = helm_binary()
            if os.access(target, os.X_OK) and not args.force:
                print(f"up to date: {target}")
            else:
                print(f"built: {ensure_built(force=args.force)}")
        elif args.command == "sync-crd":
            changed = sync_crd_template(args.chart)
            print(f"{'wrote' if changed else 'up to date:'} {args.chart / CRD_TEMPLATE}")
        else:
            started = time.monotonic()
            report = chart_checks(args.values or None, chart=args.chart)
            print(
                f"chart checks passed for {len(report)} values files "
                f"in {time.monotonic() - started:.0f}s"
            )
    except (BuildError, ChartCheckError) as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
