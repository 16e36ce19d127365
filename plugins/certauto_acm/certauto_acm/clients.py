"""ACM clients: one aiobotocore session per process, one client per place and identity.

A client is cached per (region, endpoint, credentials), so every binding that
writes to the same account and region shares one connection pool. Credentials
read from a Secret are part of the cache key (as a digest): a rotated Secret
gets a fresh client, and the old one is closed as soon as no operation uses it.
The cache is bounded; an evicted client is likewise closed once idle.

botocore's own retries are off: the core owns retries and backoff, and a test
must be able to see a throttled call reach the caller as a typed error.

Assuming a role needs credentials that refresh themselves (an STS session
lasts an hour); aiobotocore keeps such credentials on a session, so each
role gets its own small session whose credential provider assumes the role
with the base credentials. It borrows the process session's data loader, so
service models are loaded once.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

from aiobotocore.config import AioConfig
from aiobotocore.credentials import (
    AioAssumeRoleCredentialFetcher,
    AioCredentialResolver,
    AioCredentials,
    AioDeferredRefreshableCredentials,
)
from aiobotocore.session import AioSession
from botocore.exceptions import NoCredentialsError

from certauto_acm.auth import CredentialSource

MAX_CLIENTS: Final = 32
CONNECT_TIMEOUT_SECONDS: Final = 5
READ_TIMEOUT_SECONDS: Final = 30


@dataclass(frozen=True)
class ClientKey:
    region: str
    endpoint_url: str | None
    sts_endpoint_url: str | None
    credentials: str
    """:meth:`CredentialSource.cache_key`: a digest, never the credentials."""


class _Entry:
    def __init__(self, key: ClientKey, context: Any, client: Any) -> None:
        self.key = key
        self.context = context
        self.client = client
        self.leases = 0
        self.retired = False
        self.closed = False

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.context.__aexit__(None, None, None)


class _FixedCredentialProvider:
    """A credential provider that hands out one (self-refreshing) credentials object."""

    METHOD = "assume-role"
    CANONICAL_NAME = "certauto-assume-role"

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials

    async def load(self) -> Any:
        return self._credentials


class _DefaultChain:
    """The process's default-chain credentials as an assume-role source, resolved when used.

    Looking them up only when the role is assumed means a missing identity fails
    the ACM call (with a message naming the role and the chain), and is found once
    it appears, instead of being captured as "none" when the client was made.
    """

    def __init__(self, session: Any) -> None:
        self._session = session

    async def get_frozen_credentials(self) -> Any:
        credentials = await self._session.get_credentials()
        if credentials is None:
            raise NoCredentialsError()
        return await credentials.get_frozen_credentials()


class ClientPool:
    """Leases ACM clients; :meth:`aclose` closes them all."""

    def __init__(self, *, user_agent: str, max_clients: int = MAX_CLIENTS) -> None:
        self._session = AioSession()
        self._config = AioConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            user_agent_extra=user_agent,
            # Service models are JSON files: load them in a thread, not on the event loop.
            warm_up_loader_caches=True,
        )
        self._max_clients = max_clients
        self._entries: OrderedDict[ClientKey, _Entry] = OrderedDict()
        self._lock = asyncio.Lock()
        self._closed = False

    @asynccontextmanager
    async def acm(
        self,
        *,
        region: str,
        endpoint_url: str | None,
        sts_endpoint_url: str | None,
        source: CredentialSource,
    ) -> AsyncIterator[Any]:
        """An ACM client for this place and identity, for the duration of the block."""
        key = ClientKey(region, endpoint_url, sts_endpoint_url, source.cache_key())
        entry = await self._acquire(key, source)
        try:
            yield entry.client
        finally:
            entry.leases -= 1
            if entry.retired and entry.leases == 0:
                await entry.close()

    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            entry.retired = True
            await entry.close()

    @property
    def size(self) -> int:
        """How many clients are cached (for tests)."""
        return len(self._entries)

    async def _acquire(self, key: ClientKey, source: CredentialSource) -> _Entry:
        async with self._lock:
            if self._closed:
                raise RuntimeError("the ACM client pool is closed")
            entry = self._entries.get(key)
            if entry is None:
                entry = await self._create(key, source)
                self._entries[key] = entry
                await self._evict()
            else:
                self._entries.move_to_end(key)
            entry.leases += 1
            return entry

    async def _evict(self) -> None:
        while len(self._entries) > self._max_clients:
            _, oldest = self._entries.popitem(last=False)
            oldest.retired = True
            if oldest.leases == 0:
                await oldest.close()

    async def _create(self, key: ClientKey, source: CredentialSource) -> _Entry:
        session = self._session
        kwargs: dict[str, Any] = {}
        if source.role is not None:
            session = await self._role_session(key, source)
        elif source.keys is not None:
            kwargs = {
                "aws_access_key_id": source.keys.access_key_id,
                "aws_secret_access_key": source.keys.secret_access_key,
                "aws_session_token": source.keys.session_token,
            }
        elif await self._session.get_credentials() is None:
            # A client made now would hold "no credentials" for good; make none, so
            # that credentials appearing later (IRSA set up late) are picked up.
            raise NoCredentialsError()
        context = session.create_client(
            "acm",
            region_name=key.region,
            endpoint_url=key.endpoint_url,
            config=self._config,
            **kwargs,
        )
        client = await context.__aenter__()
        return _Entry(key, context, client)

    async def _role_session(self, key: ClientKey, source: CredentialSource) -> Any:
        assert source.role is not None
        if source.keys is not None:
            base: Any = AioCredentials(
                source.keys.access_key_id,
                source.keys.secret_access_key,
                source.keys.session_token,
            )
        else:
            base = _DefaultChain(self._session)
        extra_args: dict[str, str] = {"RoleSessionName": source.role.session_name}
        if source.role.external_id is not None:
            extra_args["ExternalId"] = source.role.external_id
        fetcher = AioAssumeRoleCredentialFetcher(
            client_creator=functools.partial(
                self._session.create_client,
                region_name=key.region,
                endpoint_url=key.sts_endpoint_url,
                config=self._config,
            ),
            source_credentials=base,
            role_arn=source.role.role_arn,
            extra_args=extra_args,
        )
        credentials = AioDeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method="assume-role"
        )
        session = AioSession()
        session.register_component("data_loader", self._session.get_component("data_loader"))
        session.register_component(
            "credential_provider",
            AioCredentialResolver(providers=[_FixedCredentialProvider(credentials)]),
        )
        return session
