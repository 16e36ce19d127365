"""Turn azure-core exceptions into the typed errors the core acts on.

* 429: :class:`RetryableError` carrying ``Retry-After`` (seconds, HTTP date, or the
  ``retry-after-ms`` / ``x-ms-retry-after-ms`` headers) as ``retry_after``.
* 408, 5xx, connection errors and timeouts: :class:`RetryableError`.
* 409 while Key Vault is still deleting, recovering or purging the name:
  :class:`RetryableError`.
* 401 and 403, and a credential that cannot get a token:
  :class:`PermanentError` naming the identity (never a secret) and, for 403,
  the data action Key Vault says was missing.
* Any other 4xx: :class:`PermanentError` with Key Vault's error code and message.

Key Vault error messages hold names, ids and the refused action, never key
material or credentials, so they are safe to show; they are cut to one line.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import CredentialUnavailableError

from certauto_core.plugins.errors import DestinationError, PermanentError, RetryableError

__all__ = ["error_code", "inner_error_code", "parse_retry_after", "translate"]

RBAC_HINT = (
    "grant it the Key Vault Certificates Officer role on the vault "
    "(or an access policy with certificate get, import, update, delete, recover and purge)"
)
_TRANSIENT_CONFLICTS = frozenset(
    {"ObjectIsBeingDeleted", "ObjectIsBeingRecovered", "ObjectIsDeletedButRecoverable"}
)
_ACTION_IN_MESSAGE = re.compile(r"Action:\s*'([A-Za-z0-9./_-]+)'")
_AADSTS = re.compile(r"AADSTS\d+")
_MAX_DETAIL = 300


def error_code(exc: HttpResponseError) -> str | None:
    """Key Vault's ``error.code`` (``Throttled``, ``Forbidden``, ``CertificateNotFound``...)."""
    return exc.error.code if exc.error is not None else None


def inner_error_code(exc: HttpResponseError) -> str | None:
    """Key Vault's ``error.innererror.code`` (``ObjectIsDeletedButRecoverable``...)."""
    if exc.error is None:
        return None
    inner = exc.error.innererror
    code = inner.get("code") if isinstance(inner, Mapping) else None
    return code if isinstance(code, str) else None


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 3] + "..."


def _headers(exc: HttpResponseError) -> Mapping[str, str]:
    response = exc.response
    headers = getattr(response, "headers", None) if response is not None else None
    return headers if isinstance(headers, Mapping) else {}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # azure-core's headers are case-insensitive; plain dicts are not
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def parse_retry_after(
    headers: Mapping[str, str], *, now: datetime | None = None
) -> timedelta | None:
    """The server's requested delay, or None when it named none (or an unreadable one)."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        raw = _header(headers, name)
        if raw is not None:
            try:
                millis = float(raw)
            except ValueError:
                continue
            if millis >= 0:
                return timedelta(milliseconds=millis)
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return timedelta(seconds=seconds) if seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delay = when - (now or datetime.now(UTC))
    return max(delay, timedelta(0))


def _describe_http(exc: HttpResponseError) -> str:
    code = error_code(exc)
    inner = inner_error_code(exc)
    status = f"{exc.status_code}" + (f" {code}" if code else "") + (f"/{inner}" if inner else "")
    return status


def translate(exc: BaseException, *, action: str, subject: str, identity: str) -> DestinationError:
    """The typed error for ``exc``, raised while doing ``action`` to ``subject``.

    ``action`` is a verb phrase ("import", "read"), ``subject`` names the object
    (certificate and vault), ``identity`` describes the credential in use.
    """
    if isinstance(exc, DestinationError):
        return exc
    if isinstance(exc, TimeoutError):
        return RetryableError(f"Key Vault did not answer in time to {action} {subject}")
    if isinstance(exc, CredentialUnavailableError):
        return PermanentError(
            f"no Azure credential available to {action} {subject}: {identity} found none "
            "(is Azure Workload Identity set up for the operator's service account?)"
        )
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
        # Raised by the credential itself: Microsoft Entra refused the identity.
        match = _AADSTS.search(str(exc.message))
        code = f" ({match.group(0)})" if match else ""
        return PermanentError(
            f"Microsoft Entra ID refused a token for {identity}{code}, "
            f"so CertAuto cannot {action} {subject}"
        )
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return _translate_http(exc, action=action, subject=subject, identity=identity)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return RetryableError(
            f"could not reach Key Vault to {action} {subject}: {type(exc).__name__}"
        )
    if isinstance(exc, AzureError):
        return RetryableError(f"Key Vault call to {action} {subject} failed: {type(exc).__name__}")
    return RetryableError(f"unexpected error to {action} {subject}: {type(exc).__name__}")


def _translate_http(
    exc: HttpResponseError, *, action: str, subject: str, identity: str
) -> DestinationError:
    status = exc.status_code or 0
    described = _describe_http(exc)
    detail = _one_line(exc.error.message or "") if exc.error is not None else ""
    if status == 429:
        retry_after = parse_retry_after(_headers(exc))
        when = f"; retry after {retry_after.total_seconds():g}s" if retry_after else ""
        return RetryableError(
            f"Key Vault throttled the request to {action} {subject} ({described}){when}",
            retry_after=retry_after,
        )
    if status == 408 or status >= 500:
        return RetryableError(
            f"Key Vault failed to {action} {subject} ({described}), will retry",
            retry_after=parse_retry_after(_headers(exc)),
        )
    if status == 401:
        return PermanentError(
            f"Key Vault did not accept the token of {identity} to {action} {subject} "
            f"({described}): check the identity's tenant and that the vault URL is right"
        )
    if status == 403:
        missing = _ACTION_IN_MESSAGE.search(exc.error.message or "") if exc.error else None
        # Key Vault's RBAC message is long and multi-line: keep only the action it names.
        # Other refusals (a vault with purge protection, a firewall) are short: keep them.
        what = f", missing data action {missing.group(1)}" if missing else ""
        if not missing and detail:
            what = f": {detail}"
        return PermanentError(
            f"Key Vault denied {identity} permission to {action} {subject} "
            f"({described}{what}): {RBAC_HINT}"
        )
    if status == 409 and inner_error_code(exc) in _TRANSIENT_CONFLICTS:
        return RetryableError(
            f"Key Vault is still busy with {subject} ({described}) and could not {action} it yet",
            retry_after=parse_retry_after(_headers(exc)),
        )
    suffix = f": {detail}" if detail else ""
    return PermanentError(f"Key Vault refused to {action} {subject} ({described}){suffix}")
