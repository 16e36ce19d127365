"""The binding-level summary: conditions Validated, Synced, Ready and printer columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from certauto_core.api.conditions import set_condition
from certauto_core.api.models import Condition, DestinationState, DestinationStatus

VALIDATED = "Validated"
SYNCED = "Synced"
READY = "Ready"


@dataclass(frozen=True)
class Verdict:
    """Whether the source passed validation, and why not."""

    ok: bool
    reason: str
    message: str
    pending: bool = False
    """Not valid *yet* (issuance in progress): reported, but no Warning event."""


def summarize(
    conditions: Sequence[Condition],
    *,
    validation: Verdict,
    destinations: Sequence[DestinationStatus],
    generation: int | None,
    now: datetime,
    suspended: bool = False,
) -> tuple[tuple[Condition, ...], str]:
    """New conditions and the ``Synced n/m`` column from the parts' states."""
    result = tuple(conditions)
    result = set_condition(
        result,
        VALIDATED,
        validation.ok,
        reason=validation.reason,
        message=validation.message,
        observed_generation=generation,
        now=now,
    )
    synced = [d for d in destinations if d.state is DestinationState.SYNCED]
    column = f"{len(synced)}/{len(destinations)}"
    lagging = [d for d in destinations if d.state is not DestinationState.SYNCED]
    if not destinations:
        synced_ok, reason, message = True, "NoDestinations", "the binding has no destinations"
    elif not lagging:
        synced_ok, reason = True, "AllSynced"
        message = f"{column} destinations hold the current certificate"
    else:
        synced_ok = False
        states = {d.state for d in lagging}
        reason = (
            "DestinationConflict"
            if DestinationState.CONFLICT in states
            else "DestinationFailed"
            if DestinationState.FAILED in states
            else "DestinationRetrying"
            if DestinationState.RETRYING in states
            else "DestinationPending"
        )
        details = "; ".join(
            f"{d.name}: {d.state.value}: {d.message or ''}".rstrip(": ") for d in lagging
        )
        message = f"{column} destinations synced; {details}"[:2000]
    result = set_condition(
        result,
        SYNCED,
        synced_ok,
        reason=reason,
        message=message,
        observed_generation=generation,
        now=now,
    )
    if suspended:
        ready_ok, ready_reason, ready_message = False, "Suspended", "syncPolicy.suspend is true"
    elif not validation.ok:
        ready_ok, ready_reason, ready_message = False, validation.reason, validation.message
    elif not synced_ok:
        ready_ok, ready_reason, ready_message = False, reason, message
    else:
        ready_ok, ready_reason, ready_message = True, "Ready", message
    result = set_condition(
        result,
        READY,
        ready_ok,
        reason=ready_reason,
        message=ready_message,
        observed_generation=generation,
        now=now,
    )
    return result, column
