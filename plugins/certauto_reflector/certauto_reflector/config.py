"""What users write under ``spec.destinations[].config`` for ``type: reflector``.

The CRD keeps ``config`` free-form, so this model is the whole validation a
reflector entry gets: unknown fields are errors (a typo must not silently copy a
private key somewhere else), names follow Kubernetes' rules, and a label
selector means exactly what it means in Kubernetes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

RESERVED_PREFIX: Final = "certauto.sanorg.in/"
"""Label and annotation keys under this prefix belong to CertAuto."""
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"

_DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN)

NamespaceName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=_DNS1123_LABEL)
]
SecretName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=_DNS1123_SUBDOMAIN)
]


def _check_key(key: str) -> str:
    """A Kubernetes label or annotation key: ``[prefix/]name``.

    Messages never repeat the key: pydantic's error location already names it.
    """
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix)):
        raise ValueError("the key's prefix must be a DNS subdomain of at most 253 characters")
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        raise ValueError(
            "the key's name must be 1-63 characters: letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return key


def _check_label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise ValueError(
            "a label value must be at most 63 characters: letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return value


def _not_reserved(key: str) -> str:
    if key.startswith(RESERVED_PREFIX) or key == MANAGED_BY_LABEL:
        raise ValueError(
            f"keys under {RESERVED_PREFIX} and {MANAGED_BY_LABEL} are set by CertAuto itself"
        )
    return key


LabelKey = Annotated[str, AfterValidator(_check_key)]
LabelValue = Annotated[str, AfterValidator(_check_label_value)]
CopyMetadataKey = Annotated[str, AfterValidator(_check_key), AfterValidator(_not_reserved)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_alias=True, validate_by_name=True
    )


class LabelSelectorRequirement(_Model):
    """One ``matchExpressions`` entry, as in ``metav1.LabelSelectorRequirement``."""

    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[LabelValue, ...] = ()

    @model_validator(mode="after")
    def _values_fit_operator(self) -> Self:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value in 'values'")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no 'values'")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        match self.operator:
            case "In":
                return value is not None and value in self.values
            case "NotIn":
                return value is None or value not in self.values
            case "Exists":
                return value is not None
            case "DoesNotExist":
                return value is None


class LabelSelector(_Model):
    """``metav1.LabelSelector``: every ``matchLabels`` pair and every expression must hold.

    An empty selector (``{}``) selects every namespace, as it does in Kubernetes.
    """

    match_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: tuple[LabelSelectorRequirement, ...] = Field(
        default=(), alias="matchExpressions"
    )

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.match_labels.items()) and all(
            requirement.matches(labels) for requirement in self.match_expressions
        )


class ReflectorConfig(_Model):
    """Where to copy the certificate, and what to call and label the copies.

    A namespace is a target when it is listed in ``namespaces`` **or** matched by
    ``namespaceSelector`` (the union), exists and is not terminating. The
    binding's own namespace is never a target.
    """

    namespaces: tuple[NamespaceName, ...] = ()
    """Namespaces to copy into, by name. Listed namespaces that do not exist are skipped
    until they are created."""
    namespace_selector: LabelSelector | None = Field(default=None, alias="namespaceSelector")
    """Namespaces to copy into, by their labels; a namespace labelled later gets its copy
    on the next sync, one that stops matching loses it."""
    secret_name: SecretName | None = Field(default=None, alias="secretName")
    """The copies' name; default: the binding's name."""
    labels: dict[CopyMetadataKey, LabelValue] = Field(default_factory=dict)
    """Extra labels on every copy (CertAuto's own labels cannot be overridden)."""
    annotations: dict[CopyMetadataKey, str] = Field(default_factory=dict)
    """Extra annotations on every copy (CertAuto's own annotations cannot be overridden)."""

    @model_validator(mode="after")
    def _has_targets(self) -> Self:
        if not self.namespaces and self.namespace_selector is None:
            raise ValueError("no target namespaces: set 'namespaces', 'namespaceSelector' or both")
        return self

    def copy_name(self, binding_name: str) -> str:
        """The name of every copy: ``secretName``, else the binding's name."""
        return self.secret_name or binding_name
