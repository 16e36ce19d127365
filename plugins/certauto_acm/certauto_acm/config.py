"""What users write under ``spec.destinations[].config`` for ``type: aws-acm``.

The CRD keeps ``config`` free-form, so this model is all the validation an entry
gets: unknown fields are errors, names follow AWS's own rules (so a bad tag is
refused here rather than by ImportCertificate, after a network round trip), and
no field holds a credential: access keys live in a Secret the entry points at.

Validators never repeat the offending value in their message (it ends up in
status and Events); pydantic's error location names the field.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from certauto_acm.tags import MAX_USER_TAGS, RESERVED_TAG_PREFIX

REGION_PATTERN: Final = r"^[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}$"
"""``us-east-1``, ``us-gov-west-1``, ``cn-north-1``, ``eusc-de-east-1``."""

_PARTITION = r"aws(-[a-z]+)*"
CERTIFICATE_ARN = re.compile(
    rf"^arn:{_PARTITION}:acm:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{{12}}):"
    r"certificate/[A-Za-z0-9-]{1,128}$"
)
ROLE_ARN_PATTERN: Final = rf"^arn:{_PARTITION}:iam::[0-9]{{12}}:role/[A-Za-z0-9+=,.@_/-]{{1,512}}$"
_DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DATA_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
_TAG_PUNCTUATION = frozenset("_.:/=+-@ ")

EndpointURL = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/?#]+(/[^\s]*)?$")]
SecretKeyName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=_DATA_KEY_PATTERN)
]


def _tag_text_ok(text: str) -> bool:
    """ACM's tag alphabet: ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*`` (letters, spaces, digits, ...)."""
    return all(
        ch.isalpha() or ch.isnumeric() or ch.isspace() or ch in _TAG_PUNCTUATION for ch in text
    )


def _check_tag_key(key: str) -> str:
    if not 1 <= len(key) <= 128:
        raise ValueError("a tag key must be 1-128 characters")
    if not _tag_text_ok(key):
        raise ValueError("a tag key may hold letters, digits, spaces and _ . : / = + - @ only")
    if key.lower().startswith("aws:"):
        raise ValueError("tag keys starting with 'aws:' are reserved by AWS")
    if key.startswith(RESERVED_TAG_PREFIX):
        raise ValueError(f"tag keys under {RESERVED_TAG_PREFIX} are set by CertAuto itself")
    return key


def _check_tag_value(value: str) -> str:
    if len(value) > 256:
        raise ValueError("a tag value must be at most 256 characters")
    if not _tag_text_ok(value):
        raise ValueError("a tag value may hold letters, digits, spaces and _ . : / = + - @ only")
    return value


TagKey = Annotated[str, AfterValidator(_check_tag_key)]
TagValue = Annotated[str, AfterValidator(_check_tag_value)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_alias=True, validate_by_name=True
    )


class SecretRef(_Model):
    """A Secret in the binding's namespace that holds an access key pair.

    The default key names match what most tools write (``accessKeyID`` and
    ``secretAccessKey``); ``sessionTokenKey`` is for temporary keys.
    """

    name: Annotated[
        str, StringConstraints(min_length=1, max_length=253, pattern=_DNS1123_SUBDOMAIN)
    ]
    access_key_id_key: SecretKeyName = Field(default="accessKeyID", alias="accessKeyIDKey")
    secret_access_key_key: SecretKeyName = Field(
        default="secretAccessKey", alias="secretAccessKeyKey"
    )
    session_token_key: SecretKeyName | None = Field(default=None, alias="sessionTokenKey")


class AssumeRole(_Model):
    """A role to assume (``sts:AssumeRole``) with the base credentials, e.g. cross-account."""

    role_arn: Annotated[str, StringConstraints(pattern=ROLE_ARN_PATTERN)] = Field(alias="roleARN")
    external_id: (
        Annotated[str, StringConstraints(min_length=2, max_length=1224, pattern=r"^[\w+=,.@:/-]+$")]
        | None
    ) = Field(default=None, alias="externalID")
    session_name: Annotated[
        str, StringConstraints(min_length=2, max_length=64, pattern=r"^[\w+=,.@-]+$")
    ] = Field(default="certauto", alias="sessionName")


class Credentials(_Model):
    """Where the AWS credentials come from.

    Without ``secretRef`` the operator's own identity is used: the default AWS
    credential chain (environment, IRSA web identity, EKS Pod Identity, instance
    profile). ``assumeRole`` is applied on top of either.
    """

    secret_ref: SecretRef | None = Field(default=None, alias="secretRef")
    assume_role: AssumeRole | None = Field(default=None, alias="assumeRole")


class AcmConfig(_Model):
    """One ACM destination: a region (and account), and optionally a certificate to adopt."""

    region: Annotated[str, StringConstraints(pattern=REGION_PATTERN)]
    certificate_arn: str | None = Field(default=None, alias="certificateArn")
    """Adopt this existing imported certificate (even untagged) and re-import into it."""
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)
    """Extra tags, set on the first import (ACM refuses tags on a re-import)."""
    credentials: Credentials = Field(default_factory=Credentials)
    endpoint_url: EndpointURL | None = Field(default=None, alias="endpointURL")
    """ACM endpoint override: a VPC interface endpoint, or an emulator."""
    sts_endpoint_url: EndpointURL | None = Field(default=None, alias="stsEndpointURL")
    """STS endpoint override for ``assumeRole`` (default: the region's STS endpoint)."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.certificate_arn is not None:
            match = CERTIFICATE_ARN.fullmatch(self.certificate_arn)
            if match is None:
                raise ValueError(
                    "certificateArn must be an ACM certificate ARN "
                    "(arn:aws:acm:<region>:<account>:certificate/<id>)"
                )
            if match.group("region") != self.region:
                raise ValueError("certificateArn is in another region than 'region'")
        if len(self.tags) > MAX_USER_TAGS:
            raise ValueError(
                f"at most {MAX_USER_TAGS} tags: ACM allows 50 per certificate and CertAuto "
                "uses the rest"
            )
        return self


def arn_region(arn: str) -> str | None:
    """The region of an ACM certificate ARN, or ``None`` when it is not one."""
    match = CERTIFICATE_ARN.fullmatch(arn)
    return match.group("region") if match else None
