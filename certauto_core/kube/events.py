"""Kubernetes Events (``core/v1``) on the objects CertAuto acts for, like client-go's recorder.

:meth:`EventRecorder.record` never blocks and never raises on API trouble: it puts the
event on a bounded queue that one task owned by the recorder drains. When the queue is
full the event is dropped and counted (an operator must not stall its reconciles
because the Event API is slow). Repeats are correlated like client-go does: the same
(object, type, reason, message) within ten minutes bumps ``count`` and
``lastTimestamp`` of the Event already written, with a merge patch, instead of
creating another one.

Events are readable by anyone who can list Events in the namespace, so a last-line
defence replaces any message that looks like key material with ``[redacted]``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Literal

from certauto_core.kube.client import JSON, KubeClient
from certauto_core.kube.errors import ApiError, ConflictError, NotFoundError
from certauto_core.kube.resources import EVENTS

__all__ = ["MAX_MESSAGE_BYTES", "REDACTED", "EventRecorder", "EventType"]

logger = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]

MAX_MESSAGE_BYTES: Final = 1024
REDACTED: Final = "[redacted]"
CORRELATION_WINDOW: Final = 600.0
"""Seconds within which a repeat bumps the existing Event (client-go: 10 minutes)."""
_KEY_MATERIAL_MARKERS: Final = ("-----BEGIN", "PRIVATE KEY")
_CACHE_SIZE: Final = 4096  # client-go's maxLruCacheEntries
_MAX_NAME = 253
_MAX_REPORTING_INSTANCE = 128


@dataclass(frozen=True)
class _Pending:
    reference: dict[str, str]
    type: EventType
    reason: str
    message: str
    at: float
    """Wall-clock time of the ``record`` call (seconds since the epoch)."""


@dataclass
class _Written:
    """An Event this recorder wrote, to bump on a repeat."""

    namespace: str
    name: str
    count: int
    last: float
    """Monotonic time of the last occurrence."""


class EventRecorder:
    """Record Events on an object; correlates repeats; safe to call from anywhere on the loop.

    ``start()`` starts the draining task; ``aclose()`` flushes what is queued (for at
    most ``flush_timeout`` seconds), then cancels and awaits the task. ``record`` before
    ``start`` queues (up to ``queue_size``); after ``aclose`` it drops and counts.
    """

    def __init__(
        self,
        kube: KubeClient,
        *,
        component: str = "certauto",
        host: str | None = None,
        queue_size: int = 1000,
        flush_timeout: float = 2.0,
        correlation_window: float = CORRELATION_WINDOW,
    ) -> None:
        self.kube = kube
        self.component = component
        self.host = (host or os.environ.get("POD_NAME") or socket.gethostname())[
            :_MAX_REPORTING_INSTANCE
        ]
        self.flush_timeout = flush_timeout
        self.correlation_window = correlation_window
        self.created = 0
        """Events created."""
        self.bumped = 0
        """Repeats written as a ``count`` bump of an existing Event."""
        self.dropped = 0
        """Events dropped because the queue was full or the recorder closed."""
        self.failed = 0
        """Events the API server refused or could not be reached for (logged)."""
        self.redacted = 0
        """Messages replaced because they looked like key material."""
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_size)
        self._written: OrderedDict[tuple[str, str, str, str], _Written] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._sequence = itertools.count()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> EventRecorder:
        if self._closed:
            raise RuntimeError("the event recorder is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="certauto-event-recorder")
        return self

    async def aclose(self) -> None:
        """Flush queued events (bounded by ``flush_timeout``), then stop the task."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            self.dropped += self._queue.qsize()
            return
        try:
            # join() also waits for the event being written right now.
            await asyncio.wait_for(self._queue.join(), self.flush_timeout)
        except TimeoutError:
            logger.warning(
                "event recorder: %d events not written before shutdown", self._queue.qsize()
            )
        finally:
            self.dropped += self._queue.qsize()
            task.cancel()
            await asyncio.wait([task])

    async def __aenter__(self) -> EventRecorder:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ recording
    def record(
        self, involved: Mapping[str, Any], type: EventType, reason: str, message: str
    ) -> None:
        """Queue an Event on ``involved`` (an object, or an ``ObjectReference`` dict).

        Never blocks and never raises on API trouble; a full queue drops the event.
        """
        if type not in ("Normal", "Warning"):
            raise ValueError(f"event type must be Normal or Warning, not {type!r}")
        if self._closed:
            self.dropped += 1
            return
        if any(marker in message for marker in _KEY_MATERIAL_MARKERS):
            self.redacted += 1
            logger.error("event %s refused a message that looks like key material", reason)
            message = REDACTED
        pending = _Pending(_reference(involved), type, reason, _truncate(message), time.time())
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            self.dropped += 1
            logger.warning("event queue full: dropped %s event %s", type, reason)

    # ------------------------------------------------------------------ writing
    async def _drain(self) -> None:
        while True:
            pending = await self._queue.get()
            try:
                await self._write(pending)
            except ApiError as error:
                self.failed += 1
                logger.warning(
                    "event %s on %s %s/%s not written: %s",
                    pending.reason,
                    pending.reference.get("kind", ""),
                    pending.reference.get("namespace", ""),
                    pending.reference.get("name", ""),
                    error,
                )
            except Exception:
                self.failed += 1
                logger.exception("event %s not written", pending.reason)
            finally:
                self._queue.task_done()

    async def _write(self, pending: _Pending) -> None:
        reference = pending.reference
        identity = reference.get("uid") or "/".join(
            (reference.get("kind", ""), reference.get("namespace", ""), reference["name"])
        )
        key = (identity, pending.type, pending.reason, pending.message)
        now = time.monotonic()
        written = self._written.get(key)
        if written is not None and now - written.last <= self.correlation_window:
            try:
                await self.kube.merge_patch(
                    EVENTS.path(written.namespace, written.name),
                    {"count": written.count + 1, "lastTimestamp": _timestamp(pending.at)},
                )
            except NotFoundError:
                pass  # expired (Events have a TTL) or deleted: write a new one
            else:
                written.count += 1
                written.last = now
                self._written.move_to_end(key)
                self.bumped += 1
                return
        namespace, name = await self._create(pending)
        self._written[key] = _Written(namespace, name, 1, now)
        self._written.move_to_end(key)
        while len(self._written) > _CACHE_SIZE:
            self._written.popitem(last=False)

    async def _create(self, pending: _Pending) -> tuple[str, str]:
        reference = pending.reference
        namespace = reference.get("namespace") or "default"
        stamp = _timestamp(pending.at)
        for _ in range(3):
            # client-go names Events <object>.<hex nanoseconds>; a sequence number keeps
            # two events of the same nanosecond apart.
            suffix = f".{time.time_ns() + next(self._sequence):x}"
            name = reference["name"][: _MAX_NAME - len(suffix)] + suffix
            body: JSON = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": reference,
                "type": pending.type,
                "reason": pending.reason,
                "message": pending.message,
                "source": {"component": self.component, "host": self.host},
                "reportingComponent": self.component,
                "reportingInstance": self.host,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
            try:
                await self.kube.create(EVENTS.path(namespace), body)
            except ConflictError:
                continue
            self.created += 1
            return namespace, name
        raise ApiError(409, "AlreadyExists", f"no free Event name for {reference['name']}")


def _reference(involved: Mapping[str, Any]) -> dict[str, str]:
    """An ``ObjectReference`` for an object or a reference dict."""
    metadata = involved.get("metadata")
    source: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else involved
    reference = {
        "apiVersion": str(involved.get("apiVersion") or ""),
        "kind": str(involved.get("kind") or ""),
        "namespace": str(source.get("namespace") or ""),
        "name": str(source.get("name") or ""),
        "uid": str(source.get("uid") or ""),
        "resourceVersion": str(source.get("resourceVersion") or ""),
    }
    if not reference["name"]:
        raise ValueError("the involved object has no name")
    if not isinstance(metadata, Mapping) and involved.get("fieldPath"):
        reference["fieldPath"] = str(involved["fieldPath"])
    return {key: value for key, value in reference.items() if value}


def _truncate(message: str) -> str:
    encoded = message.encode()
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return message
    return encoded[: MAX_MESSAGE_BYTES - 3].decode(errors="ignore") + "..."


def _timestamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
