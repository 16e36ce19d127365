"""Setting ``metav1.Condition`` entries the Kubernetes way.

Like ``k8s.io/apimachinery/pkg/api/meta.SetStatusCondition``: one entry per type,
``lastTransitionTime`` moves only when ``status`` changes, and ``observedGeneration``
records the generation the condition was computed for. The functions are pure: they
return a new tuple and leave the input alone, and when nothing changed the result is
equal to the input, so "patch status only when it changed" is a plain ``==``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum

from certauto_core.api.models import Condition, ConditionStatus

__all__ = [
    "ConditionType",
    "find_condition",
    "is_condition_true",
    "remove_condition",
    "set_condition",
]


class ConditionType(StrEnum):
    """The condition types CertAuto sets on a binding."""

    VALIDATED = "Validated"
    """The source certificate passed validation (parses, key matches, chain, validity)."""
    SYNCED = "Synced"
    """Every destination holds the current certificate."""
    READY = "Ready"
    """The binding is validated and synced: the summary a user looks at."""


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of this type, or ``None``."""
    return next((c for c in conditions if c.type == type_), None)


def is_condition_true(conditions: Sequence[Condition], type_: str) -> bool:
    """Whether the condition of this type is present with status ``True``."""
    found = find_condition(conditions, type_)
    return found is not None and found.status is ConditionStatus.TRUE


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus | bool,
    *,
    reason: str,
    message: str = "",
    observed_generation: int | None = None,
    now: datetime | None = None,
) -> tuple[Condition, ...]:
    """Return ``conditions`` with the condition of ``type_`` set.

    A new type is appended (order is kept, so the list does not churn). An existing
    entry is replaced in place; its ``lastTransitionTime`` is kept unless ``status``
    changes, in which case it becomes ``now`` (default: the current time). A bool
    ``status`` means ``True``/``False``.

    :raises pydantic.ValidationError: when ``reason`` or ``type_`` do not have the
        ``metav1.Condition`` shape (for example a reason with spaces).
    """
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    existing = find_condition(conditions, type_)
    if existing is not None and existing.status == status:
        transition = existing.last_transition_time
    else:
        transition = now if now is not None else datetime.now(UTC)
    updated = Condition(
        type=type_,
        status=status,
        observed_generation=observed_generation,
        last_transition_time=transition,
        reason=reason,
        message=message,
    )
    if existing is None:
        return (*conditions, updated)
    if existing == updated:
        return tuple(conditions)
    return tuple(updated if c.type == type_ else c for c in conditions)


def remove_condition(conditions: Sequence[Condition], type_: str) -> tuple[Condition, ...]:
    """Return ``conditions`` without the condition of ``type_``."""
    return tuple(c for c in conditions if c.type != type_)
