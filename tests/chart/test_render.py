"""The chart as rendered by helm v4: lint, the generated CRD, and what each value does.

No API server here (see test_apply.py and test_rbac.py): these check what the
templates produce for the values a user sets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from certauto_core.api.crd import load_crd
from certauto_core.testing.helm import (
    CRD_TEMPLATE,
    KEEP_ANNOTATION,
    ChartCheckError,
    Helm,
    crd_template,
    find,
    grants_to,
    values_files_of,
    wildcards,
)

CHART = Path(__file__).resolve().parents[2] / "charts" / "certauto"
Render = Callable[..., list[dict[str, Any]]]
VALUES_FILES = values_files_of(CHART)


def _one(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> Any:
    found = find(documents, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _container(documents: list[dict[str, Any]]) -> Any:
    deployment = _one(documents, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


# ------------------------------------------------------------------ lint and the CRD


def test_the_checks_have_several_values_files() -> None:
    assert len(VALUES_FILES) >= 4
    assert {p.name for p in VALUES_FILES} >= {"default-values.yaml", "namespaced-values.yaml"}


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES], ids=lambda p: p.name if p else "-")
def test_lint_strict_is_clean(helm: Helm, chart: Path, values_file: Path | None) -> None:
    output = helm.lint(chart, [values_file] if values_file else [])
    assert "0 chart(s) failed" in output
    assert "[WARNING]" not in output
    assert "[ERROR]" not in output


def test_the_crd_template_is_generated_from_the_source_of_truth(chart: Path) -> None:
    on_disk = (chart / CRD_TEMPLATE).read_text(encoding="utf-8")
    assert on_disk == crd_template(), (
        "charts/certauto/templates/crd.yaml differs from certauto_core/api/crd.yaml: "
        "run `python -m certauto_core.testing.helm sync-crd`"
    )


def test_the_rendered_crd_is_the_source_crd_with_the_keep_policy(render: Render) -> None:
    rendered = _one(render(), "CustomResourceDefinition")
    expected = load_crd()
    expected["metadata"]["annotations"] = {KEEP_ANNOTATION: "keep"}
    assert rendered == expected


def test_crds_keep_false_drops_only_the_annotation(render: Render) -> None:
    rendered = _one(render(values={"crds": {"keep": False}}), "CustomResourceDefinition")
    assert rendered == load_crd()


def test_crds_enabled_false_renders_no_crd(render: Render) -> None:
    documents = render(values={"crds": {"enabled": False}})
    assert find(documents, "CustomResourceDefinition") == []
    assert find(documents, "Deployment")


def test_the_generator_escapes_template_delimiters_and_keeps_annotations() -> None:
    source = load_crd()
    source["metadata"]["annotations"] = {"example.com/note": "a {{ brace }} here"}
    template = crd_template(yaml.safe_dump(source))
    assert '{{ "{{" }} brace }}' in template
    assert "    example.com/note:" in template
    assert template.index("{{- if .Values.crds.keep }}") > template.index("example.com/note")


def test_the_generator_refuses_a_source_that_sets_the_keep_policy() -> None:
    source = load_crd()
    source["metadata"]["annotations"] = {KEEP_ANNOTATION: "keep"}
    with pytest.raises(ValueError, match="must not set"):
        crd_template(yaml.safe_dump(source))


def test_a_template_with_escaped_braces_renders_them_verbatim(helm: Helm, tmp_path: Path) -> None:
    """What the generator escapes, helm turns back into the source's text."""
    chart = tmp_path / "braces"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: braces\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("crds: {enabled: true, keep: true}\n")
    source = load_crd()
    source["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = "{{ x }}"
    (chart / CRD_TEMPLATE).write_text(crd_template(yaml.safe_dump(source)))
    [rendered] = helm.template(chart)
    schema = rendered["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["description"] == "{{ x }}"


# ------------------------------------------------------------------ values and schema


def _undescribed(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Paths of ``value`` the schema does not know or does not describe.

    A schema node without ``properties`` is free-form (resources, affinity...): it is
    described as a whole and not walked into.
    """
    if schema.get("description") is None and path:
        return [f"{path} (no description)"]
    properties = schema.get("properties")
    if not isinstance(value, dict) or properties is None:
        return []
    problems = []
    for key, item in value.items():
        child = f"{path}.{key}" if path else key
        if key not in properties:
            problems.append(f"{child} (not in the schema)")
        else:
            problems += _undescribed(item, properties[key], child)
    return problems


def test_every_value_is_described_in_the_schema(chart: Path) -> None:
    values = yaml.safe_load((chart / "values.yaml").read_text())
    schema = json.loads((chart / "values.schema.json").read_text())
    assert _undescribed(values, schema, "") == []
    assert schema["additionalProperties"] is False


def test_every_key_of_values_yaml_is_commented(chart: Path) -> None:
    """Each key has a comment line right above it, or sits in a block whose key has one."""
    lines = (chart / "values.yaml").read_text().splitlines()
    uncommented = []
    documented_indents: list[int] = []
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#") or stripped.startswith("-"):
            continue
        indent = len(line) - len(stripped)
        documented_indents = [i for i in documented_indents if i < indent]
        above = lines[index - 1].lstrip() if index else ""
        if above.startswith("#"):
            if stripped.endswith(":"):
                documented_indents.append(indent)
            continue
        if documented_indents:
            continue  # a field of a documented block (e.g. resources.requests.cpu)
        if stripped.endswith(":"):
            continue  # a section heading: its keys carry the comments
        uncommented.append(f"line {index + 1}: {stripped}")
    assert uncommented == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rbac": {"namespaced": True}}, "allOf"),
        ({"rbac": {"namespacd": True}}, "namespacd"),
        ({"replicaCount": "two"}, "replicaCount"),
        ({"image": {"digest": "latest"}}, "digest"),
        ({"cloudIdentity": {"azure": {"workloadIdentity": {"enabled": True}}}}, "allOf"),
        ({"cloudIdentity": {"aws": {"roleArn": "certauto"}}}, "roleArn"),
        (
            {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
            "allOf",
        ),
        ({"leaderElection": {"leaseDuration": "fifteen"}}, "leaseDuration"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
    ],
)
def test_the_schema_refuses_bad_values(
    helm: Helm, chart: Path, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ChartCheckError, match=message):
        helm.template(chart, values=values)


# ------------------------------------------------------------------ the Deployment


def test_deployment_defaults(render: Render) -> None:
    documents = render()
    deployment = _one(documents, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = _container(documents)
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert pod["serviceAccountName"] == "certauto"
    assert pod["automountServiceAccountToken"] is True
    assert container["image"] == "ghcr.io/sanorg/certauto:0.1.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}
    assert container["resources"]["limits"] == {"memory": "512Mi"}
    args = container["args"]
    assert args[0] == "run"
    assert "--metrics-address=:8080" in args
    assert "--leader-elect" in args
    assert "--lease-namespace=$(POD_NAMESPACE)" in args
    assert "--lease-name=certauto-leader" in args
    assert "--identity=$(POD_NAME)" in args
    assert not [a for a in args if a.startswith("--namespace=")]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_the_deployment_args_are_ones_certauto_run_accepts(render: Render) -> None:
    from certauto_core.cli import build_parser

    for values_file in VALUES_FILES:
        args = _container(render([values_file]))["args"]
        expanded = [a.replace("$(POD_NAMESPACE)", "ns").replace("$(POD_NAME)", "pod") for a in args]
        parsed = build_parser().parse_args(expanded)
        assert parsed.command == "run", values_file.name


def test_security_context_follows_the_style_guide(render: Render) -> None:
    documents = render()
    pod = _one(documents, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = _container(documents)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"] for m in _container(documents)["volumeMounts"]}
    assert "/tmp" in mounts  # the only writable path: an emptyDir


def test_single_replica_without_leader_election(render: Render) -> None:
    documents = render([CHART / "ci" / "single-replica-values.yaml"])
    args = _container(documents)["args"]
    assert "--no-leader-elect" in args
    assert not [a for a in args if a.startswith("--lease")]
    assert [a for a in args if a.startswith("--namespace=")] == [
        "--namespace=apps",
        "--namespace=platform",
    ]
    assert find(documents, "Role", "certauto-leader-election") == []
    assert find(documents, "PodDisruptionBudget") == []
    assert find(documents, "Service") == []


def test_image_digest_wins_over_the_tag(render: Render) -> None:
    digest = "sha256:" + "ab" * 32
    documents = render(values={"image": {"tag": "9.9.9", "digest": digest}})
    assert _container(documents)["image"] == f"ghcr.io/sanorg/certauto@{digest}"


def test_blocked_plugins_reach_the_environment(render: Render) -> None:
    documents = render(values={"plugins": {"blocked": ["certauto-acm", "certauto-akv"]}})
    env = {e["name"]: e.get("value") for e in _container(documents)["env"]}
    assert env["CERTAUTO_BLOCK_PLUGINS"] == "certauto-acm,certauto-akv"


# ------------------------------------------------------------------ cloud identity


def test_irsa_and_azure_workload_identity(render: Render) -> None:
    documents = render([CHART / "ci" / "cloud-identity-values.yaml"])
    account = _one(documents, "ServiceAccount")
    assert account["metadata"]["name"] == "certauto-cloud"
    annotations = account["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"] == "arn:aws:iam::111122223333:role/certauto"
    assert (
        annotations["azure.workload.identity/client-id"] == "00000000-1111-2222-3333-444444444444"
    )
    assert (
        annotations["azure.workload.identity/tenant-id"] == "55555555-6666-7777-8888-999999999999"
    )
    assert annotations["example.com/owner"] == "platform"
    pod = _one(documents, "Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["serviceAccountName"] == "certauto-cloud"
    # The selector must not change with the label: it is immutable in a Deployment.
    selector = _one(documents, "Deployment")["spec"]["selector"]["matchLabels"]
    assert "azure.workload.identity/use" not in selector


def test_no_cloud_identity_by_default(render: Render) -> None:
    documents = render()
    account = _one(documents, "ServiceAccount")
    assert "annotations" not in account["metadata"]
    assert account["automountServiceAccountToken"] is False
    labels = _one(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert "azure.workload.identity/use" not in labels


# ------------------------------------------------------------------ metrics, PDB


def test_metrics_service_and_service_monitor(render: Render) -> None:
    documents = render([CHART / "ci" / "monitoring-values.yaml"], namespace="mon")
    service = _one(documents, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = _one(documents, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["mon"]}
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == (
        "metrics",
        "/metrics",
        "15s",
    )
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    assert _one(documents, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    assert "maxUnavailable" not in _one(documents, "PodDisruptionBudget")["spec"]


def test_no_service_monitor_by_default_and_a_pdb_of_one(render: Render) -> None:
    documents = render()
    assert find(documents, "ServiceMonitor") == []
    budget = _one(documents, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    deployment = _one(documents, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    service = _one(documents, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()


# ------------------------------------------------------------------ RBAC as rendered


def _keys(documents: list[dict[str, Any]], namespace: str = "certauto") -> set[str]:
    return {g.key for g in grants_to(documents, "certauto", namespace)}


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES], ids=lambda p: p.name if p else "-")
def test_no_rule_uses_a_wildcard(render: Render, values_file: Path | None) -> None:
    assert wildcards(render([values_file] if values_file else [])) == []


def test_cluster_wide_rbac_is_exactly_what_the_code_uses(render: Render) -> None:
    documents = render()
    assert _keys(documents) == {
        "certificatebindings.sanorg.in:list",
        "certificatebindings.sanorg.in:watch",
        "certificatebindings.sanorg.in:patch",
        "certificatebindings/status.sanorg.in:patch",
        "secrets:get",
        "secrets:list",
        "secrets:watch",
        "secrets:create",
        "secrets:update",
        "secrets:patch",
        "secrets:delete",
        "events:create",
        "events:patch",
        "namespaces:list",
        "namespaces:watch",
        "leases.coordination.k8s.io:create",
        "leases.coordination.k8s.io:get",
        "leases.coordination.k8s.io:update",
        "certificates.cert-manager.io:get",
        "certificates.cert-manager.io:list",
        "certificates.cert-manager.io:watch",
        "certificates.cert-manager.io:create",
        "certificates.cert-manager.io:update",
        "certificates.cert-manager.io:delete",
        "issuers.cert-manager.io:get",
        "clusterissuers.cert-manager.io:get",
        "certificaterequests.cert-manager.io:list",
        "certificatebindings/finalizers.sanorg.in:update",
    }
    leases = [g for g in grants_to(documents, "certauto", "certauto") if g.resource == "leases"]
    assert all(g.namespace == "certauto" for g in leases), "leases only in the release namespace"
    named = {g.verb: g.resource_names for g in leases}
    assert named == {"create": (), "get": ("certauto-leader",), "update": ("certauto-leader",)}


def test_managed_mode_off_drops_the_cert_manager_rules(render: Render) -> None:
    keys = _keys(render(values={"managedMode": {"enabled": False}}))
    assert not [k for k in keys if "cert-manager.io" in k]
    assert "certificatebindings/finalizers.sanorg.in:update" not in keys
    assert "secrets:create" in keys


def test_the_lease_role_follows_the_lease_name(render: Render) -> None:
    documents = render(values={"leaderElection": {"leaseName": "other-leader"}})
    role = _one(documents, "Role", "certauto-leader-election")
    assert role["rules"][1]["resourceNames"] == ["other-leader"]
    assert "--lease-name=other-leader" in _container(documents)["args"]


def test_namespaced_mode_grants_roles_per_namespace(render: Render) -> None:
    documents = render(values={"rbac": {"namespaced": True}, "watchNamespaces": ["a", "b"]})
    grants = grants_to(documents, "certauto", "certauto")
    by_scope: dict[str | None, set[str]] = {}
    for grant in grants:
        by_scope.setdefault(grant.namespace, set()).add(grant.key)
    # Cluster-wide, only what the operator still watches or reads cluster-wide.
    assert by_scope[None] == {
        "namespaces:list",
        "namespaces:watch",
        "secrets:list",
        "secrets:watch",
        "certificates.cert-manager.io:list",
        "certificates.cert-manager.io:watch",
        "clusterissuers.cert-manager.io:get",
    }
    for namespace in ("a", "b"):
        assert by_scope[namespace] >= {
            "certificatebindings.sanorg.in:list",
            "certificatebindings/status.sanorg.in:patch",
            "secrets:create",
            "events:create",
        }
        # These watches are cluster-wide: a per-namespace list/watch would be unused.
        for unused in ("secrets", "certificates.cert-manager.io"):
            assert f"{unused}:list" not in by_scope[namespace]
            assert f"{unused}:watch" not in by_scope[namespace]
    assert by_scope["certauto"] == {
        "leases.coordination.k8s.io:create",
        "leases.coordination.k8s.io:get",
        "leases.coordination.k8s.io:update",
    }
    assert find(documents, "ClusterRole", "certauto") == []
    args = _container(documents)["args"]
    assert "--namespace=a" in args
    assert "--namespace=b" in args


def test_namespaced_mode_grants_nothing_the_cluster_wide_mode_does_not(render: Render) -> None:
    """So the cluster-wide proofs in test_rbac.py cover every namespaced-mode verb too."""
    cluster = _keys(render())
    namespaced = _keys(render(values={"rbac": {"namespaced": True}, "watchNamespaces": ["a"]}))
    assert namespaced <= cluster


def test_user_facing_aggregated_roles(render: Render) -> None:
    documents = render()
    view = _one(documents, "ClusterRole", "certauto-view")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert view["rules"][0]["verbs"] == ["get", "list", "watch"]
    # Write access is opt-in: a binding acts beyond its author's own rights.
    assert find(documents, "ClusterRole", "certauto-edit") == []
    edit = _one(render(values={"rbac": {"aggregateToEdit": True}}), "ClusterRole", "certauto-edit")
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    # Neither is bound to the operator.
    operator = grants_to(documents, "certauto", "certauto")
    assert not [g for g in operator if g.verb == "deletecollection"]
    off = render(values={"rbac": {"aggregateToView": False}})
    assert find(off, "ClusterRole", "certauto-view") == []


def test_rbac_create_false_renders_no_rbac(render: Render) -> None:
    documents = render(values={"rbac": {"create": False}})
    kinds = {d["kind"] for d in documents}
    assert kinds.isdisjoint({"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"})
