"""One destination entry of one binding: decide, act, and say what happened.

This is where the core owns what plugins must not: the publish rule (publish
only when the destination holds something else), retries with backoff and the
``maxRetries`` budget, the per-destination state machine of
``status.destinations[]``, and the mapping of typed plugin errors to states.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from certauto_core.api.models import DestinationState, DestinationStatus, SyncPolicy
from certauto_core.certs.material import CertificateMaterial
from certauto_core.engine.backoff import backoff_delay
from certauto_core.plugins.contract import (
    Destination,
    PreviousSync,
    Target,
    needs_publish,
)
from certauto_core.plugins.errors import (
    ConflictError,
    DestinationError,
    PermanentError,
    RetryableError,
)

log = logging.getLogger("certauto.sync")


@dataclass(frozen=True)
class SyncOutcome:
    """The new status entry, and what the reconciler should report about it."""

    status: DestinationStatus
    result: str
    """``certauto_sync_total{result}``: synced, unchanged, retrying, failed, conflict, skipped."""
    retry_at: datetime | None = None
    not_after: datetime | None = None
    wrote: bool = False


def previous_sync(status: DestinationStatus | None) -> PreviousSync:
    if status is None:
        return PreviousSync()
    return PreviousSync(
        synced_fingerprint=status.synced_fingerprint, external_id=status.external_id
    )


def is_waiting(
    status: DestinationStatus | None, fingerprint: str, now: datetime, resync: timedelta
) -> datetime | None:
    """When a destination is in backoff or parked, the time to look again; else ``None``.

    A destination that is ``Retrying`` waits for its ``nextRetryTime``; one that
    is ``Failed`` or ``Conflict`` waits for the slow resync, unless the source
    changed (a new fingerprint starts over at once). Spec changes reset the
    entry before this is asked.
    """
    if status is None or status.last_attempt_time is None:
        return None
    if status.state is DestinationState.RETRYING and status.next_retry_time is not None:
        return status.next_retry_time if status.next_retry_time > now else None
    parked = status.state in (DestinationState.FAILED, DestinationState.CONFLICT)
    if parked and status.synced_fingerprint in (fingerprint, None):
        due = status.last_attempt_time + resync
        return due if due > now else None
    return None


async def sync_destination(
    destination: Destination,
    material: CertificateMaterial,
    target: Target,
    *,
    previous: DestinationStatus | None,
    type_name: str,
    policy: SyncPolicy,
    now: Callable[[], datetime],
    guard: Callable[[], None],
) -> SyncOutcome:
    """Bring one destination to ``material``: check, observe, publish when it differs.

    ``guard`` is called right before any write; it raises when this replica
    may no longer write (lost leadership).
    """
    name = target.binding.destination
    started = now()
    attempts = previous.attempts or 0 if previous is not None else 0
    try:
        await destination.check_material(material, target)
        observation = await destination.observe(target)
        if not needs_publish(observation, material):
            last_sync = (
                previous.last_sync_time
                if previous is not None
                and previous.state is DestinationState.SYNCED
                and previous.synced_fingerprint == material.fingerprint
                else started
            )
            status = DestinationStatus(
                name=name,
                type=type_name,
                state=DestinationState.SYNCED,
                synced_fingerprint=material.fingerprint,
                external_id=observation.external_id,
                last_sync_time=last_sync,
                last_attempt_time=previous.last_attempt_time if previous else None,
                attempts=0,
                message=_kept_message(previous, material),
            )
            return SyncOutcome(status, "unchanged", not_after=observation.not_after)
        guard()
        result = await destination.publish(material, target)
    except DestinationError as error:
        return _failed(error, name, type_name, previous, attempts, policy, started, material, now)
    except Exception as error:  # a plugin bug must show in status, not kill a worker
        log.exception("destination %s raised an unexpected error", name)
        wrapped = RetryableError(f"unexpected {type(error).__name__} in the {type_name} plugin")
        return _failed(wrapped, name, type_name, previous, attempts, policy, started, material, now)
    status = DestinationStatus(
        name=name,
        type=type_name,
        state=DestinationState.SYNCED,
        synced_fingerprint=result.fingerprint,
        external_id=result.external_id,
        last_sync_time=started,
        last_attempt_time=started,
        attempts=0,
        message=result.message or "published",
    )
    return SyncOutcome(status, "synced", not_after=result.not_after, wrote=True)


def _kept_message(previous: DestinationStatus | None, material: CertificateMaterial) -> str:
    """Keep what the last publish said while the destination still holds that certificate."""
    if (
        previous is not None
        and previous.state is DestinationState.SYNCED
        and previous.synced_fingerprint == material.fingerprint
        and previous.message
    ):
        return previous.message
    return "in sync"


def _failed(
    error: DestinationError,
    name: str,
    type_name: str,
    previous: DestinationStatus | None,
    attempts: int,
    policy: SyncPolicy,
    started: datetime,
    material: CertificateMaterial,
    now: Callable[[], datetime],
) -> SyncOutcome:
    # A new certificate restarts the retry budget: it is a new attempt at a new thing.
    if previous is not None and previous.synced_fingerprint not in (None, material.fingerprint):
        attempts = 0
    kept = replace_or_new(previous, name, type_name)
    base = dict(
        synced_fingerprint=kept.synced_fingerprint,
        external_id=kept.external_id,
        last_sync_time=kept.last_sync_time,
        last_attempt_time=started,
        message=error.message,
    )
    if isinstance(error, ConflictError):
        status = DestinationStatus(
            name=name, type=type_name, state=DestinationState.CONFLICT, attempts=attempts, **base
        )
        return SyncOutcome(status, "conflict")
    if isinstance(error, PermanentError):
        status = DestinationStatus(
            name=name, type=type_name, state=DestinationState.FAILED, attempts=attempts, **base
        )
        return SyncOutcome(status, "failed")
    attempts += 1
    if attempts > policy.max_retries:
        message = f"gave up after {attempts} attempts: {error.message}"
        status = DestinationStatus(
            name=name,
            type=type_name,
            state=DestinationState.FAILED,
            attempts=attempts,
            **{**base, "message": message},
        )
        return SyncOutcome(status, "failed")
    retry_after = error.retry_after if isinstance(error, RetryableError) else None
    delay = backoff_delay(attempts, base=policy.retry_interval, retry_after=retry_after)
    # Counted from when the error came back, and rounded *up* to the whole second
    # that status can hold: a destination's Retry-After must never be cut short.
    retry_at = _ceil_second(now() + delay)
    status = DestinationStatus(
        name=name,
        type=type_name,
        state=DestinationState.RETRYING,
        attempts=attempts,
        next_retry_time=retry_at,
        **base,
    )
    return SyncOutcome(status, "retrying", retry_at=retry_at)


def _ceil_second(moment: datetime) -> datetime:
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def replace_or_new(
    previous: DestinationStatus | None, name: str, type_name: str
) -> DestinationStatus:
    if previous is not None:
        return previous
    return DestinationStatus(name=name, type=type_name, state=DestinationState.PENDING)


def failed_before_sync(
    name: str,
    type_name: str,
    previous: DestinationStatus | None,
    message: str,
    started: datetime,
) -> DestinationStatus:
    """A destination that cannot even be tried (unknown type, bad config)."""
    kept = replace_or_new(previous, name, type_name)
    if (
        previous is not None
        and previous.state is DestinationState.FAILED
        and previous.message == message
    ):
        return previous
    return DestinationStatus(
        name=name,
        type=type_name,
        state=DestinationState.FAILED,
        synced_fingerprint=kept.synced_fingerprint,
        external_id=kept.external_id,
        last_sync_time=kept.last_sync_time,
        last_attempt_time=started,
        attempts=0,
        message=message,
    )
