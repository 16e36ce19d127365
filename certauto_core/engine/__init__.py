"""The controller's scheduling engine: the work queue and the retry backoff.

These modules are pure asyncio and know nothing about Kubernetes, so the concurrency
guarantees the controller relies on (one worker per key, coalesced re-queues, cheap
delayed retries) can be proven by fast unit tests. Import from the submodules
(``certauto_core.engine.workqueue``, ``certauto_core.engine.backoff``); this package
deliberately re-exports nothing, so importing it stays free of side effects.
"""
