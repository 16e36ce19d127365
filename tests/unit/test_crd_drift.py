"""The CRD (source of truth) and the pydantic models must describe the same API.

:func:`schema_drift` walks the CRD's ``openAPIV3Schema`` and a model's JSON schema (by
alias) side by side and names every path where they disagree: a field on one side
only, a different ``required``, ``type``, ``enum``, ``default`` or constraint
(``pattern``, lengths, item counts, minimum). The tests below check the real pair and
then check the checker, by drifting one side on purpose and asserting the path is
reported, for every field of the CRD.

Also here: lints for what makes the CRD acceptable to a kube-apiserver and useful to
people (structural, described, CEL-safe, printer columns).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from certauto_core.api import crd, models

# --- The checker ----------------------------------------------------------------------

_CONSTRAINTS = ("pattern", "minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum")
_OPAQUE_AT_ROOT = frozenset({"metadata"})
"""A CRD may not describe ``metadata`` (the API server owns ObjectMeta's schema)."""


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Flatten ``$ref``, ``allOf: [$ref]`` and ``anyOf: [X, null]`` of a pydantic schema."""
    node = dict(node)
    while True:
        if "$ref" in node:
            target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
            node = {**target, **node}  # the referencing node's default/description win
        elif "allOf" in node and len(node["allOf"]) == 1:
            node = {**node.pop("allOf")[0], **node}
        elif "anyOf" in node:
            variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
            if len(variants) != 1:
                raise AssertionError(f"{path}: a union the CRD cannot express: {variants}")
            node = {**variants[0], **node}
        else:
            return node


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def schema_drift(
    crd_node: Mapping[str, Any],
    model_schema: Mapping[str, Any],
    *,
    path: str = "",
    defs: Mapping[str, Any] | None = None,
) -> list[str]:
    """Every disagreement between a CRD schema node and a pydantic JSON schema, by path."""
    if defs is None:
        defs = model_schema.get("$defs", {})
    model = _resolve(model_schema, defs, path or "<root>")
    where = path or "<root>"
    problems: list[str] = []

    def differ(what: str, crd_value: Any, model_value: Any) -> None:
        problems.append(f"{where}: {what} differs: CRD {crd_value!r}, model {model_value!r}")

    if crd_node.get("type") != model.get("type"):
        differ("type", crd_node.get("type"), model.get("type"))
    if sorted(crd_node.get("enum", [])) != sorted(model.get("enum", [])):
        differ("enum", crd_node.get("enum"), model.get("enum"))
    # A model default of None means "unset", which is the CRD's "no default".
    crd_default = crd_node.get("default")
    model_default = model.get("default")
    if crd_default != model_default:
        differ("default", crd_default, model_default)
    for keyword in _CONSTRAINTS:
        if crd_node.get(keyword) != model.get(keyword):
            differ(keyword, crd_node.get(keyword), model.get(keyword))
    if crd_node.get("type") == "string" and crd_node.get("format") != model.get("format"):
        differ("format", crd_node.get("format"), model.get("format"))

    crd_props: Mapping[str, Any] = crd_node.get("properties", {})
    model_props: Mapping[str, Any] = model.get("properties", {})
    skip = _OPAQUE_AT_ROOT if not path else frozenset()
    for name in sorted(crd_props.keys() - model_props.keys() - skip):
        problems.append(f"{_child(path, name)}: in the CRD only")
    for name in sorted(model_props.keys() - crd_props.keys() - skip):
        problems.append(f"{_child(path, name)}: in the model only")
    crd_required = set(crd_node.get("required", []))
    model_required = set(model.get("required", []))
    for name in sorted(crd_required - model_required - skip):
        problems.append(f"{_child(path, name)}: required in the CRD only")
    for name in sorted(model_required - crd_required - skip):
        problems.append(f"{_child(path, name)}: required in the model only")
    for name in sorted(crd_props.keys() & model_props.keys() - skip):
        problems += schema_drift(
            crd_props[name], model_props[name], path=_child(path, name), defs=defs
        )

    if "items" in crd_node or "items" in model:
        if "items" not in crd_node or "items" not in model:
            differ("items", crd_node.get("items"), model.get("items"))
        else:
            problems += schema_drift(crd_node["items"], model["items"], path=f"{path}[]", defs=defs)

    # Free-form objects: the CRD keeps unknown fields exactly where the model accepts any.
    crd_free = bool(crd_node.get("x-kubernetes-preserve-unknown-fields")) and not crd_props
    model_free = model.get("additionalProperties") is True
    if crd_free != model_free:
        differ("free-form object", crd_free, model_free)
    crd_map = crd_node.get("additionalProperties")
    model_map = model.get("additionalProperties")
    if isinstance(crd_map, Mapping) or isinstance(model_map, Mapping):
        if isinstance(crd_map, Mapping) and isinstance(model_map, Mapping):
            problems += schema_drift(crd_map, model_map, path=f"{path}{{}}", defs=defs)
        else:
            differ("map values", crd_map, model_map)
    return problems


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True, mode="validation")


# --- The real pair ----------------------------------------------------------------------


def test_models_match_the_crd() -> None:
    problems = schema_drift(crd.openapi_schema(), _model_schema(models.CertificateBinding))
    assert problems == [], "\n".join(problems)


def test_constants_match_the_crd() -> None:
    manifest = crd.load_crd()
    names = manifest["spec"]["names"]
    assert manifest["metadata"]["name"] == crd.CRD_NAME == "certificatebindings.sanorg.in"
    assert manifest["spec"]["group"] == crd.GROUP
    assert manifest["spec"]["scope"] == "Namespaced"
    assert names["kind"] == crd.KIND
    assert names["listKind"] == crd.LIST_KIND
    assert names["plural"] == crd.PLURAL
    assert names["singular"] == crd.SINGULAR
    assert tuple(names["shortNames"]) == crd.SHORT_NAMES
    assert names["categories"] == ["certauto"]
    [version] = manifest["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == (crd.VERSION, True, True)
    assert version["subresources"] == {"status": {}}


def test_cel_messages_match_the_models() -> None:
    spec = crd.openapi_schema()["properties"]["spec"]
    [one_source] = spec["x-kubernetes-validations"]
    assert one_source["rule"] == "has(self.certificate) != has(self.sourceSecretRef)"
    assert one_source["message"] == models.EXACTLY_ONE_SOURCE_MESSAGE
    [subject] = spec["properties"]["certificate"]["x-kubernetes-validations"]
    assert subject["message"] == models.SUBJECT_REQUIRED_MESSAGE


# --- The checker catches drift ------------------------------------------------------


class _DriftedSyncPolicy(BaseModel):
    """spec.syncPolicy gone wrong in every way the checker knows."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    max_retries: int  # required here, defaulted (5) in the CRD; no minimum
    retry_interval: models.Duration = Field(default="1m", validate_default=True)
    deletion_policy: models.DestinationState = models.DestinationState.PENDING
    paused: bool = False  # the CRD calls it suspend


def test_checker_reports_a_drifted_model_by_path() -> None:
    crd_node = crd.openapi_schema()["properties"]["spec"]["properties"]["syncPolicy"]
    del crd_node["default"]  # the field's default, which a model class does not carry
    problems = schema_drift(crd_node, _model_schema(_DriftedSyncPolicy), path="spec.syncPolicy")
    report = "\n".join(problems)
    expected = [
        "spec.syncPolicy.suspend: in the CRD only",
        "spec.syncPolicy.paused: in the model only",
        "spec.syncPolicy.maxRetries: required in the model only",
        "spec.syncPolicy.maxRetries: default differs: CRD 5, model None",
        "spec.syncPolicy.maxRetries: minimum differs: CRD 0, model None",
        "spec.syncPolicy.retryInterval: default differs: CRD '30s', model '1m'",
        "spec.syncPolicy.deletionPolicy: enum differs",
        "spec.syncPolicy.deletionPolicy: default differs: CRD 'Retain', model 'Pending'",
    ]
    for line in expected:
        assert line in report, f"{line!r} not reported:\n{report}"
    assert len(problems) == len(expected)


def _walk(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every (path, schema) below ``node``, the way schema_drift names paths."""
    for name, prop in node.get("properties", {}).items():
        if not path and name in _OPAQUE_AT_ROOT:
            continue
        child = _child(path, name)
        yield child, prop
        yield from _walk(prop, child)
    if "items" in node:
        yield f"{path}[]", node["items"]
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield f"{path}{{}}", node["additionalProperties"]
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _node_at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in re.findall(r"[^.\[\]{}]+|\[\]|\{\}", path):
        if part == "[]":
            node = node["items"]
        elif part == "{}":
            node = node["additionalProperties"]
        else:
            node = node["properties"][part]
    return node


_ALL_PATHS = [p for p, _ in _walk(crd.openapi_schema())]
_FIELD_PATHS = [p for p in _ALL_PATHS if not p.endswith(("[]", "{}"))]


def _drift_of(mutated: dict[str, Any]) -> str:
    return "\n".join(schema_drift(mutated, _model_schema(models.CertificateBinding)))


def test_walk_sees_the_whole_schema() -> None:
    # A guard for the parametrised tests below: they are only as good as the walk.
    assert "spec.certificate.issuerRef.kind" in _FIELD_PATHS
    assert "spec.destinations[].config" in _FIELD_PATHS
    assert "status.destinations[].nextRetryTime" in _FIELD_PATHS
    assert "spec.certificate.secretTemplate.labels{}" in _ALL_PATHS
    assert len(_FIELD_PATHS) >= 60


@pytest.mark.parametrize("path", _FIELD_PATHS)
def test_checker_reports_a_field_missing_from_the_crd(path: str) -> None:
    mutated = crd.openapi_schema()
    parent, _, name = path.rpartition(".")
    del _node_at(mutated, parent)["properties"][name]
    assert f"{path}: in the model only" in _drift_of(mutated)


@pytest.mark.parametrize("path", _FIELD_PATHS)
def test_checker_reports_a_changed_required(path: str) -> None:
    mutated = crd.openapi_schema()
    parent_path, _, name = path.rpartition(".")
    parent = _node_at(mutated, parent_path)
    required = parent.setdefault("required", [])
    if name in required:
        required.remove(name)
        expected = f"{path}: required in the model only"
    else:
        required.append(name)
        expected = f"{path}: required in the CRD only"
    assert expected in _drift_of(mutated)


@pytest.mark.parametrize("path", [p for p, n in _walk(crd.openapi_schema()) if "enum" in n])
def test_checker_reports_a_changed_enum(path: str) -> None:
    mutated = crd.openapi_schema()
    _node_at(mutated, path)["enum"].append("Drifted")
    assert f"{path}: enum differs" in _drift_of(mutated)


@pytest.mark.parametrize("path", _ALL_PATHS)
def test_checker_reports_a_changed_default(path: str) -> None:
    mutated = crd.openapi_schema()
    node = _node_at(mutated, path)
    if "default" in node:
        del node["default"]
    else:
        node["default"] = {"object": {}, "array": []}.get(node.get("type", ""), "drifted")
    assert f"{path}: default differs" in _drift_of(mutated)


@pytest.mark.parametrize(
    "path", [p for p, n in _walk(crd.openapi_schema()) if set(_CONSTRAINTS) & n.keys()]
)
def test_checker_reports_a_changed_constraint(path: str) -> None:
    mutated = crd.openapi_schema()
    node = _node_at(mutated, path)
    keyword = sorted(set(_CONSTRAINTS) & node.keys())[0]
    node[keyword] = "^drifted$" if keyword == "pattern" else node[keyword] + 1
    assert f"{path}: {keyword} differs" in _drift_of(mutated)


def test_checker_reports_a_changed_type() -> None:
    mutated = crd.openapi_schema()
    _node_at(mutated, "status.destinations[].attempts")["type"] = "string"
    assert "status.destinations[].attempts: type differs" in _drift_of(mutated)


def test_checker_reports_a_free_form_object_that_is_not_free_form() -> None:
    mutated = crd.openapi_schema()
    del _node_at(mutated, "spec.destinations[].config")["x-kubernetes-preserve-unknown-fields"]
    assert "spec.destinations[].config: free-form object differs" in _drift_of(mutated)


# --- The CRD is one a kube-apiserver accepts and people can read ----------------------


def test_every_field_has_a_description() -> None:
    undescribed = [p for p, node in _walk(crd.openapi_schema()) if not node.get("description")]
    # Map values and scalar list items of trivial lists need none; everything else does.
    undescribed = [p for p in undescribed if not p.endswith("{}") and not p.endswith("[]")]
    assert undescribed == []


def test_schema_is_structural() -> None:
    """Every node has a type (or keeps unknown fields); list maps key on required fields."""
    root = crd.openapi_schema()
    assert root["type"] == "object"
    for path, node in _walk(root):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "not", "additionalItems"):
            assert forbidden not in node, f"{path}: {forbidden} is not allowed at this level"
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            item = node["items"]
            for key in keys:
                assert key in item.get("required", []) or "default" in item["properties"][key]
        if "default" in node:
            assert "nullable" not in node, path


@pytest.mark.parametrize(
    ("name", "model"), [("validation", models.Validation), ("syncPolicy", models.SyncPolicy)]
)
def test_object_defaults_are_valid_for_their_models(
    name: str, model: type[models.ApiModel]
) -> None:
    """``default: {}``, defaulted again by the API server, is a value the model accepts."""
    schema = crd.openapi_schema()["properties"]["spec"]["properties"][name]
    assert schema["default"] == {}
    value = crd.apply_defaults(schema, {})
    assert value != {}
    assert model.model_validate(value).to_dict() == value
    assert model.model_validate({}).to_dict() == value


def _cel_fields(rule: str) -> set[str]:
    return set(re.findall(r"\bself\.([A-Za-z_][A-Za-z0-9_]*)", rule))


def test_what_cel_reads_is_bounded() -> None:
    """Lists and strings a CEL rule reads have maxItems/maxLength, for the cost estimate."""
    checked = 0
    root = crd.openapi_schema()
    for path, node in [("", root), *_walk(root)]:
        for validation in node.get("x-kubernetes-validations", []):
            for name in _cel_fields(validation["rule"]):
                field = node["properties"][name]
                if field["type"] == "array":
                    assert "maxItems" in field, f"{path}.{name}"
                if field["type"] == "string":
                    assert "maxLength" in field, f"{path}.{name}"
                checked += 1
    assert checked >= 6


def test_printer_columns() -> None:
    [version] = crd.load_crd()["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Ready", "Reason", "Source", "Synced", "Expires", "Age"]
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert columns["Reason"]["priority"] == 1
    assert columns["Source"]["jsonPath"] == ".status.source"
    assert columns["Synced"]["jsonPath"] == ".status.syncedDestinations"
    assert (columns["Expires"]["jsonPath"], columns["Expires"]["type"]) == (
        ".status.notAfter",
        "date",
    )
    assert (columns["Age"]["jsonPath"], columns["Age"]["type"]) == (
        ".metadata.creationTimestamp",
        "date",
    )
    # Every column reads a field the schema has.
    status = crd.openapi_schema()["properties"]["status"]["properties"]
    for column in columns.values():
        if column["jsonPath"].startswith(".status."):
            field = column["jsonPath"].removeprefix(".status.").split("[")[0]
            assert field in status, column


def test_unique_destination_names_are_a_list_map() -> None:
    destinations = crd.openapi_schema()["properties"]["spec"]["properties"]["destinations"]
    assert destinations["x-kubernetes-list-type"] == "map"
    assert destinations["x-kubernetes-list-map-keys"] == ["name"]
    assert destinations["maxItems"] == 64
    config = destinations["items"]["properties"]["config"]
    assert config == {**config, "type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_load_crd_returns_a_copy() -> None:
    first = crd.load_crd()
    first["spec"]["group"] = "changed"
    assert crd.load_crd()["spec"]["group"] == crd.GROUP
    assert copy.deepcopy(crd.openapi_schema()) == crd.openapi_schema()
    with pytest.raises(KeyError, match="v9"):
        crd.openapi_schema("v9")
