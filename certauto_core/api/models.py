"""Typed models of a CertificateBinding's spec and status.

They mirror ``crd.yaml`` field for field, constraint for constraint;
``tests/unit/test_crd_drift.py`` fails when the two disagree, so change the CRD first
and then these models.

Conventions:

* Python attributes are snake_case, the wire names (aliases) are the CRD's camelCase;
  both are accepted on input, and :meth:`ApiModel.to_dict` writes the wire names.
* Every model is frozen: a parsed binding is a snapshot. Sequences are tuples.
* Spec models forbid unknown fields (a typo is an error, not a silently ignored
  setting). Status and metadata models ignore them, so an operator can read a status
  written by a newer or older version of itself.
* Defaults are written as the CRD writes them (``"30s"``, ``{}``) and validated, so
  the JSON schema of a model shows the same default as the CRD and the drift test can
  compare them literally. A field that the CRD leaves unset without a default is
  ``None``, or an empty tuple or dict for collections.
* Durations are Go duration strings on the wire and :class:`~datetime.timedelta` in
  Python; timestamps are RFC 3339 in UTC, to the second, on the wire and aware
  :class:`~datetime.datetime` in Python.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    StringConstraints,
    WithJsonSchema,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from certauto_core.api.crd import API_VERSION, KIND
from certauto_core.durations import format_duration, parse_duration

__all__ = [
    "DNS1123_LABEL_PATTERN",
    "DNS1123_SUBDOMAIN_PATTERN",
    "DURATION_PATTERN",
    "EXACTLY_ONE_SOURCE_MESSAGE",
    "SUBJECT_REQUIRED_MESSAGE",
    "ApiModel",
    "CertificateBinding",
    "CertificateBindingSpec",
    "CertificateBindingStatus",
    "CertificateStatus",
    "Condition",
    "ConditionStatus",
    "DeletionPolicy",
    "Destination",
    "DestinationState",
    "DestinationStatus",
    "Duration",
    "IssuerRef",
    "KeyUsage",
    "ManagedCertificate",
    "ObjectMeta",
    "PrivateKey",
    "PrivateKeyAlgorithm",
    "PrivateKeyEncoding",
    "PrivateKeyRotationPolicy",
    "SecretReference",
    "SecretTemplate",
    "SyncPolicy",
    "Timestamp",
    "Validation",
]

# --- Patterns and messages shared with crd.yaml (the drift test compares them) -------

DURATION_PATTERN: Final = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h))+)$"
"""The Go durations the CRD accepts: unsigned, digits then a unit, repeated; or ``0``."""

DNS1123_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN_PATTERN: Final = (
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
DESTINATION_TYPE_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
)
"""``reflector``, ``aws-acm``, or ``vendor.example.com/thing`` (a domain-qualified name)."""

CONDITION_TYPE_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

EXACTLY_ONE_SOURCE_MESSAGE: Final = (
    "exactly one of spec.certificate or spec.sourceSecretRef must be set"
)
SUBJECT_REQUIRED_MESSAGE: Final = (
    "spec.certificate needs at least one of commonName, dnsNames, ipAddresses or uris"
)

_DURATION_RE: Final = re.compile(DURATION_PATTERN)
_DURATION_MAX_LENGTH: Final = 64

# --- Scalar types ---------------------------------------------------------------------


def _parse_duration_field(value: object) -> timedelta:
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError("a duration must not be negative")
        return value
    if not isinstance(value, str):
        # A ValueError, not a TypeError: pydantic turns only the former into a field error.
        raise ValueError(
            f"expected a Go duration string such as '30s' or '24h', got {type(value).__name__}"
        )
    if len(value) > _DURATION_MAX_LENGTH:
        raise ValueError(f"a duration is at most {_DURATION_MAX_LENGTH} characters")
    parsed = parse_duration(value)  # its ValueError names the input and the problem
    if not _DURATION_RE.fullmatch(value):
        # Valid Go ("+1h", ".5h") but outside what the CRD accepts; say so rather than
        # let the API server and the operator disagree.
        raise ValueError(
            f"invalid duration {value!r}: write digits followed by a unit, such as '90m' or "
            "'1h30m' (no sign, no leading '.')"
        )
    return parsed


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration_field),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "maxLength": _DURATION_MAX_LENGTH, "pattern": DURATION_PATTERN}
    ),
]
"""A Go duration string (``"24h"``, ``"1h30m"``) on the wire, a timedelta in Python."""


def _utc_to_the_second(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=0)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(_utc_to_the_second),
    PlainSerializer(_rfc3339, return_type=str, when_used="json"),
]
"""An aware datetime, normalised to UTC and whole seconds like ``metav1.Time``.

Truncating on input keeps a status computed now equal to the same status read back
from the API server, so "patch only when changed" works.
"""

_Dns1123Subdomain = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN_PATTERN)
]

_DnsName = Annotated[str, StringConstraints(min_length=1, max_length=253)]
_IpAddress = Annotated[str, StringConstraints(min_length=1, max_length=45)]
_Uri = Annotated[str, StringConstraints(min_length=1, max_length=2048)]

# --- Enums ------------------------------------------------------------------------------


class PrivateKeyAlgorithm(StrEnum):
    """``spec.certificate.privateKey.algorithm``."""

    RSA = "RSA"
    ECDSA = "ECDSA"
    ED25519 = "Ed25519"


class PrivateKeyEncoding(StrEnum):
    """``spec.certificate.privateKey.encoding``."""

    PKCS1 = "PKCS1"
    PKCS8 = "PKCS8"


class PrivateKeyRotationPolicy(StrEnum):
    """``spec.certificate.privateKey.rotationPolicy``."""

    NEVER = "Never"
    ALWAYS = "Always"


class KeyUsage(StrEnum):
    """A cert-manager key usage or extended key usage, in cert-manager's spelling."""

    SIGNING = "signing"
    DIGITAL_SIGNATURE = "digital signature"
    CONTENT_COMMITMENT = "content commitment"
    KEY_ENCIPHERMENT = "key encipherment"
    KEY_AGREEMENT = "key agreement"
    DATA_ENCIPHERMENT = "data encipherment"
    CERT_SIGN = "cert sign"
    CRL_SIGN = "crl sign"
    ENCIPHER_ONLY = "encipher only"
    DECIPHER_ONLY = "decipher only"
    ANY = "any"
    SERVER_AUTH = "server auth"
    CLIENT_AUTH = "client auth"
    CODE_SIGNING = "code signing"
    EMAIL_PROTECTION = "email protection"
    S_MIME = "s/mime"
    IPSEC_END_SYSTEM = "ipsec end system"
    IPSEC_TUNNEL = "ipsec tunnel"
    IPSEC_USER = "ipsec user"
    TIMESTAMPING = "timestamping"
    OCSP_SIGNING = "ocsp signing"
    MICROSOFT_SGC = "microsoft sgc"
    NETSCAPE_SGC = "netscape sgc"


class DeletionPolicy(StrEnum):
    """What happens to the copies when the binding (or a destination) goes."""

    RETAIN = "Retain"
    DELETE = "Delete"


class DestinationState(StrEnum):
    """``status.destinations[].state``."""

    PENDING = "Pending"
    SYNCED = "Synced"
    RETRYING = "Retrying"
    FAILED = "Failed"
    CONFLICT = "Conflict"
    REMOVED = "Removed"


class ConditionStatus(StrEnum):
    """``status.conditions[].status``."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


# --- Base classes -------------------------------------------------------------------


class ApiModel(BaseModel):
    """Base of every API model: camelCase wire names, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="ignore",
    )

    @model_serializer(mode="wrap")
    def _omit_empty_collections(self, handler: SerializerFunctionWrapHandler) -> Any:
        # The CRD gives no list or map a default, so an empty one and an absent one mean
        # the same; leaving it out keeps `kubectl get -o yaml` and patches free of noise.
        data = handler(self)
        if isinstance(data, dict):
            for name, field in type(self).model_fields.items():
                if field.default_factory is not None and not getattr(self, name):
                    data.pop(name, None)
                    data.pop(field.alias, None)
        return data

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase, JSON types, unset fields and empty collections left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class _SpecModel(ApiModel):
    model_config = ConfigDict(extra="forbid")


# --- Spec ---------------------------------------------------------------------------


class IssuerRef(_SpecModel):
    """``spec.certificate.issuerRef``: the cert-manager issuer that signs the certificate."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    kind: Annotated[str, StringConstraints(min_length=1, max_length=63)] = "Issuer"
    group: Annotated[str, StringConstraints(min_length=1, max_length=253)] = "cert-manager.io"


class PrivateKey(_SpecModel):
    """``spec.certificate.privateKey``; unset fields take cert-manager's defaults."""

    algorithm: PrivateKeyAlgorithm | None = None
    size: Annotated[int, Field(ge=0)] | None = None
    encoding: PrivateKeyEncoding | None = None
    rotation_policy: PrivateKeyRotationPolicy | None = None


class SecretTemplate(_SpecModel):
    """``spec.certificate.secretTemplate``: metadata cert-manager puts on the Secret."""

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ManagedCertificate(_SpecModel):
    """``spec.certificate``: managed mode, CertAuto owns a cert-manager Certificate."""

    secret_name: _Dns1123Subdomain
    issuer_ref: IssuerRef
    common_name: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    dns_names: tuple[_DnsName, ...] = Field(default_factory=tuple, max_length=256)
    ip_addresses: tuple[_IpAddress, ...] = Field(default_factory=tuple, max_length=64)
    uris: tuple[_Uri, ...] = Field(default_factory=tuple, max_length=64)
    duration: Duration | None = None
    renew_before: Duration | None = None
    private_key: PrivateKey | None = None
    usages: tuple[KeyUsage, ...] = Field(default_factory=tuple)
    secret_template: SecretTemplate | None = None

    @model_validator(mode="after")
    def _has_a_subject(self) -> Self:
        if not (self.common_name or self.dns_names or self.ip_addresses or self.uris):
            raise ValueError(SUBJECT_REQUIRED_MESSAGE)
        return self


class SecretReference(_SpecModel):
    """``spec.sourceSecretRef``: a Secret in the binding's namespace."""

    name: _Dns1123Subdomain


class Validation(_SpecModel):
    """``spec.validation``: checks before any destination receives a certificate."""

    min_remaining_validity: Duration = Field(default="24h", validate_default=True)


class Destination(_SpecModel):
    """``spec.destinations[]``: one place the certificate is synced to."""

    name: Annotated[
        str, StringConstraints(min_length=1, max_length=63, pattern=DNS1123_LABEL_PATTERN)
    ]
    type: Annotated[
        str, StringConstraints(min_length=1, max_length=317, pattern=DESTINATION_TYPE_PATTERN)
    ]
    config: dict[str, Any] = Field(default_factory=dict)
    """Free-form; the destination's plugin validates it with its own model."""


class SyncPolicy(_SpecModel):
    """``spec.syncPolicy``: retries and cleanup."""

    max_retries: Annotated[int, Field(ge=0)] = 5
    retry_interval: Duration = Field(default="30s", validate_default=True)
    deletion_policy: DeletionPolicy = DeletionPolicy.RETAIN
    suspend: bool = False


class CertificateBindingSpec(_SpecModel):
    """``spec``: exactly one source (``certificate`` or ``sourceSecretRef``) and destinations."""

    certificate: ManagedCertificate | None = None
    source_secret_ref: SecretReference | None = None
    validation: Validation = Field(default={}, validate_default=True)
    destinations: tuple[Destination, ...] = Field(default_factory=tuple, max_length=64)
    sync_policy: SyncPolicy = Field(default={}, validate_default=True)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        if (self.certificate is None) == (self.source_secret_ref is None):
            raise ValueError(EXACTLY_ONE_SOURCE_MESSAGE)
        return self

    @model_validator(mode="after")
    def _unique_destination_names(self) -> Self:
        seen: set[str] = set()
        for destination in self.destinations:
            if destination.name in seen:
                raise ValueError(f"spec.destinations: duplicate name {destination.name!r}")
            seen.add(destination.name)
        return self

    def destination(self, name: str) -> Destination | None:
        """The destination called ``name``, if the spec has one."""
        return next((d for d in self.destinations if d.name == name), None)


# --- Status -------------------------------------------------------------------------


class Condition(ApiModel):
    """A ``metav1.Condition``; see :mod:`certauto_core.api.conditions` to set one."""

    type: Annotated[str, StringConstraints(max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    status: ConditionStatus
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    last_transition_time: Timestamp
    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)
    ]
    message: Annotated[str, StringConstraints(max_length=32768)]


class CertificateStatus(ApiModel):
    """``status.certificate``: the certificate last validated from the source."""

    serial_number: str | None = None
    not_before: Timestamp | None = None
    not_after: Timestamp | None = None
    sha256_fingerprint: str | None = None
    dns_names: tuple[str, ...] = Field(default_factory=tuple)
    issuer: str | None = None
    key_algorithm: str | None = None


class DestinationStatus(ApiModel):
    """``status.destinations[]``: the truthful state of one destination."""

    name: str
    type: str
    state: DestinationState
    synced_fingerprint: str | None = None
    external_id: str | None = Field(default=None, alias="externalID")
    last_sync_time: Timestamp | None = None
    last_attempt_time: Timestamp | None = None
    attempts: Annotated[int, Field(ge=0)] | None = None
    message: str | None = None
    next_retry_time: Timestamp | None = None


class CertificateBindingStatus(ApiModel):
    """``status``: written by CertAuto only, through the status subresource."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    conditions: tuple[Condition, ...] = Field(default_factory=tuple, max_length=32)
    certificate: CertificateStatus | None = None
    destinations: tuple[DestinationStatus, ...] = Field(default_factory=tuple, max_length=128)
    source: str | None = None
    """``certificate/NAME`` or ``secret/NAME``, for the Source printer column."""
    synced_destinations: str | None = None
    """``n/m`` destinations in sync, for the Synced printer column."""
    not_after: Timestamp | None = None
    """Expiry of the current certificate, for the Expires printer column."""

    def condition(self, type_: str) -> Condition | None:
        """The condition of this type, if set."""
        return next((c for c in self.conditions if c.type == type_), None)

    def destination(self, name: str) -> DestinationStatus | None:
        """The status of the destination called ``name``, if recorded."""
        return next((d for d in self.destinations if d.name == name), None)

    def to_patch(self) -> dict[str, Any]:
        """A JSON merge patch (``application/merge-patch+json``) for the status subresource.

        It replaces the whole status: every field this status leaves unset or empty is
        sent as ``null``, which deletes what an earlier status wrote there (the
        ``exclude_none`` form alone would leave it behind), in nested objects too. A
        merge patch replaces lists whole, so the items in them are in wire form.
        """
        return {"status": _as_merge_patch(self, self.to_dict())}


def _as_merge_patch(model: ApiModel, wire: dict[str, Any]) -> dict[str, Any]:
    """``wire`` (``model``'s to_dict) with ``null`` for every field it leaves out."""
    patch: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        value = getattr(model, name)
        if key not in wire:
            patch[key] = None
        elif isinstance(value, ApiModel):
            patch[key] = _as_merge_patch(value, wire[key])
        else:
            patch[key] = wire[key]
    return patch


# --- The whole object -----------------------------------------------------------------


def _expect(expected: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value != expected:
            raise ValueError(f"expected {expected!r}, got {value!r}")
        return value

    return check


class ObjectMeta(ApiModel):
    """The parts of ``metadata`` the operator reads. Not described by the CRD."""

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: Timestamp | None = None
    deletion_timestamp: Timestamp | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: tuple[str, ...] = Field(default_factory=tuple)


class CertificateBinding(ApiModel):
    """A whole CertificateBinding object as the API server returns it."""

    api_version: Annotated[str, AfterValidator(_expect(API_VERSION))] | None = None
    kind: Annotated[str, AfterValidator(_expect(KIND))] | None = None
    metadata: ObjectMeta
    spec: CertificateBindingSpec
    status: CertificateBindingStatus | None = None
