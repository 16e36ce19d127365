"""The tags CertAuto puts on every certificate version it imports, and what they prove.

Tag names use ``certauto-`` and no ``/``: Key Vault itself accepts any string,
but Azure Policy, Resource Graph and most Azure tooling reject ``/`` (and
``<>%&\\?``) in tag names, and these tags end up in inventories and policies.

* ``certauto-managed-by: certauto``: written by CertAuto.
* ``certauto-binding: <namespace>/<name>`` and ``certauto-destination: <entry>``:
  which binding's destination entry owns the certificate. Only that entry
  imports into, tags, or deletes it; anything else is a Conflict.
* ``certauto-fingerprint``: SHA-256 of the leaf (informational; the
  fingerprint CertAuto compares is always computed from the stored certificate).
* ``certauto-content-hash``: :attr:`CertificateMaterial.content_hash`, so a new
  chain behind the same leaf is imported too.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from typing import Final

from certauto_akv.config import MAX_TAG_VALUE_LENGTH
from certauto_core.plugins.contract import BindingRef

__all__ = [
    "BINDING_TAG",
    "CONTENT_HASH_TAG",
    "DESTINATION_TAG",
    "FINGERPRINT_TAG",
    "MANAGED_BY_TAG",
    "MANAGED_BY_VALUE",
    "Ownership",
    "describe_owner",
    "desired_tags",
    "ownership",
]

MANAGED_BY_TAG: Final = "certauto-managed-by"
MANAGED_BY_VALUE: Final = "certauto"
BINDING_TAG: Final = "certauto-binding"
DESTINATION_TAG: Final = "certauto-destination"
FINGERPRINT_TAG: Final = "certauto-fingerprint"
CONTENT_HASH_TAG: Final = "certauto-content-hash"
OWN_TAGS: Final = (MANAGED_BY_TAG, BINDING_TAG, DESTINATION_TAG, FINGERPRINT_TAG, CONTENT_HASH_TAG)


def _fit(value: str) -> str:
    """``value`` if it fits a tag value, else a deterministic shortened form."""
    if len(value) <= MAX_TAG_VALUE_LENGTH:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    return f"{value[: MAX_TAG_VALUE_LENGTH - len(digest) - 1]}~{digest}"


def binding_tag_value(binding: BindingRef) -> str:
    return _fit(f"{binding.namespace}/{binding.name}")


def destination_tag_value(binding: BindingRef) -> str:
    return _fit(binding.destination)


def desired_tags(
    binding: BindingRef, fingerprint: str, content_hash: str, user_tags: Mapping[str, str]
) -> dict[str, str]:
    """Every tag a version imported for ``binding`` should carry, user tags included."""
    tags = dict(user_tags)
    tags.update(
        {
            MANAGED_BY_TAG: MANAGED_BY_VALUE,
            BINDING_TAG: binding_tag_value(binding),
            DESTINATION_TAG: destination_tag_value(binding),
            FINGERPRINT_TAG: fingerprint,
            CONTENT_HASH_TAG: content_hash,
        }
    )
    return tags


class Ownership(enum.Enum):
    OURS = "ours"
    """Tagged for this binding's destination entry."""
    OTHER_ENTRY = "other-entry"
    """Managed by CertAuto, for another binding or destination entry."""
    FOREIGN = "foreign"
    """Not managed by CertAuto at all."""


def ownership(tags: Mapping[str, str] | None, binding: BindingRef) -> Ownership:
    """Who owns an object carrying ``tags``, as seen from ``binding``."""
    tags = tags or {}
    if tags.get(MANAGED_BY_TAG) != MANAGED_BY_VALUE:
        return Ownership.FOREIGN
    if tags.get(BINDING_TAG) == binding_tag_value(binding) and tags.get(
        DESTINATION_TAG
    ) == destination_tag_value(binding):
        return Ownership.OURS
    return Ownership.OTHER_ENTRY


def describe_owner(tags: Mapping[str, str] | None) -> str:
    """Who the tags say owns the object, for a Conflict message."""
    tags = tags or {}
    if tags.get(MANAGED_BY_TAG) != MANAGED_BY_VALUE:
        return "not managed by CertAuto"
    return (
        f"managed by CertAuto for binding {tags.get(BINDING_TAG, '?')}, "
        f"destination {tags.get(DESTINATION_TAG, '?')}"
    )
