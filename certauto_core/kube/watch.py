"""List-then-watch that never dies silently: re-list on 410, read timeouts, backoff.

A :class:`Watcher` keeps one resource type's objects flowing to a handler:

* **List** in pages (``limit``/``continue``), delivering each page as it arrives, so
  memory holds one page, not the whole list. A continue token that expired (410) starts
  the list over. Only objects whose ``resourceVersion`` differs from what this watcher
  last delivered are handed on, and objects that vanished between two lists get a
  ``DELETED``: a re-list after a 410 floods nothing and loses nothing.
* **Watch** from the list's version with bookmarks on and a server-side timeout. A
  normal end resumes from the last version seen; a 410 (HTTP status or ``ERROR`` event)
  re-lists; anything else, including a read timeout on a silent dead connection, backs
  off exponentially with jitter and resumes.
* **Every restart is logged with its reason and counted** (``restarts``, ``on_restart``).

The watcher itself remembers only ``(uid, resourceVersion)`` per object. The handler is
synchronous and must be quick (turn the raw object into a small record, enqueue a key);
an exception in it is logged and counted and never ends the watch.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from certauto_core.kube.client import JSON, KubeClient
from certauto_core.kube.errors import ApiError, GoneError
from certauto_core.kube.resources import Resource

__all__ = [
    "RESTART_CLOSED",
    "RESTART_ERROR",
    "RESTART_GONE",
    "RESTART_TIMEOUT",
    "WatchEvent",
    "Watcher",
]

logger = logging.getLogger(__name__)

EventType = Literal["ADDED", "MODIFIED", "DELETED"]

RESTART_CLOSED: Final = "closed"
"""The server ended the watch (its ``timeoutSeconds``); resumed from the last version."""
RESTART_GONE: Final = "gone"
"""410 Gone: the version (or a list's continue token) was compacted away; re-list."""
RESTART_TIMEOUT: Final = "timeout"
"""Nothing was read for ``read_timeout`` seconds: a dead connection; back off, resume."""
RESTART_ERROR: Final = "error"
"""Any other failure (connection refused or reset, 5xx, 403...); back off, resume."""

BACKOFF_BASE: Final = 0.2
BACKOFF_CAP: Final = 30.0
HEALTHY_PERIOD: Final = 30.0
"""An attempt that ran this long before failing resets the backoff."""
MIN_NORMAL_WATCH: Final = 1.0
"""A watch the server "ends normally" sooner than this is treated as a failure, so a
misbehaving server cannot turn the resume loop into a hot loop."""

# Jitter spreads reconnects of many watchers (and operator replicas) after an API server
# restart; it is not for security.
_RNG = random.Random()  # noqa: S311


@dataclass(frozen=True)
class WatchEvent:
    """One change delivered to the handler. ``obj`` is the raw object (decoded JSON).

    A ``DELETED`` that the watcher synthesizes after a re-list (the object vanished while
    the watch was down) carries only ``apiVersion``, ``kind`` and ``metadata``
    (``namespace``, ``name``, ``uid``) and, as ``metadata.resourceVersion``, the version
    of the list that no longer had it: the object was gone at that version.
    """

    type: EventType
    obj: dict[str, Any]


_Key = tuple[str, str]
"""(namespace, name); namespace is "" for cluster-scoped objects."""


class _Restart(Exception):  # noqa: N818 - internal control flow, not an error type
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Watcher:
    """List, then watch one resource type, forever; deliver changes to ``handler``.

    ``run()`` runs until cancelled. Its state (the versions it delivered, the version to
    resume from) survives a cancellation: calling ``run()`` again resumes the watch
    where it stopped, and re-lists (delivering only the differences) if that version has
    been compacted away meanwhile.
    """

    def __init__(
        self,
        kube: KubeClient,
        resource: Resource,
        handler: Callable[[WatchEvent], None],
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        read_timeout: float = 60.0,
        server_timeout: int = 300,
        page_size: int = 500,
        name: str | None = None,
        on_restart: Callable[[str], None] | None = None,
    ) -> None:
        if read_timeout <= 0 or server_timeout <= 0 or page_size <= 0:
            raise ValueError("read_timeout, server_timeout and page_size must be positive")
        self.kube = kube
        self.resource = resource
        self.handler = handler
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.read_timeout = read_timeout
        self.server_timeout = server_timeout
        self.page_size = page_size
        self.name = name or _default_name(resource, namespace, label_selector)
        self.on_restart = on_restart

        self.synced = asyncio.Event()
        """Set once the first full list has been delivered."""
        self.last_resource_version: str | None = None
        """The version the next watch resumes from (list, last event or bookmark)."""
        self.restarts = 0
        """How many times the list or watch was started again, for any reason."""
        self.restart_reasons: dict[str, int] = {}
        """``restarts`` by reason (``closed``, ``gone``, ``timeout``, ``error``)."""
        self.handler_errors = 0
        """How many times the handler raised (each logged, none fatal)."""
        self.lists = 0
        """How many full lists completed."""

        self._known: dict[_Key, tuple[str, str]] = {}
        self._need_list = True
        self._failures = 0

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        """List and watch until cancelled; never returns, never raises but cancellation."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                if self._need_list:
                    await self._list()
                await self._watch()
            except _Restart as restart:
                reason, detail = restart.reason, restart.detail
            except GoneError as error:
                reason, detail = RESTART_GONE, _describe(error)
            except ApiError as error:
                timed_out = isinstance(error.__cause__, TimeoutError)
                reason = RESTART_TIMEOUT if timed_out else RESTART_ERROR
                detail = _describe(error)
            except Exception as error:  # a bug or an unexpected answer: log, never die
                logger.exception("watch %s failed unexpectedly", self.name)
                reason, detail = RESTART_ERROR, f"{type(error).__name__}: {error}"
            else:
                reason, detail = RESTART_CLOSED, "the server ended the watch"
            await asyncio.sleep(self._restart(reason, detail, loop.time() - started))

    def _restart(self, reason: str, detail: str, lasted: float) -> float:
        """Count and log a restart; return how long to wait before the next attempt."""
        if lasted >= HEALTHY_PERIOD:
            self._failures = 0
        if reason == RESTART_GONE:
            self._need_list = True
        delay = 0.0
        if reason == RESTART_CLOSED and lasted >= MIN_NORMAL_WATCH:
            self._failures = 0
        elif reason == RESTART_GONE and self._failures == 0:
            self._failures = 1  # re-list at once, but a second 410 in a row backs off
        else:
            self._failures += 1
            delay = _backoff(self._failures)
        self.restarts += 1
        self.restart_reasons[reason] = self.restart_reasons.get(reason, 0) + 1
        level = logging.DEBUG if reason == RESTART_CLOSED else logging.WARNING
        logger.log(
            level,
            "watch %s restarting (%s): %s; %s in %.2fs",
            self.name,
            reason,
            detail,
            "re-list" if self._need_list else f"resume from {self.last_resource_version}",
            delay,
            extra={"watch": self.name, "reason": reason},
        )
        if self.on_restart is not None:
            try:
                self.on_restart(reason)
            except Exception:
                logger.exception("watch %s: on_restart callback failed", self.name)
        return delay

    # ------------------------------------------------------------------ list
    async def _list(self) -> None:
        """One full, paginated list; delivers differences; sets the resume version.

        A 410 on a continue token (the list's version was compacted while we paged)
        propagates, and ``run`` starts the list over; what the pages delivered so far
        stays known, so the new list delivers only differences.
        """
        path = self.resource.path(self.namespace)
        seen: set[_Key] = set()
        token: str | None = None
        while True:
            query = self._selectors()
            query["limit"] = self.page_size
            if token:
                query["continue"] = token
            page: JSON = await self.kube.request("GET", path, query=query)
            metadata = page.get("metadata") or {}
            version = str(metadata.get("resourceVersion") or "")
            for item in page.get("items") or ():
                item.setdefault("apiVersion", self.resource.api_version)
                item.setdefault("kind", self.resource.kind)
                key = _key(item)
                seen.add(key)
                self._deliver_listed(key, item, version)
            token = metadata.get("continue") or None
            if token is None:
                break
        self._deliver_vanished(seen, version)
        self.last_resource_version = version
        self._need_list = False
        self.lists += 1
        self.synced.set()
        logger.debug("watch %s listed %d objects at %s", self.name, len(seen), version)

    def _deliver_listed(self, key: _Key, item: dict[str, Any], list_version: str) -> None:
        metadata = item.get("metadata") or {}
        uid = str(metadata.get("uid") or "")
        version = str(metadata.get("resourceVersion") or "")
        known = self._known.get(key)
        if known == (uid, version):
            return
        if known is None:
            self._known[key] = (uid, version)
            self._emit("ADDED", item)
        elif known[0] != uid:
            # Deleted and re-created while we were not watching: say both.
            self._known[key] = (uid, version)
            self._emit("DELETED", self._tombstone(key, known[0], list_version))
            self._emit("ADDED", item)
        else:
            self._known[key] = (uid, version)
            self._emit("MODIFIED", item)

    def _deliver_vanished(self, seen: set[_Key], list_version: str) -> None:
        if len(seen) == len(self._known):
            return  # every known key was seen (seen is a subset of known by now)
        for key in [key for key in self._known if key not in seen]:
            uid, _ = self._known.pop(key)
            self._emit("DELETED", self._tombstone(key, uid, list_version))

    def _tombstone(self, key: _Key, uid: str, version: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": key[1], "uid": uid, "resourceVersion": version}
        if key[0]:
            metadata["namespace"] = key[0]
        return {
            "apiVersion": self.resource.api_version,
            "kind": self.resource.kind,
            "metadata": metadata,
        }

    # ------------------------------------------------------------------ watch
    async def _watch(self) -> None:
        """One watch request; returns when the server ends it normally."""
        query = self._selectors()
        query.update(
            watch=True,
            allowWatchBookmarks=True,
            timeoutSeconds=self.server_timeout,
            resourceVersion=self.last_resource_version or "",
        )
        stream = self.kube.stream_lines(
            self.resource.path(self.namespace), query=query, read_timeout=self.read_timeout
        )
        try:
            async for line in stream:
                self._on_watch_line(line)
        finally:
            # Close the stream (and release its connection) now, not when it is collected.
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    def _on_watch_line(self, line: Mapping[str, Any]) -> None:
        kind = line.get("type")
        obj = line.get("object")
        if not isinstance(obj, dict):
            raise _Restart(RESTART_ERROR, f"malformed watch line of type {kind!r}")
        if kind == "ERROR":
            raise _error_event(obj)
        metadata = obj.get("metadata") or {}
        version = str(metadata.get("resourceVersion") or "")
        if kind == "BOOKMARK":
            if version:
                self.last_resource_version = version
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            raise _Restart(RESTART_ERROR, f"unknown watch event type {kind!r}")
        key = _key(obj)
        if kind == "DELETED":
            self._known.pop(key, None)
            self._emit("DELETED", obj)
        else:
            identity = (str(metadata.get("uid") or ""), version)
            if self._known.get(key) != identity:
                self._known[key] = identity
                self._emit(kind, obj)
        if version:
            self.last_resource_version = version

    # ------------------------------------------------------------------ helpers
    def _emit(self, kind: EventType, obj: dict[str, Any]) -> None:
        try:
            self.handler(WatchEvent(kind, obj))
        except Exception:
            self.handler_errors += 1
            metadata = obj.get("metadata") or {}
            logger.exception(
                "watch %s: handler failed on %s %s/%s",
                self.name,
                kind,
                metadata.get("namespace", ""),
                metadata.get("name", ""),
            )

    def _selectors(self) -> dict[str, str | int | bool]:
        query: dict[str, str | int | bool] = {}
        if self.label_selector:
            query["labelSelector"] = self.label_selector
        if self.field_selector:
            query["fieldSelector"] = self.field_selector
        return query


def _key(obj: Mapping[str, Any]) -> _Key:
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


def _error_event(status: Mapping[str, Any]) -> Exception:
    """The exception for a watch ``ERROR`` event (its object is a ``Status``)."""
    code = status.get("code")
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or "")
    # "Too large resource version" (the server is behind the version we resume from, e.g.
    # another API server replica): client-go re-lists too.
    if code == 410 or reason in ("Expired", "Gone") or "Too large resource version" in message:
        return GoneError(410, reason, message, dict(status))
    return ApiError(code if isinstance(code, int) else 0, reason, message, dict(status))


def _describe(error: ApiError) -> str:
    return f"{error.status} {error.reason}: {error.message}".strip()


def _backoff(failures: int) -> float:
    """Exponential from ``BACKOFF_BASE``, capped, jittered in the upper half."""
    nominal = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(failures - 1, 32))
    return _RNG.uniform(nominal / 2, nominal)


def _default_name(resource: Resource, namespace: str | None, selector: str | None) -> str:
    name = resource.plural if not resource.group else f"{resource.plural}.{resource.group}"
    if namespace:
        name += f" in {namespace}"
    if selector:
        name += f" ({selector})"
    return name
