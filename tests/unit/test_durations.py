"""Go-style durations as users write them in a CertificateBinding (``24h``, ``1h30m``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certauto_core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("90m", timedelta(minutes=90)),
        ("30s", timedelta(seconds=30)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2160h", timedelta(days=90)),
        ("360h", timedelta(days=15)),
        ("500ms", timedelta(milliseconds=500)),
        ("1.5h", timedelta(minutes=90)),
        (".5s", timedelta(milliseconds=500)),
        ("5.s", timedelta(seconds=5)),
        ("1h0m0s", timedelta(hours=1)),  # what Go's Duration.String() prints
        ("2h45m30.5s", timedelta(hours=2, minutes=45, seconds=30.5)),
        ("10us", timedelta(microseconds=10)),
        ("10\u00b5s", timedelta(microseconds=10)),
        ("10\u03bcs", timedelta(microseconds=10)),
        ("1500ns", timedelta(microseconds=1)),  # below a microsecond is truncated
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        ("+5m", timedelta(minutes=5)),
        ("1m1m", timedelta(minutes=2)),  # Go sums repeated units
    ],
)
def test_parses_go_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("24", "missing unit"),
        ("1d", "use '24h' for a day"),
        ("1w", "unknown unit 'w'"),
        ("h", "expected a number"),
        (".h", "expected a number"),
        ("1hh", "unknown unit 'hh'"),
        ("1.2.3s", "missing unit"),
        (" 24h", "whitespace"),
        ("24h\n", "whitespace"),
        ("24 h", "unknown unit ' h'"),
        ("-", "sign needs a number"),
        ("1e3s", "unknown unit 'e'"),
        ("\u0663s", "expected a number"),  # Arabic-Indic digit three: not a Go digit
        ("2562047h47m16.854775808s", "out of range"),  # one nanosecond past Go's maximum
    ],
)
def test_rejects_bad_input_with_a_message_that_quotes_it(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as caught:
        parse_duration(text)
    assert complaint in str(caught.value)
    assert repr(text) in str(caught.value)


def test_accepts_gos_maximum_duration() -> None:
    assert parse_duration("2562047h47m16.854775807s") > timedelta(days=106_751)


def test_negative_durations_are_refused_unless_allowed() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration("-5m")
    assert parse_duration("-5m", allow_negative=True) == timedelta(minutes=-5)
    assert parse_duration("-1h30m", allow_negative=True) == -timedelta(minutes=90)
    assert parse_duration("-0") == timedelta(0)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(hours=24), "24h"),
        (timedelta(days=90), "2160h"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(minutes=5, seconds=1), "5m1s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(microseconds=1500), "1500us"),
        (timedelta(minutes=-5), "-5m"),
    ],
)
def test_formats_compactly(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize(
    "value",
    [
        timedelta(days=3, hours=4, minutes=5, seconds=6, microseconds=7),
        timedelta(microseconds=999_999),
        timedelta(days=365 * 200),
        timedelta(seconds=-90061),
    ],
)
def test_format_and_parse_round_trip(value: timedelta) -> None:
    assert parse_duration(format_duration(value), allow_negative=True) == value
