"""Fault injection shared by the cloud emulators of the test harness.

A :class:`FaultPlan` is a small, ordered set of rules "answer the next *count*
requests that match *predicate* with this canned response instead of serving them".
The ACM proxy (:mod:`certauto_core.testing.aws`) and the fake Key Vault
(:mod:`certauto_core.testing.keyvault`) both keep one. Everything runs on the event
loop of the server that owns the plan, so no locking is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["CannedResponse", "FaultPlan"]

RequestT = TypeVar("RequestT")


@dataclass(frozen=True)
class CannedResponse:
    """An HTTP response that a fault rule sends instead of serving the request."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Rule(Generic[RequestT]):
    predicate: Callable[[RequestT], bool]
    remaining: int
    response: CannedResponse


class FaultPlan(Generic[RequestT]):
    """Ordered fault rules, each answering the next N matching requests.

    Rules are tried in the order they were added; the first one that matches and
    still has uses left answers the request and is used up by one.
    """

    def __init__(self) -> None:
        self._rules: list[_Rule[RequestT]] = []
        self.injected = 0
        """How many requests were answered by a fault rule since the last reset."""

    def add(
        self, predicate: Callable[[RequestT], bool], count: int, response: CannedResponse
    ) -> None:
        """Answer the next *count* requests that match *predicate* with *response*."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if count:
            self._rules.append(_Rule(predicate, count, response))

    def take(self, request: RequestT) -> CannedResponse | None:
        """The canned response for *request*, using up one use of its rule, or None."""
        for rule in self._rules:
            if rule.remaining > 0 and rule.predicate(request):
                rule.remaining -= 1
                self.injected += 1
                self._rules = [r for r in self._rules if r.remaining > 0]
                return rule.response
        return None

    @property
    def pending(self) -> int:
        """How many injected faults are still waiting for a matching request."""
        return sum(rule.remaining for rule in self._rules)

    def clear(self) -> None:
        """Drop every rule and zero the counter."""
        self._rules.clear()
        self.injected = 0
