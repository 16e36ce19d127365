"""A real :class:`~certauto_core.plugins.contract.PluginContext` for plugin tests.

The operator hands every destination factory a context whose indexes are fed by
its watches. Tests get the same thing, with the same code: the core's
:class:`~certauto_core.kube.watch.Watcher` lists and watches the Secrets that carry
``certauto.sanorg.in/watched`` and every Namespace, against the API server the test
talks to, and feeds the core's own indexes. Nothing is faked, so a plugin that
works in its tests sees the cluster the way it will in production, including the
short delay before an out-of-band change reaches the indexes::

    from certauto_core.kube.client import KubeClient
    from certauto_core.testing.plugin_context import live_plugin_context

    async def test_something(kube_api):
        async with live_plugin_context(KubeClient(kube_api)) as context:
            destination = MyDestination(context)
            ...

The watches are running (and have delivered their first full list) while the
block runs, and are cancelled and awaited when it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from certauto_core.engine.indexes import WATCHED_LABEL, WatchedNamespaces, WatchedSecrets
from certauto_core.kube.client import KubeClient
from certauto_core.kube.resources import NAMESPACES, SECRETS
from certauto_core.kube.watch import Watcher
from certauto_core.plugins.contract import PluginContext

__all__ = ["live_plugin_context"]

SYNC_TIMEOUT = 30.0
"""Seconds to wait for the first full list of each watch before giving up."""


@asynccontextmanager
async def live_plugin_context(
    kube: KubeClient,
    *,
    namespace: str | None = None,
    logger: logging.Logger | None = None,
    read_timeout: float = 30.0,
) -> AsyncIterator[PluginContext]:
    """Run the core's Secret and Namespace watches; yield a context reading their indexes.

    :param kube: the client the watches use, which is also the context's ``kube``
        (so its ``requests``/``writes`` counters count the plugin's calls too).
    :param namespace: watch Secrets in this namespace only; ``None`` (the default,
        as in the operator) watches every namespace.
    :param logger: the context's ``logger``; default ``certauto.plugins.test``.
    :param read_timeout: the watches' read timeout, in seconds.
    :raises TimeoutError: when a watch has not delivered its first list within
        :data:`SYNC_TIMEOUT` seconds (for example, the client may not list Secrets).
    """
    secrets = WatchedSecrets()
    namespaces = WatchedNamespaces()
    watchers = [
        Watcher(
            kube,
            SECRETS,
            secrets.apply,
            namespace=namespace,
            label_selector=WATCHED_LABEL,
            read_timeout=read_timeout,
        ),
        Watcher(kube, NAMESPACES, namespaces.apply, read_timeout=read_timeout),
    ]
    tasks = [
        asyncio.create_task(watcher.run(), name=f"watch {watcher.name}") for watcher in watchers
    ]
    try:
        try:
            async with asyncio.timeout(SYNC_TIMEOUT):
                for watcher in watchers:
                    await watcher.synced.wait()
        except TimeoutError:
            unsynced = [
                f"{watcher.name} (restarts: {watcher.restart_reasons or 'none'})"
                for watcher in watchers
                if not watcher.synced.is_set()
            ]
            raise TimeoutError(
                f"watches did not list within {SYNC_TIMEOUT}s: {', '.join(unsynced)}"
            ) from None
        yield PluginContext(
            kube=kube,
            secrets=secrets,
            namespaces=namespaces,
            logger=logger or logging.getLogger("certauto.plugins.test"),
            field_manager=kube.field_manager,
            watched_label=WATCHED_LABEL,
        )
    finally:
        for task in tasks:
            task.cancel()
        # The watches' own cancellations come back as results; a cancellation of
        # this task while it waits still propagates.
        await asyncio.gather(*tasks, return_exceptions=True)
        # A cancelled watch closes its connection; let the transport finish closing
        # before the caller can close the loop.
        await asyncio.sleep(0)
