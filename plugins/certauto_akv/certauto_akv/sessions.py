"""Pooled Key Vault clients and their credentials, shared by every binding.

One :class:`Session` (a credential and an async ``CertificateClient``) exists per
vault and identity. Sessions for ``ClientSecret`` identities re-read their Secret
at most every ``secret_ttl`` seconds, and at once after an authentication
failure; when the Secret's content changed, the old session is retired and
closed as soon as no operation uses it any more. Everything is closed by
:meth:`SessionPool.aclose`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.keyvault.certificates.aio import CertificateClient

from certauto_akv.config import AkvConfig, ClientSecretRef, CredentialsConfig, CredentialType
from certauto_akv.credentials import CredentialFactory, CredentialRequest
from certauto_core.kube.client import KubeClient
from certauto_core.kube.errors import ApiError, ForbiddenError, NotFoundError
from certauto_core.kube.resources import SECRETS
from certauto_core.plugins.errors import PermanentError, RetryableError

__all__ = ["Session", "SessionPool"]

_SessionKey = tuple[str, CredentialsConfig, str]


@dataclass(eq=False)
class Session:
    """A credential and a client for one vault, leased by operations."""

    key: _SessionKey
    vault_url: str
    identity: str
    """Who this session authenticates as, for messages (no secret)."""
    credential: AsyncTokenCredential
    client: CertificateClient
    secret_digest: str | None
    checked_at: float
    users: int = 0
    retired: bool = False
    stale: bool = False
    closed: bool = field(default=False)

    def mark_stale(self) -> None:
        """Re-read the credentials (their Secret) before the next use."""
        self.stale = True

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self.client.close()
        finally:
            await self.credential.close()


class SessionPool:
    """Hands out :class:`Session` leases keyed by vault, identity and namespace."""

    def __init__(
        self,
        kube: KubeClient,
        credential_factory: CredentialFactory,
        client_options: Mapping[str, Any],
        *,
        secret_ttl: float,
        logger: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._factory = credential_factory
        self._client_options = dict(client_options)
        self._secret_ttl = secret_ttl
        self._log = logger
        self._clock = clock
        self._sessions: dict[_SessionKey, Session] = {}
        self._retired: list[Session] = []
        self._locks: dict[_SessionKey, asyncio.Lock] = {}
        self._known: dict[tuple[str, str], CredentialsConfig] = {}
        self._closed = False

    def known_credentials(self, vault_url: str, namespace: str) -> CredentialsConfig | None:
        """The credentials last used for ``vault_url`` by a binding in ``namespace``.

        Lets ``retract`` of an entry removed from the spec (its config is gone) use
        the same identity as before, as long as this process has seen it.
        """
        return self._known.get((vault_url, namespace))

    @contextlib.asynccontextmanager
    async def lease(self, config: AkvConfig, namespace: str) -> AsyncIterator[Session]:
        """A session for ``config``'s vault and credentials, used by one operation."""
        if self._closed:
            raise RetryableError("the azure-key-vault destination is shutting down")
        session = await self._acquire(config, namespace)
        session.users += 1
        try:
            yield session
        finally:
            session.users -= 1
            if session.retired and session.users == 0:
                await self._close_retired(session)

    async def _acquire(self, config: AkvConfig, namespace: str) -> Session:
        credentials = config.credentials
        self._known[(config.vault_url, namespace)] = credentials
        secret_based = credentials.type is CredentialType.CLIENT_SECRET
        key: _SessionKey = (config.vault_url, credentials, namespace if secret_based else "")
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            session = self._sessions.get(key)
            if session is not None and not secret_based:
                return session
            fresh = session is not None and self._clock() - session.checked_at < self._secret_ttl
            if session is not None and fresh and not session.stale:
                return session
            request = await self._request(credentials, namespace)
            digest = _digest(request)
            if session is not None and session.secret_digest == digest:
                session.checked_at = self._clock()
                session.stale = False
                return session
            if session is not None:
                self._log.info(
                    "credentials for %s changed; replacing the Key Vault session", session.vault_url
                )
                await self._retire(session)
            session = self._open(key, config.vault_url, request, digest)
            self._sessions[key] = session
            return session

    def _open(
        self, key: _SessionKey, vault_url: str, request: CredentialRequest, digest: str | None
    ) -> Session:
        try:
            credential = self._factory(request)
        except ValueError as exc:  # azure-identity's checks of ids
            raise PermanentError(
                f"cannot build the credential of {request.identity}: {type(exc).__name__}"
            ) from None
        client = CertificateClient(vault_url, credential, **self._client_options)
        return Session(
            key=key,
            vault_url=vault_url,
            identity=request.identity,
            credential=credential,
            client=client,
            secret_digest=digest,
            checked_at=self._clock(),
        )

    async def _request(self, credentials: CredentialsConfig, namespace: str) -> CredentialRequest:
        if credentials.type is CredentialType.DEFAULT:
            return CredentialRequest(settings=credentials, namespace=namespace)
        assert credentials.secret_ref is not None  # the config model enforces it
        ref = credentials.secret_ref
        data = await self._read_secret(ref, namespace)
        where = f"Secret {namespace}/{ref.name}"
        client_id = _value(data, ref.client_id_key, where, required=True)
        client_secret = _value(data, ref.client_secret_key, where, required=True)
        tenant_id = credentials.tenant_id or _value(data, ref.tenant_id_key, where, required=False)
        if not tenant_id:
            raise PermanentError(
                f"no tenant for the ClientSecret credentials: set credentials.tenantID or "
                f"key {ref.tenant_id_key!r} in {where}"
            )
        return CredentialRequest(
            settings=credentials,
            namespace=namespace,
            client_id=client_id,
            tenant_id=tenant_id,
            client_secret=client_secret,
        )

    async def _read_secret(self, ref: ClientSecretRef, namespace: str) -> Mapping[str, Any]:
        where = f"Secret {namespace}/{ref.name}"
        try:
            secret = await self._kube.get(SECRETS.path(namespace, ref.name))
        except NotFoundError:
            raise PermanentError(f"the credentials {where} does not exist") from None
        except ForbiddenError:
            raise PermanentError(
                f"the operator may not read the credentials {where}: "
                "allow it to get Secrets in that namespace"
            ) from None
        except ApiError as exc:
            if exc.retryable:
                raise RetryableError(
                    f"could not read the credentials {where}: {exc.status} {exc.reason}".rstrip()
                ) from None
            raise PermanentError(
                f"could not read the credentials {where}: {exc.status} {exc.reason}".rstrip()
            ) from None
        data = secret.get("data")
        return data if isinstance(data, Mapping) else {}

    async def _retire(self, session: Session) -> None:
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        session.retired = True
        if session.users == 0:
            await self._close_quietly(session)
        else:
            self._retired.append(session)

    async def _close_retired(self, session: Session) -> None:
        with contextlib.suppress(ValueError):
            self._retired.remove(session)
        await self._close_quietly(session)

    async def _close_quietly(self, session: Session) -> None:
        try:
            await session.aclose()
        except Exception as exc:  # closing must not fail an operation or shutdown
            self._log.warning(
                "closing the Key Vault session for %s failed: %s",
                session.vault_url,
                type(exc).__name__,
            )

    async def aclose(self) -> None:
        """Close every session, in use or not. No lease may be taken afterwards."""
        self._closed = True
        sessions = [*self._sessions.values(), *self._retired]
        self._sessions.clear()
        self._retired.clear()
        for session in sessions:
            await self._close_quietly(session)


def _value(data: Mapping[str, Any], key: str, where: str, *, required: bool) -> str | None:
    raw = data.get(key)
    if raw is None or raw == "":
        if required:
            raise PermanentError(f"the credentials {where} has no key {key!r}")
        return None
    try:
        text = base64.b64decode(str(raw), validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        raise PermanentError(f"key {key!r} of the credentials {where} is not UTF-8 text") from None
    if not text and required:
        raise PermanentError(f"key {key!r} of the credentials {where} is empty")
    return text or None


def _digest(request: CredentialRequest) -> str | None:
    """A hash of what the Secret provided, to notice a rotation without keeping it twice."""
    if request.client_secret is None:
        return None
    digest = hashlib.sha256()
    for part in (request.client_id or "", request.tenant_id or "", request.client_secret):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part.encode())
    return digest.hexdigest()
