"""A test-only Azure credential that hands out a fixed bearer token."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

__all__ = ["StaticTokenCredential", "TokenRequest"]


@dataclass(frozen=True)
class TokenRequest:
    """One token request the credential answered."""

    scopes: tuple[str, ...]
    tenant_id: str | None
    claims: str | None


class StaticTokenCredential:
    """Implements azure-core's async ``AsyncTokenCredential`` and ``AsyncSupportsTokenInfo``
    protocols with a fixed token. For tests only: it authenticates to nothing.

    ``requests`` records every ``get_token``/``get_token_info`` call, which proves that a
    client ran Key Vault's challenge flow (the scope and tenant come from the challenge).
    """

    def __init__(
        self,
        token: str = "certauto-test-token",  # noqa: S107 - a fake token for a fake vault
        lifetime_seconds: int = 3600,
    ) -> None:
        self.token = token
        self.lifetime_seconds = lifetime_seconds
        self.requests: list[TokenRequest] = []
        self.closed = False

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.requests.append(TokenRequest(scopes, tenant_id, claims))
        return AccessToken(self.token, int(time.time()) + self.lifetime_seconds)

    async def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        opts = options or {}
        self.requests.append(TokenRequest(scopes, opts.get("tenant_id"), opts.get("claims")))
        return AccessTokenInfo(self.token, int(time.time()) + self.lifetime_seconds)

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.close()
