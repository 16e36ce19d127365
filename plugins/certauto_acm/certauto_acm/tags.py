"""The tags that make an ACM certificate CertAuto's, and how they are read.

Status is a hint, tags are the record: a certificate carries the binding
(``namespace/name``) and the destination entry it was imported for, so a
binding whose status was lost (recreated, wiped) finds its certificate again
instead of importing a duplicate. The binding's UID is deliberately not part of
the identity: a binding deleted with ``deletionPolicy: Retain`` and created again
under the same name takes its certificate back.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from certauto_core.plugins.contract import BindingRef

RESERVED_TAG_PREFIX: Final = "certauto.sanorg.in/"
MANAGED_BY: Final = "certauto.sanorg.in/managed-by"
MANAGED_BY_VALUE: Final = "certauto"
BINDING: Final = "certauto.sanorg.in/binding"
DESTINATION: Final = "certauto.sanorg.in/destination"
SUPERSEDED_BY: Final = "certauto.sanorg.in/superseded-by"
"""On a certificate CertAuto replaced by a new import (key type change): the new ARN."""
SUPERSEDES: Final = "certauto.sanorg.in/supersedes"
"""On the replacement: the ARN it replaced, until that one is deleted."""

ACM_MAX_TAGS: Final = 50
MAX_USER_TAGS: Final = ACM_MAX_TAGS - 5
"""ACM's 50 tags, minus CertAuto's own five."""

TagList = list[dict[str, str]]


class Ownership(enum.Enum):
    """Whose a certificate is, judged by its tags only."""

    OURS = "ours"
    """Tagged for this binding and destination entry."""
    OTHER_BINDING = "other-binding"
    """Tagged by CertAuto for another binding or destination entry."""
    UNMANAGED = "unmanaged"
    """Not tagged as CertAuto's at all."""


def identity_tags(binding: BindingRef) -> dict[str, str]:
    """The three tags that say "this certificate belongs to this destination entry"."""
    return {
        MANAGED_BY: MANAGED_BY_VALUE,
        BINDING: f"{binding.namespace}/{binding.name}",
        DESTINATION: binding.destination,
    }


def desired_tags(binding: BindingRef, user_tags: Mapping[str, str]) -> dict[str, str]:
    """Every tag CertAuto wants on the certificate: the user's, then its own (which win)."""
    return {**user_tags, **identity_tags(binding)}


def ownership(tags: Mapping[str, str], binding: BindingRef) -> Ownership:
    if tags.get(MANAGED_BY) != MANAGED_BY_VALUE:
        return Ownership.UNMANAGED
    wanted = identity_tags(binding)
    if all(tags.get(key) == value for key, value in wanted.items()):
        return Ownership.OURS
    return Ownership.OTHER_BINDING


def describe_owner(tags: Mapping[str, str]) -> str:
    """``binding apps/web, destination acm`` for messages about another binding's certificate."""
    binding = tags.get(BINDING, "<unknown>")
    destination = tags.get(DESTINATION, "<unknown>")
    return f"binding {binding}, destination {destination}"


def missing_tags(present: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str]:
    """The wanted tags that are absent or have another value."""
    return {key: value for key, value in wanted.items() if present.get(key) != value}


def to_tag_list(tags: Mapping[str, str]) -> TagList:
    """ACM's wire form, sorted so requests are reproducible."""
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def from_tag_list(tags: list[dict[str, str]]) -> dict[str, str]:
    """ACM's wire form back to a mapping (a tag without ``Value`` maps to ``""``)."""
    return {tag["Key"]: tag.get("Value", "") for tag in tags}
