"""AWS failures, translated into the typed errors the core acts on.

The plugin never retries on its own (botocore's retries are off): throttling
and server trouble become :class:`RetryableError`, and the core's backoff owns
the next attempt. Messages name the operation, the error code and, for
credential trouble, where the credentials came from, never their values, and
never echo PEM or key material that a service message might quote.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Final

from certauto_core.plugins.errors import DestinationError, PermanentError, RetryableError

RETRYABLE_CODES: Final = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "RequestInProgressException",
        "IDPCommunicationError",
    }
)
THROTTLING_CODES: Final = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
    }
)
THROTTLE_RETRY_AFTER: Final = timedelta(seconds=1)
"""ImportCertificate is limited to about one request a second per account and region."""

CREDENTIAL_CODES: Final = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "InvalidAccessKeyId",
        "AuthFailure",
        "RequestExpired",
    }
)
ACCESS_DENIED_CODES: Final = frozenset({"AccessDenied", "AccessDeniedException"})

_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.DOTALL)
_LONG_BASE64 = re.compile(r"[A-Za-z0-9+/=]{64,}")
_MAX_SERVICE_MESSAGE = 300


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError``, else ``None``."""
    response: Any = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def http_status(error: BaseException) -> int | None:
    response: Any = getattr(error, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def service_message(error: BaseException) -> str:
    """The service's own message, with anything that looks like key material removed."""
    response: Any = getattr(error, "response", None)
    message = ""
    if isinstance(response, dict):
        message = str(response.get("Error", {}).get("Message") or "")
    message = _PEM_BLOCK.sub("<redacted>", message)
    message = _LONG_BASE64.sub("<redacted>", message)
    message = " ".join(message.split())
    if len(message) > _MAX_SERVICE_MESSAGE:
        message = message[: _MAX_SERVICE_MESSAGE - 1] + "…"
    return message


def _with_detail(text: str, detail: str) -> str:
    return f"{text}: {detail}" if detail else text


def translate_client_error(
    error: BaseException, *, operation: str, region: str, credential_source: str
) -> DestinationError:
    """The typed error for a botocore ``ClientError`` from ``operation``."""
    code = error_code(error) or "UnknownError"
    status = http_status(error) or 0
    detail = service_message(error)
    where = f"ACM {operation} in {region}"
    if code in RETRYABLE_CODES or status >= 500:
        return RetryableError(
            _with_detail(f"{where} failed with {code} (HTTP {status}), will retry", detail),
            retry_after=THROTTLE_RETRY_AFTER if code in THROTTLING_CODES else None,
        )
    if code == "LimitExceededException":
        return PermanentError(quota_message(operation, region, detail))
    if code == "TooManyTagsException":
        return PermanentError(
            _with_detail(f"{where}: ACM allows at most 50 tags per certificate", detail)
        )
    if code in CREDENTIAL_CODES:
        return PermanentError(
            f"{where} refused the credentials from {credential_source} ({code}): "
            "they are unknown, expired or malformed"
        )
    if code in ACCESS_DENIED_CODES:
        return PermanentError(
            f"{where} denied ({code}): the identity from {credential_source} needs the IAM "
            f"permission acm:{operation}"
        )
    return PermanentError(_with_detail(f"{where} failed with {code}", detail))


def quota_message(operation: str, region: str, detail: str) -> str:
    """Which ACM quota a ``LimitExceededException`` is about, and what to do."""
    if operation == "ImportCertificate":
        quota = (
            "'Number of imported certificates' (default 2,500 per account and region, "
            "expired ones included) or 'Number of imported certificates per year (last 365 "
            "days)' (default 5,000) is used up"
        )
    else:
        quota = "an ACM account quota is used up"
    return _with_detail(
        f"ACM {operation} in {region} refused with LimitExceededException: {quota}; "
        "delete unused certificates or ask for a higher quota in Service Quotas (ACM), "
        "CertAuto will not retry until then",
        detail,
    )
