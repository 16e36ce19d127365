"""One operation's conversation with ACM: typed calls, reads, the tag search.

An :class:`AcmApi` wraps one leased client for the length of one
``observe``/``publish``/``retract`` and keeps nothing afterwards. Every call goes
through :meth:`AcmApi.call`, which turns botocore's exceptions into the core's
typed errors, except for the error codes the caller says it expects (a
certificate that is gone, one that is in use), which come back as
:class:`ExpectedAwsError` for the caller to handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certauto_acm import tags as tagging
from certauto_acm.auth import CredentialSource
from certauto_acm.errors import (
    RETRYABLE_CODES,
    error_code,
    http_status,
    service_message,
    translate_client_error,
)
from certauto_acm.rules import ALL_ACM_KEY_TYPES, acm_key_name
from certauto_core.certs.info import sha256_fingerprint
from certauto_core.certs.material import CertificateMaterial
from certauto_core.plugins.contract import BindingRef
from certauto_core.plugins.errors import DestinationError, PermanentError, RetryableError

NOT_FOUND: Final = "ResourceNotFoundException"
IN_USE: Final = "ResourceInUseException"
SEARCH_CONCURRENCY: Final = 4
"""ListTagsForCertificate calls in flight during a tag search (ACM throttles per account)."""
LIST_PAGE_SIZE: Final = 1000
CREDENTIAL_ERRORS: Final = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)
"""botocore's "could not get credentials" errors (no request was sent)."""


class ExpectedAwsError(Exception):
    """An error code the caller asked to handle itself."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Held:
    """A certificate in ACM: its ARN, its tags and the leaf it serves."""

    arn: str
    tags: Mapping[str, str]
    leaf: x509.Certificate

    @property
    def fingerprint(self) -> str:
        return sha256_fingerprint(self.leaf)

    @property
    def not_after(self) -> datetime:
        return self.leaf.not_valid_after_utc

    @property
    def key_algorithm(self) -> str:
        return acm_key_name(self.leaf)


@dataclass(frozen=True)
class Candidate:
    """A certificate found by the tag search (no certificate body read yet)."""

    arn: str
    tags: Mapping[str, str]
    imported_at: datetime


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


class AcmApi:
    """Typed ACM calls for one operation, in one region, with one identity."""

    def __init__(
        self, client: Any, *, region: str, source: CredentialSource, log: logging.Logger
    ) -> None:
        self.client = client
        self.region = region
        self.source = source
        self.log = log
        self.writes = 0
        """Write calls made so far (ImportCertificate, tags, DeleteCertificate)."""

    # -- the one way to call ACM ----------------------------------------------------

    async def call(
        self, operation: str, *, expect: Iterable[str] = (), write: bool = False, **params: Any
    ) -> dict[str, Any]:
        method = getattr(self.client, _snake(operation))
        if write:
            self.writes += 1
        try:
            response: dict[str, Any] = await method(**params)
        except ClientError as error:
            code = error_code(error) or "UnknownError"
            failed_operation = str(getattr(error, "operation_name", "") or operation)
            if failed_operation != operation:
                # The call never reached ACM: getting credentials (AssumeRole) failed.
                raise self._credential_step_failed(failed_operation, error) from error
            if code in expect:
                raise ExpectedAwsError(code, service_message(error)) from error
            raise translate_client_error(
                error,
                operation=operation,
                region=self.region,
                credential_source=self.source.description,
            ) from error
        except CREDENTIAL_ERRORS as error:
            raise PermanentError(
                f"ACM {operation} in {self.region}: no usable AWS credentials from "
                f"{self.source.description} ({type(error).__name__})"
            ) from error
        except (BotoConnectionError, HTTPClientError, TimeoutError) as error:
            raise RetryableError(
                f"ACM {operation} in {self.region}: could not reach the endpoint "
                f"({type(error).__name__})"
            ) from error
        except BotoCoreError as error:
            raise PermanentError(
                f"ACM {operation} in {self.region} failed in the AWS client "
                f"({type(error).__name__})"
            ) from error
        return response

    def _credential_step_failed(self, operation: str, error: ClientError) -> DestinationError:
        code = error_code(error) or "UnknownError"
        status = http_status(error) or 0
        text = f"getting credentials from {self.source.description} failed: {operation} {code}"
        if code in RETRYABLE_CODES or status >= 500:
            return RetryableError(f"{text} (HTTP {status}), will retry")
        return PermanentError(
            f"{text}; check the role's trust policy and that the base identity may call "
            f"sts:{operation}"
        )

    # -- reads ----------------------------------------------------------------------

    async def tags_of(self, arn: str) -> dict[str, str] | None:
        """The certificate's tags, or ``None`` when it does not exist."""
        try:
            response = await self.call(
                "ListTagsForCertificate", expect={NOT_FOUND}, CertificateArn=arn
            )
        except ExpectedAwsError:
            return None
        return tagging.from_tag_list(response.get("Tags") or [])

    async def leaf_of(self, arn: str) -> x509.Certificate | None:
        """The leaf certificate ACM serves under ``arn``, or ``None`` when it does not exist."""
        try:
            response = await self.call("GetCertificate", expect={NOT_FOUND}, CertificateArn=arn)
        except ExpectedAwsError:
            return None
        body = response.get("Certificate")
        if not body:
            raise PermanentError(f"ACM GetCertificate returned no certificate for {arn}")
        try:
            return x509.load_pem_x509_certificate(str(body).encode())
        except ValueError as error:
            raise PermanentError(
                f"ACM GetCertificate returned a certificate CertAuto cannot parse for {arn}"
            ) from error

    async def read(self, arn: str) -> Held | None:
        """Tags and served leaf of ``arn`` (two reads), or ``None`` when it is gone."""
        tags = await self.tags_of(arn)
        if tags is None:
            return None
        leaf = await self.leaf_of(arn)
        if leaf is None:
            return None
        return Held(arn=arn, tags=tags, leaf=leaf)

    async def describe(self, arn: str) -> dict[str, Any] | None:
        try:
            response = await self.call(
                "DescribeCertificate", expect={NOT_FOUND}, CertificateArn=arn
            )
        except ExpectedAwsError:
            return None
        certificate: dict[str, Any] = response.get("Certificate") or {}
        return certificate

    async def search(self, binding: BindingRef) -> list[Candidate]:
        """Every imported certificate tagged for ``binding``'s destination entry.

        ListCertificates lists only RSA_2048 certificates unless told otherwise, so
        every key type ACM knows is asked for. Each imported certificate's tags are
        then read (a few at a time): ACM cannot filter by tag.
        """
        summaries: list[dict[str, Any]] = []
        params: dict[str, Any] = {
            "Includes": {"keyTypes": list(ALL_ACM_KEY_TYPES)},
            "MaxItems": LIST_PAGE_SIZE,
        }
        while True:
            response = await self.call("ListCertificates", **params)
            summaries.extend(response.get("CertificateSummaryList") or [])
            token = response.get("NextToken")
            if not token:
                break
            params["NextToken"] = token
        imported = [
            summary
            for summary in summaries
            if summary.get("CertificateArn") and summary.get("Type", "IMPORTED") == "IMPORTED"
        ]
        limit = asyncio.Semaphore(SEARCH_CONCURRENCY)

        async def candidate(summary: dict[str, Any]) -> Candidate | None:
            arn = str(summary["CertificateArn"])
            async with limit:
                found = await self.tags_of(arn)
            if found is None or tagging.ownership(found, binding) is not tagging.Ownership.OURS:
                return None
            imported_at = summary.get("ImportedAt") or summary.get("CreatedAt")
            if not isinstance(imported_at, datetime):
                imported_at = datetime.min.replace(tzinfo=UTC)
            return Candidate(arn=arn, tags=found, imported_at=imported_at)

        results = await asyncio.gather(
            *(candidate(summary) for summary in imported), return_exceptions=True
        )
        found: list[Candidate] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            if result is not None:
                found.append(result)
        return found

    # -- writes ---------------------------------------------------------------------

    async def import_certificate(
        self,
        material: CertificateMaterial,
        *,
        arn: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """ImportCertificate: a new certificate (with tags) or a re-import (never tags)."""
        if arn is not None and tags:
            raise AssertionError("ACM refuses tags on a re-import")
        params: dict[str, Any] = {
            "Certificate": material.leaf.public_bytes(Encoding.PEM),
            "PrivateKey": material.private_key_pem_pkcs8(),
        }
        chain = material.chain_pem()
        if chain:
            params["CertificateChain"] = chain
        if arn is not None:
            params["CertificateArn"] = arn
        elif tags:
            params["Tags"] = tagging.to_tag_list(tags)
        response = await self.call("ImportCertificate", write=True, **params)
        imported = str(response["CertificateArn"])
        self.log.info(
            "imported certificate %s into %s (%s)",
            material.fingerprint,
            imported,
            "re-import" if arn else "new",
        )
        return imported

    async def add_tags(self, arn: str, tags: Mapping[str, str]) -> None:
        if tags:
            await self.call(
                "AddTagsToCertificate",
                write=True,
                CertificateArn=arn,
                Tags=tagging.to_tag_list(tags),
            )

    async def remove_tags(self, arn: str, keys: Iterable[str]) -> None:
        wanted = sorted(set(keys))
        if wanted:
            with contextlib.suppress(ExpectedAwsError):  # already gone
                await self.call(
                    "RemoveTagsFromCertificate",
                    expect={NOT_FOUND},
                    write=True,
                    CertificateArn=arn,
                    Tags=[{"Key": key} for key in wanted],
                )

    async def delete(self, arn: str) -> str | None:
        """Delete ``arn`` unless something uses it: ``None`` when deleted or already gone,
        else a phrase naming its users."""
        described = await self.describe(arn)
        if described is None:
            return None
        users = [str(user) for user in described.get("InUseBy") or []]
        if users:
            return _in_use_by(users)
        try:
            await self.call(
                "DeleteCertificate", expect={NOT_FOUND, IN_USE}, write=True, CertificateArn=arn
            )
        except ExpectedAwsError as error:
            if error.code == IN_USE:
                return "in use (ACM refused the deletion with ResourceInUseException)"
        return None


def _in_use_by(users: list[str]) -> str:
    shown = ", ".join(users[:3])
    more = f" and {len(users) - 3} more" if len(users) > 3 else ""
    return f"in use by {shown}{more}"
