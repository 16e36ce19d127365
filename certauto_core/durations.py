"""Go-style durations (``"24h"``, ``"1h30m"``, ``"500ms"``) as written in the CRD.

Kubernetes users write durations the way Go's ``time.ParseDuration`` reads them
(cert-manager's ``duration``/``renewBefore``, ``metav1.Duration``), so
``spec.validation.minRemainingValidity`` and ``spec.syncPolicy.retryInterval`` use
the same grammar: an optional sign, then one or more ``<number><unit>`` terms where
the number may have a fraction and the unit is ``ns``, ``us`` (or ``µs``), ``ms``,
``s``, ``m`` or ``h``. ``"0"`` alone is allowed. There is no ``d``: a day is
``24h``. Anything Go would reject is rejected here too, so a value that works in
one tool works in the other.
"""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction

__all__ = ["format_duration", "parse_duration"]

_UNITS_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign, as Go accepts
    "\u03bcs": 1_000,  # Greek small letter mu, as Go accepts
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_NS = 2**63 - 1
"""Go's limit (about 292 years): larger values are rejected there, so here too."""
_TERM = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_HINT = "expected a Go duration such as '30s', '90m', '24h' or '1h30m'"


def parse_duration(text: str, *, allow_negative: bool = False) -> timedelta:
    """Parse a Go duration string into a :class:`~datetime.timedelta`.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)

    Values are exact down to the microsecond; nanoseconds below that are dropped
    (truncated towards zero), since :class:`~datetime.timedelta` cannot hold them.

    Negative durations (``"-5m"``) are valid Go but meaningless for every field in
    our CRD (an interval, a minimum validity), so they are refused unless
    ``allow_negative`` is set.

    :raises ValueError: with a message quoting the input and saying what is wrong.
    """
    if text == "":
        raise ValueError(f"invalid duration '': empty; {_HINT}")
    if text != text.strip():
        raise ValueError(f"invalid duration {text!r}: unexpected whitespace; {_HINT}")
    rest = text
    negative = False
    if rest[0] in "+-":
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return timedelta(0)
    if rest == "":
        raise ValueError(f"invalid duration {text!r}: a sign needs a number; {_HINT}")
    total = Fraction(0)
    position = 0
    while position < len(rest):
        match = _TERM.match(rest, position)
        # The pattern can match the empty string, so a match always exists.
        assert match is not None
        whole, fraction, unit = match.groups()
        if not whole and not fraction:
            raise ValueError(f"invalid duration {text!r}: expected a number at {rest[position:]!r}")
        if unit == "":
            raise ValueError(f"invalid duration {text!r}: missing unit after {match.group(0)!r}")
        if unit not in _UNITS_NS:
            hint = " (use '24h' for a day)" if unit in {"d", "day", "days"} else ""
            raise ValueError(
                f"invalid duration {text!r}: unknown unit {unit!r}{hint}; "
                f"units are ns, us, ms, s, m, h"
            )
        value = Fraction(int(whole or "0"))
        if fraction:
            value += Fraction(int(fraction), 10 ** len(fraction))
        total += value * _UNITS_NS[unit]
        if total > _MAX_NS:
            raise ValueError(f"invalid duration {text!r}: out of range (the maximum is ~292 years)")
        position = match.end()
    if negative and total and not allow_negative:
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    micros = int(total) // 1_000
    return timedelta(microseconds=-micros if negative else micros)


def format_duration(value: timedelta) -> str:
    """Format a duration compactly in the same grammar: ``"24h"``, ``"1h30m"``, ``"1.5s"``.

    Zero units are left out (unlike Go's ``24h0m0s``) because the result goes into
    messages people read. :func:`parse_duration` reads every result back exactly.
    """
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if micros == 0:
        return "0s"
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    if micros < 1_000_000:
        if micros % 1_000 == 0:
            return f"{sign}{micros // 1_000}ms"
        return f"{sign}{micros}us"
    hours, micros = divmod(micros, 3_600_000_000)
    minutes, micros = divmod(micros, 60_000_000)
    seconds, micros = divmod(micros, 1_000_000)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if seconds or micros:
        fraction = f".{micros:06d}".rstrip("0") if micros else ""
        parts.append(f"{seconds}{fraction}s")
    return sign + "".join(parts)
