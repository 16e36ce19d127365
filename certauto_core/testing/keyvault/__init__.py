"""A hand-written fake of the Azure Key Vault certificates REST API, and its fixtures.

See :mod:`certauto_core.testing.keyvault.fake_server` for what it implements and where
it knowingly differs from the real service.
"""

from certauto_core.testing.keyvault.credential import StaticTokenCredential, TokenRequest
from certauto_core.testing.keyvault.fake_server import (
    CONTENT_TYPE_PEM,
    CONTENT_TYPE_PKCS12,
    FakeKeyVaultServer,
    RecordedCall,
)
from certauto_core.testing.keyvault.fixtures import KeyVaultHandle, keyvault, keyvault_server

__all__ = [
    "CONTENT_TYPE_PEM",
    "CONTENT_TYPE_PKCS12",
    "FakeKeyVaultServer",
    "KeyVaultHandle",
    "RecordedCall",
    "StaticTokenCredential",
    "TokenRequest",
    "keyvault",
    "keyvault_server",
]
