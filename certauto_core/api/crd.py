"""The CertificateBinding CRD, shipped as package data (``crd.yaml``), and helpers.

``crd.yaml`` is the source of truth for the API's schema: install it from here
(:func:`load_crd`), never from a copy, so the operator and the API server it talks to
agree on the schema it was built with.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any, Final

import yaml

__all__ = [
    "API_VERSION",
    "CRD_NAME",
    "GROUP",
    "KIND",
    "LIST_KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "apply_defaults",
    "crd_yaml",
    "load_crd",
    "openapi_schema",
]

GROUP: Final = "sanorg.in"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "CertificateBinding"
LIST_KIND: Final = "CertificateBindingList"
PLURAL: Final = "certificatebindings"
SINGULAR: Final = "certificatebinding"
SHORT_NAMES: Final = ("cb",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

_RESOURCE: Final = "crd.yaml"


def crd_yaml() -> str:
    """The CRD manifest as shipped, for ``kubectl apply -f -`` or a Helm chart."""
    return resources.files("certauto_core.api").joinpath(_RESOURCE).read_text(encoding="utf-8")


@functools.cache
def _parsed() -> dict[str, Any]:
    loaded = yaml.safe_load(crd_yaml())
    if not isinstance(loaded, dict):
        raise TypeError(f"{_RESOURCE} is not a YAML mapping")
    return loaded


def load_crd() -> dict[str, Any]:
    """The CRD manifest as a dict (a fresh copy: callers may change it)."""
    return copy.deepcopy(_parsed())


def openapi_schema(version: str = VERSION) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of a served version (a fresh copy)."""
    for served in _parsed()["spec"]["versions"]:
        if served["name"] == version:
            schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
            return copy.deepcopy(schema)
    raise KeyError(f"{CRD_NAME} has no version {version!r}")


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill in the schema's defaults the way the API server does, in place; return ``value``.

    A port of ``k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting``: a
    property that is absent (or ``null`` where the schema is not nullable) gets a deep
    copy of its default, then every present property, list item and map value is
    defaulted recursively, so ``default: {}`` on an object picks up its fields' own
    defaults. Objects as stored are defaulted this way on every read, so what the
    operator sees always has them.
    """
    if isinstance(value, dict):
        properties: dict[str, Any] = schema.get("properties", {})
        for key, prop in properties.items():
            if "default" not in prop:
                continue
            if key not in value or (value[key] is None and not prop.get("nullable", False)):
                value[key] = copy.deepcopy(prop["default"])
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                apply_defaults(properties[key], item)
            elif isinstance(additional, dict):
                apply_defaults(additional, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(schema["items"], item)
    return value
