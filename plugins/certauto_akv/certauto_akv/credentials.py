"""Which Azure identity the destination uses, and how its credential is built.

The user-facing choice lives in :class:`~certauto_akv.config.CredentialsConfig`:
``DefaultAzureCredential`` (Azure Workload Identity, managed identity or the
``AZURE_*`` service-principal variables of the operator's pod) or ``ClientSecret``
(an application's client id and secret from a Secret in the binding's namespace).

The destination turns that choice into a :class:`CredentialRequest` and asks a
:data:`CredentialFactory` for the credential object. Production uses
:func:`default_credential_factory`; tests and embedders pass their own factory to
:func:`certauto_akv.plugin.destination_type` (a test credential is never a config
option, so no binding can select one).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential

from certauto_akv.config import CredentialsConfig, CredentialType

__all__ = [
    "CredentialFactory",
    "CredentialRequest",
    "default_credential_factory",
]


@dataclass(frozen=True)
class CredentialRequest:
    """Everything needed to build one credential.

    For ``ClientSecret`` the client id, secret and tenant have already been read
    from the Secret (``tenant_id`` is the config's ``tenantID`` when set). The
    client secret is excluded from ``repr`` and never appears in a message.
    """

    settings: CredentialsConfig
    namespace: str
    """The binding's namespace (where a ``ClientSecret`` Secret lives)."""
    client_id: str | None = None
    tenant_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)

    @property
    def identity(self) -> str:
        """A description of the identity for messages: no secret, only identifiers."""
        settings = self.settings
        if settings.type is CredentialType.CLIENT_SECRET:
            assert settings.secret_ref is not None  # the config model enforces it
            tenant = f" in tenant {self.tenant_id}" if self.tenant_id else ""
            return (
                f"client {self.client_id}{tenant} from Secret "
                f"{self.namespace}/{settings.secret_ref.name}"
            )
        client_id = settings.client_id or os.environ.get("AZURE_CLIENT_ID")
        detail = f"client {client_id}" if client_id else "no AZURE_CLIENT_ID set"
        return f"DefaultAzureCredential (workload identity / managed identity, {detail})"


CredentialFactory = Callable[[CredentialRequest], AsyncTokenCredential]
"""Builds the credential for a request. The destination owns what it returns and
closes it when it is replaced or at shutdown."""


def default_credential_factory(request: CredentialRequest) -> AsyncTokenCredential:
    """azure-identity's async credentials, as the config asks.

    ``DefaultAzureCredential`` tries, in order, the ``AZURE_*`` environment
    variables, Azure Workload Identity (the federated token the webhook mounts)
    and managed identity, then developer tools that are absent in a pod. Set
    ``AZURE_TOKEN_CREDENTIALS=prod`` on the operator to skip the developer tools.
    """
    settings = request.settings
    authority = settings.authority_host
    if settings.type is CredentialType.CLIENT_SECRET:
        if not (request.tenant_id and request.client_id and request.client_secret):
            raise ValueError("a ClientSecret credential needs a tenant, a client id and a secret")
        options: dict[str, str] = {}
        if authority is not None:
            options["authority"] = authority
        return ClientSecretCredential(
            request.tenant_id, request.client_id, request.client_secret, **options
        )
    default_options: dict[str, str] = {}
    if authority is not None:
        default_options["authority"] = authority
    if settings.client_id is not None:
        default_options["managed_identity_client_id"] = settings.client_id
        default_options["workload_identity_client_id"] = settings.client_id
    if settings.tenant_id is not None:
        default_options["workload_identity_tenant_id"] = settings.tenant_id
    return DefaultAzureCredential(**default_options)
