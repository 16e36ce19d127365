"""Typed errors a destination raises so that the core can decide what happens next.

Plugins never retry on their own: they raise one of these and the core owns
retries, backoff, status and metrics. Any other exception escaping a plugin is
treated as retryable with the exception's type name as the message, so a plugin
bug shows up in status instead of killing a worker.

Messages end up in ``status.destinations[].message``, Events and logs: they must
never contain key material or credentials.
"""

from __future__ import annotations

from datetime import timedelta


class DestinationError(Exception):
    """Base of every error a destination raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RetryableError(DestinationError):
    """A transient failure (throttling, 5xx, connection reset): try again later.

    ``retry_after`` is the destination's own hint (for example an HTTP
    ``Retry-After`` header); the core waits at least that long.
    """

    def __init__(self, message: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(DestinationError):
    """A failure that retrying cannot fix (bad config, quota exhausted, forbidden).

    The destination goes to ``Failed`` until the spec or the source changes, or a
    periodic resync comes round.
    """


class ConflictError(DestinationError):
    """The target holds something CertAuto does not own; it was left untouched.

    The destination goes to ``Conflict`` and the message names the object.
    """


class ConfigError(PermanentError):
    """The destination's ``config`` did not validate against the plugin's model."""
