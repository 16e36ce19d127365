"""The ``config`` of an ``azure-key-vault`` destination, and Key Vault's naming rules.

Users write this under ``spec.destinations[].config``; the core validates it with
:class:`AkvConfig` before the destination sees it. Validation messages never echo
the offending value (the core shows them in status as they are).
"""

from __future__ import annotations

import enum
import hashlib
import re
from typing import Final, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from certauto_core.plugins.contract import BindingRef

__all__ = [
    "CERTIFICATE_NAME_RULE",
    "MAX_USER_TAGS",
    "RESERVED_TAG_PREFIX",
    "AkvConfig",
    "ClientSecretRef",
    "ContentType",
    "CredentialType",
    "CredentialsConfig",
    "OnSoftDeleted",
    "default_certificate_name",
    "is_valid_certificate_name",
]

CERTIFICATE_NAME_PATTERN: Final = re.compile(r"[0-9a-zA-Z-]{1,127}")
"""Key Vault's rule for object names (matched in full)."""

CERTIFICATE_NAME_RULE: Final = (
    "must be 1 to 127 characters, each an ASCII letter, a digit or '-' "
    "(Key Vault's rule for certificate names)"
)

MAX_TAGS: Final = 15
"""Key Vault's limit of tags per object."""

RESERVED_TAG_PREFIX: Final = "certauto-"
"""Tags CertAuto writes itself start with this; users may not set them."""

OWN_TAG_COUNT: Final = 5
"""How many tags CertAuto writes on every version (see :mod:`certauto_akv.tags`)."""

MAX_USER_TAGS: Final = MAX_TAGS - OWN_TAG_COUNT
MAX_TAG_NAME_LENGTH: Final = 512
MAX_TAG_VALUE_LENGTH: Final = 256

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")
_TENANT_ID = re.compile(r"[0-9A-Za-z.-]{1,256}")
_HOST = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def is_valid_certificate_name(name: str) -> bool:
    """Whether ``name`` satisfies Key Vault's name rule ``^[0-9a-zA-Z-]{1,127}$``."""
    return CERTIFICATE_NAME_PATTERN.fullmatch(name) is not None


def default_certificate_name(binding: BindingRef) -> str:
    """The certificate name used when ``certificateName`` is not set.

    ``<namespace>-<binding>-<destination>`` when that already satisfies Key Vault's
    rule. Otherwise (a ``.`` in a name, or longer than 127 characters) every
    character outside ``[0-9a-zA-Z-]`` becomes ``-``, the result is cut to fit,
    and ``-`` plus the first 10 hex digits of the SHA-256 of ``binding.key`` are
    appended, so that two bindings whose names differ only in a replaced
    character do not collide. Deterministic: the same binding always gets the
    same name.
    """
    raw = f"{binding.namespace}-{binding.name}-{binding.destination}"
    if is_valid_certificate_name(raw):
        return raw
    digest = hashlib.sha256(binding.key.encode()).hexdigest()[:10]
    cleaned = re.sub(r"[^0-9a-zA-Z-]", "-", raw)
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip("-")
    cleaned = cleaned[: 127 - len(digest) - 1].rstrip("-")
    return f"{cleaned}-{digest}" if cleaned else digest


class OnSoftDeleted(enum.StrEnum):
    """What to do when the certificate's name is held by a soft-deleted certificate."""

    RECOVER = "Recover"
    """Recover it (keeping its versions), then import the new version if needed."""
    PURGE = "Purge"
    """Purge it for good, then import. Needs the purge permission and a vault
    without purge protection."""
    FAIL = "Fail"
    """Touch nothing and report the destination as Failed."""


class ContentType(enum.StrEnum):
    """How Key Vault stores the certificate's backing secret (``policy.contentType``)."""

    PKCS12 = "PKCS12"
    """``application/x-pkcs12``: what App Gateway, Front Door and most consumers expect."""
    PEM = "PEM"
    """``application/x-pem-file``: a PKCS#8 key followed by the leaf and its chain."""

    @property
    def mime(self) -> str:
        return "application/x-pkcs12" if self is ContentType.PKCS12 else "application/x-pem-file"


class CredentialType(enum.StrEnum):
    """How the operator authenticates to the vault."""

    DEFAULT = "DefaultAzureCredential"
    """azure-identity's DefaultAzureCredential: Azure Workload Identity, managed identity,
    or service-principal environment variables of the operator's pod."""
    CLIENT_SECRET = "ClientSecret"  # noqa: S105 - a type name, not a secret
    """A Microsoft Entra application's client id and secret, from a Secret in the
    binding's namespace."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClientSecretRef(_Model):
    """A Secret in the binding's namespace holding an application's client id and secret."""

    name: str
    client_id_key: str = Field(default="clientID", alias="clientIDKey")
    client_secret_key: str = Field(default="clientSecret", alias="clientSecretKey")
    tenant_id_key: str = Field(default="tenantID", alias="tenantIDKey")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
            raise ValueError("must be a Secret name (a DNS subdomain, at most 253 characters)")
        return value

    @field_validator("client_id_key", "client_secret_key", "tenant_id_key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        if not _SECRET_KEY.fullmatch(value):
            raise ValueError("must be a Secret data key ([-._a-zA-Z0-9], at most 253 characters)")
        return value


class CredentialsConfig(_Model):
    """Which identity the operator uses for this vault. Never holds a secret itself."""

    type: CredentialType = CredentialType.DEFAULT
    secret_ref: ClientSecretRef | None = Field(default=None, alias="secretRef")
    tenant_id: str | None = Field(default=None, alias="tenantID")
    """The Microsoft Entra tenant. ``ClientSecret``: overrides the Secret's tenant key.
    ``DefaultAzureCredential``: the workload identity's tenant (default: ``AZURE_TENANT_ID``)."""
    client_id: str | None = Field(default=None, alias="clientID")
    """``DefaultAzureCredential`` only: the client id of a user-assigned managed identity
    or workload identity (default: ``AZURE_CLIENT_ID``)."""
    authority_host: str | None = Field(default=None, alias="authorityHost")
    """The Microsoft Entra authority, e.g. ``login.microsoftonline.us`` for US Government
    (default: ``AZURE_AUTHORITY_HOST``, else the public cloud)."""

    @field_validator("tenant_id")
    @classmethod
    def _check_tenant(cls, value: str | None) -> str | None:
        if value is not None and not _TENANT_ID.fullmatch(value):
            raise ValueError("must be a tenant id or domain (letters, digits, '-' and '.')")
        return value

    @field_validator("client_id")
    @classmethod
    def _check_client_id(cls, value: str | None) -> str | None:
        if value is not None and not _TENANT_ID.fullmatch(value):
            raise ValueError("must be an application (client) id")
        return value

    @field_validator("authority_host")
    @classmethod
    def _check_authority(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.removeprefix("https://").rstrip("/")
        if not _HOST.fullmatch(host):
            raise ValueError("must be a host name such as login.microsoftonline.com")
        return f"https://{host}"

    @model_validator(mode="after")
    def _check_type(self) -> Self:
        if self.type is CredentialType.CLIENT_SECRET:
            if self.secret_ref is None:
                raise ValueError("type ClientSecret needs secretRef (a Secret in the namespace)")
            if self.client_id is not None:
                raise ValueError("clientID is for DefaultAzureCredential; put it in the Secret")
        elif self.secret_ref is not None:
            raise ValueError("secretRef needs type ClientSecret")
        return self


def _check_vault_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("must be an https URL such as https://my-vault.vault.azure.net") from None
    if (
        parts.scheme != "https"
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(
            "must be a vault's https URL without a path, such as https://my-vault.vault.azure.net"
        )
    host = parts.hostname
    return f"https://{host}" + (f":{port}" if port is not None else "")


class AkvConfig(_Model):
    """``config`` of a destination of type ``azure-key-vault``."""

    vault_url: str = Field(alias="vaultURL")
    """The vault's URL, such as ``https://my-vault.vault.azure.net`` (normalised)."""
    certificate_name: str | None = Field(default=None, alias="certificateName")
    """Defaults to :func:`default_certificate_name` of the binding."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Extra tags on every version CertAuto imports (at most 10; ``certauto-*`` is ours)."""
    on_soft_deleted: OnSoftDeleted = Field(default=OnSoftDeleted.RECOVER, alias="onSoftDeleted")
    purge_on_delete: bool = Field(default=False, alias="purgeOnDelete")
    """With ``deletionPolicy: Delete``, purge the deleted certificate too."""
    content_type: ContentType = Field(default=ContentType.PKCS12, alias="contentType")
    credentials: CredentialsConfig = Field(default_factory=CredentialsConfig)

    @field_validator("vault_url")
    @classmethod
    def _check_vault_url(cls, value: str) -> str:
        return _check_vault_url(value)

    @field_validator("certificate_name")
    @classmethod
    def _check_certificate_name(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_certificate_name(value):
            raise ValueError(CERTIFICATE_NAME_RULE)
        return value

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_USER_TAGS:
            raise ValueError(
                f"at most {MAX_USER_TAGS} tags: Key Vault allows {MAX_TAGS} and CertAuto "
                f"writes {OWN_TAG_COUNT} of its own"
            )
        for name, tag_value in value.items():
            if not name or len(name) > MAX_TAG_NAME_LENGTH:
                raise ValueError(f"tag names must have 1 to {MAX_TAG_NAME_LENGTH} characters")
            if name.lower().startswith(RESERVED_TAG_PREFIX):
                raise ValueError(f"tag names starting with {RESERVED_TAG_PREFIX!r} are CertAuto's")
            if len(tag_value) > MAX_TAG_VALUE_LENGTH:
                raise ValueError(f"tag values may have at most {MAX_TAG_VALUE_LENGTH} characters")
        return value

    def name_for(self, binding: BindingRef) -> str:
        """The certificate name this destination entry uses."""
        return self.certificate_name or default_certificate_name(binding)
