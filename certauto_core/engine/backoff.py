"""Retry backoff for failed destination syncs.

Why this shape:

* **Exponential** (``base * 2**(attempt-1)``) so a destination that is down or throttling
  us (ACM allows about one import per second per account and region) is asked less and
  less often, instead of being hammered by every binding at a fixed interval.
* **Capped** so a long outage does not push the next attempt days away: once the
  destination recovers we want to notice within ``cap``.
* **Jittered in the upper half** (uniform in ``[d/2, d]``): bindings that failed together
  (one cloud outage fails hundreds of them in the same second) spread their retries out
  instead of retrying in lock step, while a retry never comes sooner than half the
  nominal delay, so the backoff still backs off. "Full jitter" over ``[0, d]`` would
  allow near-immediate retries, which is what a throttled API punishes.
* **Retry-After wins when larger**: when a destination tells us how long to wait (HTTP
  429 ``Retry-After``, a throttling error with a hint), retrying earlier only earns
  another refusal, so the hint raises the delay. It is honoured even above ``cap``: the
  cap bounds *our* guess, not the server's explicit instruction.
* **Integer microseconds** internally: the result is exact, within bounds by
  construction (no float rounding past the cap), and reproducible from a seeded
  :class:`random.Random`, which the unit tests and the reconciler's tests rely on.
"""

from __future__ import annotations

import random
from datetime import timedelta

__all__ = ["DEFAULT_CAP", "backoff_delay"]

#: Default upper bound of the computed (jittered) delay.
DEFAULT_CAP = timedelta(minutes=30)

# Jitter is for spreading load, not for security, so a non-cryptographic PRNG is right;
# one module-level instance avoids reseeding from the OS on every call.
_DEFAULT_RNG = random.Random()  # noqa: S311


def _to_micros(value: timedelta) -> int:
    """Exact integer microseconds of a timedelta (``total_seconds()`` is a lossy float)."""
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


def backoff_delay(
    attempt: int,
    *,
    base: timedelta,
    cap: timedelta = DEFAULT_CAP,
    retry_after: timedelta | None = None,
    rng: random.Random | None = None,
) -> timedelta:
    """Return how long to wait before retry number ``attempt`` (1 for the first retry).

    The nominal delay is ``d = min(cap, base * 2**(attempt - 1))``; the result is drawn
    uniformly from ``[d/2, d]`` (rounded to whole microseconds, both ends inclusive) and
    then raised to ``retry_after`` if that hint is larger.

    Args:
        attempt: 1-based number of the retry about to be scheduled (``attempts`` in the
            destination status after the failure). Any size is fine: huge values just
            hit the cap without computing a huge power of two.
        base: the delay of the first retry (``syncPolicy.retryInterval``). Must be
            positive: a zero base would turn a persistent failure into a hot loop.
        cap: upper bound of the computed delay; must be positive. A ``cap`` below
            ``base`` simply makes every delay ``cap``-bounded.
        retry_after: the destination's own hint (e.g. HTTP ``Retry-After``), if any.
        rng: source of jitter. Pass a seeded ``random.Random`` for deterministic
            results; by default a shared module-level generator is used.

    Raises:
        ValueError: ``attempt < 1``, or ``base``/``cap`` not positive.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    base_us = _to_micros(base)
    cap_us = _to_micros(cap)
    if base_us <= 0:
        raise ValueError(f"base must be positive, got {base!r}")
    if cap_us <= 0:
        raise ValueError(f"cap must be positive, got {cap!r}")

    shift = attempt - 1
    # Once base * 2**shift would exceed the cap there is no point building a larger int.
    nominal_us = cap_us if shift >= cap_us.bit_length() else min(cap_us, base_us << shift)

    lower_us = (nominal_us + 1) // 2  # ceil(d/2): the result is never below half
    delay_us = (rng or _DEFAULT_RNG).randint(lower_us, nominal_us)
    delay = timedelta(microseconds=delay_us)

    if retry_after is not None and retry_after > delay:
        return retry_after
    return delay
