"""Unit tests for the retry backoff: bounds, growth, cap, Retry-After, determinism."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from certauto_core.engine.backoff import DEFAULT_CAP, backoff_delay

BASE = timedelta(seconds=30)
SEEDS = range(200)


def seeded(seed: int) -> random.Random:
    """A reproducible jitter source (jitter spreads load; it is not a secret)."""
    return random.Random(seed)  # noqa: S311


def nominal(attempt: int, base: timedelta = BASE, cap: timedelta = DEFAULT_CAP) -> timedelta:
    return min(cap, base * (1 << (attempt - 1)))


@pytest.mark.parametrize("attempt", range(1, 12))
def test_delay_is_within_upper_half_of_nominal(attempt: int) -> None:
    d = nominal(attempt)
    for seed in SEEDS:
        delay = backoff_delay(attempt, base=BASE, rng=seeded(seed))
        assert d / 2 <= delay <= d


def test_delay_grows_exponentially() -> None:
    # Nominal 30s, 60s, 120s, 240s, 480s: every draw for attempt n is at least the
    # nominal delay of attempt n-1, and some draw exceeds it.
    for attempt in range(2, 7):
        draws = [backoff_delay(attempt, base=BASE, rng=seeded(s)) for s in SEEDS]
        assert min(draws) >= nominal(attempt - 1)
        assert max(draws) > nominal(attempt - 1) * 1.9


@pytest.mark.parametrize("attempt", [7, 8, 50, 10_000, 10**9])
def test_cap_bounds_large_attempts(attempt: int) -> None:
    cap = timedelta(minutes=30)
    for seed in range(50):
        delay = backoff_delay(attempt, base=BASE, cap=cap, rng=seeded(seed))
        assert cap / 2 <= delay <= cap


def test_cap_below_base_bounds_first_attempt() -> None:
    delay = backoff_delay(1, base=timedelta(hours=1), cap=timedelta(minutes=1))
    assert timedelta(seconds=30) <= delay <= timedelta(minutes=1)


def test_jitter_spreads_over_the_upper_half() -> None:
    delays = {backoff_delay(4, base=BASE, rng=seeded(seed)) for seed in range(500)}
    d = nominal(4)
    assert len(delays) > 400  # not a constant, not a handful of values
    assert min(delays) < d * 0.55
    assert max(delays) > d * 0.95


def test_seeded_rng_is_deterministic() -> None:
    first = [backoff_delay(a, base=BASE, rng=seeded(42)) for a in range(1, 10)]
    second = [backoff_delay(a, base=BASE, rng=seeded(42)) for a in range(1, 10)]
    assert first == second


def test_default_rng_stays_in_bounds() -> None:
    for _ in range(100):
        assert timedelta(seconds=15) <= backoff_delay(1, base=BASE) <= BASE


def test_result_is_exact_microseconds() -> None:
    delay = backoff_delay(1, base=timedelta(microseconds=3), rng=seeded(0))
    assert delay in {timedelta(microseconds=2), timedelta(microseconds=3)}


def test_retry_after_raises_the_delay() -> None:
    hint = timedelta(minutes=5)
    assert backoff_delay(1, base=BASE, retry_after=hint, rng=seeded(0)) == hint


def test_retry_after_is_honoured_above_the_cap() -> None:
    hint = timedelta(hours=2)
    assert backoff_delay(30, base=BASE, retry_after=hint) == hint


def test_smaller_retry_after_does_not_lower_the_delay() -> None:
    expected = backoff_delay(5, base=BASE, rng=seeded(7))
    hinted = backoff_delay(5, base=BASE, retry_after=timedelta(seconds=1), rng=seeded(7))
    assert hinted == expected


@pytest.mark.parametrize(
    ("attempt", "base", "cap"),
    [
        (0, BASE, DEFAULT_CAP),
        (-1, BASE, DEFAULT_CAP),
        (1, timedelta(0), DEFAULT_CAP),
        (1, timedelta(seconds=-1), DEFAULT_CAP),
        (1, BASE, timedelta(0)),
    ],
)
def test_invalid_arguments_are_rejected(attempt: int, base: timedelta, cap: timedelta) -> None:
    with pytest.raises(ValueError, match="must be"):
        backoff_delay(attempt, base=base, cap=cap)
