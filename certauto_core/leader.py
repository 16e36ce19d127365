"""Leader election on a ``coordination.k8s.io/v1`` Lease, after client-go's leaderelection.

Every replica runs a :class:`LeaderElector`; the one holding the Lease reconciles and
writes, the others keep their caches warm and poll the Lease every ``retry_period``.

How it stays safe (the same rules as client-go):

* **Optimistic concurrency.** Every write is a ``PUT`` carrying the ``resourceVersion``
  just read; when two replicas race, the API server answers one of them 409 Conflict.
* **Observed time, not remote timestamps.** A standby never compares ``renewTime``
  with its own clock (clocks drift between nodes). It remembers when *it* last saw the
  Lease record change, and takes the Lease over only once ``leaseDurationSeconds`` have
  passed on its own monotonic clock without a change, or at once when
  ``holderIdentity`` is empty (a graceful release).
* **Fencing.** The leader may write only while :meth:`LeaderElector.fencing` is true:
  it holds the Lease *and* its last successful renewal was sent less than
  ``renew_deadline`` ago. Because ``renew_deadline < lease_duration``, a leader that
  cannot renew stops writing before any standby can take over: no split brain. The
  renewal time counts from when the request was *sent*, which errs on the safe side.
* **Graceful release.** When :meth:`LeaderElector.run` is cancelled, the leader stops
  leading (``on_stopped_leading``) and then clears ``holderIdentity``, so a standby
  takes over within one ``retry_period`` instead of a whole ``lease_duration``.

RBAC (what the Helm chart's Role must grant, in the Lease's namespace, and no more)::

    - apiGroups: ["coordination.k8s.io"]
      resources: ["leases"]
      verbs: ["create"]              # cannot be narrowed by name: a create has none yet
    - apiGroups: ["coordination.k8s.io"]
      resources: ["leases"]
      resourceNames: ["certauto-leader"]   # LeaderConfig.name
      verbs: ["get", "update"]

No ``list``, ``watch``, ``patch`` or ``delete``: the elector reads its one Lease by
name, writes it with ``PUT`` and never deletes it (a release only clears the holder).

Anyone else who writes the Lease (an admin editing it by hand) breaks the protocol;
the leader notices at its next renewal and steps down at once.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp

from certauto_core.kube.client import JSON, KubeClient
from certauto_core.kube.errors import ApiError, ConflictError, NotFoundError
from certauto_core.kube.resources import LEASES
from certauto_core.observability.metrics import Metrics

__all__ = [
    "LEASE_VERBS",
    "LeaderConfig",
    "LeaderElector",
    "NotLeaderError",
    "micro_time",
]

log = logging.getLogger("certauto.leader")

LEASE_VERBS: Final = ("get", "create", "update")
"""The verbs on ``leases`` the elector needs (see the module docstring for the Role)."""

# client-go's MicroTime wire format: RFC 3339 with exactly six fractional digits.
MICRO_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"

# Standbys poll at retry_period stretched by up to this fraction, so that replicas
# started together do not hit the API server in lockstep.
ACQUIRE_JITTER: Final = 0.2

# Never give a request less time than this, even right at the renew deadline.
MIN_REQUEST_TIMEOUT: Final = 0.05

Callback = Callable[[], Awaitable[None] | None]


def micro_time(moment: datetime | None = None) -> str:
    """``moment`` (default: now) as a Kubernetes MicroTime, e.g. ``2006-01-02T15:04:05.000000Z``."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime(MICRO_TIME_FORMAT)


class NotLeaderError(Exception):
    """Raised by :meth:`LeaderElector.ensure_leading` when this replica may not write."""


@dataclass(frozen=True, kw_only=True)
class LeaderConfig:
    """Where the Lease is, who we are, and the timing (seconds), as in client-go.

    ``lease_duration``: how long a standby waits, after it last saw the Lease change,
    before it takes the Lease over (written rounded up to whole seconds).
    ``renew_deadline``: how long the leader keeps leading without a successful renewal.
    ``retry_period``: how often the leader renews and standbys poll.
    ``release_on_cancel``: clear the holder when :meth:`LeaderElector.run` ends, so a
    standby takes over at once (turn off only to simulate a crash).
    """

    namespace: str
    name: str = "certauto-leader"
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True

    def __post_init__(self) -> None:
        if not self.identity:
            raise ValueError("the leader election identity must not be empty")
        if not self.namespace or not self.name:
            raise ValueError("the Lease needs a namespace and a name")
        if self.retry_period <= 0:
            raise ValueError("retry_period must be positive")
        if not self.lease_duration > self.renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if not self.renew_deadline > self.retry_period * (1 + ACQUIRE_JITTER):
            raise ValueError(
                f"renew_deadline must be greater than {1 + ACQUIRE_JITTER:g} x retry_period"
            )

    @property
    def lease_duration_seconds(self) -> int:
        """``leaseDurationSeconds`` as written (an int32; rounded up, never down)."""
        return max(1, math.ceil(self.lease_duration))


class _Attempt(enum.Enum):
    HELD = "held"
    """We hold the Lease: acquired, or renewed."""
    HELD_ELSEWHERE = "held elsewhere"
    """Another replica holds it (and, for a standby, it has not expired)."""
    FAILED = "failed"
    """The API server could not be read or written, or another replica won a race."""


class LeaderElector:
    """Campaigns for a Lease and tells the operator whether it leads.

    * :attr:`leading` is set while this replica leads; :attr:`standby` is its complement
      (so code can ``await`` either transition).
    * :meth:`fencing` is what to check right before each write.
    * ``on_started_leading`` is called when leadership is won. If it returns an
      awaitable, that runs as a task owned by the elector for as long as we lead, and
      is cancelled (and awaited) when leadership ends: it may be the leader's whole
      work loop, or a quick notification. ``on_stopped_leading`` is called (and
      awaited) after leading ends and before the Lease is released.
    * An exception from a callback or from the leader task ends :meth:`run` with that
      exception, after stepping down and releasing the Lease: the supervisor decides.
    """

    def __init__(
        self,
        kube: KubeClient,
        config: LeaderConfig,
        *,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.kube = kube
        self.config = config
        self._on_started_leading = on_started_leading
        self._on_stopped_leading = on_stopped_leading
        self._metrics = metrics
        self.leading = asyncio.Event()
        """Set while this replica leads."""
        self.standby = asyncio.Event()
        """Set while this replica does not lead (the complement of :attr:`leading`)."""
        self.standby.set()
        self._path = LEASES.path(config.namespace, config.name)
        self._collection = LEASES.path(config.namespace)
        self._lease: JSON | None = None
        self._observed_spec: JSON | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None
        self._leader_task: asyncio.Future[None] | None = None
        self._running = False
        if metrics is not None:
            metrics.leader.set(0)

    # ------------------------------------------------------------------ state
    @property
    def is_leader(self) -> bool:
        """Whether this replica currently considers itself the leader."""
        return self.leading.is_set()

    @property
    def leader_identity(self) -> str | None:
        """The holder of the Lease as last seen (None when nobody holds it)."""
        holder = (self._observed_spec or {}).get("holderIdentity")
        return str(holder) if holder else None

    def fencing(self) -> bool:
        """True only while we hold the Lease and renewed it less than ``renew_deadline`` ago.

        Check it right before every write. It is computed from the clock, not from
        the renewal loop's state, so it turns false on time even if a renewal is stuck
        in flight or the loop has been starved.
        """
        renewed_at = self._renewed_at
        return (
            self.leading.is_set()
            and renewed_at is not None
            and time.monotonic() - renewed_at < self.config.renew_deadline
        )

    def ensure_leading(self) -> None:
        """Raise :class:`NotLeaderError` unless :meth:`fencing` allows a write."""
        if not self.fencing():
            raise NotLeaderError(f"{self.config.identity} does not hold the leader Lease")

    # ------------------------------------------------------------------ the loop
    async def run(self) -> None:
        """Campaign, lead, and campaign again after losing the Lease, until cancelled.

        On the way out (cancelled, or a callback failed) it stops leading and, with
        ``release_on_cancel``, releases the Lease.
        """
        if self._running:
            raise RuntimeError("this LeaderElector is already running")
        self._running = True
        try:
            while True:
                await self._acquire()
                await self._start_leading()
                reason = await self._hold()
                await self._stop_leading(reason, shutting_down=False)
        finally:
            try:
                await self._stop_leading("shutting down", shutting_down=True)
            finally:
                if self.config.release_on_cancel:
                    await self._release()
                self._running = False

    async def _acquire(self) -> None:
        """Return once we hold the Lease; poll every (jittered) ``retry_period``."""
        while True:
            if await self._try_acquire_or_renew(self.config.renew_deadline) is _Attempt.HELD:
                return
            jitter = 1 + random.random() * ACQUIRE_JITTER  # noqa: S311 - not cryptographic
            await asyncio.sleep(self.config.retry_period * jitter)

    async def _hold(self) -> str:
        """Renew every ``retry_period`` while we lead; return why leading ended."""
        config = self.config
        while True:
            await self._pause(config.retry_period)
            while True:
                remaining = self._renewal_budget()
                if remaining <= 0:
                    return f"could not renew the Lease within {config.renew_deadline:g}s"
                attempt = await self._try_acquire_or_renew(remaining)
                if attempt is _Attempt.HELD:
                    break
                if attempt is _Attempt.HELD_ELSEWHERE:
                    return f"the Lease is now held by {self.leader_identity or 'nobody'}"
                await self._pause(min(config.retry_period, max(0.0, self._renewal_budget())))

    def _renewal_budget(self) -> float:
        renewed_at = self._renewed_at if self._renewed_at is not None else -math.inf
        return renewed_at + self.config.renew_deadline - time.monotonic()

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay``, waking early to surface a failure of the leader task."""
        task = self._leader_task
        if task is None or task.done():
            await asyncio.sleep(delay)
        else:
            await asyncio.wait({task}, timeout=delay)
        task = self._leader_task
        if task is not None and task.done():
            self._leader_task = None
            if not task.cancelled():
                task.result()  # the leader work failed: re-raise it out of run()

    # ------------------------------------------------------------------ transitions
    async def _start_leading(self) -> None:
        self.leading.set()
        self.standby.clear()
        if self._metrics is not None:
            self._metrics.leader.set(1)
        log.info(
            "became the leader",
            extra={**self._log_fields(), "transitions": self._transitions()},
        )
        if self._on_started_leading is not None:
            outcome = self._on_started_leading()
            if inspect.isawaitable(outcome):
                self._leader_task = asyncio.ensure_future(outcome)

    async def _stop_leading(self, reason: str, *, shutting_down: bool) -> None:
        if not self.leading.is_set():
            return
        self.leading.clear()
        self.standby.set()
        if self._metrics is not None:
            self._metrics.leader.set(0)
        level = logging.INFO if shutting_down else logging.WARNING
        log.log(level, "stopped leading: %s", reason, extra=self._log_fields())
        failure: BaseException | None = None
        task, self._leader_task = self._leader_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                failure = task.exception()
        try:
            if self._on_stopped_leading is not None:
                outcome = self._on_stopped_leading()
                if inspect.isawaitable(outcome):
                    await outcome
        except Exception as error:
            failure = failure or error
        if failure is not None:
            if not shutting_down:
                raise failure
            log.error(
                "the leader's work failed while stepping down",
                exc_info=failure,
                extra=self._log_fields(),
            )

    # ------------------------------------------------------------------ Lease I/O
    async def _try_acquire_or_renew(self, budget: float) -> _Attempt:
        """One round of client-go's ``tryAcquireOrRenew``, within ``budget`` seconds."""
        sent_at = time.monotonic()
        deadline = sent_at + budget
        try:
            lease = await self._request("GET", self._path, deadline)
        except NotFoundError:
            return await self._create(sent_at, deadline)
        except ApiError as error:
            log.warning("could not read the Lease: %s", error, extra=self._log_fields())
            return _Attempt.FAILED
        self._observe(lease)
        spec: JSON = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        identity = self.config.identity
        if holder and holder != identity:
            if self.is_leader:
                return _Attempt.HELD_ELSEWHERE
            duration = spec.get("leaseDurationSeconds") or self.config.lease_duration_seconds
            if time.monotonic() < self._observed_at + float(duration):
                return _Attempt.HELD_ELSEWHERE
        now = micro_time()
        renewed: JSON = {
            **spec,
            "holderIdentity": identity,
            "leaseDurationSeconds": self.config.lease_duration_seconds,
            "renewTime": now,
        }
        if holder != identity:
            renewed["acquireTime"] = now
            renewed["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        else:
            renewed.setdefault("acquireTime", now)
            renewed.setdefault("leaseTransitions", 0)
        try:
            written = await self._request("PUT", self._path, deadline, {**lease, "spec": renewed})
        except ConflictError:
            log.debug("another replica wrote the Lease first", extra=self._log_fields())
            return _Attempt.FAILED
        except ApiError as error:
            log.warning("could not write the Lease: %s", error, extra=self._log_fields())
            return _Attempt.FAILED
        self._observe(written)
        self._renewed_at = sent_at
        return _Attempt.HELD

    async def _create(self, sent_at: float, deadline: float) -> _Attempt:
        now = micro_time()
        body: JSON = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self.config.name, "namespace": self.config.namespace},
            "spec": {
                "holderIdentity": self.config.identity,
                "leaseDurationSeconds": self.config.lease_duration_seconds,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            created = await self._request("POST", self._collection, deadline, body)
        except ConflictError:
            log.debug("another replica created the Lease first", extra=self._log_fields())
            return _Attempt.FAILED
        except ApiError as error:
            log.warning("could not create the Lease: %s", error, extra=self._log_fields())
            return _Attempt.FAILED
        self._observe(created)
        self._renewed_at = sent_at
        return _Attempt.HELD

    async def _release(self) -> None:
        """Clear ``holderIdentity`` if the Lease is still ours (precondition: its rv)."""
        if self._lease is None:
            return  # never saw it, so never held it
        deadline = time.monotonic() + self.config.renew_deadline
        try:
            # Read again: a renewal cut short by the cancellation may have landed.
            lease = await self._request("GET", self._path, deadline)
        except ApiError:
            lease = self._lease
        spec: JSON = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.config.identity:
            return
        now = micro_time()
        released: JSON = {
            **spec,
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": now,
            "renewTime": now,
        }
        try:
            written = await self._request("PUT", self._path, deadline, {**lease, "spec": released})
        except ApiError as error:
            log.warning(
                "could not release the Lease (a standby takes over when it expires): %s",
                error,
                extra=self._log_fields(),
            )
            return
        self._observe(written)
        self._renewed_at = None
        log.info("released the Lease", extra=self._log_fields())

    async def _request(self, method: str, path: str, deadline: float, body: Any = None) -> JSON:
        timeout = max(MIN_REQUEST_TIMEOUT, deadline - time.monotonic())
        result: JSON = await self.kube.request(
            method, path, body=body, timeout=aiohttp.ClientTimeout(total=timeout)
        )
        return result

    def _observe(self, lease: JSON) -> None:
        """Remember the Lease, and *when we saw its record change* (observed time)."""
        self._lease = lease
        spec: JSON = lease.get("spec") or {}
        if spec == self._observed_spec:
            return
        before = self.leader_identity
        self._observed_spec = spec
        self._observed_at = time.monotonic()
        after = self.leader_identity
        if after != before and after != self.config.identity:
            log.info(
                "the Lease is held by %s",
                after or "nobody",
                extra={**self._log_fields(), "leader": after},
            )

    def _transitions(self) -> int:
        return int((self._observed_spec or {}).get("leaseTransitions") or 0)

    def _log_fields(self) -> dict[str, str]:
        return {
            "identity": self.config.identity,
            "lease": f"{self.config.namespace}/{self.config.name}",
        }
