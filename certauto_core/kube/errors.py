"""Errors of the API server, by HTTP status, with Kubernetes' ``Status`` message."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A non-2xx answer. ``message`` is the ``Status`` object's message when present."""

    def __init__(self, status: int, reason: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body

    @property
    def retryable(self) -> bool:
        """Server-side trouble, throttling or timeouts: worth another try later."""
        return self.status in (429, 500, 502, 503, 504) or self.status == 0


class NotFoundError(ApiError):
    """404."""


class ConflictError(ApiError):
    """409: already exists, or a resourceVersion precondition failed."""


class GoneError(ApiError):
    """410: the resourceVersion asked for is too old (watch must re-list)."""


class ForbiddenError(ApiError):
    """403: RBAC says no."""


class InvalidError(ApiError):
    """422: the object does not pass validation."""


_BY_STATUS: dict[int, type[ApiError]] = {
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    422: InvalidError,
}


def error_for(status: int, body: Any) -> ApiError:
    """The typed error for an answer's status and decoded body."""
    reason, message = "", ""
    if isinstance(body, dict):
        reason = str(body.get("reason", ""))
        message = str(body.get("message", ""))
    elif body:
        message = str(body)[:500]
    return _BY_STATUS.get(status, ApiError)(status, reason, message, body)
